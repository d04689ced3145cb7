//! Model checks of the multi-ring wait (`ring::select`): one waiter parked
//! on two rings at once, over the modelled `futex_waitv` (each word compared
//! and the sleeper queued under that word's bucket lock; a wake of any word
//! wakes it). A lost wake-up is a deadlock.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::ring::{select, Consumer, HeapRing, Producer, RoomFor, Selection};
use shmring::Kind;
use shmring::WaitStrategy;
use shmring_loom_tests::model;
use std::sync::Arc;
use std::time::Duration;

const PARK: WaitStrategy = WaitStrategy::Park;

fn consumer(ring: &Arc<HeapRing>) -> Consumer<Arc<HeapRing>> {
    Consumer::attach(Arc::clone(ring), 2, Kind::Spsc).expect("attach consumer")
}

fn producer(ring: &Arc<HeapRing>) -> Producer<Arc<HeapRing>> {
    Producer::attach(Arc::clone(ring), 1).expect("attach producer")
}

/// A consumer parked on two empty rings; a producer sends one message on
/// ring `active` (first or second) only. The waiter is woken, reports that
/// ring, and receives the message.
fn woken_by(active: usize) {
    let rings = [Arc::new(HeapRing::new(64, 16)), Arc::new(HeapRing::new(64, 16))];
    let sender_ring = Arc::clone(&rings[active]);
    let sender = thread::spawn(move || {
        producer(&sender_ring).send(b"wake", PARK).expect("send");
    });
    let mut consumers = [consumer(&rings[0]), consumer(&rings[1])];
    let mut selection = Selection::default();
    select(&mut consumers, PARK, Duration::MAX, &mut selection);
    assert_eq!(selection.ready, [active]);
    let mut buf = Vec::new();
    assert_eq!(consumers[active].try_recv(&mut buf).expect("recv"), Some(4));
    assert_eq!(buf, b"wake");
    sender.join().unwrap();
}

#[test]
fn a_waiter_on_two_rings_is_woken_by_either() {
    model("a_waiter_on_two_rings_is_woken_by_either (first)", || woken_by(0));
    model("a_waiter_on_two_rings_is_woken_by_either (second)", || woken_by(1));
}

/// A producer parked in a select for room on two full rings; the consumer
/// of the second frees its space (both records: after one, the next would
/// need padding to the end of the region as well). The waiter is woken and reports it.
#[test]
fn a_producer_waiting_for_room_on_two_rings_is_woken_by_either() {
    model("a_producer_waiting_for_room_on_two_rings_is_woken_by_either", || {
        let rings = [Arc::new(HeapRing::new(64, 16)), Arc::new(HeapRing::new(64, 16))];
        let mut producers = [producer(&rings[0]), producer(&rings[1])];
        for p in &mut producers {
            // Two 16-byte messages (24-byte records) fill 64 bytes with
            // the terminator.
            assert!(p.try_send(&[1; 16]).expect("send"));
            assert!(p.try_send(&[2; 16]).expect("send"));
            assert!(!p.try_send(&[3; 16]).expect("send"), "full");
        }
        let reader_ring = Arc::clone(&rings[1]);
        let reader = thread::spawn(move || {
            let mut consumer = consumer(&reader_ring);
            let mut buf = Vec::new();
            consumer.recv(&mut buf, PARK).expect("recv");
            consumer.recv(&mut buf, PARK).expect("recv");
            // Held until the end: dropping it would wake the producers too.
            consumer
        });
        let [first, second] = &mut producers;
        let mut rooms = [RoomFor { producer: first, len: 16 }, RoomFor { producer: second, len: 16 }];
        let mut selection = Selection::default();
        select(&mut rooms, PARK, Duration::MAX, &mut selection);
        assert_eq!(selection.ready, [1]);
        assert!(producers[1].try_send(&[4; 16]).expect("send"), "room as reported");
        drop(reader.join().unwrap());
    });
}
