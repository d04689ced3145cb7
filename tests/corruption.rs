//! Property-based corruption: a live segment (SPSC, or MPSC with two
//! producers) with messages in flight gets random bytes written into its
//! header, positions, claim lines, record headers and data region; every call
//! then returns in-bounds data or a clear error, never a panic, a fault or a
//! hang.
//!
//! Built with debug assertions and overflow checks (see `[profile.test]`), so
//! an arithmetic overflow on untrusted values would fail the case too.

mod common;

use common::SegmentGuard;
use proptest::prelude::*;
use shmring::*;
use std::time::Duration;

const CAPACITY: u64 = 8192;
const MAX: usize = 512;
const DATA_AT: u64 = layout::HEADER_BYTES;
const TAIL_AT: u64 = 128;
const HEAD_AT: u64 = 256;
/// The producer claim lines (128 bytes each: start, end, messages).
const CLAIMS_AT: u64 = 128 + 1664;
const HEADER_END: u64 = std::mem::size_of::<layout::SegmentHeader>() as u64;

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
    let options = RingOptions::new().capacity(CAPACITY).max_message(MAX as u32).ready_timeout(Duration::from_millis(1));
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
        let segment = SegmentGuard::new("prop");
        let (mut producers, mut consumer, records) = loaded(&segment, kind, &sizes, consume);
        for scribble in &scribbles {
            apply(&segment, &records, scribble);
        }
        let mut buf = Vec::new();
        for (i, (op, len)) in ops.into_iter().enumerate() {
            let producer = &mut producers[i % 2 % (kind.code() as usize)];
            match op {
                0 => if let Ok(n) = consumer.try_recv(&mut buf) { prop_assert!(n <= MAX && buf.len() == n) },
                1 => if let Ok(msg) = consumer.try_read() { prop_assert!(msg.len() <= MAX) },
                2 => if let Ok(n) = consumer.recv_timeout(&mut buf, Duration::from_millis(1)) { prop_assert!(n <= MAX) },
                3 => { let _ = producer.try_send(&vec![7; len]); }
                4 => { let _ = producer.send_timeout(&vec![7; len], Duration::from_millis(1)); }
                5 => if let Ok(mut grant) = producer.try_reserve(len) {
                    prop_assert_eq!(grant.len(), len);
                    grant.fill(9);
                    grant.commit();
                },
                _ => {
                    // A third party attaching or looking gets a verdict too.
                    let _ = Producer::open(segment.name(), &options(kind));
                    let _ = Consumer::open(segment.name(), &options(kind));
                    if let Ok(info) = inspect::inspect(segment.name()) {
                        prop_assert!(info.used_bytes() <= info.capacity);
                    }
                }
            }
        }
    }

    /// Handles use the identity they validated when attaching: scribbling on
    /// it afterwards cannot change sizes under them, and the stream goes on.
    #[test]
    fn identity_scribbles_after_attach_do_not_disturb_the_stream(
        kind in kind(),
        scribbles in prop::collection::vec((0u64..128, prop::collection::vec(any::<u8>(), 1..=8)), 1..8),
        sizes in prop::collection::vec(0..=MAX, 1..200),
    ) {
        let segment = SegmentGuard::new("prop-identity");
        let (mut producers, mut consumer, _) = loaded(&segment, kind, &[], 0);
        for (at, bytes) in &scribbles {
            segment.write_at(*at, &bytes[..bytes.len().min((128 - at) as usize)]);
        }
        let mut buf = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let msg = vec![i as u8; len];
            let n = producers.len();
            producers[i % n].try_send(&msg).expect("send");
            prop_assert_eq!(consumer.try_recv(&mut buf), Ok(len));
            prop_assert_eq!(&buf, &msg);
        }
    }
}
