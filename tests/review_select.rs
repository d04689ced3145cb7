//! Adversarial review of `Select` (commit 324eae3): lost wake-ups, leaked
//! sleeper announcements, readiness that disagrees with the call it stands
//! for, timeouts, a peer killed meanwhile, and futex_waitv refused by a
//! seccomp filter. Four of these failed on that commit: a select spun when
//! a seccomp filter refused `futex_waitv` with `EPERM`; an MPSC `room_for`
//! after a leaked grant never became ready; a corrupt claim position read
//! as "no room"; `try_ready` did not probe a dead peer.

mod common;

use common::{number_of, numbered, spawn_child, thread_id, wait_until_parked, within, SegmentGuard, TempDir};
use shmring::{Consumer, Kind, Producer, RingOptions, Select, Selectable, TryRecvError, TrySendError, WaitStrategy};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        Ok("rs-seccomp") => seccomp_child(),
        Ok("rs-timeouts") => {
            timeouts_for_every_strategy_and_size();
            println!("ok");
        }
        Ok("rs-hold-consumer") => {
            let name = std::env::var("SHMRING_NAME").expect("name");
            let options = RingOptions::new().capacity(4096);
            let _consumer = Consumer::create(&name, &options).expect("create consumer");
            println!("attached");
            std::thread::sleep(Duration::from_secs(600));
        }
        _ => common::child_main(),
    }
}

/// `count` rings named `base-i` with their consumers here.
fn rings(base: &str, count: usize, options: &RingOptions) -> (Vec<SegmentGuard>, Vec<Consumer>) {
    let guards: Vec<SegmentGuard> = (0..count).map(|i| SegmentGuard(format!("{base}-{i}"))).collect();
    let consumers = guards.iter().map(|g| Consumer::create(g.name(), options).expect("create")).collect();
    (guards, consumers)
}

fn sleepers(name: &str) -> (u32, u32) {
    let info = shmring::inspect::inspect(name).expect("inspect");
    (info.consumer_wake.sleepers, info.producer_wake.sleepers)
}

// ---------------------------------------------------------------------------
// 1. MPSC `room_for` after a leaked grant: the readiness check never discards
//    the leaked claim (a claim does), so the consumer stays wedged behind it
//    and the select never sees room, while a send would.
// ---------------------------------------------------------------------------

#[test]
fn mpsc_room_for_after_a_leaked_grant_is_never_ready() {
    within(Duration::from_secs(60), "leaked grant", || {
        let guard = SegmentGuard::new("rs-leak");
        let options = RingOptions::new().capacity(4096).kind(Kind::Mpsc).liveness_interval(Duration::from_millis(20));
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut leaker = Producer::open(guard.name(), &options).expect("open");
        let mut filler = Producer::open(guard.name(), &options).expect("open");
        std::mem::forget(leaker.try_reserve(100).expect("reserve"));
        let mut sent = 0u64;
        while filler.try_send(&numbered(sent, 200)).is_ok() {
            sent += 1;
        }
        // The consumer runs, but is held at the leaked claim (its producer lives).
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut got = 0u64;
            let deadline = Instant::now() + Duration::from_secs(20);
            while got < sent + 1 && Instant::now() < deadline {
                if consumer.recv_timeout(&mut buf, Duration::from_millis(100)).is_ok() {
                    got += 1;
                }
            }
            got
        });
        let mut select = Select::with_strategy(WaitStrategy::Park);
        let start = Instant::now();
        let ready = select.wait_timeout(&mut [leaker.room_for(200)], Duration::from_secs(2)).to_vec();
        let waited = start.elapsed();
        // Control: a plain send on the same handle gets through (its claim
        // discards the leaked one, the consumer moves on).
        let send = leaker.send_timeout(&numbered(sent, 200), Duration::from_secs(5));
        let got = reader.join().expect("reader");
        assert!(send.is_ok(), "control send failed: {send:?}");
        assert_eq!(got, sent + 1, "every message arrives after the control send");
        assert_eq!(
            ready,
            [0],
            "select(room_for) stayed not-ready for {waited:?} (consumer wedged behind the leaked grant) \
             although send_timeout on the same handle then succeeded"
        );
    });
}

// ---------------------------------------------------------------------------
// 2. Sleeper announcements always withdrawn: after a select found something at
//    once, timed out, or was woken, every line's count is back to zero.
// ---------------------------------------------------------------------------

#[test]
fn sleeper_counts_return_to_zero_after_every_kind_of_select() {
    within(Duration::from_secs(120), "sleeper counts", || {
        for kind in [Kind::Spsc, Kind::Mpsc] {
            for count in [1usize, 3, 130] {
                let base = common::unique_name("rs-sleepers");
                let options = RingOptions::new().capacity(4096).kind(kind);
                let (guards, mut consumers) = rings(&base, count, &options);
                let names: Vec<String> = guards.iter().map(|g| g.name().to_owned()).collect();
                let mut producers: Vec<Producer> =
                    names.iter().map(|n| Producer::open(n, &options).expect("open")).collect();
                let mut select = Select::with_strategy(WaitStrategy::Park);
                let check = |what: &str| {
                    for n in &names {
                        assert_eq!(sleepers(n), (0, 0), "{kind:?} x{count}: {what}: ring {n}");
                    }
                };
                // Timed out after parking.
                assert!(select.wait_timeout(&mut consumers, Duration::from_millis(20)).is_empty());
                check("consumers, timed out");
                // Woken by the last ring.
                let tid = thread_id();
                let mut last = producers.pop().expect("a producer");
                let sender = std::thread::spawn(move || {
                    wait_until_parked(tid, "select parked");
                    last.send(b"wake").expect("send");
                    last
                });
                let ready = select.wait_timeout(&mut consumers, Duration::from_secs(20)).to_vec();
                producers.push(sender.join().expect("sender"));
                assert_eq!(ready, [count - 1]);
                check("consumers, woken");
                // Found at once.
                assert_eq!(select.wait(&mut consumers), [count - 1]);
                check("consumers, found at once");
                consumers[count - 1].try_recv(&mut Vec::new()).expect("recv");
                // Producers waiting for room: fill all, time out, then be woken.
                for p in &mut producers {
                    while p.try_send(&[5; 500]).is_ok() {}
                }
                {
                    let mut rooms: Vec<_> = producers.iter_mut().map(|p| p.room_for(500)).collect();
                    assert!(select.wait_timeout(&mut rooms, Duration::from_millis(20)).is_empty());
                }
                check("producers, timed out");
                let mut first = consumers.remove(0);
                let reader = std::thread::spawn(move || {
                    wait_until_parked(tid, "select parked for room");
                    let mut buf = Vec::new();
                    first.recv(&mut buf).expect("recv");
                    first.recv(&mut buf).expect("recv");
                    first
                });
                {
                    let mut rooms: Vec<_> = producers.iter_mut().map(|p| p.room_for(500)).collect();
                    let ready = select.wait_timeout(&mut rooms, Duration::from_secs(20)).to_vec();
                    assert_eq!(ready, [0]);
                }
                consumers.insert(0, reader.join().expect("reader"));
                check("producers, woken");
                // After all that, nobody sleeps: a producer's sends cost no wake.
                let wakes = producers[1 % count].stats().futex_wakes;
                let c = 1 % count;
                let mut buf = Vec::new();
                while consumers[c].try_recv(&mut buf).is_ok() {}
                for _ in 0..100 {
                    producers[c].send(b"x").expect("send");
                    consumers[c].try_recv(&mut buf).expect("recv");
                }
                assert_eq!(producers[c].stats().futex_wakes, wakes, "{kind:?} x{count}: wakes with nobody asleep");
            }
        }
    });
}

// ---------------------------------------------------------------------------
// 3. Readiness agrees with the call: ready => try_send succeeds, not ready =>
//    Full (one thread, so nothing moves in between), over wrap-arounds, SPSC
//    and MPSC, shared memory and file rings; a probe for a longer message
//    than is then sent (SPSC: a forgotten claim that published padding).
//    Every message arrives once, in order, intact, also after a reopen.
// ---------------------------------------------------------------------------

fn readiness_matches_try_send(kind: Kind, file: bool) {
    let dir = TempDir::new("rs-ready");
    let guard = SegmentGuard::new("rs-ready");
    let path = dir.0.join("ring");
    let options = RingOptions::new().capacity(4096).kind(kind);
    let (mut consumer, mut producer) = if file {
        let c = Consumer::create_file(&path, &options).expect("create file");
        (c, Producer::open_file(&path, &options).expect("open file"))
    } else {
        let c = Consumer::create(guard.name(), &options).expect("create");
        (c, Producer::open(guard.name(), &options).expect("open"))
    };
    let max = producer.max_message();
    let mut rng = 0x1234_5678_9abc_def1u64 ^ (file as u64) ^ ((kind == Kind::Mpsc) as u64) << 7;
    let mut select = Select::new();
    let (mut next_send, mut next_recv) = (0u64, 0u64);
    let mut buf = Vec::new();
    let steps: u64 = std::env::var("RS_STEPS").map_or(if file { 3_000 } else { 20_000 }, |s| s.parse().unwrap());
    for step in 0..steps {
        shmring::payload::xorshift(&mut rng);
        let to_end = (4096 - producer.position() % 4096).saturating_sub(8) as usize;
        let send_len = match rng % 7 {
            0 if to_end >= 8 && to_end <= max => to_end,
            1 if to_end >= 8 && to_end < max => to_end + 1,
            2 => max,
            _ => 8 + (rng >> 8) as usize % 120,
        };
        let probe_len = if rng % 5 == 0 { (send_len + 1 + (rng >> 20) as usize % 900).min(max) } else { send_len };
        let ready = !select.try_ready(&mut [producer.room_for(probe_len)]).is_empty();
        let sent = producer.try_send(&numbered(next_send, send_len));
        match (&sent, ready, probe_len == send_len) {
            (Ok(()), _, _) => next_send += 1,
            (Err(TrySendError::Full), false, _) => {}
            (Err(TrySendError::Full), true, _) => {
                panic!("{kind:?} file={file} step {step}: ready for {probe_len} but a send of {send_len} is Full")
            }
            (Err(e), _, _) => panic!("{kind:?} file={file} step {step}: {e}"),
        }
        if sent.is_ok() && !ready && probe_len == send_len {
            panic!("{kind:?} file={file} step {step}: not ready for {send_len} but the send succeeded");
        }
        if step % 1000 == 999 && file {
            producer.flush().expect("flush");
        }
        shmring::payload::xorshift(&mut rng);
        for _ in 0..rng % 3 {
            match consumer.try_recv(&mut buf) {
                Ok(_) => {
                    assert_eq!(number_of(&buf), next_recv, "{kind:?} file={file}: order");
                    next_recv += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("{kind:?} file={file}: recv: {e}"),
            }
        }
    }
    if file {
        producer.flush().expect("flush");
        drop(producer);
        drop(consumer);
        consumer = Consumer::open_file(&path, &options).expect("reopen consumer");
        producer = Producer::open_file(&path, &options).expect("reopen producer");
        for _ in 0..200 {
            producer.send_timeout(&numbered(next_send, 40), Duration::from_secs(5)).expect("send after reopen");
            next_send += 1;
            match consumer.try_recv(&mut buf) {
                Ok(_) => {
                    assert_eq!(number_of(&buf), next_recv, "{kind:?} file={file}: order after reopen");
                    next_recv += 1;
                }
                Err(TryRecvError::Empty) => {}
                Err(e) => panic!("{kind:?} file={file}: recv after reopen: {e}"),
            }
        }
    }
    loop {
        match consumer.try_recv(&mut buf) {
            Ok(_) => {
                assert_eq!(number_of(&buf), next_recv, "{kind:?} file={file}: order at the end");
                next_recv += 1;
            }
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{kind:?} file={file}: final recv: {e}"),
        }
    }
    assert_eq!(next_recv, next_send, "{kind:?} file={file}: every message once");
    drop(producer);
    drop(consumer);
    if !file {
        drop(guard);
    }
}

#[test]
fn readiness_matches_try_send_spsc_shm() {
    within(Duration::from_secs(120), "spsc shm", || readiness_matches_try_send(Kind::Spsc, false));
}

#[test]
fn readiness_matches_try_send_mpsc_shm() {
    within(Duration::from_secs(120), "mpsc shm", || readiness_matches_try_send(Kind::Mpsc, false));
}

#[test]
fn readiness_matches_try_send_spsc_file() {
    within(Duration::from_secs(180), "spsc file", || readiness_matches_try_send(Kind::Spsc, true));
}

#[test]
fn readiness_matches_try_send_mpsc_file() {
    within(Duration::from_secs(180), "mpsc file", || readiness_matches_try_send(Kind::Mpsc, true));
}

// ---------------------------------------------------------------------------
// 4. Lost wake-ups under stress: the park slice is 60 s (the longest
//    liveness interval), so a lost wake shows as a stall, caught by `within`.
// ---------------------------------------------------------------------------

fn consumers_stress(count: usize, messages: u64) {
    let base = common::unique_name("rs-stress");
    let options = RingOptions::new().capacity(4096).liveness_interval(Duration::from_secs(60));
    let (guards, mut consumers) = rings(&base, count, &options);
    let names: Vec<String> = guards.iter().map(|g| g.name().to_owned()).collect();
    let sender = std::thread::spawn(move || {
        let mut producers: Vec<Producer> =
            names.iter().map(|n| Producer::open(n, &RingOptions::new()).expect("open")).collect();
        let mut next = vec![0u64; producers.len()];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..messages {
            shmring::payload::xorshift(&mut rng);
            let r = (rng % producers.len() as u64) as usize;
            producers[r].send(&numbered(next[r], 16)).expect("send");
            next[r] += 1;
            for _ in 0..(rng >> 40) % 2000 {
                std::hint::spin_loop();
            }
            if rng % 64 == 0 {
                std::thread::yield_now();
            }
        }
        next
    });
    let mut select = Select::with_strategy(WaitStrategy::Park);
    let mut got = vec![0u64; count];
    let mut total = 0;
    let mut buf = Vec::new();
    while total < messages {
        let ready = select.wait(&mut consumers).to_vec();
        for i in ready {
            while consumers[i].try_recv(&mut buf).is_ok() {
                assert_eq!(number_of(&buf), got[i], "ring {i}");
                got[i] += 1;
                total += 1;
            }
        }
    }
    let sent = sender.join().expect("sender");
    assert_eq!(got, sent);
    println!("{count} rings: {} futex waits for {messages} messages", select.futex_waits());
}

fn producers_stress(count: usize, kind: Kind, messages: u64) {
    let base = common::unique_name("rs-pstress");
    let options = RingOptions::new().capacity(4096).kind(kind).liveness_interval(Duration::from_secs(60));
    let (guards, consumers) = rings(&base, count, &options);
    let mut producers: Vec<Producer> =
        guards.iter().map(|g| Producer::open(g.name(), &options).expect("open")).collect();
    let readers: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut next = 0u64;
                let mut rng = 0x2545_f491_4f6c_dd1du64 ^ i as u64;
                loop {
                    match c.recv(&mut buf) {
                        Ok(_) => {}
                        Err(_) => return next,
                    }
                    if buf == b"end" {
                        return next;
                    }
                    assert_eq!(number_of(&buf), next, "ring {i}");
                    next += 1;
                    shmring::payload::xorshift(&mut rng);
                    for _ in 0..(rng >> 40) % 3000 {
                        std::hint::spin_loop();
                    }
                }
            })
        })
        .collect();
    let mut select = Select::with_strategy(WaitStrategy::Park);
    let mut next = vec![0u64; count];
    let mut total = 0;
    while total < messages {
        let ready = {
            let mut rooms: Vec<_> = producers.iter_mut().map(|p| p.room_for(100)).collect();
            select.wait(&mut rooms).to_vec()
        };
        for i in ready {
            match producers[i].try_send(&numbered(next[i], 100)) {
                Ok(()) => {
                    next[i] += 1;
                    total += 1;
                }
                Err(TrySendError::Full) => panic!("ring {i}: reported ready, then Full (single producer)"),
                Err(e) => panic!("ring {i}: {e}"),
            }
        }
    }
    for p in &mut producers {
        p.send(b"end").expect("end");
    }
    let got: Vec<u64> = readers.into_iter().map(|r| r.join().expect("reader")).collect();
    assert_eq!(got, next);
    println!("{count} rings {kind:?}: {} futex waits for {messages} sends", select.futex_waits());
}

#[test]
fn stress_consumers_no_lost_wakeup() {
    for count in [1usize, 2, 7, 128] {
        within(Duration::from_secs(90), &format!("consumer stress x{count}"), move || consumers_stress(count, 30_000));
    }
}

#[test]
fn stress_producers_no_lost_wakeup() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for count in [1usize, 3] {
            within(Duration::from_secs(90), &format!("producer stress {kind:?} x{count}"), move || {
                producers_stress(count, kind, 20_000)
            });
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Timeouts: never early, never much late, every strategy, 1 to 200 rings,
//    and in a child without futex_waitv. Duration::MAX does not return early.
// ---------------------------------------------------------------------------

fn timeouts_for_every_strategy_and_size() {
    for count in [1usize, 3, 200] {
        let base = common::unique_name("rs-timeouts");
        let (_guards, mut consumers) = rings(&base, count, &RingOptions::new().capacity(4096));
        for strategy in [WaitStrategy::BusySpin, WaitStrategy::default(), WaitStrategy::Park] {
            let mut select = Select::with_strategy(strategy);
            for timeout in
                [Duration::ZERO, Duration::from_millis(1), Duration::from_millis(7), Duration::from_millis(80)]
            {
                let start = Instant::now();
                assert!(select.wait_timeout(&mut consumers, timeout).is_empty());
                let took = start.elapsed();
                assert!(took >= timeout, "{count} rings {strategy}: returned after {took:?} < {timeout:?}");
                // Late by a park slice (50 ms) or so would be a scheduling
                // accident on a loaded 2-core machine; by 200 ms, a bug.
                assert!(
                    took < timeout + Duration::from_millis(200),
                    "{count} rings {strategy}: {timeout:?} took {took:?}"
                );
            }
            let start = Instant::now();
            assert!(select.try_ready(&mut consumers).is_empty());
            assert!(start.elapsed() < Duration::from_millis(200), "try_ready took {:?}", start.elapsed());
        }
    }
}

#[test]
fn timeouts_are_honoured() {
    within(Duration::from_secs(120), "timeouts", timeouts_for_every_strategy_and_size);
}

#[test]
fn timeouts_are_honoured_without_futex_waitv() {
    let child = spawn_child("rs-timeouts", &[("SHMRING_FUTEX_WAITV", "off".into())]);
    let (ok, out) = child.finish(Duration::from_secs(120));
    assert!(ok, "fallback timeouts: {out}");
}

#[test]
fn duration_max_and_huge_timeouts_do_not_return_early() {
    within(Duration::from_secs(60), "huge timeouts", || {
        for timeout in [Duration::MAX, Duration::from_secs(i64::MAX as u64 - 1_000_000), Duration::from_secs(1 << 40)] {
            let guard = SegmentGuard::new("rs-max");
            let options = RingOptions::new().liveness_interval(Duration::from_secs(60));
            let mut consumer = Consumer::create(guard.name(), &options).expect("create");
            let mut producer = Producer::open(guard.name(), &options).expect("open");
            let tid = thread_id();
            let sender = std::thread::spawn(move || {
                wait_until_parked(tid, "parked");
                std::thread::sleep(Duration::from_millis(300));
                producer.send(b"x").expect("send");
                producer
            });
            let mut select = Select::with_strategy(WaitStrategy::Park);
            let start = Instant::now();
            let ready = select.wait_timeout(&mut [&mut consumer], timeout).to_vec();
            let _p = sender.join().expect("sender");
            assert_eq!(ready, [0], "{timeout:?}: returned empty after {:?}", start.elapsed());
            assert!(start.elapsed() >= Duration::from_millis(300));
            assert!(select.futex_waits() <= 3, "{timeout:?}: {} futex waits (spinning?)", select.futex_waits());
        }
    });
}

// ---------------------------------------------------------------------------
// 6. futex_waitv refused with EPERM (a seccomp filter's usual answer for a
//    system call it does not know, e.g. older container runtimes): the select
//    must still sleep (fall back), not spin. ENOSYS is the control.
// ---------------------------------------------------------------------------

fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain integers, for which zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn seccomp_child() {
    let errno: u32 = std::env::var("SHMRING_ERRNO").expect("errno").parse().expect("errno");
    common::refuse_futex_waitv(errno);
    let base = common::unique_name("rs-seccomp");
    let (_guards, mut consumers) = rings(&base, 3, &RingOptions::new());
    let mut select = Select::with_strategy(WaitStrategy::Park);
    let cpu = cpu_time();
    let start = Instant::now();
    assert!(select.wait_timeout(&mut consumers, Duration::from_millis(500)).is_empty());
    let elapsed = start.elapsed();
    let cpu = cpu_time() - cpu;
    println!("waits={} cpu_ms={} elapsed_ms={}", select.futex_waits(), cpu.as_millis(), elapsed.as_millis());
}

#[test]
fn a_select_sleeps_when_futex_waitv_is_refused() {
    for (errno, label) in [(libc::ENOSYS as u32, "ENOSYS"), (libc::EPERM as u32, "EPERM")] {
        let child = spawn_child("rs-seccomp", &[("SHMRING_ERRNO", errno.to_string())]);
        let (ok, out) = child.finish(Duration::from_secs(60));
        assert!(ok, "{label}: {out}");
        let line = out.lines().find(|l| l.starts_with("waits=")).unwrap_or_else(|| panic!("{label}: {out}"));
        println!("{label}: {line}");
        let cpu_ms = common::field(line, "cpu_ms");
        let waits = common::field(line, "waits");
        assert!(
            cpu_ms < 250,
            "{label}: a 500 ms select with futex_waitv refused burned {cpu_ms} ms of CPU ({waits} 'waits'): it spins"
        );
    }
}

// ---------------------------------------------------------------------------
// 7. Peers killed: a producer waiting in a select for room whose consumer
//    process is killed is made ready; try_ready on a consumer whose producer
//    was killed reports it ready (its try_recv fails at once).
// ---------------------------------------------------------------------------

#[test]
fn a_killed_consumer_makes_a_waiting_room_for_ready() {
    within(Duration::from_secs(60), "killed consumer", || {
        let guard = SegmentGuard::new("rs-killed-consumer");
        let mut child = spawn_child("rs-hold-consumer", &[("SHMRING_NAME", guard.name().to_owned())]);
        child.wait_for_line("attached");
        let options = RingOptions::new().capacity(4096).liveness_interval(Duration::from_millis(20));
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        while producer.try_send(&[1; 300]).is_ok() {}
        let mut select = Select::with_strategy(WaitStrategy::Park);
        assert!(select.wait_timeout(&mut [producer.room_for(300)], Duration::from_millis(50)).is_empty());
        let pid = child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: a signal to our own child, which its guard reaps.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let start = Instant::now();
        let ready = select.wait_timeout(&mut [producer.room_for(300)], Duration::from_secs(10)).to_vec();
        killer.join().expect("killer");
        assert_eq!(ready, [0], "after {:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        assert!(matches!(producer.try_send(&[1; 300]), Err(TrySendError::Disconnected)));
        child.kill();
    });
}

#[test]
fn try_ready_sees_a_killed_producer() {
    within(Duration::from_secs(60), "try_ready killed producer", || {
        let guard = SegmentGuard::new("rs-try-ready-dead");
        let options = RingOptions::new().liveness_interval(Duration::from_millis(20));
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut idle = spawn_child("hold-producer", &[("SHMRING_NAME", guard.name().to_owned())]);
        idle.wait_for_line("attached");
        let mut select = Select::new();
        assert!(select.try_ready(&mut [&mut consumer]).is_empty());
        idle.kill_alive("idle producer");
        std::thread::sleep(Duration::from_millis(100));
        let ready = select.try_ready(&mut [&mut consumer]).to_vec();
        let recv = consumer.try_recv(&mut Vec::new());
        assert!(matches!(recv, Err(TryRecvError::Disconnected)), "{recv:?}");
        assert_eq!(ready, [0], "try_ready said not ready; try_recv right after said {recv:?}");
    });
}

// ---------------------------------------------------------------------------
// 8. Mixed handles on the same MPSC ring: two producers' RoomFor and the
//    consumer of another ring in one select; both announcements withdrawn.
// ---------------------------------------------------------------------------

#[test]
fn two_producers_of_one_mpsc_ring_in_one_select() {
    within(Duration::from_secs(60), "two producers one ring", || {
        let guard = SegmentGuard::new("rs-two-prod");
        let options = RingOptions::new().capacity(4096).kind(Kind::Mpsc).liveness_interval(Duration::from_secs(60));
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut a = Producer::open(guard.name(), &options).expect("open");
        let mut b = Producer::open(guard.name(), &options).expect("open");
        while a.try_send(&[1; 300]).is_ok() {}
        let tid = thread_id();
        let name = guard.name().to_owned();
        let reader = std::thread::spawn(move || {
            wait_until_parked(tid, "parked");
            assert_eq!(sleepers(&name).1, 2, "both announced");
            let mut buf = Vec::new();
            consumer.recv(&mut buf).expect("recv");
            consumer.recv(&mut buf).expect("recv");
            consumer
        });
        let mut select = Select::with_strategy(WaitStrategy::Park);
        let (mut ra, mut rb) = (a.room_for(300), b.room_for(300));
        let handles: &mut [&mut dyn Selectable] = &mut [&mut ra, &mut rb];
        let ready = select.wait_timeout(handles, Duration::from_secs(20)).to_vec();
        assert_eq!(ready, [0, 1]);
        let _consumer = reader.join().expect("reader");
        assert_eq!(sleepers(guard.name()), (0, 0));
    });
}

// ---------------------------------------------------------------------------
// 9. A corrupt MPSC claim position (more than a lap ahead of head): the claim
//    reports Corrupted at once, so the handle is documented to count as ready
//    ("Anything the claim would report as corrupt counts as room").
// ---------------------------------------------------------------------------

#[test]
fn mpsc_room_for_on_a_corrupt_claim_position_is_ready() {
    within(Duration::from_secs(30), "corrupt tail", || {
        const TAIL_AT: u64 = 128;
        let guard = SegmentGuard::new("rs-corrupt-tail");
        let options = RingOptions::new().capacity(4096).kind(Kind::Mpsc);
        let _consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer = Producer::open(guard.name(), &options).expect("open");
        while producer.try_send(&[1; 300]).is_ok() {}
        let tail = guard.read_u64(TAIL_AT);
        assert_eq!(tail, shmring::inspect::inspect(guard.name()).expect("inspect").tail, "tail offset");
        guard.write_at(TAIL_AT, &(3 * 4096u64).to_le_bytes());
        let mut select = Select::with_strategy(WaitStrategy::Park);
        let ready = select.wait_timeout(&mut [producer.room_for(300)], Duration::from_millis(500)).to_vec();
        let send = producer.try_send(&[1; 300]);
        assert!(matches!(send, Err(TrySendError::Corrupted(_))), "{send:?}");
        assert_eq!(ready, [0], "not ready (slept the whole timeout), yet try_send said {send:?}");
    });
}

// ---------------------------------------------------------------------------
// 10. File rings with both sides in a Select (the producer waiting for room,
//     the consumer for a message), so the durable-head release requests go
//     through selects on both sides; long park slice: a stall is a lost wake.
// ---------------------------------------------------------------------------

fn file_rings_both_sides_select(kind: Kind) {
    let dir = TempDir::new("rs-file-both");
    let path = dir.0.join("ring");
    let options = RingOptions::new().capacity(4096).kind(kind).liveness_interval(Duration::from_secs(60));
    let mut consumer = Consumer::create_file(&path, &options).expect("create");
    let mut producer = Producer::open_file(&path, &options).expect("open");
    const N: u64 = 20_000;
    let reader = std::thread::spawn(move || {
        let mut select = Select::with_strategy(WaitStrategy::Park);
        let mut buf = Vec::new();
        let mut next = 0u64;
        while next < N {
            if select.wait(&mut [&mut consumer]).is_empty() {
                continue;
            }
            while consumer.try_recv(&mut buf).is_ok() {
                assert_eq!(number_of(&buf), next);
                next += 1;
            }
        }
        (next, select.futex_waits())
    });
    let mut select = Select::with_strategy(WaitStrategy::Park);
    let mut rng = 77u64;
    for seq in 0..N {
        shmring::payload::xorshift(&mut rng);
        let len = 8 + (rng % 600) as usize;
        select.wait(&mut [producer.room_for(len)]);
        match producer.try_send(&numbered(seq, len)) {
            Ok(()) => {}
            Err(TrySendError::Full) => panic!("{kind:?}: ready then Full at {seq}"),
            Err(e) => panic!("{kind:?}: {e}"),
        }
        if seq % 5000 == 4999 {
            producer.flush().expect("flush");
        }
    }
    let (got, waits) = reader.join().expect("reader");
    assert_eq!(got, N);
    println!("{kind:?} file: producer waits {}, consumer waits {waits}", select.futex_waits());
}

#[test]
fn file_rings_with_selects_on_both_sides() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        within(Duration::from_secs(120), &format!("{kind:?} file both sides"), move || {
            file_rings_both_sides_select(kind)
        });
    }
}
