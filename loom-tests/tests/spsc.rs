//! Model checks of the SPSC ring: the real `ring` code, over loom-tracked
//! heap memory, with a modelled futex.
//!
//! Each model is small (a 64-byte ring, a handful of messages) but reaches
//! every state of the protocol: empty, full, wrap-around with a padding
//! record, the consumer parked on empty, the producer parked on full, and a
//! peer detaching while the other is parked.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::error::{RecvStop, SendStop};
use shmring::ring::{Consumer, HeapRing, Producer};
use shmring::Kind;
use shmring::WaitStrategy;
use shmring_loom_tests::model;
use std::sync::Arc;

const PARK: WaitStrategy = WaitStrategy::Park;

/// Message `i`: `len` bytes, all depending on `i`, so a torn or stale read
/// shows as a wrong byte.
fn message(i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| i.wrapping_mul(31).wrapping_add(j) | 0x80).collect()
}

fn attach_consumer(ring: &Arc<HeapRing>) -> Consumer<Arc<HeapRing>> {
    Consumer::attach(Arc::clone(ring), 2, Kind::Spsc).expect("attach consumer")
}

fn attach_producer(ring: &Arc<HeapRing>) -> Producer<Arc<HeapRing>> {
    Producer::attach(Arc::clone(ring), 1).expect("attach producer")
}

/// Four 12-byte messages through a 64-byte ring: records at 0 and 24, padding
/// at 48, then 64 (offset 0) and 88 (offset 24, over the first lap's second
/// record). The producer fills the ring and parks; the consumer drains it and
/// parks. Every message arrives once, in order, intact.
#[test]
fn stream_wraps_pads_fills_and_drains() {
    model("stream_wraps_pads_fills_and_drains", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let producer_ring = Arc::clone(&ring);
        let producer = thread::spawn(move || {
            let mut producer = attach_producer(&producer_ring);
            for i in 0..4 {
                producer.send(&message(i, 12), PARK).expect("send");
            }
        });
        let mut consumer = attach_consumer(&ring);
        let mut buf = Vec::new();
        for i in 0..4 {
            consumer.recv(&mut buf, PARK).expect("recv");
            assert_eq!(buf, message(i, 12), "message {i}");
        }
        producer.join().unwrap();
    });
}

/// Zero-copy on both sides: `reserve` + write in place + `commit`, and a
/// borrowed read guard whose drop frees the space (the producer is blocked on
/// that space for the third message).
#[test]
fn reserve_commit_and_borrowed_read() {
    model("reserve_commit_and_borrowed_read", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let producer_ring = Arc::clone(&ring);
        let producer = thread::spawn(move || {
            let mut producer = attach_producer(&producer_ring);
            for i in 0..3 {
                let mut grant = producer.reserve(12, PARK).expect("reserve");
                grant.copy_from_slice(&message(i, 12));
                grant.commit();
            }
            // A grant dropped without commit is never seen.
            drop(producer.try_reserve(4));
        });
        let mut consumer = attach_consumer(&ring);
        for i in 0..3 {
            let guard = consumer.read(PARK).expect("read");
            assert_eq!(&*guard, &message(i, 12)[..], "message {i}");
        }
        producer.join().unwrap();
        assert_eq!(consumer.try_read().err(), Some(RecvStop::Disconnected));
    });
}

/// The consumer parks on an empty ring; the producer's commit must wake it.
#[test]
fn consumer_parked_on_empty_is_woken() {
    model("consumer_parked_on_empty_is_woken", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let mut consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        let sender = thread::spawn(move || {
            producer.send(&message(7, 5), PARK).expect("send");
            // Keep the producer attached: only the wake-up may end the wait.
            producer
        });
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv");
        assert_eq!(buf, message(7, 5));
        drop(sender.join().unwrap());
    });
}

/// The producer parks on a full ring (two 24-byte messages do not fit in 64
/// bytes together); the consumer's release must wake it.
#[test]
fn producer_parked_on_full_is_woken() {
    model("producer_parked_on_full_is_woken", || {
        let ring = Arc::new(HeapRing::new(64, 24));
        let mut consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        producer.send(&message(1, 24), PARK).expect("first send fits");
        let sender = thread::spawn(move || {
            producer.send(&message(2, 24), PARK).expect("second send");
            producer
        });
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv 1");
        assert_eq!(buf, message(1, 24));
        let producer = sender.join().unwrap();
        consumer.recv(&mut buf, PARK).expect("recv 2");
        assert_eq!(buf, message(2, 24));
        drop(producer);
    });
}

/// A consumer that defers room wakes (`RingOptions::defer_room_wakes`) wakes
/// a producer waiting for room only once half the ring is free by the
/// producers' claim position; here that hint is garbage (as a
/// hostile peer could leave it), so the release of the first message only
/// defers the wake. The consumer must pay it before it parks on the empty
/// ring, or both sleep for ever.
#[test]
fn a_deferred_wake_for_room_is_paid_before_the_consumer_waits() {
    model("a_deferred_wake_for_room_is_paid_before_the_consumer_waits", || {
        let ring = Arc::new(HeapRing::new(64, 24));
        let mut consumer = attach_consumer(&ring);
        consumer.set_defer_room_wakes(true);
        let mut producer = attach_producer(&ring);
        producer.send(&message(1, 24), PARK).expect("first send fits");
        ring.set_claim_hint(u64::MAX / 2);
        let sender = thread::spawn(move || {
            producer.send(&message(2, 24), PARK).expect("second send");
            producer
        });
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv 1");
        assert_eq!(buf, message(1, 24));
        consumer.recv(&mut buf, PARK).expect("recv 2");
        assert_eq!(buf, message(2, 24));
        drop(sender.join().unwrap());
    });
}

/// The producer parks for room that takes three releases to appear (a
/// 24-byte message after three 8-byte ones needs the padding at the wrap as
/// well), so it is woken, finds too little room, and parks again: each
/// release after its new announcement must wake it anew, even though the
/// consumer already woke it once for the same count of sleepers.
#[test]
fn producer_parked_again_is_woken_again() {
    model("producer_parked_again_is_woken_again", || {
        let ring = Arc::new(HeapRing::new(64, 24));
        let mut consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        for i in 0..3 {
            producer.send(&message(i, 8), PARK).expect("small sends fit");
        }
        let sender = thread::spawn(move || {
            producer.send(&message(3, 24), PARK).expect("large send");
            producer
        });
        let mut buf = Vec::new();
        for i in 0..3 {
            consumer.recv(&mut buf, PARK).expect("recv small");
            assert_eq!(buf, message(i, 8));
        }
        let producer = sender.join().unwrap();
        consumer.recv(&mut buf, PARK).expect("recv large");
        assert_eq!(buf, message(3, 24));
        drop(producer);
    });
}

/// A producer that sends and detaches: the consumer, parked or not, drains
/// the message and then gets `Disconnected`, never a hang.
#[test]
fn producer_detach_wakes_parked_consumer() {
    model("producer_detach_wakes_parked_consumer", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let mut consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        let sender = thread::spawn(move || {
            producer.send(&message(3, 9), PARK).expect("send");
            drop(producer);
        });
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("the message sent before the detach");
        assert_eq!(buf, message(3, 9));
        assert_eq!(consumer.recv(&mut buf, PARK), Err(RecvStop::Disconnected));
        sender.join().unwrap();
    });
}

/// A consumer that detaches while the producer is parked on a full ring: the
/// producer gets `Disconnected`, never a hang.
#[test]
fn consumer_detach_wakes_parked_producer() {
    model("consumer_detach_wakes_parked_producer", || {
        let ring = Arc::new(HeapRing::new(64, 24));
        let consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        producer.send(&message(1, 24), PARK).expect("first send fits");
        let dropper = thread::spawn(move || drop(consumer));
        assert_eq!(producer.send(&message(2, 24), PARK), Err(SendStop::Disconnected));
        dropper.join().unwrap();
    });
}

/// A batch of three 24-byte messages through a 64-byte ring, which holds
/// one of them at a time: the producer commits the first quietly, finds the
/// ring full and must wake the consumer (parked in `drain`) before it waits
/// for room itself. Every message arrives once, in order.
#[test]
fn batch_send_wakes_the_consumer_before_waiting_for_room() {
    model("batch_send_wakes_the_consumer_before_waiting_for_room", || batch_through_a_64_byte_ring(3, 24));
}

/// `count` messages of `len` bytes sent as one `send_batch` (waiting for
/// room) while the consumer takes them with `drain` (parking when empty):
/// each arrives once, in order, intact.
fn batch_through_a_64_byte_ring(count: u8, len: usize) {
    let ring = Arc::new(HeapRing::new(64, len as u32));
    let mut consumer = attach_consumer(&ring);
    let mut producer = attach_producer(&ring);
    let messages: Vec<Vec<u8>> = (0..count).map(|i| message(i, len)).collect();
    let batch = messages.clone();
    let sender = thread::spawn(move || {
        let sent = producer.send_batch(&batch, Some(PARK)).expect("no message is too large");
        assert!(sent.stop.is_none(), "batch stopped: {:?}", sent.stop);
        assert_eq!(sent.count, batch.len());
        producer
    });
    let mut received = Vec::new();
    while received.len() < messages.len() {
        let drained = consumer.drain(PARK, messages.len(), |msg| {
            received.push(msg.to_vec());
            true
        });
        assert!(drained.stop.is_none(), "drain stopped: {:?}", drained.stop);
    }
    assert_eq!(received, messages);
    drop(sender.join().unwrap());
}

/// A drain that ends because it reached `max` must still release what it
/// consumed: the producer waits for that room while the consumer, its
/// batch done, only waits for the producer to finish.
#[test]
fn drain_releases_its_space_when_the_batch_ends() {
    model("drain_releases_its_space_when_the_batch_ends", || {
        let ring = Arc::new(HeapRing::new(64, 24));
        let mut consumer = attach_consumer(&ring);
        let mut producer = attach_producer(&ring);
        producer.send(&message(1, 24), PARK).expect("first send fits");
        let sender = thread::spawn(move || {
            producer.send(&message(2, 24), PARK).expect("second send");
            producer
        });
        let mut received = Vec::new();
        let batch = consumer.try_drain(1, |msg| {
            received.push(msg.to_vec());
            true
        });
        assert_eq!((batch.count, received), (1, vec![message(1, 24)]));
        let producer = sender.join().unwrap();
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv 2");
        assert_eq!(buf, message(2, 24));
        drop(producer);
    });
}

/// A batch of five 8-byte messages through a 64-byte ring, which holds three
/// of their 16-byte records (and a terminator): the producer holds back the
/// first record's word and writes the others behind it, then publishes them
/// all with that one Release store when the ring is full (and wakes the
/// consumer, parked in `drain`); the last two follow after the wrap. Every
/// message arrives once, in order, intact.
#[test]
fn batch_publishes_what_it_held_at_once() {
    model("batch_publishes_what_it_held_at_once", || batch_through_a_64_byte_ring(5, 8));
}
