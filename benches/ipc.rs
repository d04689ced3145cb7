//! shmring against a pipe, a Unix socket, a POSIX message queue, an ideal
//! busy-polling ring and a bare cache-line ping-pong: two processes each,
//! pinned to different cores, measured side by side in one run.
//!
//! ```text
//! cargo bench --bench ipc             # full run (a few minutes)
//! cargo bench --bench ipc -- --quick  # smoke run (under 90 s)
//! ```
//!
//! Prints a markdown table and writes `target/shmring-bench/results.json`.
//! Round trips are 64-byte messages echoed back; throughput is one-way,
//! timed on the receiving side from its first message to its last.
//!
//! The ideal ring and the ping-pong are references for the physical limit,
//! not products: they map a file of `/dev/shm` themselves, which is the only
//! `unsafe` outside the library's `segment` and `ring` modules.

#[path = "common/cpus.rs"]
mod cpus;

use hdrhistogram::Histogram;
use serde_json::json;
use shmring::{Consumer, Kind, Producer, RingOptions, WaitStrategy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts heap allocations, to report allocations per message.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Messages per `send_batch` in the batch rows.
const BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Shmring {
        wait: WaitStrategy,
        zero_copy: bool,
    },
    /// An SPSC ring in a regular file (throughput only): never flushed, or
    /// the producer flushes every `flush_every` messages.
    ShmringFile {
        flush_every: Option<u32>,
    },
    /// An SPSC ring with the batch APIs (throughput only): the producer
    /// sends `send_batch` of [`BATCH`] messages, the consumer `drain`s,
    /// copying every message out.
    ShmringBatch {
        wait: WaitStrategy,
    },
    /// Round trips (64 bytes only) through an SPSC ring served by a
    /// `Select` over it and [`IDLE_RINGS`] idle rings (each with a producer
    /// attached, sending nothing).
    ShmringSelect {
        wait: WaitStrategy,
    },
    /// Round trips (64 bytes only) with async handles on both sides (tokio,
    /// current-thread runtimes), spinning `spin` before registering.
    #[cfg(feature = "async")]
    ShmringAsync {
        spin: bool,
    },
    /// An MPSC ring fed by `producers` processes (throughput only); with
    /// `defer`, its consumer wakes producers waiting for room only once
    /// half the ring is free (`RingOptions::defer_room_wakes`).
    ShmringMpsc {
        wait: WaitStrategy,
        producers: u32,
        defer: bool,
    },
    Pipe,
    Uds,
    Mq,
    IdealRing,
    PingPong,
    #[cfg(feature = "compare-iceoryx2")]
    Iceoryx2,
    #[cfg(feature = "compare-shmem-ipc")]
    ShmemIpc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Shmring { .. } | Transport::ShmringBatch { .. } => "shmring-spsc",
            Transport::ShmringSelect { .. } => "shmring-select",
            #[cfg(feature = "async")]
            Transport::ShmringAsync { .. } => "shmring-async",
            Transport::ShmringMpsc { .. } => "shmring-mpsc",
            Transport::ShmringFile { flush_every: None } => "shmring-file",
            Transport::ShmringFile { flush_every: Some(_) } => "shmring-file-flushed",
            Transport::Pipe => "pipe",
            Transport::Uds => "uds",
            Transport::Mq => "mq",
            Transport::IdealRing => "ideal-ring",
            Transport::PingPong => "pingpong",
            #[cfg(feature = "compare-iceoryx2")]
            Transport::Iceoryx2 => "iceoryx2",
            #[cfg(feature = "compare-shmem-ipc")]
            Transport::ShmemIpc => "shmem-ipc",
        }
    }

    fn wait(self) -> Option<String> {
        match self {
            Transport::Shmring { wait, zero_copy } => {
                Some(if zero_copy { format!("{wait}+zero-copy") } else { wait.to_string() })
            }
            Transport::ShmringMpsc { wait, defer: false, .. } => Some(wait.to_string()),
            Transport::ShmringMpsc { wait, defer: true, .. } => Some(format!("{wait}+defer")),
            Transport::ShmringBatch { wait } => Some(format!("{wait}+batch")),
            Transport::ShmringSelect { wait } => Some(format!("{wait}, 1 of {}", IDLE_RINGS + 1)),
            #[cfg(feature = "async")]
            Transport::ShmringAsync { spin } => Some(if spin { "async+spin".into() } else { "async".into() }),
            Transport::ShmringFile { flush_every: None } => Some("spin".into()),
            Transport::ShmringFile { flush_every: Some(n) } => Some(format!("spin+flush/{n}")),
            Transport::IdealRing | Transport::PingPong => Some("busy".into()),
            #[cfg(feature = "compare-iceoryx2")]
            Transport::Iceoryx2 => Some("busy+zero-copy".into()),
            #[cfg(feature = "compare-shmem-ipc")]
            Transport::ShmemIpc => Some("eventfd".into()),
            _ => None,
        }
    }

    fn encode(self) -> String {
        match self {
            Transport::Shmring { wait, zero_copy } => format!("shmring:{wait}:{zero_copy}"),
            Transport::ShmringMpsc { wait, producers, defer } => format!("mpsc:{wait}:{producers}:{defer}"),
            Transport::ShmringBatch { wait } => format!("batch:{wait}"),
            Transport::ShmringSelect { wait } => format!("select:{wait}"),
            #[cfg(feature = "async")]
            Transport::ShmringAsync { spin } => format!("async:{spin}"),
            Transport::ShmringFile { flush_every } => format!("shmring-file:{}", flush_every.unwrap_or(0)),
            other => other.name().to_string(),
        }
    }

    /// Producer processes (1 but for MPSC rows).
    fn producers(self) -> u32 {
        match self {
            Transport::ShmringMpsc { producers, .. } => producers,
            _ => 1,
        }
    }

    fn decode(s: &str) -> Transport {
        let parts: Vec<&str> = s.split(':').collect();
        match parts[0] {
            "shmring" => Transport::Shmring { wait: parts[1].parse().expect("wait"), zero_copy: parts[2] == "true" },
            "batch" => Transport::ShmringBatch { wait: parts[1].parse().expect("wait") },
            "select" => Transport::ShmringSelect { wait: parts[1].parse().expect("wait") },
            #[cfg(feature = "async")]
            "async" => Transport::ShmringAsync { spin: parts[1] == "true" },
            "shmring-file" => Transport::ShmringFile { flush_every: parts[1].parse().ok().filter(|n| *n > 0) },
            "mpsc" => Transport::ShmringMpsc {
                wait: parts[1].parse().expect("wait"),
                producers: parts[2].parse().expect("n"),
                defer: parts[3] == "true",
            },
            "pipe" => Transport::Pipe,
            "uds" => Transport::Uds,
            "mq" => Transport::Mq,
            "ideal-ring" => Transport::IdealRing,
            "pingpong" => Transport::PingPong,
            #[cfg(feature = "compare-iceoryx2")]
            "iceoryx2" => Transport::Iceoryx2,
            #[cfg(feature = "compare-shmem-ipc")]
            "shmem-ipc" => Transport::ShmemIpc,
            other => panic!("unknown transport {other}"),
        }
    }
}

/// One row of results; `None` is "not measured" (null in the JSON).
#[derive(Debug, Default, Clone)]
struct Row {
    transport: &'static str,
    wait: Option<String>,
    producers: u32,
    size: usize,
    rtt: Option<[u64; 4]>,
    msgs_per_s: Option<f64>,
    gb_per_s: Option<f64>,
    syscalls_per_msg: Option<f64>,
    allocs_per_msg: Option<f64>,
    note: Option<String>,
    /// A flushed file ring's `flush()` latency, p50 and p99 (ns).
    flush: Option<[u64; 2]>,
    /// A round-trip row only (no throughput is measured for its size).
    rtt_only: bool,
    /// Throughput samples taken in the fast phase, of all taken.
    fast_samples: Option<(usize, usize)>,
}

/// Pins the calling process to the `side`-th (0 or 1) of the two cores the
/// parent chose and put in `PIN_ENV` (a child cannot choose itself: it
/// inherits the parent's one-core mask). Without the variable, no pinning.
fn pin_to(side: usize) {
    let Some(cores) = std::env::var(PIN_ENV).ok() else { return };
    let Some(cpu) = cores.split(',').nth(side).and_then(|c| c.parse().ok()) else { return };
    cpus::pin(cpu);
}

const PIN_ENV: &str = "SHMRING_BENCH_CPUS";

/// Where a run's objects live: unique per bench process and transport.
fn scratch(tag: &str) -> String {
    format!("/shmring-bench-{}-{tag}", std::process::id())
}

fn spawn_child(transport: Transport, mode: &str, size: usize, count: u64, name: &str) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--child", &transport.encode(), mode, &size.to_string(), &count.to_string(), name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// The child's report, `syscalls allocs`, on the last line of its stderr
/// (stdout may be the transport itself). A failed child's stderr is shown.
fn child_report(mut child: Child) -> (u64, u64) {
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    let status = child.wait().expect("wait child");
    assert!(status.success(), "bench child failed: {status}\n{err}");
    let last = err.lines().last().unwrap_or("0 0");
    let mut it = last.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let report = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    if let (Some(p50), Some(p99)) = (it.next(), it.next()) {
        FLUSH_LATENCY.lock().unwrap().push([p50, p99]);
    }
    report
}

/// Flush latencies (p50, p99) reported by flushing children, in order.
static FLUSH_LATENCY: std::sync::Mutex<Vec<[u64; 2]>> = std::sync::Mutex::new(Vec::new());

/// Waits for a child's `ready` line on stdout (iceoryx2: its ports exist,
/// so nothing sent from now on is dropped for want of a subscriber).
#[cfg(feature = "compare-iceoryx2")]
fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let mut line = String::new();
    let stdout = child.stdout.as_mut().expect("child stdout");
    std::io::BufReader::new(stdout).read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "child did not get ready");
}

/// iceoryx2's publish-subscribe with `[u8]` slices, set up as its own
/// benchmark does (a service per direction, one publisher and one subscriber
/// each, no history), plus back-pressure so that throughput runs lose
/// nothing: the publisher retries while the subscriber's buffer is full.
#[cfg(feature = "compare-iceoryx2")]
mod ice {
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::*;

    pub struct Ends {
        publisher: Option<Publisher<ipc::Service, [u8], ()>>,
        subscriber: Option<Subscriber<ipc::Service, [u8], ()>>,
        _node: Node<ipc::Service>,
    }

    const BUFFER: usize = 256;

    fn send_from(publisher: &Publisher<ipc::Service, [u8], ()>, msg: &[u8]) {
        loop {
            let sample = publisher.loan_slice_uninit(msg.len()).expect("loan");
            if sample.write_from_slice(msg).send().expect("send") > 0 {
                return;
            }
            publisher.update_connections().expect("update connections");
        }
    }

    impl Ends {
        /// `parent` publishes on `NAME-down` and subscribes to `NAME-up`; the
        /// child the other way round. Throughput runs (`both` false) only
        /// need the child's publisher and the parent's subscriber.
        pub fn open(name: &str, size: usize, both: bool, parent: bool) -> Ends {
            iceoryx2::prelude::set_log_level(LogLevel::Error);
            let node = NodeBuilder::new().create::<ipc::Service>().expect("iceoryx2 node");
            let service = |direction: &str| {
                let service_name = ServiceName::new(&format!("shmring-bench{}-{direction}", name.replace('/', "-")))
                    .expect("service name");
                node.service_builder(&service_name)
                    .publish_subscribe::<[u8]>()
                    .enable_safe_overflow(false)
                    .history_size(0)
                    .subscriber_max_buffer_size(BUFFER)
                    .max_publishers(1)
                    .max_subscribers(1)
                    .open_or_create()
                    .expect("iceoryx2 service")
            };
            let (send_on, receive_on) = if parent { ("down", "up") } else { ("up", "down") };
            let publisher = (both || !parent).then(|| {
                service(send_on)
                    .publisher_builder()
                    .initial_max_slice_len(size)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()
                    .expect("iceoryx2 publisher")
            });
            let subscriber = (both || parent).then(|| {
                service(receive_on).subscriber_builder().buffer_size(BUFFER).create().expect("iceoryx2 subscriber")
            });
            Ends { publisher, subscriber, _node: node }
        }

        /// Loans a sample, writes `msg` into it, sends it; again if it
        /// reached no subscriber (the publisher had not connected yet).
        pub fn send(&self, msg: &[u8]) {
            send_from(self.publisher.as_ref().expect("publisher"), msg);
        }

        /// Busy-polls for the next sample and hands it to `f` in place.
        pub fn receive<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
            let subscriber = self.subscriber.as_ref().expect("subscriber");
            loop {
                if let Some(sample) = subscriber.receive().expect("receive") {
                    return f(sample.payload());
                }
                std::hint::spin_loop();
            }
        }

        /// Receives one sample and sends its bytes back.
        pub fn echo(&self) {
            let subscriber = self.subscriber.as_ref().expect("subscriber");
            let publisher = self.publisher.as_ref().expect("publisher");
            loop {
                if let Some(sample) = subscriber.receive().expect("receive") {
                    send_from(publisher, sample.payload());
                    return;
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// Ring bytes for `size`-byte messages (shmring's rings and shmem-ipc's).
/// `total` round trips of `msg`: sent on ring `ping`, the echo read (in
/// place) on `pong`, each timed by `record`.
fn ping_pong(
    ping: &str,
    pong: &str,
    options: &RingOptions,
    msg: &[u8],
    total: u64,
    record: &mut impl FnMut(u64, Instant),
) {
    let mut requests = Producer::open(ping, options).expect("open");
    let mut replies = Consumer::open(pong, options).expect("open");
    for i in 0..total {
        let start = Instant::now();
        requests.send(msg).expect("send");
        drop(replies.read().expect("read"));
        record(i, start);
    }
}

/// Idle rings beside the active one in the `shmring-select` rows.
const IDLE_RINGS: usize = 63;

/// Rows that measure round trips only (of 64-byte messages).
fn rtt_only(transport: Transport) -> bool {
    #[cfg(feature = "async")]
    if let Transport::ShmringAsync { .. } = transport {
        return true;
    }
    matches!(transport, Transport::ShmringSelect { .. })
}

fn ring_capacity(size: usize) -> u64 {
    ((size as u64 + 8) * 64).next_power_of_two().max(1 << 20)
}

/// shmem-ipc's `sharedring`: a ring of bytes in a sealed memfd with two
/// eventfds, its "empty" signal (written by the sender when it puts bytes
/// into an empty ring) and its "full" signal (written by the receiver when it
/// frees room in a full one). Each side blocks on its eventfd when the ring
/// is empty or full, as the crate's `block_until_readable` and
/// `block_until_writable` do; nothing spins. The ring is a byte stream with
/// no messages of its own, so each message is framed as a user would frame
/// it, and as the pipe and socket rows are: a 4-byte little-endian length,
/// then the payload, written in one `send` while it fits before the ring's
/// end, and copied out by the receiver into its own buffer.
///
/// The crate leaves handing the memfd and eventfds to the other process to
/// its user (its example uses D-Bus): here the parent creates each ring and
/// the child inherits duplicates of the three descriptors.
#[cfg(feature = "compare-shmem-ipc")]
mod sipc {
    use shmem_ipc::sharedring::{Receiver, Sender};
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn capacity(size: usize) -> usize {
        super::ring_capacity(size) as usize
    }

    pub fn new_sender(size: usize) -> Sender<u8> {
        Sender::new(capacity(size)).expect("shmem-ipc ring")
    }

    pub fn new_receiver(size: usize) -> Receiver<u8> {
        Receiver::new(capacity(size)).expect("shmem-ipc ring")
    }

    /// Duplicates of a ring's memfd, empty and full eventfds without
    /// close-on-exec, for the next child to inherit; their numbers are
    /// appended to `arg` ("memfd,empty,full", rings separated by commas).
    /// The parent drops the duplicates once the child is spawned.
    pub fn hand_off(memfd: &File, empty: &File, full: &File, arg: &mut String, keep: &mut Vec<OwnedFd>) {
        use std::os::fd::AsRawFd;
        for file in [memfd, empty, full] {
            let fd = rustix::io::dup(file).expect("dup");
            if !arg.is_empty() {
                arg.push(',');
            }
            arg.push_str(&fd.as_raw_fd().to_string());
            keep.push(fd);
        }
    }

    /// The `ring`-th ring's descriptors of a child's `hand_off` argument.
    fn inherited(arg: &str, ring: usize) -> [File; 3] {
        let fds: Vec<i32> = arg.split(',').map(|fd| fd.parse().expect("fd")).collect();
        std::array::from_fn(|i| {
            // SAFETY: the parent duplicated this descriptor for this child
            // alone, which inherited it open; nothing else here owns it.
            unsafe { File::from_raw_fd(fds[3 * ring + i]) }
        })
    }

    pub fn open_sender(arg: &str, ring: usize, size: usize) -> Sender<u8> {
        let [memfd, empty, full] = inherited(arg, ring);
        Sender::open(capacity(size), memfd, empty, full).expect("shmem-ipc sender")
    }

    pub fn open_receiver(arg: &str, ring: usize, size: usize) -> Receiver<u8> {
        let [memfd, empty, full] = inherited(arg, ring);
        Receiver::open(capacity(size), memfd, empty, full).expect("shmem-ipc receiver")
    }

    /// Sends `msg` as one frame, blocking while the ring is full; returns
    /// the system calls made (eventfd writes and reads).
    pub fn send(tx: &mut Sender<u8>, msg: &[u8]) -> u64 {
        let header = (msg.len() as u32).to_le_bytes();
        let total = header.len() + msg.len();
        let (mut sent, mut syscalls) = (0, 0);
        while sent < total {
            let mut wrote = 0;
            // SAFETY: the memfd is mapped by this bench's two processes only,
            // by this one sender and the other's one receiver.
            let status = unsafe {
                tx.send_trusted(|dst| {
                    wrote = put(&header, msg, sent, dst);
                    wrote
                })
            }
            .expect("shmem-ipc send");
            syscalls += u64::from(status.signal);
            sent += wrote;
            if wrote == 0 {
                // `Sender::block_until_writable`, with its reads counted.
                while tx.sender_mut().write_count().expect("shmem-ipc ring") == 0 {
                    tx.full_signal().read_exact(&mut [0u8; 8]).expect("eventfd read");
                    syscalls += 1;
                }
            }
        }
        syscalls
    }

    /// Copies the frame (`header`, then `msg`) from byte `from` on into
    /// `dst`, as much as fits; returns the bytes copied.
    fn put(header: &[u8], msg: &[u8], from: usize, dst: &mut [u8]) -> usize {
        let (mut n, mut start) = (0, 0);
        for part in [header, msg] {
            let end = start + part.len();
            if n == dst.len() {
                break;
            }
            if from + n < end {
                let at = from + n - start;
                let k = (end - start - at).min(dst.len() - n);
                dst[n..n + k].copy_from_slice(&part[at..at + k]);
                n += k;
            }
            start = end;
        }
        n
    }

    /// Receives one frame, copying its payload into `buf`, blocking while
    /// the ring is empty; returns the payload's length and the system calls
    /// made (eventfd reads and writes).
    pub fn recv(rx: &mut Receiver<u8>, buf: &mut [u8]) -> (usize, u64) {
        let mut header = [0u8; 4];
        let (mut got, mut syscalls) = (0, 0);
        loop {
            let mut took = 0;
            // SAFETY: as in `send`: this receiver and the other's sender.
            let status = unsafe {
                rx.receive_trusted(|src| {
                    took = take(&mut header, buf, got, src);
                    took
                })
            }
            .expect("shmem-ipc receive");
            syscalls += u64::from(status.signal);
            got += took;
            if got >= header.len() {
                let len = u32::from_le_bytes(header) as usize;
                if got == header.len() + len {
                    return (len, syscalls);
                }
            }
            if took == 0 {
                // `Receiver::block_until_readable`, with its reads counted.
                while rx.receiver_mut().read_count().expect("shmem-ipc ring") == 0 {
                    rx.empty_signal().read_exact(&mut [0u8; 8]).expect("eventfd read");
                    syscalls += 1;
                }
            }
        }
    }

    /// Takes the frame's bytes from `from` on out of `src`, up to the
    /// frame's end: the header into `header`, the payload into `buf`.
    /// Returns the bytes taken.
    fn take(header: &mut [u8; 4], buf: &mut [u8], from: usize, src: &[u8]) -> usize {
        let mut n = 0;
        if from < header.len() {
            n = (header.len() - from).min(src.len());
            header[from..from + n].copy_from_slice(&src[..n]);
            if from + n < header.len() {
                return n;
            }
        }
        let len = u32::from_le_bytes(*header) as usize;
        assert!(len <= buf.len(), "shmem-ipc frame of {len} bytes, over the buffer");
        let at = from + n - header.len();
        let k = (len - at).min(src.len() - n);
        buf[at..at + k].copy_from_slice(&src[n..n + k]);
        n + k
    }
}

fn shm_options(size: usize, wait: WaitStrategy) -> RingOptions {
    let capacity = ring_capacity(size);
    RingOptions::new().capacity(capacity as usize).max_message(size.max(64)).wait(wait).unlink_on_drop(false)
}

/// A mapped `/dev/shm` file for the reference transports.
struct Shared {
    base: *mut u8,
    len: usize,
}

impl Shared {
    fn map(name: &str, len: usize, create: bool) -> Shared {
        let path = format!("/dev/shm{name}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(&path)
            .expect("open");
        if create {
            file.set_len(len as u64).expect("size");
        }
        // SAFETY: a fresh shared mapping of a file we just sized to `len`; it
        // aliases no Rust object, and is unmapped only by the OS at exit.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::POPULATE,
                &file,
                0,
            )
        }
        .expect("mmap");
        Shared { base: ptr.cast(), len }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (checked above) in a live mapping.
        unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
    }

    fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len);
        // SAFETY: in bounds; the ring protocol gives the writer these bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(offset), src.len()) }
    }

    fn read(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= self.len);
        // SAFETY: in bounds; the ring protocol gives the reader these bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(offset), dst.as_mut_ptr(), dst.len()) }
    }
}

/// The ideal ring: fixed-size slots, head and tail on their own lines, each
/// side caching the other's index; busy polling. The textbook SPSC ring.
struct IdealRing {
    shared: Shared,
    slot: usize,
    slots: u64,
    mine: u64,
    cached: u64,
}

const IDEAL_DATA: usize = 4096;

impl IdealRing {
    fn map(name: &str, size: usize, create: bool) -> IdealRing {
        let slot = size.div_ceil(64) * 64;
        let slots = ((4 << 20) / slot).max(4) as u64;
        let shared = Shared::map(name, IDEAL_DATA + slot * slots as usize, create);
        IdealRing { shared, slot, slots, mine: 0, cached: 0 }
    }

    fn send(&mut self, msg: &[u8]) {
        // tail at 0 (ours), head at 128 (theirs)
        while self.mine - self.cached == self.slots {
            self.cached = self.shared.word(128).load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        self.shared.write(IDEAL_DATA + (self.mine % self.slots) as usize * self.slot, msg);
        self.mine += 1;
        self.shared.word(0).store(self.mine, Ordering::Release);
    }

    fn recv(&mut self, buf: &mut [u8]) {
        while self.mine == self.cached {
            self.cached = self.shared.word(0).load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        self.shared.read(IDEAL_DATA + (self.mine % self.slots) as usize * self.slot, buf);
        self.mine += 1;
        self.shared.word(128).store(self.mine, Ordering::Release);
    }
}

/// A stream transport's framing: 4-byte length, payload; one write each.
fn write_frame(out: &mut impl Write, frame: &mut Vec<u8>, msg: &[u8]) -> u64 {
    frame.clear();
    frame.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    frame.extend_from_slice(msg);
    out.write_all(frame).expect("write frame");
    1
}

/// Counts `read` calls, for system calls per message on the receiving side.
struct CountingReader<R> {
    inner: R,
    reads: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        self.inner.read(buf)
    }
}

fn read_frame(input: &mut impl Read, buf: &mut [u8]) {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).expect("frame length");
    input.read_exact(&mut buf[..u32::from_le_bytes(len) as usize]).expect("frame");
}

fn mq_name(name: &str, dir: &str) -> String {
    format!("{name}-{dir}")
}

fn mq_open(name: &str, size: usize, create: bool) -> posixmq::PosixMq {
    let mut opts = posixmq::OpenOptions::readwrite();
    if create {
        opts.create_new().max_msg_len(size.max(1)).capacity(mq_limit("msg_max").min(10) as usize);
    }
    opts.open(name).expect("mq_open")
}

fn mq_limit(key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{key}")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

// ---------------------------------------------------------------- children

fn child_main(args: &[String]) {
    pin_to(1);
    let transport = Transport::decode(&args[2]);
    let (mode, size, count, name) =
        (args[3].as_str(), args[4].parse().unwrap(), args[5].parse::<u64>().unwrap(), &args[6]);
    let msg = vec![0xA5u8; size];
    let mut buf = vec![0u8; size.max(64) + 4];
    let mut syscalls = 0;
    // Reset after each branch's setup: allocations per message count the loop.
    let mut allocs_before = allocations();
    match (transport, mode) {
        (Transport::Shmring { wait, zero_copy }, "tput") => {
            let mut producer = Producer::open(name, &shm_options(size, wait)).expect("open");
            allocs_before = allocations();
            // Futex calls while streaming: from the first message on (the
            // consumer sleeps while this process starts; waking it is setup).
            let mut at_first = 0;
            for i in 0..count {
                if i == 1 {
                    let s = producer.stats();
                    at_first = s.futex_waits + s.futex_wakes;
                }
                if zero_copy {
                    // Built in place: every byte written once, no copy.
                    let mut grant = producer.reserve(size).expect("reserve");
                    grant.fill(0xA5);
                    grant.commit();
                } else {
                    producer.send(&msg).expect("send");
                }
            }
            let s = producer.stats();
            syscalls = s.futex_waits + s.futex_wakes - at_first;
        }
        (Transport::ShmringBatch { wait }, "tput") => {
            let mut producer = Producer::open(name, &shm_options(size, wait)).expect("open");
            let batch = vec![&msg[..]; BATCH];
            allocs_before = allocations();
            let mut sent = 0;
            while sent < count {
                let n = BATCH.min((count - sent) as usize);
                sent += producer.send_batch(&batch[..n]).expect("send_batch") as u64;
            }
            let s = producer.stats();
            syscalls = s.futex_waits + s.futex_wakes;
        }
        (Transport::ShmringFile { flush_every }, "tput") => {
            let mut producer = Producer::open_file(name, &shm_options(size, WaitStrategy::default())).expect("open");
            let mut flushes = Vec::new();
            allocs_before = allocations();
            for i in 1..=count {
                producer.send(&msg).expect("send");
                if flush_every.is_some_and(|n| i % u64::from(n) == 0) {
                    let started = Instant::now();
                    producer.flush().expect("flush");
                    flushes.push(started.elapsed().as_nanos() as u64);
                }
            }
            let s = producer.stats();
            syscalls = s.futex_waits + s.futex_wakes;
            if !flushes.is_empty() {
                flushes.sort_unstable();
                let at = |q: f64| flushes[((flushes.len() - 1) as f64 * q) as usize];
                // The flush latency: after the two numbers every child reports.
                eprintln!("{syscalls} {} {} {}", allocations() - allocs_before, at(0.5), at(0.99));
                return;
            }
        }
        (Transport::ShmringMpsc { wait, .. }, "tput") => {
            let options = shm_options(size, wait).kind(Kind::Mpsc);
            let mut producer = Producer::open(name, &options).expect("open MPSC producer");
            allocs_before = allocations();
            for _ in 0..count {
                producer.send(&msg).expect("send");
            }
            let s = producer.stats();
            syscalls = s.futex_waits + s.futex_wakes;
        }
        (Transport::Shmring { wait, .. }, "rtt") => {
            let options = shm_options(size, wait);
            let mut requests = Consumer::open(&format!("{name}-ping"), &options).expect("open ping");
            let mut replies = Producer::open(&format!("{name}-pong"), &options).expect("open pong");
            for _ in 0..count {
                let got = requests.read().expect("read");
                replies.send(&got).expect("send");
            }
        }
        (Transport::ShmringSelect { wait }, "rtt") => {
            let options = shm_options(size, wait);
            // The active ring last: a sweep reaches it after every idle one.
            let mut requests: Vec<Consumer> = (0..IDLE_RINGS)
                .map(|i| format!("{name}-idle-{i}"))
                .chain([format!("{name}-ping")])
                .map(|ring| Consumer::open(&ring, &options).expect("open"))
                .collect();
            let mut replies = Producer::open(&format!("{name}-pong"), &options).expect("open pong");
            let mut select = shmring::Select::with_strategy(wait);
            let mut served = 0;
            while served < count {
                for &i in select.wait(&mut requests) {
                    if let Ok(got) = requests[i].try_read() {
                        replies.send(&got).expect("send");
                        served += 1;
                    }
                }
            }
        }
        #[cfg(feature = "async")]
        (Transport::ShmringAsync { spin }, "rtt") => {
            let options = shm_options(size, WaitStrategy::default());
            let mut requests =
                shmring::AsyncConsumer::new(Consumer::open(&format!("{name}-ping"), &options).expect("open ping"));
            let mut replies =
                shmring::AsyncProducer::new(Producer::open(&format!("{name}-pong"), &options).expect("open pong"));
            if spin {
                requests.set_spin(shmring::wait::DEFAULT_SPIN);
                replies.set_spin(shmring::wait::DEFAULT_SPIN);
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                let mut got = Vec::new();
                for _ in 0..count {
                    requests.recv(&mut got).await.expect("recv");
                    replies.send(&got).await.expect("send");
                }
            });
        }
        (Transport::Pipe, "tput") => {
            let mut out = std::fs::File::from(std::io::stdout().lock().as_fd_owned());
            let mut frame = Vec::with_capacity(size + 4);
            allocs_before = allocations();
            for _ in 0..count {
                syscalls += write_frame(&mut out, &mut frame, &msg);
            }
        }
        (Transport::Pipe, "rtt") => {
            let mut input = std::fs::File::from(std::io::stdin().lock().as_fd_owned());
            let mut out = std::fs::File::from(std::io::stdout().lock().as_fd_owned());
            let mut frame = Vec::with_capacity(size + 4);
            for _ in 0..count {
                read_frame(&mut input, &mut buf);
                write_frame(&mut out, &mut frame, &buf[..size]);
            }
        }
        (Transport::Uds, mode) => {
            let mut stream = UnixStream::connect(format!("/tmp{name}.sock")).expect("connect");
            allocs_before = allocations();
            let mut frame = Vec::with_capacity(size + 4);
            for _ in 0..count {
                if mode == "rtt" {
                    read_frame(&mut stream, &mut buf);
                }
                syscalls += write_frame(&mut stream, &mut frame, &buf[..size]);
            }
        }
        (Transport::Mq, mode) => {
            let to_parent = mq_open(&mq_name(name, "up"), size, false);
            let from_parent = mq_open(&mq_name(name, "down"), size, false);
            allocs_before = allocations();
            for _ in 0..count {
                if mode == "rtt" {
                    from_parent.recv(&mut buf).expect("mq recv");
                }
                to_parent.send(0, &msg).expect("mq send");
                syscalls += 1;
            }
        }
        (Transport::IdealRing, "tput") => {
            let mut ring = IdealRing::map(name, size, false);
            allocs_before = allocations();
            for _ in 0..count {
                ring.send(&msg);
            }
        }
        (Transport::IdealRing, "rtt") => {
            let mut requests = IdealRing::map(&format!("{name}-ping"), size, false);
            let mut replies = IdealRing::map(&format!("{name}-pong"), size, false);
            for _ in 0..count {
                requests.recv(&mut buf[..size]);
                replies.send(&buf[..size]);
            }
        }
        (Transport::PingPong, _) => {
            let shared = Shared::map(name, 4096, false);
            let word = shared.word(0);
            for i in 0..count {
                while word.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                word.store(2 * i + 2, Ordering::Release);
            }
        }
        #[cfg(feature = "compare-iceoryx2")]
        (Transport::Iceoryx2, mode) => {
            let ends = ice::Ends::open(name, size, mode == "rtt", false);
            println!("ready");
            allocs_before = allocations();
            for _ in 0..count {
                if mode == "rtt" {
                    ends.echo();
                } else {
                    ends.send(&msg);
                }
            }
            // A subscriber drops the samples of a publisher that is gone: stay
            // until the parent has them all (it closes our stdin then).
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        }
        #[cfg(feature = "compare-shmem-ipc")]
        (Transport::ShmemIpc, "tput") => {
            // `name` is the inherited descriptors (`sipc::hand_off`).
            let mut tx = sipc::open_sender(name, 0, size);
            allocs_before = allocations();
            for _ in 0..count {
                syscalls += sipc::send(&mut tx, &msg);
            }
        }
        #[cfg(feature = "compare-shmem-ipc")]
        (Transport::ShmemIpc, "rtt") => {
            let mut requests = sipc::open_receiver(name, 0, size);
            let mut replies = sipc::open_sender(name, 1, size);
            for _ in 0..count {
                let (len, _) = sipc::recv(&mut requests, &mut buf);
                sipc::send(&mut replies, &buf[..len]);
            }
        }
        other => panic!("no child for {other:?}"),
    }
    eprintln!("{syscalls} {}", allocations() - allocs_before);
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::os::fd::OwnedFd;
}

impl<T: std::os::fd::AsFd> AsFdOwned for T {
    fn as_fd_owned(&self) -> std::os::fd::OwnedFd {
        self.as_fd().try_clone_to_owned().expect("dup")
    }
}

// ---------------------------------------------------------------- parent

/// Round trips of `size`-byte messages: `warmup` unrecorded, then `rounds`.
fn rtt(transport: Transport, size: usize, warmup: u64, rounds: u64) -> [u64; 4] {
    let total = warmup + rounds;
    let name = scratch(&format!("rtt-{}-{size}", transport.encode().replace(':', "-")));
    let msg = vec![0x5Au8; size];
    let mut buf = vec![0u8; size + 4];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut record = |i: u64, start: Instant| {
        if i >= warmup {
            let _ = hist.record(start.elapsed().as_nanos() as u64);
        }
    };
    match transport {
        Transport::ShmringMpsc { .. } | Transport::ShmringFile { .. } | Transport::ShmringBatch { .. } => {
            unreachable!("MPSC, file and batch rows measure throughput only")
        }
        Transport::Shmring { wait, .. } => {
            let options = shm_options(size, wait);
            let (ping, pong) = (format!("{name}-ping"), format!("{name}-pong"));
            options.create(&ping).expect("create");
            options.create(&pong).expect("create");
            let child = spawn_child(transport, "rtt", size, total, &name);
            ping_pong(&ping, &pong, &options, &msg, total, &mut record);
            child_report(child);
            let _ = shmring::unlink(&ping);
            let _ = shmring::unlink(&pong);
        }
        Transport::ShmringSelect { wait } => {
            let options = shm_options(size, wait);
            let (ping, pong) = (format!("{name}-ping"), format!("{name}-pong"));
            let idle: Vec<String> = (0..IDLE_RINGS).map(|i| format!("{name}-idle-{i}")).collect();
            for ring in idle.iter().chain([&ping, &pong]) {
                options.create(ring).expect("create");
            }
            let _idle_producers: Vec<Producer> =
                idle.iter().map(|ring| Producer::open(ring, &options).expect("open idle")).collect();
            let child = spawn_child(transport, "rtt", size, total, &name);
            ping_pong(&ping, &pong, &options, &msg, total, &mut record);
            child_report(child);
            for ring in idle.iter().chain([&ping, &pong]) {
                let _ = shmring::unlink(ring);
            }
        }
        #[cfg(feature = "async")]
        Transport::ShmringAsync { spin } => {
            let options = shm_options(size, WaitStrategy::default());
            let (ping, pong) = (format!("{name}-ping"), format!("{name}-pong"));
            options.create(&ping).expect("create");
            options.create(&pong).expect("create");
            let mut requests = shmring::AsyncProducer::new(Producer::open(&ping, &options).expect("open"));
            let mut replies = shmring::AsyncConsumer::new(Consumer::open(&pong, &options).expect("open"));
            if spin {
                requests.set_spin(shmring::wait::DEFAULT_SPIN);
                replies.set_spin(shmring::wait::DEFAULT_SPIN);
            }
            let child = spawn_child(transport, "rtt", size, total, &name);
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                let mut got = Vec::new();
                for i in 0..total {
                    let start = Instant::now();
                    requests.send(&msg).await.expect("send");
                    replies.recv(&mut got).await.expect("recv");
                    record(i, start);
                }
            });
            child_report(child);
            let _ = shmring::unlink(&ping);
            let _ = shmring::unlink(&pong);
        }
        Transport::Pipe | Transport::Uds => {
            // The child's stdin and stdout, or both ends of one socket.
            let (mut child, mut to, mut from): (Child, Box<dyn Write>, Box<dyn Read>) = if transport == Transport::Pipe
            {
                let mut child = spawn_child(transport, "rtt", size, total, &name);
                let to = std::fs::File::from(child.stdin.take().unwrap().as_fd_owned());
                let from = std::fs::File::from(child.stdout.as_ref().unwrap().as_fd_owned());
                (child, Box::new(to), Box::new(from))
            } else {
                let path = format!("/tmp{name}.sock");
                let listener = UnixListener::bind(&path).expect("bind");
                let child = spawn_child(transport, "rtt", size, total, &name);
                let (stream, _) = listener.accept().expect("accept");
                let _ = std::fs::remove_file(&path);
                (child, Box::new(stream.try_clone().expect("clone socket")), Box::new(stream))
            };
            let mut frame = Vec::new();
            for i in 0..total {
                let start = Instant::now();
                write_frame(&mut to, &mut frame, &msg);
                read_frame(&mut from, &mut buf);
                record(i, start);
            }
            drop((to, from));
            let _ = child.stdin.take();
            child_report(child);
        }
        Transport::Mq => {
            let (up, down) = (mq_name(&name, "up"), mq_name(&name, "down"));
            let from_child = mq_open(&up, size, true);
            let to_child = mq_open(&down, size, true);
            let child = spawn_child(transport, "rtt", size, total, &name);
            for i in 0..total {
                let start = Instant::now();
                to_child.send(0, &msg).expect("mq send");
                from_child.recv(&mut buf).expect("mq recv");
                record(i, start);
            }
            child_report(child);
            let _ = posixmq::remove_queue(&up);
            let _ = posixmq::remove_queue(&down);
        }
        Transport::IdealRing => {
            let (ping, pong) = (format!("{name}-ping"), format!("{name}-pong"));
            let mut requests = IdealRing::map(&ping, size, true);
            let mut replies = IdealRing::map(&pong, size, true);
            let child = spawn_child(transport, "rtt", size, total, &name);
            for i in 0..total {
                let start = Instant::now();
                requests.send(&msg);
                replies.recv(&mut buf[..size]);
                record(i, start);
            }
            child_report(child);
            let _ = std::fs::remove_file(format!("/dev/shm{ping}"));
            let _ = std::fs::remove_file(format!("/dev/shm{pong}"));
        }
        #[cfg(feature = "compare-iceoryx2")]
        Transport::Iceoryx2 => {
            let ends = ice::Ends::open(&name, size, true, true);
            let mut child = spawn_child(transport, "rtt", size, total, &name);
            wait_ready(&mut child);
            for i in 0..total {
                let start = Instant::now();
                ends.send(&msg);
                ends.receive(|reply| std::hint::black_box(touch_lines(reply)));
                record(i, start);
            }
            drop(child.stdin.take());
            child_report(child);
        }
        #[cfg(feature = "compare-shmem-ipc")]
        Transport::ShmemIpc => {
            let mut requests = sipc::new_sender(size);
            let mut replies = sipc::new_receiver(size);
            let (mut fds, mut keep) = (String::new(), Vec::new());
            sipc::hand_off(
                requests.memfd().as_file(),
                requests.empty_signal(),
                requests.full_signal(),
                &mut fds,
                &mut keep,
            );
            sipc::hand_off(
                replies.memfd().as_file(),
                replies.empty_signal(),
                replies.full_signal(),
                &mut fds,
                &mut keep,
            );
            let child = spawn_child(transport, "rtt", size, total, &fds);
            drop(keep);
            for i in 0..total {
                let start = Instant::now();
                sipc::send(&mut requests, &msg);
                sipc::recv(&mut replies, &mut buf);
                record(i, start);
            }
            child_report(child);
        }
        Transport::PingPong => {
            let shared = Shared::map(&name, 4096, true);
            let child = spawn_child(transport, "rtt", size, total, &name);
            let word = shared.word(0);
            for i in 0..total {
                let start = Instant::now();
                word.store(2 * i + 1, Ordering::Release);
                while word.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
                record(i, start);
            }
            child_report(child);
            let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        }
    }
    [hist.value_at_quantile(0.5), hist.value_at_quantile(0.99), hist.value_at_quantile(0.999), hist.max()]
}

/// One-way throughput of `count` messages of `size` bytes: (msgs/s, system
/// calls per message on both sides, allocations per message on both sides).
fn throughput(transport: Transport, size: usize, count: u64) -> (f64, f64, f64) {
    let name = scratch(&format!("tput-{}-{size}", transport.encode().replace(':', "-")));
    let mut buf = vec![0u8; size + 4];
    let secs;
    // MPSC: `count` rounded down to a multiple of the producers.
    let mut delivered = count;
    let (mut syscalls, mut allocs) = (0u64, 0u64);
    let timed = |first: &mut Option<Instant>, received: u64| {
        if received == 1 {
            *first = Some(Instant::now());
        }
    };
    match transport {
        Transport::ShmringSelect { .. } => unreachable!("round trips only"),
        #[cfg(feature = "async")]
        Transport::ShmringAsync { .. } => unreachable!("round trips only"),
        Transport::Shmring { wait, zero_copy } => {
            let options = shm_options(size, wait);
            options.create(&name).expect("create");
            let mut consumer = Consumer::open(&name, &options).expect("open");
            let child = spawn_child(transport, "tput", size, count, &name);
            let mut first = None;
            let before = allocations();
            let mut at_first = 0;
            for n in 1..=count {
                if n == 2 {
                    let s = consumer.stats();
                    at_first = s.futex_waits + s.futex_wakes;
                }
                if zero_copy {
                    // Read in place: every cache line of the message visited.
                    let msg = consumer.read().expect("read");
                    std::hint::black_box(touch_lines(&msg));
                } else {
                    consumer.recv(&mut buf).expect("recv");
                }
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            allocs += allocations() - before;
            let s = consumer.stats();
            let (child_sys, child_allocs) = child_report(child);
            syscalls += s.futex_waits + s.futex_wakes - at_first + child_sys;
            allocs += child_allocs;
            let _ = shmring::unlink(&name);
        }
        Transport::ShmringFile { .. } => {
            // On the disk of the build directory, not tmpfs.
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shmring-bench");
            std::fs::create_dir_all(&dir).expect("bench dir");
            let path = dir.join(format!("{}.ring", name.trim_start_matches('/')));
            let _ = std::fs::remove_file(&path);
            let options = shm_options(size, WaitStrategy::default());
            options.create_file(&path).expect("create");
            let path_arg = path.to_string_lossy().into_owned();
            let mut consumer = Consumer::open_file(&path, &options).expect("open");
            let child = spawn_child(transport, "tput", size, count, &path_arg);
            (secs, syscalls, allocs) = receive_counted(&mut consumer, &mut buf, count, vec![child]);
            let _ = std::fs::remove_file(&path);
            // The kernel's write-back of the ring's pages goes on after the
            // row and slowed the rows measured next by 3-5x: wait for it.
            rustix::fs::sync();
        }
        Transport::ShmringBatch { wait } => {
            let options = shm_options(size, wait);
            options.create(&name).expect("create");
            let mut consumer = Consumer::open(&name, &options).expect("open");
            let child = spawn_child(transport, "tput", size, count, &name);
            let before = allocations();
            let mut received =
                consumer.drain(usize::MAX, |msg| buf[..msg.len()].copy_from_slice(msg)).expect("drain") as u64;
            let first = Instant::now();
            let at_first = received;
            while received < count {
                received +=
                    consumer.drain(usize::MAX, |msg| buf[..msg.len()].copy_from_slice(msg)).expect("drain") as u64;
            }
            // Timed from the end of the first batch: `delivered - 1` messages.
            delivered = received - at_first + 1;
            secs = first.elapsed().as_secs_f64();
            allocs += allocations() - before;
            let s = consumer.stats();
            let (child_sys, child_allocs) = child_report(child);
            syscalls += s.futex_waits + s.futex_wakes + child_sys;
            allocs += child_allocs;
            let _ = shmring::unlink(&name);
        }
        Transport::ShmringMpsc { wait, producers, defer } => {
            let options =
                shm_options(size, wait).kind(Kind::Mpsc).max_producers(producers as usize).defer_room_wakes(defer);
            options.create(&name).expect("create");
            let mut consumer = Consumer::open(&name, &options).expect("open");
            let each = count / u64::from(producers);
            let children: Vec<Child> =
                (0..producers).map(|_| spawn_child(transport, "tput", size, each, &name)).collect();
            delivered = each * u64::from(producers);
            (secs, syscalls, allocs) = receive_counted(&mut consumer, &mut buf, delivered, children);
            let _ = shmring::unlink(&name);
        }
        Transport::Pipe | Transport::Uds => {
            let (mut child, reader): (Child, Box<dyn Read>) = if transport == Transport::Pipe {
                let mut child = spawn_child(transport, "tput", size, count, &name);
                let out = std::fs::File::from(child.stdout.take().unwrap().as_fd_owned());
                (child, Box::new(out))
            } else {
                let path = format!("/tmp{name}.sock");
                let listener = UnixListener::bind(&path).expect("bind");
                let child = spawn_child(transport, "tput", size, count, &name);
                let (stream, _) = listener.accept().expect("accept");
                let _ = std::fs::remove_file(&path);
                (child, Box::new(stream))
            };
            let mut input = BufReader::with_capacity(256 << 10, CountingReader { inner: reader, reads: 0 });
            let mut first = None;
            let before = allocations();
            for n in 1..=count {
                read_frame(&mut input, &mut buf);
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            allocs += allocations() - before;
            syscalls += input.get_ref().reads + count; // reads here, one write per message there
            drop(input);
            let _ = child.stdin.take();
            let (_, child_allocs) = child_report(child);
            allocs += child_allocs;
        }
        Transport::Mq => {
            let (up, down) = (mq_name(&name, "up"), mq_name(&name, "down"));
            let from_child = mq_open(&up, size, true);
            let _to_child = mq_open(&down, size, true);
            let child = spawn_child(transport, "tput", size, count, &name);
            let mut first = None;
            let before = allocations();
            for n in 1..=count {
                from_child.recv(&mut buf).expect("mq recv");
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            allocs += allocations() - before;
            syscalls += 2 * count;
            allocs += child_report(child).1;
            let _ = posixmq::remove_queue(&up);
            let _ = posixmq::remove_queue(&down);
        }
        Transport::IdealRing => {
            let mut ring = IdealRing::map(&name, size, true);
            let child = spawn_child(transport, "tput", size, count, &name);
            let mut first = None;
            for n in 1..=count {
                ring.recv(&mut buf[..size]);
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            child_report(child);
            let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        }
        #[cfg(feature = "compare-iceoryx2")]
        Transport::Iceoryx2 => {
            let ends = ice::Ends::open(&name, size, false, true);
            let mut child = spawn_child(transport, "tput", size, count, &name);
            wait_ready(&mut child);
            let mut first = None;
            let before = allocations();
            for n in 1..=count {
                ends.receive(|msg| std::hint::black_box(touch_lines(msg)));
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            allocs += allocations() - before;
            drop(child.stdin.take());
            allocs += child_report(child).1;
        }
        #[cfg(feature = "compare-shmem-ipc")]
        Transport::ShmemIpc => {
            let mut rx = sipc::new_receiver(size);
            let (mut fds, mut keep) = (String::new(), Vec::new());
            sipc::hand_off(rx.memfd().as_file(), rx.empty_signal(), rx.full_signal(), &mut fds, &mut keep);
            let child = spawn_child(transport, "tput", size, count, &fds);
            drop(keep);
            let mut first = None;
            let before = allocations();
            for n in 1..=count {
                let (len, calls) = sipc::recv(&mut rx, &mut buf);
                assert_eq!(len, size, "shmem-ipc frame");
                syscalls += calls;
                timed(&mut first, n);
            }
            secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            allocs += allocations() - before;
            let (child_sys, child_allocs) = child_report(child);
            syscalls += child_sys;
            allocs += child_allocs;
        }
        Transport::PingPong => unreachable!("ping-pong has no throughput row"),
    }
    // The first message started the clock: delivered - 1 intervals.
    let n = delivered as f64;
    ((n - 1.0) / secs.max(1e-9), syscalls as f64 / n, allocs as f64 / n)
}

/// Receives `count` messages (copied out), timed from the first; returns the
/// seconds, and the futex calls and heap allocations of this consumer and of
/// the producer `children` it then reaps.
fn receive_counted(consumer: &mut Consumer, buf: &mut Vec<u8>, count: u64, children: Vec<Child>) -> (f64, u64, u64) {
    let mut first = None;
    let before = allocations();
    for n in 1..=count {
        consumer.recv(buf).expect("recv");
        if n == 1 {
            first = Some(Instant::now());
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let mut allocs = allocations() - before;
    let s = consumer.stats();
    let mut syscalls = s.futex_waits + s.futex_wakes;
    for child in children {
        let (child_sys, child_allocs) = child_report(child);
        syscalls += child_sys;
        allocs += child_allocs;
    }
    (secs, syscalls, allocs)
}

/// One byte of every 64: what a reader that parses a message at least pulls
/// across cores.
fn touch_lines(msg: &[u8]) -> u8 {
    msg.iter().step_by(64).fold(0, |acc, &b| acc ^ b)
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child_main(&args);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if let Some((a, b)) = cpus::two_cpus() {
        std::env::set_var(PIN_ENV, format!("{a},{b}"));
    } else {
        eprintln!("one core: producer and consumer share it, busy rows measure the scheduler");
    }
    pin_to(0);
    // `--only TEXT`: just the transports whose "name wait" contains TEXT.
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let (warmup, rounds) = if quick { (2_000, 20_000) } else { (10_000, 100_000) };
    // (size, messages) for throughput; fewer when quick.
    let sizes: [(usize, u64); 3] = if quick {
        [(64, 2_000_000), (1024, 500_000), (65536, 10_000)]
    } else {
        [(64, 5_000_000), (1024, 1_000_000), (65536, 30_000)]
    };
    // Throughput on a shared VM is bimodal (see docs/performance.md): every transport is
    // measured once per repetition, interleaved, and the median of its fast-phase samples is reported.
    let repetitions = if quick { 1 } else { 5 };
    let spin = WaitStrategy::default();
    let transports: Vec<Transport> = [
        Transport::Shmring { wait: WaitStrategy::BusySpin, zero_copy: false },
        Transport::Shmring { wait: WaitStrategy::BusySpin, zero_copy: true },
        Transport::Shmring { wait: spin, zero_copy: false },
        Transport::Shmring { wait: WaitStrategy::Park, zero_copy: false },
        Transport::ShmringBatch { wait: WaitStrategy::BusySpin },
        Transport::ShmringBatch { wait: spin },
        // One ring among idle ones, served by a Select, against the rows
        // above (same strategies); async against park and spin.
        Transport::ShmringSelect { wait: spin },
        Transport::ShmringSelect { wait: WaitStrategy::Park },
        #[cfg(feature = "async")]
        Transport::ShmringAsync { spin: false },
        #[cfg(feature = "async")]
        Transport::ShmringAsync { spin: true },
        // MPSC against the SPSC rows above: 1, 2 and 4 producer processes
        // (on two cores the producers share one).
        Transport::ShmringMpsc { wait: WaitStrategy::BusySpin, producers: 1, defer: false },
        Transport::ShmringMpsc { wait: spin, producers: 1, defer: false },
        Transport::ShmringMpsc { wait: spin, producers: 2, defer: false },
        Transport::ShmringMpsc { wait: spin, producers: 4, defer: false },
        // Issue 16's futex target: the consumer defers room wakes.
        Transport::ShmringMpsc { wait: spin, producers: 4, defer: true },
        Transport::IdealRing,
        Transport::PingPong,
        Transport::Pipe,
        Transport::Uds,
        Transport::Mq,
        #[cfg(feature = "compare-iceoryx2")]
        Transport::Iceoryx2,
        #[cfg(feature = "compare-shmem-ipc")]
        Transport::ShmemIpc,
        // A file-backed ring (never flushed) against the shm `spin` rows.
        // Last: the kernel's write-back of a flushed file ring goes on after
        // its row and slowed the rows measured next by 3-5x.
        Transport::ShmringFile { flush_every: None },
        Transport::ShmringFile { flush_every: Some(1000) },
    ]
    .into_iter()
    .filter(|t| {
        only.as_ref()
            .is_none_or(|only| format!("{} {}", t.name(), t.wait().unwrap_or_default()).contains(only.as_str()))
    })
    .collect();
    let mq_max = mq_limit("msgsize_max") as usize;

    let mut rows: Vec<Row> = Vec::new();
    for &transport in &transports {
        if let Transport::ShmringFile { .. } | Transport::ShmringBatch { .. } = transport {
            for (size, _) in sizes {
                rows.push(Row { transport: transport.name(), wait: transport.wait(), size, ..Row::default() });
            }
            continue;
        }
        if rtt_only(transport) {
            eprintln!("round trips: {} {}", transport.name(), transport.wait().unwrap_or_default());
            rows.push(Row {
                transport: transport.name(),
                wait: transport.wait(),
                size: 64,
                rtt: Some(rtt(transport, 64, warmup, rounds)),
                rtt_only: true,
                ..Row::default()
            });
            continue;
        }
        if let Transport::ShmringMpsc { producers, .. } = transport {
            // Throughput of 64-byte messages only.
            rows.push(Row {
                transport: transport.name(),
                wait: transport.wait(),
                producers,
                size: 64,
                ..Row::default()
            });
            continue;
        }
        eprintln!("round trips: {} {}", transport.name(), transport.wait().unwrap_or_default());
        let zero_copy = matches!(transport, Transport::Shmring { zero_copy: true, .. });
        let rtt64 = (!zero_copy).then(|| rtt(transport, 64, warmup, rounds));
        if transport == Transport::PingPong {
            rows.push(Row {
                transport: transport.name(),
                wait: transport.wait(),
                size: 64,
                rtt: rtt64,
                syscalls_per_msg: Some(0.0),
                ..Row::default()
            });
            continue;
        }
        // 56 bytes: the largest payload whose record (8-byte commit word
        // first) is one cache line, for the busy rings only.
        if matches!(
            transport,
            Transport::IdealRing | Transport::Shmring { wait: WaitStrategy::BusySpin, zero_copy: false }
        ) {
            rows.push(Row {
                transport: transport.name(),
                wait: transport.wait(),
                size: 56,
                rtt: Some(rtt(transport, 56, warmup, rounds)),
                rtt_only: true,
                ..Row::default()
            });
        }
        for (size, _) in sizes {
            let mut row = Row { transport: transport.name(), wait: transport.wait(), size, ..Row::default() };
            if size == 64 {
                row.rtt = rtt64;
            }
            if transport == Transport::Mq && size > mq_max {
                row.note = Some(format!("over /proc/sys/fs/mqueue/msgsize_max ({mq_max})"));
            }
            rows.push(row);
        }
    }
    // Each throughput sample is taken right after a short ping-pong probe:
    // the machine switches between fast and slow phases within seconds
    // (about 4x apart), so rows are compared on the samples taken in the
    // fast phase (see below).
    let mut samples: Vec<Vec<(f64, f64, f64, u64)>> = vec![Vec::new(); rows.len()];
    let mut flushes: Vec<Vec<[u64; 2]>> = vec![Vec::new(); rows.len()];
    for repetition in 1..=repetitions {
        eprintln!("throughput, repetition {repetition} of {repetitions}");
        for (index, (row, samples)) in rows.iter().zip(samples.iter_mut()).enumerate() {
            let Some(&transport) = transports
                .iter()
                .find(|t| t.name() == row.transport && t.wait() == row.wait && t.producers() == row.producers.max(1))
            else {
                continue;
            };
            if transport == Transport::PingPong || row.note.is_some() || row.rtt_only {
                continue;
            }
            let count = sizes.iter().find(|(size, _)| *size == row.size).map_or(0, |(_, count)| *count);
            // Parking is measured for latency; its throughput equals spin's.
            let count = if matches!(transport, Transport::Shmring { wait: WaitStrategy::Park, .. }) {
                count / 4
            } else {
                count
            };
            let probe = rtt(Transport::PingPong, 64, 1_000, 5_000)[0];
            let (msgs, syscalls, allocs) = throughput(transport, row.size, count);
            samples.push((msgs, syscalls, allocs, probe));
            if let Some(latency) = FLUSH_LATENCY.lock().unwrap().pop() {
                flushes[index].push(latency);
            }
        }
    }
    for (row, flushes) in rows.iter_mut().zip(flushes.iter_mut()) {
        flushes.sort_unstable();
        if let Some(median) = flushes.get(flushes.len() / 2) {
            row.flush = Some(*median);
            row.note = Some(format!("flush() p50 {} us, p99 {} us", median[0] / 1000, median[1] / 1000));
        }
    }
    // The fast phase's level: the lower quartile of all the probes (a few
    // runs are faster still); a sample whose probe is within 2x of it was
    // taken in the fast phase (the slow phase is about 4x).
    let mut probes: Vec<u64> = samples.iter().flatten().map(|s| s.3).collect();
    probes.sort_unstable();
    let fast_level = probes.get(probes.len() / 4).copied().unwrap_or(0);
    let fast_phase = |probe: u64| probe <= fast_level * 2;
    eprintln!(
        "phase probe: ping-pong p50 {} ns at least, {fast_level} ns lower quartile, {} ns at most; samples at <= 2x the quartile count as the fast phase",
        probes.first().unwrap_or(&0),
        probes.last().unwrap_or(&0)
    );
    for (row, samples) in rows.iter_mut().zip(samples.iter_mut()) {
        if samples.is_empty() {
            continue;
        }
        let all = samples.len();
        if samples.iter().any(|s| fast_phase(s.3)) {
            samples.retain(|s| fast_phase(s.3));
        }
        row.fast_samples = Some((samples.iter().filter(|s| fast_phase(s.3)).count(), all));
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (msgs, syscalls, allocs, _) = samples[samples.len() / 2];
        row.msgs_per_s = Some(msgs);
        row.gb_per_s = Some(msgs * row.size as f64 / 1e9);
        // iceoryx2 keeps no counters of its own, and strace would perturb it.
        row.syscalls_per_msg = (row.transport != "iceoryx2").then_some(syscalls);
        row.allocs_per_msg = Some(allocs);
    }

    print_table(&rows);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shmring-bench");
    std::fs::create_dir_all(&dir).expect("results dir");
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&to_json(&rows)).expect("json"))
        .expect("write results");
    chart(&rows, &dir.join("ipc.svg"));
    eprintln!("results: {0}/results.json, {0}/ipc.svg", dir.display());
}

fn print_table(rows: &[Row]) {
    println!(
        "| transport | wait | producers | size | RTT p50 ns | p99 | p99.9 | max | msgs/s | GB/s | syscalls/msg | allocs/msg | fast |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let rtt = |i: usize| r.rtt.map_or("-".into(), |v| v[i].to_string());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
            r.transport,
            r.wait.as_deref().unwrap_or("-"),
            r.producers.max(1),
            r.size,
            rtt(0),
            rtt(1),
            rtt(2),
            rtt(3),
            cell(r.msgs_per_s, 0),
            cell(r.gb_per_s, 3),
            cell(r.syscalls_per_msg, 5),
            cell(r.allocs_per_msg, 5),
            r.fast_samples.map_or("-".into(), |(fast, all)| format!("{fast}/{all}")),
            r.note.as_ref().map_or(String::new(), |n| format!(" {n}"))
        );
    }
}

fn to_json(rows: &[Row]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            json!({
                "transport": r.transport,
                "wait": r.wait,
                "producers": r.producers.max(1),
                "size": r.size,
                "rtt_p50_ns": r.rtt.map(|v| v[0]),
                "rtt_p99_ns": r.rtt.map(|v| v[1]),
                "rtt_p999_ns": r.rtt.map(|v| v[2]),
                "rtt_max_ns": r.rtt.map(|v| v[3]),
                "msgs_per_s": r.msgs_per_s,
                "gb_per_s": r.gb_per_s,
                "syscalls_per_msg": r.syscalls_per_msg,
                "allocs_per_msg": r.allocs_per_msg,
                "note": r.note,
                "flush_p50_ns": r.flush.map(|v| v[0]),
                "flush_p99_ns": r.flush.map(|v| v[1]),
                "fast_phase_samples": r.fast_samples.map(|v| v.0),
                "samples": r.fast_samples.map(|v| v.1),
            })
        })
        .collect()
}

/// Two panels: round-trip percentiles per transport (log scale), and GB/s
/// per message size for each transport (log scale).
fn chart(rows: &[Row], path: &std::path::Path) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).expect("chart");
    let (left, right) = root.split_horizontally(600);
    let label = |r: &Row| match &r.wait {
        Some(w) if r.transport.starts_with("shmring") => format!("{} {w}", r.transport),
        _ => r.transport.to_string(),
    };

    let short = |r: &Row| match &r.wait {
        Some(w) if r.transport.starts_with("shmring") => format!("shm {w}"),
        _ => r.transport.replace("-ring", ""),
    };
    let latency: Vec<(String, [u64; 4])> =
        rows.iter().filter(|r| r.size == 64).filter_map(|r| Some((short(r), r.rtt?))).collect();
    let top = latency.iter().map(|(_, v)| v[2]).max().unwrap_or(1000).max(1000) as f64 * 2.0;
    let mut chart = ChartBuilder::on(&left)
        .caption("64-byte round trip (ns, log)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..latency.len().max(1), (50.0..top).log_scale())
        .expect("chart");
    chart
        .configure_mesh()
        .x_labels(latency.len().max(1))
        .x_label_formatter(&|i| latency.get(*i).map_or(String::new(), |(name, _)| name.clone()))
        .x_label_style(("sans-serif", 12))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .expect("chart");
    for (k, (name, color)) in [("p50", BLUE), ("p99", GREEN), ("p99.9", RED)].into_iter().enumerate() {
        chart
            .draw_series(latency.iter().enumerate().map(|(i, (_, v))| Circle::new((i, v[k] as f64), 4, color.filled())))
            .expect("chart")
            .label(name)
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().expect("chart");

    let sizes = [64usize, 1024, 65536];
    let mut chart = ChartBuilder::on(&right)
        .caption("one-way throughput (GB/s, log)", ("sans-serif", 18))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..sizes.len() - 1, (0.01..100.0).log_scale())
        .expect("chart");
    chart
        .configure_mesh()
        .x_labels(sizes.len())
        .x_label_formatter(&|i| sizes.get(*i).map_or(String::new(), |s| format!("{s} B")))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .expect("chart");
    // MPSC rows are 64-byte only and compared in the table, not here.
    let per_size = |r: &&Row| r.gb_per_s.is_some() && r.transport != "shmring-mpsc";
    let mut names: Vec<String> = rows.iter().filter(per_size).map(label).collect();
    names.dedup();
    for (n, name) in names.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        let points: Vec<(usize, f64)> = rows
            .iter()
            .filter(|r| &label(r) == name)
            .filter_map(|r| Some((sizes.iter().position(|s| *s == r.size)?, r.gb_per_s?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .expect("chart")
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).expect("chart");
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .expect("chart");
    root.present().expect("chart");
}
