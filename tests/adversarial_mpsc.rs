//! Adversarial review of the MPSC consumer's resolution of claims: a
//! hostile claim marker, and the slot of a producer that died after losing
//! its CAS.

mod common;

use common::{mpsc_options, spawn_child, wait_for_line, SegmentGuard};
use shmring::{Consumer, Error, Producer, RecvTimeoutError, RingOptions, TryRecvError};
use std::time::{Duration, Instant};

const DATA: u64 = 12288;
const TAIL: u64 = 128;
const HEAD: u64 = 256;
const CLAIMS: u64 = 1792;

/// A commit word as the ring writes it (layout version 5).
fn encode(tag: u8, len: u32, position: u64, capacity: u64) -> u64 {
    let stamp = ((position >> 3).wrapping_add(position >> capacity.trailing_zeros())) & 0xFF_FFFF;
    (stamp << 40) | (u64::from(tag) << 32) | u64::from(len)
}

#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        // Attach as an MPSC producer, say which slot, and idle until killed.
        Ok("mpsc-attach-idle") => {
            let name = std::env::var("SHMRING_NAME").expect("name");
            let producer = Producer::open(&name, &mpsc_options()).expect("open MPSC producer");
            println!("slot={}", producer.slot());
            std::thread::sleep(Duration::from_secs(600));
        }
        _ => common::child_main(),
    }
}

/// A claim marker scribbled at `head` whose record reaches past the claim
/// position, on a ring whose only producer has detached. Before this change
/// the consumer reported it as `Corrupted`; now `mpsc_claimed_at_head`
/// takes `end > tail` for "a claim whose CAS is not visible yet" and waits,
/// for ever: every `recv_timeout` times out and a blocking `recv` never
/// returns, although no producer is attached and nothing can ever move the
/// claim position. The README promises a hostile segment yields
/// `Corrupted`, never an endless wait.
#[test]
fn a_marker_past_the_claim_position_is_reported_not_waited_for() {
    let segment = SegmentGuard::new("adv-marker");
    let options = mpsc_options().capacity(1 << 16).max_producers(4).liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    drop(Producer::open(segment.name(), &options).expect("producer"));
    let mut buf = Vec::new();
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected), "the only producer left");
    assert_eq!(segment.read_u64(TAIL), 0);
    // A marker of slot 0 for a 100-byte record at position 0: it reaches
    // 112, past the claim position 0.
    segment.write_at(DATA, &encode(0x80, 100, 0, 1 << 16).to_le_bytes());
    let start = Instant::now();
    let outcome = consumer.recv_timeout(&mut buf, Duration::from_secs(2));
    assert!(
        matches!(outcome, Err(RecvTimeoutError::Corrupted(_))),
        "a marker that reaches past the claim position, no producer attached: got {outcome:?} after {:?}",
        start.elapsed()
    );
}

/// A producer published its intent for a large claim at position 0, lost
/// the CAS to another producer's small claim there, and was killed before
/// trying again. The winner's record is delivered and the ring goes idle:
/// `head` (24) has passed the dead intent's start (0), which proves the
/// intent lost (a claim that won would have started the record at 0, and
/// the consumer frees whole records). Yet `claim_resolved` waits for `head`
/// to reach the intent's *end* (1024), which on an idle ring never happens:
/// the slot stays blocked, and a restarted producer is refused with
/// `TooManyProducers` for as long as nobody sends ~1 KiB more.
#[test]
fn the_slot_of_a_producer_killed_after_losing_its_cas_is_freed_once_head_passed_its_start() {
    let segment = SegmentGuard::new("adv-loser");
    let options = mpsc_options().capacity(1 << 16).max_producers(2).liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut winner = Producer::open(segment.name(), &options).expect("winner");
    assert_eq!(winner.slot(), 0);
    let mut loser = spawn_child("mpsc-attach-idle", &[("SHMRING_NAME", segment.name().to_owned())]);
    wait_for_line(&mut loser, "slot=1");
    loser.kill();
    // The loser's intent, as it left it: end 1024, then start 0.
    segment.write_at(CLAIMS + 128 + 8, &1024u64.to_le_bytes());
    segment.write_at(CLAIMS + 128, &0u64.to_le_bytes());
    // The winner's claim at 0 (a 16-byte message: a 24-byte record).
    winner.send(b"the winner's msg").expect("send");
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("recv");
    assert_eq!(buf, b"the winner's msg");
    assert_eq!((segment.read_u64(HEAD), segment.read_u64(TAIL)), (24, 24), "idle, head past the intent's start");
    // Give the consumer every chance to resolve what it can.
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_millis(200)), Err(RecvTimeoutError::Timeout));
    let deadline = Instant::now() + Duration::from_secs(2);
    let restarted = loop {
        match Producer::open(segment.name(), &RingOptions::new().kind(shmring::Kind::Mpsc)) {
            Ok(producer) => break Ok(producer),
            Err(e @ (Error::TooManyProducers { .. } | Error::ProducerSlotBlocked { .. }))
                if Instant::now() < deadline =>
            {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => break Err(e),
        }
    };
    assert!(restarted.is_ok(), "a restarted producer is refused the dead loser's slot: {:?}", restarted.err());
}

/// Many producer threads attach, send a few messages and detach, with
/// overlapping lives, while the consumer receives until `Disconnected`
/// after the last has gone: every message sent arrives exactly once, and
/// once every producer has detached the consumer says `Disconnected` at
/// once. (Held up; the false `Disconnected` of a rolling restart is shown
/// by the loom model `a_rolling_restart_of_producers_is_never_disconnected`.)
#[test]
fn churning_producers_lose_nothing_and_the_end_is_seen_at_once() {
    let segment = SegmentGuard::new("adv-churn");
    let options = mpsc_options().capacity(1 << 16).max_producers(4).liveness_interval(Duration::from_millis(10));
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let threads: Vec<_> = (0..6u8)
        .map(|t| {
            let (name, options) = (segment.name().to_owned(), options.clone());
            std::thread::spawn(move || {
                let mut sent = 0u32;
                for round in 0..200u32 {
                    let mut producer = loop {
                        match Producer::open(&name, &options) {
                            Ok(p) => break p,
                            Err(Error::TooManyProducers { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("open: {e}"),
                        }
                    };
                    for i in 0..(round % 5) {
                        let msg = [t, (sent >> 16) as u8, (sent >> 8) as u8, sent as u8, i as u8];
                        producer.send_timeout(&msg, Duration::from_secs(10)).expect("send");
                        sent += 1;
                    }
                    if round % 7 == 0 {
                        // A leaked grant: the next claim or the drop discards it.
                        std::mem::forget(producer.reserve_timeout(24, Duration::from_secs(10)).expect("reserve"));
                    }
                }
                sent
            })
        })
        .collect();
    let mut next = [0u32; 6];
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = false;
    loop {
        assert!(Instant::now() < deadline, "stuck: received {next:?}");
        match consumer.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => {
                let t = buf[0] as usize;
                let seq = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]);
                assert_eq!(seq, next[t], "thread {t}: out of order, lost or duplicated");
                next[t] += 1;
            }
            Err(RecvTimeoutError::Disconnected) if finished => break,
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("recv: {e}"),
        }
        if !finished && threads.iter().all(|t| t.is_finished()) {
            finished = true;
        }
    }
    let sent: Vec<u32> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    assert_eq!(next.to_vec(), sent, "received vs sent per thread");
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected), "every producer has gone: at once");
}
