//! Adversarial review of commit ee809cc (fixes to the batch API after the
//! first review: the `Draining` guard, held-record counting at publication,
//! quarter wake-ups, a handler that forks).
//!
//! Each test is one attack. Broke at ee809cc, fixed since (every
//! publication of `head` now counts what was consumed before it): a drain
//! that skips a padding record (or, MPSC, a discarded one) published
//! `head` past the messages it handed out without counting them in the
//! header (`try_find` -> `free_to`); a consumer killed in a later handler
//! left `pending_messages()` 1 in an empty ring for ever. Held: the producer's
//! counts, forks in drain/drain_timeout handlers (twice; a child that
//! panics), panicking handlers.
//! Children forked inside a handler only run the
//! rest of the drain call and `_exit`; the consumer killed mid-drain is a
//! re-run of this binary (`child`).

mod common;

use common::{spawn_child, SegmentGuard};
use shmring::{Consumer, Kind, Producer, RecvError, RecvTimeoutError, RingOptions, TryRecvError};
use std::cell::Cell;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{both_kinds as kinds, number_of as seq_of, numbered as msg};

fn kind_of(label: &str) -> Kind {
    if label == "mpsc" {
        Kind::Mpsc
    } else {
        Kind::Spsc
    }
}

fn options_for(kind: Kind) -> RingOptions {
    let options = RingOptions::new().kind(kind).capacity(4096).max_message(256);
    let options = if kind == Kind::Mpsc { options.max_producers(4) } else { options };
    options.liveness_interval(Duration::from_millis(20))
}

// ---------------------------------------------------------------------------
// Child processes (re-runs of this binary).

#[test]
#[ignore = "child process entry point"]
fn child() {
    let Ok(role) = std::env::var("SHMRING_CHILD_ROLE") else { return };
    if !role.starts_with("review2-") {
        return common::child_main();
    }
    common::child_watchdog();
    let name = std::env::var("SHMRING_NAME").expect("name");
    let label = std::env::var("SHMRING_KIND").expect("kind");
    match role.as_str() {
        // A consumer that takes 14 messages with `recv`, waits for the
        // producer to have sent 17 (the 16th pads to the next lap), then
        // drains: message 14, the padding, then blocks in the handler of 15.
        "review2-drain-across-padding" => {
            let mut consumer = Consumer::open(&name, &options_for(kind_of(&label))).expect("open consumer");
            let mut buf = Vec::new();
            for seq in 0..14 {
                consumer.recv(&mut buf).expect("recv");
                assert_eq!(seq_of(&buf), seq);
            }
            println!("took14");
            let deadline = Instant::now() + Duration::from_secs(30);
            while shmring::inspect::inspect(&name).expect("inspect").messages_sent < 17 {
                assert!(Instant::now() < deadline, "the producer did not send");
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = consumer.try_drain(usize::MAX, |m| {
                if seq_of(m) == 15 {
                    println!("blocked");
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            });
            panic!("the drain ended: it should have blocked");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A consumer killed inside a drain's handler: `drain`'s docs say its
/// successor gets what the dead drain handed out since its last
/// publication, and the header's `messages` count (`messages_read`) is
/// added at each publication. But the drain crossed a padding record at the
/// lap's end: `try_find` skips it with `free_to`, which publishes `head`
/// (past message 14, handed out by the drain) without counting message 14.
/// The successor does not get 14 again, and nobody ever counts it:
/// `pending_messages()` says 1 in an empty ring, for ever.
#[test]
fn a_consumer_killed_after_its_drain_crossed_a_padding_leaves_no_phantom_pending_message_spsc() {
    killed_after_padding(Kind::Spsc, "spsc");
}

#[test]
fn a_consumer_killed_after_its_drain_crossed_a_padding_leaves_no_phantom_pending_message_mpsc() {
    killed_after_padding(Kind::Mpsc, "mpsc");
}

fn killed_after_padding(kind: Kind, label: &str) {
    {
        let segment = SegmentGuard::new(&format!("review2-padding-kill-{label}"));
        let options = options_for(kind);
        let mut producer = Producer::create(segment.name(), &options).expect("create");
        // 15 messages of 256 bytes: 264-byte records, 3960 bytes.
        for seq in 0..15 {
            producer.send(&msg(seq, 256)).expect("send");
        }
        let mut child = spawn_child(
            "review2-drain-across-padding",
            &[("SHMRING_NAME", segment.name().into()), ("SHMRING_KIND", label.into())],
        );
        child.wait_for_line("took14");
        // 15 pads the last 136 bytes of the lap and starts the next; 16
        // follows it.
        producer.send(&msg(15, 256)).expect("send 15");
        producer.send(&msg(16, 256)).expect("send 16");
        child.wait_for_line("blocked");
        std::thread::sleep(Duration::from_millis(50));
        let at_kill = shmring::inspect::inspect(segment.name()).expect("inspect");
        child.kill_alive(label);
        let mut consumer = within_open(segment.name(), &options);
        let mut got = Vec::new();
        let _ = consumer.try_drain(usize::MAX, |m| got.push(seq_of(m)));
        assert_eq!(got, [15, 16], "{label}: the successor gets what the dead drain had not published");
        let info = shmring::inspect::inspect(segment.name()).expect("inspect");
        assert_eq!(
            (info.messages_sent, info.messages_read, info.pending_messages(), info.head == info.tail),
            (17, 17, 0, true),
            "{label}: (sent, read, pending, empty) after every message was delivered exactly once; while the \
             handler of 15 ran, the header said head {} and messages_read {}: message 14 was released uncounted",
            at_kill.head,
            at_kill.messages_read
        );
    }
}

fn within_open(name: &str, options: &RingOptions) -> Consumer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Consumer::open(name, options) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "reopen: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The same publication, seen from the handler without a kill: while a
/// drain hands out the message after a padding record, the header already
/// says `head` is past the messages before it but does not count them.
/// (`inspect`'s counters disagree with its positions for as long as the
/// handler runs; a quarter publication counts first.)
#[test]
fn counts_agree_with_head_while_a_drain_runs_past_a_padding_spsc() {
    padding_inspect(Kind::Spsc, "spsc");
}

#[test]
fn counts_agree_with_head_while_a_drain_runs_past_a_padding_mpsc() {
    padding_inspect(Kind::Mpsc, "mpsc");
}

/// MPSC: a dropped grant leaves a discarded record, which the drain skips
/// with `free_to` too: the same uncounted publication.
#[test]
fn counts_agree_with_head_while_a_drain_runs_past_a_discarded_record_mpsc() {
    let segment = SegmentGuard::new("review2-discard-inspect");
    let options = options_for(Kind::Mpsc);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("open");
    producer.send(&msg(0, 16)).expect("send");
    producer.send(&msg(1, 16)).expect("send");
    drop(producer.reserve(64).expect("reserve"));
    producer.send(&msg(2, 16)).expect("send");
    let mut seen = None;
    consumer
        .try_drain(usize::MAX, |m| {
            if seq_of(m) == 2 {
                let info = shmring::inspect::inspect(segment.name()).expect("inspect");
                seen = Some((info.head, info.messages_read));
            }
        })
        .expect("drain");
    let (head, read) = seen.expect("2 handed out");
    // Records 0 and 1 are 24 bytes each, the discarded one 72.
    assert!(
        !(head >= 48 && read < 2),
        "during the handler of 2, head {head} is published past messages 0 and 1 but messages_read is {read}"
    );
}

fn padding_inspect(kind: Kind, label: &str) {
    {
        let segment = SegmentGuard::new(&format!("review2-padding-inspect-{label}"));
        let options = options_for(kind);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        for seq in 0..15 {
            producer.send(&msg(seq, 256)).expect("send");
        }
        let mut buf = Vec::new();
        for _ in 0..14 {
            consumer.recv(&mut buf).expect("recv");
        }
        producer.send(&msg(15, 256)).expect("send 15");
        let mut seen = None;
        consumer
            .try_drain(usize::MAX, |m| {
                if seq_of(m) == 15 {
                    let info = shmring::inspect::inspect(segment.name()).expect("inspect");
                    seen = Some((info.head, info.messages_read));
                }
            })
            .expect("drain");
        let (head, read) = seen.expect("15 handed out");
        // head 4096 releases 0..=14 (15 messages); the count says 14.
        assert!(
            !(head >= 4096 && read < 15),
            "{label}: during the handler of 15, head {head} is published past message 14 but messages_read is {read}"
        );
    }
}

// ---------------------------------------------------------------------------
// Producer side: counts.

/// try_send_batch on a nearly full ring whose second message pads to the
/// next lap and whose fifth does not fit: exactly the messages the call
/// says it sent arrive, and the header's counts are exact at every step.
#[test]
fn try_send_batch_stopping_after_a_padding_counts_exactly() {
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("review2-stop-pad-{label}"));
        let options = options_for(kind);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        let mut next = 0u64;
        let mut got = Vec::new();
        for round in 0..40u64 {
            let n = 3 + (round % 9) as usize;
            let batch: Vec<Vec<u8>> =
                (0..n as u64).map(|i| msg(next + i, 8 + ((next + i) * 37 % 240) as usize)).collect();
            let sent = match producer.try_send_batch(&batch) {
                Ok(sent) => sent,
                Err(shmring::TrySendError::Full) => 0,
                Err(e) => panic!("{label}: {e}"),
            };
            next += sent as u64;
            let info = shmring::inspect::inspect(segment.name()).expect("inspect");
            assert_eq!(info.messages_sent, next, "{label} round {round}: messages_sent after a batch of {sent}/{n}");
            assert_eq!(producer.stats().messages, next, "{label} round {round}: producer stats");
            // Take some (not all) so the next batch meets a full ring.
            let _ = consumer.try_drain(1 + (round % 4) as usize, |m| got.push(seq_of(m)));
            let info = shmring::inspect::inspect(segment.name()).expect("inspect");
            assert_eq!(info.messages_read, got.len() as u64, "{label} round {round}: messages_read");
        }
        let _ = consumer.try_drain(usize::MAX, |m| got.push(seq_of(m)));
        assert_eq!(got, (0..next).collect::<Vec<_>>(), "{label}");
        let info = shmring::inspect::inspect(segment.name()).expect("inspect");
        assert_eq!((info.messages_sent, info.messages_read, info.pending_messages()), (next, next, 0), "{label}");
    }
}

/// A message whose `as_ref` panics on its second call (the write) when
/// `panics`.
struct MaybePanics {
    bytes: Vec<u8>,
    calls: Cell<u32>,
    panics: bool,
}

impl AsRef<[u8]> for MaybePanics {
    fn as_ref(&self) -> &[u8] {
        self.calls.set(self.calls.get() + 1);
        if self.panics && self.calls.get() == 2 {
            std::panic::panic_any("as_ref fails");
        }
        &self.bytes
    }
}

/// Two threads, many laps of a 4 KiB ring: the producer mixes send_batch
/// (long: quarter publications; padding mid-batch), try_send_batch (stops
/// on a full ring), batches whose as_ref panics part-way, send, try_send
/// and reserve/commit_len; the consumer mixes drain, try_drain,
/// drain_timeout (some handlers panic), recv and read. Every message
/// arrives once, in order, and the header's counts end exact.
#[test]
fn mixed_batches_sends_and_drains_with_panics_keep_counts_exact() {
    std::panic::set_hook(Box::new(|info| {
        if info.payload().downcast_ref::<&str>().is_some_and(|s| s.ends_with("fails")) {
            return;
        }
        eprintln!("{info}");
    }));
    for (kind, label) in kinds() {
        let segment = SegmentGuard::new(&format!("review2-mixed-{label}"));
        let options = options_for(kind);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        const COUNT: u64 = 40_000;
        let sender = std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut rand = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut seq = 0u64;
            let size = |s: u64| 8 + (s.wrapping_mul(2_654_435_761) % 249) as usize;
            while seq < COUNT {
                match rand() % 7 {
                    0 | 1 => {
                        let n = 1 + (rand() % 80);
                        let batch: Vec<Vec<u8>> = (seq..COUNT.min(seq + n)).map(|s| msg(s, size(s))).collect();
                        assert_eq!(producer.send_batch(&batch), Ok(batch.len()));
                        seq += batch.len() as u64;
                    }
                    2 => {
                        let n = 1 + (rand() % 40);
                        let batch: Vec<Vec<u8>> = (seq..COUNT.min(seq + n)).map(|s| msg(s, size(s))).collect();
                        match producer.try_send_batch(&batch) {
                            Ok(sent) => seq += sent as u64,
                            Err(shmring::TrySendError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("try_send_batch: {e}"),
                        }
                    }
                    3 => {
                        let n = 2 + (rand() % 30);
                        let at = (rand() % n) as usize;
                        let batch: Vec<MaybePanics> = (seq..COUNT.min(seq + n))
                            .enumerate()
                            .map(|(i, s)| MaybePanics { bytes: msg(s, size(s)), calls: Cell::new(0), panics: i == at })
                            .collect();
                        let len = batch.len();
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| producer.send_batch(&batch)));
                        if at < len {
                            assert!(r.is_err(), "as_ref should have panicked");
                            seq += at as u64;
                        } else {
                            seq += len as u64;
                        }
                    }
                    4 => {
                        producer.send(&msg(seq, size(seq))).expect("send");
                        seq += 1;
                    }
                    5 => {
                        if producer.try_send(&msg(seq, size(seq))).is_ok() {
                            seq += 1;
                        }
                    }
                    _ => {
                        let m = msg(seq, size(seq));
                        let mut grant = producer.reserve(256).expect("reserve");
                        grant[..m.len()].copy_from_slice(&m);
                        grant.commit_len(m.len());
                        seq += 1;
                    }
                }
            }
            producer
        });
        let mut next = 0u64;
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut round = 0u64;
        while next < COUNT {
            assert!(Instant::now() < deadline, "{label}: stuck at {next}");
            round += 1;
            match round % 6 {
                0 => {
                    consumer.recv(&mut buf).expect("recv");
                    assert_eq!(seq_of(&buf), next, "{label}");
                    next += 1;
                }
                1 => {
                    let m = consumer.read().expect("read");
                    assert_eq!(seq_of(&m), next, "{label}");
                    next += 1;
                }
                2 => {
                    let panic_at = round % 13;
                    let mut k = 0;
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        consumer.drain_timeout(usize::MAX, Duration::from_secs(10), |m| {
                            assert_eq!(seq_of(m), next, "{label}");
                            next += 1;
                            k += 1;
                            if k == panic_at {
                                std::panic::panic_any("handler fails");
                            }
                        })
                    }));
                    if let Ok(r) = r {
                        r.unwrap_or_else(|e| panic!("{label}: {e}"));
                    }
                }
                3 => {
                    let _ = consumer.try_drain(1 + (round % 50) as usize, |m| {
                        assert_eq!(seq_of(m), next, "{label}");
                        next += 1;
                    });
                }
                _ => {
                    consumer
                        .drain(1 + (round % 200) as usize, |m| {
                            assert_eq!(seq_of(m), next, "{label}");
                            next += 1;
                        })
                        .expect("drain");
                }
            }
        }
        let producer = sender.join().expect("sender");
        assert_eq!(
            consumer.try_drain(usize::MAX, |m| panic!("{label}: extra {}", seq_of(m))),
            Err(TryRecvError::Empty)
        );
        let info = shmring::inspect::inspect(segment.name()).expect("inspect");
        assert_eq!(
            (info.messages_sent, info.messages_read, info.pending_messages()),
            (COUNT, COUNT, 0),
            "{label}: (sent, read, pending)"
        );
        assert_eq!((producer.stats().messages, consumer.stats().messages), (COUNT, COUNT), "{label}: stats");
    }
    let _ = std::panic::take_hook();
}

// ---------------------------------------------------------------------------
// Fork inside handlers.

/// What the child of a fork inside a handler reports over `fd`: 'h' for
/// each message it is handed, then 'F' if its drain call returned
/// `ForkedHandle`, 'O' for anything else; 'P' if the call panicked.
fn child_reports(fd: i32, byte: u8) {
    // SAFETY: a raw write of one byte from a live buffer.
    unsafe { libc::write(fd, [byte].as_ptr().cast(), 1) };
}

/// `drain_timeout`'s handler forks twice (at messages 0 and 3): each
/// child's drain_timeout returns `ForkedHandle` at once, handed nothing
/// more; the parent's drain goes on with every message, and the counts are
/// exact afterwards; the parent's next drains work.
#[test]
fn forking_twice_in_drain_timeout_ends_each_childs_drain_at_once() {
    for in_place in [false, true] {
        for (kind, label) in kinds() {
            let label = format!("{label} {}", if in_place { "in place" } else { "copied" });
            let segment = SegmentGuard::new("review2-fork-twice");
            let options = options_for(kind).capacity(1 << 16).borrow_in_place(in_place);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            for seq in 0..10 {
                producer.send(&msg(seq, 16)).expect("send");
            }
            let (mut parent_end, child_end) = UnixStream::pair().expect("socketpair");
            let child_fd = child_end.as_raw_fd();
            let parent_pid = std::process::id();
            let mut children = Vec::new();
            let mut parent_saw = Vec::new();
            let r = consumer.drain_timeout(usize::MAX, Duration::from_secs(5), |m| {
                let seq = seq_of(m);
                if std::process::id() != parent_pid {
                    child_reports(child_fd, b'h');
                    return;
                }
                parent_saw.push(seq);
                if seq == 0 || seq == 3 {
                    // SAFETY: the child only returns through the drain and
                    // `_exit`s below.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0);
                    if pid > 0 {
                        children.push(pid);
                    }
                }
            });
            if std::process::id() != parent_pid {
                child_reports(child_fd, if matches!(r, Err(RecvTimeoutError::ForkedHandle(_))) { b'F' } else { b'O' });
                // SAFETY: leaves the child without running anything inherited.
                unsafe { libc::_exit(0) }
            }
            drop(child_end);
            assert_eq!(r, Ok(10), "{label}");
            assert_eq!(parent_saw, (0..10).collect::<Vec<_>>(), "{label}");
            parent_end.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut reports = Vec::new();
            let _ = parent_end.read_to_end(&mut reports);
            for pid in &children {
                let mut status = 0;
                // SAFETY: our own child.
                unsafe { libc::waitpid(*pid, &mut status, 0) };
            }
            assert_eq!(children.len(), 2);
            assert_eq!(String::from_utf8_lossy(&reports), "FF", "{label}: the children's reports");
            let info = shmring::inspect::inspect(segment.name()).expect("inspect");
            assert_eq!((info.messages_read, info.pending_messages(), info.head == info.tail), (10, 0, true), "{label}");
            producer.send(&msg(10, 16)).expect("send");
            let mut more = Vec::new();
            assert_eq!(consumer.try_drain(usize::MAX, |m| more.push(seq_of(m))), Ok(1), "{label}");
            assert_eq!(more, [10], "{label}");
        }
    }
}

/// The handler forks and then panics in the child (before the wrapper can
/// say "forked"): the child's `Draining` guard is not inert and, unwinding,
/// counts, publishes `head` and wakes: into the child's private copy of the
/// mapping, so the parent's ring must not see any of it. The parent holds
/// the drain for a while after the fork so the child's unwinding happens
/// while the parent's batch still holds messages back.
#[test]
fn a_child_that_panics_in_the_handler_after_a_fork_does_not_touch_the_parents_ring() {
    std::panic::set_hook(Box::new(|_| {}));
    for in_place in [false, true] {
        for (kind, label) in kinds() {
            let label = format!("{label} {}", if in_place { "in place" } else { "copied" });
            let segment = SegmentGuard::new("review2-fork-panic");
            let options = options_for(kind).capacity(1 << 16).borrow_in_place(in_place);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            for seq in 0..10 {
                producer.send(&msg(seq, 16)).expect("send");
            }
            let (mut parent_end, child_end) = UnixStream::pair().expect("socketpair");
            let child_fd = child_end.as_raw_fd();
            let parent_pid = std::process::id();
            let mut child_pid = 0;
            let mut during = None;
            parent_end.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                consumer.drain(usize::MAX, |m| {
                    let seq = seq_of(m);
                    if seq == 2 {
                        // SAFETY: the child panics out of the drain, is
                        // caught below and `_exit`s.
                        let pid = unsafe { libc::fork() };
                        assert!(pid >= 0);
                        if pid == 0 {
                            std::panic::panic_any("child handler fails");
                        }
                        child_pid = pid;
                        // Let the child unwind, then look at the header
                        // while this batch holds 0..=2 back.
                        let mut b = [0u8; 1];
                        // SAFETY: a raw read into a live buffer.
                        unsafe { libc::read(parent_end.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
                        let info = shmring::inspect::inspect(segment.name()).expect("inspect");
                        during = Some((info.head, info.messages_read));
                    }
                })
            }));
            if std::process::id() != parent_pid {
                child_reports(child_fd, if r.is_err() { b'P' } else { b'O' });
                // SAFETY: leaves the child without running anything inherited.
                unsafe { libc::_exit(0) }
            }
            drop(child_end);
            assert_eq!(r.ok(), Some(Ok(10)), "{label}: the parent's drain");
            let mut status = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(child_pid, &mut status, 0) };
            let mut rest = Vec::new();
            let _ = parent_end.read_to_end(&mut rest);
            assert_eq!(
                during,
                Some((0, 0)),
                "{label}: (head, messages_read) in the parent's ring after the child unwound"
            );
            let info = shmring::inspect::inspect(segment.name()).expect("inspect");
            assert_eq!((info.messages_read, info.pending_messages()), (10, 0), "{label}");
        }
    }
    let _ = std::panic::take_hook();
}

/// `drain` (blocking) whose handler forks at its first message, which it
/// waited for: the child returns `ForkedHandle`; the parent's drain is
/// unaffected and so are its later calls (including after a panic).
#[test]
fn forking_in_a_blocking_drain_ends_the_childs_drain() {
    let segment = SegmentGuard::new("review2-fork-drain");
    let options = options_for(Kind::Spsc).capacity(1 << 16).borrow_in_place(true);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("open");
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        producer.send_batch(&(0..5).map(|s| msg(s, 16)).collect::<Vec<_>>()).expect("batch");
        producer
    });
    let (mut parent_end, child_end) = UnixStream::pair().expect("socketpair");
    let child_fd = child_end.as_raw_fd();
    let parent_pid = std::process::id();
    let mut child_pid = 0;
    let mut got = Vec::new();
    let r = consumer.drain(usize::MAX, |m| {
        if std::process::id() != parent_pid {
            child_reports(child_fd, b'h');
            return;
        }
        got.push(seq_of(m));
        if got.len() == 1 {
            // SAFETY: the child only returns through the drain and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid > 0 {
                child_pid = pid;
            }
        }
    });
    if std::process::id() != parent_pid {
        child_reports(child_fd, if matches!(r, Err(RecvError::ForkedHandle(_))) { b'F' } else { b'O' });
        // SAFETY: leaves the child without running anything inherited.
        unsafe { libc::_exit(0) }
    }
    drop(child_end);
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(child_pid, &mut status, 0) };
    let mut reports = Vec::new();
    let _ = parent_end.read_to_end(&mut reports);
    assert_eq!(String::from_utf8_lossy(&reports), "F", "the child's report");
    let mut producer = sender.join().expect("sender");
    let count = r.expect("parent drain");
    while got.len() < 5 {
        consumer.drain(usize::MAX, |m| got.push(seq_of(m))).expect("drain");
    }
    assert!(count >= 1);
    assert_eq!(got, (0..5).collect::<Vec<_>>());
    producer.send(&msg(5, 16)).expect("send");
    let info = shmring::inspect::inspect(segment.name()).expect("inspect");
    assert_eq!((info.messages_sent, info.messages_read), (6, 5));
}
