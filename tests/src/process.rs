//! Child processes that end with the test that started them, pass or fail.
#![allow(missing_docs)]

use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Output};

/// A child process killed (SIGKILL) and reaped when dropped, unless it was waited for. Every
/// process a test starts directly is held in one (onebox nodes end with their
/// [`crate::cluster::TestCluster`]), so a panicking test leaves nothing running; `run.sh test`
/// fails when a process started under the tests outlives them.
pub struct Guarded(Option<Child>);

impl Guarded {
    /// Spawns `command`; panics with the program's name when it cannot start.
    pub fn spawn(command: &mut Command) -> Guarded {
        match command.spawn() {
            Ok(child) => Guarded(Some(child)),
            Err(e) => panic!("cannot start {:?}: {e}", command.get_program()),
        }
    }

    /// Asks the child to end (SIGTERM); [`Guarded::end_within`] then waits for it.
    pub fn ask_to_end(&self) {
        if let Some(pid) = self.0.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            // The pid stays this guard's child's until the guard reaps it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits up to `grace` for the child to end, then kills it.
    pub fn end_within(&mut self, grace: std::time::Duration) {
        let deadline = std::time::Instant::now() + grace;
        while let Some(child) = self.0.as_mut() {
            if child.try_wait().ok().flatten().is_some() {
                self.0 = None;
            } else if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.0 = None;
            } else {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// Waits for the child to end and collects its piped output.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("a child");
        child.wait_with_output().expect("the child's output")
    }
}

impl Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a child")
    }
}

impl DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let child = Guarded::spawn(Command::new("sleep").arg("600"));
        let pid = child.id();
        drop(child);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
