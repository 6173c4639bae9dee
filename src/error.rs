//! The one error type of imgfs: a small enum of kinds, each with its errno.

use std::io;

/// What went wrong, as a kind that maps to one errno (filesystem.md, "Errors").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source or a file the spec names does not exist. ENOENT.
    #[error("not found: {0}")]
    NotFound(String),
    /// The spec does not parse or a value is out of range. EINVAL.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The source or the output exceeds a configured limit. EFBIG.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The source is not a decodable image. EIO.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// An encoder failed. EIO.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// Reading the source failed; keeps the OS errno (EACCES stays EACCES).
    #[error("{message}")]
    Io { errno: i32, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno a filesystem request answers with.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::InvalidSpec(_) => libc::EINVAL,
            Error::TooLarge(_) => libc::EFBIG,
            Error::Decode(_) | Error::Encode(_) => libc::EIO,
            Error::Io { errno, .. } => *errno,
        }
    }

    /// Whether the error is the user's (a bad name) rather than the data's or the system's;
    /// user errors are logged at a lower level so a scanner cannot flood the log.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::NotFound(_) | Error::InvalidSpec(_))
    }

    pub fn io(context: impl std::fmt::Display, err: io::Error) -> Error {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        if errno == libc::ENOENT {
            return Error::NotFound(format!("{context}: {err}"));
        }
        Error::Io {
            errno,
            message: format!("{context}: {err}"),
        }
    }

    pub fn spec(message: impl Into<String>) -> Error {
        Error::InvalidSpec(message.into())
    }
}
