//! Adversarial review of the async handles (feature `async`): the reactor
//! thread, the announce/withdraw split, cancellation, fork, peers killed,
//! futex_waitv refused, many registrations, odd wakers.
//!
//! Tests that could damage the process-wide reactor (a panicking waker) or
//! that measure it (CPU, system calls) run in child processes of their own.
//!
//! Six of these failed on the reviewed commit (e893ce3): a new
//! handle in a forked child never woke (the child had a copy of the
//! reactor, not its thread); a panicking waker ended the reactor thread and
//! every async wait with it; traffic on one ring woke every task on idle
//! rings (`EAGAIN` woke all); over 127 waits, and without `futex_waitv`,
//! idle tasks were polled every millisecond; `liveness_interval` was
//! ignored (a fixed 50 ms reactor slice).
#![cfg(feature = "async")]

mod common;

use common::{spawn_child, within, SegmentGuard};
use shmring::{AsyncConsumer, AsyncProducer, Consumer, Kind, Producer, RecvError, RingOptions, SendError};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A waker that does nothing (`Waker::noop` is newer than the crate's MSRV).
fn noop_waker() -> Waker {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Noop))
}

#[test]
#[ignore = "child process entry point"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        Ok("ra-fork") => fork_child(),
        Ok("ra-panic-waker") => panic_waker_child(),
        Ok("ra-idle") => idle_child(),
        Ok("ra-herd") => herd_child(),
        Ok("ra-hold-consumer") => {
            let name = std::env::var("SHMRING_NAME").expect("name");
            let options = RingOptions::new().capacity(4096);
            let _consumer = Consumer::create(&name, &options).expect("create consumer");
            println!("attached");
            std::thread::sleep(Duration::from_secs(600));
        }
        _ => common::child_main(),
    }
}

fn current_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
}

fn multi_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("runtime")
}

/// Sleepers announced on the consumer's and the producer's lines.
fn sleepers(name: &str) -> (u32, u32) {
    let info = shmring::inspect::inspect(name).expect("inspect");
    (info.consumer_wake.sleepers, info.producer_wake.sleepers)
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn cpu_self() -> Duration {
    // SAFETY: `rusage` is plain integers, for which zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);
impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future that counts how often it is polled.
struct CountPolls<'a, F> {
    inner: std::pin::Pin<Box<F>>,
    polls: &'a AtomicU64,
}
impl<F: Future> Future for CountPolls<'_, F> {
    type Output = F::Output;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn report_latencies(label: &str, lat_us: &mut [u64]) -> (u64, usize) {
    lat_us.sort_unstable();
    let over = lat_us.iter().filter(|&&l| l > 20_000).count();
    println!(
        "{label}: n={} p50={}us p99={}us max={}us over20ms={over}",
        lat_us.len(),
        percentile(lat_us, 0.5),
        percentile(lat_us, 0.99),
        lat_us[lat_us.len() - 1]
    );
    (lat_us[lat_us.len() - 1], over)
}

// ---------------------------------------------------------------------------
// 1. Fork: the child inherits the OnceLock that says the reactor runs, but
//    not its thread. A NEW async handle in the child must not hang.
// ---------------------------------------------------------------------------

fn fork_child() {
    let base = std::env::var("SHMRING_NAME").expect("name");
    let options = RingOptions::new().capacity(4096);
    // Start the reactor: one wait registered, then dropped.
    let mut inherited = AsyncConsumer::new(Consumer::create(&format!("{base}-a"), &options).expect("create a"));
    let _producer_a = Producer::open(&format!("{base}-a"), &options).expect("open a");
    {
        let mut buf = Vec::new();
        let mut fut = std::pin::pin!(inherited.recv(&mut buf));
        assert!(fut.as_mut().poll(&mut Context::from_waker(&noop_waker())).is_pending());
    }
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: the child runs only the code below and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // Grandchild: a new ring, a new async consumer, a message in 100 ms.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let rt = current_rt();
            // The inherited handle: must fail at once, not hang.
            let inherited_outcome = rt.block_on(async {
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(2), inherited.recv(&mut buf)).await
            });
            let inherited_ok = matches!(inherited_outcome, Ok(Err(RecvError::ForkedHandle(_))));
            let name = format!("{base}-gc");
            let consumer = Consumer::create(&name, &options).expect("create in grandchild");
            let mut producer = Producer::open(&name, &options).expect("open in grandchild");
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                producer.send(b"to the grandchild").expect("send");
                producer
            });
            let mut consumer = AsyncConsumer::new(consumer);
            let start = Instant::now();
            let outcome = rt.block_on(async {
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(3), consumer.recv(&mut buf)).await
            });
            let _ = sender.join();
            println!(
                "inherited_ok={} new_ok={} new_ms={}",
                inherited_ok as u8,
                (matches!(outcome, Ok(Ok(_))) && start.elapsed() < Duration::from_secs(1)) as u8,
                start.elapsed().as_millis()
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }));
        // SAFETY: leave the child at once, running no destructor of the parent's state.
        unsafe { libc::_exit(if code.is_ok() { 0 } else { 2 }) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: polling our own child; `status` is writable.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: a signal to our own child, reaped just below.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaping our own child; `status` is writable.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            println!("grandchild killed after 20 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("grandchild_status={status}");
}

#[test]
fn fork_a_new_async_handle_in_a_forked_child_does_not_hang() {
    let base = common::unique_name("ra-fork");
    let _g1 = SegmentGuard(format!("{base}-a"));
    let _g2 = SegmentGuard(format!("{base}-gc"));
    let child = spawn_child("ra-fork", &[("SHMRING_NAME", base.clone())]);
    let (ok, out) = child.finish(Duration::from_secs(60));
    println!("{out}");
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("inherited_ok=")).unwrap_or_else(|| panic!("no report: {out}"));
    assert_eq!(common::field(line, "inherited_ok"), 1, "inherited handle: {line}");
    assert_eq!(
        common::field(line, "new_ok"),
        1,
        "a NEW AsyncConsumer in a forked child was not woken for a message sent 100 ms in; only the 3 s \
         tokio timeout's own poll found it ({line}): the OnceLock says the reactor runs but its thread was not forked"
    );
}

// ---------------------------------------------------------------------------
// 2. A waker that panics in wake(): it runs on the reactor thread.
// ---------------------------------------------------------------------------

struct Panicking;
impl Wake for Panicking {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics");
    }
}

fn panic_waker_child() {
    let base = std::env::var("SHMRING_NAME").expect("name");
    let options = RingOptions::new().capacity(4096);
    let mut a = AsyncConsumer::new(Consumer::create(&format!("{base}-a"), &options).expect("create a"));
    let mut pa = Producer::open(&format!("{base}-a"), &options).expect("open a");
    {
        let waker = Waker::from(Arc::new(Panicking));
        let mut buf = Vec::new();
        let mut fut = std::pin::pin!(a.recv(&mut buf));
        assert!(fut.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        pa.send(b"wake the panicking waker").expect("send");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another ring, an ordinary tokio task.
    let b_name = format!("{base}-b");
    let consumer = Consumer::create(&b_name, &options).expect("create b");
    let mut producer = Producer::open(&b_name, &options).expect("open b");
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        producer.send(b"after").expect("send");
        producer
    });
    let mut consumer = AsyncConsumer::new(consumer);
    let rt = current_rt();
    let start = Instant::now();
    let outcome = rt.block_on(async {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), consumer.recv(&mut buf)).await
    });
    let _ = sender.join();
    // `timeout` polls the inner future once more when it fires: a message
    // seen only then was never woken for.
    let ok = matches!(outcome, Ok(Ok(_))) && start.elapsed() < Duration::from_secs(1);
    println!("after_panic_ok={} ms={}", ok as u8, start.elapsed().as_millis());
}

#[test]
fn a_panicking_waker_does_not_take_the_reactor_down_for_the_whole_process() {
    let base = common::unique_name("ra-panic");
    let _g1 = SegmentGuard(format!("{base}-a"));
    let _g2 = SegmentGuard(format!("{base}-b"));
    let child = spawn_child("ra-panic-waker", &[("SHMRING_NAME", base.clone())]);
    let (ok, out) = child.finish(Duration::from_secs(60));
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("after_panic_ok=")).unwrap_or_else(|| panic!("no report: {out}"));
    println!("{line}");
    assert_eq!(
        common::field(line, "after_panic_ok"),
        1,
        "after one waker panicked on the reactor thread, an unrelated task on another ring never woke ({line})"
    );
}

// ---------------------------------------------------------------------------
// 3. Idle CPU: N tasks waiting on N idle rings for 1 s, with futex_waitv,
//    without it (SHMRING_FUTEX_WAITV=off), refused by seccomp (EPERM); then
//    a message to every ring must be delivered.
// ---------------------------------------------------------------------------

fn idle_child() {
    if let Ok(errno) = std::env::var("SHMRING_ERRNO") {
        common::refuse_futex_waitv(errno.parse().expect("errno"));
    }
    let base = std::env::var("SHMRING_NAME").expect("name");
    let rings: usize = std::env::var("SHMRING_RINGS").expect("rings").parse().expect("rings");
    let options = RingOptions::new().capacity(4096);
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for i in 0..rings {
        let name = format!("{base}-{i}");
        consumers.push(AsyncConsumer::new(Consumer::create(&name, &options).expect("create")));
        producers.push(Producer::open(&name, &options).expect("open"));
    }
    let polls: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let received: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let rt = current_rt();
    let (cpu, syscalls, idle_polls, latency) = rt.block_on(async move {
        let mut tasks = Vec::new();
        for mut consumer in consumers {
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                let fut = CountPolls { inner: Box::pin(consumer.recv(&mut buf)), polls };
                let r = fut.await;
                assert!(r.is_ok(), "{r:?}");
                received.fetch_add(1, Ordering::SeqCst);
            }));
        }
        // Let every task register.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (cpu0, sys0, polls0) = (cpu_self(), shmring::reactor_syscalls(), polls.load(Ordering::Relaxed));
        // Idle for 1 s (the timer is the only other thing this runtime does).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = cpu_self() - cpu0;
        let syscalls = shmring::reactor_syscalls() - sys0;
        let idle_polls = polls.load(Ordering::Relaxed) - polls0;
        // Now deliver one message to every ring, from another thread.
        let start = Instant::now();
        let sender = std::thread::spawn(move || {
            for p in &mut producers {
                p.send(b"wake up").expect("send");
            }
            producers
        });
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t).await.expect("task timed out").expect("task");
        }
        let _ = sender.join();
        (cpu, syscalls, idle_polls, start.elapsed())
    });
    println!(
        "cpu_ms={} syscalls={} idle_polls={} delivered={} deliver_ms={}",
        cpu.as_millis(),
        syscalls,
        idle_polls,
        received.load(Ordering::SeqCst),
        latency.as_millis()
    );
}

fn run_idle(rings: usize, env: &[(&str, String)], label: &str) -> (i64, i64, i64) {
    let base = common::unique_name("ra-idle");
    let _guards: Vec<SegmentGuard> = (0..rings).map(|i| SegmentGuard(format!("{base}-{i}"))).collect();
    let mut all = vec![("SHMRING_NAME", base.clone()), ("SHMRING_RINGS", rings.to_string())];
    all.extend(env.iter().cloned());
    let child = spawn_child("ra-idle", &all);
    let (ok, out) = child.finish(Duration::from_secs(60));
    assert!(ok, "{label}: {out}");
    let line = out.lines().find(|l| l.starts_with("cpu_ms=")).unwrap_or_else(|| panic!("{label}: {out}"));
    println!("{label}: {line}");
    assert_eq!(common::field(line, "delivered"), rings as i64, "{label}: {line}");
    (common::field(line, "cpu_ms"), common::field(line, "syscalls"), common::field(line, "idle_polls"))
}

#[test]
fn idle_waits_with_futex_waitv_do_not_spin() {
    let (cpu, syscalls, polls) = run_idle(1, &[], "waitv, 1 ring");
    assert!(polls <= 40 && syscalls <= 60 && cpu < 100, "1 idle task: polls={polls} syscalls={syscalls} cpu={cpu}");
}

#[test]
fn idle_waits_without_futex_waitv_do_not_spin() {
    let mut results = Vec::new();
    for (env, label) in [
        (vec![("SHMRING_FUTEX_WAITV", "off".to_owned())], "SHMRING_FUTEX_WAITV=off"),
        (vec![("SHMRING_ERRNO", (libc::EPERM as u32).to_string())], "seccomp EPERM"),
    ] {
        let (cpu, syscalls, polls) = run_idle(1, &env, label);
        results.push((label, cpu, syscalls, polls));
    }
    for (label, cpu, syscalls, polls) in results {
        // A blocking wait (and now a Select) on one word sleeps the whole
        // 50 ms slice in this fallback: about 20 looks a second.
        assert!(
            polls <= 100,
            "{label}: ONE task waiting on ONE idle ring was polled {polls} times in 1 s \
             ({syscalls} reactor syscalls, {cpu} ms CPU): the fallback wakes every task every 1 ms"
        );
    }
}

#[test]
fn more_than_127_idle_waits_do_not_spin() {
    let (cpu, syscalls, polls) = run_idle(200, &[], "waitv, 200 rings");
    assert!(
        cpu < 200,
        "200 tasks waiting on 200 idle rings: {polls} polls, {syscalls} reactor syscalls, {cpu} ms of CPU in 1 s"
    );
}

// ---------------------------------------------------------------------------
// 4. Lost wake-ups: the reactor re-wakes every task once per liveness
//    interval (50 ms by default), which would hide a lost wake-up as a short
//    stall. These rings get a 10 s interval, so a lost wake-up is a stall of
//    about 10 s, which scheduling noise on a loaded machine never makes.
// ---------------------------------------------------------------------------

/// The liveness interval of the rings in [`ping_latencies`] and the tests
/// after it: how long a lost wake-up would hold a task up.
const LOST_WAKE_UP_STALL: Duration = Duration::from_secs(10);

/// One sender thread per ring, sending a timestamp after a random pause of
/// 0-2 ms once the previous one was received; one task per ring.
fn ping_latencies(rings: usize, count: usize, rt: tokio::runtime::Runtime, spin: bool) -> Vec<u64> {
    let guards: Vec<SegmentGuard> = (0..rings).map(|_| SegmentGuard::new("ra-lat")).collect();
    let options = RingOptions::new().capacity(4096).unlink_on_drop(false).liveness_interval(LOST_WAKE_UP_STALL);
    let consumers: Vec<Consumer> =
        guards.iter().map(|g| Consumer::create(g.name(), &options).expect("create")).collect();
    let mut senders = Vec::new();
    let mut acks = Vec::new();
    for (i, g) in guards.iter().enumerate() {
        let mut producer = Producer::open(g.name(), &options).expect("open");
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
        acks.push(ack_tx);
        senders.push(std::thread::spawn(move || {
            let mut rng = 0x1234_5678_9abc_def1u64 ^ (i as u64 + 1);
            for _ in 0..count {
                let pause = xorshift(&mut rng) % 2_000;
                std::thread::sleep(Duration::from_micros(pause));
                producer.send(&now_ns().to_le_bytes()).expect("send");
                ack_rx.recv_timeout(3 * LOST_WAKE_UP_STALL).expect("ack");
            }
        }));
    }
    let lat = within(Duration::from_secs(300), "ping latencies", move || {
        rt.block_on(async move {
            let tasks: Vec<_> = consumers
                .into_iter()
                .zip(acks)
                .map(|(consumer, ack)| {
                    tokio::spawn(async move {
                        let mut consumer = AsyncConsumer::new(consumer);
                        if spin {
                            consumer.set_spin(Duration::from_micros(20));
                        }
                        let mut buf = Vec::new();
                        let mut lat = Vec::with_capacity(count);
                        for _ in 0..count {
                            consumer.recv(&mut buf).await.expect("recv");
                            let sent = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            lat.push((now_ns() - sent) / 1000);
                            ack.send(()).expect("ack");
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        })
    });
    for s in senders {
        s.join().expect("sender");
    }
    for g in &guards {
        assert_eq!(sleepers(g.name()), (0, 0), "announcement left behind");
    }
    lat
}

#[test]
fn no_hand_off_waits_for_the_reactor_slice() {
    let mut worst = Vec::new();
    for (label, rings, count, rt) in [
        ("1 ring, current-thread", 1, 1500, current_rt()),
        ("8 rings, multi-thread", 8, 300, multi_rt()),
        ("32 rings, multi-thread", 32, 80, multi_rt()),
    ] {
        let mut lat = ping_latencies(rings, count, rt, false);
        let (max, over) = report_latencies(label, &mut lat);
        worst.push((label, max, over, lat.len()));
    }
    for (label, max, over, n) in worst {
        // Scheduling noise on a loaded 2-core machine makes some hand-offs
        // take tens of milliseconds (29 of 2,560 over 20 ms, the slowest
        // 28 ms, in one CI run); a lost wake-up is recovered only by the
        // 10 s liveness interval.
        assert!(
            u128::from(max) * 2 < LOST_WAKE_UP_STALL.as_micros(),
            "{label}: a hand-off took {max} us ({over} of {n} over 20 ms): a wake-up was lost \
             and the {LOST_WAKE_UP_STALL:?} liveness interval recovered it"
        );
    }
}

/// Many async MPSC producers waiting for room while a consumer drains in
/// bursts: after each drain leaves the ring empty, a new message must come
/// while producers still have messages to send. With a liveness interval of
/// `LOST_WAKE_UP_STALL`, a producer whose wake was lost sleeps that long,
/// which shows at the latest when the others are done.
#[test]
fn mpsc_async_producers_waiting_for_room_are_all_woken() {
    const PRODUCERS: usize = 12;
    const COUNT: u64 = 1500;
    let guard = SegmentGuard::new("ra-mpsc-room");
    let options = RingOptions::new()
        .capacity(4096)
        .kind(Kind::Mpsc)
        .max_producers(PRODUCERS)
        .liveness_interval(LOST_WAKE_UP_STALL);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let producers: Vec<Producer> =
        (0..PRODUCERS).map(|_| Producer::open(guard.name(), &options).expect("open")).collect();
    let rt = multi_rt();
    let runner = std::thread::spawn(move || {
        rt.block_on(async move {
            let tasks: Vec<_> = producers
                .into_iter()
                .enumerate()
                .map(|(id, p)| {
                    tokio::spawn(async move {
                        let mut p = AsyncProducer::new(p);
                        let mut rng = 0xdead_beef_u64 ^ (id as u64 + 7);
                        for seq in 0..COUNT {
                            let mut msg = vec![0u8; 16 + (xorshift(&mut rng) % 100) as usize];
                            msg[..8].copy_from_slice(&(id as u64).to_le_bytes());
                            msg[8..16].copy_from_slice(&seq.to_le_bytes());
                            // A third of the sends race a yield: cancelled
                            // after one poll, then retried.
                            loop {
                                if xorshift(&mut rng) % 3 == 0 {
                                    tokio::select! {
                                        r = p.send(&msg) => { r.expect("send"); break; }
                                        () = tokio::task::yield_now() => {}
                                    }
                                } else {
                                    p.send(&msg).await.expect("send");
                                    break;
                                }
                            }
                        }
                        p
                    })
                })
                .collect();
            let mut ps = Vec::new();
            for t in tasks {
                ps.push(t.await.expect("task"));
            }
            ps
        })
    });
    let mut next = [0u64; PRODUCERS];
    let mut total = 0u64;
    let mut buf = Vec::new();
    let mut gaps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while total < PRODUCERS as u64 * COUNT {
        assert!(Instant::now() < deadline, "only {total} messages in 120 s");
        std::thread::sleep(Duration::from_millis(2));
        // Drain everything (producers are woken while this frees space).
        while consumer.try_recv(&mut buf).is_ok() {
            let id = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
            let seq = u64::from_le_bytes(buf[8..16].try_into().unwrap());
            assert_eq!(seq, next[id], "producer {id}: message lost or duplicated");
            next[id] += 1;
            total += 1;
        }
        if total == PRODUCERS as u64 * COUNT {
            break;
        }
        let empty_at = Instant::now();
        match consumer.recv_timeout(&mut buf, 3 * LOST_WAKE_UP_STALL) {
            Ok(_) => {
                gaps.push(empty_at.elapsed().as_micros() as u64);
                let id = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                let seq = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                assert_eq!(seq, next[id], "producer {id}: message lost or duplicated");
                next[id] += 1;
                total += 1;
            }
            Err(e) => panic!("no message for {:?} with {total} received: {e}", 3 * LOST_WAKE_UP_STALL),
        }
    }
    let producers = runner.join().expect("runner");
    let (max, over) = report_latencies("mpsc room gaps", &mut gaps);
    assert_eq!(sleepers(guard.name()), (0, 0), "announcement left behind");
    drop(producers);
    // Scheduling on a loaded machine makes gaps of tens of ms (29 of 2,560
    // over 20 ms in one CI run); a lost wake makes one of seconds, and wakes
    // that come late (a timer's, not the release's) make many slow gaps.
    assert!(
        u128::from(max) * 2 < LOST_WAKE_UP_STALL.as_micros(),
        "a refill took {max} us ({over} of {} over 20 ms): a producer's wake was lost",
        gaps.len()
    );
    assert!(over * 20 <= gaps.len(), "{over} of {} refills took over 20 ms (max {max} us)", gaps.len());
}

// ---------------------------------------------------------------------------
// 5. Announcements left behind: completed, dropped, forgotten, runtime shut
//    down with pending futures, aborted tasks, task migration.
// ---------------------------------------------------------------------------

#[test]
fn runtime_shutdown_and_abort_leave_no_announcement() {
    within(Duration::from_secs(60), "shutdown", || {
        let options = RingOptions::new().capacity(4096).unlink_on_drop(false);
        for (label, rt) in [("current", current_rt()), ("multi", multi_rt())] {
            let guard_c = SegmentGuard::new("ra-shut-c");
            let guard_p = SegmentGuard::new("ra-shut-p");
            let consumer = AsyncConsumer::new(Consumer::create(guard_c.name(), &options).expect("create"));
            let producer_c = Producer::open(guard_c.name(), &options).expect("open");
            let mut consumer_p = Consumer::create(guard_p.name(), &options).expect("create");
            let mut producer = Producer::open(guard_p.name(), &options).expect("open");
            while producer.try_send(&[7u8; 200]).is_ok() {}
            let mut producer = AsyncProducer::new(producer);
            let consumer = Arc::new(Mutex::new(Some(consumer)));
            let c2 = Arc::clone(&consumer);
            rt.block_on(async {
                tokio::spawn(async move {
                    let mut c = c2.lock().unwrap().take().unwrap();
                    let mut buf = Vec::new();
                    let _ = c.recv(&mut buf).await;
                    unreachable!("nothing is sent");
                });
                let h = tokio::spawn(async move {
                    producer.send(&[1u8; 200]).await.expect("send");
                    unreachable!("never room");
                });
                // Both tasks announce at their first poll, which on the
                // multi-thread runtime comes when a worker gets to it.
                let polled = Instant::now();
                while sleepers(guard_c.name()).0 == 0 || sleepers(guard_p.name()).1 == 0 {
                    assert!(polled.elapsed() < Duration::from_secs(10), "{label}: not announced in 10 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(sleepers(guard_c.name()).0, 1, "{label}: consumer announced");
                assert_eq!(sleepers(guard_p.name()).1, 1, "{label}: producer announced");
                h.abort();
                let _ = h.await;
                assert_eq!(sleepers(guard_p.name()).1, 0, "{label}: the aborted send withdrew");
            });
            // The runtime is dropped with the recv pending.
            drop(rt);
            assert_eq!(sleepers(guard_c.name()).0, 0, "{label}: runtime shut down with a recv pending");
            drop(producer_c);
            while consumer_p.try_recv(&mut Vec::new()).is_ok() {}
            drop(consumer_p);
        }
    });
}

#[test]
fn a_handle_polled_with_different_wakers_wakes_the_latest() {
    within(Duration::from_secs(60), "wakers", || {
        let guard = SegmentGuard::new("ra-wakers");
        let options = RingOptions::new();
        let mut consumer = AsyncConsumer::new(Consumer::create(guard.name(), &options).expect("create"));
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        let mut slow = 0;
        for round in 0..50 {
            let w1 = Arc::new(Counting(AtomicUsize::new(0)));
            let w2 = Arc::new(Counting(AtomicUsize::new(0)));
            let waker1 = Waker::from(Arc::clone(&w1));
            let waker2 = Waker::from(Arc::clone(&w2));
            let mut buf = Vec::new();
            {
                let mut fut = std::pin::pin!(consumer.recv(&mut buf));
                assert!(fut.as_mut().poll(&mut Context::from_waker(&waker1)).is_pending());
                // Moved to another task: polled with another waker, from another thread.
                std::thread::scope(|s| {
                    s.spawn(|| assert!(fut.as_mut().poll(&mut Context::from_waker(&waker2)).is_pending()));
                });
                assert_eq!(sleepers(guard.name()).0, 1, "one announcement after two polls");
                let sent = Instant::now();
                producer.send(b"x").expect("send");
                while w2.0.load(Ordering::SeqCst) == 0 {
                    assert!(sent.elapsed() < Duration::from_secs(5), "round {round}: the latest waker never woke");
                    std::thread::sleep(Duration::from_micros(100));
                }
                // A wake that only the reactor's 50 ms slice delivers takes
                // 0 to 50 ms: over 30 ms in two rounds of five. A loaded
                // machine may delay a few.
                if sent.elapsed() > Duration::from_millis(30) {
                    slow += 1;
                }
                assert!(fut.as_mut().poll(&mut Context::from_waker(&waker2)).is_ready());
            }
            assert_eq!(sleepers(guard.name()).0, 0);
        }
        assert!(slow <= 5, "{slow} of 50 rounds woken after over 30 ms (by the reactor slice?)");
    });
}

// ---------------------------------------------------------------------------
// 6. A waker that polls its future inline (re-registers inside wake(), on
//    the reactor thread).
// ---------------------------------------------------------------------------

struct InlineTask {
    fut: Mutex<Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>>,
    done: std::sync::mpsc::SyncSender<()>,
}

impl InlineTask {
    fn run(self: &Arc<Self>) {
        let waker = Waker::from(Arc::clone(self));
        let mut slot = self.fut.lock().unwrap();
        if let Some(fut) = slot.as_mut() {
            if fut.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                *slot = None;
                let _ = self.done.try_send(());
            }
        }
    }
}

impl Wake for InlineTask {
    fn wake(self: Arc<Self>) {
        self.run();
    }
}

#[test]
fn a_waker_that_polls_inline_on_the_reactor_thread() {
    within(Duration::from_secs(60), "inline waker", || {
        let guard = SegmentGuard::new("ra-inline");
        // A lost wake-up would be recovered only after this interval; the
        // loop below fails at half of it.
        let options = RingOptions::new().capacity(4096).unlink_on_drop(false).liveness_interval(LOST_WAKE_UP_STALL);
        let consumer = AsyncConsumer::new(Consumer::create(guard.name(), &options).expect("create"));
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        const COUNT: u64 = 500;
        let got = Arc::new(AtomicU64::new(0));
        let got2 = Arc::clone(&got);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let task = Arc::new(InlineTask {
            fut: Mutex::new(Some(Box::pin(async move {
                let mut consumer = consumer;
                let mut buf = Vec::new();
                for seq in 0..COUNT {
                    consumer.recv(&mut buf).await.expect("recv");
                    assert_eq!(buf, seq.to_le_bytes());
                    got2.store(seq + 1, Ordering::SeqCst);
                }
            }))),
            done: done_tx,
        });
        task.run();
        let mut slow = 0;
        for seq in 0..COUNT {
            if seq % 7 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
            let sent = Instant::now();
            producer.send(&seq.to_le_bytes()).expect("send");
            while got.load(Ordering::SeqCst) <= seq {
                assert!(sent.elapsed() < LOST_WAKE_UP_STALL / 2, "message {seq}: a wake-up was lost");
                std::thread::yield_now();
            }
            if sent.elapsed() > Duration::from_millis(20) {
                slow += 1;
            }
        }
        done_rx.recv_timeout(Duration::from_secs(5)).expect("done");
        // Slow hand-offs are scheduling noise here, not a failure.
        println!("inline waker: {slow} of {COUNT} hand-offs over 20 ms");
        assert_eq!(sleepers(guard.name()), (0, 0));
    });
}

// ---------------------------------------------------------------------------
// 7. A handle dropped while registered; a new ring mapped (likely) at the
//    same address and waited on at once.
// ---------------------------------------------------------------------------

#[test]
fn a_handle_dropped_while_registered_then_a_new_mapping_at_its_address() {
    within(Duration::from_secs(60), "address reuse", || {
        let options = RingOptions::new().capacity(4096);
        let rt = current_rt();
        let mut lat = Vec::new();
        for _ in 0..60 {
            let g1 = SegmentGuard::new("ra-reuse1");
            {
                let mut c = AsyncConsumer::new(Consumer::create(g1.name(), &options).expect("create"));
                let _p = Producer::open(g1.name(), &options).expect("open");
                let mut buf = Vec::new();
                let mut fut = Box::pin(c.recv(&mut buf));
                assert!(fut.as_mut().poll(&mut Context::from_waker(&noop_waker())).is_pending());
                std::mem::forget(fut); // the handle, not the future, ends the wait
            }
            drop(g1);
            let g2 = SegmentGuard::new("ra-reuse2");
            let consumer = Consumer::create(g2.name(), &options).expect("create");
            let mut producer = Producer::open(g2.name(), &options).expect("open");
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(3));
                producer.send(&now_ns().to_le_bytes()).expect("send");
                producer
            });
            let mut consumer = AsyncConsumer::new(consumer);
            let l = rt.block_on(async {
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), consumer.recv(&mut buf))
                    .await
                    .expect("timeout")
                    .expect("recv");
                (now_ns() - u64::from_le_bytes(buf[..8].try_into().unwrap())) / 1000
            });
            lat.push(l);
            let _ = sender.join();
            assert_eq!(sleepers(g2.name()), (0, 0));
        }
        // A wake lost to a stale registration is delivered by the liveness
        // interval (50 ms), in every round; a loaded machine delays a few.
        let (max, over) = report_latencies("address reuse", &mut lat);
        assert!(over <= 6, "{over} of 60 waits took over 20 ms (max {max} us)");
    });
}

// ---------------------------------------------------------------------------
// 8. Cancellation: recv and read futures cancelled at random (select with a
//    yield) lose and duplicate nothing, on both runtimes; sleepers return to 0.
// ---------------------------------------------------------------------------

#[test]
fn recv_and_read_cancelled_at_random_lose_nothing() {
    const COUNT: u64 = 4000;
    for (label, rt) in [("current", current_rt()), ("multi", multi_rt())] {
        let guard = SegmentGuard::new("ra-cancel");
        let options = RingOptions::new().capacity(4096);
        let consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        let sender = std::thread::spawn(move || {
            let mut rng = 99u64;
            for seq in 0..COUNT {
                let len = 8 + (xorshift(&mut rng) % 300) as usize;
                let mut m = vec![seq as u8; len];
                m[..8].copy_from_slice(&seq.to_le_bytes());
                producer.send_timeout(&m, Duration::from_secs(30)).expect("send");
                if seq % 16 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            producer
        });
        let cancelled = within(Duration::from_secs(120), label, move || {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut c = AsyncConsumer::new(consumer);
                    let mut rng = 7u64;
                    let (mut seq, mut cancelled) = (0u64, 0u64);
                    let mut buf = Vec::new();
                    while seq < COUNT {
                        let r = xorshift(&mut rng) % 6;
                        let got: Option<Vec<u8>> = match r {
                            0 => tokio::select! {
                                r = c.recv(&mut buf) => { r.expect("recv"); Some(buf.clone()) }
                                () = tokio::task::yield_now() => None,
                            },
                            1 => tokio::select! {
                                r = c.read() => Some(r.expect("read").to_vec()),
                                () = tokio::task::yield_now() => None,
                            },
                            2 => tokio::time::timeout(Duration::from_micros(300), c.read())
                                .await
                                .ok()
                                .map(|r| r.expect("read").to_vec()),
                            3 => {
                                // poll_ready then a try
                                std::future::poll_fn(|cx| c.poll_ready(cx)).await;
                                let m = c.get_mut().try_recv(&mut buf).map(|_| buf.clone());
                                Some(m.expect("ready, then try_recv"))
                            }
                            4 => Some(c.read().await.expect("read").to_vec()),
                            _ => {
                                c.recv(&mut buf).await.expect("recv");
                                Some(buf.clone())
                            }
                        };
                        match got {
                            Some(m) => {
                                let n = u64::from_le_bytes(m[..8].try_into().unwrap());
                                assert_eq!(n, seq, "lost or duplicated");
                                assert!(m[8..].iter().all(|&b| b == seq as u8), "torn {seq}");
                                seq += 1;
                            }
                            None => cancelled += 1,
                        }
                    }
                    (c, cancelled)
                })
                .await
                .expect("task")
            })
        });
        let _producer = sender.join().expect("sender");
        println!("{label}: cancelled {}", cancelled.1);
        assert_eq!(sleepers(guard.name()), (0, 0), "{label}: announcement left");
        assert!(cancelled.1 > 0);
    }
}

// ---------------------------------------------------------------------------
// 9. A peer killed while a task waits: ready with an error within about the
//    liveness interval.
// ---------------------------------------------------------------------------

/// Whether process `pid` has exited (a zombie, or reaped): its descriptors,
/// and so its liveness lock, are gone.
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

/// The time from a producer's death (not from the signal: a loaded machine
/// may take a while to run the exit) to an async recv's `Disconnected` must
/// follow the liveness interval, not the reactor's fixed 50 ms slice. A
/// round of four kills whose worst misses the bound is run once more (a
/// slice-bound detection misses it in nearly every round).
#[test]
fn a_killed_producer_ends_an_async_recv_within_the_liveness_interval() {
    for interval_ms in [10u64, 50] {
        let limit = Duration::from_millis(interval_ms * 2 + 10);
        let mut worst = Duration::ZERO;
        for round in 0..2 {
            worst = worst_of_four_kills(interval_ms);
            println!("liveness {interval_ms} ms, round {round}: worst detection {worst:?}");
            if worst < limit {
                break;
            }
        }
        assert!(
            worst < limit,
            "liveness_interval {interval_ms} ms: an async recv saw the killed producer only after {worst:?} \
             (a blocking recv: about 1.2x the interval); the reactor slice is a fixed 50 ms"
        );
    }
}

fn worst_of_four_kills(interval_ms: u64) -> Duration {
    let mut worst = Duration::ZERO;
    for kill_after_ms in [37u64, 55, 62, 70] {
        let guard = SegmentGuard::new("ra-killed-p");
        let options = RingOptions::new().liveness_interval(Duration::from_millis(interval_ms));
        let consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut child = spawn_child("hold-producer", &[("SHMRING_NAME", guard.name().to_owned())]);
        child.wait_for_line("attached");
        let pid = child.id() as i32;
        let rt = current_rt();
        let (outcome, took) = within(Duration::from_secs(30), "killed producer", move || {
            rt.block_on(async move {
                let mut c = AsyncConsumer::new(consumer);
                let mut buf = Vec::new();
                // Let it register, then kill the producer.
                let killer = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
                    // SAFETY: a signal to our own child, which its guard reaps.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !exited(pid) {
                        assert!(Instant::now() < deadline, "the killed producer {pid} has not exited in 10 s");
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Instant::now()
                });
                let r = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut buf)).await;
                let killed_at = killer.await.unwrap();
                (r.map(|r| r.map(|_| ())), killed_at.elapsed())
            })
        });
        child.kill();
        assert!(matches!(outcome, Ok(Err(RecvError::Disconnected))), "{outcome:?}");
        println!("liveness {interval_ms} ms, killed {kill_after_ms} ms after the wait began: seen after {took:?}");
        worst = worst.max(took);
    }
    worst
}

#[test]
fn a_killed_consumer_ends_an_async_send_waiting_for_room() {
    within(Duration::from_secs(60), "killed consumer", || {
        let guard = SegmentGuard::new("ra-killed-c");
        let mut child = spawn_child("ra-hold-consumer", &[("SHMRING_NAME", guard.name().to_owned())]);
        child.wait_for_line("attached");
        let options = RingOptions::new().capacity(4096).liveness_interval(Duration::from_millis(50));
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        while producer.try_send(&[1; 300]).is_ok() {}
        let mut producer = AsyncProducer::new(producer);
        let pid = child.id() as i32;
        let rt = current_rt();
        let (outcome, took) = rt.block_on(async {
            let killer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                // SAFETY: a signal to our own child, which its guard reaps.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                Instant::now()
            });
            let r = tokio::time::timeout(Duration::from_secs(5), producer.send(&[2; 300])).await;
            (r, killer.await.unwrap().elapsed())
        });
        child.kill();
        println!("killed consumer seen after {took:?}");
        assert!(matches!(outcome, Ok(Err(SendError::Disconnected))), "{outcome:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        drop(producer);
    });
}

// ---------------------------------------------------------------------------
// 10. Thundering herd: a registration whose word moved before the reactor
//     slept makes futex_waitv fail with EAGAIN, and the reactor then wakes
//     EVERY registration. Traffic on one ring should not keep waking tasks
//     that wait on other, idle rings.
// ---------------------------------------------------------------------------

fn herd_child() {
    let base = std::env::var("SHMRING_NAME").expect("name");
    let idle: usize = std::env::var("SHMRING_RINGS").expect("rings").parse().expect("rings");
    let options = RingOptions::new().capacity(4096);
    let mut idle_consumers = Vec::new();
    let mut idle_producers = Vec::new();
    for i in 0..idle {
        let name = format!("{base}-{i}");
        idle_consumers.push(AsyncConsumer::new(Consumer::create(&name, &options).expect("create")));
        idle_producers.push(Producer::open(&name, &options).expect("open"));
    }
    let busy_name = format!("{base}-busy");
    let busy = Consumer::create(&busy_name, &options).expect("create busy");
    let mut busy_producer = Producer::open(&busy_name, &options).expect("open busy");
    let polls: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let busy_count: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let stop: &'static std::sync::atomic::AtomicBool = Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
    let rt = multi_rt();
    let (idle_polls, busy_msgs, syscalls) = rt.block_on(async move {
        let mut tasks = Vec::new();
        for mut consumer in idle_consumers {
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                let fut = CountPolls { inner: Box::pin(consumer.recv(&mut buf)), polls };
                fut.await.expect("recv");
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // One busy ring: a thread sends with short random pauses, a task receives.
        let sender = std::thread::spawn(move || {
            let mut rng = 5u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = busy_producer.try_send(b"busy");
                let pause = Instant::now();
                let us = xorshift(&mut rng) % 40;
                while pause.elapsed() < Duration::from_micros(us) {
                    std::hint::spin_loop();
                }
            }
            busy_producer
        });
        let busy_task = tokio::spawn(async move {
            let mut c = AsyncConsumer::new(busy);
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), c.recv(&mut buf)).await {
                    busy_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (p0, m0, s0) =
            (polls.load(Ordering::Relaxed), busy_count.load(Ordering::Relaxed), shmring::reactor_syscalls());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = (
            polls.load(Ordering::Relaxed) - p0,
            busy_count.load(Ordering::Relaxed) - m0,
            shmring::reactor_syscalls() - s0,
        );
        stop.store(true, Ordering::Relaxed);
        let _ = busy_task.await;
        let _ = sender.join();
        for p in &mut idle_producers {
            p.send(b"end").expect("send");
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t).await.expect("idle task timed out").expect("task");
        }
        r
    });
    println!("idle_polls={idle_polls} busy_msgs={busy_msgs} syscalls={syscalls}");
}

#[test]
fn traffic_on_one_ring_does_not_keep_waking_tasks_on_idle_rings() {
    const IDLE: usize = 100;
    let base = common::unique_name("ra-herd");
    let mut guards: Vec<SegmentGuard> = (0..IDLE).map(|i| SegmentGuard(format!("{base}-{i}"))).collect();
    guards.push(SegmentGuard(format!("{base}-busy")));
    let child = spawn_child("ra-herd", &[("SHMRING_NAME", base.clone()), ("SHMRING_RINGS", IDLE.to_string())]);
    let (ok, out) = child.finish(Duration::from_secs(60));
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("idle_polls=")).unwrap_or_else(|| panic!("{out}"));
    println!("{line}");
    let polls = common::field(line, "idle_polls");
    // The 50 ms slice alone: 100 tasks x 20 = 2,000 polls a second.
    assert!(
        polls <= 3 * 20 * IDLE as i64,
        "{IDLE} tasks on idle rings were polled {polls} times in 1 s while one other ring was busy ({line}): \
         every EAGAIN from futex_waitv wakes every registration"
    );
}
