//! Helpers for tests that need real processes and real segments.
//!
//! A test binary re-runs itself as a child process: the parent starts
//! `current_exe() --exact child --ignored` with `SHMRING_CHILD_ROLE` set, and
//! the binary's `#[ignore]`d `child` test calls [`child_main`]. Every child is
//! killed and reaped when its guard drops, and every segment is unlinked when
//! its guard drops, so a failing test leaves neither behind.
#![allow(dead_code)] // each test binary uses part of this module

use shmring::{payload, AnonymousRing, Consumer, Kind, Producer, RingOptions, SendTimeoutError};
use std::os::unix::fs::FileExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A segment name no other test (or run) uses.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("/shmring-test-{tag}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Unlinks the segment when dropped (whatever the test's outcome).
pub struct SegmentGuard(pub String);

impl SegmentGuard {
    pub fn new(tag: &str) -> SegmentGuard {
        SegmentGuard(unique_name(tag))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The segment's file under /dev/shm, for tests that scribble on it.
    pub fn file(&self) -> std::fs::File {
        std::fs::OpenOptions::new().read(true).write(true).open(self.path()).expect("open /dev/shm file")
    }

    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }

    pub fn write_at(&self, offset: u64, bytes: &[u8]) {
        self.file().write_all_at(bytes, offset).expect("write into segment");
    }

    pub fn read_u64(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file().read_exact_at(&mut b, offset).expect("read segment");
        u64::from_le_bytes(b)
    }
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        let _ = shmring::unlink(&self.0);
    }
}

/// A child process, killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits (at most `limit`) for the child to exit; returns its stdout.
    pub fn finish(mut self, limit: Duration) -> (bool, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut stdout) = self.0.stdout.take() {
                    use std::io::Read;
                    let _ = stdout.read_to_string(&mut out);
                }
                return (status.success(), out);
            }
            assert!(start.elapsed() < limit, "child did not finish within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts this test binary again as a child with `role` and `env`.
pub fn spawn_child(role: &str, env: &[(&str, String)]) -> ChildGuard {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("SHMRING_CHILD_ROLE", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().expect("spawn child"))
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"))
}

fn env_u64(key: &str) -> u64 {
    env(key).parse().unwrap_or_else(|_| panic!("{key} is not a number"))
}

/// Payload sizes for the integrity stream: mostly small and random, and
/// regularly the maximum, 1 byte, and sizes that end exactly at the end of
/// the region or just past it (forcing a padding record).
pub fn stream_size(seq: u64, rng: &mut u64, position: u64, capacity: u64, max: usize) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let to_end = (capacity - position % capacity).saturating_sub(8) as usize;
    match seq % 17 {
        0 if to_end <= max => to_end,    // the record ends exactly at the end
        3 if to_end < max => to_end + 1, // one byte too many: padding first
        5 => max,
        7 => 1,
        11 if to_end >= 8 && to_end <= max => to_end - 7, // same record size as `to_end`
        _ => 1 + (*rng % 128) as usize,
    }
}

/// The payload of message `seq` of the integrity stream: its length is the
/// stream id, so a truncated or padded message fails the check too.
pub fn fill_stream(seq: u64, buf: &mut [u8]) {
    payload::fill(buf.len() as u32, seq, buf);
}

pub fn check_stream(seq: u64, msg: &[u8]) -> Result<(), String> {
    payload::check(msg.len() as u32, seq, msg)
}

/// Options for opening an MPSC segment made by a test.
pub fn mpsc_options() -> RingOptions {
    RingOptions::new().kind(Kind::Mpsc)
}

/// Payload sizes of MPSC stream `stream`: reproducible, 1 to `max` bytes.
pub struct StreamSizes(u64);

impl StreamSizes {
    pub fn new(stream: u32) -> StreamSizes {
        StreamSizes(0x9E37_79B9_7F4A_7C15 ^ (u64::from(stream) << 32) | 1)
    }

    pub fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}

/// Entry point of child processes; see the module docs.
pub fn child_main() {
    let Ok(role) = std::env::var("SHMRING_CHILD_ROLE") else { return };
    let name = env("SHMRING_NAME");
    let options = RingOptions::new();
    match role.as_str() {
        // MPSC: send SHMRING_COUNT messages (all if absent: until killed) of
        // stream SHMRING_STREAM with sizes up to SHMRING_MAX_SIZE, written in
        // place, holding each claim SHMRING_HOLD_US more. With
        // SHMRING_PROGRESS, record the count committed after each commit.
        "mpsc-produce" => {
            let mut producer = Producer::open(&name, &mpsc_options()).expect("open MPSC producer");
            let stream: u32 = env("SHMRING_STREAM").parse().expect("stream");
            let count = std::env::var("SHMRING_COUNT").map_or(u64::MAX, |c| c.parse().expect("count"));
            let max = env_u64("SHMRING_MAX_SIZE") as usize;
            let progress = std::env::var("SHMRING_PROGRESS")
                .ok()
                .map(|p| std::fs::OpenOptions::new().write(true).open(p).expect("progress file"));
            let hold = Duration::from_micros(std::env::var("SHMRING_HOLD_US").map_or(0, |h| h.parse().expect("hold")));
            let mut sizes = StreamSizes::new(stream);
            println!("slot={}", producer.slot());
            for seq in 0..count {
                let len = sizes.next(max).max(12);
                // A full ring whose consumer died says Disconnected; this
                // producer outlives consumer restarts, so it waits for the
                // next consumer (for at most 30 s).
                let waiting = Instant::now();
                let mut grant = loop {
                    match producer.reserve_timeout(len, Duration::from_secs(30)) {
                        Ok(grant) => break grant,
                        Err(SendTimeoutError::Disconnected) if waiting.elapsed() < Duration::from_secs(30) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => panic!("reserve {seq}: {e}"),
                    }
                };
                payload::fill(stream, seq, &mut grant);
                let claimed = Instant::now();
                while claimed.elapsed() < hold {
                    std::hint::spin_loop();
                }
                grant.commit();
                if let Some(file) = &progress {
                    file.write_all_at(&(seq + 1).to_le_bytes(), 0).expect("record progress");
                }
            }
            println!("sent={count}");
        }
        // Backings: open the anonymous ring whose memfd is inherited as
        // SHMRING_FD, or received over the Unix socket at SHMRING_SOCKET, and
        // send or verify SHMRING_COUNT integrity-stream messages.
        "anon-produce" | "anon-consume" => {
            let ring = match std::env::var("SHMRING_SOCKET") {
                Ok(path) => {
                    let socket = std::os::unix::net::UnixStream::connect(path).expect("connect");
                    AnonymousRing::receive_from(&socket, &options).expect("receive the ring")
                }
                Err(_) => AnonymousRing::open_inherited(env_u64("SHMRING_FD") as i32, &options).expect("inherited"),
            };
            let count = env_u64("SHMRING_COUNT");
            if role == "anon-produce" {
                let mut producer = ring.producer(&options).expect("producer");
                send_stream(&mut producer, count);
                println!("sent={count}");
            } else {
                let mut consumer = ring.consumer(&options).expect("consumer");
                if std::env::var("SHMRING_HOLD").is_ok() {
                    // Stay attached, reading nothing, until killed.
                    println!("attached");
                    std::thread::sleep(Duration::from_secs(600));
                }
                println!("received={}", receive_stream(&mut consumer, count));
            }
        }
        // A file-backed ring: send SHMRING_COUNT messages, flush if
        // SHMRING_FLUSH is set, say "done", and wait to be killed.
        "file-produce" => {
            let mut producer = Producer::open_file(env("SHMRING_FILE"), &options).expect("open file ring");
            send_stream(&mut producer, env_u64("SHMRING_COUNT"));
            if std::env::var("SHMRING_FLUSH").is_ok() {
                producer.flush().expect("flush");
            }
            println!("done");
            std::thread::sleep(Duration::from_secs(600));
        }
        // MPSC: claim space, say "claimed", and hold the claim until killed.
        "mpsc-hold-claim" => {
            let mut producer = match std::env::var("SHMRING_FILE") {
                Ok(path) => Producer::open_file(path, &mpsc_options()).expect("open MPSC file producer"),
                Err(_) => Producer::open(&name, &mpsc_options()).expect("open MPSC producer"),
            };
            let grant = producer.reserve(64).expect("reserve");
            println!("claimed");
            std::thread::sleep(Duration::from_secs(600));
            drop(grant);
        }
        // MPSC consumer: read in place and verify; for each message record
        // its stream's next expected seq in the progress file (8 bytes per
        // stream) *before* releasing it; until killed.
        "mpsc-consume-progress" => {
            let progress = std::fs::OpenOptions::new().write(true).open(env("SHMRING_PROGRESS")).expect("progress");
            let mut consumer = Consumer::open(&name, &mpsc_options()).expect("open consumer");
            let mut next = std::collections::HashMap::new();
            loop {
                let Ok(msg) = consumer.read_timeout(Duration::from_secs(30)) else { return };
                let (stream, seq) = payload::identify(&msg).expect("message too short");
                let expected = next.entry(stream).or_insert(seq);
                assert_eq!(*expected, seq, "stream {stream} out of order");
                payload::check(stream, seq, &msg).expect("payload");
                progress.write_all_at(&(seq + 1).to_le_bytes(), u64::from(stream) * 8).expect("record progress");
                *expected = seq + 1;
                drop(msg);
            }
        }
        // Send SHMRING_COUNT integrity-stream messages, then detach.
        "produce" => {
            let mut producer = Producer::open(&name, &options).expect("open producer");
            let count = env_u64("SHMRING_COUNT");
            send_stream(&mut producer, count);
            println!("sent={count}");
        }
        // Send until killed or disconnected, printing nothing.
        "produce-forever" => {
            let mut producer = Producer::open(&name, &options).expect("open producer");
            let mut buf = [0u8; 48];
            for seq in 0.. {
                fill_stream(seq, &mut buf);
                if producer.send(&buf).is_err() {
                    break;
                }
            }
        }
        // Send SHMRING_COUNT messages, then stay attached and idle until killed.
        "produce-then-idle" => {
            let mut producer = Producer::open(&name, &options).expect("open producer");
            let mut buf = [0u8; 48];
            for seq in 0..env_u64("SHMRING_COUNT") {
                fill_stream(seq, &mut buf);
                producer.send(&buf).expect("send");
            }
            std::thread::sleep(Duration::from_secs(600));
        }
        // Hold the producer role until killed.
        "hold-producer" => {
            let _producer = Producer::open(&name, &options).expect("open producer");
            println!("attached");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Read in place, record the sequence number of each message in the
        // progress file *before* releasing it, verify order and bytes; until
        // killed.
        "consume-progress" => {
            let progress = std::fs::OpenOptions::new().write(true).open(env("SHMRING_PROGRESS")).expect("progress");
            let mut consumer = Consumer::open(&name, &options).expect("open consumer");
            let mut expected = None;
            loop {
                let Ok(msg) = consumer.read_timeout(Duration::from_secs(30)) else { return };
                let (_, seq) = payload::identify(&msg).expect("message too short");
                assert!(expected.is_none_or(|e| e == seq), "expected {expected:?}, got {seq}");
                check_stream(seq, &msg).expect("payload");
                progress.write_all_at(&seq.to_le_bytes(), 0).expect("record progress");
                expected = Some(seq + 1);
                drop(msg);
            }
        }
        // Drain until the producer is gone, checking that sequence numbers are
        // contiguous; print the first, the last and the count.
        "consume-rest" => {
            let mut consumer = Consumer::open(&name, &options).expect("open consumer");
            let mut buf = Vec::new();
            let (mut first, mut last, mut count) = (None, None::<u64>, 0u64);
            while consumer.recv_timeout(&mut buf, Duration::from_secs(30)).is_ok() {
                let (_, seq) = payload::identify(&buf).expect("message too short");
                check_stream(seq, &buf).expect("payload");
                assert!(last.is_none_or(|l| l + 1 == seq), "gap or duplicate: {last:?} then {seq}");
                first.get_or_insert(seq);
                last = Some(seq);
                count += 1;
            }
            println!("first={} last={} count={count}", first.map_or(-1, |f| f as i64), last.map_or(-1, |l| l as i64));
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Sends `count` messages of the integrity stream; fails (rather than
/// hanging) if the ring stays full for 30 s.
pub fn send_stream(producer: &mut Producer, count: u64) {
    let (capacity, max) = (producer.capacity(), producer.max_message());
    let mut buf = vec![0u8; max];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for seq in 0..count {
        let len = stream_size(seq, &mut rng, producer.position(), capacity, max);
        fill_stream(seq, &mut buf[..len]);
        producer.send_timeout(&buf[..len], Duration::from_secs(30)).unwrap_or_else(|e| panic!("send {seq}: {e}"));
    }
}

/// Receives and verifies the integrity stream until `count` messages or the
/// producer is gone; returns how many arrived.
pub fn receive_stream(consumer: &mut Consumer, count: u64) -> u64 {
    let mut buf = Vec::new();
    for seq in 0..count {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(_) => check_stream(seq, &buf).unwrap_or_else(|e| panic!("message {seq}: {e}")),
            Err(_) => return seq,
        }
    }
    count
}

/// Sends the integrity stream from this process until `send_timeout` says
/// the consumer is gone; returns how many were sent.
pub fn produce_until_disconnected(producer: &mut Producer, limit: Duration) -> u64 {
    let start = Instant::now();
    let mut buf = [0u8; 48];
    for seq in 0.. {
        fill_stream(seq, &mut buf);
        match producer.send_timeout(&buf, Duration::from_secs(10)) {
            Ok(()) => {}
            Err(SendTimeoutError::Disconnected) => return seq,
            Err(e) => panic!("send {seq}: {e}"),
        }
        assert!(start.elapsed() < limit, "producer never saw the consumer go");
    }
    unreachable!()
}

/// Parses `key=value` pairs from a child's output.
pub fn field(out: &str, key: &str) -> i64 {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
        .parse()
        .expect("number")
}

/// Reads the child's output (after libtest's own header lines) until a
/// line says `expected`; fails if the child ends first.
pub fn wait_for_line(child: &mut ChildGuard, expected: &str) {
    use std::io::BufRead;
    let stdout = child.0.stdout.as_mut().expect("child stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        if line.expect("read the child's output").trim() == expected {
            return;
        }
    }
    panic!("the child ended without saying {expected:?}");
}
