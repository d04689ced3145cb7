//! Fault injection between processes: the producer or the consumer is
//! SIGKILLed, or SIGSTOPped and continued, at random moments, much of the time
//! inside `reserve`..`commit` or inside a borrowed read. The survivor never
//! blocks past its bound, nothing committed is lost or duplicated (the one
//! message a killed consumer held may come again), and a restarted peer
//! continues.
//!
//! Each child records its phase in a small progress file before and after
//! every commit (producer) or release (consumer), so the driver knows exactly
//! where each fault landed and what must have survived it.
//!
//! `cargo test --test fault_injection` runs a slice of the long run (the same
//! rounds and checks, fewer of them, and a bound on blocking calls that only
//! catches a hang); the long one, whose figures docs/verification.md quotes:
//! `cargo test --release --test fault_injection -- --ignored long`.
//! `SHMRING_FAULT_ROUNDS=N` sets the number of rounds of either.
//!
//! Each child says "attached" once it is, and the driver starts its clock
//! only then, so a child killed before it attached never leaves the driver
//! waiting for a peer that never came. While the peer lives (running or
//! stopped), the driver's calls must return a message, `Empty`/`Full` or
//! `Timeout`, never `Disconnected`; every loop has a deadline; every killed
//! child must have been alive until the kill.

mod common;

use common::{deadline, spawn_child, until, ChildGuard, SegmentGuard};
use shmring::{payload, Consumer, Producer, RecvTimeoutError, RingOptions, SendTimeoutError};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The bound every blocking call in this test is given.
const BOUND: Duration = Duration::from_millis(100);

const PHASE_INSIDE: u64 = 1; // reserved / borrowed, not yet committed / released
const PHASE_DONE: u64 = 2; // committed / released

fn options() -> RingOptions {
    RingOptions::new().capacity(16 << 10).max_message(1024).unlink_on_drop(false)
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"))
}

/// `[phase, stream, seq]` at offset 0; the first message an instance saw at
/// offset 24 (written once).
struct Progress(std::fs::File);

impl Progress {
    fn create(path: &str) -> Progress {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("progress");
        file.write_all_at(&[0u8; 48], 0).expect("init progress");
        Progress(file)
    }

    fn open(path: &str) -> Progress {
        Progress(std::fs::OpenOptions::new().read(true).write(true).open(path).expect("progress"))
    }

    fn record(&self, at: u64, phase: u64, stream: u64, seq: u64) {
        let mut raw = [0u8; 24];
        for (chunk, v) in raw.chunks_mut(8).zip([phase, stream, seq]) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        self.0.write_all_at(&raw, at).expect("record progress");
    }

    fn read(&self, at: u64) -> (u64, u64, u64) {
        let mut raw = [0u8; 24];
        self.0.read_exact_at(&mut raw, at).expect("read progress");
        let v = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        (v(0), v(1), v(2))
    }
}

fn spin_for(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    let Ok(role) = std::env::var("SHMRING_CHILD_ROLE") else { return };
    common::child_watchdog();
    let name = env("SHMRING_NAME");
    let progress = Progress::open(&env("SHMRING_PROGRESS"));
    let mut rng = std::process::id() as u64 | 1;
    let mut next = move || {
        shmring::payload::xorshift(&mut rng);
        rng
    };
    match role.as_str() {
        // Sends stream SHMRING_STREAM from seq 0 until killed, lingering
        // inside reserve..commit for a random few microseconds.
        "fault-producer" => {
            let stream: u32 = env("SHMRING_STREAM").parse().unwrap();
            let mut producer = Producer::open(&name, &options()).expect("open producer");
            println!("attached");
            for seq in 0u64.. {
                let len = 12 + (next() % 200) as usize;
                let mut grant = loop {
                    match producer.reserve_timeout(len, BOUND) {
                        Ok(grant) => break grant,
                        Err(SendTimeoutError::Timeout) => continue,
                        Err(e) => panic!("reserve: {e}"),
                    }
                };
                progress.record(0, PHASE_INSIDE, u64::from(stream), seq);
                payload::fill(stream, seq, &mut grant);
                spin_for(next() % 30);
                grant.commit();
                progress.record(0, PHASE_DONE, u64::from(stream), seq);
            }
        }
        // Reads in place until killed, lingering inside the borrowed read;
        // checks every payload and that the stream has no gap or repeat.
        "fault-consumer" => {
            let mut consumer = Consumer::open(&name, &options()).expect("open consumer");
            println!("attached");
            let mut last: Option<(u32, u64)> = None;
            loop {
                let msg = match consumer.read_timeout(BOUND) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return, // drained, producer gone
                    Err(e) => panic!("read: {e}"),
                };
                let (stream, seq) = payload::identify(&msg).expect("short message");
                payload::check(stream, seq, &msg).expect("payload");
                if let Some((s, q)) = last {
                    assert!(s == stream && q + 1 == seq, "after {s}/{q} came {stream}/{seq}");
                } else {
                    progress.record(24, PHASE_DONE, u64::from(stream), seq);
                }
                progress.record(0, PHASE_INSIDE, u64::from(stream), seq);
                spin_for(next() % 30);
                drop(msg);
                progress.record(0, PHASE_DONE, u64::from(stream), seq);
                last = Some((stream, seq));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn signal(child: &ChildGuard, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("signal");
}

/// What the rounds did, for docs/verification.md.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    kills_inside: u64,
    kills_outside: u64,
    /// Rounds in which the peer committed (or released) nothing before it
    /// was killed: they check nothing, so most rounds must not be such.
    idle_rounds: u64,
    stops: u64,
    /// Calls made while the peer was stopped, and how many of them waited
    /// their bound out (Timeout): the stopped peer was alive to them.
    calls_while_stopped: u64,
    timeouts_while_stopped: u64,
    verified: u64,
    redelivered: u64,
    longest_block: Duration,
    /// How far past `BOUND` a call may return before the run fails.
    slack: Duration,
}

fn timed<T>(tally: &mut Tally, call: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = call();
    let took = start.elapsed();
    tally.longest_block = tally.longest_block.max(took);
    assert!(took < BOUND + tally.slack, "a call blocked {took:?}, bound {BOUND:?}");
    out
}

/// What one call on the ring gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// A message received (verified) or sent.
    Moved,
    /// Nothing within the bound: the ring stayed empty (or full).
    TimedOut,
    /// The peer is gone (and the ring drained, or full).
    Disconnected,
}

fn temp(tag: &str) -> String {
    std::env::temp_dir().join(format!("shmring-fault-{}-{tag}", std::process::id())).to_string_lossy().into_owned()
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        shmring::payload::xorshift(&mut x);
        x
    }
}

fn later(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// One receive for `producer_rounds`. Checks stream, order and bytes.
fn take(consumer: &mut Consumer, buf: &mut Vec<u8>, stream: u32, expected: &mut u64, tally: &mut Tally) -> Call {
    match timed(tally, || consumer.recv_timeout(buf, BOUND)) {
        Ok(_) => {
            let (s, q) = payload::identify(buf).expect("short message");
            assert_eq!((s, q), (stream, *expected), "gap, repeat or stray stream");
            payload::check(s, q, buf).expect("payload");
            *expected += 1;
            tally.verified += 1;
            Call::Moved
        }
        Err(RecvTimeoutError::Timeout) => Call::TimedOut,
        Err(RecvTimeoutError::Disconnected) => Call::Disconnected,
        Err(e) => panic!("{e}"),
    }
}

/// Makes calls with `call` until `until`, the peer `child` alive (running or
/// stopped) all along: each call must move a message or time out, never say
/// `Disconnected`. Returns the calls made and how many timed out.
fn while_alive(until: Instant, child: &mut ChildGuard, what: &str, mut call: impl FnMut() -> Call) -> (u64, u64) {
    let (mut calls, mut timeouts) = (0, 0);
    while Instant::now() < until {
        match call() {
            Call::Moved => {}
            Call::TimedOut => timeouts += 1,
            Call::Disconnected => {
                panic!("{what}: Disconnected while the peer was alive (the child: {:?})", child.try_wait())
            }
        }
        calls += 1;
    }
    (calls, timeouts)
}

/// Producer faults: this process consumes; each round a new producer process
/// (a new stream) attaches, streams, may be stopped and continued, and is
/// killed. Its stream must end exactly at its last commit.
fn producer_rounds(rounds: u64, seed: u64, tally: &mut Tally) {
    let segment = SegmentGuard::new("fault-producer");
    let mut consumer = Consumer::create(segment.name(), &options()).expect("create");
    let progress_path = temp("producer");
    let mut next = xorshift(seed);
    let mut buf = Vec::new();
    for round in 0..rounds {
        let progress = Progress::create(&progress_path);
        let stream = round as u32 + 1;
        let mut producer = spawn_child(
            "fault-producer",
            &[
                ("SHMRING_NAME", segment.0.clone()),
                ("SHMRING_PROGRESS", progress_path.clone()),
                ("SHMRING_STREAM", stream.to_string()),
            ],
        );
        producer.wait_for_line("attached");
        let mut expected = 0u64;
        let mut take_until =
            |until: Instant, producer: &mut ChildGuard, what: &str, tally: &mut Tally, expected: &mut u64| {
                while_alive(until, producer, what, || take(&mut consumer, &mut buf, stream, expected, tally))
            };
        let what = format!("round {round}: the producer streaming");
        take_until(later(2 + next() % 15), &mut producer, &what, tally, &mut expected);
        if next() % 3 == 0 {
            signal(&producer, rustix::process::Signal::STOP);
            tally.stops += 1;
            let what = format!("round {round}: the producer stopped");
            let (calls, timeouts) = take_until(later(20 + next() % 150), &mut producer, &what, tally, &mut expected);
            tally.calls_while_stopped += calls;
            tally.timeouts_while_stopped += timeouts;
            signal(&producer, rustix::process::Signal::CONT);
            let what = format!("round {round}: the producer continued");
            take_until(later(1 + next() % 5), &mut producer, &what, tally, &mut expected);
        }
        producer.kill_alive(&format!("round {round}: the producer"));
        let (phase, s, last) = progress.read(0);
        let inside = phase == PHASE_INSIDE;
        if inside {
            tally.kills_inside += 1;
        } else {
            tally.kills_outside += 1;
        }
        // What was committed arrives, then Disconnected.
        let end = deadline(30);
        while until(end, &format!("round {round}: draining after the kill"))
            && take(&mut consumer, &mut buf, stream, &mut expected, tally) != Call::Disconnected
        {}
        // Everything committed arrived; nothing else did.
        if phase == 0 {
            assert_eq!(expected, 0, "round {round}: messages from a producer that never reserved");
            tally.idle_rounds += 1;
        } else {
            assert_eq!(s, u64::from(stream));
            // Killed inside: `last` was reserved and may or may not have been
            // committed; killed after a commit: it was.
            let allowed = if inside { [last, last + 1] } else { [last + 1, last + 1] };
            assert!(
                allowed.contains(&expected),
                "round {round}: producer at {last} (phase {phase}), consumer got {expected}"
            );
        }
        tally.rounds += 1;
    }
    let _ = std::fs::remove_file(progress_path);
}

/// One send for `consumer_rounds`.
fn give(producer: &mut Producer, msg: &mut [u8], sent: &mut u64, tally: &mut Tally) -> Call {
    let len = 12 + (*sent % 300) as usize;
    payload::fill(7, *sent, &mut msg[..len]);
    match timed(tally, || producer.send_timeout(&msg[..len], BOUND)) {
        Ok(()) => {
            *sent += 1;
            Call::Moved
        }
        Err(SendTimeoutError::Timeout) => Call::TimedOut,
        Err(SendTimeoutError::Disconnected) => Call::Disconnected,
        Err(e) => panic!("{e}"),
    }
}

/// Consumer faults: this process produces one endless stream; each round a
/// new consumer process attaches, reads, may be stopped and continued, and is
/// killed. Each consumer must start right after where the last one released
/// (or at the one it held), and the last one drains to the last message sent.
fn consumer_rounds(rounds: u64, seed: u64, tally: &mut Tally) {
    let segment = SegmentGuard::new("fault-consumer");
    let mut producer = Some(Producer::create(segment.name(), &options()).expect("create"));
    let mut next = xorshift(seed);
    let (mut sent, mut msg) = (0u64, vec![0u8; 1024]);
    // Where the next consumer must start, and whether it may instead repeat
    // the message before (which the killed one held).
    let mut resume: (u64, bool) = (0, false);
    for round in 0..=rounds {
        let path = temp(&format!("consumer-{round}"));
        let progress = Progress::create(&path);
        let mut consumer =
            spawn_child("fault-consumer", &[("SHMRING_NAME", segment.0.clone()), ("SHMRING_PROGRESS", path.clone())]);
        consumer.wait_for_line("attached");
        let last_round = round == rounds;
        if last_round {
            // The producer goes; the last consumer drains and exits cleanly.
            drop(producer.take());
            let (ok, _) = consumer.finish(Duration::from_secs(60));
            assert!(ok, "the last consumer failed");
        } else {
            let p = producer.as_mut().expect("producer");
            let mut give_until = |until: Instant, consumer: &mut ChildGuard, what: &str, tally: &mut Tally| {
                while_alive(until, consumer, what, || give(p, &mut msg, &mut sent, tally))
            };
            give_until(later(2 + next() % 15), &mut consumer, &format!("round {round}: the consumer reading"), tally);
            if next() % 3 == 0 {
                signal(&consumer, rustix::process::Signal::STOP);
                tally.stops += 1;
                let what = format!("round {round}: the consumer stopped");
                let (calls, timeouts) = give_until(later(20 + next() % 150), &mut consumer, &what, tally);
                tally.calls_while_stopped += calls;
                tally.timeouts_while_stopped += timeouts;
                signal(&consumer, rustix::process::Signal::CONT);
            }
            consumer.kill_alive(&format!("round {round}: the consumer"));
        }
        let (phase, _, last) = progress.read(0);
        let (first_phase, _, first) = progress.read(24);
        let _ = std::fs::remove_file(&path);
        if first_phase == PHASE_DONE {
            let (at, may_repeat) = resume;
            assert!(
                first == at || (may_repeat && first + 1 == at),
                "round {round}: started at {first}, expected {resume:?}"
            );
            tally.redelivered += u64::from(first + 1 == at);
            if phase == 0 {
                // Killed between its two records of the first message: it
                // held `first` and had not released it.
                resume = (first, false);
            } else {
                tally.verified += last + 1 - first;
                resume = (last + 1, phase == PHASE_INSIDE);
            }
        } else if !last_round {
            tally.idle_rounds += 1;
        }
        if last_round {
            assert_eq!(resume.0, sent, "the last consumer drained everything sent");
            break;
        }
        if phase == PHASE_INSIDE {
            tally.kills_inside += 1;
        } else {
            tally.kills_outside += 1;
        }
        // The survivor learns of the death when it next needs room.
        let p = producer.as_mut().expect("producer");
        let end = deadline(30);
        while until(end, &format!("round {round}: the producer noticing the killed consumer"))
            && give(p, &mut msg, &mut sent, tally) != Call::Disconnected
        {}
        tally.rounds += 1;
    }
}

/// `rounds` producer rounds and `rounds` consumer rounds; a blocking call
/// may return at most `slack` past its bound.
fn run(rounds: u64, slack: Duration) -> Tally {
    let rounds = std::env::var("SHMRING_FAULT_ROUNDS").map_or(rounds, |r| r.parse().expect("SHMRING_FAULT_ROUNDS"));
    let mut tally = Tally { slack, ..Tally::default() };
    producer_rounds(rounds, 0x9E37_79B9_7F4A_7C15, &mut tally);
    consumer_rounds(rounds, 0x2545_F491_4F6C_DD1D, &mut tally);
    eprintln!("fault injection: {tally:?}");
    assert!(tally.kills_inside > 0, "no fault landed inside reserve..commit or a borrowed read");
    assert!(
        tally.idle_rounds * 2 < tally.rounds,
        "{} of {} rounds had the peer commit or release nothing before the kill: they check nothing",
        tally.idle_rounds,
        tally.rounds
    );
    if tally.stops > 0 {
        assert!(tally.timeouts_while_stopped > 0, "no call ever waited for a stopped peer: {tally:?}");
    }
    tally
}

/// A slice of the long run, in every `cargo test`: 15 + 15 rounds, and a bound
/// on blocking calls that only catches a hang (this runs on loaded 2-core
/// machines).
#[test]
fn short_fault_injection() {
    run(15, Duration::from_secs(5));
}

/// The run docs/verification.md's figures come from (2000 rounds), for a quiet
/// machine: a blocking call may overrun its 100 ms bound by 400 ms at most.
#[test]
#[ignore = "long run (minutes): cargo test --release --test fault_injection -- --ignored long"]
fn long_fault_injection() {
    run(1000, Duration::from_millis(400));
}
