//! Model checks of the MPSC ring: the real `ring` code, two producers (the
//! most a loom build registers) and a consumer over loom-tracked heap memory.
//!
//! * Two producers claim with the CAS, wrap with padding, fill the ring and
//!   park; every message arrives once, in each producer's order, intact.
//! * A producer "dies" (stops for good without detaching; the model's kernel
//!   then drops its lock) at each stage of a claim: before its CAS, between
//!   the CAS and its claim marker, and after marking a claim that wraps. The
//!   consumer must deliver every message of the survivor, skip exactly the
//!   dead producer's claim (if it made one) and count it, and then report
//!   the stream's end: never a hang, never a skipped live record.
#![cfg(shmring_loom)]

use loom::sync::atomic::{fence, Ordering};
use loom::thread;
use shmring::error::RecvStop;
use shmring::layout::{SLEEPER_ANNOUNCE, SLEEPER_COUNT_BITS, WAITING_POSITION_BITS};
use shmring::ring::{select, wait_for_reactor, Consumer, DieAt, HeapRing, Producer, RingBacking, Selection};
use shmring::{Kind, WaitStrategy};
use shmring_loom_tests::model;
use std::sync::Arc;
use std::time::Duration;

const PARK: WaitStrategy = WaitStrategy::Park;

/// Message `i` of producer `p`: `len` bytes, all depending on both, so a torn,
/// stale or misattributed read shows as a wrong byte.
fn message(p: u8, i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| p.wrapping_mul(97).wrapping_add(i.wrapping_mul(31)).wrapping_add(j) | 0x80).collect()
}

fn producer(ring: &Arc<HeapRing>, slot: usize) -> Producer<Arc<HeapRing>> {
    Producer::attach_mpsc(Arc::clone(ring), 10 + slot as u32, slot).expect("attach producer")
}

fn consumer(ring: &Arc<HeapRing>) -> Consumer<Arc<HeapRing>> {
    Consumer::attach(Arc::clone(ring), 2, Kind::Mpsc).expect("attach consumer")
}

/// Receives until the stream ends; returns the messages in arrival order.
fn drain(consumer: &mut Consumer<Arc<HeapRing>>) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    loop {
        match consumer.recv(&mut buf, PARK) {
            Ok(_) => got.push(buf.clone()),
            Err(RecvStop::Disconnected) => return got,
            Err(other) => panic!("recv: {other:?}"),
        }
    }
}

/// Receives `n` messages, waiting (yielding) through `Disconnected`: a
/// producer may still come, which the model knows and the consumer cannot.
fn receive_n(consumer: &mut Consumer<Arc<HeapRing>>, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < n {
        match consumer.recv(&mut buf, PARK) {
            Ok(_) => got.push(buf.clone()),
            Err(RecvStop::Disconnected) => thread::yield_now(),
            Err(other) => panic!("recv: {other:?}"),
        }
    }
    got
}

/// A 20-byte message is sent and consumed first (head at 32); then each
/// producer sends a 12-byte message (24-byte records): whichever claims
/// second wraps, with 8 bytes of padding, to the start of the lap. The
/// consumer gets both, intact, then the end of the stream.
#[test]
fn two_producers_claim_wrap_and_commit() {
    model("two_producers_claim_wrap_and_commit", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = consumer(&ring);
        let mut first = producer(&ring, 0);
        let mut second = producer(&ring, 1);
        first.send(&message(0, 9, 20), PARK).expect("prefill");
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("prefill recv");
        let a = thread::spawn(move || first.send(&message(0, 0, 12), PARK).expect("send 0"));
        let b = thread::spawn(move || second.send(&message(1, 0, 12), PARK).expect("send 1"));
        let mut got = drain(&mut consumer);
        a.join().unwrap();
        b.join().unwrap();
        got.sort();
        let mut want = vec![message(0, 0, 12), message(1, 0, 12)];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(consumer.stats().torn_records, 0);
    });
}

/// Producer 0 dies at `stage` of a claim for a `len`-byte message while
/// producer 1 sends one 8-byte message; `prefill` bytes are sent and consumed
/// first, so the dying claim can be made to wrap.
fn dies_while_other_sends(stage: DieAt, prefill: usize, len: usize) {
    let ring = Arc::new(HeapRing::with_killable_producers(64, 28));
    let mut consumer = consumer(&ring);
    let mut survivor = producer(&ring, 1);
    if prefill > 0 {
        survivor.send(&message(1, 9, prefill), PARK).expect("prefill");
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("prefill recv");
    }
    let mut dying = producer(&ring, 0);
    let killer_ring = Arc::clone(&ring);
    let killed = thread::spawn(move || {
        dying.die_at(stage);
        assert_eq!(dying.try_send(&message(0, 0, len)), Ok(false), "the model's death");
        assert!(dying.died(), "the claim reached its death, not a full ring");
        // A dead process never detaches: keep the handle from doing so.
        std::mem::forget(dying);
        killer_ring.kill(0);
    });
    let sender = thread::spawn(move || survivor.send(&message(1, 0, 8), PARK).expect("survivor's send"));
    // Drain before joining: the survivor may be waiting for room.
    let got = drain(&mut consumer);
    sender.join().unwrap();
    killed.join().unwrap();
    assert_eq!(got, vec![message(1, 0, 8)], "the survivor's message, once, intact");
    let torn = if stage == DieAt::Intent { 0 } else { 1 };
    assert_eq!(consumer.stats().torn_records, torn, "torn records skipped");
}

/// Dead after publishing its intent, before its CAS: it claimed nothing, so
/// nothing is skipped; its stale intent never blocks the survivor's record.
#[test]
fn producer_dead_before_its_claim_costs_nothing() {
    model("producer_dead_before_its_claim_costs_nothing", || dies_while_other_sends(DieAt::Intent, 0, 12));
}

/// Dead between its CAS and its claim marker: the record at its position
/// reads zero, and only its intent says whose it is.
#[test]
fn claim_without_marker_of_dead_producer_is_skipped() {
    model("claim_without_marker_of_dead_producer_is_skipped", || dies_while_other_sends(DieAt::Claimed, 0, 12));
}

/// Dead after marking a claim that wraps (padding at 40 or 56, the record
/// at 64): the consumer skips the padding and must find the owner by the
/// marker at the start of the lap.
#[test]
fn marked_wrapping_claim_of_dead_producer_is_skipped() {
    model("marked_wrapping_claim_of_dead_producer_is_skipped", || dies_while_other_sends(DieAt::Marked, 28, 20));
}

/// Two dead intents start at `head`: producer 0 died right after winning
/// its CAS for an 8-byte message (a claim of 16 bytes without a marker), and
/// producer 1, whose intent for a 16-byte message (24 bytes) lost that CAS,
/// died right after losing. Both are set up before the model's threads
/// start (the loser's intent is written as it would have left it), so loom
/// spends its interleavings on the race that matters: producer 2, alive,
/// claims right after the dead claim and sends two messages (the second
/// one's intent replaces the first one's), while the consumer looks for the
/// dead claim's end. The loser's end lies inside producer 2's first record:
/// skipping to it would destroy a committed message. In a ring of 64 bytes
/// the second message finds the ring full, and producer 2 withdraws its
/// intent and parks until the consumer has skipped the dead claim.
fn two_dead_at_head_and_a_live_producer(capacity: usize) {
    let ring = Arc::new(HeapRing::with_killable_producers(capacity, 24).with_producers(3));
    let mut consumer = consumer(&ring);
    let mut winner = producer(&ring, 0);
    winner.die_at(DieAt::Claimed);
    assert_eq!(winner.try_send(&message(0, 0, 8)), Ok(false), "the winner's death");
    assert!(winner.died(), "the claim reached its death, not a full ring");
    std::mem::forget(winner);
    ring.kill(0);
    let loser = producer(&ring, 1);
    let header = ring.header();
    header.claims[1].end.store(24, std::sync::atomic::Ordering::Relaxed);
    header.claims[1].start.store(0, std::sync::atomic::Ordering::Release);
    std::mem::forget(loser);
    ring.kill(1);
    let mut live = producer(&ring, 2);
    let sender = thread::spawn(move || {
        live.send(&message(2, 0, 16), PARK).expect("first send");
        live.send(&message(2, 1, 24), PARK).expect("second send");
    });
    let got = drain(&mut consumer);
    sender.join().unwrap();
    assert_eq!(got, vec![message(2, 0, 16), message(2, 1, 24)], "the live producer's messages, once, intact");
    assert_eq!(consumer.stats().torn_records, 1, "the dead claim is skipped, once");
}

/// Finding the end of a dead claim among two dead intents, while a live
/// producer claims after it and moves on to its next claim.
#[test]
fn two_dead_intents_at_head_never_cost_a_live_record() {
    model("two_dead_intents_at_head_never_cost_a_live_record", || two_dead_at_head_and_a_live_producer(128));
}

/// The same with a full ring: the live producer withdraws its intent and
/// parks, and is woken once the dead claim is skipped.
#[test]
fn withdrawn_intent_of_a_parked_producer_shows_its_commit() {
    model("withdrawn_intent_of_a_parked_producer_shows_its_commit", || two_dead_at_head_and_a_live_producer(64));
}

/// A consumer killed in the middle of releasing a record (after noting
/// `freeing_to` and zeroing the record's first word, before moving `head`):
/// the next consumer finishes the release when it attaches, while a
/// producer goes on sending, and delivers exactly what came after.
#[test]
fn restarted_consumer_finishes_an_interrupted_release() {
    model("restarted_consumer_finishes_an_interrupted_release", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut first = consumer(&ring);
        let mut producer = producer(&ring, 0);
        producer.send(&message(0, 0, 16), PARK).expect("first send");
        let guard = first.read(PARK).expect("read the first message");
        assert_eq!(&*guard, &message(0, 0, 16)[..]);
        // Killed mid-release: `freeing_to` noted, the record's first word
        // zeroed, `head` not moved (the guard never drops).
        std::mem::forget(guard);
        let header = ring.header();
        header.consumer.freeing_to.store(24, std::sync::atomic::Ordering::Relaxed);
        ring.zero_word(0);
        std::mem::forget(first);
        let sender = thread::spawn(move || {
            producer.send(&message(0, 1, 8), PARK).expect("second send");
            producer.send(&message(0, 2, 16), PARK).expect("third send");
        });
        let mut second = consumer(&ring);
        let got = drain(&mut second);
        sender.join().unwrap();
        assert_eq!(got, vec![message(0, 1, 8), message(0, 2, 16)], "what came after, once, intact");
    });
}

/// A producer leaks a grant (`mem::forget`) and detaches cleanly; a new
/// producer takes its slot and sends. The leaked claim must be discarded by
/// the detach: otherwise it would look like the new holder's claim for that
/// holder's whole life.
#[test]
fn leaked_grant_of_a_detached_producer_never_blocks_the_slot_s_next_holder() {
    model("leaked_grant_of_a_detached_producer_never_blocks_the_slot_s_next_holder", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = consumer(&ring);
        let mut leaker = producer(&ring, 0);
        std::mem::forget(leaker.reserve(8, PARK).expect("reserve"));
        drop(leaker);
        let mut next = producer(&ring, 0);
        let sender = thread::spawn(move || next.send(&message(0, 1, 12), PARK).expect("send"));
        let got = drain(&mut consumer);
        sender.join().unwrap();
        assert_eq!(got, vec![message(0, 1, 12)]);
        assert_eq!(consumer.stats().torn_records, 0, "a discarded claim is not a torn one");
    });
}

/// A producer dies holding a claim; a new process waits until the slot is
/// reusable (its claim resolved by the consumer), takes it and sends.
/// Taking the slot earlier would make the dead claim look alive for as long
/// as the new holder lives; and a consumer that probed the marker's owner
/// before seeing the claim's CAS could take the new holder's live claim for
/// the dead one's.
#[test]
fn dead_producer_s_slot_is_reused_only_once_its_claim_is_resolved() {
    model("dead_producer_s_slot_is_reused_only_once_its_claim_is_resolved", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = consumer(&ring);
        let mut dying = producer(&ring, 0);
        dying.die_at(DieAt::Marked);
        assert_eq!(dying.try_send(&message(0, 0, 8)), Ok(false), "the death");
        assert!(dying.died(), "the claim reached its death, not a full ring");
        std::mem::forget(dying);
        ring.kill(0);
        let restart_ring = Arc::clone(&ring);
        let restarter = thread::spawn(move || {
            while !shmring::ring::slot_reusable(&restart_ring, 0) {
                thread::yield_now();
            }
            restart_ring.revive(0);
            let mut next = producer(&restart_ring, 0);
            next.send(&message(0, 1, 12), PARK).expect("send");
        });
        // Until the new holder attaches the stream may look ended: wait
        // through that.
        let got = receive_n(&mut consumer, 1);
        restarter.join().unwrap();
        assert_eq!(consumer.try_recv(&mut Vec::new()), Err(RecvStop::Disconnected), "nothing more");
        assert_eq!(got, vec![message(0, 1, 12)]);
        assert_eq!(consumer.stats().torn_records, 1, "the dead claim, once");
    });
}

/// A producer reserves room for 24 bytes, commits 4 (`commit_len`), then
/// sends 12 more, while the consumer receives. The rest of the short claim
/// must become a record of its own, written before the message's commit
/// publishes it: otherwise the consumer, reading on past the short message,
/// finds a word that no record and no producer's claim explains. (One
/// producer: with a second one the model takes minutes, and the rest's
/// record is the producer's own business either way.)
#[test]
fn short_commit_leaves_a_record_for_the_rest_of_its_claim() {
    model("short_commit_leaves_a_record_for_the_rest_of_its_claim", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = consumer(&ring);
        let mut short = producer(&ring, 0);
        let sender = thread::spawn(move || {
            let mut grant = short.reserve(24, PARK).expect("reserve");
            grant.copy_from_slice(&message(0, 0, 24));
            grant.commit_len(4);
            short.send(&message(0, 1, 12), PARK).expect("send");
        });
        let got = drain(&mut consumer);
        sender.join().unwrap();
        assert_eq!(got, vec![message(0, 0, 4), message(0, 1, 12)]);
        assert_eq!(consumer.stats().torn_records, 0, "the rest is given back, not torn");
    });
}

/// Batches on both sides of an MPSC ring: a producer sends four 12-byte
/// messages as one batch (the fourth wraps after padding, onto space the
/// consumer freed); the consumer drains, so it frees (and zeroes) several
/// records at once. Every message arrives once, in order, intact: a claim
/// never lands on a word the batched release left unzeroed.
#[test]
fn batches_wrap_onto_space_a_drain_zeroed() {
    model("batches_wrap_onto_space_a_drain_zeroed", || {
        let ring = Arc::new(HeapRing::new(64, 16));
        let mut consumer = consumer(&ring);
        let mut sender = producer(&ring, 0);
        let sending = thread::spawn(move || {
            let batch: Vec<Vec<u8>> = (0..4).map(|i| message(0, i, 12)).collect();
            let sent = sender.send_batch(&batch, Some(PARK)).expect("no message is too large");
            assert!(sent.stop.is_none(), "batch stopped: {:?}", sent.stop);
            assert_eq!(sent.count, 4);
            sender
        });
        let mut got = Vec::new();
        while got.len() < 4 {
            let batch = consumer.drain(PARK, 4, |msg| {
                got.push(msg.to_vec());
                true
            });
            assert!(batch.stop.is_none(), "drain stopped: {:?}", batch.stop);
        }
        assert_eq!(got, (0..4).map(|i| message(0, i, 12)).collect::<Vec<_>>());
        drop(sending.join().unwrap());
    });
}

/// A consumer parked behind one producer's claim says which record it waits
/// for, and the other producer's commit after that claim does not wake it.
/// Here the claim at `head` is given back (a grant dropped: a discarded
/// record) while the other producer commits the record after it. The
/// consumer's re-check may find the discarded record and move past it; it
/// must then not sleep on its announcement for the record it passed, whose
/// producer is done waking. Producers stay attached until the message is
/// received, so that no detach's wake can stand in for a lost one.
#[test]
fn a_consumer_parked_at_a_discarded_claim_is_woken_by_the_record_after_it() {
    model("a_consumer_parked_at_a_discarded_claim_is_woken_by_the_record_after_it", || {
        let ring = Arc::new(HeapRing::new(64, 8));
        let mut consumer = consumer(&ring);
        let mut giving_up = producer(&ring, 0);
        let mut sending = producer(&ring, 1);
        let a = thread::spawn(move || {
            drop(giving_up.reserve(8, PARK).expect("reserve"));
            giving_up
        });
        let b = thread::spawn(move || {
            sending.send(&message(1, 0, 8), PARK).expect("send");
            sending
        });
        assert_eq!(receive_n(&mut consumer, 1), vec![message(1, 0, 8)]);
        drop(a.join().unwrap());
        drop(b.join().unwrap());
    });
}

/// A consumer waits at a position where a wrapping claim then puts padding
/// (head 40 of 64; the 32-byte record goes to the next lap's start, at 64):
/// the record's commit is not at the position the consumer waits for, but
/// must wake it. The producer stays attached until the message is received.
#[test]
fn a_consumer_waiting_where_padding_goes_is_woken_by_the_wrapped_record() {
    model("a_consumer_waiting_where_padding_goes_is_woken_by_the_wrapped_record", || {
        let ring = Arc::new(HeapRing::new(64, 28));
        let mut consumer = consumer(&ring);
        let mut wrapping = producer(&ring, 0);
        wrapping.send(&message(0, 9, 28), PARK).expect("prefill");
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("prefill recv");
        let sender = thread::spawn(move || {
            wrapping.send(&message(0, 0, 24), PARK).expect("send");
            wrapping
        });
        assert_eq!(receive_n(&mut consumer, 1), vec![message(0, 0, 24)]);
        drop(sender.join().unwrap());
    });
}

/// A ring of 8-byte messages, its consumer, and a thread whose producer
/// sends messages 0 and 1 (records at 0 and 16) and is handed back still
/// attached, so that no detach's wake can stand in for a lost one.
fn two_records_from_a_thread() -> (Consumer<Arc<HeapRing>>, thread::JoinHandle<Producer<Arc<HeapRing>>>) {
    let ring = Arc::new(HeapRing::new(64, 8));
    let consumer = consumer(&ring);
    let mut sending = producer(&ring, 0);
    let sender = thread::spawn(move || {
        sending.send(&message(0, 0, 8), PARK).expect("send 0");
        sending.send(&message(0, 1, 8), PARK).expect("send 1");
        sending
    });
    (consumer, sender)
}

/// One producer sends two records (at 0 and 16) while the consumer receives
/// both. Its wake check after the first may find the consumer already parked
/// for the second: it skips that wake, and must not remember the
/// announcement as woken, or it skips the wake for the second too.
#[test]
fn one_producer_s_two_records_each_wake_a_consumer_parked_for_it() {
    model("one_producer_s_two_records_each_wake_a_consumer_parked_for_it", || {
        let (mut consumer, sender) = two_records_from_a_thread();
        assert_eq!(receive_n(&mut consumer, 2), vec![message(0, 0, 8), message(0, 1, 8)]);
        drop(sender.join().unwrap());
    });
}

/// A blocking receive (which may park saying it waits for the record at 0)
/// and then a `Select` on the same MPSC ring (which says it waits for
/// anything): the producer's record at 16 must wake the select.
#[test]
fn a_select_after_a_blocking_receive_is_woken_for_any_record() {
    model("a_select_after_a_blocking_receive_is_woken_for_any_record", || {
        let (mut consumer, sender) = two_records_from_a_thread();
        assert_eq!(receive_n(&mut consumer, 1), vec![message(0, 0, 8)]);
        let mut selection = Selection::default();
        select(std::slice::from_mut(&mut consumer), PARK, Duration::MAX, &mut selection);
        assert_eq!(selection.ready, [0]);
        let mut buf = Vec::new();
        assert_eq!(consumer.try_recv(&mut buf).expect("try_recv"), Some(8));
        assert_eq!(buf, message(0, 1, 8));
        drop(sender.join().unwrap());
    });
}

/// A consumer of a build that knows no `waiting_for` parks after a newer
/// consumer that waited for the record at 0 left it set: its announcement
/// says nothing, and the record at 16 must wake it. The model plays the older consumer by hand: it reads the
/// futex word, announces, fences, re-checks and sleeps.
#[test]
fn an_older_consumer_that_says_nothing_is_woken_for_any_record() {
    model("an_older_consumer_that_says_nothing_is_woken_for_any_record", || {
        let ring = Arc::new(HeapRing::new(64, 8));
        let mut consumer = consumer(&ring);
        let mut sending = producer(&ring, 0);
        let line = &ring.header().consumer_wake;
        // What the newer consumer's park for the record at 0 left behind:
        // its announcement's epoch, and position 0 (plus one).
        let word = line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed).wrapping_add(SLEEPER_ANNOUNCE);
        let epoch = u64::from(word >> SLEEPER_COUNT_BITS);
        line.waiting_for.store(epoch << WAITING_POSITION_BITS | 1, Ordering::Relaxed);
        line.sleepers.fetch_sub(1, Ordering::Relaxed);
        sending.send(&message(0, 0, 8), PARK).expect("send 0");
        let mut buf = Vec::new();
        consumer.recv(&mut buf, PARK).expect("recv 0");
        let sender = thread::spawn(move || {
            sending.send(&message(0, 1, 8), PARK).expect("send 1");
            sending
        });
        // Its re-check is a `try_recv`, which announces nothing.
        loop {
            let seq = line.seq.load(Ordering::Acquire);
            line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let got = consumer.try_recv(&mut buf).expect("try_recv");
            if got.is_none() {
                wait_for_reactor(&line.seq, seq);
            }
            line.sleepers.fetch_sub(1, Ordering::Relaxed);
            if got.is_some() {
                break;
            }
        }
        assert_eq!(buf, message(0, 1, 8));
        drop(sender.join().unwrap());
    });
}
