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

/// A message borrowed in place, held by the forking thread: the child is cut
/// off the ring (its mapping replaced by private memory), yet the same
/// `&[u8]` reads the same bytes there (a view lent at the fork gets a copy,
/// not zeros); the parent's view is untouched.
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
    assert_eq!(bytes, MESSAGE, "the parent's view");
    drop(guard);
}

/// A grant written in place, held by the forking thread: in the child, the
/// bytes already written through the `&mut [u8]` read the same (see above);
/// in the parent, the grant commits what was written.
#[test]
fn a_grant_written_in_place_does_not_change_across_fork() {
    let segment = SegmentGuard::new("adv-fork-grant");
    let options = RingOptions::new().capacity(1 << 16);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("producer");
    assert!(producer.borrows_in_place(), "a private segment lends in place");
    let mut grant = producer.reserve_timeout(16, Duration::from_secs(5)).expect("reserve");
    grant.copy_from_slice(MESSAGE);
    let bytes: &mut [u8] = &mut grant;
    let status = in_forked_child(|| std::hint::black_box(&*bytes) == MESSAGE);
    assert_eq!(status, 0, "in the child, a live &mut [u8] of a grant lent in place lost what was written to it");
    assert_eq!(&*bytes, MESSAGE, "the parent's grant");
    grant.commit();
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("the parent's commit arrives");
    assert_eq!(buf, MESSAGE);
}

/// Forks while another thread attaches and detaches producers in a loop
/// (so some forks land while the attach holds the tracked list, or between
/// its descriptor and its mapping): no fork hangs, every child can attach
/// afresh and send, the parent's consumer receives every child's message,
/// and the attaching thread's handles keep working. (Held up.)
#[test]
fn forks_racing_with_attaches_in_another_thread() {
    let segment = SegmentGuard::new("adv-fork-race");
    let options = RingOptions::new()
        .kind(shmring::Kind::Mpsc)
        .capacity(1 << 16)
        .max_producers(8)
        .liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (name, options, stop) = (segment.name().to_owned(), options.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut producer = Producer::open(&name, &options).expect("thread's producer");
                // At most 1000 messages (16 KB of the 64 KiB ring): the
                // consumer reads only after the forks, and the children
                // need room.
                if sent < 1000 {
                    producer.send_timeout(b"thread", Duration::from_secs(5)).expect("thread's send");
                    sent += 1;
                }
            }
            sent
        })
    };
    let forks = 40;
    for i in 0..forks {
        let name = segment.name().to_owned();
        let options = options.clone();
        let status = in_forked_child(move || {
            let Ok(mut producer) = Producer::open(&name, &options) else { return false };
            producer.send_timeout(format!("child {i}").as_bytes(), Duration::from_secs(5)).is_ok()
        });
        assert_eq!(status, 0, "child {i} could not attach afresh and send");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let thread_sent = churn.join().expect("churn thread");
    let (mut children, mut thread) = (std::collections::HashSet::new(), 0u64);
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.len() < forks || thread < thread_sent {
        assert!(
            Instant::now() < deadline,
            "missing: {} child messages, {thread}/{thread_sent} thread messages",
            children.len()
        );
        match consumer.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(_) if buf == b"thread" => thread += 1,
            Ok(_) => assert!(children.insert(String::from_utf8(buf.clone()).expect("utf-8")), "duplicate"),
            Err(shmring::RecvTimeoutError::Timeout | shmring::RecvTimeoutError::Disconnected) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}
