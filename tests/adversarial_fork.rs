//! Adversarial review of fork safety: views in place that the forking
//! thread holds across `fork()`.
//!
//! The child handler (`fork::child` -> `blank`) replaces every tracked
//! mapping with zeroed anonymous memory. A `ReadGuard` lent in place is a
//! `&[u8]` of that mapping and a `Grant` a `&mut [u8]`: the references stay
//! live across the `fork` call while the bytes they point to change. That
//! is the very thing the trust rule exists to rule out (a `&[u8]` promises
//! its bytes do not change while it lives), and `blank`'s SAFETY comment
//! ("which views of shared memory are built to bear") contradicts the
//! rule's own docs. These tests fail while the bytes change.
//!
//! The children only compare bytes, report through their exit status and
//! leave with `_exit`; every wait has a deadline and every child is killed.

mod common;

use common::SegmentGuard;
use shmring::{Consumer, Producer, RingOptions};
use std::time::{Duration, Instant};

const MESSAGE: &[u8; 16] = b"written by us...";

/// Forks; in the child runs `check` and `_exit`s with 0 if it returned
/// true, 1 otherwise. In the parent returns the child's exit status (or
/// kills it after 10 s).
fn in_forked_child(check: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only compares bytes and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or(false);
        // SAFETY: leaves without running anything inherited.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: our own child; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            assert!(libc::WIFEXITED(status), "the child died: wait status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        if start.elapsed() > Duration::from_secs(10) {
            // SAFETY: our own unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A message borrowed in place, held by the forking thread: in the child,
/// the same `&[u8]` reads zeros.
#[test]
fn a_message_borrowed_in_place_does_not_change_across_fork() {
    let segment = SegmentGuard::new("adv-fork-guard");
    let options = RingOptions::new().capacity(1 << 16);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("producer");
    assert!(consumer.borrows_in_place(), "a private segment lends in place");
    producer.send(MESSAGE).expect("send");
    let guard = consumer.read_timeout(Duration::from_secs(5)).expect("read");
    let bytes: &[u8] = &guard;
    assert_eq!(bytes, MESSAGE);
    let status = in_forked_child(|| std::hint::black_box(bytes) == MESSAGE);
    assert_eq!(status, 0, "in the child, a live &[u8] of a message borrowed in place no longer reads the message");
    drop(guard);
}

/// A grant written in place, held by the forking thread: in the child, the
/// bytes already written through the `&mut [u8]` read zeros.
#[test]
fn a_grant_written_in_place_does_not_change_across_fork() {
    let segment = SegmentGuard::new("adv-fork-grant");
    let options = RingOptions::new().capacity(1 << 16);
    let _consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("producer");
    assert!(producer.borrows_in_place(), "a private segment lends in place");
    let mut grant = producer.reserve_timeout(16, Duration::from_secs(5)).expect("reserve");
    grant.copy_from_slice(MESSAGE);
    let bytes: &mut [u8] = &mut grant;
    let status = in_forked_child(|| std::hint::black_box(&*bytes) == MESSAGE);
    assert_eq!(status, 0, "in the child, a live &mut [u8] of a grant lent in place lost what was written to it");
    drop(grant);
}
