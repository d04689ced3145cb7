//! Producer and consumer in separate processes: integrity of a long stream,
//! SIGKILL of either side, and a consumer restarted after a kill.

mod common;

use common::*;
use shmring::{payload, Consumer, Error, Producer, RecvTimeoutError, RingOptions, Role, TryRecvError};
use std::time::{Duration, Instant};

#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    child_main();
}

/// The bound within which a survivor must notice a dead peer. The protocol's
/// own bound is a park slice plus a probe interval (about 60 ms); this leaves
/// room for a loaded machine.
const NOTICE: Duration = Duration::from_secs(5);

#[test]
fn ten_million_messages_of_random_sizes_arrive_intact_and_in_order() {
    const COUNT: u64 = 10_000_000;
    let segment = SegmentGuard::new("integrity");
    let options = RingOptions::new().capacity(64 << 10).max_message(4096);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let producer = spawn_child("produce", &[("SHMRING_NAME", segment.0.clone()), ("SHMRING_COUNT", COUNT.to_string())]);

    let (mut received, mut bytes, mut wrap_exact, mut max_sized) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let end = deadline(900);
    while until(end, "the 10M-message stream") {
        // Alternate copies and borrowed reads: both paths see every shape.
        let position = consumer.position();
        let outcome = if received % 2 == 0 {
            consumer
                .recv_timeout(&mut buf, Duration::from_secs(30))
                .map(|_| check_stream(received, &buf).map(|_| buf.len()))
        } else {
            consumer.read_timeout(Duration::from_secs(30)).map(|m| check_stream(received, &m).map(|_| m.len()))
        };
        match outcome {
            Ok(Ok(len)) => {
                let end = (position % (64 << 10)) + 8 + (len as u64).div_ceil(8) * 8;
                wrap_exact += u64::from(end == 64 << 10);
                max_sized += u64::from(len == 4096);
                bytes += len as u64;
                received += 1;
            }
            Ok(Err(e)) => panic!("message {received}: {e}"),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("after {received} messages: {e}"),
        }
    }
    let (ok, out) = producer.finish(Duration::from_secs(60));
    assert!(ok, "producer failed: {out}");
    assert_eq!(field(&out, "sent") as u64, COUNT);
    assert_eq!(received, COUNT, "every message exactly once");
    assert!(wrap_exact > 1000, "records ending exactly at the end of the region: {wrap_exact}");
    assert!(max_sized > 1000, "max-size messages: {max_sized}");
    eprintln!("{received} messages, {bytes} bytes, {wrap_exact} ending at the wrap, {max_sized} of max size");
}

#[test]
fn consumer_notices_a_killed_producer_after_draining() {
    let segment = SegmentGuard::new("kill-producer");
    let options = RingOptions::new().capacity(16 << 10);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = spawn_child("produce-forever", &[("SHMRING_NAME", segment.0.clone())]);
    let mut buf = Vec::new();
    let mut seq = 0;
    while seq < 100_000 {
        consumer.recv_timeout(&mut buf, Duration::from_secs(30)).expect("recv");
        check_stream(seq, &buf).expect("payload");
        seq += 1;
    }
    producer.kill_alive("the streaming producer");
    let killed = Instant::now();
    // Whatever was committed before the kill is still delivered, in order.
    let end = killed + NOTICE;
    while until(end, "the consumer noticing the killed producer") {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(_) => {
                check_stream(seq, &buf).expect("payload");
                seq += 1;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(killed.elapsed() < NOTICE, "noticed after {:?}", killed.elapsed());
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected));
}

#[test]
fn parked_consumer_is_released_when_its_producer_is_killed() {
    for wait in [shmring::WaitStrategy::Park, shmring::WaitStrategy::default(), shmring::WaitStrategy::BusySpin] {
        let segment = SegmentGuard::new("kill-idle-producer");
        let options = RingOptions::new().capacity(16 << 10).wait(wait);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer =
            spawn_child("produce-then-idle", &[("SHMRING_NAME", segment.0.clone()), ("SHMRING_COUNT", "10".into())]);
        let mut buf = Vec::new();
        for seq in 0..10 {
            consumer.recv_timeout(&mut buf, Duration::from_secs(30)).expect("recv");
            check_stream(seq, &buf).expect("payload");
        }
        wait_for_line(&mut producer, "sent");
        // Blocks (parked or spinning) until the kill is noticed: `recv`, with
        // no timeout of its own, on a thread with a deadline.
        let (receiver, tid) = spawn_with_id(move || {
            let mut buf = Vec::new();
            consumer.recv(&mut buf)
        });
        if wait != shmring::WaitStrategy::BusySpin {
            wait_until_parked(tid, "the consumer parking on the empty ring");
        }
        producer.kill_alive("the idle producer");
        let killed = Instant::now();
        let outcome = within(NOTICE * 2, "recv on a ring whose producer was killed", move || receiver.join());
        assert_eq!(outcome.expect("receiver thread"), Err(shmring::RecvError::Disconnected), "{wait:?}");
        assert!(killed.elapsed() < NOTICE, "{wait:?}: noticed after {:?}", killed.elapsed());
    }
}

#[test]
fn killed_consumer_is_noticed_and_a_restarted_one_loses_nothing() {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..4 {
        let segment = SegmentGuard::new("kill-consumer");
        let options = RingOptions::new().capacity(16 << 10);
        options.create(segment.name()).expect("create");
        let progress = tempfile_path(&format!("progress-{round}"));
        std::fs::write(&progress, u64::MAX.to_le_bytes()).expect("progress file");
        let mut first = spawn_child(
            "consume-progress",
            &[("SHMRING_NAME", segment.0.clone()), ("SHMRING_PROGRESS", progress.clone())],
        );
        // Produce only once the consumer is attached (a full ring without a
        // consumer would say Disconnected at once), and kill it once it has
        // consumed a random number of messages: events, not delays.
        wait_for_line(&mut first, "attached");
        let mut producer = Producer::open(segment.name(), &options).expect("producer");
        shmring::payload::xorshift(&mut rng);
        let kill_at = 1 + rng % 20_000;
        let watched = progress.clone();
        let killer = std::thread::spawn(move || {
            let end = deadline(60);
            loop {
                let recorded =
                    std::fs::read(&watched).ok().and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)));
                if recorded.is_some_and(|r| r != u64::MAX && r >= kill_at) || Instant::now() >= end {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let status = first.kill();
            (Instant::now(), status)
        });
        let sent = produce_until_disconnected(&mut producer, Duration::from_secs(60));
        let (killed, status) = killer.join().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: the first consumer ended before it was killed: {status}"
        );
        assert!(killed.elapsed() < NOTICE, "producer noticed after {:?}", killed.elapsed());
        let recorded = u64::from_le_bytes(std::fs::read(&progress).expect("read progress")[..8].try_into().unwrap());
        let _ = std::fs::remove_file(&progress);
        drop(producer); // detached: the restarted consumer drains and stops

        let second = spawn_child("consume-rest", &[("SHMRING_NAME", segment.0.clone())]);
        let (ok, out) = second.finish(Duration::from_secs(60));
        assert!(ok, "restarted consumer failed: {out}");
        let (from, last, count) = (field(&out, "first"), field(&out, "last"), field(&out, "count"));
        // The first consumer recorded `recorded` before releasing it; the one
        // after it is the first that may be new. The recorded one itself is
        // delivered again if the kill fell between recording and releasing.
        let next = if recorded == u64::MAX { 0 } else { recorded as i64 + 1 };
        if count > 0 {
            assert!(from == next || from == next - 1, "round {round}: recorded {recorded}, restarted at {from}");
            assert_eq!(last, sent as i64 - 1, "round {round}: the last message sent arrives");
            assert_eq!(count, last - from + 1);
        } else {
            assert_eq!(next, sent as i64, "round {round}: nothing left means everything was consumed");
        }
        eprintln!("round {round}: killed at message {kill_at}; sent {sent}, first consumer got to {recorded}, second read {from}..={last}");
    }
}

#[test]
fn a_role_is_exclusive_while_its_holder_lives_and_free_once_it_dies() {
    let segment = SegmentGuard::new("exclusive");
    let options = RingOptions::new().capacity(16 << 10).unlink_on_drop(false);
    let consumer = Consumer::create(segment.name(), &options).expect("create");
    match Consumer::open(segment.name(), &options) {
        Err(Error::AlreadyAttached { role: Role::Consumer, pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("second consumer: {other:?}"),
    }
    let mut holder = spawn_child("hold-producer", &[("SHMRING_NAME", segment.0.clone())]);
    wait_for_line(&mut holder, "attached");
    match Producer::open(segment.name(), &options) {
        Err(Error::AlreadyAttached { role: Role::Producer, pid, .. }) => assert_eq!(pid, holder.id()),
        other => panic!("while the child holds the producer role: {other:?}"),
    }
    holder.kill_alive("the producer holder");
    let mut producer = Producer::open(segment.name(), &options).expect("take over from a dead producer");
    producer.try_send(b"after takeover").expect("send");
    drop(consumer);
    let mut consumer = Consumer::open(segment.name(), &options).expect("reattach after a clean detach");
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(10)).expect("recv");
    assert_eq!(buf, b"after takeover");
    let _ = payload::identify(&buf);
}

fn tempfile_path(tag: &str) -> String {
    std::env::temp_dir().join(format!("shmring-test-{}-{tag}", std::process::id())).to_string_lossy().into_owned()
}

/// A consumer killed while parked never withdraws its announcement. Its
/// successor clears the count when it attaches, and until then the producer
/// wakes the dead sleeper once, not once per message.
#[test]
fn a_consumer_killed_while_parked_leaves_no_sleeper_behind() {
    let segment = SegmentGuard::new("kill-parked-consumer");
    let options = RingOptions::new().capacity(1 << 20);
    let mut producer = Producer::create(segment.name(), &options).expect("create");
    let progress = tempfile_path("parked-progress");
    std::fs::write(&progress, [0u8; 8]).expect("progress file");
    // A park slice of a minute: once announced, the consumer stays announced
    // (it is not woken: nothing is sent) until it is killed.
    let mut consumer = spawn_child(
        "consume-progress",
        &[
            ("SHMRING_NAME", segment.0.clone()),
            ("SHMRING_PROGRESS", progress.clone()),
            ("SHMRING_LIVENESS_MS", "60000".into()),
        ],
    );
    let end = deadline(30);
    while until(end, "the consumer parking")
        && shmring::inspect::inspect(segment.name()).expect("inspect").consumer_wake.sleepers == 0
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    consumer.kill_alive("the parked consumer");
    let _ = std::fs::remove_file(&progress);
    assert_eq!(
        shmring::inspect::inspect(segment.name()).expect("inspect").consumer_wake.sleepers,
        1,
        "dead sleeper counted"
    );

    for seq in 0..1000u64 {
        producer.try_send(&seq.to_le_bytes()).expect("room for it");
    }
    assert!(producer.stats().futex_wakes <= 1, "{} wakes for one dead sleeper", producer.stats().futex_wakes);

    let mut successor = Consumer::open(segment.name(), &options).expect("open");
    let wake = shmring::inspect::inspect(segment.name()).expect("inspect").consumer_wake;
    assert_eq!(wake.sleepers, 0, "the successor forgets the dead sleeper");
    assert!(wake.parks >= 1, "the epoch is kept: {wake:?}");
    let mut buf = Vec::new();
    for seq in 0..1000u64 {
        successor.try_recv(&mut buf).expect("message");
        assert_eq!(buf, seq.to_le_bytes());
    }
}
