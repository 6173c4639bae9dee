//! Detaching into the background once the mount is up, as mount helpers do: the process
//! forks before it starts any thread; the parent waits until the child reports that the
//! mount is up (a byte on a pipe) and exits 0, or exits with the child's status if the
//! child ends first. Until then the child's errors go to the terminal; after, its standard
//! streams are /dev/null and it logs to the journal (see [`crate::logging`]).

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{waitpid, Pid, WaitOptions};

/// The child's side of the pipe: [`Readiness::ready`] releases the waiting parent.
pub struct Readiness {
    pipe: OwnedFd,
}

/// Forks. Returns in the child only; the parent exits with the outcome of the mount.
///
/// Must be called while the process has one thread (a fork copies only the caller's).
pub fn detach() -> io::Result<Readiness> {
    let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
    // SAFETY: called first in main, before any thread exists, so the child is a full copy
    // of a single-threaded process and may go on as normal Rust code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            // Its own session: the terminal's hangup or Ctrl-C does not reach the mount.
            rustix::process::setsid()?;
            Ok(Readiness { pipe: write })
        }
        child => {
            drop(write);
            std::process::exit(wait_for_child(read, child))
        }
    }
}

/// 0 once the child says it is ready; its exit status if it ends without saying so.
fn wait_for_child(read: OwnedFd, child: libc::pid_t) -> i32 {
    let mut byte = [0u8];
    if matches!(rustix::io::read(&read, &mut byte), Ok(1)) {
        return 0;
    }
    let pid = Pid::from_raw(child).expect("fork returned a pid");
    match waitpid(Some(pid), WaitOptions::empty()) {
        Ok(Some((_, status))) => status.exit_status().unwrap_or(1).max(1),
        _ => 1,
    }
}

impl Readiness {
    /// The mount is up: the parent exits 0, and this process lets go of the terminal
    /// (stdin, stdout and stderr become /dev/null; the working directory becomes `/` so
    /// that it keeps no directory busy).
    pub fn ready(self) -> io::Result<()> {
        crate::logging::detached();
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        )?;
        rustix::stdio::dup2_stdin(&null)?;
        rustix::stdio::dup2_stdout(&null)?;
        rustix::stdio::dup2_stderr(&null)?;
        std::env::set_current_dir("/")?;
        rustix::io::write(&self.pipe, b"1")?;
        Ok(())
    }
}
