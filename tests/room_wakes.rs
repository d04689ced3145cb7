//! A consumer with `RingOptions::defer_room_wakes(true)` wakes producers
//! that wait for room once half the ring is free (by the producers' claim
//! position), or when it finds the ring empty, not on every release: with
//! the ring full, a wake per release made every parked producer send one
//! message and park again, a system call or two per message. What that
//! deferral may and may not cost a producer:
//!
//! * the consumer frees half the ring: the producer is woken at once;
//! * the consumer frees a little and stops: the producer finds the room at
//!   its next liveness check (`liveness_interval`), never later;
//! * `send_timeout` finds room freed without a wake by its deadline;
//! * a garbage claim position (a hostile peer's) never holds a producer up
//!   past the moment the consumer finds the ring empty.
//!
//! And by default (no deferral) a request/reply pair of full rings never
//! waits for a liveness interval: a consumer that frees room and then blocks
//! sending its reply has woken the producer first.

mod common;

use common::{spawn_with_id, wait_until_parked_on, within, Line, SegmentGuard};
use shmring::{Consumer, Producer, RingOptions, TryRecvError, TrySendError, WaitStrategy};
use std::time::{Duration, Instant};

/// The producers' claim position in the segment (the ring header starts
/// 128 bytes in; its producers' line begins with `tail`).
const TAIL: u64 = 128;

const MSG: usize = 100;

fn options(liveness: Duration) -> RingOptions {
    RingOptions::new()
        .capacity(4096)
        .wait(WaitStrategy::Park)
        .liveness_interval(liveness)
        .unlink_on_drop(false)
        .defer_room_wakes(true)
}

/// The thread of a blocked send: when its call ended, and how.
type BlockedSender = std::thread::JoinHandle<(Instant, Result<(), String>)>;

/// A full ring, and a thread blocked sending one more message (with
/// `send`, or `send_timeout(timeout)`); it returns when its call ended, and
/// how.
fn full_ring_and_a_blocked_sender(
    guard: &SegmentGuard,
    liveness: Duration,
    timeout: Option<Duration>,
) -> (Consumer, BlockedSender, u64) {
    let consumer = Consumer::create(guard.name(), &options(liveness)).expect("create");
    let mut producer = Producer::open(guard.name(), &options(liveness)).expect("open");
    let mut sent = 0u64;
    loop {
        match producer.try_send(&[sent as u8; MSG]) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full) => break,
            Err(other) => panic!("fill: {other:?}"),
        }
    }
    let (blocked, tid) = spawn_with_id(move || {
        let outcome = match timeout {
            None => producer.send(&[0xEE; MSG]).map_err(|e| e.to_string()),
            Some(t) => producer.send_timeout(&[0xEE; MSG], t).map_err(|e| e.to_string()),
        };
        (Instant::now(), outcome)
    });
    // Otherwise the consumer's releases below could find nobody to wake or
    // defer.
    wait_until_parked_on(guard.name(), Line::Producers, tid);
    (consumer, blocked, sent)
}

/// Receives three messages: room for the blocked one even where it must
/// wrap (its padding can take up to a record's size), far from half the ring.
fn free_a_little(consumer: &mut Consumer, buf: &mut Vec<u8>) {
    for _ in 0..3 {
        consumer.try_recv(buf).expect("recv");
    }
}

#[test]
fn freeing_half_the_ring_wakes_a_producer_at_once() {
    within(Duration::from_secs(60), "half the ring", || {
        let guard = SegmentGuard::new("rw-half");
        // A minute's liveness interval: only a wake can end the send soon.
        let (mut consumer, blocked, sent) = full_ring_and_a_blocked_sender(&guard, Duration::from_secs(60), None);
        let mut buf = Vec::new();
        for _ in 0..sent.div_ceil(2) + 1 {
            consumer.try_recv(&mut buf).expect("recv");
        }
        let freed = Instant::now();
        let (ended, outcome) = blocked.join().expect("sender");
        outcome.expect("send");
        assert!(ended.duration_since(freed) < Duration::from_secs(10), "the sender was not woken");
        assert!(consumer.stats().futex_wakes >= 1, "no wake was issued");
    });
}

#[test]
fn a_little_room_then_a_stopped_consumer_costs_a_producer_at_most_its_liveness_interval() {
    within(Duration::from_secs(60), "a little room", || {
        let guard = SegmentGuard::new("rw-little");
        let (mut consumer, blocked, _) = full_ring_and_a_blocked_sender(&guard, Duration::from_millis(20), None);
        let mut buf = Vec::new();
        free_a_little(&mut consumer, &mut buf);
        let freed = Instant::now();
        // The consumer now does nothing with the ring.
        let (ended, outcome) = blocked.join().expect("sender");
        outcome.expect("send");
        let waited = ended.duration_since(freed);
        assert!(waited < Duration::from_secs(2), "the sender waited {waited:?} for room freed long before");
        assert_eq!(consumer.stats().futex_wakes, 0, "one message's room woke the sender: no deferral");
    });
}

#[test]
fn send_timeout_takes_room_freed_without_a_wake_by_its_deadline() {
    within(Duration::from_secs(60), "send_timeout", || {
        let guard = SegmentGuard::new("rw-timeout");
        // A minute's liveness interval: the sender sleeps to its deadline.
        let timeout = Duration::from_secs(3);
        let (mut consumer, blocked, _) = full_ring_and_a_blocked_sender(&guard, Duration::from_secs(60), Some(timeout));
        let mut buf = Vec::new();
        free_a_little(&mut consumer, &mut buf);
        let (_, outcome) = blocked.join().expect("sender");
        assert_eq!(outcome, Ok(()), "room was free well before the deadline");
        assert_eq!(consumer.stats().futex_wakes, 0);
    });
}

#[test]
fn a_garbage_claim_position_holds_a_producer_up_only_until_the_consumer_finds_the_ring_empty() {
    within(Duration::from_secs(60), "garbage tail", || {
        let guard = SegmentGuard::new("rw-garbage");
        let (mut consumer, blocked, sent) = full_ring_and_a_blocked_sender(&guard, Duration::from_secs(60), None);
        // As a hostile peer could: every release now looks like too little room.
        guard.write_at(TAIL, &(u64::MAX / 2).to_le_bytes());
        let mut buf = Vec::new();
        for n in 0..sent {
            consumer.try_recv(&mut buf).expect("recv");
            assert_eq!(buf, [n as u8; MSG]);
        }
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty));
        // Finding the ring empty paid the wake it owed.
        let got = consumer.recv_timeout(&mut buf, Duration::from_secs(10)).expect("the blocked message");
        assert_eq!(&buf[..got], [0xEE; MSG]);
        let (_, outcome) = blocked.join().expect("sender");
        outcome.expect("send");
    });
}

/// From a cold review: A sends requests on one ring and drains replies from
/// another; B receives a request, then blocks sending its reply (the reply
/// ring is full until A drains it, and A is blocked sending). With room
/// wakes deferred, B's receive would only owe A a wake and A would wait its
/// whole liveness interval (9.9 s of 10 here); by default B's receive wakes
/// A at once.
#[test]
fn by_default_a_request_reply_pair_of_full_rings_never_waits_for_a_liveness_interval() {
    within(Duration::from_secs(60), "request/reply", || {
        let (requests, replies) = (SegmentGuard::new("rw-req"), SegmentGuard::new("rw-rep"));
        let plain = RingOptions::new()
            .capacity(4096)
            .wait(WaitStrategy::Park)
            .liveness_interval(Duration::from_secs(10))
            .unlink_on_drop(false);
        let mut b_requests = Consumer::create(requests.name(), &plain).expect("create");
        let mut a_requests = Producer::open(requests.name(), &plain).expect("open");
        let mut a_replies = Consumer::create(replies.name(), &plain).expect("create");
        let mut b_replies = Producer::open(replies.name(), &plain).expect("open");
        const M: usize = 120;
        while a_requests.try_send(&[1; M]).is_ok() {}
        while b_replies.try_send(&[2; M]).is_ok() {}
        let (a, tid) = spawn_with_id(move || {
            a_requests.send(&[3; M]).expect("A's send");
            let mut buf = Vec::new();
            while a_replies.try_recv(&mut buf).is_ok() {}
            (a_requests, a_replies)
        });
        // A parks on the full request ring.
        wait_until_parked_on(requests.name(), Line::Producers, tid);
        let start = Instant::now();
        let mut buf = Vec::new();
        b_requests.recv(&mut buf).expect("B's recv");
        b_replies.send(&buf).expect("B's reply");
        let stalled = start.elapsed();
        drop(a.join().expect("A"));
        assert!(stalled < Duration::from_secs(2), "B's reply waited {stalled:?}: A was not woken");
    });
}
