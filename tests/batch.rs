//! Batches: `send_batch` / `try_send_batch` and `drain` / `try_drain` /
//! `drain_timeout`, within a process and across processes, with a process
//! killed in the middle of a batch.

mod common;

use common::{check_stream, fill_stream, spawn_child, SegmentGuard, TempDir};
use shmring::{payload, Consumer, Producer, RecvError, RingOptions, SendError, TryRecvError, TrySendError};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

use common::both_kinds as kinds;

/// Message `seq` of the integrity stream, 1 to 200 bytes.
fn stream_message(seq: u64) -> Vec<u8> {
    let mut msg = vec![0u8; 1 + (seq * 37 % 200) as usize];
    fill_stream(seq, &mut msg);
    msg
}

/// 20,000 messages of mixed sizes, sent in batches of up to 300 through a
/// 4 KiB ring (so batches wait for room many times) and drained in batches
/// of up to 50, in place and copied, SPSC and MPSC: each arrives once, in
/// order, intact.
#[test]
fn batches_carry_a_stream_through_a_small_ring() {
    for (kind, label) in kinds() {
        for in_place in [true, false] {
            let segment = SegmentGuard::new(&format!("batch-stream-{label}"));
            let options = RingOptions::new().kind(kind).capacity(4096).max_message(256).borrow_in_place(in_place);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            assert_eq!(consumer.borrows_in_place(), in_place);
            const COUNT: u64 = 20_000;
            let sender = std::thread::spawn(move || {
                let mut seq = 0;
                while seq < COUNT {
                    let batch: Vec<Vec<u8>> = (seq..COUNT.min(seq + 1 + seq % 300)).map(stream_message).collect();
                    assert_eq!(producer.send_batch(&batch).expect("send_batch"), batch.len());
                    seq += batch.len() as u64;
                }
                producer
            });
            let mut next = 0u64;
            while next < COUNT {
                let max = 1 + (next % 50) as usize;
                let count = consumer
                    .drain_timeout(max, Duration::from_secs(30), |msg| {
                        check_stream(next, msg).unwrap_or_else(|e| panic!("{label} message {next}: {e}"));
                        next += 1;
                    })
                    .expect("drain");
                assert!(count <= max, "{label}: drained {count} > max {max}");
            }
            let producer = sender.join().expect("sender");
            assert_eq!(producer.stats().messages, COUNT);
            assert_eq!(consumer.stats().messages, COUNT);
            assert_eq!(consumer.try_drain(10, |_| panic!("nothing is left")), Err(TryRecvError::Empty));
        }
    }
}

/// The edges: an empty batch, `max` 0, a message too large (nothing sent),
/// and `try_send_batch` on a ring with room for only part of the batch.
#[test]
fn batch_edges_lose_nothing() {
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("batch-edges-{label}"));
        let options = RingOptions::new().kind(kind).capacity(4096).max_message(1000);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        let none: [&[u8]; 0] = [];
        assert_eq!(producer.send_batch(&none), Ok(0));
        assert_eq!(producer.try_send_batch(&none), Ok(0));
        assert_eq!(consumer.try_drain(0, |_| panic!("max 0")), Ok(0));
        assert_eq!(consumer.drain(0, |_| panic!("max 0")), Ok(0));
        // One message too large: refused before any is sent.
        let batch = [vec![1u8; 10], vec![2u8; 1001], vec![3u8; 10]];
        assert!(matches!(producer.send_batch(&batch), Err(SendError::TooLarge(t)) if t.len == 1001 && t.max == 1000));
        assert!(matches!(producer.try_send_batch(&batch), Err(TrySendError::TooLarge(_))));
        assert_eq!(consumer.try_drain(usize::MAX, |_| panic!("{label}: nothing was sent")), Err(TryRecvError::Empty));
        // 1000-byte messages take 1008-byte records: 4 fit in 4 KiB.
        let batch: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; 1000]).collect();
        let sent = producer.try_send_batch(&batch).expect("some fit");
        assert!((1..20).contains(&sent), "{label}: {sent} of 20 sent into 4 KiB");
        assert_eq!(producer.try_send_batch(&batch[sent..]), Err(TrySendError::Full));
        let mut got = Vec::new();
        assert_eq!(consumer.try_drain(usize::MAX, |msg| got.push(msg.to_vec())), Ok(sent));
        assert_eq!(got, batch[..sent]);
        // The rest goes in a few at a time, and nothing was lost in between.
        let mut sent_now = sent;
        while sent_now < batch.len() {
            sent_now += producer.try_send_batch(&batch[sent_now..]).expect("room again");
            consumer.drain(usize::MAX, |msg| got.push(msg.to_vec())).expect("drain");
        }
        assert_eq!(got, batch);
    }
}

/// A long drain releases space as it goes (every quarter of the ring), so
/// a producer refills the ring while the batch is still being handled; a
/// message whose handler panics is consumed, and the ring goes on.
#[test]
fn a_long_drain_releases_space_as_it_goes_and_survives_a_panic() {
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("batch-release-{label}"));
        let options = RingOptions::new().kind(kind).capacity(4096).max_message(120);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        let msg = [7u8; 120];
        let mut queued = 0;
        while producer.try_send(&msg).is_ok() {
            queued += 1;
        }
        let mut refilled = 0;
        let mut handed = 0;
        consumer
            .try_drain(queued, |_| {
                handed += 1;
                if producer.try_send(&msg).is_ok() {
                    refilled += 1;
                }
            })
            .expect("drain");
        assert_eq!(handed, queued);
        assert!(refilled > 0, "{label}: no room was released during a drain of a full ring ({queued} messages)");
        // A handler that panics: its message is consumed, the rest (of the
        // refills waiting) stay.
        let mut seen = 0;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            consumer.try_drain(usize::MAX, |_| {
                seen += 1;
                if seen == 2 {
                    panic!("handler fails");
                }
            })
        }));
        assert!(panicked.is_err());
        let rest = consumer.try_drain(usize::MAX, |m| assert_eq!(m, msg)).unwrap_or(0);
        assert_eq!(seen + rest, refilled, "{label}: {seen} seen up to the panic, {rest} after, of {refilled}");
        // Everything consumed was released: the ring takes as many again.
        let mut again = 0;
        while producer.try_send(&msg).is_ok() {
            again += 1;
        }
        assert_eq!(again, queued, "{label}: space held back after the panic");
    }
}

/// A producer process killed while it sends batches (it sends nothing
/// else): the consumer gets a contiguous, intact prefix of the stream, then
/// `Disconnected`; nothing corrupt, nothing out of order.
#[test]
fn a_producer_killed_in_the_middle_of_a_batch_leaves_a_clean_prefix() {
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("batch-kill-producer-{label}"));
        // A ring large enough that the producer seldom waits for room, and
        // batches long enough that it is mostly in the middle of one.
        let options = RingOptions::new()
            .kind(kind)
            .capacity(1 << 20)
            .max_message(64)
            .liveness_interval(Duration::from_millis(20));
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut child = spawn_child(
            "produce-batches",
            &[("SHMRING_NAME", segment.name().into()), ("SHMRING_KIND", label.into()), ("SHMRING_BATCH", "997".into())],
        );
        child.wait_for_line("sending");
        let mut next = 0u64;
        let mut killed = false;
        loop {
            let drained = consumer.drain_timeout(64, Duration::from_secs(30), |msg| {
                let (_, seq) = payload::identify(msg).expect("message too short");
                assert_eq!(seq, next, "{label}: out of order");
                check_stream(seq, msg).unwrap_or_else(|e| panic!("{label} message {seq}: {e}"));
                next += 1;
            });
            match drained {
                Ok(_) => {}
                Err(shmring::RecvTimeoutError::Disconnected) if killed => break,
                Err(e) => panic!("{label}: after {next} messages: {e}"),
            }
            if !killed && next >= 50_000 {
                child.kill();
                killed = true;
            }
        }
        assert!(next >= 50_000, "{label}: {next} messages");
        // A new producer takes over where the killed one's last published
        // message ends, and what it sends arrives.
        let mut producer = Producer::open(segment.name(), &options).expect("a new producer");
        let batch: Vec<Vec<u8>> = (0..100u64).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(producer.send_batch(&batch), Ok(100));
        let mut got = Vec::new();
        while got.len() < 100 {
            consumer
                .drain_timeout(100, Duration::from_secs(10), |msg| got.push(msg.to_vec()))
                .unwrap_or_else(|e| panic!("{label}: the new producer's messages after {}: {e}", got.len()));
        }
        assert_eq!(got, batch, "{label}");
    }
}

/// A consumer process killed in the middle of a drain: a new consumer
/// continues from the last position the drain published, so every message
/// the killed one had been handed but not released comes again, and none
/// is lost. The killed consumer stops inside its drain at a known message,
/// so the kill always lands there, however slow the test process is.
#[test]
fn a_consumer_killed_in_the_middle_of_a_drain_loses_nothing() {
    const HOLD_AT: u64 = 30_000;
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("batch-kill-consumer-{label}"));
        let dir = TempDir::new("batch-kill-consumer");
        let progress_path = dir.0.join("progress");
        std::fs::write(&progress_path, [0u8; 8]).expect("progress file");
        let options = RingOptions::new().kind(kind).capacity(1 << 14).max_message(64);
        let mut producer = Producer::create(segment.name(), &options).expect("create");
        let mut child = spawn_child(
            "drain-progress",
            &[
                ("SHMRING_NAME", segment.name().into()),
                ("SHMRING_KIND", label.into()),
                ("SHMRING_PROGRESS", progress_path.display().to_string()),
                ("SHMRING_HOLD_AT", HOLD_AT.to_string()),
            ],
        );
        child.wait_for_line("attached");
        let progress = std::fs::File::open(&progress_path).expect("progress");
        let read_progress = || {
            let mut seq = [0u8; 8];
            progress.read_exact_at(&mut seq, 0).expect("read progress");
            u64::from_le_bytes(seq)
        };
        // Batches of 16, sent as far as they fit: the child stops taking
        // messages at HOLD_AT, so a blocking send could wait for ever.
        let mut buf = [[0u8; 48]; 16];
        let mut seq = 0u64;
        let mut unsent = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_progress() < HOLD_AT {
            assert!(Instant::now() < deadline, "{label}: the child reached {} of {HOLD_AT}", read_progress());
            if unsent == 0 {
                for msg in &mut buf {
                    fill_stream(seq, msg);
                    seq += 1;
                }
                unsent = buf.len();
            }
            match producer.try_send_batch(&buf[buf.len() - unsent..]) {
                Ok(sent) => unsent -= sent,
                Err(TrySendError::Full) => std::thread::yield_now(),
                Err(e) => panic!("{label}: try_send_batch: {e}"),
            }
        }
        let end = seq - unsent as u64;
        child.kill();
        let handed_out = read_progress();
        let mut consumer = Consumer::open(segment.name(), &options).expect("a new consumer");
        let mut first = None;
        let mut next = None;
        consumer
            .try_drain(usize::MAX, |msg| {
                let (_, s) = payload::identify(msg).expect("message too short");
                check_stream(s, msg).unwrap_or_else(|e| panic!("{label} message {s}: {e}"));
                assert!(next.is_none_or(|n| n == s), "{label}: expected {next:?}, got {s}");
                first.get_or_insert(s);
                next = Some(s + 1);
            })
            .expect("the rest is waiting");
        let first = first.expect("something waits");
        assert_eq!(handed_out, HOLD_AT, "{label}: the child went past where it holds");
        assert!(first <= handed_out, "{label}: the held message {handed_out} was lost (the rest begins at {first})");
        assert_eq!(next, Some(end), "{label}: the stream's end");
        drop(producer);
        assert_eq!(consumer.recv(&mut Vec::new()), Err(RecvError::Disconnected));
    }
}
