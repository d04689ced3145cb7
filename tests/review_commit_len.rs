//! A cold adversarial review of `Grant::commit_len`, `open_timeout`, the
//! `usize` sizes and the ring's split stop types (2026-12-02). Each test is
//! an attack: the two that failed then are fixed (a leaked grant's view
//! stayed counted as lent, so every later fork copied the ring; an open
//! stayed on an object whose creator gave up and removed it).

mod common;

use common::{spawn_child, SegmentGuard, TempDir};
use shmring::*;
use std::time::{Duration, Instant};

const DATA_AT: u64 = shmring::testing::HEADER_BYTES;

#[test]
#[ignore = "child process entry point"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        // MPSC: reserve SHMRING_RESERVE bytes, fill 0xEE, commit the first
        // SHMRING_COMMIT of them, say "committed", idle until killed.
        Ok("review-short-commit-then-idle") => {
            common::child_watchdog();
            let name = std::env::var("SHMRING_NAME").unwrap();
            let reserve: usize = std::env::var("SHMRING_RESERVE").unwrap().parse().unwrap();
            let commit: usize = std::env::var("SHMRING_COMMIT").unwrap().parse().unwrap();
            let mut producer = Producer::open(&name, &common::mpsc_options()).expect("open");
            let mut grant = producer.reserve(reserve).expect("reserve");
            grant.fill(0xEE);
            payload::fill(9, 0, &mut grant[..commit]);
            grant.commit_len(commit);
            println!("committed");
            std::thread::sleep(Duration::from_secs(600));
        }
        _ => common::child_main(),
    }
}

fn encode(tag: u8, len: u32, position: u64, capacity: u64) -> u64 {
    let stamp = ((position >> 3).wrapping_add(position >> capacity.trailing_zeros())) & 0xFF_FFFF;
    (stamp << 40) | (u64::from(tag) << 32) | u64::from(len)
}

fn opts(kind: Kind, borrow: bool) -> RingOptions {
    RingOptions::new().kind(kind).capacity(1 << 14).max_message(1024).borrow_in_place(borrow)
}

/// commit_len(0), reserve(0) + commit_len(n), reserve(0).commit(): empty
/// messages arrive as empty messages, the stream goes on.
#[test]
fn zero_length_commits() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("rv-zero");
            let o = opts(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &o).expect("create");
            let mut producer = Producer::open(segment.name(), &o).expect("open");
            let mut buf = vec![1u8];
            for i in 0..3000u64 {
                let mut g = producer.reserve(1 + (i as usize * 37) % 1000).expect("reserve");
                g.fill(0xFF);
                g.commit_len(0);
                assert_eq!(consumer.try_recv(&mut buf), Ok(0), "{kind:?} {borrow} {i}");
                let g = producer.reserve(0).expect("reserve 0");
                g.commit_len(7);
                assert_eq!(consumer.try_recv(&mut buf), Ok(0), "{kind:?} {borrow} {i}");
                let mut msg = [0u8; 13];
                payload::fill(1, i, &mut msg);
                producer.send(&msg).unwrap();
                assert_eq!(consumer.try_recv(&mut buf), Ok(13));
                payload::check(1, i, &buf).unwrap();
                assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty));
            }
        }
    }
}

/// A consumer that lags (drains only when the ring is full) under grants
/// written with 0xFF and then committed short, dropped or leaked, mixed
/// with plain sends; MPSC with a second producer's records in between.
#[test]
fn dirty_grants_with_a_lagging_consumer() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("rv-lag");
            let o = opts(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &o).expect("create");
            let mut p0 = Producer::open(segment.name(), &o).expect("open");
            let mut p1 = if kind == Kind::Mpsc { Some(Producer::open(segment.name(), &o).expect("p1")) } else { None };
            let mut rng = 0x1234_5678_9abc_def1u64;
            let mut next = |m: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % m
            };
            let mut expected = std::collections::VecDeque::<(u32, u64, usize)>::new();
            let mut seqs = [0u64; 2];
            let mut buf = Vec::new();
            let drain = |consumer: &mut Consumer,
                         expected: &mut std::collections::VecDeque<(u32, u64, usize)>,
                         buf: &mut Vec<u8>| {
                loop {
                    match consumer.try_recv(buf) {
                        Ok(n) => {
                            let (s, q, l) = expected.pop_front().expect("a message was expected");
                            assert_eq!(n, l, "{kind:?} borrow={borrow}: stream {s} seq {q}");
                            payload::check(s, q, buf).unwrap_or_else(|e| panic!("{kind:?} borrow={borrow}: {e}"));
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        Err(e) => panic!("{kind:?} borrow={borrow}: {e}"),
                    }
                }
                assert!(expected.is_empty(), "{kind:?} borrow={borrow}: {} messages missing", expected.len());
            };
            for _ in 0..40_000 {
                let reserved = 12 + next(1000) as usize;
                let action = next(6);
                // MPSC: p1 holds a grant open across p0's operation.
                let hold = p1.is_some() && next(3) == 0;
                let held = if hold {
                    match p1.as_mut().unwrap().try_reserve(12 + next(200) as usize) {
                        Ok(mut g) => {
                            g.fill(0xAB);
                            Some(g)
                        }
                        Err(TrySendError::Full) => None,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    None
                };
                let grant = p0.try_reserve(reserved);
                match grant {
                    Ok(mut g) => {
                        g.fill(0xFF);
                        match action {
                            0 => drop(g),
                            1 => std::mem::forget(g),
                            _ => {
                                let len = 12 + next(reserved as u64 - 11) as usize;
                                let len = len.min(reserved);
                                payload::fill(0, seqs[0], &mut g[..len]);
                                g.commit_len(len);
                                expected.push_back((0, seqs[0], len));
                                seqs[0] += 1;
                            }
                        }
                    }
                    Err(TrySendError::Full) => {
                        drop(held);
                        drain(&mut consumer, &mut expected, &mut buf);
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                }
                if let Some(mut g) = held {
                    let len = 12 + next(g.len() as u64 - 11) as usize;
                    let len = len.min(g.len());
                    payload::fill(1, seqs[1], &mut g[..len]);
                    if next(4) == 0 {
                        drop(g);
                    } else {
                        g.commit_len(len);
                        // p1's claim came before p0's.
                        let at = expected.len() - usize::from(action >= 2);
                        expected.insert(at, (1, seqs[1], len));
                        seqs[1] += 1;
                    }
                }
            }
            // A grant leaked last is discarded by the producer's drop.
            drop(p0);
            drop(p1);
            drain(&mut consumer, &mut expected, &mut buf);
        }
    }
}

/// SPSC and MPSC: a grant whose claim needs padding at the end of the
/// region, committed with a short length, then small messages.
#[test]
fn short_commit_of_a_wrapped_grant() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("rv-wrap");
            let o = opts(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &o).expect("create");
            let mut producer = Producer::open(segment.name(), &o).expect("open");
            let mut buf = Vec::new();
            let mut seq = 0u64;
            for round in 0..200 {
                // Move close to the end of the region.
                while (producer.position() % (1 << 14)) < (1 << 14) - 600 {
                    let mut msg = [0u8; 100];
                    payload::fill(2, seq, &mut msg);
                    producer.send(&msg).unwrap();
                    consumer.recv(&mut buf).unwrap();
                    payload::check(2, seq, &buf).unwrap();
                    seq += 1;
                }
                let mut g = producer.reserve(1000).expect("reserve wraps");
                g.fill(0xFF);
                let len = 12 + round % 50;
                payload::fill(2, seq, &mut g[..len]);
                g.commit_len(len);
                assert_eq!(consumer.try_recv(&mut buf), Ok(len), "{kind:?} {borrow} round {round}");
                payload::check(2, seq, &buf).unwrap();
                seq += 1;
            }
        }
    }
}

/// MPSC: a producer killed between storing the rest's record and its
/// commit (simulated: its claim's marker at head, the rest record written
/// inside the claim). The consumer skips the whole claim as torn and
/// delivers what comes after.
#[test]
fn mpsc_dead_between_rest_record_and_commit() {
    let segment = SegmentGuard::new("rv-dead-rest");
    let o = common::mpsc_options().capacity(1 << 14).liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &o).expect("create");
    let mut holder = spawn_child("mpsc-hold-claim", &[("SHMRING_NAME", segment.name().to_owned())]);
    holder.wait_for_line("claimed");
    let marker = segment.read_u64(DATA_AT);
    assert_eq!((marker >> 32) as u8 & 0xC0, 0x80, "a claim marker at position 0: {marker:#x}");
    assert_eq!(marker as u32, 64);
    // commit_len(8) of the 64-byte claim: message 16 bytes, rest at 16 of
    // 72 - 16 - 8 = 48 bytes.
    segment.write_at(DATA_AT + 16, &encode(0x44, 48, 16, 1 << 14).to_le_bytes());
    let mut other = Producer::open(segment.name(), &o).expect("producer");
    other.send(b"after the dead claim").unwrap();
    holder.kill();
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("the message after the torn claim");
    assert_eq!(buf, b"after the dead claim");
    assert_eq!(consumer.stats().torn_records, 1);
}

/// MPSC: a producer that committed short and died with the consumer still
/// before the rest record: its slot is taken by a new producer, whose
/// message arrives after the rest is skipped.
#[test]
fn mpsc_slot_of_a_dead_short_committer_is_reused() {
    let segment = SegmentGuard::new("rv-slot-reuse");
    let o = common::mpsc_options().capacity(1 << 14).max_producers(1).liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &o).expect("create");
    let mut child = spawn_child(
        "review-short-commit-then-idle",
        &[
            ("SHMRING_NAME", segment.name().to_owned()),
            ("SHMRING_RESERVE", "500".into()),
            ("SHMRING_COMMIT", "20".into()),
        ],
    );
    child.wait_for_line("committed");
    // Read the short message in place and keep it: head stays before it.
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("short message");
    assert_eq!(buf.len(), 20);
    payload::check(9, 0, &buf).unwrap();
    child.kill();
    // head is now at the rest record, inside the dead producer's claim.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut producer = loop {
        match Producer::open(segment.name(), &o) {
            Ok(p) => break p,
            Err(e) => {
                assert!(Instant::now() < deadline, "slot never reusable: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    producer.send(b"new holder").unwrap();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("new holder's message");
    assert_eq!(buf, b"new holder");
}

/// Option sizes near usize::MAX and past what the header holds: a clear
/// InvalidOptions from every way of creating, never a panic.
#[test]
fn huge_sizes_are_refused_clearly() {
    let dir = TempDir::new("rv-huge");
    let cases: Vec<(&str, RingOptions)> = vec![
        ("capacity MAX", RingOptions::new().capacity(usize::MAX)),
        ("capacity 2^63", RingOptions::new().capacity(1 << 63)),
        ("capacity 2^41", RingOptions::new().capacity(1 << 41)),
        ("max_message MAX", RingOptions::new().max_message(usize::MAX)),
        ("max_message 2^32", RingOptions::new().capacity(1 << 40).max_message(1 << 32)),
        ("max_message u32::MAX", RingOptions::new().capacity(1 << 40).max_message(u32::MAX as usize)),
        ("max_producers MAX", RingOptions::new().kind(Kind::Mpsc).max_producers(usize::MAX)),
        ("max_producers 2^32+1", RingOptions::new().kind(Kind::Mpsc).max_producers((1 << 32) + 1)),
        ("spsc max_producers 2^32+1", RingOptions::new().max_producers((1 << 32) + 1)),
        ("for_messages MAX MAX", RingOptions::new().for_messages(usize::MAX, usize::MAX)),
        ("for_messages MAX 1", RingOptions::new().for_messages(usize::MAX, 1)),
        ("for_messages 1 MAX-14", RingOptions::new().for_messages(1, usize::MAX - 14)),
        ("for_messages MAX/16 8", RingOptions::new().for_messages(usize::MAX / 16, 8)),
        ("for_messages 1 2^32", RingOptions::new().for_messages(1, 1 << 32)),
    ];
    for (what, o) in cases {
        let segment = SegmentGuard::new("rv-huge");
        let results = vec![
            Producer::create(segment.name(), &o).map(drop),
            Consumer::create(segment.name(), &o).map(drop),
            o.create(segment.name()),
            AnonymousRing::create("rv-huge", &o).map(drop),
            Producer::create_file(dir.0.join("p"), &o).map(drop),
            o.create_file(dir.0.join("q")),
        ];
        for r in results {
            match r {
                Err(Error::InvalidOptions { .. }) => {}
                other => panic!("{what}: expected InvalidOptions, got {other:?}"),
            }
        }
    }
}

/// reserve/try_reserve/reserve_timeout/try_send of lengths near usize::MAX:
/// TooLarge, and the handle is not poisoned.
#[test]
fn huge_lengths_are_too_large() {
    let segment = SegmentGuard::new("rv-huge-len");
    let o = RingOptions::new().capacity(1 << 14);
    let mut consumer = Consumer::create(segment.name(), &o).expect("create");
    let mut producer = Producer::open(segment.name(), &o).expect("open");
    for len in [usize::MAX, u32::MAX as usize + 1, u32::MAX as usize, (1 << 32) + 5] {
        assert!(matches!(producer.try_reserve(len), Err(TrySendError::TooLarge(_))));
        assert!(matches!(producer.reserve(len), Err(SendError::TooLarge(_))));
        assert!(matches!(producer.reserve_timeout(len, Duration::MAX), Err(SendTimeoutError::TooLarge(_))));
    }
    let g = producer.reserve(10).unwrap();
    g.commit_len(usize::MAX);
    let mut buf = Vec::new();
    assert_eq!(consumer.try_recv(&mut buf), Ok(10));
}

/// open_timeout(Duration::MAX): waits, and opens once the ring is created.
#[test]
fn open_timeout_max_waits_for_the_creator() {
    let segment = SegmentGuard::new("rv-open-max");
    let o = RingOptions::new().capacity(1 << 14).open_timeout(Duration::MAX);
    let name = segment.name().to_owned();
    let oc = o.clone();
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut p = Producer::create(&name, &oc).expect("create");
        p.send(b"hi").unwrap();
        p
    });
    let o2 = o.clone();
    let name = segment.name().to_owned();
    let mut consumer = common::within(Duration::from_secs(20), "open with open_timeout MAX", move || {
        Consumer::open(&name, &o2).expect("open")
    });
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(buf, b"hi");
    drop(creator.join().unwrap());
}

/// A segment that appears but is never finished: with a long open_timeout
/// and a short ready_timeout, NotReady once ready_timeout has passed.
#[test]
fn open_timeout_with_a_segment_never_finished() {
    let segment = SegmentGuard::new("rv-open-unfinished");
    let name = segment.name().to_owned();
    let o = RingOptions::new().open_timeout(Duration::MAX).ready_timeout(Duration::from_millis(200));
    let maker = std::thread::spawn({
        let name = name.clone();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            let fd = rustix::shm::open(
                name.as_str(),
                rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .expect("shm_open");
            drop(fd);
        }
    });
    let r = common::within(Duration::from_secs(20), "open of an unfinished segment", move || {
        Consumer::open(&name, &o).map(drop)
    });
    maker.join().unwrap();
    assert!(matches!(r, Err(Error::NotReady { .. })), "{r:?}");
}

/// A grant held across fork: the child commits it short (or drops it); the
/// parent's ring never sees it, and the parent's own commit of the same
/// grant arrives whole.
#[test]
fn fork_child_commits_a_held_grant_short() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("rv-fork");
            let o = opts(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &o).expect("create");
            let mut producer = Producer::open(segment.name(), &o).expect("open");
            let mut g = producer.reserve(500).expect("reserve");
            g.fill(0x11);
            payload::fill(3, 0, &mut g[..500]);
            // SAFETY: the child commits and leaves with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: the child's copy of the grant is moved out once
                    // and the original is never used or dropped in the child
                    // (it leaves with `_exit`).
                    let mut g = unsafe { std::ptr::read(&g) };
                    g[..4].copy_from_slice(b"CHLD");
                    g.commit_len(10);
                }));
                // SAFETY: leaves the forked child without running anything
                // of the parent's.
                unsafe { libc::_exit(if r.is_ok() { 0 } else { 1 }) }
            }
            let mut status = 0;
            // SAFETY: waits for our own child, into a local.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child: {status:#x}");
            let mut buf = Vec::new();
            assert_eq!(
                consumer.try_recv(&mut buf),
                Err(TryRecvError::Empty),
                "{kind:?} {borrow}: child's commit leaked"
            );
            g.commit();
            assert_eq!(consumer.try_recv(&mut buf), Ok(500), "{kind:?} {borrow}");
            payload::check(3, 0, &buf).unwrap();
        }
    }
}

/// Forks; in the child, reads the byte at `addr` and `_exit`s with it.
fn byte_in_forked_child(addr: usize) -> i32 {
    // SAFETY: the child only reads one byte of a mapping and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: `addr` lies in a mapping the child handler replaced (a
        // blank or a copy of the same size): readable.
        let b = unsafe { std::ptr::read_volatile(addr as *const u8) };
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(i32::from(b)) }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    libc::WEXITSTATUS(status)
}

/// A grant leaked with mem::forget is discarded by the next claim, and the
/// view it lent stops counting then: later forks blank the mapping for the
/// child instead of copying it (found by the review: the count stayed up
/// for good). Control first: the same without the leak.
#[test]
fn a_leaked_grant_stops_counting_as_lent_at_the_next_claim() {
    for leak in [false, true] {
        let segment = SegmentGuard::new("rv-leak-lend");
        let o = RingOptions::new().capacity(1 << 20);
        let mut consumer = Consumer::create(segment.name(), &o).expect("create");
        let mut producer = Producer::open(segment.name(), &o).expect("open");
        assert!(producer.borrows_in_place());
        let mut g = producer.reserve(64).expect("reserve");
        g.fill(0xAB);
        let addr = g.as_ptr() as usize;
        g.commit();
        let mut buf = Vec::new();
        consumer.try_recv(&mut buf).unwrap();
        if leak {
            std::mem::forget(producer.reserve(64).expect("reserve"));
        }
        // The next claim discards the leaked one; nothing is lent now.
        producer.send(b"x").unwrap();
        consumer.try_recv(&mut buf).unwrap();
        assert_eq!(
            byte_in_forked_child(addr),
            0,
            "leak={leak}: with no view alive, the child got a copy of the ring (the lent count is stuck)"
        );
    }
}

/// A read guard leaked with mem::forget keeps its view counted (a fork
/// copies the ring for the child) until the consumer's next receive, which
/// proves the guard gone; the leaked message is received again.
#[test]
fn a_leaked_read_guard_counts_as_lent_until_the_next_receive() {
    let segment = SegmentGuard::new("rv-leak-guard");
    let o = RingOptions::new().capacity(1 << 20);
    let mut consumer = Consumer::create(segment.name(), &o).expect("create");
    let mut producer = Producer::open(segment.name(), &o).expect("open");
    assert!(consumer.borrows_in_place());
    producer.send(&[0xCD; 64]).unwrap();
    let guard = consumer.read().expect("read");
    let addr = guard.as_ptr() as usize;
    assert_eq!(byte_in_forked_child(addr), 0xCD, "a live view: the child gets a copy");
    std::mem::forget(guard);
    assert_eq!(byte_in_forked_child(addr), 0xCD, "a leaked guard counts until the consumer's next call");
    let mut buf = Vec::new();
    consumer.try_recv(&mut buf).expect("the leaked message, again");
    assert_eq!(buf, [0xCD; 64]);
    assert_eq!(byte_in_forked_child(addr), 0, "no view alive: the child's mapping is blank");
}

/// open_timeout: the opener finds a segment its creator then gives up on
/// (a failed creation unlinks the name again: `Segment::create`'s error
/// path), and a retry of the creator makes the ring 200 ms later. The
/// opener goes back to waiting for the name and gets the new ring's message
/// (found by the review: it stayed on the orphan until ready_timeout).
#[test]
fn open_timeout_waits_anew_when_the_creator_gives_up() {
    let segment = SegmentGuard::new("rv-open-orphan");
    let name = segment.name().to_owned();
    // A creation that got as far as shm_open (size 0) ...
    let fd = rustix::shm::open(
        name.as_str(),
        rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("shm_open");
    let o = RingOptions::new()
        .capacity(1 << 14)
        .open_timeout(Duration::from_secs(10))
        .ready_timeout(Duration::from_secs(2));
    let opener = std::thread::spawn({
        let (name, o) = (name.clone(), o.clone());
        move || {
            let started = Instant::now();
            let r = Consumer::open(&name, &o).map(|mut c| {
                let mut buf = Vec::new();
                c.recv_timeout(&mut buf, Duration::from_secs(5)).map(|_| buf)
            });
            (r, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    // ... and failed: its error path unlinks the name.
    shmring::unlink(&name).expect("unlink");
    drop(fd);
    std::thread::sleep(Duration::from_millis(200));
    // The creator's retry succeeds.
    let mut producer = Producer::create(&name, &o.clone().unlink_on_drop(false)).expect("create");
    producer.send(b"hello").unwrap();
    let (r, waited) = opener.join().unwrap();
    match r {
        Ok(Ok(buf)) => assert_eq!(buf, b"hello"),
        other => panic!("after {waited:?} of a 10 s open_timeout, with the ring created: {other:?}"),
    }
}
