//! The async handles (feature `async`), on tokio's current-thread and
//! multi-thread runtimes: across processes, waiting for messages and for
//! room, cancelled at random, dropped and leaked while waiting.
#![cfg(feature = "async")]

mod common;

use common::{check_stream, fill_stream, spawn_child, within, SegmentGuard};
use shmring::{AsyncConsumer, AsyncProducer, Consumer, Producer, RecvError, RingOptions};
use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

fn runtimes() -> Vec<(&'static str, tokio::runtime::Runtime)> {
    vec![
        ("current-thread", tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")),
        (
            "multi-thread",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("runtime"),
        ),
    ]
}

/// A waker that does nothing (`Waker::noop` is newer than the crate's MSRV).
fn noop_waker() -> Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    Waker::from(std::sync::Arc::new(Noop))
}

/// Sleepers announced on the consumer's and the producer's lines.
fn sleepers(name: &str) -> (u32, u32) {
    let info = shmring::inspect::inspect(name).expect("inspect");
    (info.consumer_wake.sleepers, info.producer_wake.sleepers)
}

/// A producer process streams 20,000 messages through a 4 KiB ring (it
/// waits for room often, the consumer for messages often); the async
/// consumer gets every one, in order, intact, then `Disconnected`; on
/// both runtimes.
#[test]
fn an_async_consumer_receives_a_stream_from_another_process() {
    for (label, runtime) in runtimes() {
        let guard = SegmentGuard::new("async-stream");
        let options = RingOptions::new().capacity(4096);
        let consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer =
            spawn_child("produce", &[("SHMRING_NAME", guard.name().to_owned()), ("SHMRING_COUNT", "20000".into())]);
        let received = within(Duration::from_secs(60), label, move || {
            runtime.block_on(async move {
                let mut consumer = AsyncConsumer::new(consumer);
                let mut buf = Vec::new();
                let mut seq = 0;
                loop {
                    match consumer.recv(&mut buf).await {
                        Ok(_) => {
                            check_stream(seq, &buf).unwrap_or_else(|e| panic!("message {seq}: {e}"));
                            seq += 1;
                        }
                        Err(RecvError::Disconnected) => return seq,
                        Err(e) => panic!("after {seq}: {e}"),
                    }
                }
            })
        });
        assert_eq!(received, 20_000, "{label}");
        producer.kill_or_clean("producer");
    }
}

/// 8 rings, a producer thread each sending 3,000 numbered messages, and a
/// task each receiving them, half the time racing a yield (the wait is
/// dropped after one poll), sometimes a 1 ms timer, so that waits are
/// cancelled at every stage: every message
/// arrives exactly once, in order; afterwards nobody is left announced.
#[test]
fn tasks_cancelled_at_random_lose_and_duplicate_nothing() {
    const RINGS: usize = 8;
    const COUNT: u64 = 3_000;
    for (label, runtime) in runtimes() {
        let guards: Vec<SegmentGuard> = (0..RINGS).map(|_| SegmentGuard::new("async-cancel")).collect();
        let options = RingOptions::new().capacity(4096);
        let consumers: Vec<Consumer> =
            guards.iter().map(|g| Consumer::create(g.name(), &options).expect("create")).collect();
        let senders: Vec<_> = guards
            .iter()
            .map(|g| {
                let mut producer = Producer::open(g.name(), &options).expect("open");
                std::thread::spawn(move || {
                    let mut buf = [0u8; 40];
                    for seq in 0..COUNT {
                        fill_stream(seq, &mut buf[..8 + (seq % 33) as usize]);
                        producer.send_timeout(&buf[..8 + (seq % 33) as usize], Duration::from_secs(30)).expect("send");
                        if seq % 10 == 0 {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                })
            })
            .collect();
        let cancelled = within(Duration::from_secs(120), label, move || {
            runtime.block_on(async move {
                let tasks: Vec<_> = consumers
                    .into_iter()
                    .enumerate()
                    .map(|(ring, consumer)| {
                        tokio::spawn(async move {
                            let mut consumer = AsyncConsumer::new(consumer);
                            let (mut buf, mut seq, mut cancelled) = (Vec::new(), 0, 0u64);
                            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ring as u64;
                            while seq < COUNT {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                // Half the receives race a yield (cancelled after one
                                // poll if still waiting), some a timer.
                                let outcome = match rng % 4 {
                                    0 | 1 => tokio::select! {
                                        r = consumer.recv(&mut buf) => Some(r),
                                        () = tokio::task::yield_now() => None,
                                    },
                                    2 => tokio::time::timeout(Duration::from_millis(1), consumer.recv(&mut buf))
                                        .await
                                        .ok(),
                                    _ => Some(consumer.recv(&mut buf).await),
                                };
                                match outcome {
                                    Some(Ok(_)) => {
                                        check_stream(seq, &buf).unwrap_or_else(|e| panic!("ring {ring} #{seq}: {e}"));
                                        seq += 1;
                                    }
                                    Some(Err(e)) => panic!("ring {ring} after {seq}: {e}"),
                                    None => cancelled += 1,
                                }
                            }
                            (consumer, cancelled)
                        })
                    })
                    .collect();
                let mut cancelled = 0;
                let mut consumers = Vec::new();
                for task in tasks {
                    let (consumer, c) = task.await.expect("task");
                    cancelled += c;
                    consumers.push(consumer);
                }
                (cancelled, consumers)
            })
        });
        for sender in senders {
            sender.join().expect("sender");
        }
        for guard in &guards {
            assert_eq!(sleepers(guard.name()).0, 0, "{label}: a cancelled wait left an announcement");
        }
        assert!(cancelled.0 > 0, "{label}: no wait was ever cancelled, the test proves nothing");
        println!("{label}: {} waits cancelled", cancelled.0);
    }
}

/// A waiting receive that is dropped, and one leaked with `mem::forget`:
/// neither loses a message nor leaves an announcement once the handle is
/// used again (or dropped).
#[test]
fn dropped_and_leaked_waits_leave_nothing_behind() {
    let guard = SegmentGuard::new("async-leak");
    let options = RingOptions::new();
    let mut consumer = AsyncConsumer::new(Consumer::create(guard.name(), &options).expect("create"));
    let mut producer = Producer::open(guard.name(), &options).expect("open");
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut buf = Vec::new();
    {
        let mut pending = std::pin::pin!(consumer.recv(&mut buf));
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        assert_eq!(sleepers(guard.name()).0, 1, "announced while waiting");
    }
    assert_eq!(sleepers(guard.name()).0, 0, "withdrawn when the future is dropped");
    let mut leaked = Box::pin(consumer.recv(&mut buf));
    assert!(leaked.as_mut().poll(&mut cx).is_pending());
    std::mem::forget(leaked);
    assert_eq!(sleepers(guard.name()).0, 1, "a leaked wait stays announced");
    producer.send(b"after the leak").expect("send");
    let mut buf = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(consumer.recv(&mut buf)).expect("recv");
    assert_eq!(buf, b"after the leak");
    assert_eq!(sleepers(guard.name()).0, 0, "the next use withdrew the leaked wait");
    let mut leaked = Box::pin(consumer.recv(&mut buf));
    assert!(leaked.as_mut().poll(&mut cx).is_pending());
    std::mem::forget(leaked);
    drop(consumer);
    drop(producer);
    let info = shmring::inspect::inspect(guard.name());
    assert!(info.is_err() || info.is_ok_and(|i| i.consumer_wake.sleepers == 0), "dropping the handle withdrew it");
}

/// An async producer waits for room and is woken when a consumer process
/// frees it; a borrowed async read.
#[test]
fn an_async_producer_waits_for_room_and_reads_borrow() {
    for (label, runtime) in runtimes() {
        let guard = SegmentGuard::new("async-room");
        let options = RingOptions::new().capacity(4096);
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let producer = Producer::open(guard.name(), &options).expect("open");
        let name = guard.name().to_owned();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for seq in 0..2_000u64 {
                if seq % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                consumer.recv(&mut buf).expect("recv");
                assert_eq!(buf, seq.to_le_bytes().repeat(16), "message {seq}");
            }
            consumer
        });
        within(Duration::from_secs(60), label, move || {
            runtime.block_on(async move {
                let mut producer = AsyncProducer::new(producer);
                for seq in 0..2_000u64 {
                    producer.send(&seq.to_le_bytes().repeat(16)).await.expect("send");
                }
            })
        });
        let consumer = reader.join().expect("reader");
        assert_eq!(sleepers(&name).1, 0, "{label}: the producer withdrew");
        let mut consumer = AsyncConsumer::new(consumer);
        let mut producer = Producer::open(&name, &options).expect("reopen");
        producer.send(b"borrowed").expect("send");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let guard = consumer.read().await.expect("read");
            assert_eq!(&*guard, b"borrowed");
        });
    }
}

/// A forked child has a copy of its parent's reactor but not its thread:
/// a handle the child makes waits through a reactor of its own (it used to
/// hang, registered with the copy), and a handle it inherited fails at once.
#[test]
fn a_forked_child_waits_through_its_own_reactor() {
    let guard = SegmentGuard::new("async-fork");
    let options = RingOptions::new();
    let mut inherited = AsyncConsumer::new(Consumer::create(guard.name(), &options).expect("create"));
    let mut producer = Producer::open(guard.name(), &options).expect("open");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    // The parent's reactor exists before the fork.
    let mut buf = Vec::new();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        producer.send(b"parent").expect("send");
        producer
    });
    runtime.block_on(inherited.recv(&mut buf)).expect("recv");
    drop(sender.join().expect("sender"));
    let child_ring = common::unique_name("async-fork-child");
    let _child_guard = SegmentGuard(child_ring.clone());
    // SAFETY: the child only runs this function's code and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: a watchdog, so a hang fails instead of hanging the test.
        unsafe { libc::alarm(20) };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let inherited_fails =
                matches!(runtime.block_on(inherited.recv(&mut Vec::new())), Err(RecvError::ForkedHandle(_)));
            let options = RingOptions::new().unlink_on_drop(true);
            let mut consumer = AsyncConsumer::new(Consumer::create(&child_ring, &options).expect("create"));
            let mut producer = Producer::open(&child_ring, &options).expect("open");
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                producer.send(b"child").expect("send");
                producer
            });
            let mut buf = Vec::new();
            runtime.block_on(consumer.recv(&mut buf)).expect("recv");
            drop(sender.join());
            inherited_fails && buf == b"child"
        }));
        // SAFETY: leave the child at once, running no destructor of the
        // parent's test state.
        unsafe { libc::_exit(if ok.unwrap_or(false) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child failed or hung: {status:#x}");
}

/// Whether `fd` is readable within `timeout`.
fn readable(fd: &impl rustix::fd::AsFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec::try_from(timeout).expect("timeout");
    rustix::event::poll(&mut fds, Some(&timeout)).expect("poll") == 1
}

/// A consumer's `ReadyFd` in a poll loop, fed by a producer process
/// streaming 20,000 messages through a 4 KiB ring: readable when messages
/// wait (at once when armed over one), not while the ring is empty; every
/// message arrives in order; nothing is left announced.
#[test]
fn a_ready_fd_drives_a_consumer_in_a_poll_loop() {
    let guard = SegmentGuard::new("async-ready-fd");
    let options = RingOptions::new().capacity(4096);
    let mut ready = shmring::ReadyFd::consumer(Consumer::create(guard.name(), &options).expect("create")).expect("fd");
    ready.arm();
    assert!(!readable(&ready, Duration::ZERO), "readable with nothing to read");
    let mut producer =
        spawn_child("produce", &[("SHMRING_NAME", guard.name().to_owned()), ("SHMRING_COUNT", "20000".into())]);
    let received = within(Duration::from_secs(60), "poll loop", move || {
        let (mut buf, mut seq, mut wakes) = (Vec::new(), 0u64, 0u64);
        loop {
            assert!(readable(&ready, Duration::from_secs(20)), "no readiness after {seq} messages");
            wakes += 1;
            loop {
                match ready.get_mut().try_recv(&mut buf) {
                    Ok(_) => {
                        check_stream(seq, &buf).unwrap_or_else(|e| panic!("message {seq}: {e}"));
                        seq += 1;
                    }
                    Err(shmring::TryRecvError::Empty) => break,
                    Err(shmring::TryRecvError::Disconnected) => return (seq, wakes, ready),
                    Err(e) => panic!("after {seq}: {e}"),
                }
            }
            ready.arm();
        }
    });
    assert_eq!(received.0, 20_000);
    println!("{} readiness wake-ups for 20,000 messages", received.1);
    producer.kill_or_clean("producer");
    assert_eq!(sleepers(guard.name()).0, 0);
    drop(received.2);
}

/// A producer's `ReadyFd`: armed on a full ring it stays unreadable until
/// the consumer frees room for its length, then the send fits.
#[test]
fn a_ready_fd_says_when_a_producer_has_room() {
    let guard = SegmentGuard::new("async-ready-room");
    let options = RingOptions::new().capacity(4096);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let mut ready =
        shmring::ReadyFd::producer(Producer::open(guard.name(), &options).expect("open"), 1000).expect("fd");
    while ready.get_mut().try_send(&[3; 1000]).is_ok() {}
    ready.arm();
    // Readiness may come early (the reactor also wakes every wait at its
    // slice, and tests in this process share it): while the ring is full,
    // every wake-up must find the send still full.
    let full_until = std::time::Instant::now() + Duration::from_millis(30);
    while readable(&ready, full_until.saturating_duration_since(std::time::Instant::now())) {
        assert!(matches!(ready.get_mut().try_send(&[3; 1000]), Err(shmring::TrySendError::Full)));
        ready.arm();
    }
    let mut buf = Vec::new();
    consumer.recv(&mut buf).expect("recv");
    consumer.recv(&mut buf).expect("recv");
    assert!(readable(&ready, Duration::from_secs(10)), "no readiness once room was freed");
    ready.get_mut().try_send(&[4; 1000]).expect("room as reported");
    assert_eq!(sleepers(guard.name()).1, 0, "the armed wait was withdrawn");
    ready.arm();
    assert!(readable(&ready, Duration::ZERO) || ready.get_mut().try_send(&[5; 1000]).is_err());
    drop(ready);
    assert_eq!(sleepers(guard.name()).1, 0, "dropping it withdrew the armed wait");
}
