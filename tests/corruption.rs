//! Property-based corruption: a live segment (SPSC, or MPSC with two
//! producers) with messages in flight gets random bytes written into its
//! header, positions, claim lines, record headers and data region; every call
//! then returns in-bounds data or a clear error, never a panic, a fault or a
//! hang.
//!
//! Built with debug assertions and overflow checks (see `[profile.test]`), so
//! an arithmetic overflow on untrusted values would fail the case too.
//!
//! Every result is checked: data within bounds, or one of the errors the
//! call may give (`Empty`, `Full`, `Timeout`, `Disconnected`, or a
//! `Corrupted` naming the segment; for a third party's open, an error that
//! names the segment and what is wrong with it). Each case runs on its own
//! thread with a deadline: a case that hangs ends the run, printing the case.
//!
//! The cases proptest found are kept as deterministic tests below (the seeds
//! proptest had saved stopped replaying them when the strategy gained the
//! ring's kind).

mod common;

use common::{clear_corrupted, clear_open_error, SegmentGuard};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shmring::*;
use std::time::Duration;

/// How long one case may run (valgrind, which CI runs this under, is slow).
const CASE_LIMIT: Duration = Duration::from_secs(120);

const CAPACITY: u64 = 8192;
const MAX: usize = 512;
const DATA_AT: u64 = shmring::testing::HEADER_BYTES;
const TAIL_AT: u64 = 128;
const HEAD_AT: u64 = 256;
/// The producer claim lines (128 bytes each: start, end, messages).
const CLAIMS_AT: u64 = 128 + 1664;
const HEADER_END: u64 = shmring::testing::HEADER_SIZE;

/// One act of corruption: raw bytes somewhere, or a field of a record
/// header or a position set to a value chosen to be dangerous.
#[derive(Debug, Clone)]
enum Scribble {
    /// Magic, version, sizes, checksum, state (offset within the line).
    Identity(u64, Vec<u8>),
    /// Positions, counters, wake words, participant slots.
    RingHeader(u64, Vec<u8>),
    /// Anywhere in the data region.
    Data(u64, Vec<u8>),
    /// The length of the `n`th record still in the ring (0: the one at head).
    RecordLength(usize, u32),
    /// Its tag byte.
    RecordTag(usize, u8),
    /// Its position stamp.
    RecordStamp(usize, u32),
    /// `head` (true) or `tail` moved by a small amount, aligned or not.
    Position(bool, i64),
    /// Producer slot `n`'s claim intent set to start at `head` (plus a small
    /// offset) and end `end` bytes later: a forged owner of the record at
    /// the consumer's position.
    Intent(usize, i64, u64),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..=8)
}

fn scribble() -> impl Strategy<Value = Scribble> {
    let record = prop_oneof![3 => Just(0usize), 1 => 0usize..8];
    let length = prop_oneof![0..=(2 * MAX as u32), (MAX as u32)..(CAPACITY as u32 * 2), any::<u32>()];
    prop_oneof![
        (any::<u64>(), bytes()).prop_map(|(at, b)| Scribble::Identity(at, b)),
        (any::<u64>(), bytes()).prop_map(|(at, b)| Scribble::RingHeader(at, b)),
        (any::<u64>(), bytes()).prop_map(|(at, b)| Scribble::Data(at, b)),
        (record.clone(), length).prop_map(|(n, len)| Scribble::RecordLength(n, len)),
        (record.clone(), any::<u8>()).prop_map(|(n, tag)| Scribble::RecordTag(n, tag)),
        (record, 0u32..(1 << 24)).prop_map(|(n, stamp)| Scribble::RecordStamp(n, stamp)),
        (any::<bool>(), -80i64..80).prop_map(|(head, delta)| Scribble::Position(head, delta)),
        (0usize..4, prop_oneof![3 => Just(0i64), 1 => -16i64..16], prop_oneof![0u64..(2 * CAPACITY), any::<u64>()])
            .prop_map(|(n, delta, end)| Scribble::Intent(n, delta, end)),
    ]
}

/// Applies `scribble` to the live segment whose unconsumed records start at
/// the data-region offsets `records`.
fn apply(segment: &SegmentGuard, records: &[u64], scribble: &Scribble) {
    let raw = |offset: u64, bytes: &[u8], end: u64| {
        segment.write_at(offset, &bytes[..bytes.len().min((end - offset) as usize)]);
    };
    let record = |n: usize| records.get(n).or(records.first()).map(|r| DATA_AT + r);
    match scribble {
        Scribble::Identity(at, b) => raw(at % 128, b, 128),
        Scribble::RingHeader(at, b) => raw(128 + at % (HEADER_END - 128), b, HEADER_END),
        Scribble::Data(at, b) => raw(DATA_AT + at % CAPACITY, b, DATA_AT + CAPACITY),
        Scribble::RecordLength(n, len) => {
            if let Some(at) = record(*n) {
                segment.write_at(at, &len.to_le_bytes());
            }
        }
        Scribble::RecordTag(n, tag) => {
            if let Some(at) = record(*n) {
                segment.write_at(at + 4, &[*tag]);
            }
        }
        Scribble::RecordStamp(n, stamp) => {
            if let Some(at) = record(*n) {
                segment.write_at(at + 5, &stamp.to_le_bytes()[..3]);
            }
        }
        Scribble::Position(head, delta) => {
            let at = if *head { HEAD_AT } else { TAIL_AT };
            let moved = segment.read_u64(at).wrapping_add_signed(*delta);
            segment.write_at(at, &moved.to_le_bytes());
        }
        Scribble::Intent(n, delta, end) => {
            let start = segment.read_u64(HEAD_AT).wrapping_add_signed(*delta);
            let line = CLAIMS_AT + 128 * *n as u64;
            segment.write_at(line + 8, &start.wrapping_add(*end).to_le_bytes());
            segment.write_at(line, &start.to_le_bytes());
        }
    }
}

fn options(kind: Kind) -> RingOptions {
    let options =
        RingOptions::new().capacity(CAPACITY as usize).max_message(MAX).ready_timeout(Duration::from_millis(1));
    match kind {
        Kind::Spsc => options,
        Kind::Mpsc => options.kind(Kind::Mpsc).max_producers(4),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Spsc), Just(Kind::Mpsc)]
}

/// Sends messages of `sizes` until full (MPSC: from two producers in turn),
/// then reads `consume` of them; returns the handles and the offsets of the
/// records still in the ring.
fn loaded(segment: &SegmentGuard, kind: Kind, sizes: &[usize], consume: usize) -> (Vec<Producer>, Consumer, Vec<u64>) {
    let mut consumer = Consumer::create(segment.name(), &options(kind)).expect("create");
    let count = if kind == Kind::Mpsc { 2 } else { 1 };
    let mut producers: Vec<Producer> =
        (0..count).map(|_| Producer::open(segment.name(), &options(kind)).expect("open")).collect();
    let mut records = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        // SPSC: the producer's position; MPSC: the shared claim position.
        let before = segment.read_u64(TAIL_AT).max(producers[0].position());
        if producers[i % count].try_send(&vec![i as u8; len]).is_err() {
            break;
        }
        // The record starts at `before`, or at 0 after a padding record.
        let offset = before % CAPACITY;
        records.push(if offset + 8 + (len as u64).div_ceil(8) * 8 > CAPACITY { 0 } else { offset });
    }
    let mut buf = Vec::new();
    for _ in 0..consume.min(records.len()) {
        consumer.try_recv(&mut buf).expect("recv before scribbling");
        records.remove(0);
    }
    (producers, consumer, records)
}

/// Runs one case on its own thread; if it does not end within
/// [`CASE_LIMIT`], prints `case` and ends the whole run (a hang is a failure,
/// and shrinking it would mean waiting out every hanging shrink).
fn bounded(
    case: String,
    body: impl FnOnce() -> Result<(), TestCaseError> + Send + 'static,
) -> Result<(), TestCaseError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(result) => {
            let _ = thread.join();
            result
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the case sent nothing and did not panic"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("a corruption case hung for {CASE_LIMIT:?}: {case}");
            std::process::exit(1);
        }
    }
}

/// Fails the case with `what` unless `check` passed.
fn verdict(check: Result<(), String>, what: &str) -> Result<(), TestCaseError> {
    check.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

/// Scribbles on a loaded segment, then drives every operation against it;
/// every result must be bounded data or an expected, clear error.
fn scribbled_case(
    kind: Kind,
    sizes: &[usize],
    consume: usize,
    scribbles: &[Scribble],
    ops: &[(u8, usize)],
) -> Result<(), TestCaseError> {
    let segment = SegmentGuard::new("prop");
    let name = segment.name().to_owned();
    let (mut producers, mut consumer, records) = loaded(&segment, kind, sizes, consume);
    for scribble in scribbles {
        apply(&segment, &records, scribble);
    }
    let mut buf = Vec::new();
    for (i, &(op, len)) in ops.iter().enumerate() {
        let producer = &mut producers[i % 2 % (kind.code() as usize)];
        match op {
            0 => match consumer.try_recv(&mut buf) {
                Ok(n) => prop_assert!(n <= MAX && buf.len() == n, "try_recv: {n} bytes"),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
                Err(TryRecvError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "try_recv")?,
                Err(e @ (TryRecvError::ForkedHandle(_) | TryRecvError::BufferTooSmall(_))) => {
                    prop_assert!(false, "try_recv: {e}")
                }
            },
            1 => match consumer.try_read() {
                Ok(msg) => prop_assert!(msg.len() <= MAX, "try_read: {} bytes", msg.len()),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
                Err(TryRecvError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "try_read")?,
                Err(e @ (TryRecvError::ForkedHandle(_) | TryRecvError::BufferTooSmall(_))) => {
                    prop_assert!(false, "try_read: {e}")
                }
            },
            2 => match consumer.recv_timeout(&mut buf, Duration::from_millis(1)) {
                Ok(n) => prop_assert!(n <= MAX && buf.len() == n, "recv_timeout: {n} bytes"),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "recv_timeout")?,
                Err(e @ (RecvTimeoutError::ForkedHandle(_) | RecvTimeoutError::BufferTooSmall(_))) => {
                    prop_assert!(false, "recv_timeout: {e}")
                }
            },
            3 => match producer.try_send(&vec![7; len]) {
                Ok(()) | Err(TrySendError::Full | TrySendError::Disconnected) => {}
                Err(TrySendError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "try_send")?,
                Err(TrySendError::ForkedHandle(e)) => prop_assert!(false, "try_send: {e}"),
                Err(TrySendError::TooLarge(e)) => prop_assert!(false, "try_send of {len} bytes (max {MAX}): {e}"),
            },
            4 => match producer.send_timeout(&vec![7; len], Duration::from_millis(1)) {
                Ok(()) | Err(SendTimeoutError::Timeout | SendTimeoutError::Disconnected) => {}
                Err(SendTimeoutError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "send_timeout")?,
                Err(SendTimeoutError::ForkedHandle(e)) => prop_assert!(false, "send_timeout: {e}"),
                Err(SendTimeoutError::TooLarge(e)) => prop_assert!(false, "send_timeout of {len} bytes: {e}"),
            },
            5 => match producer.try_reserve(len) {
                Ok(mut grant) => {
                    prop_assert_eq!(grant.len(), len);
                    grant.fill(9);
                    grant.commit();
                }
                Err(TrySendError::Full | TrySendError::Disconnected) => {}
                Err(TrySendError::Corrupted(c)) => verdict(clear_corrupted(&c, &name), "try_reserve")?,
                Err(TrySendError::ForkedHandle(e)) => prop_assert!(false, "try_reserve: {e}"),
                Err(TrySendError::TooLarge(e)) => prop_assert!(false, "try_reserve of {len} bytes: {e}"),
            },
            _ => {
                // A third party attaching or looking gets a verdict too.
                if let Err(e) = Producer::open(&name, &options(kind)) {
                    verdict(clear_open_error(&e, &name), "a third party's Producer::open")?;
                }
                if let Err(e) = Consumer::open(&name, &options(kind)) {
                    verdict(clear_open_error(&e, &name), "a third party's Consumer::open")?;
                }
                match inspect::inspect(&name) {
                    Ok(info) => prop_assert!(info.used_bytes() <= info.capacity),
                    Err(e) => verdict(clear_open_error(&e, &name), "inspect")?,
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn scribbled_segments_give_bounded_data_or_errors(
        kind in kind(),
        sizes in prop::collection::vec(0..=MAX, 0..60),
        consume in 0usize..60,
        scribbles in prop::collection::vec(scribble(), 1..6),
        ops in prop::collection::vec((0u8..7, 0..=MAX), 10..40),
    ) {
        let case = format!("{kind:?}, sizes {sizes:?}, consume {consume}, scribbles {scribbles:?}, ops {ops:?}");
        bounded(case, move || scribbled_case(kind, &sizes, consume, &scribbles, &ops))?;
    }

    /// Handles use the identity they validated when attaching: scribbling on
    /// it afterwards cannot change sizes under them, and the stream goes on.
    #[test]
    fn identity_scribbles_after_attach_do_not_disturb_the_stream(
        kind in kind(),
        scribbles in prop::collection::vec((0u64..128, prop::collection::vec(any::<u8>(), 1..=8)), 1..8),
        sizes in prop::collection::vec(0..=MAX, 1..200),
    ) {
        let case = format!("{kind:?}, scribbles {scribbles:?}, sizes {sizes:?}");
        bounded(case, move || {
            let segment = SegmentGuard::new("prop-identity");
            let (mut producers, mut consumer, _) = loaded(&segment, kind, &[], 0);
            for (at, bytes) in &scribbles {
                segment.write_at(*at, &bytes[..bytes.len().min((128 - at) as usize)]);
            }
            let mut buf = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                let msg = vec![i as u8; len];
                let n = producers.len();
                prop_assert_eq!(producers[i % n].try_send(&msg), Ok(()));
                prop_assert_eq!(consumer.try_recv(&mut buf), Ok(len));
                prop_assert_eq!(&buf, &msg);
            }
            Ok(())
        })?;
    }
}

/// The harness's proof of power, as docs/verification.md cites it: without the check of
/// a record's length against the maximum, a length of the maximum plus one
/// would be delivered. It is found on the first read, named, and kept.
#[test]
fn a_record_one_byte_over_the_maximum_is_reported_not_delivered() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let segment = SegmentGuard::new("over-max");
        let (_producers, mut consumer, records) = loaded(&segment, kind, &[0; 10], 0);
        apply(&segment, &records, &Scribble::RecordLength(0, MAX as u32 + 1));
        let mut buf = Vec::new();
        for round in 0..10 {
            match consumer.try_recv(&mut buf) {
                Err(TryRecvError::Corrupted(c)) => {
                    assert!(
                        c.what().contains("claims a length of 513 bytes, over the maximum of 512"),
                        "{kind:?}: {c}"
                    );
                    clear_corrupted(&c, segment.name()).unwrap();
                }
                other => panic!("{kind:?}, read {round}: {other:?}"),
            }
        }
    }
}

/// The other cases proptest found (both overflows on a scribbled MPSC claim
/// position, fixed since), replayed through the harness's checks.
#[test]
fn the_cases_proptest_found_stay_fixed() {
    let ops = |codes: &[u8], lens: &[usize]| codes.iter().copied().zip(lens.iter().copied()).collect::<Vec<_>>();
    let tail_minus_one = ops(&[0, 0, 0, 0, 0, 0, 0, 0, 3, 0], &[0; 10]);
    scribbled_case(Kind::Mpsc, &[], 0, &[Scribble::Position(false, -1)], &tail_minus_one).unwrap();
    let sizes = [
        433, 329, 49, 9, 41, 265, 449, 289, 289, 145, 473, 225, 105, 41, 113, 377, 65, 337, 289, 113, 377, 97, 313, 41,
        65, 289, 417, 153, 145, 369, 233, 193, 105, 409,
    ];
    let tail_minus_49 = ops(&[3, 3, 0, 3, 0, 3, 0, 0, 0, 0], &[17, 41, 0, 0, 0, 0, 0, 0, 0, 0]);
    scribbled_case(Kind::Mpsc, &sizes, 0, &[Scribble::Position(false, -49)], &tail_minus_49).unwrap();
    // The first one proptest found, on SPSC and on MPSC.
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let reads = ops(&[0; 10], &[0; 10]);
        scribbled_case(kind, &[0; 10], 0, &[Scribble::RecordLength(0, MAX as u32 + 1)], &reads).unwrap();
    }
}
