//! Helpers for the command line tests: deadlines, segments unlinked and
//! children killed whatever a test's outcome. (A part of the library's
//! `tests/common`, which the cli package cannot reach.)
#![allow(dead_code)] // each test binary uses part of this module

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// A deadline `secs` from now.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// For loop conditions: true while `deadline` is ahead; fails the test,
/// naming `what`, once it has passed. `while until(d, "draining") && more() {}`
pub fn until(deadline: Instant, what: &str) -> bool {
    assert!(Instant::now() < deadline, "{what}: not done by its deadline");
    true
}

/// Runs `f` on its own thread and returns its result; fails the test, naming
/// `what`, if it takes longer than `limit` (a blocking call that never
/// returns then fails the test instead of hanging it).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = thread.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
    }
}

/// A segment name no other test (or run) uses.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("/shmring-test-{tag}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Unlinks the segment when dropped (whatever the test's outcome).
pub struct SegmentGuard(pub String);

impl SegmentGuard {
    pub fn new(tag: &str) -> SegmentGuard {
        SegmentGuard(unique_name(tag))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The segment's file under /dev/shm.
    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        let _ = shmring::unlink(&self.0);
    }
}

/// A child process, killed and reaped when dropped.
pub struct ChildGuard {
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child, status: None }
    }

    /// SIGKILLs the child (if it still runs) and reaps it; returns how it
    /// ended.
    pub fn kill(&mut self) -> ExitStatus {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        self.status = Some(status);
        status
    }

    /// Kills a child that runs until killed: fails the test if it had ended
    /// on its own before (a panic's exit code 101, say, which the kill would
    /// otherwise hide).
    pub fn kill_alive(&mut self, what: &str) {
        let status = self.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: ended before it was killed: {status}");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
