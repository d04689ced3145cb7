//! What an example starts or creates, undone however it ends.

use std::process::Child;

/// A child process, killed and reaped when dropped (if the example ends
/// early, nothing is left running).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Segment names, unlinked when dropped.
pub struct Unlink(pub Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmring::unlink(name);
        }
    }
}
