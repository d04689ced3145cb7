//! `recv_into` and its `try_` and `_timeout` forms: a fixed buffer, one
//! copy, and a message longer than the buffer left in the ring.

mod common;

use common::{SegmentGuard, StreamSizes};
use shmring::{BufferTooSmall, Consumer, Kind, Producer, RecvError, RecvTimeoutError, RingOptions, TryRecvError};
use std::time::Duration;

fn pair(segment: &SegmentGuard, kind: Kind) -> (Producer, Consumer) {
    let options = RingOptions::new().kind(kind).capacity(1 << 16).max_message(4096);
    let consumer = Consumer::create(segment.name(), &options).expect("create");
    let producer = Producer::open(segment.name(), &options).expect("open");
    (producer, consumer)
}

/// Random sizes against random buffers, both kinds: a message that fits is
/// copied whole and consumed; one that does not is reported with its length,
/// left in the ring, and received whole by the next call with a buffer that
/// takes it. Every payload is checked.
#[test]
fn too_small_buffers_lose_nothing_and_fitting_ones_get_every_byte() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let segment = SegmentGuard::new("recv-into");
        let (mut producer, mut consumer) = pair(&segment, kind);
        let (mut sizes, mut caps) = (StreamSizes::new(1), StreamSizes::new(2));
        let mut buf = vec![0xAAu8; 4096];
        let (mut too_small, mut received) = (0, 0u64);
        for seq in 0..20_000u64 {
            let size = 11 + sizes.next(4000);
            let mut msg = vec![0; size];
            shmring::payload::fill(1, seq, &mut msg);
            producer.send(&msg).expect("send");
            let cap = caps.next(4097) - 1;
            match consumer.try_recv_into(&mut buf[..cap]) {
                Ok(n) => {
                    assert!(n <= cap, "{n} bytes into {cap}");
                    assert_eq!(n, size);
                }
                Err(TryRecvError::BufferTooSmall(e)) => {
                    assert_eq!(e, BufferTooSmall { len: size, capacity: cap });
                    assert!(e.to_string().contains("left in the ring"), "{e}");
                    too_small += 1;
                    let n = consumer.recv_into(&mut buf).expect("the same message, with room");
                    assert_eq!(n, size);
                }
                Err(e) => panic!("{kind:?} try_recv_into: {e}"),
            }
            shmring::payload::check(1, seq, &buf[..size]).unwrap_or_else(|e| panic!("{kind:?} message {seq}: {e}"));
            received += 1;
        }
        assert_eq!(received, 20_000);
        assert!(too_small > 1000, "{kind:?}: only {too_small} buffers were too small");
        assert_eq!(consumer.try_recv_into(&mut buf), Err(TryRecvError::Empty));
    }
}

#[test]
fn empty_timeout_and_disconnected_are_reported_as_by_recv() {
    let segment = SegmentGuard::new("recv-into-errors");
    let (producer, mut consumer) = pair(&segment, Kind::Spsc);
    let mut buf = [0u8; 64];
    assert_eq!(consumer.try_recv_into(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(consumer.recv_into_timeout(&mut buf, Duration::from_millis(20)), Err(RecvTimeoutError::Timeout));
    drop(producer);
    assert_eq!(consumer.recv_into(&mut buf), Err(RecvError::Disconnected));
    // An empty buffer takes an empty message.
    let segment = SegmentGuard::new("recv-into-empty");
    let (mut producer, mut consumer) = pair(&segment, Kind::Mpsc);
    producer.send(b"").expect("send");
    producer.send(b"x").expect("send");
    assert_eq!(consumer.recv_into(&mut []), Ok(0));
    assert_eq!(consumer.recv_into(&mut []), Err(RecvError::BufferTooSmall(BufferTooSmall { len: 1, capacity: 0 })));
    assert_eq!(consumer.recv_into_timeout(&mut buf, Duration::from_secs(5)), Ok(1));
    assert_eq!(buf[0], b'x');
}
#[test]
fn mpsc_discarded_claim_then_too_small_keeps_the_message() {
    let segment = SegmentGuard::new("rv-mpsc");
    let options = RingOptions::new().kind(Kind::Mpsc).capacity(1 << 16).max_message(4096);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    {
        let mut a = Producer::open(segment.name(), &options).expect("open a");
        std::mem::forget(a.reserve(24).expect("reserve")); // leaked claim, discarded on drop
    }
    let mut b = Producer::open(segment.name(), &options).expect("open b");
    b.send(&[7u8; 100]).expect("send");
    let before = consumer.stats();
    let mut small = [0u8; 10];
    for _ in 0..3 {
        match consumer.try_recv_into(&mut small) {
            Err(TryRecvError::BufferTooSmall(e)) => assert_eq!(e.len, 100),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(consumer.stats().messages, before.messages);
    let msg = consumer.read().expect("read in place");
    assert_eq!(&*msg, &[7u8; 100][..]);
    drop(msg);
    assert_eq!(consumer.try_recv_into(&mut small), Err(TryRecvError::Empty));
}

#[test]
fn file_ring_too_small_then_consumer_gone_keeps_the_message() {
    let dir = std::env::temp_dir().join(format!("rv-file-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let options = RingOptions::new().capacity(1 << 16).max_message(4096);
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let options = options.clone().kind(kind);
        let _ = std::fs::remove_file(&dir);
        let mut consumer = Consumer::create_file(&dir, &options).expect("create_file");
        let mut producer = Producer::open_file(&dir, &options).expect("open_file");
        producer.send(b"0123456789abcdef").expect("send");
        producer.send(b"x").expect("send");
        let mut small = [0u8; 4];
        assert!(matches!(consumer.try_recv_into(&mut small), Err(TryRecvError::BufferTooSmall(_))));
        drop(consumer);
        let mut consumer = Consumer::open_file(&dir, &options).expect("reopen");
        let mut buf = [0u8; 64];
        assert_eq!(consumer.try_recv_into(&mut buf), Ok(16), "{kind:?}");
        assert_eq!(&buf[..16], b"0123456789abcdef");
        assert_eq!(consumer.try_recv_into(&mut buf), Ok(1));
        drop(producer);
        drop(consumer);
        let _ = std::fs::remove_file(&dir);
    }
}
