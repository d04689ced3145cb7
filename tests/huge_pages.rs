//! Rings on 2 MiB huge pages (`RingOptions::huge_pages`): only anonymous
//! rings of at least a huge page may ask; a pool too small is a clear error
//! that takes nothing; a huge ring streams between processes and across
//! `fork` like any other, and every page is back in the pool, and no mapping
//! left, once its handles and descriptors are gone.
//!
//! The tests that need huge pages take them from the free pool and, if it is
//! short and this process may (root), reserve more (`vm.nr_hugepages`,
//! restored afterwards). Where neither is possible they say so and pass,
//! unless `SHMRING_REQUIRE_HUGE_PAGES=1` (which `.ci/run` sets) makes that a
//! failure. The tests share the machine's pool, so they take turns, and
//! they count its pages exactly: nothing else may take or reserve huge
//! pages while they run.

mod common;

use common::{SegmentGuard, TempDir};
use shmring::{AnonymousRing, Consumer, Error, Producer, RingOptions, TryRecvError};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const HUGE_PAGE: u64 = 2 << 20;
const CAPACITY: usize = 4 << 20;
/// Header and data of a ring of [`CAPACITY`]: one huge page more.
const PAGES: u64 = 1 + CAPACITY as u64 / HUGE_PAGE;
const COUNT: u64 = 100_000;

static POOL: Mutex<()> = Mutex::new(());

#[test]
#[ignore = "run as a child process by the tests"]
fn child() {
    common::child_main();
}

fn options() -> RingOptions {
    RingOptions::new().capacity(CAPACITY).max_message(64 << 10).huge_pages(true)
}

/// A field of /proc/meminfo (a count of pages).
fn meminfo(key: &str) -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().trim_end_matches(" kB").trim()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"))
}

/// Pages free and not reserved by a mapping that has not touched them yet.
fn free_pages() -> u64 {
    meminfo("HugePages_Free").saturating_sub(meminfo("HugePages_Rsvd"))
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn pool_size() -> Option<u64> {
    std::fs::read_to_string(NR_HUGEPAGES).ok()?.trim().parse().ok()
}

/// At least `pages` free huge pages for as long as it lives; the pages it
/// added to the pool are taken out again on drop.
struct Reserved {
    added: u64,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(total) = pool_size().filter(|_| self.added > 0) {
            let _ = std::fs::write(NR_HUGEPAGES, total.saturating_sub(self.added).to_string());
        }
    }
}

fn reserve(pages: u64) -> Option<Reserved> {
    let free = free_pages();
    if free >= pages {
        return Some(Reserved { added: 0 });
    }
    let total = pool_size()?;
    std::fs::write(NR_HUGEPAGES, (total + pages - free).to_string()).ok()?;
    // The kernel may find fewer contiguous 2 MiB blocks than asked for.
    let reserved = Reserved { added: pool_size()?.saturating_sub(total) };
    (free_pages() >= pages).then_some(reserved)
}

/// A test's turn at the pool: the other tests of this binary wait, and at
/// least the pages it asked for are free until it drops.
struct Turn {
    _reserved: Reserved,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// Waits for this test's turn at the pool and reserves `pages`, or returns
/// `None` after saying why the test checks less.
fn take_turn(pages: u64, test: &str) -> Option<Turn> {
    let turn = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let reserved = reserve(pages);
    if reserved.is_none() {
        let required = std::env::var("SHMRING_REQUIRE_HUGE_PAGES").is_ok_and(|v| v == "1");
        let why =
            format!("{test}: {pages} free huge pages needed, {} free and the pool cannot be raised here", free_pages());
        assert!(!required, "{why} (SHMRING_REQUIRE_HUGE_PAGES=1)");
        eprintln!("{why}: skipped");
    }
    Some(Turn { _reserved: reserved?, _turn: turn })
}

/// Mappings of this process whose file is `label`'s memfd.
fn mappings_of(label: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().filter(|l| l.contains(&format!("/memfd:{label} "))).count()
}

fn inheritable(fd: impl AsFd) -> OwnedFd {
    rustix::io::dup(fd).expect("dup")
}

#[test]
fn huge_pages_back_only_anonymous_rings_of_a_huge_page_or_more() {
    let segment = SegmentGuard::new("huge-named");
    let refused = |e: Error, what: &str| match e {
        Error::InvalidOptions { reason, .. } => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected InvalidOptions ({what}), got {other}"),
    };
    refused(Producer::create(segment.name(), &options()).expect_err("named"), "only anonymous rings");
    refused(Consumer::create(segment.name(), &options()).expect_err("named"), "only anonymous rings");
    assert!(!std::path::Path::new(&segment.path()).exists(), "a refused named ring left {}", segment.path());
    let dir = TempDir::new("huge-file");
    let path = dir.0.join("ring");
    refused(options().create_file(&path).expect_err("file"), "only anonymous rings");
    assert!(!path.exists(), "a refused file ring left {}", path.display());
    let small = options().capacity(1 << 20).max_message(4096);
    refused(AnonymousRing::create("huge-small", &small).expect_err("1 MiB"), "at least one huge page");
}

/// Whether the kernel may add surplus huge pages beyond the pool (or has):
/// then the pool has no fixed size to exceed, and a test of a short pool
/// says so and passes.
fn surplus_possible(test: &str) -> bool {
    let possible = meminfo("HugePages_Surp") > 0
        || std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages").is_ok_and(|v| v.trim() != "0");
    if possible {
        eprintln!("{test}: surplus huge pages may be allocated here: the pool has no fixed size to exceed; skipped");
    }
    possible
}

#[test]
fn a_pool_too_small_is_a_clear_error_that_takes_nothing() {
    let _turn = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if surplus_possible("a pool too small") {
        return;
    }
    let free = free_pages();
    // One huge page more than is free, at least: header and data.
    let capacity = ((free + 1) * HUGE_PAGE).next_power_of_two();
    let too_large = RingOptions::new().capacity(capacity as usize).max_message(4096).huge_pages(true);
    match AnonymousRing::create("huge-too-large", &too_large) {
        Err(e @ Error::NoHugePages { bytes, .. }) => {
            assert_eq!(bytes, capacity + HUGE_PAGE);
            let message = e.to_string();
            assert!(message.contains("vm.nr_hugepages") && message.contains("HugePages_Free"), "{message}");
        }
        Err(other) => panic!("expected NoHugePages, got {other}"),
        Ok(_) => panic!("{capacity} bytes of huge pages with {free} pages free"),
    }
    assert_eq!(free_pages(), free, "a failed create kept huge pages");
}

/// Parent produces and a child consumes, then the reverse, through a huge
/// ring the child inherits; the ring takes its pages while it lives and
/// returns every one, and leaves no mapping, once it is gone.
#[test]
fn a_huge_ring_streams_between_processes_and_gives_its_pages_back() {
    let Some(_turn) = take_turn(PAGES, "streaming") else { return };
    let before = free_pages();
    for child_role in ["anon-consume", "anon-produce"] {
        let ring = AnonymousRing::create("huge-stream", &options()).expect("create");
        assert_eq!(free_pages(), before - PAGES, "a {CAPACITY}-byte ring takes {PAGES} huge pages");
        common::stream_with_inheriting_child(&ring, &options(), child_role, COUNT);
        drop(ring);
        assert_eq!(mappings_of("huge-stream"), 0, "a mapping of the ring outlived it");
    }
    assert_eq!(free_pages(), before, "huge pages not given back");
}

/// Opening a huge ring from a descriptor (as a receiver of one does) maps
/// its header first: that probe, a huge page long, is unmapped whole.
#[test]
fn opening_a_huge_ring_by_descriptor_leaves_no_mapping_behind() {
    let Some(_turn) = take_turn(PAGES, "opening") else { return };
    let before = free_pages();
    let ring = AnonymousRing::create("huge-open", &options()).expect("create");
    let fd = inheritable(&ring);
    drop(ring);
    assert_eq!(mappings_of("huge-open"), 0);
    for _ in 0..3 {
        let opened = AnonymousRing::open_inherited(fd.as_raw_fd(), &options()).expect("open_inherited");
        let (mut producer, mut consumer) =
            (opened.producer(&options()).expect("producer"), opened.consumer(&options()).expect("consumer"));
        producer.send(&[9u8; 65536]).expect("send");
        let mut buf = Vec::new();
        assert_eq!(consumer.recv(&mut buf).expect("recv"), 65536);
        assert!(buf.iter().all(|&b| b == 9));
        assert_eq!(mappings_of("huge-open"), 3, "the ring's own mapping and one per handle");
    }
    assert_eq!(mappings_of("huge-open"), 0, "a probe or a handle's mapping outlived it");
    drop(fd);
    assert_eq!(free_pages(), before, "huge pages not given back");
}

/// The demo's `--huge-pages`: a verified stream through a huge ring its
/// children inherit.
#[test]
fn the_demo_streams_through_a_huge_ring() {
    let Some(_turn) = take_turn(PAGES, "demo") else { return };
    let before = free_pages();
    let capacity = CAPACITY.to_string();
    let args = ["--fork", "--huge-pages", "--capacity", &capacity, "--size", "4096", "--seconds", "1", "--no-pipe"];
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--release", "--example", "demo", "--"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo run the demo");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo {args:?} failed: {}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("every byte and each producer's order verified"), "{stdout}");
    assert_eq!(free_pages(), before, "the demo's huge pages not given back");
}

/// A child forked while a huge ring's handles are attached holds none of
/// their mappings (they are replaced in it, as on 4 KiB pages), cannot use
/// them, and leaves the parent's stream intact.
#[test]
fn a_child_forked_with_huge_handles_holds_none_of_their_mappings() {
    let Some(_turn) = take_turn(PAGES, "fork") else { return };
    let ring = AnonymousRing::create("huge-fork", &options()).expect("create");
    let (mut producer, mut consumer) =
        (ring.producer(&options()).expect("producer"), ring.consumer(&options()).expect("consumer"));
    producer.send(b"before").expect("send");
    assert_eq!(mappings_of("huge-fork"), 3);
    let (mut parent_end, mut child_end) = UnixStream::pair().expect("socketpair");
    // SAFETY: the child only checks its maps, tries one send, writes a line
    // and leaves with `_exit` (no atexit handlers, no destructors).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let report =
            format!("mappings={} send_refused={}", mappings_of("huge-fork"), producer.try_send(b"child").is_err());
        let _ = child_end.write_all(report.as_bytes());
        // SAFETY: leaves at once (see above).
        unsafe { libc::_exit(0) }
    }
    drop(child_end);
    parent_end.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut report = String::new();
    let read = parent_end.read_to_string(&mut report);
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: our own child; `status` is a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
        if Instant::now() > deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    read.expect("the child's report");
    // The ring's own segment is inherited as it is; the handles' are not.
    assert_eq!(report, "mappings=1 send_refused=true");
    producer.send(b"after").expect("send");
    let mut buf = Vec::new();
    for expected in [&b"before"[..], b"after"] {
        consumer.recv_timeout(&mut buf, Duration::from_secs(5)).expect("recv");
        assert_eq!(buf, expected);
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "the child's send arrived");
}

/// A huge ring whose data pages were given back to the pool (a hole
/// punched, as a peer holding the descriptor can) and then taken by someone
/// else: opening it would need pages the pool no longer has. The open fails
/// with `NoHugePages`, takes no page and leaves no mapping; once pages are
/// free again the same descriptor opens, an empty ring that streams.
#[test]
fn opening_a_huge_ring_the_pool_cannot_back_is_no_huge_pages() {
    let Some(_turn) = take_turn(PAGES, "opening a sparse ring") else { return };
    if surplus_possible("opening a sparse ring") {
        return;
    }
    let ring = AnonymousRing::create("huge-sparse", &options()).expect("create");
    let fd = inheritable(&ring);
    drop(ring);
    // The data pages go back to the pool; the header's page stays.
    rustix::fs::fallocate(
        &fd,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        HUGE_PAGE,
        PAGES * HUGE_PAGE - HUGE_PAGE,
    )
    .expect("punch out the data pages");
    // Someone else takes every free page but one: the ring needs two.
    let free = free_pages();
    assert!(free >= PAGES - 1, "the data pages went back to the pool: {free} free");
    let hog = rustix::fs::memfd_create(
        "huge-hog",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::HUGETLB | rustix::fs::MemfdFlags::HUGE_2MB,
    )
    .expect("memfd_create");
    rustix::fs::fallocate(&hog, rustix::fs::FallocateFlags::empty(), 0, (free - 1) * HUGE_PAGE)
        .expect("take the free pages");
    assert_eq!(free_pages(), 1, "the hog holds the pool but one page");
    match AnonymousRing::open_inherited(fd.as_raw_fd(), &options()) {
        Err(e @ Error::NoHugePages { bytes, .. }) => {
            assert_eq!(bytes, PAGES * HUGE_PAGE, "{e}");
            assert!(e.to_string().contains("vm.nr_hugepages"), "{e}");
        }
        Err(other) => panic!("expected NoHugePages, got {other}"),
        Ok(_) => panic!("opened a ring of {PAGES} huge pages with one free"),
    }
    assert_eq!(free_pages(), 1, "the failed open took or reserved a page");
    assert_eq!(mappings_of("huge-sparse"), 0, "the failed open left a mapping");
    drop(hog);
    let opened = AnonymousRing::open_inherited(fd.as_raw_fd(), &options()).expect("open with pages free");
    let (mut producer, mut consumer) =
        (opened.producer(&options()).expect("producer"), opened.consumer(&options()).expect("consumer"));
    assert_eq!(consumer.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    producer.send(&[5u8; 4096]).expect("send");
    let mut buf = Vec::new();
    assert_eq!(consumer.recv(&mut buf).expect("recv"), 4096);
    assert!(buf.iter().all(|&b| b == 5));
}
