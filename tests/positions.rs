//! Positions from a hostile or damaged header: near the end of the `u64`
//! position space they are refused with `Corrupted` (never an overflow
//! panic, which the test profile's overflow checks would turn any into), and
//! up to the largest accepted position a ring works as anywhere else. And a
//! stale record exactly one lap old is reported at every capacity.

mod common;

use common::SegmentGuard;
use shmring::{Consumer, Error, Kind, Producer, RingOptions, TryRecvError};
use std::time::Duration;

/// Offsets in the segment of the header's positions (layout version 5).
const TAIL: u64 = 128;
const HEAD: u64 = 256;
/// `layout::MAX_POSITION`.
const MAX_POSITION: u64 = 1 << 63;

fn options(kind: Kind, capacity: u64) -> RingOptions {
    RingOptions::new().kind(kind).capacity(capacity as usize).unlink_on_drop(false)
}

/// A ring made with nobody attached, its head and tail then set to `at`.
fn ring_at(tag: &str, kind: Kind, capacity: u64, at: u64) -> SegmentGuard {
    let segment = SegmentGuard::new(tag);
    options(kind, capacity).create(segment.name()).expect("create");
    segment.write_at(TAIL, &at.to_le_bytes());
    segment.write_at(HEAD, &at.to_le_bytes());
    segment
}

#[test]
fn positions_at_the_end_of_the_position_space_are_refused_without_a_panic() {
    // An MPSC claim position far ahead of a valid head: refused at the claim.
    let segment = ring_at("hostile-tail", Kind::Mpsc, 4096, 0);
    segment.write_at(TAIL, &(u64::MAX - 7).to_le_bytes());
    let mut producer = Producer::open(segment.name(), &options(Kind::Mpsc, 4096)).expect("producer");
    let err = producer.try_send(b"x").expect_err("a claim position beyond head + capacity");
    assert!(err.to_string().contains("claim position"), "{err}");

    for kind in [Kind::Spsc, Kind::Mpsc] {
        for at in [u64::MAX - 7, u64::MAX - 4095, MAX_POSITION + 8] {
            let segment = ring_at("hostile-positions", kind, 4096, at);
            let options = options(kind, 4096);
            match Producer::open(segment.name(), &options) {
                Err(Error::Corrupted(e)) => assert!(e.to_string().contains("largest position"), "{e}"),
                other => panic!("{kind} at {at}: producer {other:?}"),
            }
            match Consumer::open(segment.name(), &options) {
                Err(Error::Corrupted(e)) => assert!(e.to_string().contains("largest position"), "{e}"),
                other => panic!("{kind} at {at}: consumer {other:?}"),
            }
        }
    }
}

/// Just below the largest accepted position, a ring streams several laps,
/// with wraps, exactly as at position 0.
#[test]
fn a_ring_near_the_largest_position_streams_as_usual() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let segment = ring_at("near-max-position", kind, 4096, MAX_POSITION - 4096 + 8);
        let options = options(kind, 4096);
        let mut consumer = Consumer::open(segment.name(), &options).expect("consumer");
        let mut producer = Producer::open(segment.name(), &options).expect("producer");
        let mut buf = Vec::new();
        for seq in 0u32..2000 {
            let len = 1 + (seq as usize * 37) % 300;
            let msg: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
            producer.send_timeout(&msg, Duration::from_secs(5)).expect("send");
            assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(len), "{kind} message {seq}");
            assert_eq!(buf, msg, "{kind} message {seq}");
        }
        assert!(consumer.position() > MAX_POSITION + 100_000, "{kind}: went past the largest attach position");
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty));
        drop((producer, consumer));
    }
}

/// A record left from exactly one lap earlier at the consumer's position:
/// on a 128 MiB ring the position bits alone repeat every lap, and the old
/// stamp delivered it as a message.
#[test]
fn a_record_one_lap_old_is_reported_on_a_128_mib_ring() {
    let capacity = 128 << 20;
    let segment = SegmentGuard::new("stale-lap-128m");
    let options = options(Kind::Spsc, capacity);
    {
        let mut producer = Producer::create(segment.name(), &options).expect("create");
        producer.send(b"from the last lap").expect("send");
    }
    segment.write_at(TAIL, &capacity.to_le_bytes());
    segment.write_at(HEAD, &capacity.to_le_bytes());
    let got = Consumer::open(segment.name(), &options).map(|mut consumer| {
        let mut buf = Vec::new();
        consumer.try_recv(&mut buf).map(|_| buf)
    });
    match got {
        Err(Error::Corrupted(e)) => assert!(e.to_string().contains("stamp of another position"), "{e}"),
        other => panic!("a stale record was not reported: {other:?}"),
    }
}
