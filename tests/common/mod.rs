//! Helpers for tests that need real processes and real segments.
//!
//! A test binary re-runs itself as a child process: the parent starts
//! `current_exe() --exact child --ignored` with `SHMRING_CHILD_ROLE` set, and
//! the binary's `#[ignore]`d `child` test calls [`child_main`]. Every child is
//! killed and reaped when its guard drops, and every segment is unlinked when
//! its guard drops, so a failing test leaves neither behind. A guard held by
//! a thread that [`within`] gave up on never drops: what such threads hold is
//! removed when the process exits (see [`leftovers`]).
#![allow(dead_code)] // each test binary uses part of this module

use shmring::{
    payload, AnonymousRing, Consumer, Kind, Producer, RecvTimeoutError, RingOptions, SendError, SendTimeoutError,
};
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// A deadline `secs` from now.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// For loop conditions: true while `deadline` is ahead; fails the test,
/// naming `what`, once it has passed. `while until(d, "draining") && more() {}`
pub fn until(deadline: Instant, what: &str) -> bool {
    assert!(Instant::now() < deadline, "{what}: not done by its deadline");
    true
}

/// Runs `f` on its own thread and returns its result; fails the test, naming
/// `what`, if it takes longer than `limit` (a blocking call that never
/// returns then fails the test instead of hanging it).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = thread.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
    }
}

/// What the threads a test gave up on (see [`within`]) still hold when the
/// process exits: their guards never drop, so the segments and temporary
/// directories this process named (see [`unique_name`]) and the children it
/// started that are still there are removed and killed at exit (`atexit`).
pub mod leftovers {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Mutex, Once};

    /// Children started and not yet reaped.
    static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    /// The process that armed the clean-up: a forked child inherits it, and
    /// must not kill its parent's children nor remove its names.
    static ARMED_BY: AtomicU32 = AtomicU32::new(0);

    /// Registers the clean-up at exit, once.
    pub fn arm() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            ARMED_BY.store(std::process::id(), Ordering::Relaxed);
            // SAFETY: `clean_up` is an `extern "C" fn()` that never unwinds
            // (it catches panics), as `atexit` requires.
            let refused = unsafe { libc::atexit(clean_up) } != 0;
            assert!(!refused, "atexit refused the clean-up");
        });
    }

    pub fn child_started(pid: u32) {
        arm();
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }

    /// After the child was reaped (its pid may be reused from now on).
    pub fn child_ended(pid: u32) {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != pid);
    }

    /// Whether `file_name` is one [`super::unique_name`] made in process
    /// `pid`, or made from one by appending to it.
    pub fn named_by(file_name: &str, pid: u32) -> bool {
        let name = file_name.trim_start_matches('/');
        name.starts_with("shmring-test-") && name.contains(&format!("-p{pid}-"))
    }

    extern "C" fn clean_up() {
        let _ = std::panic::catch_unwind(|| {
            let me = std::process::id();
            if ARMED_BY.load(Ordering::Relaxed) != me {
                return;
            }
            // Not `lock`: a thread given up on may hold it for ever.
            let children = match CHILDREN.try_lock() {
                Ok(children) => Some(children),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(children) = children {
                for &pid in children.iter() {
                    // Unreaped, so the pid is still this child's.
                    // SAFETY: a plain system call.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
            }
            for entry in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
                if let Some(name) = entry.file_name().to_str().filter(|n| named_by(n, me)) {
                    let _ = shmring::unlink(&format!("/{name}"));
                }
            }
            for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
                if entry.file_name().to_str().is_some_and(|n| named_by(n, me)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        });
    }
}

/// This thread's id, for [`in_futex_wait`].
pub fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Runs `f` on a new thread; returns its handle and its kernel thread id
/// (for [`wait_until_parked`]) once the thread has started.
pub fn spawn_with_id<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (std::thread::JoinHandle<T>, i32) {
    let (id_tx, id_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        id_tx.send(thread_id()).expect("send the thread id");
        f()
    });
    (handle, id_rx.recv().expect("the thread's id"))
}

/// Whether thread `tid` of this process is blocked in a futex wait: the
/// event a test waits for before it checks that a blocking call blocked.
pub fn in_futex_wait(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<libc::c_long>().ok()))
        .is_some_and(|call| call == libc::SYS_futex || call == libc::SYS_futex_waitv)
}

/// Waits until thread `tid` is blocked in a futex wait (the ring's park),
/// at most 30 s.
pub fn wait_until_parked(tid: i32, what: &str) {
    let d = deadline(30);
    while until(d, what) && !in_futex_wait(tid) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Which of a ring's two wake lines a sleeper announces itself on.
#[derive(Clone, Copy, Debug)]
pub enum Line {
    /// Where the consumer waits for messages.
    Consumer,
    /// Where producers wait for room.
    Producers,
}

/// Waits (at most 30 s for each) until a sleeper has announced itself on
/// `line` of the ring `name` and thread `tid` sleeps in a futex wait: the thread is
/// parked on the ring, so what the test does next finds it asleep however
/// slowly it was scheduled.
pub fn wait_until_parked_on(name: &str, line: Line, tid: i32) {
    let d = deadline(30);
    loop {
        let info = shmring::inspect::inspect(name).expect("inspect");
        let wake = match line {
            Line::Consumer => info.consumer_wake,
            Line::Producers => info.producer_wake,
        };
        if wake.sleepers > 0 {
            break;
        }
        until(d, "a sleeper's announcement");
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until_parked(tid, "the announced sleeper's futex wait");
}

/// A segment name no other test (or run) uses:
/// `/shmring-test-TAG-pPID-N-NANOS`. Whatever carries it (or a name made
/// from it by appending) when this process exits is removed then (see
/// [`leftovers`]).
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    leftovers::arm();
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("/shmring-test-{tag}-p{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
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

/// A directory of its own under the temporary directory, removed on drop
/// (whatever the test's outcome).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(tag).trim_start_matches('/'));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed and reaped when dropped. Its stdout is read line
/// by line on a thread, so that waiting for a line has a deadline.
pub struct ChildGuard {
    child: Child,
    lines: Option<mpsc::Receiver<String>>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    pub fn new(mut child: Child) -> ChildGuard {
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        leftovers::child_started(child.id());
        ChildGuard { child, lines, status: None }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it has.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
            if self.status.is_some() {
                leftovers::child_ended(self.child.id());
            }
        }
        self.status
    }

    /// SIGKILLs the child (if it still runs) and reaps it; returns how it
    /// ended.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        leftovers::child_ended(self.child.id());
        self.status = Some(status);
        status
    }

    /// Kills a child that runs until killed: fails the test if it had ended
    /// on its own before (a panic's exit code 101, say, which the kill would
    /// otherwise hide).
    pub fn kill_alive(&mut self, what: &str) {
        let status = self.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: ended before it was killed: {status}");
    }

    /// Kills a child that may also have finished cleanly first: fails the
    /// test if it had ended in failure.
    pub fn kill_or_clean(&mut self, what: &str) {
        let status = self.kill();
        assert!(status.signal() == Some(libc::SIGKILL) || status.success(), "{what}: failed: {status}");
    }

    /// Waits (at most `limit`) for the child to exit; returns whether it
    /// succeeded and its stdout (the lines not yet read).
    pub fn finish(mut self, limit: Duration) -> (bool, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "child did not finish within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut out = Vec::new();
        if let Some(lines) = self.lines.take() {
            // The pipe closes with the child; the reader then ends.
            while let Ok(line) =
                lines.recv_timeout(deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5)))
            {
                out.push(line);
            }
        }
        if !status.success() {
            eprintln!("child exited with {status}");
        }
        (status.success(), out.join("\n"))
    }

    /// Reads the child's output (after libtest's own header lines) until a
    /// line says `expected`; fails if the child ends first or says nothing
    /// of the kind within 60 s.
    pub fn wait_for_line(&mut self, expected: &str) {
        let lines = self.lines.as_ref().expect("child stdout");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.trim() == expected => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child did not say {expected:?} within 60 s"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the child ended without saying {expected:?}: {:?}", self.try_wait())
                }
            }
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
    ChildGuard::new(cmd.spawn().expect("spawn child"))
}

/// How long any child may live: a child that outlives its test (blocked, or
/// waiting for a kill that never comes) exits on its own.
const CHILD_LIFETIME: Duration = Duration::from_secs(600);

/// Ends this child process after [`CHILD_LIFETIME`], whatever it is doing.
pub fn child_watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        eprintln!("child {}: still running after {CHILD_LIFETIME:?}; exiting", std::process::id());
        std::process::exit(3);
    });
}

/// Options for a child: SHMRING_LIVENESS_MS sets the liveness interval (and
/// so the park slice: a long one keeps a parked child announced until it is
/// woken or killed).
fn child_options(options: RingOptions) -> RingOptions {
    match std::env::var("SHMRING_LIVENESS_MS") {
        Ok(ms) => options.liveness_interval(Duration::from_millis(ms.parse().expect("liveness ms"))),
        Err(_) => options,
    }
}

/// Both ring kinds, with a label for messages.
pub fn both_kinds() -> [(Kind, &'static str); 2] {
    [(Kind::Spsc, "spsc"), (Kind::Mpsc, "mpsc")]
}

/// A numbered message: `seq` (8 bytes LE), then `len - 8` bytes of
/// `seq as u8` (at least 8 bytes in all).
pub fn numbered(seq: u64, len: usize) -> Vec<u8> {
    let mut m = vec![seq as u8; len.max(8)];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

/// The number of a [`numbered`] message, checking that it is whole.
pub fn number_of(m: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
    assert!(m[8..].iter().all(|&b| b == seq as u8), "message {seq} torn: {m:?}");
    seq
}

/// SHMRING_KIND: `mpsc`, or SPSC.
fn kind_from_env() -> Kind {
    if std::env::var("SHMRING_KIND").as_deref() == Ok("mpsc") {
        Kind::Mpsc
    } else {
        Kind::Spsc
    }
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
    shmring::payload::xorshift(rng);
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
        shmring::payload::xorshift(&mut self.0);
        1 + (self.0 % max as u64) as usize
    }
}

/// Entry point of child processes; see the module docs.
pub fn child_main() {
    let Ok(role) = std::env::var("SHMRING_CHILD_ROLE") else { return };
    child_watchdog();
    let name = env("SHMRING_NAME");
    let options = child_options(RingOptions::new());
    let mpsc_options = || child_options(mpsc_options());
    match role.as_str() {
        // MPSC: send SHMRING_COUNT messages (all if absent: until killed) of
        // stream SHMRING_STREAM with sizes up to SHMRING_MAX_SIZE, written in
        // place, holding each claim SHMRING_HOLD_US more, and, with
        // SHMRING_HOLD_UNTIL, until that file exists (at most 60 s). With
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
            let hold_until = std::env::var_os("SHMRING_HOLD_UNTIL").map(std::path::PathBuf::from);
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
                if let Some(path) = &hold_until {
                    let until = deadline(60);
                    while !path.exists() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
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
            let grant = producer.reserve_timeout(64, Duration::from_secs(30)).expect("reserve");
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
            println!("attached");
            let mut next = std::collections::HashMap::new();
            loop {
                // Drained with every producer gone: a clean end. Any other
                // error (Corrupted, or 30 s without a message) fails the child.
                let msg = match consumer.read_timeout(Duration::from_secs(30)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(e) => panic!("read: {e}"),
                };
                let (stream, seq) = payload::identify(&msg).expect("message too short");
                let expected = next.entry(stream).or_insert(seq);
                assert_eq!(*expected, seq, "stream {stream} out of order");
                payload::check(stream, seq, &msg).expect("payload");
                progress.write_all_at(&(seq + 1).to_le_bytes(), u64::from(stream) * 8).expect("record progress");
                *expected = seq + 1;
                drop(msg);
            }
        }
        // Send SHMRING_COUNT integrity-stream messages, then detach; with
        // "create-produce", into a segment this process creates.
        "produce" | "create-produce" => {
            let mut producer = if role == "produce" {
                Producer::open(&name, &options).expect("open producer")
            } else {
                Producer::create(&name, &options).expect("create producer")
            };
            let count = env_u64("SHMRING_COUNT");
            send_stream(&mut producer, count);
            println!("sent={count}");
        }
        // Open the rings SHMRING_NAME-i for SHMRING_FIRST <= i <
        // SHMRING_FIRST + SHMRING_RINGS and send SHMRING_COUNT messages of
        // the integrity stream to each, taking turns, then detach.
        "produce-rings" => {
            let first = env_u64("SHMRING_FIRST");
            let mut producers: Vec<Producer> = (first..first + env_u64("SHMRING_RINGS"))
                .map(|i| Producer::open(&format!("{name}-{i}"), &options).expect("open producer"))
                .collect();
            let mut buf = [0u8; 40];
            for seq in 0..env_u64("SHMRING_COUNT") {
                fill_stream(seq, &mut buf[..8 + (seq % 33) as usize]);
                for producer in &mut producers {
                    let len = 8 + (seq % 33) as usize;
                    producer.send_timeout(&buf[..len], Duration::from_secs(30)).expect("send");
                }
            }
            println!("sent");
        }
        // Send until killed or disconnected, printing nothing.
        "produce-forever" => {
            let mut producer = Producer::open(&name, &options).expect("open producer");
            let mut buf = [0u8; 48];
            for seq in 0.. {
                fill_stream(seq, &mut buf);
                match producer.send_timeout(&buf, Duration::from_secs(30)) {
                    Ok(()) => {}
                    Err(SendTimeoutError::Disconnected) => break,
                    Err(e) => panic!("send {seq}: {e}"),
                }
            }
        }
        // Send SHMRING_COUNT messages, then stay attached and idle until killed.
        "produce-then-idle" => {
            let mut producer = Producer::open(&name, &options).expect("open producer");
            let mut buf = [0u8; 48];
            for seq in 0..env_u64("SHMRING_COUNT") {
                fill_stream(seq, &mut buf);
                producer.send_timeout(&buf, Duration::from_secs(30)).expect("send");
            }
            println!("sent");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Attach as a producer of the ring of kind SHMRING_KIND (`mpsc`, or
        // SPSC), say so, and idle until killed.
        "idle-producer" => {
            let kind = if std::env::var("SHMRING_KIND").as_deref() == Ok("mpsc") { Kind::Mpsc } else { Kind::Spsc };
            let _producer = Producer::open(&name, &options.kind(kind)).expect("open producer");
            println!("attached");
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
            println!("attached");
            let mut expected = None;
            loop {
                // As in "mpsc-consume-progress": only Disconnected ends it
                // cleanly.
                let msg = match consumer.read_timeout(Duration::from_secs(30)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(e) => panic!("read: {e}"),
                };
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
            loop {
                match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(e) => panic!("recv after {count} messages: {e}"),
                }
                let (_, seq) = payload::identify(&buf).expect("message too short");
                check_stream(seq, &buf).expect("payload");
                assert!(last.is_none_or(|l| l + 1 == seq), "gap or duplicate: {last:?} then {seq}");
                first.get_or_insert(seq);
                last = Some(seq);
                count += 1;
            }
            println!("first={} last={} count={count}", first.map_or(-1, |f| f as i64), last.map_or(-1, |l| l as i64));
        }
        // Send the integrity stream (48-byte messages) in batches of
        // SHMRING_BATCH with `send_batch`, into a ring of kind SHMRING_KIND,
        // saying "sending" after the first batch; until killed or
        // disconnected.
        "produce-batches" => {
            let mut producer = Producer::open(&name, &options.kind(kind_from_env())).expect("open producer");
            let batch_len = env_u64("SHMRING_BATCH");
            let mut batch = vec![[0u8; 48]; batch_len as usize];
            for first in (0u64..).step_by(batch_len as usize) {
                for (seq, msg) in (first..).zip(batch.iter_mut()) {
                    fill_stream(seq, msg);
                }
                match producer.send_batch(&batch) {
                    Ok(n) if n == batch.len() => {}
                    Ok(_) | Err(SendError::Disconnected) => return,
                    Err(e) => panic!("send_batch from {first}: {e}"),
                }
                if first == 0 {
                    println!("sending");
                }
            }
        }
        // Drain (in place where allowed) and verify the integrity stream,
        // recording the seq of each message in the progress file while it
        // is handed out (before its space is released); stop inside the
        // drain at message SHMRING_HOLD_AT, holding it (and whatever the
        // drain has not yet released) until killed.
        "drain-progress" => {
            let progress = std::fs::OpenOptions::new().write(true).open(env("SHMRING_PROGRESS")).expect("progress");
            let hold_at: u64 = env("SHMRING_HOLD_AT").parse().expect("SHMRING_HOLD_AT");
            let mut consumer = Consumer::open(&name, &options.kind(kind_from_env())).expect("open consumer");
            println!("attached");
            let mut expected = None;
            loop {
                let drained = consumer.drain_timeout(usize::MAX, Duration::from_secs(30), |msg| {
                    let (_, seq) = payload::identify(msg).expect("message too short");
                    assert!(expected.is_none_or(|e| e == seq), "expected {expected:?}, got {seq}");
                    check_stream(seq, msg).expect("payload");
                    progress.write_all_at(&seq.to_le_bytes(), 0).expect("record progress");
                    if seq == hold_at {
                        std::thread::sleep(CHILD_LIFETIME);
                    }
                    expected = Some(seq + 1);
                });
                match drained {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(e) => panic!("drain: {e}"),
                }
            }
        }
        // A test that gives up on its thread: the thread makes a segment
        // (and its guard), a temporary directory and a child of its own,
        // prints them and hangs; `within` fails the test after 5 s (time
        // enough to make them on a loaded machine). What the thread holds
        // must be gone once this process has exited.
        "hang-holding-guards" => within(Duration::from_secs(5), "a thread that hangs", || {
            let segment = SegmentGuard::new("leftover");
            let consumer = Consumer::create(segment.name(), &RingOptions::new()).expect("create");
            let dir = TempDir::new("leftover");
            std::fs::write(dir.0.join("file"), b"x").expect("write into the directory");
            let grandchild = spawn_child("sleep", &[("SHMRING_NAME", String::new())]);
            println!("holding {} {} {}", segment.name(), dir.0.display(), grandchild.id());
            let _held = (segment, consumer, dir, grandchild);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }),
        "sleep" => std::thread::sleep(CHILD_LIFETIME),
        other => panic!("unknown child role {other}"),
    }
}

/// Streams `count` messages of the integrity stream between this process
/// and a child that inherits `ring`'s memfd (a duplicate without
/// `FD_CLOEXEC`): the child is the consumer (`anon-consume`) or the
/// producer (`anon-produce`), this process the other side. Fails the test
/// unless both sides saw every message, in order, every byte.
pub fn stream_with_inheriting_child(ring: &AnonymousRing, options: &RingOptions, child_role: &str, count: u64) {
    use std::os::fd::AsRawFd;
    // `dup`, not `try_clone_to_owned`, which sets `FD_CLOEXEC`.
    let fd = rustix::io::dup(ring).expect("dup");
    let env = [
        ("SHMRING_NAME", String::new()),
        ("SHMRING_FD", fd.as_raw_fd().to_string()),
        ("SHMRING_COUNT", count.to_string()),
    ];
    let child = spawn_child(child_role, &env);
    drop(fd);
    let said = if child_role == "anon-consume" {
        let mut producer = ring.producer(options).expect("producer");
        send_stream(&mut producer, count);
        drop(producer);
        "received"
    } else {
        let mut consumer = ring.consumer(options).expect("consumer");
        assert_eq!(receive_stream(&mut consumer, count), count);
        "sent"
    };
    let (ok, out) = child.finish(Duration::from_secs(120));
    assert!(ok, "child {child_role} failed: {out}");
    assert_eq!(field(&out, said), count as i64, "child {child_role}: {out}");
}

/// Sends `count` messages of the integrity stream; fails (rather than
/// hanging) if the ring stays full for 30 s.
pub fn send_stream(producer: &mut Producer, count: u64) {
    let (capacity, max) = (producer.capacity(), producer.max_message());
    let mut buf = vec![0u8; max];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for seq in 0..count {
        let len = stream_size(seq, &mut rng, producer.position(), capacity as u64, max);
        fill_stream(seq, &mut buf[..len]);
        producer.send_timeout(&buf[..len], Duration::from_secs(30)).unwrap_or_else(|e| panic!("send {seq}: {e}"));
    }
}

/// Receives and verifies the integrity stream until `count` messages or the
/// producer is gone (drained and `Disconnected`); returns how many arrived.
/// Any other error fails.
pub fn receive_stream(consumer: &mut Consumer, count: u64) -> u64 {
    let mut buf = Vec::new();
    for seq in 0..count {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(_) => check_stream(seq, &buf).unwrap_or_else(|e| panic!("message {seq}: {e}")),
            Err(RecvTimeoutError::Disconnected) => return seq,
            Err(e) => panic!("after {seq} messages: {e}"),
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

/// Reads the child's output until a line says `expected` (at most 60 s).
pub fn wait_for_line(child: &mut ChildGuard, expected: &str) {
    child.wait_for_line(expected);
}

/// Checks that `e`, from opening or inspecting a damaged (or busy) segment,
/// is one of the clear errors that names the segment and what is wrong with
/// it, not an I/O error, a wrong name or any other surprise.
pub fn clear_open_error(e: &shmring::Error, segment: &str) -> Result<(), String> {
    use shmring::Error;
    let expected = match e {
        Error::Corrupted(c) => c.segment() == segment,
        Error::ChecksumMismatch { .. }
        | Error::NotShmring { .. }
        | Error::VersionMismatch { .. }
        | Error::KindMismatch { .. }
        | Error::SizeMismatch { .. }
        | Error::NotReady { .. }
        | Error::AlreadyAttached { .. }
        | Error::TooManyProducers { .. } => true,
        _ => false,
    };
    if expected && e.to_string().contains(segment) {
        Ok(())
    } else {
        Err(format!("not a clear error for segment {segment}: {e:?} ({e})"))
    }
}

/// Checks that a hot-path `Corrupted` names `segment`.
pub fn clear_corrupted(c: &shmring::Corrupted, segment: &str) -> Result<(), String> {
    if c.segment() == segment && c.to_string().contains("is corrupted") && !c.what().is_empty() {
        Ok(())
    } else {
        Err(format!("a Corrupted that does not name segment {segment} and what was wrong: {c:?}"))
    }
}

/// One instruction of a classic BPF program (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// A classic BPF program (`struct sock_fprog`).
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Installs, in this (child) process, a seccomp filter that makes
/// `futex_waitv` fail with `errno` (as container runtimes refuse a system
/// call they do not know).
pub fn refuse_futex_waitv(errno: u32) {
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        SockFilter { code: ld, jt: 0, jf: 0, k: 0 },
        SockFilter { code: jeq, jt: 0, jf: 1, k: libc::SYS_futex_waitv as u32 },
        SockFilter { code: ret, jt: 0, jf: 0, k: 0x0005_0000 | errno },
        SockFilter { code: ret, jt: 0, jf: 0, k: 0x7fff_0000 },
    ];
    let prog = SockFprog { len: filter.len() as u16, filter: filter.as_ptr() };
    // SAFETY: `prog` points at `filter`, both alive for the call; the
    // filter only makes `futex_waitv` fail, in this child process.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "no_new_privs");
        let rc = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const SockFprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}
