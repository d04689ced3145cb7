//! An MPSC consumer that waits says which record it waits for: the one at
//! its position, as it reads in order. A producer wakes it only for that
//! record (or for padding there before a record at the start of a lap), so a
//! producer stopped between its claim and its commit (descheduled, say)
//! costs one sleep and one wake, not a wake and a sleep for every record the
//! other producers commit after its claim. What that may never cost:
//!
//! * the record waited for wakes the consumer at once, whether the producer
//!   commits it or gives it back (a dropped grant);
//! * a record at the start of a lap wakes a consumer waiting where the
//!   padding before it goes;
//! * a sleeper that waits for any record (a `Select`, an async wait) is woken
//!   by the next one, although a blocking receive before it left
//!   `waiting_for` naming another (the loom model
//!   `an_older_consumer_that_says_nothing_is_woken_for_any_record` covers a
//!   sleeper that says nothing at all, as an older build's).
//!
//! The liveness interval is 30 s in every test, so a wake that is lost shows
//! as a test that does not finish within its limit.

mod common;

use common::{
    mpsc_options, spawn_child, spawn_with_id, thread_id, wait_for_line, wait_until_parked_on, within, Line,
    SegmentGuard, TempDir,
};
use shmring::{payload, Consumer, Producer, RingOptions, Select, WaitStrategy};
use std::thread;
use std::time::Duration;

/// Long enough that only a lost wake would leave a consumer asleep for it.
const LIVENESS: Duration = Duration::from_secs(30);
/// A test whose consumer is woken in time ends well within this.
const LIMIT: Duration = Duration::from_secs(20);

fn options() -> RingOptions {
    mpsc_options()
        .capacity(4096)
        .max_message(1024)
        .max_producers(2)
        .wait(WaitStrategy::Park)
        .liveness_interval(LIVENESS)
        .unlink_on_drop(false)
}

/// A consumer thread receiving `n` messages; returns them and its futex
/// waits. Returns once the thread has parked on the ring `name` (it
/// announced itself and sleeps in a futex wait), so that what the test does
/// next finds it asleep however slowly the thread was scheduled.
fn receive(mut consumer: Consumer, n: usize, name: &str) -> thread::JoinHandle<(Vec<Vec<u8>>, u64)> {
    let (receiver, tid) = spawn_with_id(move || {
        let mut buf = Vec::new();
        let got = (0..n)
            .map(|_| {
                consumer.recv(&mut buf).expect("recv");
                buf.clone()
            })
            .collect();
        (got, consumer.stats().futex_waits)
    });
    wait_until_parked_on(name, Line::Consumer, tid);
    receiver
}

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

#[test]
fn a_consumer_behind_an_unfinished_claim_sleeps_through_the_records_after_it() {
    // All within the first lap (16-byte records from 0 in 4096 bytes): a
    // record at a lap's start may wake a consumer waiting before it.
    const AFTER: usize = 200;
    let guard = SegmentGuard::new("record-wakes-behind");
    let consumer = Consumer::create(guard.name(), &options()).expect("create");
    let mut slow = Producer::open(guard.name(), &options()).expect("open slow");
    let mut fast = Producer::open(guard.name(), &options()).expect("open fast");
    let name = guard.name().to_string();
    within(LIMIT, "consumer behind an unfinished claim", move || {
        let mut grant = slow.reserve(8).expect("reserve");
        grant.copy_from_slice(b"claimed!");
        let receiver = receive(consumer, AFTER + 1, &name);
        let wake = shmring::inspect::inspect(&name).expect("inspect").consumer_wake;
        assert_eq!((wake.sleepers, wake.waiting_for), (1, Some(0)), "parked for the claim at 0: {wake:?}");
        // Spaced out, so that a consumer woken by each would park again
        // before the next.
        for i in 0..AFTER as u64 {
            fast.send(&i.to_le_bytes()).expect("send");
            thread::sleep(Duration::from_micros(100));
        }
        grant.commit();
        let (got, waits) = receiver.join().expect("consumer thread");
        assert_eq!(got[0], b"claimed!");
        let after: Vec<Vec<u8>> = (0..AFTER as u64).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(got[1..], after[..], "the records after the claim, in order");
        assert_eq!(fast.stats().futex_wakes, 0, "no record after the claim woke the consumer");
        assert_eq!(slow.stats().futex_wakes, 1, "the claim's commit woke it");
        // One sleep for the claim; a spurious return or two is allowed, a
        // sleep per record after the claim (what waking for any record did) is not.
        assert!(waits <= 3, "the consumer slept {waits} times for {} messages", AFTER + 1);
    });
}

#[test]
fn a_claim_given_back_at_the_consumer_s_position_wakes_it_for_the_record_after() {
    let guard = SegmentGuard::new("record-wakes-discard");
    let consumer = Consumer::create(guard.name(), &options()).expect("create");
    let mut giving_up = Producer::open(guard.name(), &options()).expect("open");
    let mut sending = Producer::open(guard.name(), &options()).expect("open");
    let name = guard.name().to_string();
    within(LIMIT, "consumer behind a claim given back", move || {
        let grant = giving_up.reserve(8).expect("reserve");
        let receiver = receive(consumer, 1, &name);
        sending.send(b"after the claim").expect("send");
        assert_eq!(sending.stats().futex_wakes, 0, "the record after the claim woke the consumer");
        drop(grant);
        let (got, _) = receiver.join().expect("consumer thread");
        assert_eq!(got, vec![b"after the claim".to_vec()]);
    });
}

#[test]
fn a_record_at_a_lap_s_start_wakes_a_consumer_waiting_where_its_padding_goes() {
    let guard = SegmentGuard::new("record-wakes-padding");
    let mut consumer = Consumer::create(guard.name(), &options()).expect("create");
    let mut producer = Producer::open(guard.name(), &options()).expect("open");
    // Records of 112 bytes (100 of payload), then one that leaves 24 bytes
    // before the end of the lap: too few for the next 112-byte record.
    let capacity = consumer.capacity() as u64;
    let pad_at = capacity - 24;
    let mut buf = Vec::new();
    while consumer.position() + 112 <= pad_at {
        producer.send(&[7; 100]).expect("fill");
        consumer.recv(&mut buf).expect("drain");
    }
    let last = (pad_at - consumer.position() - 8) as usize;
    producer.send(&vec![8; last]).expect("fill");
    consumer.recv(&mut buf).expect("drain");
    assert_eq!(consumer.position(), pad_at);
    let name = guard.name().to_string();
    within(LIMIT, "consumer waiting where padding goes", move || {
        let receiver = receive(consumer, 1, &name);
        producer.send(&[9; 100]).expect("send the wrapping record");
        let (got, _) = receiver.join().expect("consumer thread");
        assert_eq!(got, vec![vec![9; 100]]);
        assert_eq!(producer.position(), capacity + 112, "the record went to the next lap's start");
    });
}

#[test]
fn a_select_after_a_blocking_receive_that_slept_is_woken_by_the_next_record() {
    let guard = SegmentGuard::new("record-wakes-select");
    let mut consumer = Consumer::create(guard.name(), &options()).expect("create");
    let producer = Producer::open(guard.name(), &options()).expect("open");
    let name = guard.name().to_string();
    within(LIMIT, "select after a blocking receive", move || {
        // Each message is sent once this thread sleeps for it.
        let me = thread_id();
        let send_once_parked = move |mut producer: Producer, msg: &'static [u8], name: String| {
            thread::spawn(move || {
                wait_until_parked_on(&name, Line::Consumer, me);
                producer.send(msg).expect("send");
                producer
            })
        };
        let sender = send_once_parked(producer, b"first", name.clone());
        let mut buf = Vec::new();
        consumer.recv(&mut buf).expect("recv");
        assert!(consumer.stats().futex_waits >= 1, "the blocking receive slept (saying it waits for 0)");
        let sender = send_once_parked(sender.join().expect("sender"), b"second", name);
        let mut select = Select::with_strategy(WaitStrategy::Park);
        assert_eq!(select.wait(std::slice::from_mut(&mut consumer)), [0]);
        assert!(select.futex_waits() >= 1, "the select slept");
        assert_eq!(consumer.try_recv(&mut buf).expect("try_recv"), 6);
        assert_eq!(buf, b"second");
        drop(sender.join().expect("sender"));
    });
}

/// The same between processes: one producer process holds its claim at the
/// consumer's position (as a descheduled one would) until another has
/// committed 200 records after it, one a millisecond.
#[test]
fn a_producer_process_holding_its_claim_costs_the_consumer_one_sleep() {
    const AFTER: u64 = 200;
    let guard = SegmentGuard::new("record-wakes-processes");
    let dir = TempDir::new("record-wakes-processes");
    let release = dir.0.join("release");
    let options = options().capacity(64 << 10);
    let consumer = Consumer::create(guard.name(), &options).expect("create");
    let env = |stream: u32, count: u64, hold_us: u64| {
        vec![
            ("SHMRING_NAME", guard.name().to_owned()),
            ("SHMRING_STREAM", stream.to_string()),
            ("SHMRING_MAX_SIZE", "64".to_owned()),
            ("SHMRING_COUNT", count.to_string()),
            ("SHMRING_HOLD_US", hold_us.to_string()),
        ]
    };
    let mut holding_env = env(0, 1, 0);
    holding_env.push(("SHMRING_HOLD_UNTIL", release.display().to_string()));
    let mut holding = spawn_child("mpsc-produce", &holding_env);
    wait_for_line(&mut holding, "slot=0");
    // Its claim moves the claim position from 0.
    let name = guard.name().to_owned();
    within(LIMIT, "the holding producer's claim", move || {
        while shmring::inspect::inspect(&name).expect("inspect").tail == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    });
    // The consumer sleeps behind the held claim before the other producer starts.
    let receiver = receive(consumer, AFTER as usize + 1, guard.name());
    let mut sending = spawn_child("mpsc-produce", &env(1, AFTER, 1_000));
    wait_for_line(&mut sending, &format!("sent={AFTER}"));
    std::fs::write(&release, b"").expect("release the held claim");
    wait_for_line(&mut holding, "sent=1");
    let (got, waits) =
        within(LIMIT, "consumer behind a producer process's claim", move || receiver.join()).expect("consumer thread");
    let mut next = [0u64; 2];
    for (n, msg) in got.iter().enumerate() {
        let (stream, seq) = payload::identify(msg).expect("message id");
        assert!(
            stream < 2 && seq == next[stream as usize],
            "message {n}: stream {stream} seq {seq}, expected {next:?}"
        );
        payload::check(stream, seq, msg).expect("payload bytes");
        assert!(n > 0 || stream == 0, "the held claim's record comes first");
        next[stream as usize] += 1;
    }
    // Expected: one sleep for the claim, one more after the sending
    // process's detach woke the consumer (a detach wakes for anything).
    assert!((1..=5).contains(&waits), "the consumer slept {waits} times for {} messages", AFTER + 1);
}
