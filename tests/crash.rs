//! The durability contract of file rings under simulated crashes of the
//! machine.
//!
//! The simulator records, through the library's write-back hook, what each
//! page of a ring's file held when an `msync(MS_SYNC)` covering it last
//! completed. A simulated crash builds the file the disk could hold: each
//! page, independently (seeded), either its last-synced content or its
//! current content (the kernel may have written it back since, in any
//! order). It then writes a foreign boot id into the header (the machine
//! restarted), reopens the copy and drains it, and checks what came out
//! against the contract:
//!
//! * the ring reopens, as consumer and as producer;
//! * every delivered message was sent, byte for byte (no torn or stale
//!   record), at most once, each producer's messages in order and
//!   contiguous;
//! * every message committed before the last completed `flush` (of any
//!   handle) and not consumed before the crash is delivered;
//! * no message consumed before the consumer's last completed `flush` is
//!   delivered (those consumed after it may be, again);
//! * SPSC: what is delivered is one contiguous run of what was sent.
//!
//! `cargo test` runs a few thousand crash points; the ignored
//! `crash_points_long` runs `SHMRING_CRASH_CASES` workloads (default 1,500,
//! four crash points each).

mod crash_sim;

use crash_sim::{crash_image, splitmix, track, untrack, HEADER_PAGES};
use proptest::prelude::*;
use shmring::{Consumer, Kind, Producer, RingOptions, TryRecvError, TrySendError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A directory under the target directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("shmring-crash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One message as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Id {
    stream: u32,
    seq: u64,
}

/// What the workload did, for checking a crash against.
#[derive(Default, Debug)]
struct Model {
    /// Per stream, the sizes of the messages committed, in order.
    sent: BTreeMap<u32, Vec<usize>>,
    /// SPSC: every message in commit order.
    order: Vec<Id>,
    /// Messages consumed, in order.
    consumed: Vec<Id>,
    /// Per stream, how many messages were committed when the last flush (of
    /// any handle) completed.
    flushed: BTreeMap<u32, u64>,
    /// How many messages were consumed when the consumer's last flush
    /// completed.
    durably_consumed: usize,
}

impl Model {
    fn commit(&mut self, stream: u32, size: usize) -> u64 {
        let sizes = self.sent.entry(stream).or_default();
        sizes.push(size);
        let seq = sizes.len() as u64 - 1;
        self.order.push(Id { stream, seq });
        seq
    }

    fn flushed(&mut self) {
        for (stream, sizes) in &self.sent {
            self.flushed.insert(*stream, sizes.len() as u64);
        }
    }

    /// Checks the messages a recovered ring delivered.
    fn check(&self, delivered: &[(Id, Vec<u8>)], kind: Kind) -> Result<(), String> {
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for (id, payload) in delivered {
            let size = self
                .sent
                .get(&id.stream)
                .and_then(|sizes| sizes.get(id.seq as usize))
                .ok_or_else(|| format!("{id:?} was never sent"))?;
            if payload.len() != *size {
                return Err(format!("{id:?} came with {} bytes, sent with {size}", payload.len()));
            }
            shmring::payload::check(id.stream, id.seq, payload).map_err(|e| format!("{id:?} torn: {e}"))?;
            if let Some(prev) = last.insert(id.stream, id.seq) {
                if id.seq != prev + 1 {
                    return Err(format!("stream {} delivered {} after {prev}", id.stream, id.seq));
                }
            }
        }
        let delivered_ids: std::collections::HashSet<Id> = delivered.iter().map(|(id, _)| *id).collect();
        let consumed: std::collections::HashSet<Id> = self.consumed.iter().copied().collect();
        for id in &self.consumed[..self.durably_consumed] {
            if delivered_ids.contains(id) {
                return Err(format!("{id:?} was consumed before the consumer's flush and delivered again"));
            }
        }
        for (stream, flushed) in &self.flushed {
            for seq in 0..*flushed {
                let id = Id { stream: *stream, seq };
                if !consumed.contains(&id) && !delivered_ids.contains(&id) {
                    return Err(format!("{id:?} was flushed, not consumed, and lost"));
                }
            }
        }
        if kind == Kind::Spsc && !delivered.is_empty() {
            let start = self.order.iter().position(|id| *id == delivered[0].0).unwrap_or(0);
            let run = &self.order[start..start + delivered.len().min(self.order.len() - start)];
            if run.iter().zip(delivered).any(|(a, (b, _))| a != b) {
                return Err("SPSC delivery is not one contiguous run of what was sent".into());
            }
        }
        Ok(())
    }
}

/// How a simulated crash chooses each page.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// Every page as last written back.
    Synced,
    /// Every page as in memory.
    Current,
    /// The header as last written back, the data as in memory.
    HeaderOlder,
    /// Each page either way, seeded.
    Random,
}

/// The crash points each `Crash` checks.
const EVERY_PICK: [Pick; 5] = [Pick::Synced, Pick::Current, Pick::HeaderOlder, Pick::Random, Pick::Random];

/// One step of a workload.
#[derive(Debug, Clone)]
enum Op {
    /// Producer `p` sends a message of this size (if there is room).
    Send(usize, usize),
    /// The consumer takes up to this many messages.
    Recv(usize),
    /// A flush by producer `p`.
    FlushProducer(usize),
    FlushConsumer,
    /// MPSC: producer `p` claims space and keeps it open (a slow producer,
    /// or, if it never commits, one killed in the middle).
    HoldOpen(usize, usize),
    /// MPSC: producer `p` commits the claim it holds open.
    CommitHeld(usize),
    /// Crash here, choosing pages with this seed.
    Crash(u64),
}

fn op(producers: usize, max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..producers, 12..max).prop_map(|(p, s)| Op::Send(p, s)),
        5 => (1..8usize).prop_map(Op::Recv),
        2 => (0..producers).prop_map(Op::FlushProducer),
        2 => Just(Op::FlushConsumer),
        1 => (0..producers, 12..max).prop_map(|(p, s)| Op::HoldOpen(p, s)),
        1 => (0..producers).prop_map(Op::CommitHeld),
        2 => any::<u64>().prop_map(Op::Crash),
    ]
}

/// Runs `ops` on a fresh file ring; at each `Crash` checks a simulated crash.
/// Returns how many crash points it checked.
fn run(kind: Kind, capacity: u64, producers: usize, ops: &[Op], picks: &[Pick]) -> Result<usize, TestCaseError> {
    static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = TempDir::new(&format!("{kind:?}-{case}"));
    let path = dir.0.join("ring");
    track(&path);
    let result = run_in(&dir, &path, kind, capacity, producers, ops, picks);
    untrack(&path);
    result
}

fn options(kind: Kind, capacity: u64, producers: usize) -> RingOptions {
    let options = RingOptions::new().capacity(capacity as usize).max_message(capacity as usize / 4);
    match kind {
        Kind::Spsc => options,
        Kind::Mpsc => options.kind(Kind::Mpsc).max_producers(producers),
    }
}

fn run_in(
    dir: &TempDir,
    path: &Path,
    kind: Kind,
    capacity: u64,
    producers: usize,
    ops: &[Op],
    picks: &[Pick],
) -> Result<usize, TestCaseError> {
    let options = options(kind, capacity, producers);
    let mut consumer = Consumer::create_file(path, &options).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut handles: Vec<Option<Producer>> =
        (0..producers).map(|_| Some(Producer::open_file(path, &options).expect("producer"))).collect();
    let mut held: Vec<Option<Held>> = (0..producers).map(|_| None).collect();
    let mut model = Model::default();
    let mut buf = Vec::new();
    let mut crashes = 0;
    for op in ops {
        match *op {
            Op::Send(p, size) => {
                let Some(handle) = handles[p].as_mut() else { continue };
                let stream = p as u32;
                let seq = model.sent.get(&stream).map_or(0, |s| s.len() as u64);
                let mut msg = vec![0; size];
                shmring::payload::fill(stream, seq, &mut msg);
                match handle.try_send(&msg) {
                    Ok(()) => {
                        model.commit(stream, size);
                    }
                    Err(TrySendError::Full) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("send: {e}"))),
                }
            }
            Op::Recv(n) => {
                for _ in 0..n {
                    match consumer.try_recv(&mut buf) {
                        Ok(_) => {
                            let (stream, seq) = shmring::payload::identify(&buf).expect("a payload");
                            model.consumed.push(Id { stream, seq });
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(e) => return Err(TestCaseError::fail(format!("recv: {e}"))),
                    }
                }
            }
            Op::FlushProducer(p) => {
                let Some(handle) = handles[p].as_ref() else { continue };
                handle.flush().map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.flushed();
            }
            Op::FlushConsumer => {
                consumer.flush().map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.flushed();
                model.durably_consumed = model.consumed.len();
            }
            Op::HoldOpen(p, size) => {
                if kind == Kind::Mpsc && held[p].is_none() {
                    let (held_claim, back) = Held::claim(handles[p].take().expect("not held"), size);
                    held[p] = held_claim;
                    handles[p] = back;
                }
            }
            Op::CommitHeld(p) => {
                if let Some(claim) = held[p].take() {
                    let stream = p as u32;
                    let seq = model.sent.get(&stream).map_or(0, |s| s.len() as u64);
                    let size = claim.size;
                    handles[p] = Some(claim.commit(stream, seq));
                    model.commit(stream, size);
                }
            }
            Op::Crash(seed) => {
                for (index, &pick) in picks.iter().enumerate() {
                    let image = crash_image(path, |page| match pick {
                        Pick::Synced => true,
                        Pick::Current => false,
                        Pick::HeaderOlder => page < HEADER_PAGES,
                        Pick::Random => splitmix(seed ^ splitmix(index as u64) ^ splitmix(!(page as u64))) & 1 == 0,
                    });
                    check_crash(dir, &image, kind, capacity, producers, &model)
                        .map_err(|e| TestCaseError::fail(format!("crash ({pick:?}, seed {seed}): {e}")))?;
                    crashes += 1;
                }
            }
        }
    }
    // The producers that hold a claim open never commit it, as if killed.
    drop(held);
    Ok(crashes)
}

/// A producer holding a claim open, in a thread of its own (a grant borrows
/// its producer): it commits the claim when told to, or, if the `Held` is
/// dropped first, never (it forgets the grant and the producer, as if it was
/// killed).
struct Held {
    commit: std::sync::mpsc::Sender<(u32, u64)>,
    thread: std::thread::JoinHandle<Option<Producer>>,
    size: usize,
}

impl Held {
    /// `producer` claims `size` bytes; `None` (and the producer back) if the
    /// ring is full.
    fn claim(producer: Producer, size: usize) -> (Option<Held>, Option<Producer>) {
        let (commit, orders) = std::sync::mpsc::channel::<(u32, u64)>();
        let (claimed, answer) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let mut producer = producer;
            let Ok(mut grant) = producer.try_reserve(size) else {
                let _ = claimed.send(false);
                return Some(producer);
            };
            let _ = claimed.send(true);
            match orders.recv() {
                Ok((stream, seq)) => {
                    shmring::payload::fill(stream, seq, &mut grant);
                    grant.commit();
                    Some(producer)
                }
                Err(_) => {
                    std::mem::forget(grant);
                    std::mem::forget(producer);
                    None
                }
            }
        });
        if answer.recv().expect("the holder answers") {
            (Some(Held { commit, thread, size }), None)
        } else {
            (None, thread.join().expect("holder"))
        }
    }

    /// Commits the claim as message `seq` of `stream`; the producer back.
    fn commit(self, stream: u32, seq: u64) -> Producer {
        self.commit.send((stream, seq)).expect("the holder waits");
        self.thread.join().expect("holder").expect("committed")
    }
}

/// Reopens a crash image as a fresh file, drains it and checks the contract;
/// then checks the ring takes new messages.
fn check_crash(
    dir: &TempDir,
    image: &[u8],
    kind: Kind,
    capacity: u64,
    producers: usize,
    model: &Model,
) -> Result<(), String> {
    let path = dir.0.join("crashed");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, image).map_err(|e| e.to_string())?;
    let options = options(kind, capacity, producers).liveness_interval(std::time::Duration::from_millis(5));
    let mut consumer = Consumer::open_file(&path, &options).map_err(|e| format!("reopen: {e}"))?;
    let mut delivered = Vec::new();
    let mut buf = Vec::new();
    // An SPSC ring whose producer had not attached when the header last
    // reached the disk waits for one: a few empty waits in a row end the
    // drain (each is longer than the skip of a dead producer's claim).
    let mut empty_waits = 0;
    loop {
        match consumer.recv_timeout(&mut buf, std::time::Duration::from_millis(20)) {
            Ok(_) => {
                let (stream, seq) =
                    shmring::payload::identify(&buf).ok_or_else(|| "a message that is no payload".to_string())?;
                delivered.push((Id { stream, seq }, buf.clone()));
                empty_waits = 0;
            }
            // Every producer died in the crash: drained.
            Err(shmring::RecvTimeoutError::Disconnected) => break,
            Err(shmring::RecvTimeoutError::Timeout) if empty_waits < 3 => empty_waits += 1,
            Err(shmring::RecvTimeoutError::Timeout) => break,
            Err(e) => return Err(format!("draining the recovered ring: {e}")),
        }
    }
    model.check(&delivered, kind)?;
    // The ring goes on: a new producer's message arrives.
    let mut producer = Producer::open_file(&path, &options).map_err(|e| format!("producer after recovery: {e}"))?;
    producer.try_send(b"after the crash").map_err(|e| format!("send after recovery: {e}"))?;
    match consumer.recv_timeout(&mut buf, std::time::Duration::from_secs(5)) {
        Ok(_) if buf == b"after the crash" => {}
        other => return Err(format!("after recovery, expected the new message, got {other:?}")),
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spsc_file_ring_keeps_the_contract_at_any_crash(ops in proptest::collection::vec(op(1, 3000), 1..150)) {
        run(Kind::Spsc, 16384, 1, &ops, &EVERY_PICK)?;
    }

    #[test]
    fn mpsc_file_ring_keeps_the_contract_at_any_crash(ops in proptest::collection::vec(op(3, 3000), 1..150)) {
        run(Kind::Mpsc, 16384, 3, &ops, &EVERY_PICK)?;
    }
}

/// The review's first demonstration: a 4 KiB ring, four messages flushed,
/// consumed (not flushed), then the producer laps the ring; the header on the
/// disk is the one of the last flush, the data pages are newer. Once the
/// reopened ring failed ("carries the stamp of another position") and the
/// flushed messages were lost; now it reopens and keeps the contract.
#[test]
fn four_kib_ring_with_the_header_older_than_the_data() {
    let mut ops: Vec<Op> = (0..4).map(|_| Op::Send(0, 100)).collect();
    ops.push(Op::FlushProducer(0));
    ops.push(Op::Recv(4));
    for round in 0..6 {
        ops.extend((0..12).map(|i| Op::Send(0, 100 + 37 * i)));
        ops.push(Op::Recv(9));
        ops.push(Op::Crash(round));
    }
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let crashes = run(kind, 4096, 1, &ops, &[Pick::HeaderOlder, Pick::Random]).expect("the contract holds");
        assert_eq!(crashes, 12);
    }
}

/// The review's second demonstration: a 128 MiB ring, 16 MiB messages
/// flushed and consumed (the consumer does not flush), then the producer
/// laps the ring; the header on the disk may be the flushed one, each data
/// page old or new. Once a partly written-back 16 MiB record of the newer lap
/// was delivered as a message (in layout version 2, whose stamps repeated
/// every 128 MiB); the lap-aware stamp alone would not stop a flushed record
/// whose payload pages the next lap overwrote.
#[test]
fn ring_of_128_mib_never_delivers_a_record_of_a_newer_lap() {
    let mut ops: Vec<Op> = (0..6).map(|_| Op::Send(0, 16 << 20)).collect();
    ops.push(Op::FlushProducer(0));
    ops.push(Op::Recv(6));
    ops.extend((0..6).map(|_| Op::Send(0, (16 << 20) - 4096)));
    ops.push(Op::Crash(7));
    ops.push(Op::Recv(1));
    ops.push(Op::Send(0, 16 << 20));
    ops.push(Op::Crash(8));
    let picks = [Pick::HeaderOlder, Pick::Random, Pick::Random, Pick::Random, Pick::Random];
    let crashes = run(Kind::Spsc, 128 << 20, 1, &ops, &picks).expect("the contract holds");
    assert_eq!(crashes, 10);
}

/// The long run: `SHMRING_CRASH_CASES` workloads of each kind (default
/// 1,500), each checked at every crash point it reaches; prints the count.
/// `cargo test --release --test crash -- --ignored --nocapture`
#[test]
#[ignore = "long run (minutes); see docs/verification.md"]
fn crash_points_long() {
    let cases = std::env::var("SHMRING_CRASH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500);
    let started = std::time::Instant::now();
    let mut total = 0;
    for (kind, producers) in [(Kind::Spsc, 1), (Kind::Mpsc, 3)] {
        let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let points = std::sync::atomic::AtomicUsize::new(0);
        let strategy = proptest::collection::vec(op(producers, 3000), 1..150);
        runner
            .run(&strategy, |ops| {
                let crashes = run(kind, 16384, producers, &ops, &EVERY_PICK)?;
                points.fetch_add(crashes, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let points = points.into_inner();
        println!("{kind:?}: {cases} workloads, {points} crash points, contract held at every one");
        total += points;
    }
    println!("crash points: {total} in {:.0?}", started.elapsed());
    assert!(total >= 10_000, "the long run checks at least 10,000 crash points, not {total}");
}
