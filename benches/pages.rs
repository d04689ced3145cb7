//! Huge pages and pre-faulting for large rings (issue 16, item 7): does a
//! 64 MiB ring move messages faster on 2 MiB pages than on 4 KiB ones, and
//! what does pre-faulting the mapping (`MAP_POPULATE`, which every shmring
//! segment gets when its pages are all allocated) save on the first lap?
//!
//! ```sh
//! cargo bench --bench pages             # 9 repetitions, about a minute
//! cargo bench --bench pages -- --quick  # 1 repetition
//! ```
//!
//! Two rings: the ideal ring of the `ipc` bench (fixed slots, an index
//! each on its own line, cached indices, busy polling), which adds the
//! least of its own, so that what the pages cost the memory system shows
//! most, and pre-faulting can be switched; and shmring itself, an
//! `AnonymousRing` with and without `RingOptions::huge_pages` (busy
//! polling; it always pre-faults). Each lives in a memfd allocated up
//! front with `fallocate` and is shared with a consumer process that
//! inherits the descriptor; each side is pinned to its own CPU. Every
//! message carries its sequence number, which the consumer checks.
//!
//! Huge pages need reserved 2 MiB pages (`sysctl vm.nr_hugepages=40` as
//! root; a 64 MiB ring takes 33). Without them those rows say so and are
//! skipped.

#[path = "common/cpus.rs"]
mod cpus;

use rustix::fd::{AsRawFd, FromRawFd, OwnedFd};
use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use shmring::{AnonymousRing, RingOptions, WaitStrategy};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The data starts one huge page in, so that on huge pages it is aligned.
const DATA: usize = 2 << 20;
const RING: usize = 64 << 20;
/// Offsets of the control words (each on its own line): the producer's
/// count, the consumer's count, the consumer's "mapped" flag, the start
/// time, and the consumer's times at the end of the first lap and of all.
const TAIL: usize = 0;
const HEAD: usize = 128;
const READY: usize = 256;
const T_START: usize = 384;
const T_LAP: usize = 512;
const T_END: usize = 640;

#[derive(Clone, Copy, PartialEq)]
struct Variant {
    /// shmring's `AnonymousRing` (else the ideal ring).
    shmring: bool,
    huge: bool,
    populate: bool,
}

impl Variant {
    fn name(self) -> String {
        let ring = if self.shmring { "shmring" } else { "ideal ring" };
        let pages = if self.huge { "2 MiB pages" } else { "4 KiB pages" };
        let faults = if self.populate { "pre-faulted" } else { "faulted on first touch" };
        format!("{ring} | {pages}, {faults}")
    }
}

/// A shared mapping of the whole memfd.
struct Mapped {
    base: *mut u8,
    len: usize,
}

impl Mapped {
    fn new(fd: &OwnedFd, len: usize, populate: bool) -> Mapped {
        let flags = if populate { MapFlags::SHARED | MapFlags::POPULATE } else { MapFlags::SHARED };
        // SAFETY: a fresh shared mapping of a memfd sized to `len` by the
        // parent before it was shared; it aliases no Rust object and is
        // unmapped only on drop.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, flags, fd, 0) }
                .expect("mmap");
        Mapped { base: ptr.cast(), len }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= DATA);
        // SAFETY: in bounds of the control page and 8-aligned (checked
        // above), in a mapping that lives as long as `self`.
        unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
    }

    fn slot(&self, index: u64, size: usize) -> *mut u8 {
        let offset = DATA + (index as usize % (RING / size)) * size;
        assert!(offset + size <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.base.add(offset) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; nothing borrowed from it
        // outlives `self` (`word` borrows `self`, `slot` pointers are used
        // before the next call).
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len) };
    }
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The consumer: `--child FD SIZE COUNT POPULATE CPU`.
fn child(args: &[String]) {
    let number = |i: usize| args[i].parse::<u64>().expect("number");
    let (raw, size, count, populate, cpu) = (number(2), number(3) as usize, number(4), number(5) == 1, number(6));
    cpus::pin(cpu as usize);
    // SAFETY: the parent made this descriptor inheritable for this child
    // alone; nothing else here owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let map = Mapped::new(&fd, DATA + RING, populate);
    let slots = (RING / size) as u64;
    let mut buf = vec![0u8; size];
    map.word(READY).store(1, Ordering::Release);
    let (mut head, mut seen) = (0u64, 0u64);
    let (parent, mut spins) = (rustix::process::getppid(), 0u32);
    while head < count {
        while seen == head {
            seen = map.word(TAIL).load(Ordering::Acquire);
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            // A producer that failed would leave this one spinning for ever.
            if spins % (1 << 20) == 0 && rustix::process::getppid() != parent {
                panic!("the producer ended before the run did");
            }
        }
        // SAFETY: the slot is the producer's published message, not written
        // again until `head` passes it; `buf` is `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(map.slot(head, size), buf.as_mut_ptr(), size) };
        let sequence = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        assert_eq!(sequence, head, "message {head} carried sequence number {sequence}");
        head += 1;
        map.word(HEAD).store(head, Ordering::Release);
        if head == slots {
            map.word(T_LAP).store(now_ns(), Ordering::Relaxed);
        }
    }
    map.word(T_END).store(now_ns(), Ordering::Release);
}

/// shmring's consumer: `--child-shmring FD SIZE COUNT CPU`. Says `ready`
/// once attached, then, at the end, the clock at the end of the first lap
/// and at the end.
fn shmring_child(args: &[String]) {
    let number = |i: usize| args[i].parse::<u64>().expect("number");
    let (fd, size, count, cpu) = (number(2) as i32, number(3) as usize, number(4), number(5) as usize);
    cpus::pin(cpu);
    let options = RingOptions::new().wait(WaitStrategy::BusySpin);
    let ring = AnonymousRing::open_inherited(fd, &options).expect("open the inherited ring");
    let mut consumer = ring.consumer(&options).expect("consumer");
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let lap = shmring_lap(size);
    let (mut buf, mut at_lap) = (vec![0u8; size], 0);
    for seq in 0..count {
        let len = consumer.recv_into(&mut buf).expect("recv");
        let sequence = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        assert!(len == size && sequence == seq, "message {seq}: {len} bytes, sequence number {sequence}");
        if seq + 1 == lap {
            at_lap = now_ns();
        }
    }
    println!("{at_lap} {}", now_ns());
}

/// Messages in a lap of shmring's ring: a record is the payload and an
/// 8-byte header.
fn shmring_lap(size: usize) -> u64 {
    (RING / (size + 8)) as u64
}

/// [`run`] for shmring's rows.
fn run_shmring(variant: Variant, size: usize, laps: u64, cpus: (usize, usize)) -> Option<(f64, f64)> {
    let options =
        RingOptions::new().capacity(RING).max_message(size).huge_pages(variant.huge).wait(WaitStrategy::BusySpin);
    let ring = match AnonymousRing::create("shmring-pages-bench", &options) {
        Ok(ring) => ring,
        Err(shmring::Error::NoHugePages { .. }) => return None,
        Err(e) => panic!("create: {e}"),
    };
    let lap = shmring_lap(size);
    let count = lap * laps;
    let inherited = rustix::io::dup(&ring).expect("dup");
    cpus::pin(cpus.0);
    let mut consumer = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--child-shmring", &inherited.as_raw_fd().to_string(), &size.to_string(), &count.to_string()])
        .arg(cpus.1.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    drop(inherited);
    let mut out = BufReader::new(consumer.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready", "the consumer did not attach");
    let mut producer = ring.producer(&options).expect("producer");
    let mut msg = vec![0x5Au8; size];
    let start = now_ns();
    for seq in 0..count {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        producer.send(&msg).expect("send");
    }
    line.clear();
    out.read_line(&mut line).expect("times");
    let status = consumer.wait().expect("wait for consumer");
    assert!(status.success(), "consumer failed: {status}");
    let times: Vec<u64> = line.split_whitespace().map(|t| t.parse().expect("time")).collect();
    let (at_lap, end) = (times[0], times[1]);
    Some((lap as f64 / ((at_lap - start) as f64 / 1e9), (count - lap) as f64 / ((end - at_lap) as f64 / 1e9)))
}

/// A spin of the producer's waits: every 2^20th also checks that the
/// consumer still runs (a consumer that failed would leave it spinning).
fn check_alive(consumer: &mut std::process::Child, spins: &mut u32) {
    std::hint::spin_loop();
    *spins = spins.wrapping_add(1);
    if *spins % (1 << 20) == 0 {
        if let Some(status) = consumer.try_wait().expect("try_wait") {
            panic!("the consumer ended before the run did: {status}");
        }
    }
}

/// One run: messages per second over the first lap and over the laps
/// after it; `None` when huge pages are asked for and not available.
fn run(variant: Variant, size: usize, laps: u64, cpus: (usize, usize)) -> Option<(f64, f64)> {
    if variant.shmring {
        return run_shmring(variant, size, laps, cpus);
    }
    let flags = MemfdFlags::CLOEXEC
        | if variant.huge { MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB } else { MemfdFlags::empty() };
    let fd = rustix::fs::memfd_create("shmring-pages-bench", flags).expect("memfd_create");
    let total = (DATA + RING) as u64;
    rustix::fs::ftruncate(&fd, total).expect("ftruncate");
    match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, total) {
        Ok(()) => {}
        Err(Errno::NOSPC) if variant.huge => return None,
        Err(e) => panic!("fallocate: {e}"),
    }
    let map = Mapped::new(&fd, DATA + RING, variant.populate);
    let slots = (RING / size) as u64;
    let count = slots * laps;
    let inherited = rustix::io::dup(&fd).expect("dup");
    cpus::pin(cpus.0);
    let mut consumer = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--child", &inherited.as_raw_fd().to_string(), &size.to_string(), &count.to_string()])
        .arg(if variant.populate { "1" } else { "0" })
        .arg(cpus.1.to_string())
        .spawn()
        .expect("spawn consumer");
    drop(inherited);
    let mut spins = 0u32;
    while map.word(READY).load(Ordering::Acquire) == 0 {
        check_alive(&mut consumer, &mut spins);
    }
    let mut msg = vec![0x5Au8; size];
    let start = now_ns();
    map.word(T_START).store(start, Ordering::Relaxed);
    let mut cached_head = 0u64;
    for tail in 0..count {
        while tail - cached_head == slots {
            cached_head = map.word(HEAD).load(Ordering::Acquire);
            check_alive(&mut consumer, &mut spins);
        }
        msg[..8].copy_from_slice(&tail.to_le_bytes());
        // SAFETY: the slot is free (the consumer is past it) until `TAIL`
        // says otherwise; `msg` is `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), map.slot(tail, size), size) };
        map.word(TAIL).store(tail + 1, Ordering::Release);
    }
    let status = consumer.wait().expect("wait for consumer");
    assert!(status.success(), "consumer failed: {status}");
    let (lap, end) = (map.word(T_LAP).load(Ordering::Acquire), map.word(T_END).load(Ordering::Acquire));
    let first = slots as f64 / ((lap - start) as f64 / 1e9);
    let rest = (count - slots) as f64 / ((end - lap) as f64 / 1e9);
    Some((first, rest))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child") => return child(&args),
        Some("--child-shmring") => return shmring_child(&args),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let repetitions = if quick { 1 } else { 9 };
    let laps = if quick { 4 } else { 16 };
    let Some(cpus) = cpus::two_cpus() else {
        eprintln!("one CPU: the two sides would share it; nothing measured");
        return;
    };
    let variants = [
        Variant { shmring: false, huge: false, populate: true },
        Variant { shmring: false, huge: false, populate: false },
        Variant { shmring: false, huge: true, populate: true },
        Variant { shmring: false, huge: true, populate: false },
        Variant { shmring: true, huge: false, populate: true },
        Variant { shmring: true, huge: true, populate: true },
    ];
    println!("64 MiB rings between two processes, {laps} laps, medians of {repetitions} interleaved runs;");
    println!("ratios (per run, then the median) to the same ring on pre-faulted 4 KiB pages");
    println!("| message | ring | pages | first lap msgs/s | later laps msgs/s | GB/s later | first lap ratio | later laps ratio |");
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for size in [1024usize, 65536] {
        // Per variant: (first, later) of each repetition, in the same
        // order, so that ratios are taken between runs seconds apart.
        // Per variant, per repetition: `None` when huge pages were short.
        // Ratios pair runs of one repetition, seconds apart.
        let mut results: Vec<Vec<Option<(f64, f64)>>> = vec![Vec::new(); variants.len()];
        for _ in 0..repetitions {
            for (variant, results) in variants.iter().zip(results.iter_mut()) {
                results.push(run(*variant, size, laps, cpus));
            }
        }
        for (variant, runs) in variants.iter().zip(results.iter()) {
            let base = &results[variants.iter().position(|v| v.shmring == variant.shmring).expect("a base row")];
            let measured: Vec<(f64, f64)> = runs.iter().flatten().copied().collect();
            let paired: Vec<((f64, f64), (f64, f64))> =
                runs.iter().zip(base).filter_map(|(r, b)| Some(((*r)?, (*b)?))).collect();
            if measured.is_empty() {
                let reserved = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
                println!(
                    "| {size} B | {} | not measured: no free huge pages (vm.nr_hugepages = {}; a run needs 33) | | | | |",
                    variant.name(),
                    reserved.trim()
                );
                continue;
            }
            let mut first: Vec<f64> = measured.iter().map(|r| r.0).collect();
            let mut later: Vec<f64> = measured.iter().map(|r| r.1).collect();
            let mut first_ratio: Vec<f64> = paired.iter().map(|(r, b)| r.0 / b.0).collect();
            let mut later_ratio: Vec<f64> = paired.iter().map(|(r, b)| r.1 / b.1).collect();
            let later_median = median(&mut later);
            let skipped = runs.len() - measured.len();
            println!(
                "| {size} B | {} | {:.0} | {:.0} | {:.2} | {:.2}x | {:.2}x |{}",
                variant.name(),
                median(&mut first),
                later_median,
                later_median * size as f64 / 1e9,
                median(&mut first_ratio),
                median(&mut later_ratio),
                if skipped > 0 {
                    format!(" ({skipped} of {} runs found no free huge pages)", runs.len())
                } else {
                    String::new()
                },
            );
        }
    }
}
