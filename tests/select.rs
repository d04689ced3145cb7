//! `Select`: one thread waiting on many rings, across processes; parked
//! waits woken by any ring (with `futex_waitv`, with more than 128 rings,
//! and with the fallback), producers waiting for room, peers that die,
//! timeouts, and readiness checks that never claim.

mod common;

use common::{check_stream, spawn_child, thread_id, wait_until_parked, within, SegmentGuard};
use shmring::{Consumer, Kind, Producer, RingOptions, Select, Selectable, TryRecvError, TrySendError, WaitStrategy};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        Ok("select-wakes") => each_ring_wakes_a_parked_select(env_rings()),
        _ => common::child_main(),
    }
}

fn env_rings() -> usize {
    std::env::var("SHMRING_RINGS").map_or(8, |n| n.parse().expect("rings"))
}

/// `count` rings named `base-i`, each with its consumer here and its
/// segment unlinked when the guards drop.
fn rings(base: &str, count: usize, options: &RingOptions) -> (Vec<SegmentGuard>, Vec<Consumer>) {
    let guards: Vec<SegmentGuard> = (0..count).map(|i| SegmentGuard(format!("{base}-{i}"))).collect();
    let consumers = guards.iter().map(|g| Consumer::create(g.name(), options).expect("create")).collect();
    (guards, consumers)
}

/// 64 rings fed by 4 producer processes (16 rings each, 2,000 messages a
/// ring of mixed sizes), served by one thread that waits with `Select` and
/// receives with `try_recv`: every message arrives once, in order, intact,
/// and every ring ends `Disconnected`.
#[test]
fn one_thread_serves_64_rings_fed_by_four_processes() {
    const RINGS: usize = 64;
    const COUNT: u64 = 2_000;
    let base = common::unique_name("select64");
    let options = RingOptions::new().capacity(4096);
    let (_guards, mut consumers) = rings(&base, RINGS, &options);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            spawn_child(
                "produce-rings",
                &[
                    ("SHMRING_NAME", base.clone()),
                    ("SHMRING_FIRST", (p * 16).to_string()),
                    ("SHMRING_RINGS", "16".into()),
                    ("SHMRING_COUNT", COUNT.to_string()),
                ],
            )
        })
        .collect();
    let (received, waits) = within(Duration::from_secs(120), "serving 64 rings", move || {
        let mut select = Select::with_strategy(WaitStrategy::Park);
        // Per open ring: its number and the next message it owes.
        let mut open: Vec<(usize, u64)> = (0..RINGS).map(|ring| (ring, 0)).collect();
        let mut received = 0;
        let mut buf = Vec::new();
        while !consumers.is_empty() {
            let ready = select.wait(&mut consumers).to_vec();
            assert!(!ready.is_empty());
            // Highest first, so that `swap_remove` moves only rings served.
            for &i in ready.iter().rev() {
                let (ring, next) = &mut open[i];
                loop {
                    match consumers[i].try_recv(&mut buf) {
                        Ok(_) => {
                            check_stream(*next, &buf).unwrap_or_else(|e| panic!("ring {ring}: {e}"));
                            *next += 1;
                            received += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            assert_eq!(*next, COUNT, "ring {ring} ended early");
                            // A disconnected ring stays ready: out of the set.
                            consumers.swap_remove(i);
                            open.swap_remove(i);
                            break;
                        }
                        Err(e) => panic!("ring {ring}: {e}"),
                    }
                }
            }
        }
        (received, select.futex_waits())
    });
    for mut producer in producers {
        producer.kill_or_clean("producer");
    }
    assert_eq!(received, RINGS as u64 * COUNT);
    println!("futex waits: {waits}");
}

/// A select parked on `rings` rings is woken by a message on each of them
/// in turn (sent by another thread once the select is asleep), and reports
/// exactly that ring.
fn each_ring_wakes_a_parked_select(rings_count: usize) {
    let base = common::unique_name("select-wake");
    let options = RingOptions::new().capacity(4096);
    let (guards, mut consumers) = rings(&base, rings_count, &options);
    let names: Vec<String> = guards.iter().map(|g| g.name().to_owned()).collect();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<usize>();
    let sender = std::thread::spawn(move || {
        let mut producers: Vec<Producer> =
            names.iter().map(|n| Producer::open(n, &RingOptions::new()).expect("open")).collect();
        let tid: i32 = tid_rx.recv().expect("tid");
        while let Ok(ring) = go_rx.recv() {
            wait_until_parked(tid, "select parked");
            producers[ring].send(&(ring as u64).to_le_bytes()).expect("send");
        }
    });
    tid_tx.send(thread_id()).expect("tid");
    let mut select = Select::with_strategy(WaitStrategy::Park);
    let mut buf = Vec::new();
    // The last ring, the first, and a stride through the rest.
    let order: Vec<usize> = [rings_count - 1, 0].into_iter().chain((1..rings_count - 1).step_by(7)).collect();
    for ring in order {
        go_tx.send(ring).expect("go");
        let start = Instant::now();
        let ready = select.wait_timeout(&mut consumers, Duration::from_secs(20)).to_vec();
        assert_eq!(ready, [ring], "after {:?}", start.elapsed());
        consumers[ring].try_recv(&mut buf).expect("the ready ring has the message");
        assert_eq!(buf, (ring as u64).to_le_bytes());
    }
    drop(go_tx);
    sender.join().expect("sender");
    assert!(select.futex_waits() > 0, "it never slept");
}

#[test]
fn a_parked_select_is_woken_by_any_of_its_rings() {
    within(Duration::from_secs(60), "8 rings", || each_ring_wakes_a_parked_select(8));
}

/// More than one `futex_waitv` can take (128): the select sleeps on groups
/// in turns and still finds every ring's message.
#[test]
fn a_parked_select_on_200_rings_is_woken_by_any_of_them() {
    within(Duration::from_secs(120), "200 rings", || each_ring_wakes_a_parked_select(200));
}

/// Without `futex_waitv` (`SHMRING_FUTEX_WAITV=off`, as on a kernel before
/// 5.16), in a process of its own: the fallback still wakes for each ring.
#[test]
fn the_fallback_without_futex_waitv_is_woken_by_any_ring() {
    for rings in [8, 200] {
        let child =
            spawn_child("select-wakes", &[("SHMRING_FUTEX_WAITV", "off".into()), ("SHMRING_RINGS", rings.to_string())]);
        let (ok, out) = child.finish(Duration::from_secs(120));
        assert!(ok, "fallback with {rings} rings: {out}");
    }
}

/// A producer parked in a select for room is woken when the consumer (in
/// another thread) frees enough space; an MPSC producer's readiness check claims
/// nothing: after it, the consumer finds exactly the messages sent.
#[test]
fn room_for_wakes_when_space_is_freed_and_claims_nothing() {
    for (kind, label) in common::both_kinds() {
        let guard = SegmentGuard::new("select-room");
        let options = RingOptions::new().capacity(4096).kind(kind);
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        let msg = [9u8; 1000];
        let mut sent = 0;
        while producer.try_send(&msg).is_ok() {
            sent += 1;
        }
        let mut select = Select::with_strategy(WaitStrategy::Park);
        assert!(select.try_ready(&mut [producer.room_for(1000)]).is_empty(), "{label}: full");
        let tid = thread_id();
        let reader = std::thread::spawn(move || {
            wait_until_parked(tid, "producer parked for room");
            // Two: after one, the next record would need padding to the
            // end of the region as well.
            let mut buf = Vec::new();
            consumer.recv(&mut buf).expect("recv");
            consumer.recv(&mut buf).expect("recv");
            consumer
        });
        let ready = select.wait_timeout(&mut [producer.room_for(1000)], Duration::from_secs(20)).to_vec();
        assert_eq!(ready, [0], "{label}");
        let mut consumer = reader.join().expect("reader");
        producer.try_send(&msg).expect("room as reported");
        // Every message once; no claim left behind by the readiness checks.
        let mut buf = Vec::new();
        let mut got = 0;
        while consumer.try_recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, sent - 1, "{label}: sent {sent} + 1, two taken by the reader");
        assert_eq!(consumer.stats().torn_records, 0, "{label}");
        drop(producer);
        assert!(matches!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected)), "{label}");
    }
}

/// A consumer whose producer process is killed becomes ready (within the
/// liveness interval), and its receive says `Disconnected`; a producer
/// whose consumer is gone is ready, and its send says so.
#[test]
fn a_dead_peer_makes_its_handle_ready() {
    let guard = SegmentGuard::new("select-dead");
    let options = RingOptions::new().liveness_interval(Duration::from_millis(20));
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let mut idle = spawn_child("hold-producer", &[("SHMRING_NAME", guard.name().to_owned())]);
    idle.wait_for_line("attached");
    let other = SegmentGuard::new("select-dead-quiet");
    let mut quiet = Consumer::create(other.name(), &options).expect("create");
    let _quiet_producer = Producer::open(other.name(), &options).expect("open");
    let mut select = Select::with_strategy(WaitStrategy::Park);
    assert!(select.wait_timeout(&mut [&mut quiet, &mut consumer], Duration::from_millis(50)).is_empty());
    idle.kill_alive("idle producer");
    let start = Instant::now();
    let ready = select.wait_timeout(&mut [&mut quiet, &mut consumer], Duration::from_secs(10)).to_vec();
    assert_eq!(ready, [1], "after {:?}", start.elapsed());
    assert!(matches!(consumer.try_recv(&mut Vec::new()), Err(TryRecvError::Disconnected)));

    let mut orphan = Producer::create(&common::unique_name("select-orphan"), &options.clone().unlink_on_drop(true))
        .expect("create producer");
    assert_eq!(select.try_ready(&mut [orphan.room_for(8)]), [0], "no consumer yet: room");
}

/// Timeouts: an empty list after the timeout, `try_ready` without waiting,
/// every strategy; a message sent before the wait is found at once.
#[test]
fn timeouts_and_ready_lists() {
    let base = common::unique_name("select-timeout");
    let options = RingOptions::new();
    let (guards, mut consumers) = rings(&base, 3, &options);
    let mut producers: Vec<Producer> =
        guards.iter().map(|g| Producer::open(g.name(), &options).expect("open")).collect();
    for strategy in [WaitStrategy::BusySpin, WaitStrategy::default(), WaitStrategy::Park] {
        let mut select = Select::with_strategy(strategy);
        let start = Instant::now();
        assert!(select.wait_timeout(&mut consumers, Duration::from_millis(30)).is_empty(), "{strategy}");
        assert!(start.elapsed() >= Duration::from_millis(30), "{strategy}");
        assert!(select.try_ready(&mut consumers).is_empty());
        producers[2].send(b"x").expect("send");
        producers[0].send(b"y").expect("send");
        assert_eq!(select.wait(&mut consumers), [0, 2], "{strategy}: every ready ring, in order");
        let mut buf = Vec::new();
        consumers[0].try_recv(&mut buf).expect("recv");
        consumers[2].try_recv(&mut buf).expect("recv");
    }
    // Nothing to wait on: the timeout alone.
    let mut none: [Consumer; 0] = [];
    assert!(Select::new().wait_timeout(&mut none, Duration::from_millis(5)).is_empty());
}

/// Consumers and producers in one wait, through `&mut dyn Selectable`.
#[test]
fn consumers_and_producers_mix() {
    let requests = SegmentGuard::new("select-mix-req");
    let replies = SegmentGuard::new("select-mix-rep");
    let options = RingOptions::new().capacity(4096).kind(Kind::Mpsc);
    let mut server_in = Consumer::create(requests.name(), &options).expect("create");
    let mut client_out = Producer::open(requests.name(), &options).expect("open");
    let mut client_in = Consumer::create(replies.name(), &options).expect("create");
    let mut server_out = Producer::open(replies.name(), &options).expect("open");
    while server_out.try_send(&[1; 500]).is_ok() {}
    let mut select = Select::new();
    {
        let mut room = server_out.room_for(500);
        let handles: &mut [&mut dyn Selectable] = &mut [&mut server_in, &mut room];
        assert!(select.try_ready(handles).is_empty());
        client_out.send(b"request").expect("send");
        assert_eq!(select.wait(handles), [0]);
    }
    client_in.recv(&mut Vec::new()).expect("recv");
    let mut room = server_out.room_for(500);
    let handles: &mut [&mut dyn Selectable] = &mut [&mut server_in, &mut room];
    assert_eq!(select.wait(handles), [0, 1]);
    assert!(matches!(room.producer().try_send(&[2; 500]), Ok(())));
    assert!(matches!(server_out.try_send(&[2; 500]), Err(TrySendError::Full)));
}
