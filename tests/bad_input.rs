//! Bad input gets a clear error and loses nothing: wrong names, missing or
//! foreign segments, wrong magic, version, kind or size, a bad checksum, and
//! garbage written into a live segment's positions and records.
//!
//! Offsets used here are the ones `shmring::layout` pins at compile time.

mod common;

use common::{clear_corrupted, clear_open_error, within, SegmentGuard};
use shmring::testing::{IdentityFields, MAGIC};
use shmring::*;
use std::time::Duration;

const VERSION_AT: u64 = 8;
const KIND_AT: u64 = 12;
const CAPACITY_AT: u64 = 16;
const MAX_MESSAGE_AT: u64 = 40;
const CREATOR_PID_AT: u64 = 48;
const CHECKSUM_AT: u64 = 56;
const TAIL_AT: u64 = 128;
const HEAD_AT: u64 = 256;
const DATA_AT: u64 = shmring::testing::HEADER_BYTES;

fn options() -> RingOptions {
    RingOptions::new().capacity(8192).max_message(1024).ready_timeout(Duration::from_millis(50))
}

/// A segment made and left by `RingOptions::create`, attached by nobody.
fn made(tag: &str) -> SegmentGuard {
    let segment = SegmentGuard::new(tag);
    options().create(segment.name()).expect("create");
    segment
}

fn identity(segment: &SegmentGuard) -> IdentityFields {
    let file = segment.file();
    let mut raw = [0u8; 64];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut raw, 0).expect("read header");
    let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
    IdentityFields {
        magic: u64_at(0),
        version: u32_at(8),
        kind: u32_at(12),
        capacity: u64_at(16),
        data_offset: u64_at(24),
        total_size: u64_at(32),
        max_message: u32_at(40),
        max_producers: u32_at(44),
        creator_pid: u32_at(48),
        creator_uid: u32_at(52),
    }
}

/// Writes `value` at `offset` and a checksum that matches, so that only the
/// field itself is wrong.
fn rewrite_consistently(segment: &SegmentGuard, offset: u64, value: &[u8]) {
    segment.write_at(offset, value);
    let sum = identity(segment).checksum();
    segment.write_at(CHECKSUM_AT, &sum.to_le_bytes());
}

#[test]
fn invalid_names_are_refused_before_any_system_call() {
    let long = format!("/{}", "x".repeat(256));
    for (name, why) in [
        ("", "start with '/'"),
        ("noslash", "start with '/'"),
        ("/", "at least one character"),
        ("/a/b", "must not contain '/'"),
        ("/..", "'.' and '..'"),
        ("/.", "'.' and '..'"),
        ("/nul\0byte", "NUL"),
        (long.as_str(), "at most 255 bytes"),
    ] {
        for result in [Producer::create(name, &options()).err(), Consumer::open(name, &options()).err()] {
            match result {
                Some(Error::InvalidName { reason, .. }) => assert!(reason.contains(why), "{name:?}: {reason}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(matches!(unlink(name), Err(Error::InvalidName { .. })));
    }
    assert!(validate_name(&format!("/{}", "x".repeat(255))).is_ok());
}

#[test]
fn missing_segment() {
    let segment = SegmentGuard::new("missing");
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("segment {} does not exist", segment.name()));
    assert!(matches!(unlink(segment.name()), Err(Error::NotFound { .. })));
}

#[test]
fn invalid_options_say_what_is_allowed() {
    let segment = SegmentGuard::new("options");
    for (opts, needle) in [
        (options().capacity(0), "power of two"),
        (options().capacity(12288), "power of two"),
        (options().capacity(1 << 41), "power of two"),
        (options().max_message(0), "max message size 0"),
        (options().max_message(4089), "from 1 to 4088"),
        (options().mode(0o400), "owner read and write"),
        (options().mode(0o4600), "permission bits"),
        (options().liveness_interval(Duration::ZERO), "from 1 ms to 60 s"),
        (options().liveness_interval(Duration::from_secs(61)), "liveness interval 61s"),
        (options().kind(Kind::Mpsc).max_producers(0), "max producers 0"),
        (options().kind(Kind::Mpsc).max_producers(65), "MPSC: 1 to 64"),
        (options().max_producers(2), "SPSC: 1"),
    ] {
        match Producer::create(segment.name(), &opts) {
            Err(e @ Error::InvalidOptions { .. }) => {
                let text = e.to_string();
                assert!(text.contains(needle) && text.contains(segment.name()), "{text}");
            }
            other => panic!("{opts:?}: {other:?}"),
        }
        assert!(!std::path::Path::new(&segment.path()).exists(), "nothing is left behind");
    }
}

/// Every way a handle gets its segment checks the options before anything
/// is created: a file ring's file is not made, and an anonymous ring's
/// handles are refused.
#[test]
fn invalid_options_create_no_file_and_attach_no_handle() {
    let bad = options().liveness_interval(Duration::ZERO);
    let dir = common::TempDir::new("bad-options-file");
    let path = dir.0.join("ring");
    for err in [Producer::create_file(&path, &bad).unwrap_err(), Consumer::create_file(&path, &bad).unwrap_err()] {
        assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
        assert!(!path.exists(), "nothing is left behind");
    }
    let ring = shmring::AnonymousRing::create("bad-options", &options()).expect("anonymous ring");
    assert!(matches!(ring.producer(&bad), Err(Error::InvalidOptions { .. })));
    assert!(matches!(ring.consumer(&bad), Err(Error::InvalidOptions { .. })));
    ring.producer(&options()).expect("valid options attach");
}

#[test]
fn creating_over_an_existing_segment_fails_and_leaves_it_intact() {
    let segment = SegmentGuard::new("exists");
    let keep = options().unlink_on_drop(false);
    let mut producer = Producer::create(segment.name(), &keep).expect("create");
    producer.try_send(b"still here").expect("send");
    let mode = std::fs::metadata(segment.path()).expect("stat").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    for again in [Consumer::create(segment.name(), &options()).err(), options().create(segment.name()).err()] {
        assert!(matches!(again, Some(Error::AlreadyExists { .. })), "{again:?}");
    }
    let mut consumer = Consumer::open(segment.name(), &options()).expect("open");
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(10)).expect("recv");
    assert_eq!(buf, b"still here");
}

#[test]
fn objects_that_are_not_shmring_segments() {
    // Garbage of a plausible size.
    let segment = SegmentGuard::new("garbage");
    std::fs::write(segment.path(), vec![0xA5u8; 8192 + 4096]).expect("write");
    assert!(matches!(Consumer::open(segment.name(), &options()), Err(Error::NotShmring { .. })));
    // Too small to hold a header.
    let small = SegmentGuard::new("small");
    std::fs::write(small.path(), b"hello, not a ring").expect("write");
    assert!(matches!(Producer::open(small.name(), &options()), Err(Error::NotShmring { .. })));
    // Empty: a creator that never finished.
    let empty = SegmentGuard::new("empty");
    std::fs::write(empty.path(), b"").expect("write");
    let err = Producer::open(empty.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::NotReady { .. }), "{err:?}");
    assert!(err.to_string().contains("not initialised"), "{err}");
}

#[test]
fn wrong_version_kind_size_and_checksum() {
    let segment = made("version");
    rewrite_consistently(&segment, VERSION_AT, &3u32.to_le_bytes());
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { found: 3, expected: 5, .. }), "{err:?}");

    let segment = made("kind");
    rewrite_consistently(&segment, KIND_AT, &Kind::Mpsc.code().to_le_bytes());
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::KindMismatch { found: Some(Kind::Mpsc), expected: Kind::Spsc, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("segment {} is an MPSC ring, not SPSC", segment.name()));

    let segment = made("unknown-kind");
    rewrite_consistently(&segment, KIND_AT, &77u32.to_le_bytes());
    assert!(matches!(Consumer::open(segment.name(), &options()), Err(Error::KindMismatch { found: None, .. })));

    let segment = made("checksum");
    segment.write_at(CREATOR_PID_AT, &12345u32.to_le_bytes());
    assert!(matches!(Producer::open(segment.name(), &options()), Err(Error::ChecksumMismatch { .. })));

    let segment = made("truncated");
    segment.file().set_len(DATA_AT + 100).expect("truncate");
    let err = Producer::open(segment.name(), &options()).unwrap_err();
    assert!(
        matches!(err, Error::SizeMismatch { expected, found, .. } if expected == DATA_AT + 8192 && found == DATA_AT + 100),
        "{err:?}"
    );

    let segment = made("capacity");
    rewrite_consistently(&segment, CAPACITY_AT, &12288u64.to_le_bytes());
    let err = Producer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)) && err.to_string().contains("capacity 12288"), "{err}");

    let segment = made("max-message");
    rewrite_consistently(&segment, MAX_MESSAGE_AT, &u32::MAX.to_le_bytes());
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err:?}");
    assert_eq!(identity(&segment).magic, MAGIC, "the test rewrote the right bytes");
}

/// A producer and consumer attached in this process, with a few messages
/// sent: the setting for scribbling on live memory.
fn live(tag: &str) -> (SegmentGuard, Producer, Consumer) {
    let segment = SegmentGuard::new(tag);
    let consumer = Consumer::create(segment.name(), &options()).expect("create");
    let mut producer = Producer::open(segment.name(), &options()).expect("open");
    for i in 0..3u8 {
        producer.try_send(&[i; 40]).expect("send");
    }
    (segment, producer, consumer)
}

#[test]
fn garbage_record_headers_are_reported_not_delivered() {
    let mut buf = Vec::new();
    for (what, word) in [
        ("random", 0xDEAD_BEEF_0BAD_F00Du64),
        ("length over the maximum", (0x4Du64 << 32) | 5000),
        ("stamp of another position", (0x4Du64 << 32) | (77u64 << 40) | 8),
        ("padding that does not reach the end", (0x50u64 << 32) | 8),
        ("unknown tag", (0x11u64 << 32) | 8),
    ] {
        let (segment, _producer, mut consumer) = live("record");
        segment.write_at(DATA_AT, &word.to_le_bytes());
        match consumer.try_recv(&mut buf) {
            Err(TryRecvError::Corrupted(c)) => {
                assert_eq!(c.segment(), segment.name());
                assert!(c.to_string().contains("corrupted"), "{what}: {c}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(matches!(consumer.try_read(), Err(TryRecvError::Corrupted(_))), "{what}");
        assert!(matches!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Err(RecvTimeoutError::Corrupted(_))));
    }
}

#[test]
fn garbage_positions_are_reported() {
    // The consumer's head, as the producer reads it when the ring looks full.
    for head in [u64::MAX, 3, 1 << 50] {
        let (segment, mut producer, _consumer) = live("head");
        segment.write_at(HEAD_AT, &head.to_le_bytes());
        let outcome = (0..200).map(|_| producer.try_send(&[0; 100])).find(|r| r.is_err());
        assert!(matches!(outcome, Some(Err(TrySendError::Corrupted(_)))), "head {head}: {outcome:?}");
        assert!(matches!(
            producer.send_timeout(&[0; 100], Duration::from_secs(5)),
            Err(SendTimeoutError::Corrupted(_))
        ));
    }
    // A tail hint no producer could have left, seen by a producer attaching.
    for tail in [u64::MAX - 7, 1 << 40, 5] {
        let segment = made("tail");
        segment.write_at(TAIL_AT, &tail.to_le_bytes());
        let err = Producer::open(segment.name(), &options()).unwrap_err();
        assert!(matches!(err, Error::Corrupted(_)), "tail {tail}: {err:?}");
    }
    // A misaligned head, seen by a consumer attaching.
    let segment = made("head-attach");
    segment.write_at(HEAD_AT, &13u64.to_le_bytes());
    assert!(matches!(Consumer::open(segment.name(), &options()), Err(Error::Corrupted(_))));
}

#[test]
fn random_scribbles_never_panic_or_hang() {
    // Overwrite random bytes of a live segment, then drive both sides: every
    // call returns, within a deadline, with bounded data or one of the
    // errors it may give (a Corrupted naming the segment among them).
    let mut rng = 0x1234_5678_9ABC_DEF1u64;
    let mut next = move || {
        shmring::payload::xorshift(&mut rng);
        rng
    };
    for case in 0..300 {
        let scribbles: Vec<(u64, Vec<u8>)> = (0..1 + next() % 4)
            .map(|_| {
                let offset = match next() % 3 {
                    0 => next() % 1024,           // identity, positions, wake words
                    1 => DATA_AT + next() % 256,  // the records just written
                    _ => DATA_AT + next() % 8192, // anywhere in the data region
                };
                (offset, next().to_le_bytes()[..1 + (next() % 8) as usize].to_vec())
            })
            .collect();
        let what = format!("case {case}: scribbles {scribbles:?}");
        let outcome = within(Duration::from_secs(60), &what, move || scribbled(&scribbles));
        if let Err(e) = outcome {
            panic!("{what}: {e}");
        }
    }
}

/// One case of `random_scribbles_never_panic_or_hang`.
fn scribbled(scribbles: &[(u64, Vec<u8>)]) -> Result<(), String> {
    let (segment, mut producer, mut consumer) = live("scribble");
    let name = segment.name().to_owned();
    for (offset, bytes) in scribbles {
        segment.write_at(*offset, bytes);
    }
    let mut buf = Vec::new();
    for _ in 0..20 {
        match producer.send_timeout(&[1; 64], Duration::from_millis(1)) {
            Ok(()) | Err(SendTimeoutError::Timeout | SendTimeoutError::Disconnected) => {}
            Err(SendTimeoutError::Corrupted(c)) => clear_corrupted(&c, &name)?,
            Err(e @ (SendTimeoutError::TooLarge(_) | SendTimeoutError::ForkedHandle(_))) => {
                return Err(format!("send_timeout of 64 bytes: {e}"))
            }
        }
        match consumer.recv_timeout(&mut buf, Duration::from_millis(1)) {
            Ok(n) if n <= 1024 && buf.len() == n => {}
            Ok(n) => return Err(format!("recv_timeout: {n} bytes")),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Corrupted(c)) => clear_corrupted(&c, &name)?,
            Err(e @ (RecvTimeoutError::ForkedHandle(_) | RecvTimeoutError::BufferTooSmall(_))) => {
                return Err(format!("recv_timeout: {e}"))
            }
        }
        match consumer.try_read() {
            Ok(msg) if msg.len() <= 1024 => {}
            Ok(msg) => return Err(format!("try_read: {} bytes", msg.len())),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            Err(TryRecvError::Corrupted(c)) => clear_corrupted(&c, &name)?,
            Err(e @ (TryRecvError::ForkedHandle(_) | TryRecvError::BufferTooSmall(_))) => {
                return Err(format!("try_read: {e}"))
            }
        }
        // A fixed buffer smaller than some messages: too small is reported,
        // never a copy past its end.
        let mut fixed = [0u8; 100];
        match consumer.try_recv_into(&mut fixed) {
            Ok(n) if n <= fixed.len() => {}
            Ok(n) => return Err(format!("try_recv_into: {n} bytes into 100")),
            Err(TryRecvError::BufferTooSmall(e)) if e.len > 100 && e.len <= 1024 => {}
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            Err(TryRecvError::Corrupted(c)) => clear_corrupted(&c, &name)?,
            Err(e) => return Err(format!("try_recv_into: {e}")),
        }
        match producer.try_reserve(16) {
            Ok(mut grant) if grant.len() == 16 => {
                grant.fill(3);
                grant.commit();
            }
            Ok(grant) => return Err(format!("try_reserve(16): {} bytes", grant.len())),
            Err(TrySendError::Full | TrySendError::Disconnected) => {}
            Err(TrySendError::Corrupted(c)) => clear_corrupted(&c, &name)?,
            Err(e @ (TrySendError::TooLarge(_) | TrySendError::ForkedHandle(_))) => {
                return Err(format!("try_reserve(16): {e}"))
            }
        }
    }
    // A third party opening the scribbled segment gets a verdict too.
    if let Err(e) = Producer::open(&name, &options()) {
        clear_open_error(&e, &name)?;
    }
    Ok(())
}

#[test]
fn segments_of_another_user_are_refused_unless_allowed() {
    let segment = made("foreign");
    let me = std::fs::metadata(segment.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).expect("stat");
    let other = if me == 65534 { 65533 } else { 65534 };
    if std::os::unix::fs::chown(segment.path(), Some(other), None).is_err() {
        eprintln!("skipped: this user cannot chown (needs root, as in CI)");
        return;
    }
    let err = Consumer::open(segment.name(), &options()).unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("uid {other}")), "{err}");
    Consumer::open(segment.name(), &options().allow_foreign_owner(true)).expect("allowed explicitly");
}

#[test]
fn opening_a_sparse_segment_does_not_allocate_it() {
    // A valid header for a 1 GiB ring, on an object whose data pages are holes.
    let segment = made("sparse");
    let capacity: u64 = 1 << 30;
    rewrite_consistently(&segment, CAPACITY_AT, &capacity.to_le_bytes());
    rewrite_consistently(&segment, 32, &(DATA_AT + capacity).to_le_bytes()); // total_size
    rewrite_consistently(&segment, MAX_MESSAGE_AT, &1024u32.to_le_bytes());
    segment.file().set_len(DATA_AT + capacity).expect("grow sparsely");
    let blocks = |s: &SegmentGuard| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(s.path()).expect("stat"));
    let before = blocks(&segment);
    let mut consumer = Consumer::open(segment.name(), &options()).expect("a valid, if sparse, segment opens");
    assert_eq!(consumer.capacity() as u64, capacity);
    assert_eq!(consumer.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    assert!(blocks(&segment) < before + 1024, "opening allocated {} blocks", blocks(&segment) - before);
}
