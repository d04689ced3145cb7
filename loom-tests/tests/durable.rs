//! Model checks of file rings' space release (see `ring::durable`): the real
//! `ring` code over a heap ring whose header write-back records the `head`
//! the disk would then hold.
//!
//! * SPSC: the producer laps a 64-byte ring while the consumer releases
//!   space as it goes; the producer never writes a byte a recovery could keep
//!   (nothing at or past the disk's `head` plus the capacity), and neither
//!   side is left waiting for the other.
//! * MPSC: the consumer zeroes what it releases, not what it consumes; a
//!   producer's claim never exposes a stale word of the earlier lap.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::ring::{Consumer, HeapRing, Producer};
use shmring::{Kind, WaitStrategy};
use shmring_loom_tests::model;
use std::sync::Arc;

const PARK: WaitStrategy = WaitStrategy::Park;
const CAPACITY: u64 = 64;

fn message(i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| i.wrapping_mul(31).wrapping_add(j) | 0x80).collect()
}

/// Three 12-byte messages (24-byte records, a padding record at the wrap)
/// through a 64-byte file ring. After each send, everything the producer
/// wrote (its records and the terminator after them) lies before the disk's
/// `head` plus the capacity.
#[test]
fn file_producer_writes_only_behind_the_head_on_disk() {
    model("file_producer_writes_only_behind_the_head_on_disk", || {
        let ring = Arc::new(HeapRing::file(CAPACITY as usize, 16));
        let producer_ring = Arc::clone(&ring);
        let producer = thread::spawn(move || {
            let mut producer = Producer::attach(Arc::clone(&producer_ring), 1).expect("attach producer");
            for i in 0..3 {
                producer.send(&message(i, 12), PARK, None).expect("send");
                let written_to = producer.position() + 8;
                let disk_head = producer_ring.synced_head();
                assert!(
                    written_to <= disk_head + CAPACITY,
                    "the producer overwrites what the disk may keep: it wrote up to {written_to}, the disk's head is \
                     {disk_head}"
                );
            }
        });
        let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Spsc).expect("attach consumer");
        let mut buf = Vec::new();
        for i in 0..3 {
            consumer.recv(&mut buf, PARK, None).expect("recv");
            assert_eq!(buf, message(i, 12), "message {i}");
        }
        producer.join().unwrap();
    });
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
                producer.send(&message(i, 24), PARK, None).expect("send");
            }
        });
        let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Mpsc).expect("attach consumer");
        let mut buf = Vec::new();
        for i in 0..3 {
            match consumer.recv(&mut buf, PARK, None) {
                Ok(_) => assert_eq!(buf, message(i, 24), "message {i}"),
                Err(e) => panic!("recv {i}: {e:?}"),
            }
        }
        producer.join().unwrap();
    });
}
