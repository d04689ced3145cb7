//! Blocking, timeouts and disconnects, for every wait strategy. These assert
//! behaviour (who waits, who is woken, what is returned); timing bounds are
//! loose on purpose: benches measure speed, tests do not. A test that needs a
//! side to be blocked waits for the event (its thread asleep in the futex),
//! not for a delay; every blocking call without a timeout of its own runs on
//! a thread the test waits for with a deadline.

mod common;

use common::{spawn_with_id, wait_until_parked, within, SegmentGuard};
use shmring::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bound on calls that should return at once, or soon.
const SOON: Duration = Duration::from_secs(30);

const STRATEGIES: [WaitStrategy; 3] =
    [WaitStrategy::BusySpin, WaitStrategy::SpinThenPark(wait::DEFAULT_SPIN), WaitStrategy::Park];

fn pair(tag: &str, wait: WaitStrategy) -> (SegmentGuard, Producer, Consumer) {
    pair_with(tag, RingOptions::new().wait(wait))
}

/// A pair whose waits park for a minute at a time: a parked side stays
/// announced and asleep until it is woken, so a test can see it parked and
/// know that only the other side's wake can end its wait.
fn parking_pair(tag: &str, wait: WaitStrategy) -> (SegmentGuard, Producer, Consumer) {
    pair_with(tag, RingOptions::new().wait(wait).liveness_interval(Duration::from_secs(60)))
}

fn pair_with(tag: &str, options: RingOptions) -> (SegmentGuard, Producer, Consumer) {
    let segment = SegmentGuard::new(tag);
    let options = options.capacity(4096).max_message(256);
    let consumer = Consumer::create(segment.name(), &options).expect("create");
    let producer = Producer::open(segment.name(), &options).expect("open");
    (segment, producer, consumer)
}

/// Fills the ring with 100-byte messages; returns how many fit.
fn fill(producer: &mut Producer) -> usize {
    for sent in 0..1000 {
        match producer.try_send(&[sent as u8; 100]) {
            Ok(()) => {}
            Err(TrySendError::Full) => return sent,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("1000 messages of 100 bytes fitted in 4 KiB")
}

/// Waits until the thread `tid` is blocked: asleep in the futex for the
/// parking strategies; for busy-spinning, which has no such event, it only
/// gives the thread a moment (the caller's "not returned yet" check is then
/// weaker on a slow machine, never wrong).
fn until_blocked(wait: WaitStrategy, tid: i32, what: &str) {
    if wait == WaitStrategy::BusySpin {
        std::thread::sleep(Duration::from_millis(100));
    } else {
        wait_until_parked(tid, what);
    }
}

#[test]
fn full_ring_blocks_the_producer_until_the_consumer_reads() {
    for wait in STRATEGIES {
        let (_segment, mut producer, mut consumer) = parking_pair("block-full", wait);
        let fitted = fill(&mut producer);
        assert!(fitted >= 30, "{fitted} messages of 100 bytes in 4 KiB");
        let sent = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&sent);
        let (sender, tid) = spawn_with_id(move || {
            producer.send(&[0xAA; 100]).expect("send");
            flag.store(true, Ordering::SeqCst);
            producer
        });
        until_blocked(wait, tid, "the producer parking on the full ring");
        assert!(!sent.load(Ordering::SeqCst), "{wait:?}: send returned while the ring was full");
        // Read until the waiting send gets through (one freed record may not
        // be room enough when the next record needs padding at the wrap).
        // However slowly the woken sender runs, once the ring is empty it
        // must get through.
        let mut buf = Vec::new();
        let mut read = 0;
        while !sent.load(Ordering::SeqCst) && read < fitted {
            consumer.recv_timeout(&mut buf, SOON).expect("recv");
            assert_eq!(buf, [read as u8; 100]);
            read += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let producer = within(SOON, "the send waiting for room, with the ring drained", move || sender.join())
            .expect("sender thread");
        for i in read..fitted {
            consumer.recv_timeout(&mut buf, SOON).expect("recv");
            assert_eq!(buf, [i as u8; 100]);
        }
        consumer.recv_timeout(&mut buf, SOON).expect("recv");
        assert_eq!(buf, [0xAA; 100], "the message that waited comes last");
        drop(producer);
    }
}

#[test]
fn empty_ring_blocks_the_consumer_until_a_message_comes() {
    for wait in STRATEGIES {
        let (_segment, mut producer, mut consumer) = parking_pair("block-empty", wait);
        let got = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&got);
        let (receiver, tid) = spawn_with_id(move || {
            let msg = consumer.read().expect("read").to_vec();
            flag.store(true, Ordering::SeqCst);
            (consumer, msg)
        });
        until_blocked(wait, tid, "the consumer parking on the empty ring");
        assert!(!got.load(Ordering::SeqCst), "{wait:?}: recv returned on an empty ring");
        producer.send_timeout(b"wake up", SOON).expect("send");
        let (consumer, msg) = within(SOON, "the read woken by a message", move || receiver.join()).expect("receiver");
        assert_eq!(msg, b"wake up");
        let stats = consumer.stats();
        assert_eq!(stats.messages, 1);
        if wait == WaitStrategy::BusySpin {
            assert_eq!(stats.futex_waits, 0, "busy-spin never sleeps");
        } else {
            // It was seen asleep in the futex before the send, in a park
            // slice of a minute: it had counted its wait, was announced, and
            // only the producer's wake could end it.
            assert!(stats.futex_waits >= 1, "{wait:?}: parked");
            assert!(producer.stats().futex_wakes >= 1, "{wait:?}: the producer woke it");
        }
    }
}

#[test]
fn timeouts_return_in_time() {
    for wait in STRATEGIES {
        let (_segment, mut producer, mut consumer) = pair("timeouts", wait);
        let mut buf = Vec::new();
        let start = Instant::now();
        assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_millis(50)), Err(RecvTimeoutError::Timeout));
        assert_eq!(consumer.read_timeout(Duration::from_millis(50)).err(), Some(RecvTimeoutError::Timeout));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < SOON, "{wait:?}: {waited:?}");

        fill(&mut producer);
        let start = Instant::now();
        assert_eq!(producer.send_timeout(&[1; 100], Duration::from_millis(50)), Err(SendTimeoutError::Timeout));
        assert_eq!(producer.reserve_timeout(100, Duration::from_millis(50)).err(), Some(SendTimeoutError::Timeout));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < SOON, "{wait:?}: {waited:?}");
        assert_eq!(producer.try_reserve(100).err(), Some(TrySendError::Full));
        // A zero timeout is a try.
        assert_eq!(producer.send_timeout(&[1; 100], Duration::ZERO), Err(SendTimeoutError::Timeout));
    }
}

#[test]
fn dropping_the_producer_lets_the_consumer_drain_then_disconnects() {
    let (_segment, mut producer, mut consumer) = pair("drop-producer", WaitStrategy::default());
    for i in 0..3u8 {
        producer.try_send(&[i; 10]).expect("send");
    }
    drop(producer);
    let mut buf = Vec::new();
    for i in 0..3u8 {
        assert_eq!(consumer.try_recv(&mut buf), Ok(10));
        assert_eq!(buf, [i; 10]);
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    let (mut consumer, outcome) = within(SOON, "recv after the producer left", move || {
        let outcome = consumer.recv(&mut Vec::new());
        (consumer, outcome)
    });
    assert_eq!(outcome, Err(RecvError::Disconnected));
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected));
    assert!(matches!(consumer.try_read(), Err(TryRecvError::Disconnected)));
}

#[test]
fn dropping_the_consumer_disconnects_the_producer_even_when_blocked() {
    for wait in STRATEGIES {
        let (_segment, mut producer, consumer) = parking_pair("drop-consumer", wait);
        fill(&mut producer);
        let (sender, tid) = spawn_with_id(move || {
            let outcome = producer.send(&[9; 100]);
            (producer, outcome)
        });
        // Dropped once the send is blocked: its detach must wake the
        // sender (a park slice of a minute would outlast the deadline).
        until_blocked(wait, tid, "the producer parking on the full ring");
        drop(consumer);
        let (mut producer, outcome) =
            within(SOON, "a blocked send after the consumer left", move || sender.join()).expect("sender");
        assert_eq!(outcome, Err(SendError::Disconnected), "{wait:?}");
        // Disconnected means "no room, and nobody to make room": a message
        // that still fits waits in the ring for the next consumer.
        assert_eq!(producer.try_send(&[9; 100]), Err(TrySendError::Disconnected));
        assert_eq!(producer.try_reserve(100).err(), Some(TrySendError::Disconnected));
        assert_eq!(producer.try_send(b"x"), Ok(()));
    }
}

#[test]
fn a_consumer_that_reattaches_continues_where_the_last_one_stopped() {
    let segment = SegmentGuard::new("reattach");
    let options = RingOptions::new().capacity(4096).unlink_on_drop(false);
    let mut producer = Producer::create(segment.name(), &options).expect("create");
    for i in 0..10u8 {
        producer.try_send(&[i; 20]).expect("send");
    }
    let mut buf = Vec::new();
    {
        let mut consumer = Consumer::open(segment.name(), &options).expect("first consumer");
        for i in 0..4u8 {
            consumer.try_recv(&mut buf).expect("recv");
            assert_eq!(buf, [i; 20]);
        }
        // A borrowed message that is never released is delivered again.
        let held = consumer.try_read().expect("read");
        assert_eq!(&*held, &[4u8; 20]);
        std::mem::forget(held);
    }
    let mut consumer = Consumer::open(segment.name(), &options).expect("second consumer");
    for i in 4..10u8 {
        consumer.try_recv(&mut buf).expect("recv");
        assert_eq!(buf, [i; 20]);
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "the producer is still attached");
}

#[test]
fn grants_commit_or_discard() {
    let (_segment, mut producer, mut consumer) = pair("grants", WaitStrategy::default());
    let mut grant = producer.reserve_timeout(5, SOON).expect("reserve");
    grant.copy_from_slice(b"first");
    grant.commit();
    {
        let mut discarded = producer.try_reserve(7).expect("reserve");
        discarded.copy_from_slice(b"dropped");
        // Goes out of scope without commit.
    }
    producer.send_timeout(b"second", SOON).expect("send");
    assert_eq!(&*consumer.read_timeout(SOON).expect("read"), b"first");
    assert_eq!(&*consumer.read_timeout(SOON).expect("read"), b"second");
    assert_eq!(consumer.try_read().err(), Some(TryRecvError::Empty));
}

#[test]
fn sizes_at_the_limits() {
    let (_segment, mut producer, mut consumer) = pair("limits", WaitStrategy::default());
    assert_eq!(producer.max_message(), 256);
    assert_eq!(producer.try_send(&[7; 257]), Err(TrySendError::TooLarge(TooLarge { len: 257, max: 256 })));
    // `send` refuses it at once, whatever the ring holds.
    let (mut producer, outcome) = within(SOON, "send of a message too large", move || {
        let outcome = producer.send(&[7; 257]);
        (producer, outcome)
    });
    assert_eq!(outcome, Err(SendError::TooLarge(TooLarge { len: 257, max: 256 })));
    assert!(matches!(producer.try_reserve(1 << 20), Err(TrySendError::TooLarge(_))));
    // Empty messages are messages too.
    producer.try_send(&[]).expect("empty");
    producer.try_send(&[7; 256]).expect("max");
    let mut buf = vec![1, 2, 3];
    assert_eq!(consumer.try_recv(&mut buf), Ok(0));
    assert!(buf.is_empty());
    assert_eq!(consumer.try_recv(&mut buf), Ok(256));
    assert_eq!(buf, [7; 256]);
    // Every record size at every offset: wraps, padding, exact fits.
    for round in 0..2000u32 {
        let len = (round as usize * 37) % 257;
        let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
        producer.try_send(&msg).expect("send");
        assert_eq!(&*consumer.try_read().expect("read"), &msg[..], "round {round}");
    }
}

#[test]
fn streaming_makes_no_system_calls() {
    let (_segment, mut producer, mut consumer) = pair("no-syscalls", WaitStrategy::BusySpin);
    let sender = std::thread::spawn(move || {
        for i in 0..200_000u32 {
            producer.send_timeout(&i.to_le_bytes(), SOON).expect("send");
        }
        producer.stats()
    });
    let mut buf = Vec::new();
    for i in 0..200_000u32 {
        consumer.recv_timeout(&mut buf, SOON).expect("recv");
        assert_eq!(buf, i.to_le_bytes());
    }
    let sent = within(SOON, "the sender thread", move || sender.join()).expect("sender");
    let received = consumer.stats();
    assert_eq!((sent.messages, received.messages), (200_000, 200_000));
    assert_eq!((sent.bytes, received.bytes), (800_000, 800_000));
    assert_eq!(sent.futex_waits + sent.futex_wakes + received.futex_waits + received.futex_wakes, 0);
}
