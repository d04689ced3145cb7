//! Adversarial review of the durable file rings (issue 14, commit e11b4d1).
//!
//! Each test names the finding it demonstrates; see the review report.

use shmring::{Consumer, Kind, Producer, RecvTimeoutError, RingOptions, SendTimeoutError, TryRecvError, TrySendError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// File offsets of header words (layout version 5).
const TAIL_AT: u64 = 128;
const HEAD_AT: u64 = 256;
const CLAIMS_AT: u64 = 128 + 1664;
const LINE: u64 = 128;
const DURABLE_TAIL_AT: u64 = 128 + 9856;
const BOOT_ID_AT: u64 = 128 + 9856 + 8;
const DURABLE_HEAD_AT: u64 = 128 + 9856 + 40;
/// The data region starts here (a 4 KiB page machine).
const DATA_AT: u64 = 12288;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("shmring-adv14-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_u64(path: &Path, at: u64) -> u64 {
    let file = std::fs::File::open(path).expect("open");
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, at).expect("read");
    u64::from_le_bytes(b)
}

fn write_u64(path: &Path, at: u64, value: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    file.write_all_at(&value.to_le_bytes(), at).expect("write");
}

/// The file as a crash that wrote every page back would leave it (every page
/// current), with a foreign boot id, copied to `to`.
fn crash_copy_current(from: &Path, to: &Path) {
    let mut image = std::fs::read(from).expect("read");
    image[BOOT_ID_AT as usize..BOOT_ID_AT as usize + 16].copy_from_slice(&[0x5A; 16]);
    let _ = std::fs::remove_file(to);
    std::fs::write(to, image).expect("write");
}

fn drain(consumer: &mut Consumer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match consumer.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => out.push(buf.clone()),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return out,
            Err(e) => panic!("draining: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Finding 1: an SPSC producer that (re)attaches while the consumer releases
// space is refused as `Corrupted` ("durable head ... past head").
//
// `spsc.rs` `Producer::attach` loads `head`, walks the records, then loads
// `durable_head` and refuses it if it is past the `head` it read earlier.
// But the live consumer may have consumed and released (raised
// `durable_head`) in between: a healthy ring reported as corrupted. A
// consumer that flushes after every message raises `durable_head` all the
// time, which makes the window easy to hit.
// ---------------------------------------------------------------------------
#[test]
fn spsc_producer_reattach_racing_a_consumer_release_is_not_corrupted() {
    let dir = TempDir::new("reattach");
    let path = dir.path("ring");
    let options = RingOptions::new().capacity(1 << 16).max_message(64);
    let mut consumer = Consumer::create_file(&path, &options).expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(AtomicU64::new(0));
    let consumer_thread = {
        let (stop, consumed) = (Arc::clone(&stop), Arc::clone(&consumed));
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match consumer.try_recv(&mut buf) {
                    Ok(_) => {
                        consumed.fetch_add(1, Ordering::Relaxed);
                        // A consumer that makes its position durable often.
                        consumer.flush().expect("consumer flush");
                    }
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => std::thread::yield_now(),
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attaches = 0u64;
    let mut failure = None;
    while Instant::now() < deadline {
        match Producer::open_file(&path, &options) {
            Ok(mut producer) => {
                attaches += 1;
                for _ in 0..64 {
                    match producer.try_send(&[7u8; 8]) {
                        Ok(()) | Err(TrySendError::Full) => {}
                        Err(e) => panic!("send: {e}"),
                    }
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    consumer_thread.join().expect("consumer thread");
    assert!(
        failure.is_none(),
        "after {attaches} clean attaches ({} consumed), a producer attach failed on a healthy ring: {}",
        consumed.load(Ordering::Relaxed),
        failure.unwrap()
    );
}

// ---------------------------------------------------------------------------
// Finding 2: MPSC `flush` does not cover messages committed after a claim
// whose producer is stopped (descheduled, SIGSTOPped, or killed) between
// its CAS on `tail` and its claim marker. `flush_end` waits only 1 ms for
// the marker, then stops the walk at the zero word: the durable tail stays
// before that claim, and the messages other producers committed after it
// (before the flush) are dropped by a recovery after a machine crash.
//
// The state a producer stopped after its CAS leaves (its intent in its claim
// line, `tail` moved past its claim, a zero word at the claim) is written to
// the file directly; then another producer sends and flushes; the crash
// (every page written back: the current file) loses that message.
// ---------------------------------------------------------------------------
#[test]
fn mpsc_flush_covers_messages_after_a_claim_stopped_before_its_marker() {
    let dir = TempDir::new("unmarked");
    let path = dir.path("ring");
    let options = RingOptions::new().capacity(4096).max_message(512).kind(Kind::Mpsc).max_producers(2);
    let consumer = Consumer::create_file(&path, &options).expect("create");
    let mut producer = Producer::open_file(&path, &options).expect("producer");
    producer.try_send(b"before").expect("send");
    // Producer slot 1 (taken by nobody here: as if its holder stopped right
    // after its CAS) claims 64 bytes at the claim position.
    let tail = read_u64(&path, TAIL_AT);
    assert_eq!(tail, 16);
    let line = CLAIMS_AT + 128;
    write_u64(&path, line + 8, tail + 64);
    write_u64(&path, line, tail);
    write_u64(&path, TAIL_AT, tail + 64);
    // Another producer commits after it, then flushes.
    producer.try_send(b"committed before the flush").expect("send");
    producer.flush().expect("flush");
    let durable_tail = read_u64(&path, DURABLE_TAIL_AT);
    let crashed = dir.path("crashed");
    crash_copy_current(&path, &crashed);
    drop(producer);
    drop(consumer);
    let reopen = options.clone().liveness_interval(Duration::from_millis(5));
    let mut consumer = Consumer::open_file(&crashed, &reopen).expect("reopen");
    let delivered = drain(&mut consumer);
    assert!(
        delivered.iter().any(|m| m == b"committed before the flush"),
        "a message committed before a completed flush was lost (durable tail {durable_tail}, claim position {}; \
         delivered {:?}, lost_records {})",
        tail + 64,
        delivered.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect::<Vec<_>>(),
        consumer.lost_records()
    );
}

// ---------------------------------------------------------------------------
// Finding 3: a file ring's producer waits for the consumer to *poll* again
// after the consumer has consumed. Space the consumer freed (less than half
// a lap past the durable head) is not reusable until the consumer calls
// recv/try_recv/flush again; a shared memory ring reuses it at once. A
// consumer that consumed and then waits for something else (a reply the
// producer sends after this message, another channel) deadlocks with it.
// ---------------------------------------------------------------------------
fn consumed_space_is_reusable_without_another_poll(file: bool) -> Result<(), String> {
    let dir = TempDir::new(if file { "reuse-file" } else { "reuse-shm" });
    let path = dir.path("ring");
    let name = format!("/shmring-adv14-reuse-{}", std::process::id());
    let options = RingOptions::new().capacity(4096).max_message(2040);
    let (mut consumer, mut producer) = if file {
        let c = Consumer::create_file(&path, &options).expect("create");
        (c, Producer::open_file(&path, &options).expect("producer"))
    } else {
        let c = Consumer::create(&name, &options).expect("create");
        (c, Producer::open(&name, &options).expect("producer"))
    };
    // Half a lap: four 504-byte messages (4 x 512 bytes).
    for _ in 0..4 {
        producer.try_send(&[1u8; 504]).expect("send");
    }
    // The consumer takes three (1536 bytes, less than half a lap) and then
    // stops polling (it waits for something else).
    let mut buf = Vec::new();
    for _ in 0..3 {
        consumer.try_recv(&mut buf).expect("recv");
    }
    let consumer_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(consumer);
    });
    // 3584 bytes are free by the consumer's position; a largest message
    // needs 2056 (its record and the terminator), without wrapping.
    let result = producer.send_timeout(&[2u8; 2040], Duration::from_millis(500));
    consumer_thread.join().unwrap();
    match result {
        Ok(()) => Ok(()),
        Err(SendTimeoutError::Timeout) => Err("timed out".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn file_ring_producer_reuses_consumed_space_without_another_consumer_poll() {
    consumed_space_is_reusable_without_another_poll(false).expect("shared memory ring (baseline)");
    consumed_space_is_reusable_without_another_poll(true)
        .expect("file ring: space consumed but not yet released by a poll of the consumer");
}

// ---------------------------------------------------------------------------
// Hostile header values (same boot, no recovery): every role must refuse
// them with an error, never panic or write over unconsumed records.
// ---------------------------------------------------------------------------
#[test]
fn mpsc_producer_refuses_a_durable_head_past_the_consumer_head() {
    let dir = TempDir::new("hostile");
    let path = dir.path("ring");
    let options = RingOptions::new().capacity(4096).max_message(512).kind(Kind::Mpsc).max_producers(2);
    let mut consumer = Consumer::create_file(&path, &options).expect("create");
    {
        let mut producer = Producer::open_file(&path, &options).expect("producer");
        for i in 0..8u8 {
            producer.try_send(&[i; 200]).expect("send");
        }
    }
    // A durable head past the consumer's head (which is 0): forged.
    let tail = read_u64(&path, TAIL_AT);
    write_u64(&path, DURABLE_HEAD_AT, tail);
    assert_eq!(read_u64(&path, HEAD_AT), 0);
    // The SPSC producer and the consumer check this; the MPSC producer?
    match Producer::open_file(&path, &options) {
        Err(_) => {}
        Ok(mut producer) => {
            // It claims from `tail` up to durable_head + capacity: over the
            // unconsumed records.
            let mut sent = 0;
            while producer.try_send(&[0xEE; 200]).is_ok() {
                sent += 1;
                if sent > 100 {
                    break;
                }
            }
            let mut buf = Vec::new();
            let mut first = Vec::new();
            for _ in 0..8 {
                match consumer.try_recv(&mut buf) {
                    Ok(_) => first.push(buf[0]),
                    Err(e) => {
                        first.push(0xFF);
                        eprintln!("recv: {e}");
                        break;
                    }
                }
            }
            assert_eq!(
                first,
                (0..8u8).collect::<Vec<_>>(),
                "an MPSC producer accepted a durable head past the consumer's head and wrote over {sent} unconsumed \
                 records' space"
            );
        }
    }
}

/// A data-region sanity check used by the helpers above.
#[test]
fn layout_offsets_match() {
    let dir = TempDir::new("offsets");
    let path = dir.path("ring");
    let options = RingOptions::new().capacity(4096).max_message(512);
    let _consumer = Consumer::create_file(&path, &options).expect("create");
    let mut producer = Producer::open_file(&path, &options).expect("producer");
    producer.try_send(b"x").expect("send");
    producer.flush().expect("flush");
    assert_eq!(read_u64(&path, TAIL_AT), 16);
    assert_eq!(read_u64(&path, DURABLE_TAIL_AT), 16);
    assert_ne!(read_u64(&path, DATA_AT), 0);
}

// ---------------------------------------------------------------------------
// MPSC: a flush walk that is "late" (waiting >= 1 ms on an unmarked claim)
// re-walks from the head it read at its start. If the consumer meanwhile
// consumed and is zeroing that space in `release` (zeroed, durable_head not
// raised yet), the walk reads a zero with durable_head still before it and
// calls `mark_for_owner`, which finds the stale intent of the producer that
// last claimed there and CASes a claim marker into freed space. The next lap
// then finds a claim marker of the previous lap at the claim position: the
// consumer reports the ring corrupted (and producers then see "consumer
// gone").
// ---------------------------------------------------------------------------
/// An MPSC file ring with slot 0's stale intent at position 0, more than
/// half a lap of records after it, and an open claim of unknown owner at
/// `q`: slot 0 flushes (waiting on that claim, re-walking) while the
/// consumer consumes up to `q`, crossing half a lap, so it releases (header
/// write-back, zeroes from 0, raises `durable_head`) under the walk. Returns
/// the ring's directory and path, the consumer, slot 1's producer and `q`.
fn flush_walks_while_the_consumer_releases(tag: &str) -> (TempDir, PathBuf, Consumer, Producer, u64) {
    let dir = TempDir::new(tag);
    let path = dir.path("ring");
    let capacity: u64 = 8 << 20;
    let options = RingOptions::new()
        .capacity(capacity as usize)
        .max_message(8192)
        .kind(Kind::Mpsc)
        .max_producers(4)
        .liveness_interval(Duration::from_millis(5));
    let mut consumer = Consumer::create_file(&path, &options).expect("create");
    // Slots 0 and 1. Slot 0's last claim is at position 0: its intent
    // stays (start 0).
    let mut p0 = Producer::open_file(&path, &options).expect("p0");
    let mut p1 = Producer::open_file(&path, &options).expect("p1");
    p0.try_send(&[1u8; 8]).expect("a");
    let filler = vec![2u8; 4088]; // 4096-byte records
    let mut tail = 16u64;
    while tail < capacity / 2 + 64 * 4096 {
        p1.try_send(&filler).expect("filler");
        tail += 4096;
    }
    assert_eq!(read_u64(&path, TAIL_AT), tail);
    // An open claim at `tail` whose owner is unknown (two intents, slots 2
    // and 3, which no live producer holds): a flush waits for it (up to
    // 100 ms), re-walking from its start every 100 us.
    let q = tail;
    for slot in [2u64, 3] {
        write_u64(&path, CLAIMS_AT + slot * LINE + 8, q + 4096);
        write_u64(&path, CLAIMS_AT + slot * LINE, q);
    }
    write_u64(&path, TAIL_AT, q + 4096);
    let flusher = std::thread::spawn(move || {
        p0.flush().expect("flush");
        p0
    });
    std::thread::sleep(Duration::from_millis(10));
    let mut buf = Vec::new();
    let mut got = 0;
    while got < 1 + (q - 16) / 4096 {
        consumer.try_recv(&mut buf).expect("recv");
        got += 1;
    }
    drop(flusher.join().expect("flusher"));
    (dir, path, consumer, p1, q)
}

#[test]
fn mpsc_late_flush_walk_never_marks_space_the_consumer_released() {
    let (_dir, path, _consumer, _p1, _) = flush_walks_while_the_consumer_releases("stale-marker");
    let durable_head = read_u64(&path, DURABLE_HEAD_AT);
    let word0 = read_u64(&path, DATA_AT);
    assert!(durable_head > 0, "the consumer released");
    assert_eq!(word0, 0, "released space below the durable head holds a claim marker written by the flush walk");
}

/// The consequence the first review saw: the next lap reaches the position
/// of the stale marker, and the consumer reported a healthy ring corrupted
/// (and the producers then "the consumer is gone").
#[test]
fn mpsc_flush_walk_leaves_no_stale_marker_for_the_next_lap() {
    let (_dir, path, mut consumer, mut p1, q) = flush_walks_while_the_consumer_releases("stale-marker-2");
    let capacity: u64 = 8 << 20;
    let mut buf = Vec::new();
    // The dead claim at q is skipped once its owners are found dead; then
    // fill exactly up to `capacity`, draining as we go.
    let mut tail = q + 4096;
    let mut result = Ok(());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tail < capacity {
            let len = if capacity - tail >= 2 * 4096 { 4088 } else { (capacity - tail - 8) as usize };
            match p1.try_send(&vec![3u8; len]) {
                Ok(()) => tail += 8 + (len as u64).div_ceil(8) * 8,
                Err(TrySendError::Full) => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        match consumer.try_recv(&mut buf) {
            Ok(_) | Err(TryRecvError::Empty) => {}
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
        if tail >= capacity && consumer.position() >= capacity {
            // Give the consumer a few polls at position `capacity`.
            for _ in 0..100 {
                if let Err(e) = consumer.try_recv(&mut buf) {
                    if !matches!(e, TryRecvError::Empty) {
                        result = Err(e.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            break;
        }
    }
    eprintln!("tail {tail}, word at offset 0: {:#018x}", read_u64(&path, DATA_AT));
    assert_eq!(result, Ok(()), "a healthy ring reported as corrupted");
}

// ---------------------------------------------------------------------------
// Hostile `kept_from` in a crashed image: a clear error or a sane ring, never
// a panic.
// ---------------------------------------------------------------------------
const KEPT_FROM_AT: u64 = 128 + 9856 + 32;

#[test]
fn hostile_kept_from_in_a_crashed_image() {
    let dir = TempDir::new("hostile");
    let path = dir.path("ring");
    let options = RingOptions::new().capacity(4096).max_message(512);
    {
        let _consumer = Consumer::create_file(&path, &options).expect("create");
        let mut producer = Producer::open_file(&path, &options).expect("producer");
        for _ in 0..5 {
            producer.try_send(&[9u8; 100]).expect("send");
        }
        producer.flush().expect("flush");
    }
    let mut report = Vec::new();
    for value in [13u64, u64::MAX - 7, 1 << 63, (1 << 63) - 8, 5 * 4096, 64] {
        let crashed = dir.path("crashed");
        let mut image = std::fs::read(&path).unwrap();
        image[BOOT_ID_AT as usize..BOOT_ID_AT as usize + 16].copy_from_slice(&[0x5A; 16]);
        image[KEPT_FROM_AT as usize..KEPT_FROM_AT as usize + 8].copy_from_slice(&value.to_le_bytes());
        let _ = std::fs::remove_file(&crashed);
        std::fs::write(&crashed, image).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let mut c = match Consumer::open_file(&crashed, &options) {
                Ok(c) => c,
                Err(e) => return format!("open: {e}"),
            };
            let mut n = 0;
            let mut buf = Vec::new();
            while c.try_recv(&mut buf).is_ok() {
                n += 1;
            }
            let mut p = match Producer::open_file(&crashed, &options) {
                Ok(p) => p,
                Err(e) => return format!("{n} delivered; producer: {e}"),
            };
            let sent = p.try_send(b"x").map_err(|e| e.to_string());
            format!("{n} delivered, head now {}, send {sent:?}", c.position())
        });
        report.push(format!("kept_from {value}: {outcome:?}"));
    }
    for line in &report {
        eprintln!("{line}");
    }
    assert!(report.iter().all(|l| !l.contains("Err(Any")), "a panic");
}

// ---------------------------------------------------------------------------
// The crash simulator of tests/crash.rs with real concurrency between crash
// points: three MPSC producer threads (or one SPSC) sending and flushing, a consumer
// thread receiving and flushing, all racing (flushes against commits,
// releases against flush walks); every crash point is taken with the
// workers quiescent (a gate), each page last-synced or current (seeded).
// ---------------------------------------------------------------------------
mod crash_sim;

mod concurrent_crash {
    use super::*;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Mutex, RwLock};

    use crate::crash_sim::{crash_image, splitmix, track, untrack, HEADER_PAGES};

    #[derive(Default)]
    struct Model {
        sent: BTreeMap<u32, Vec<usize>>,
        consumed: Vec<(u32, u64)>,
        flushed: BTreeMap<u32, u64>,
        durably_consumed: usize,
    }

    impl Model {
        fn counts(&self) -> BTreeMap<u32, u64> {
            self.sent.iter().map(|(s, v)| (*s, v.len() as u64)).collect()
        }
        fn flushed(&mut self, snapshot: BTreeMap<u32, u64>) {
            for (s, n) in snapshot {
                let e = self.flushed.entry(s).or_default();
                *e = (*e).max(n);
            }
        }
        fn check(&self, delivered: &[((u32, u64), Vec<u8>)]) -> Result<(), String> {
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            for ((stream, seq), payload) in delivered {
                let size = self
                    .sent
                    .get(stream)
                    .and_then(|s| s.get(*seq as usize))
                    .ok_or_else(|| format!("({stream}, {seq}) never sent"))?;
                if payload.len() != *size {
                    return Err(format!("({stream}, {seq}) {} bytes, sent {size}", payload.len()));
                }
                shmring::payload::check(*stream, *seq, payload).map_err(|e| format!("({stream}, {seq}) torn: {e}"))?;
                if let Some(prev) = last.insert(*stream, *seq) {
                    if *seq != prev + 1 {
                        return Err(format!("stream {stream}: {seq} after {prev}"));
                    }
                }
            }
            let ids: HashSet<(u32, u64)> = delivered.iter().map(|(id, _)| *id).collect();
            let consumed: HashSet<(u32, u64)> = self.consumed.iter().copied().collect();
            for id in &self.consumed[..self.durably_consumed] {
                if ids.contains(id) {
                    return Err(format!("{id:?} consumed before the consumer's flush, delivered again"));
                }
            }
            for (stream, n) in &self.flushed {
                for seq in 0..*n {
                    let id = (*stream, seq);
                    if !consumed.contains(&id) && !ids.contains(&id) {
                        return Err(format!("{id:?} flushed, not consumed, lost"));
                    }
                }
            }
            Ok(())
        }
    }

    fn check_image(dir: &TempDir, image: &[u8], options: &RingOptions, model: &Model) -> Result<(), String> {
        let path = dir.path("crashed");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, image).map_err(|e| e.to_string())?;
        let options = options.clone().liveness_interval(Duration::from_millis(5));
        let mut consumer = Consumer::open_file(&path, &options).map_err(|e| format!("reopen: {e}"))?;
        let mut delivered = Vec::new();
        let mut buf = Vec::new();
        let mut empty = 0;
        loop {
            match consumer.recv_timeout(&mut buf, Duration::from_millis(20)) {
                Ok(_) => {
                    let id = shmring::payload::identify(&buf).ok_or("not a payload")?;
                    delivered.push((id, buf.clone()));
                    empty = 0;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if empty < 3 => empty += 1,
                Err(RecvTimeoutError::Timeout) => break,
                Err(e) => return Err(format!("drain: {e}")),
            }
        }
        if let Err(e) = model.check(&delivered) {
            let u = |o: usize| u64::from_le_bytes(image[o..o + 8].try_into().unwrap());
            let p = 128 + 9856;
            let mut diag = format!(
                "{e}\n image: tail {} head {} durable_tail {} durable_head {} flush_pending {} unsettled {} lost {}\n delivered {:?}",
                u(128), u(256), u(p), u(p + 40), u(p + 48), u(p + 64), u(p + 24),
                delivered.iter().map(|(id, b)| (*id, b.len())).collect::<Vec<_>>()
            );
            // The records from the image's head to its durable tail.
            let (head, tail) = (u(256), u(p));
            let mut at = head;
            let mut walk = String::new();
            let current = std::fs::read(dir.path("ring")).unwrap();
            while at < tail && walk.len() < 4000 {
                let o = 12288 + (at % 16384) as usize;
                let w = u(o);
                let cw = u64::from_le_bytes(current[o..o + 8].try_into().unwrap());
                walk += &format!(" [{at} {w:#x} now {cw:#x}]");
                if w == 0 {
                    break;
                }
                let (tag, len) = ((w >> 32) & 0xff, w & 0xffff_ffff);
                at += if tag == 0x50 { 8 + len } else { 8 + len.div_ceil(8) * 8 };
            }
            diag += &format!("\n walk:{walk}");
            // Where the lost message's record is in the image and in memory now.
            let data = 12288;
            for (name, bytes) in [("image", image.to_vec()), ("current", std::fs::read(dir.path("ring")).unwrap())] {
                for off in (0..16384).step_by(8) {
                    let at = data + off;
                    if at + 20 > bytes.len() {
                        break;
                    }
                    let w = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                    if w != 0 {
                        if let Some(id) = shmring::payload::identify(&bytes[at + 8..(at + 20)]) {
                            if e.starts_with(&format!("{id:?}")) {
                                diag += &format!("\n {name}: at offset {off} word {w:#018x}");
                            }
                        }
                    }
                }
            }
            return Err(diag);
        }
        let mut producer = Producer::open_file(&path, &options).map_err(|e| format!("producer after: {e}"))?;
        producer.try_send(b"after").map_err(|e| format!("send after: {e}"))?;
        Ok(())
    }

    #[test]
    fn mpsc_file_ring_keeps_the_contract_with_concurrent_flushes_and_commits() {
        let options = RingOptions::new().kind(Kind::Mpsc).max_producers(3);
        let flushes = (7, 11);
        keeps_the_contract_with_concurrent_flushes_and_commits(
            "concurrent-mpsc",
            options,
            3,
            flushes,
            Duration::from_secs(20),
        );
    }

    /// SPSC: the producer reuses consumed space outside the flushed zone
    /// without any write-back, racing flushes of both handles (rarer, so
    /// that laps pass between them).
    #[test]
    fn spsc_file_ring_keeps_the_contract_with_concurrent_flushes_and_commits() {
        let options = RingOptions::new();
        let flushes = (97, 101);
        keeps_the_contract_with_concurrent_flushes_and_commits(
            "concurrent-spsc",
            options,
            1,
            flushes,
            Duration::from_secs(15),
        );
    }

    fn keeps_the_contract_with_concurrent_flushes_and_commits(
        name: &str,
        options: RingOptions,
        producers: u32,
        (producer_flushes_one_in, consumer_flushes_one_in): (u64, u64),
        duration: Duration,
    ) {
        let dir = TempDir::new(name);
        let path = dir.path("ring");
        track(&path);
        let options = options.capacity(16384).max_message(3000);
        let mut consumer = Consumer::create_file(&path, &options).expect("create");
        let gate = Arc::new(RwLock::new(()));
        let model = Arc::new(Mutex::new(Model::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for p in 0..producers {
            let mut producer = Producer::open_file(&path, &options).expect("producer");
            let (gate, model, stop) = (Arc::clone(&gate), Arc::clone(&model), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                let mut rng = splitmix(u64::from(p) + 1);
                while !stop.load(Ordering::Relaxed) {
                    rng = splitmix(rng);
                    let _open = gate.read().unwrap();
                    if rng % producer_flushes_one_in == 0 {
                        let snapshot = model.lock().unwrap().counts();
                        producer.flush().expect("flush");
                        model.lock().unwrap().flushed(snapshot);
                        continue;
                    }
                    let size = 12 + (rng >> 8) as usize % 2900;
                    let seq = model.lock().unwrap().sent.get(&p).map_or(0, |s| s.len() as u64);
                    let mut msg = vec![0; size];
                    shmring::payload::fill(p, seq, &mut msg);
                    match producer.try_send(&msg) {
                        Ok(()) => model.lock().unwrap().sent.entry(p).or_default().push(size),
                        Err(TrySendError::Full) => {
                            drop(_open);
                            std::thread::yield_now();
                        }
                        // The run is over: the consumer thread saw `stop`
                        // first, left, and detached.
                        Err(TrySendError::Disconnected) if stop.load(Ordering::Relaxed) => break,
                        Err(e) => panic!("send: {e}"),
                    }
                }
            }));
        }
        {
            let (gate, model, stop) = (Arc::clone(&gate), Arc::clone(&model), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut rng = 99u64;
                while !stop.load(Ordering::Relaxed) {
                    rng = splitmix(rng);
                    let _open = gate.read().unwrap();
                    if rng % consumer_flushes_one_in == 0 {
                        let (snapshot, consumed) = {
                            let m = model.lock().unwrap();
                            (m.counts(), m.consumed.len())
                        };
                        consumer.flush().expect("consumer flush");
                        let mut m = model.lock().unwrap();
                        m.flushed(snapshot);
                        m.durably_consumed = m.durably_consumed.max(consumed);
                        continue;
                    }
                    match consumer.try_recv(&mut buf) {
                        Ok(_) => {
                            let id = shmring::payload::identify(&buf).expect("payload");
                            model.lock().unwrap().consumed.push(id);
                        }
                        Err(TryRecvError::Empty) => {
                            drop(_open);
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("recv: {e}"),
                    }
                }
            }));
        }
        let deadline = Instant::now() + duration;
        let mut crash = 0u64;
        let mut failure = None;
        while Instant::now() < deadline && failure.is_none() {
            std::thread::sleep(Duration::from_millis(3 + crash % 7));
            let _closed = gate.write().unwrap();
            let m = model.lock().unwrap();
            // Each page last-synced: all, the header's, only the
            // persistence line's (page 2), only the consumer line's (page
            // 0), or seeded.
            for pick in 0..5u64 {
                let seed = splitmix(crash * 5 + pick);
                let image = crash_image(&path, |i| match pick {
                    0 => true,
                    1 => i < HEADER_PAGES,
                    2 => i == 2,
                    3 => i == 0,
                    _ => splitmix(seed ^ i as u64) & 1 == 0,
                });
                if let Err(e) = check_image(&dir, &image, &options, &m) {
                    failure = Some(format!("crash {crash} pick {pick}: {e}"));
                    break;
                }
            }
            crash += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("worker");
        }
        untrack(&path);
        let m = model.lock().unwrap();
        let sent: usize = m.sent.values().map(Vec::len).sum();
        eprintln!("{crash} crash points, {sent} sent, {} consumed", m.consumed.len());
        assert!(failure.is_none(), "{}", failure.unwrap());
    }
}
