//! Regression tests for an adversarial review: option values at the edge of
//! their types, errors that stay reported, slots held by dead producers,
//! descriptors that are not memfds, and error messages that say exactly what
//! happened (once).

mod common;

use common::{mpsc_options, spawn_child, wait_for_line, SegmentGuard};
use shmring::*;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

const STATE_AT: u64 = 64;
const HEAD_AT: u64 = 256;
const DATA_AT: u64 = shmring::testing::HEADER_BYTES;

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

fn options() -> RingOptions {
    RingOptions::new().capacity(8192).max_message(1024).ready_timeout(Duration::from_millis(50))
}

/// A producer and consumer attached in this process, with three 40-byte
/// messages sent.
fn live(tag: &str) -> (SegmentGuard, Producer, Consumer) {
    let segment = SegmentGuard::new(tag);
    let consumer = Consumer::create(segment.name(), &options()).expect("create");
    let mut producer = Producer::open(segment.name(), &options()).expect("open");
    for i in 0..3u8 {
        producer.send(&[i; 40]).expect("send");
    }
    (segment, producer, consumer)
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(common::unique_name(tag).trim_start_matches('/'));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a thread and fails the test if it has not returned within
/// 10 s (so that a call that blocks fails instead of hanging the run).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the call blocked for 10 s")
}

/// Finding 1: a ready timeout beyond what `Instant` can hold is "no
/// deadline", not an overflow panic.
#[test]
fn a_ready_timeout_of_duration_max_opens_without_panicking() {
    let segment = SegmentGuard::new("ready-max");
    options().create(segment.name()).expect("create");
    let forever = options().ready_timeout(Duration::MAX);
    let mut consumer = Consumer::open(segment.name(), &forever).expect("consumer");
    let mut producer = Producer::open(segment.name(), &forever).expect("producer");
    producer.send(b"x").expect("send");
    assert_eq!(&*consumer.read().expect("read"), b"x");

    let ring = AnonymousRing::create("ready-max", &forever).expect("anonymous");
    ring.consumer(&forever).expect("anonymous consumer");
}

/// Finding 2: the inspection path maps the segment read-only and loads its
/// header with Relaxed loads and fences. Undefined behaviour that does not
/// manifest cannot fail a test; this checks that what inspection reports
/// through the read-only mapping is still right, on a segment whose file
/// can only be opened for reading.
#[test]
fn inspection_through_a_read_only_mapping_reports_the_header() {
    use std::os::unix::fs::PermissionsExt;
    let (segment, producer, consumer) = live("read-only");
    std::fs::set_permissions(segment.path(), std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let info = shmring::inspect::inspect(segment.name()).expect("inspect");
    assert_eq!(info.mode, 0o400);
    assert_eq!(info.consumer.state, shmring::inspect::SlotState::Attached);
    assert!(info.consumer.alive && info.producers[0].alive);
    assert_eq!(info.messages_sent, 3);
    assert_eq!((info.head, info.tail), (consumer.position(), producer.position()));
    assert_eq!(info.pending_messages(), 3);
}

/// Finding 3, consumer side: once a handle has returned `Corrupted` it
/// keeps returning it, even if the bytes that were wrong are repaired.
#[test]
fn corrupted_stays_reported_by_the_consumer_after_the_scribble_is_repaired() {
    let (segment, _producer, mut consumer) = live("sticky-consumer");
    let original = segment.read_u64(DATA_AT);
    segment.write_at(DATA_AT, &0xDEAD_BEEF_0BAD_F00Du64.to_le_bytes());
    let mut buf = Vec::new();
    let first = match consumer.try_recv(&mut buf) {
        Err(TryRecvError::Corrupted(c)) => c,
        other => panic!("the scribble was not reported: {other:?}"),
    };
    segment.write_at(DATA_AT, &original.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Corrupted(first.clone())));
    assert!(matches!(consumer.try_read(), Err(TryRecvError::Corrupted(ref c)) if *c == first));
    assert_eq!(consumer.recv(&mut buf), Err(RecvError::Corrupted(first.clone())));
    assert_eq!(
        consumer.recv_timeout(&mut buf, Duration::from_secs(1)),
        Err(RecvTimeoutError::Corrupted(first.clone()))
    );
    assert!(matches!(consumer.read(), Err(RecvError::Corrupted(ref c)) if *c == first));
    assert!(
        matches!(consumer.read_timeout(Duration::from_secs(1)), Err(RecvTimeoutError::Corrupted(ref c)) if *c == first)
    );
}

/// Finding 3, producer side.
#[test]
fn corrupted_stays_reported_by_the_producer_after_the_scribble_is_repaired() {
    let (segment, mut producer, mut consumer) = live("sticky-producer");
    segment.write_at(HEAD_AT, &3u64.to_le_bytes());
    let first = match (0..200).map(|_| producer.try_send(&[0; 100])).find(|r| r.is_err()) {
        Some(Err(TrySendError::Corrupted(c))) => c,
        other => panic!("the misaligned head was not reported: {other:?}"),
    };
    // Repair the head and make room: a fresh producer could send now.
    segment.write_at(HEAD_AT, &0u64.to_le_bytes());
    let mut buf = Vec::new();
    while consumer.try_recv(&mut buf).is_ok() {}
    assert_eq!(producer.try_send(&[1; 100]), Err(TrySendError::Corrupted(first.clone())));
    assert_eq!(producer.send(&[1; 100]), Err(SendError::Corrupted(first.clone())));
    assert_eq!(
        producer.send_timeout(&[1; 100], Duration::from_secs(1)),
        Err(SendTimeoutError::Corrupted(first.clone()))
    );
    assert!(matches!(producer.try_reserve(8), Err(TrySendError::Corrupted(ref c)) if *c == first));
    assert!(matches!(producer.reserve(8), Err(SendError::Corrupted(ref c)) if *c == first));
    assert!(
        matches!(producer.reserve_timeout(8, Duration::from_secs(1)), Err(SendTimeoutError::Corrupted(ref c)) if *c == first)
    );
    // Another handle has not seen the corruption, and is not affected. (A
    // child another test spawns holds a copy of every open descriptor until
    // its exec, and with it the dropped producer's lock: retry a little.)
    drop(producer);
    let start = std::time::Instant::now();
    let mut again = loop {
        match Producer::open(segment.name(), &options()) {
            Err(Error::AlreadyAttached { .. }) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.expect("a new producer"),
        }
    };
    again.try_send(b"fresh").expect("a new handle sends");
}

/// Finding 4: an MPSC ring whose only producer slot is held by the
/// unfinished claim of a dead producer, with no consumer attached to skip
/// it: the error says exactly that, and once a consumer has skipped the
/// claim a producer attaches again.
#[test]
fn a_slot_held_by_a_dead_producers_claim_is_explained_and_freed_by_the_consumer() {
    let segment = SegmentGuard::new("dead-claim");
    mpsc_options().capacity(1 << 16).max_producers(1).create(segment.name()).expect("create");
    let mut holder = spawn_child("mpsc-hold-claim", &[("SHMRING_NAME", segment.name().to_owned())]);
    wait_for_line(&mut holder, "claimed");
    holder.kill();

    let err = Producer::open(segment.name(), &mpsc_options()).unwrap_err();
    assert!(matches!(err, Error::ProducerSlotBlocked { slot: 0, position: 0, .. }), "{err:?}");
    let text = err.to_string();
    for needle in ["slot 0", "dead producer", "position 0", "no consumer is attached"] {
        assert!(text.contains(needle), "{text:?} lacks {needle:?} ({err:?})");
    }

    let mut consumer = Consumer::open(segment.name(), &mpsc_options()).expect("consumer");
    let mut buf = Vec::new();
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected));
    assert_eq!(consumer.stats().torn_records, 1);
    let producer = Producer::open(segment.name(), &mpsc_options()).expect("the slot is free once skipped");
    assert_eq!(producer.slot(), 0);
}

/// Finding 5: a descriptor that is not a memfd (here a FIFO, which opening
/// read-write would not even block on, and a directory) is refused from
/// what `fstat` says of it, before it is reopened through `/proc/self/fd`.
#[test]
fn descriptors_that_are_not_memfds_are_refused_before_they_are_reopened() {
    use rustix::fs::{FileType, Mode, OFlags};
    let dir = TempDir::new("not-memfd");
    let fifo = dir.0.join("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).expect("mkfifo");
    let fifo_fd = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .expect("open the FIFO");
    let dir_fd = rustix::fs::open(&dir.0, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .expect("open the directory");
    for (fd, what) in [(fifo_fd.as_raw_fd(), "FIFO"), (dir_fd.as_raw_fd(), "directory")] {
        let err = within_10s(move || AnonymousRing::open_inherited(fd, &options()).map(drop)).unwrap_err();
        assert!(matches!(err, Error::NotMemfd { .. }), "{what}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(what) && text.contains("not a memfd"), "{what}: {text:?} ({err:?})");
        assert!(!text.contains("/proc/self/fd"), "{what} was reopened before it was checked: {text}");
    }
    // The same over a socket.
    let (here, there) = std::os::unix::net::UnixStream::pair().expect("pair");
    {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::os::fd::AsFd;
        let fds = [fifo_fd.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(&here, &[std::io::IoSlice::new(b"R")], &mut control, SendFlags::empty()).expect("sendmsg");
    }
    let err = within_10s(move || AnonymousRing::receive_from(&there, &options()).map(drop)).unwrap_err();
    assert!(matches!(err, Error::NotMemfd { found: "a FIFO", .. }), "{err:?}");
    // Descriptor numbers that cannot be open (the test's other threads may
    // open any free number at any moment).
    for not_open in [-1, i32::MAX] {
        let err = AnonymousRing::open_inherited(not_open, &options()).unwrap_err();
        assert!(matches!(err, Error::Io { op: "fstat", .. }), "{err:?}");
    }
}

/// Finding 7: an error that returns a `source()` does not repeat it in its
/// own message (reporters that walk the chain would print it twice); one
/// that forwards its inner error's message returns no source.
#[test]
fn wrapping_errors_do_not_repeat_their_source() {
    let (segment, _producer, mut consumer) = live("error-chain");
    segment.write_at(DATA_AT, &0xDEAD_BEEF_0BAD_F00Du64.to_le_bytes());
    let corrupted = match consumer.try_recv(&mut Vec::new()) {
        Err(TryRecvError::Corrupted(c)) => c,
        other => panic!("{other:?}"),
    };
    let too_large = TooLarge { len: 2000, max: 1024 };
    let io = Error::Io { segment: "/x".into(), op: "mmap", source: std::io::Error::other("boom: no mapping") };
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(io),
        Box::new(Error::Corrupted(corrupted.clone())),
        Box::new(TrySendError::Corrupted(corrupted.clone())),
        Box::new(TrySendError::TooLarge(too_large)),
        Box::new(SendError::Corrupted(corrupted.clone())),
        Box::new(SendError::TooLarge(too_large)),
        Box::new(SendTimeoutError::Corrupted(corrupted.clone())),
        Box::new(SendTimeoutError::TooLarge(too_large)),
        Box::new(TryRecvError::Corrupted(corrupted.clone())),
        Box::new(RecvError::Corrupted(corrupted.clone())),
        Box::new(RecvTimeoutError::Corrupted(corrupted.clone())),
    ];
    for e in &errors {
        let mut chain = Vec::new();
        let mut level: Option<&dyn std::error::Error> = Some(e.as_ref());
        while let Some(err) = level {
            let text = err.to_string();
            if let Some(source) = err.source() {
                assert!(!text.contains(&source.to_string()), "{e:?}: {text:?} repeats its source {source:?}");
            }
            chain.push(text);
            level = err.source();
        }
        // Nothing is lost either: the whole chain still says everything.
        let all = chain.join(": ");
        assert!(
            all.contains("boom: no mapping") || all.contains(corrupted.what()) || all.contains("2000 bytes"),
            "{e:?}: {all}"
        );
    }
}

/// Finding 8: `InvalidOptions` met while opening does not say "cannot
/// create".
#[test]
fn invalid_options_when_opening_do_not_say_create() {
    let segment = SegmentGuard::new("open-options");
    options().create(segment.name()).expect("create");
    let bad = options().liveness_interval(Duration::ZERO);
    for err in [Consumer::open(segment.name(), &bad).unwrap_err(), Producer::open(segment.name(), &bad).unwrap_err()] {
        assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("create") && text.contains("liveness interval"), "{text}");
    }
}

/// Finding 8: a segment with shmring's magic and a state word no version
/// writes is a corrupted shmring segment, not "not a shmring segment (bad
/// magic)".
#[test]
fn a_garbage_state_word_is_reported_as_corruption_not_bad_magic() {
    let segment = SegmentGuard::new("state");
    options().create(segment.name()).expect("create");
    segment.write_at(STATE_AT, &0x5EED_u32.to_le_bytes());
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err:?}: {err}");
    assert!(err.to_string().contains("state 0x00005eed"), "{err}");
    let err = shmring::inspect::inspect(segment.name()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err:?}: {err}");
}
