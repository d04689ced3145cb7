//! Model checks of the multi-ring wait (`ring::select`): one waiter parked
//! on two rings at once, over the modelled `futex_waitv` (each word compared
//! and the sleeper queued under that word's bucket lock; a wake of any word
//! wakes it). A lost wake-up is a deadlock.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::ring::{announce, select, withdraw, Consumer, HeapRing, Producer, RingBacking, RoomFor, Selection};
use shmring::Kind;
use shmring::WaitStrategy;
use shmring_loom_tests::model;
use std::sync::atomic::Ordering;
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

/// The async wait (`ring::announce`, a reactor sleeping on the word for the
/// task, `ring::withdraw`): the task announces on an empty ring and hands
/// the word to a reactor thread, which sleeps on it with the modelled
/// `futex_waitv`; a producer sends. The reactor is woken, and the task then
/// withdraws and receives.
#[test]
fn a_task_announced_for_a_reactor_is_woken_through_its_word() {
    model("a_task_announced_for_a_reactor_is_woken_through_its_word", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let sender_ring = Arc::clone(&ring);
        let sender = thread::spawn(move || {
            producer(&sender_ring).send(b"wake", PARK).expect("send");
        });
        let mut consumer = consumer(&ring);
        let mut buf = Vec::new();
        match announce(&mut consumer) {
            // The message came before the re-check.
            None => {}
            Some(announced) => {
                let reactor_ring = Arc::clone(&ring);
                let seq = announced.seq;
                let reactor = thread::spawn(move || {
                    let word = &reactor_ring.header().consumer_wake.seq;
                    shmring::ring::wait_for_reactor(word, seq);
                });
                reactor.join().unwrap();
                withdraw(&consumer, announced);
            }
        }
        assert_eq!(consumer.try_recv(&mut buf).expect("recv"), Some(4));
        assert_eq!(ring.header().consumer_wake.sleepers.load(Ordering::Relaxed) & 0xff, 0, "an announcement was left");
        sender.join().unwrap();
    });
}

/// A wait cancelled (withdrawn without sleeping) while a producer sends:
/// the message is received by a plain parked receive afterwards, and no
/// announcement is left on the line.
#[test]
fn a_cancelled_wait_leaves_no_announcement() {
    model("a_cancelled_wait_leaves_no_announcement", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let sender_ring = Arc::clone(&ring);
        let sender = thread::spawn(move || {
            producer(&sender_ring).send(b"late", PARK).expect("send");
        });
        let mut consumer = consumer(&ring);
        if let Some(announced) = announce(&mut consumer) {
            withdraw(&consumer, announced);
        }
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv");
        assert_eq!(buf, b"late");
        sender.join().unwrap();
        assert_eq!(ring.header().consumer_wake.sleepers.load(Ordering::Relaxed) & 0xff, 0, "an announcement was left");
    });
}
