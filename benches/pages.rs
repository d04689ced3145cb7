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
//! The ring is the ideal ring of the `ipc` bench (fixed slots, an index
//! each on its own line, cached indices, busy polling), not shmring's: the
//! question is what the pages cost the memory system, and the ideal ring
//! adds the least of its own, so any difference shows most in it. It lives
//! in a memfd, allocated up front with `fallocate` as shmring's segments
//! are, and shared with a consumer process that inherits the descriptor;
//! each side is pinned to its own CPU. Every message carries its sequence
//! number, which the consumer checks.
//!
//! Huge pages need reserved 2 MiB pages (`sysctl vm.nr_hugepages=40` as
//! root; a 64 MiB ring takes 33). Without them those rows say so and are
//! skipped.

use rustix::fd::{AsRawFd, FromRawFd, OwnedFd};
use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use std::process::Command;
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
    huge: bool,
    populate: bool,
}

impl Variant {
    fn name(self) -> String {
        let pages = if self.huge { "2 MiB pages" } else { "4 KiB pages" };
        let faults = if self.populate { "pre-faulted" } else { "faulted on first touch" };
        format!("{pages}, {faults}")
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

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("cannot pin to CPU {cpu}: {e}");
    }
}

fn two_cpus() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    Some((cpus.next()?, cpus.next()?))
}

/// The consumer: `--child FD SIZE COUNT POPULATE CPU`.
fn child(args: &[String]) {
    let number = |i: usize| args[i].parse::<u64>().expect("number");
    let (raw, size, count, populate, cpu) = (number(2), number(3) as usize, number(4), number(5) == 1, number(6));
    pin(cpu as usize);
    // SAFETY: the parent made this descriptor inheritable for this child
    // alone; nothing else here owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let map = Mapped::new(&fd, DATA + RING, populate);
    let slots = (RING / size) as u64;
    let mut buf = vec![0u8; size];
    map.word(READY).store(1, Ordering::Release);
    let (mut head, mut seen) = (0u64, 0u64);
    while head < count {
        while seen == head {
            seen = map.word(TAIL).load(Ordering::Acquire);
            std::hint::spin_loop();
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

/// One run: messages per second over the first lap and over the laps
/// after it; `None` when huge pages are asked for and not available.
fn run(variant: Variant, size: usize, laps: u64, cpus: (usize, usize)) -> Option<(f64, f64)> {
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
    pin(cpus.0);
    let mut consumer = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--child", &inherited.as_raw_fd().to_string(), &size.to_string(), &count.to_string()])
        .arg(if variant.populate { "1" } else { "0" })
        .arg(cpus.1.to_string())
        .spawn()
        .expect("spawn consumer");
    drop(inherited);
    while map.word(READY).load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let mut msg = vec![0x5Au8; size];
    let start = now_ns();
    map.word(T_START).store(start, Ordering::Relaxed);
    let mut cached_head = 0u64;
    for tail in 0..count {
        while tail - cached_head == slots {
            cached_head = map.word(HEAD).load(Ordering::Acquire);
            std::hint::spin_loop();
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
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let repetitions = if quick { 1 } else { 9 };
    let laps = if quick { 4 } else { 16 };
    let Some(cpus) = two_cpus() else {
        eprintln!("one CPU: the two sides would share it; nothing measured");
        return;
    };
    let variants = [
        Variant { huge: false, populate: true },
        Variant { huge: false, populate: false },
        Variant { huge: true, populate: true },
        Variant { huge: true, populate: false },
    ];
    println!("64 MiB ring, ideal ring between two processes, {laps} laps, medians of {repetitions} interleaved runs");
    println!("| message | pages | first lap msgs/s | later laps msgs/s | GB/s later | first / pre-faulted 4 KiB | later / pre-faulted 4 KiB |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for size in [1024usize, 65536] {
        // Per variant: (first, later) of each repetition, in the same
        // order, so that ratios are taken between runs seconds apart.
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
        let mut no_huge = false;
        for _ in 0..repetitions {
            for (variant, results) in variants.iter().zip(results.iter_mut()) {
                match run(*variant, size, laps, cpus) {
                    Some(r) => results.push(r),
                    None => no_huge = true,
                }
            }
        }
        let base = &results[0];
        for (variant, runs) in variants.iter().zip(results.iter()) {
            if runs.is_empty() {
                continue;
            }
            let mut first: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let mut later: Vec<f64> = runs.iter().map(|r| r.1).collect();
            let mut first_ratio: Vec<f64> = runs.iter().zip(base).map(|(r, b)| r.0 / b.0).collect();
            let mut later_ratio: Vec<f64> = runs.iter().zip(base).map(|(r, b)| r.1 / b.1).collect();
            let later_median = median(&mut later);
            println!(
                "| {size} B | {} | {:.0} | {:.0} | {:.2} | {:.2}x | {:.2}x |",
                variant.name(),
                median(&mut first),
                later_median,
                later_median * size as f64 / 1e9,
                median(&mut first_ratio),
                median(&mut later_ratio),
            );
        }
        if no_huge {
            let reserved = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
            println!(
                "| {size} B | 2 MiB pages | not measured: no free huge pages (vm.nr_hugepages = {}; a run needs 33) | | | | |",
                reserved.trim()
            );
        }
    }
}
