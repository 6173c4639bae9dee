//! The one error type of imgfs: a small enum of kinds, each with its errno.
//!
//! Requests answer only with the errnos of the contract (docs/filesystem.md, "Errors"):
//! ENOENT, EACCES, EINVAL, ENAMETOOLONG, EFBIG, EIO (and EROFS for writes, answered by the
//! adapter; ESTALE only to make the kernel look a name up again). An OS error is sorted into one of these kinds where it is created
//! ([`Error::io`]), so no EAGAIN, ELOOP or ESTALE of an internal step leaks out.

use std::io;

/// What went wrong, as a kind that maps to one errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source or a file the spec names does not exist, or cannot be reached from
    /// inside the root (a link out, a loop, not a regular file). ENOENT.
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller may not read a file the variant is made from. EACCES.
    #[error("permission denied: {0}")]
    Denied(String),
    /// The spec does not parse or a value is out of range. EINVAL.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A name longer than NAME_MAX (255 bytes). ENAMETOOLONG.
    #[error("name too long: {0}")]
    NameTooLong(String),
    /// The source or the output exceeds a configured limit. EFBIG.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The source is not a decodable image. EIO.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// An encoder failed. EIO.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The inode's version of a variant is gone (its inputs changed, its bytes were
    /// evicted): answered to an open only, so that the kernel looks the name up again and
    /// retries (open(2) does so once by itself). ESTALE.
    #[error("stale: {0}")]
    Stale(String),
    /// The memory set aside for this kind of request is in use (directory listings past
    /// `--listing-memory`, open variants past `--open-memory`): opendir(3)'s and open(2)'s
    /// own errno for it. ENOMEM.
    #[error("out of memory: {0}")]
    NoMemory(String),
    /// The mount's table of open files and directories is full (all users', or one user's
    /// half): open(2)'s own errno for a full system table. ENFILE.
    #[error("too many open files: {0}")]
    TooManyOpen(String),
    /// Reading failed for a reason of the machine's (kept for the log line). EIO.
    #[error("{message}")]
    Io { errno: i32, message: String },
}

/// How errors are told to the kernel (`--errors`): every kind its own errno for people at
/// a shell, or the errnos web servers answer with a 4xx (docs/filesystem.md, "Errors").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Errnos {
    /// EINVAL for a bad spec, EFBIG over a limit, EIO for a file that is not an image.
    #[default]
    Precise,
    /// ENOENT for every error of the request (404 through nginx, caddy, python), EACCES
    /// for a forbidden one (403), EIO only for failures of the machine or an encoder (5xx).
    Web,
}

/// The symbolic name of an errno of the contract, for log lines and metrics labels.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EFBIG => "EFBIG",
        libc::ESTALE => "ESTALE",
        libc::EROFS => "EROFS",
        libc::ENOMEM => "ENOMEM",
        libc::ENFILE => "ENFILE",
        _ => "EIO",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno a filesystem request answers with.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Denied(_) => libc::EACCES,
            Error::InvalidSpec(_) => libc::EINVAL,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::TooLarge(_) => libc::EFBIG,
            Error::Stale(_) => libc::ESTALE,
            Error::NoMemory(_) => libc::ENOMEM,
            Error::TooManyOpen(_) => libc::ENFILE,
            Error::Decode(_) | Error::Encode(_) | Error::Io { .. } => libc::EIO,
        }
    }

    /// The errno a request answers with under `errnos`: [`Errnos::Web`] answers every
    /// error of the request (its name, its spec, its source's content or size) with ENOENT,
    /// which web servers turn into a quiet 404 (nginx: any other errno but EACCES is a 500
    /// and a `[crit]` line); failures of the machine stay EIO (a 5xx), EACCES stays (403).
    pub fn errno_for(&self, errnos: Errnos) -> i32 {
        match (errnos, self) {
            (Errnos::Precise, _) => self.errno(),
            (
                Errnos::Web,
                Error::InvalidSpec(_)
                | Error::NameTooLong(_)
                | Error::TooLarge(_)
                | Error::Decode(_)
                | Error::NotFound(_),
            ) => libc::ENOENT,
            (Errnos::Web, _) => self.errno(),
        }
    }

    /// Whether the error is the request's (a bad or forbidden name) rather than the data's
    /// or the system's; these are logged at a lower level so a scanner cannot flood the log.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::NotFound(_) | Error::Denied(_) | Error::InvalidSpec(_) | Error::NameTooLong(_)
        )
    }

    /// Sorts an OS error met while working on `context` into its kind.
    pub fn io(context: impl std::fmt::Display, err: io::Error) -> Error {
        let message = format!("{context}: {err}");
        match err.raw_os_error().unwrap_or(libc::EIO) {
            libc::ENOENT | libc::ENOTDIR | libc::ELOOP => Error::NotFound(message),
            libc::EACCES | libc::EPERM => Error::Denied(message),
            libc::ENAMETOOLONG => Error::NameTooLong(message),
            libc::EFBIG => Error::TooLarge(message),
            errno => Error::Io { errno, message },
        }
    }

    /// The same error, its message prefixed by what was being done.
    pub fn context(self, what: &str) -> Error {
        let with = |message: String| format!("{what} {message}");
        match self {
            Error::NotFound(m) => Error::NotFound(with(m)),
            Error::Denied(m) => Error::Denied(with(m)),
            Error::InvalidSpec(m) => Error::InvalidSpec(with(m)),
            Error::NameTooLong(m) => Error::NameTooLong(with(m)),
            Error::TooLarge(m) => Error::TooLarge(with(m)),
            Error::Stale(m) => Error::Stale(with(m)),
            Error::NoMemory(m) => Error::NoMemory(with(m)),
            Error::TooManyOpen(m) => Error::TooManyOpen(with(m)),
            Error::Decode(m) => Error::Decode(with(m)),
            Error::Encode(m) => Error::Encode(with(m)),
            Error::Io { errno, message } => Error::Io {
                errno,
                message: with(message),
            },
        }
    }

    pub fn spec(message: impl Into<String>) -> Error {
        Error::InvalidSpec(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_answer_only_the_contracts_errnos() {
        let contract = [
            libc::ENOENT,
            libc::EACCES,
            libc::EINVAL,
            libc::ENAMETOOLONG,
            libc::EFBIG,
            libc::EIO,
        ];
        for errno in 1..134 {
            let err = Error::io("x", io::Error::from_raw_os_error(errno));
            assert!(contract.contains(&err.errno()), "errno {errno} -> {err:?}");
        }
        let io = |errno| Error::io("x", io::Error::from_raw_os_error(errno)).errno();
        assert_eq!(io(libc::ELOOP), libc::ENOENT);
        assert_eq!(io(libc::EAGAIN), libc::EIO);
        assert_eq!(io(libc::ESTALE), libc::EIO);
        assert_eq!(io(libc::EACCES), libc::EACCES);
    }

    /// Issue 16: through nginx every errno but ENOENT, ENOTDIR, ENAMETOOLONG (404) and
    /// EACCES (403) is a 500; under `--errors web` only the machine's failures are.
    #[test]
    fn web_errnos_make_every_request_error_a_not_found() {
        let web = |err: Error| err.errno_for(Errnos::Web);
        for request in [
            Error::spec("resize,w_abc"),
            Error::NameTooLong("x".into()),
            Error::TooLarge("x".into()),
            Error::Decode("x".into()),
            Error::NotFound("x".into()),
        ] {
            assert_eq!(web(request.clone()), libc::ENOENT, "{request:?}");
            assert_ne!(request.errno_for(Errnos::Precise), 0);
        }
        assert_eq!(web(Error::Denied("x".into())), libc::EACCES);
        assert_eq!(web(Error::Encode("x".into())), libc::EIO);
        assert_eq!(
            web(Error::io("x", io::Error::from_raw_os_error(libc::EIO))),
            libc::EIO
        );
        assert_eq!(web(Error::Stale("x".into())), libc::ESTALE);
        assert_eq!(Error::spec("x").errno_for(Errnos::Precise), libc::EINVAL);
    }
}
