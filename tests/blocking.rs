//! Blocking, timeouts and disconnects, for every wait strategy. These assert
//! behaviour (who waits, who is woken, what is returned); timing bounds are
//! loose on purpose: benches measure speed, tests do not.

mod common;

use common::SegmentGuard;
use shmring::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STRATEGIES: [WaitStrategy; 3] =
    [WaitStrategy::BusySpin, WaitStrategy::SpinThenPark(wait::DEFAULT_SPIN), WaitStrategy::Park];

fn pair(tag: &str, wait: WaitStrategy) -> (SegmentGuard, Producer, Consumer) {
    let segment = SegmentGuard::new(tag);
    let options = RingOptions::new().capacity(4096).max_message(256).wait(wait);
    let consumer = Consumer::create(segment.name(), &options).expect("create");
    let producer = Producer::open(segment.name(), &options).expect("open");
    (segment, producer, consumer)
}

/// Fills the ring with 100-byte messages; returns how many fit.
fn fill(producer: &mut Producer) -> usize {
    let mut sent = 0;
    loop {
        match producer.try_send(&[sent as u8; 100]) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full) => return sent,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn full_ring_blocks_the_producer_until_the_consumer_reads() {
    for wait in STRATEGIES {
        let (_segment, mut producer, mut consumer) = pair("block-full", wait);
        let fitted = fill(&mut producer);
        assert!(fitted >= 30, "{fitted} messages of 100 bytes in 4 KiB");
        let sent = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&sent);
        let sender = std::thread::spawn(move || {
            producer.send(&[0xAA; 100]).expect("send");
            flag.store(true, Ordering::SeqCst);
            producer
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sent.load(Ordering::SeqCst), "{wait:?}: send returned while the ring was full");
        // Read until the waiting send gets through (one freed record may not
        // be room enough when the next record needs padding at the wrap).
        let mut buf = Vec::new();
        let mut read = 0;
        while !sent.load(Ordering::SeqCst) {
            assert!(read < fitted, "{wait:?}: the ring is empty and the send still waits");
            consumer.recv(&mut buf).expect("recv");
            assert_eq!(buf, [read as u8; 100]);
            read += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let producer = sender.join().unwrap();
        for i in read..fitted {
            consumer.recv(&mut buf).expect("recv");
            assert_eq!(buf, [i as u8; 100]);
        }
        consumer.recv(&mut buf).expect("recv");
        assert_eq!(buf, [0xAA; 100], "the message that waited comes last");
        drop(producer);
    }
}

#[test]
fn empty_ring_blocks_the_consumer_until_a_message_comes() {
    for wait in STRATEGIES {
        let (_segment, mut producer, mut consumer) = pair("block-empty", wait);
        let got = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&got);
        let receiver = std::thread::spawn(move || {
            let msg = consumer.read().expect("read").to_vec();
            flag.store(true, Ordering::SeqCst);
            (consumer, msg)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "{wait:?}: recv returned on an empty ring");
        producer.send(b"wake up").expect("send");
        let (consumer, msg) = receiver.join().unwrap();
        assert_eq!(msg, b"wake up");
        let stats = consumer.stats();
        assert_eq!(stats.messages, 1);
        if wait == WaitStrategy::BusySpin {
            assert_eq!(stats.futex_waits, 0, "busy-spin never sleeps");
        } else {
            assert!(stats.futex_waits >= 1, "{wait:?}: a 100 ms wait parks");
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
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(5), "{wait:?}: {waited:?}");

        fill(&mut producer);
        let start = Instant::now();
        assert_eq!(producer.send_timeout(&[1; 100], Duration::from_millis(50)), Err(SendTimeoutError::Timeout));
        assert_eq!(producer.reserve_timeout(100, Duration::from_millis(50)).err(), Some(SendTimeoutError::Timeout));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(5), "{wait:?}: {waited:?}");
        assert_eq!(producer.try_reserve(100).err(), Some(TrySendError::Full));
        // A zero timeout is a try.
        assert_eq!(producer.send_timeout(&[1; 100], Duration::ZERO), Err(SendTimeoutError::Timeout));
    }
}

#[test]
fn dropping_the_producer_lets_the_consumer_drain_then_disconnects() {
    let (_segment, mut producer, mut consumer) = pair("drop-producer", WaitStrategy::default());
    for i in 0..3u8 {
        producer.send(&[i; 10]).expect("send");
    }
    drop(producer);
    let mut buf = Vec::new();
    for i in 0..3u8 {
        assert_eq!(consumer.try_recv(&mut buf), Ok(10));
        assert_eq!(buf, [i; 10]);
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    assert_eq!(consumer.recv(&mut buf), Err(RecvError::Disconnected));
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected));
    assert!(consumer.try_read().is_err());
}

#[test]
fn dropping_the_consumer_disconnects_the_producer_even_when_blocked() {
    for wait in STRATEGIES {
        let (_segment, mut producer, consumer) = pair("drop-consumer", wait);
        fill(&mut producer);
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(consumer);
        });
        assert_eq!(producer.send(&[9; 100]), Err(SendError::Disconnected), "{wait:?}");
        dropper.join().unwrap();
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
        producer.send(&[i; 20]).expect("send");
    }
    let mut buf = Vec::new();
    {
        let mut consumer = Consumer::open(segment.name(), &options).expect("first consumer");
        for i in 0..4u8 {
            consumer.recv(&mut buf).expect("recv");
            assert_eq!(buf, [i; 20]);
        }
        // A borrowed message that is never released is delivered again.
        let held = consumer.read().expect("read");
        assert_eq!(&*held, &[4u8; 20]);
        std::mem::forget(held);
    }
    let mut consumer = Consumer::open(segment.name(), &options).expect("second consumer");
    for i in 4..10u8 {
        consumer.recv(&mut buf).expect("recv");
        assert_eq!(buf, [i; 20]);
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "the producer is still attached");
}

#[test]
fn grants_commit_or_discard() {
    let (_segment, mut producer, mut consumer) = pair("grants", WaitStrategy::default());
    let mut grant = producer.reserve(5).expect("reserve");
    grant.copy_from_slice(b"first");
    grant.commit();
    {
        let mut discarded = producer.try_reserve(7).expect("reserve");
        discarded.copy_from_slice(b"dropped");
        // Goes out of scope without commit.
    }
    producer.send(b"second").expect("send");
    assert_eq!(&*consumer.read().expect("read"), b"first");
    assert_eq!(&*consumer.read().expect("read"), b"second");
    assert_eq!(consumer.try_read().err(), Some(TryRecvError::Empty));
}

#[test]
fn sizes_at_the_limits() {
    let (_segment, mut producer, mut consumer) = pair("limits", WaitStrategy::default());
    assert_eq!(producer.max_message(), 256);
    assert_eq!(producer.try_send(&[7; 257]), Err(TrySendError::TooLarge(TooLarge { len: 257, max: 256 })));
    assert_eq!(producer.send(&[7; 257]), Err(SendError::TooLarge(TooLarge { len: 257, max: 256 })));
    assert!(matches!(producer.try_reserve(1 << 20), Err(TrySendError::TooLarge(_))));
    // Empty messages are messages too.
    producer.send(&[]).expect("empty");
    producer.send(&[7; 256]).expect("max");
    let mut buf = vec![1, 2, 3];
    assert_eq!(consumer.recv(&mut buf), Ok(0));
    assert!(buf.is_empty());
    assert_eq!(consumer.recv(&mut buf), Ok(256));
    assert_eq!(buf, [7; 256]);
    // Every record size at every offset: wraps, padding, exact fits.
    for round in 0..2000u32 {
        let len = (round as usize * 37) % 257;
        let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
        producer.send(&msg).expect("send");
        assert_eq!(&*consumer.read().expect("read"), &msg[..], "round {round}");
    }
}

#[test]
fn streaming_makes_no_system_calls() {
    let (_segment, mut producer, mut consumer) = pair("no-syscalls", WaitStrategy::BusySpin);
    let sender = std::thread::spawn(move || {
        for i in 0..200_000u32 {
            producer.send(&i.to_le_bytes()).expect("send");
        }
        producer.stats()
    });
    let mut buf = Vec::new();
    for i in 0..200_000u32 {
        consumer.recv(&mut buf).expect("recv");
        assert_eq!(buf, i.to_le_bytes());
    }
    let sent = sender.join().unwrap();
    let received = consumer.stats();
    assert_eq!((sent.messages, received.messages), (200_000, 200_000));
    assert_eq!((sent.bytes, received.bytes), (800_000, 800_000));
    assert_eq!(sent.futex_waits + sent.futex_wakes + received.futex_waits + received.futex_wakes, 0);
}
