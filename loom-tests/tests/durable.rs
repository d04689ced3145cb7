//! Model checks of file rings' space reuse (see `ring::durable`): the real
//! `ring` code over a heap ring whose header write-back records the `head`,
//! `kept_from` and durable tail the disk would then hold.
//!
//! * SPSC: the producer laps a 64-byte ring while the consumer flushes once
//!   (before consuming, or after the first message) and releases space as it
//!   goes; the producer never overwrites a record a
//!   recovery could keep (from the later of the disk's `head` and
//!   `kept_from`, to the durable tail: the last written-back header's or the
//!   current one's), the flush covers everything committed before it, and
//!   neither side is left waiting for the other.
//! * MPSC: the consumer zeroes what it releases, not what it consumes; a
//!   producer's claim never exposes a stale word of the earlier lap.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::record::decode;
use shmring::ring::{persist, Consumer, HeapRing, Producer, RingBacking};
use shmring::{Kind, WaitStrategy};
use shmring_loom_tests::model;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const PARK: WaitStrategy = WaitStrategy::Park;
const CAPACITY: u64 = 64;

fn message(i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| i.wrapping_mul(31).wrapping_add(j) | 0x80).collect()
}

/// Every record a recovery could keep now decodes as a record of its
/// position: from the later of the disk's `head` (the oldest it can hold)
/// and `kept_from`, to the durable tail, for the header the disk holds and
/// for the one in memory (the kernel may write it back any time).
fn assert_kept_records_intact(ring: &HeapRing, max_message: u32, when: &str) {
    let (disk_head, disk_kept_from, disk_tail) = ring.synced_header();
    let persistence = &ring.header().persistence;
    // The tail first: a `kept_from` read after it is as new or newer, a pair
    // some header the disk could get holds.
    let tail = persistence.durable_tail.load(Ordering::Acquire);
    let kept_from = persistence.kept_from.load(Ordering::Acquire);
    for (from, to) in [(disk_kept_from, disk_tail), (kept_from, tail)] {
        let mut at = disk_head.max(from);
        while at < to {
            let word = ring.word(at);
            match decode(word, at, CAPACITY, max_message) {
                Ok(record) => at += record.size(),
                Err(what) => panic!(
                    "the producer overwrites what the disk may keep ({when}): at {at}, kept from {from} to {to}, \
                     disk head {disk_head}: {what} (disk: kept from {disk_kept_from} to {disk_tail}; memory: kept \
                     from {kept_from} to {tail}, head {}, durable head {}, flush pending {})",
                    ring.header().consumer.head.load(Ordering::Acquire),
                    persistence.durable_head.load(Ordering::Acquire),
                    persistence.flush_pending.load(Ordering::Acquire),
                ),
            }
        }
    }
}

/// Three 24-byte messages (32-byte records) through a 64-byte file ring,
/// the third on the first's space; the consumer flushes after receiving
/// `flush_after` messages. After each send and at the end, every record a
/// recovery could keep is intact; the flush covers everything committed
/// before it.
fn lap_with_a_flush(flush_after: usize) {
    const LEN: usize = 24;
    let ring = Arc::new(HeapRing::file(CAPACITY as usize, LEN as u32));
    let producer_ring = Arc::clone(&ring);
    let producer = thread::spawn(move || {
        let mut producer = Producer::attach(Arc::clone(&producer_ring), 1).expect("attach producer");
        for i in 0..3 {
            producer.send(&message(i, LEN), PARK).expect("send");
            assert_kept_records_intact(&producer_ring, LEN as u32, &format!("after send {i}"));
        }
    });
    let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Spsc).expect("attach consumer");
    let mut buf = Vec::new();
    for i in 0..3 {
        if i == flush_after {
            let committed = ring.header().producer.tail.load(Ordering::Acquire);
            let write_back_header = || if ring.sync_header() { Ok(()) } else { Err("header write-back") };
            persist::flush(&*ring, Kind::Spsc, |_, _| Ok(()), write_back_header).expect("flush");
            let durable_tail = ring.header().persistence.durable_tail.load(Ordering::Acquire);
            assert!(
                durable_tail >= committed,
                "the flush stopped short: durable tail {durable_tail}, committed before it {committed}"
            );
        }
        consumer.recv(&mut buf, PARK).expect("recv");
        assert_eq!(buf, message(i as u8, LEN), "message {i}");
    }
    producer.join().unwrap();
    assert_kept_records_intact(&ring, LEN as u32, "at the end");
}

/// Flushed before anything is consumed: the first record is in the flushed
/// zone, so the third may land on it only once a `head` past it is on the
/// disk.
#[test]
fn file_producer_stays_out_of_the_flushed_zone() {
    model("file_producer_stays_out_of_the_flushed_zone", || lap_with_a_flush(0));
}

/// Flushed after the first message is consumed: the producer may overwrite
/// it meanwhile (nothing was flushed before), so the flush must start at the
/// consumer's `head`, not at the durable head.
#[test]
fn file_flush_starts_at_the_consumer_s_head() {
    model("file_flush_starts_at_the_consumer_s_head", || lap_with_a_flush(1));
}

/// Three 24-byte messages (32-byte records) from one MPSC producer through a
/// 64-byte file ring: the third claim lands at 64, on the first record's
/// space, released (and zeroed) by then; the consumer may poll that word
/// between the producer's claim and its marker.
/// Every message arrives, intact and in order.
#[test]
fn file_mpsc_claims_land_on_zeroed_space() {
    model("file_mpsc_claims_land_on_zeroed_space", || {
        let ring = Arc::new(HeapRing::file(CAPACITY as usize, 24).with_producers(1));
        let producer_ring = Arc::clone(&ring);
        let producer = thread::spawn(move || {
            let mut producer = Producer::attach_mpsc(producer_ring, 10, 0).expect("attach producer");
            for i in 0..3 {
                producer.send(&message(i, 24), PARK).expect("send");
            }
        });
        let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Mpsc).expect("attach consumer");
        let mut buf = Vec::new();
        for i in 0..3 {
            match consumer.recv(&mut buf, PARK) {
                Ok(_) => assert_eq!(buf, message(i, 24), "message {i}"),
                Err(e) => panic!("recv {i}: {e:?}"),
            }
        }
        producer.join().unwrap();
    });
}
