//! When a consumer learns that its producers are gone, and what a producer
//! that leaks a grant costs: the end of a stream is reported at once and
//! consistently by every kind of receive call, a kill within the liveness
//! interval whatever the rate of calls, and a leaked grant never holds up
//! anyone but its own producer's next claim.

mod common;

use common::{spawn_child, wait_for_line, SegmentGuard};
use shmring::{Consumer, Kind, Producer, RecvError, RecvTimeoutError, RingOptions, TryRecvError, WaitStrategy};
use std::time::{Duration, Instant};

#[test]
#[ignore = "run as a child process by the tests below"]
fn child() {
    common::child_main();
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Spsc => "spsc",
        Kind::Mpsc => "mpsc",
    }
}

fn options(kind: Kind) -> RingOptions {
    RingOptions::new().kind(kind).capacity(1 << 16)
}

const STRATEGIES: [WaitStrategy; 3] =
    [WaitStrategy::BusySpin, WaitStrategy::SpinThenPark(Duration::from_micros(50)), WaitStrategy::Park];

/// The sequence of issue 19, on both kinds and with every wait strategy.
/// The liveness interval is a minute, so no answer can come from a periodic
/// check: each call must read the producers' state itself.
#[test]
fn a_clean_detach_is_reported_at_once_by_every_receive_call() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for strategy in STRATEGIES {
            let segment = SegmentGuard::new("detach-at-once");
            let options = options(kind).wait(strategy).liveness_interval(Duration::from_secs(60));
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut buf = Vec::new();
            let what = format!("{kind} with {strategy:?}");
            // Before any producer: the ring waits for one.
            assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{what}: no producer yet");

            let mut producer = Producer::open(segment.name(), &options).expect("open producer");
            producer.send(b"last words").expect("send");
            drop(producer);
            // What was sent before the detach is delivered first.
            assert_eq!(consumer.try_recv(&mut buf), Ok(10), "{what}");
            for call in 0..200 {
                assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected), "{what}: try_recv {call}");
            }
            for call in 0..20 {
                let got = consumer.recv_timeout(&mut buf, Duration::from_millis(1));
                assert_eq!(got, Err(RecvTimeoutError::Disconnected), "{what}: recv_timeout {call}");
            }
            let start = Instant::now();
            assert_eq!(consumer.recv(&mut buf), Err(RecvError::Disconnected), "{what}: recv");
            // Without a per-call check this would park for the liveness
            // interval (a minute); the bound only catches that.
            assert!(start.elapsed() < Duration::from_secs(10), "{what}: recv took {:?}", start.elapsed());
            assert!(consumer
                .read_timeout(Duration::from_millis(1))
                .is_err_and(|e| e == RecvTimeoutError::Disconnected));

            // Producers may come later: a new one ends the disconnection.
            let mut producer = Producer::open(segment.name(), &options).expect("reopen producer");
            assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{what}: a producer is back");
            producer.send(b"again").expect("send again");
            assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(5), "{what}");
        }
    }
}

/// A consumer polled with `try_recv` once a millisecond: a clean detach is
/// seen by the first call after it, a kill of the producer's process within
/// the liveness interval (here 20 ms: a probe at most every 4 ms), not after
/// a number of calls.
#[test]
fn polling_at_1khz_sees_a_detach_at_once_and_a_kill_within_the_liveness_interval() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let segment = SegmentGuard::new("poll-1khz");
        let options = options(kind).liveness_interval(Duration::from_millis(20));
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut buf = Vec::new();

        let producer = Producer::open(segment.name(), &options).expect("open producer");
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty));
        std::thread::sleep(Duration::from_millis(1));
        drop(producer);
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected), "{kind}: the poll after a detach");

        let env = [("SHMRING_NAME", segment.name().to_owned()), ("SHMRING_KIND", kind_name(kind).to_owned())];
        let mut child = spawn_child("idle-producer", &env);
        wait_for_line(&mut child, "attached");
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{kind}: a live producer");
        child.kill_alive("the idle producer");
        let killed = Instant::now();
        let mut polls = 0u32;
        loop {
            polls += 1;
            match consumer.try_recv(&mut buf) {
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
                other => panic!("{kind}: poll {polls} after the kill: {other:?}"),
            }
            // Counting calls would need 1024 of them (over a second here);
            // the bound is far above the 4 ms probe interval, for a loaded
            // machine, and far below that.
            assert!(killed.elapsed() < Duration::from_millis(600), "{kind}: still Empty after {polls} polls");
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!("{kind}: the kill was seen after {polls} polls, {:?}", killed.elapsed());
    }
}

/// `mem::forget` of a grant (safe code) must not hold up the consumer once
/// its producer goes on: the next claim discards it, and messages committed
/// after it are delivered at once.
#[test]
fn a_leaked_grant_is_discarded_by_the_next_claim() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let segment = SegmentGuard::new("leaked-grant");
        let options = options(kind);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut a = Producer::open(segment.name(), &options).expect("open a");
        std::mem::forget(a.reserve(8).expect("reserve"));
        a.send(b"a1").expect("send a1");
        let mut buf = Vec::new();
        assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(2), "{kind}");
        assert_eq!(buf, b"a1");
        if kind == Kind::Mpsc {
            let mut b = Producer::open(segment.name(), &options).expect("open b");
            std::mem::forget(a.reserve(8).expect("reserve again"));
            a.send(b"a2").expect("send a2");
            b.send(b"b1").expect("send b1");
            for want in [&b"a2"[..], b"b1"] {
                assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(2));
                assert_eq!(buf, want);
            }
        }
        assert_eq!(consumer.stats().torn_records, 0, "a discarded claim is not a torn one");
    }
}

/// A producer that leaked a grant and then detached cleanly leaves nothing
/// open: a new producer that takes its slot must not make the old claim look
/// alive (before, the consumer waited for as long as the new producer lived).
#[test]
fn a_leaked_grant_is_discarded_when_its_producer_detaches() {
    let segment = SegmentGuard::new("leaked-then-detached");
    let options = options(Kind::Mpsc).max_producers(2);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut a = Producer::open(segment.name(), &options).expect("open a");
    let mut b = Producer::open(segment.name(), &options).expect("open b");
    assert_eq!((a.slot(), b.slot()), (0, 1));
    std::mem::forget(a.reserve(8).expect("reserve"));
    drop(a);
    let c = Producer::open(segment.name(), &options).expect("open c");
    assert_eq!(c.slot(), 0, "c takes the slot a left");
    b.send(b"b1").expect("send b1");
    let mut buf = Vec::new();
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(2));
    assert_eq!(buf, b"b1");
    drop(c);
}

/// A child being spawned (std uses `posix_spawn`, which runs no fork
/// handlers) holds copies of this process's descriptors until it execs, and
/// with them the lock of a handle just dropped: reopening the role at that
/// moment must not fail with `AlreadyAttached` (it did, now and then, in a
/// test binary whose other tests spawn children).
#[test]
fn a_role_dropped_while_children_are_spawned_is_free_again_at_once() {
    let segment = SegmentGuard::new("reattach-while-spawning");
    let options = options(Kind::Spsc).unlink_on_drop(false);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut spawned = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && spawned < 20_000 {
                if let Ok(mut child) = std::process::Command::new("true").spawn() {
                    let _ = child.wait();
                }
                spawned += 1;
            }
            spawned
        })
    };
    for round in 0..300 {
        drop(consumer);
        consumer = match Consumer::open(segment.name(), &options) {
            Ok(consumer) => consumer,
            Err(e) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("round {round}: reattach after a clean detach while children are spawned: {e:?}");
            }
        };
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let spawned = spawner.join().expect("spawner");
    eprintln!("{spawned} children spawned meanwhile");
}
