//! Handles across `fork`: a child that inherits a handle cannot act for the
//! parent (its operations fail, its drop does nothing to the ring), and a
//! process's liveness ends with it even while a child it forked lives on with
//! an inherited copy of the mapping.
//!
//! These tests call `fork()` from a multi-threaded test binary: children do
//! little, report through a socket and always leave with `_exit`. Every wait
//! has a deadline, every child is killed if the test fails, and every
//! segment is unlinked by its guard.

mod common;

use common::SegmentGuard;
use shmring::{
    Consumer, Error, ForkedHandle, Kind, Producer, RecvError, RecvTimeoutError, RingOptions, Role, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long a well-behaved child may take.
const CHILD_LIMIT: Duration = Duration::from_secs(10);
/// How long a dead participant may stay alive in the survivor's eyes (the
/// liveness interval below is 10 ms).
const DEATH_LIMIT: Duration = Duration::from_secs(2);

fn options(kind: Kind) -> RingOptions {
    let options = RingOptions::new().capacity(64 * 1024).liveness_interval(Duration::from_millis(10));
    match kind {
        Kind::Spsc => options,
        Kind::Mpsc => options.kind(Kind::Mpsc).max_producers(4),
    }
}

/// Either side of a `fork`.
enum Fork {
    /// In the child: the child's end of a socket to the parent.
    Child(UnixStream),
    /// In the parent.
    Parent(Forked),
}

/// Forks. The child gets the other end of a socket the parent reads its
/// report from.
fn fork() -> Fork {
    let (parent_end, child_end) = UnixStream::pair().expect("socketpair");
    // SAFETY: the child only runs the test's own simple code and
    // leaves with `_exit` (see `in_child`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(parent_end);
        Fork::Child(child_end)
    } else {
        drop(child_end);
        Fork::Parent(Forked { pid, socket: parent_end, reaped: false })
    }
}

/// Runs the child's part and leaves the process: exit status 0 if `body`
/// returned `Ok`, 1 (with the message sent to the parent) if it returned an
/// error, 2 if it panicked. Never returns, never runs destructors.
fn in_child(mut socket: UnixStream, body: impl FnOnce(&mut UnixStream) -> Result<(), String>) -> ! {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut socket)));
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            let _ = socket.write_all(format!("FAILED: {message}").as_bytes());
            1
        }
        Err(_) => {
            let _ = socket.write_all(b"FAILED: the child panicked");
            2
        }
    };
    // SAFETY: leaves at once, without running anything inherited
    // from the parent (atexit handlers, destructors, buffered output).
    unsafe { libc::_exit(code) }
}

/// A forked child: killed and reaped when dropped if it was not waited for.
struct Forked {
    pid: libc::pid_t,
    socket: UnixStream,
    reaped: bool,
}

impl Forked {
    /// Polls `waitpid(WNOHANG)` until the child ends or `limit` passes (then
    /// kills it); returns the raw wait status, or `None` on timeout.
    fn reap(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                self.reaped = true;
                return Some(status);
            }
            assert!(rc == 0, "waitpid: {}", std::io::Error::last_os_error());
            if start.elapsed() >= limit {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (at most `limit`) for the child to exit, and fails the test
    /// unless it exited with status 0.
    fn expect_success(mut self, limit: Duration) {
        let status = self.reap(limit);
        let report = self.report();
        let Some(status) = status else { panic!("the child did not finish within {limit:?} (killed). {report}") };
        let exited = libc::WIFEXITED(status);
        assert!(exited && libc::WEXITSTATUS(status) == 0, "the child failed (wait status {status:#x}). {report}");
    }

    /// What the child sent, without waiting for more.
    fn report(&mut self) -> String {
        let _ = self.socket.set_nonblocking(true);
        let mut report = String::new();
        let _ = self.socket.read_to_string(&mut report);
        report
    }

    /// Reads a pid the child sends (within `limit`).
    fn read_pid(&mut self, limit: Duration) -> libc::pid_t {
        self.socket.set_read_timeout(Some(limit)).expect("set_read_timeout");
        let mut bytes = [0u8; 4];
        if let Err(e) = self.socket.read_exact(&mut bytes) {
            let report = self.report();
            panic!("the child sent no pid within {limit:?}: {e}. {report}");
        }
        libc::pid_t::from_le_bytes(bytes)
    }

    /// SIGKILLs the child and reaps it (with a deadline).
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: our own unreaped child, so the pid is still its.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let mut status = 0;
            // SAFETY: as above.
            if unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } == self.pid {
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A grandchild (not ours to reap): SIGKILLed when dropped. It also exits by
/// itself when the socket it was given reaches end of file, that is when the
/// test process drops its end, and after a minute in any case.
struct Grandchild(libc::pid_t);

impl Grandchild {
    fn is_alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(self.0, 0) == 0 }
    }
}

impl Drop for Grandchild {
    fn drop(&mut self) {
        // SAFETY: the grandchild lives until killed or until the test
        // process drops its socket (after this guard, see `Grandchild`), so
        // the pid is still its.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// In a child: forks a grandchild that keeps everything the child had
/// (handles, grants) and just waits, then sends the grandchild's pid to the
/// parent. Returns only in the child.
fn fork_a_lingering_grandchild(socket: &mut UnixStream) -> Result<(), String> {
    // SAFETY: the child is single-threaded; the grandchild only
    // blocks on a read and leaves with `_exit`.
    let grandchild = unsafe { libc::fork() };
    if grandchild < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if grandchild == 0 {
        // Keep the inherited handles (nothing is dropped) until the test
        // process closes its end of the socket, or for a minute.
        let _ = socket.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = socket.read(&mut [0u8; 1]);
        // SAFETY: leaves without running any destructor.
        unsafe { libc::_exit(0) }
    }
    socket.write_all(&grandchild.to_le_bytes()).map_err(|e| format!("send the grandchild's pid: {e}"))
}

/// Receives from `consumer` until a message arrives or `limit` passes.
fn recv_within(consumer: &mut Consumer, limit: Duration) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let mut buf = Vec::new();
    loop {
        match consumer.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Ok(_) => return Ok(buf),
            Err(RecvTimeoutError::Timeout) if start.elapsed() < limit => {}
            Err(e) => return Err(format!("after {:?}: {e}", start.elapsed())),
        }
    }
}

/// Receives from `consumer` until it says `Disconnected` (what arrives
/// meanwhile fails the test) or `limit` passes. (MPSC: the consumer looks at
/// the producers' slots at most every probe interval, so `try_recv` right
/// after a detach may still say `Empty`.)
fn disconnected_within(consumer: &mut Consumer, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut buf = Vec::new();
    loop {
        match consumer.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) if start.elapsed() < limit => {}
            other => return Err(format!("after {:?}: {other:?}", start.elapsed())),
        }
    }
}

/// (a) A child that drops its copies of the parent's handles does not detach
/// them: the parent's consumer never sees `Disconnected` while the parent's
/// producer lives, and the name the consumer created stays.
#[test]
fn a_child_dropping_inherited_handles_leaves_the_parent_attached() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let guard = SegmentGuard::new("fork-drop");
        let options = options(kind);
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer = Producer::open(guard.name(), &options).expect("open producer");
        producer.send(b"before").expect("send");

        let child = match fork() {
            Fork::Child(socket) => in_child(socket, move |_| {
                drop(producer);
                drop(consumer);
                Ok(())
            }),
            Fork::Parent(child) => child,
        };
        child.expect_success(CHILD_LIMIT);

        let mut buf = Vec::new();
        assert_eq!(consumer.try_recv(&mut buf), Ok(6), "{kind}");
        assert_eq!(buf, b"before");
        assert_eq!(
            consumer.try_recv(&mut buf),
            Err(TryRecvError::Empty),
            "{kind}: the child's drop detached the producer"
        );
        producer.send(b"after").expect("send after the child left");
        assert_eq!(recv_within(&mut consumer, DEATH_LIMIT).as_deref(), Ok(&b"after"[..]), "{kind}");
        assert!(std::path::Path::new(&guard.path()).exists(), "{kind}: the child's drop unlinked the name");

        // The parent's own drop still detaches.
        drop(producer);
        assert_eq!(disconnected_within(&mut consumer, DEATH_LIMIT), Ok(()), "{kind}");
    }
}

/// (b) SPSC: a producer that dies is seen dead within the liveness interval,
/// although a grandchild it forked still maps the segment (and holds its
/// inherited handle).
#[test]
fn a_dead_producer_is_seen_dead_while_its_forked_child_lives() {
    let guard = SegmentGuard::new("fork-spsc-death");
    let options = options(Kind::Spsc);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");

    let mut child = match fork() {
        Fork::Child(socket) => in_child(socket, |socket| {
            let mut producer = Producer::open(guard.name(), &options).map_err(|e| format!("open: {e}"))?;
            producer.send(b"from the child").map_err(|e| format!("send: {e}"))?;
            fork_a_lingering_grandchild(socket)?;
            std::thread::sleep(Duration::from_secs(60)); // until killed
            Ok(())
        }),
        Fork::Parent(child) => child,
    };
    let grandchild = Grandchild(child.read_pid(CHILD_LIMIT));
    assert_eq!(recv_within(&mut consumer, CHILD_LIMIT).as_deref(), Ok(&b"from the child"[..]));

    child.kill();
    let died = Instant::now();
    let mut buf = Vec::new();
    let outcome = loop {
        match consumer.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Err(RecvTimeoutError::Timeout) if died.elapsed() < DEATH_LIMIT => {}
            other => break other,
        }
    };
    assert!(grandchild.is_alive(), "the grandchild should still be alive");
    assert_eq!(
        outcome,
        Err(RecvTimeoutError::Disconnected),
        "the dead producer was still alive after {:?}, held by its forked child",
        died.elapsed()
    );
    drop(grandchild);
}

/// (b) MPSC: a producer that dies holding a claim, after forking a child that
/// lives on: the consumer skips the torn record and delivers what another
/// producer sent after it.
#[test]
fn a_dead_producers_torn_claim_is_skipped_while_its_forked_child_lives() {
    let guard = SegmentGuard::new("fork-mpsc-torn");
    let options = options(Kind::Mpsc);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");

    let mut child = match fork() {
        Fork::Child(socket) => in_child(socket, |socket| {
            let mut producer = Producer::open(guard.name(), &options).map_err(|e| format!("open: {e}"))?;
            let mut grant = producer.reserve(16).map_err(|e| format!("reserve: {e}"))?;
            grant.copy_from_slice(b"never committed!");
            fork_a_lingering_grandchild(socket)?;
            std::thread::sleep(Duration::from_secs(60)); // until killed, claim held
            drop(grant);
            Ok(())
        }),
        Fork::Parent(child) => child,
    };
    let grandchild = Grandchild(child.read_pid(CHILD_LIMIT));
    let mut other = Producer::open(guard.name(), &options).expect("open another producer");
    other.send(b"after the torn one").expect("send");

    child.kill();
    let died = Instant::now();
    let received = recv_within(&mut consumer, DEATH_LIMIT);
    assert!(grandchild.is_alive(), "the grandchild should still be alive");
    assert_eq!(
        received.as_deref(),
        Ok(&b"after the torn one"[..]),
        "the dead producer's claim was not skipped within {:?} (its forked child holds it?)",
        died.elapsed()
    );
    assert_eq!(consumer.stats().torn_records, 1);
    drop(grandchild);
}

/// In a child, every operation of an inherited handle fails with an error
/// that names the segment and says why, nothing it tries reaches the ring,
/// and its drop leaves the parent's slots attached.
#[test]
fn an_inherited_handle_refuses_to_work_in_the_child() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        let guard = SegmentGuard::new("fork-refuse");
        let options = options(kind);
        let mut consumer = Consumer::create(guard.name(), &options).expect("create");
        let mut producer = Producer::open(guard.name(), &options).expect("open producer");
        producer.send(b"for the parent").expect("send");
        let position = producer.position();

        let child = match fork() {
            Fork::Child(socket) => in_child(socket, |_| {
                let name = guard.name();
                let check = |op: &str, outcome: Result<String, String>| -> Result<(), String> {
                    match outcome {
                        Ok(what) => Err(format!("{op} in the forked child succeeded: {what}")),
                        Err(e) if e.contains(name) && e.contains("fork") => Ok(()),
                        Err(e) => Err(format!("{op} in the forked child: unhelpful error {e:?}")),
                    }
                };
                let short = Duration::from_millis(50);
                let mut buf = Vec::new();
                check(
                    "try_send",
                    producer.try_send(b"from the child").map(|()| "sent".into()).map_err(|e| e.to_string()),
                )?;
                check(
                    "try_recv",
                    consumer.try_recv(&mut buf).map(|n| format!("{n} bytes")).map_err(|e| e.to_string()),
                )?;
                check("try_reserve", producer.try_reserve(4).map(|_| "a grant".into()).map_err(|e| e.to_string()))?;
                check("try_read", consumer.try_read().map(|m| format!("{m:?}")).map_err(|e| e.to_string()))?;
                check("send", producer.send(b"x").map(|()| "sent".into()).map_err(|e| e.to_string()))?;
                check(
                    "send_timeout",
                    producer.send_timeout(b"x", short).map(|()| "sent".into()).map_err(|e| e.to_string()),
                )?;
                check("reserve", producer.reserve(4).map(|_| "a grant".into()).map_err(|e| e.to_string()))?;
                check(
                    "reserve_timeout",
                    producer.reserve_timeout(4, short).map(|_| "a grant".into()).map_err(|e| e.to_string()),
                )?;
                check("recv", consumer.recv(&mut buf).map(|n| format!("{n} bytes")).map_err(|e| e.to_string()))?;
                check(
                    "recv_timeout",
                    consumer.recv_timeout(&mut buf, short).map(|n| format!("{n} bytes")).map_err(|e| e.to_string()),
                )?;
                check("read", consumer.read().map(|m| format!("{m:?}")).map_err(|e| e.to_string()))?;
                check(
                    "read_timeout",
                    consumer.read_timeout(short).map(|m| format!("{m:?}")).map_err(|e| e.to_string()),
                )?;
                check("producer flush", producer.flush().map(|()| "flushed".into()).map_err(|e| e.to_string()))?;
                check(
                    "consumer flush_async",
                    consumer.flush_async().map(|()| "flushed".into()).map_err(|e| e.to_string()),
                )?;
                // And by type: the error carries the segment and the role.
                let forked = |e: &ForkedHandle, role| e.segment() == name && e.role() == role;
                macro_rules! typed {
                    ($call:expr, $pattern:pat => $ok:expr) => {
                        if !matches!($call, $pattern if $ok) {
                            return Err(format!("{}: not the ForkedHandle variant", stringify!($call)));
                        }
                    };
                }
                typed!(producer.try_send(b"x"), Err(TrySendError::ForkedHandle(ref e)) => forked(e, Role::Producer));
                typed!(producer.send(b"x"), Err(SendError::ForkedHandle(ref e)) => forked(e, Role::Producer));
                typed!(producer.send_timeout(b"x", short), Err(SendTimeoutError::ForkedHandle(ref e)) => forked(e, Role::Producer));
                typed!(consumer.try_recv(&mut buf), Err(TryRecvError::ForkedHandle(ref e)) => forked(e, Role::Consumer));
                typed!(consumer.recv(&mut buf), Err(RecvError::ForkedHandle(ref e)) => forked(e, Role::Consumer));
                typed!(consumer.recv_timeout(&mut buf, short), Err(RecvTimeoutError::ForkedHandle(ref e)) => forked(e, Role::Consumer));
                typed!(producer.flush(), Err(Error::ForkedHandle(ref e)) => forked(e, Role::Producer));
                // What the handle knows by itself it still says.
                if producer.name() != name || consumer.capacity() != 64 * 1024 || producer.position() != position {
                    return Err("the inherited handles forgot their segment".into());
                }
                drop(producer);
                drop(consumer);
                Ok(())
            }),
            Fork::Parent(child) => child,
        };
        child.expect_success(CHILD_LIMIT);

        let mut buf = Vec::new();
        assert_eq!(consumer.try_recv(&mut buf), Ok(14), "{kind}");
        assert_eq!(buf, b"for the parent", "{kind}");
        assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{kind}: the child reached the ring");
        producer.send(b"still here").expect("send");
        assert_eq!(recv_within(&mut consumer, DEATH_LIMIT).as_deref(), Ok(&b"still here"[..]), "{kind}");
    }
}

/// A grant the parent holds when it forks: what the child writes and commits
/// through its copy goes nowhere; the parent's commit is what arrives.
#[test]
fn a_grant_held_across_fork_commits_nothing_from_the_child() {
    let guard = SegmentGuard::new("fork-grant");
    let options = options(Kind::Spsc);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let mut producer = Producer::open(guard.name(), &options).expect("open producer");
    let mut grant = producer.reserve(6).expect("reserve");
    grant.copy_from_slice(b"parent");

    let child = match fork() {
        Fork::Child(socket) => in_child(socket, move |_| {
            // Reads zeros or the parent's bytes, never faults; goes nowhere.
            grant.copy_from_slice(b"child!");
            grant.commit();
            Ok(())
        }),
        Fork::Parent(child) => child,
    };
    child.expect_success(CHILD_LIMIT);
    let mut buf = Vec::new();
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "the child's commit reached the ring");
    grant.commit();
    assert_eq!(recv_within(&mut consumer, DEATH_LIMIT).as_deref(), Ok(&b"parent"[..]));
}

/// After fork the child attaches afresh and that handle works normally (its
/// drop does detach), while the handles it inherited, dropped with it, leave
/// the parent's alone. The pre-fork worker pool pattern.
#[test]
fn a_child_attaches_afresh_after_fork() {
    // MPSC: the parent consumes and produces; a worker adds its own producer.
    let guard = SegmentGuard::new("fork-afresh-mpsc");
    let options = options(Kind::Mpsc);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let mut producer = Producer::open(guard.name(), &options).expect("open producer");

    let child = match fork() {
        // Not `move`: the guard must not be dropped (and the name unlinked)
        // in the child.
        Fork::Child(socket) => in_child(socket, |_| {
            let mut own = Producer::open(guard.name(), &options).map_err(|e| format!("open in the child: {e}"))?;
            own.send(b"from the worker").map_err(|e| format!("send from the child: {e}"))?;
            drop(own);
            // Inherited handles go out of scope with the worker, as they
            // would in real code.
            drop((producer, consumer));
            Ok(())
        }),
        Fork::Parent(child) => child,
    };
    child.expect_success(CHILD_LIMIT);
    assert_eq!(recv_within(&mut consumer, DEATH_LIMIT).as_deref(), Ok(&b"from the worker"[..]));
    let mut buf = Vec::new();
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "the worker detached the parent's producer");
    producer.send(b"from the parent").expect("send");
    assert_eq!(recv_within(&mut consumer, DEATH_LIMIT).as_deref(), Ok(&b"from the parent"[..]));
    assert!(std::path::Path::new(&guard.path()).exists(), "the worker unlinked the name");
    drop(producer);
    drop(consumer);

    // SPSC: the parent only consumes; the child is the producer, and its
    // own drop is a real detach.
    let guard = SegmentGuard::new("fork-afresh-spsc");
    let options = self::options(Kind::Spsc);
    let mut consumer = Consumer::create(guard.name(), &options).expect("create");
    let child = match fork() {
        Fork::Child(socket) => in_child(socket, |_| {
            let mut own = Producer::open(guard.name(), &options).map_err(|e| format!("open in the child: {e}"))?;
            own.send(b"from the child").map_err(|e| format!("send from the child: {e}"))?;
            drop(own);
            Ok(())
        }),
        Fork::Parent(child) => child,
    };
    child.expect_success(CHILD_LIMIT);
    assert_eq!(consumer.try_recv(&mut buf), Ok(14));
    assert_eq!(buf, b"from the child");
    assert_eq!(disconnected_within(&mut consumer, DEATH_LIMIT), Ok(()), "the child's own drop detaches");
}

/// The segment's mappings and descriptors in this process, from `/proc/self`.
fn references_to(path: &str) -> Result<usize, String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read maps: {e}"))?;
    let mapped = maps.lines().filter(|line| line.ends_with(path)).count();
    let fds = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("read fds: {e}"))?;
    let open = fds
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == path)
        .count();
    Ok(mapped + open)
}

/// However a fork falls among other threads' attaches and detaches, the child
/// holds no mapping and no descriptor of the parent's handles' segment (so no
/// reference to their open file descriptions, and so none of their locks).
#[test]
fn a_child_holds_nothing_of_the_parents_handles_whenever_it_forks() {
    let guard = SegmentGuard::new("fork-race");
    let options = options(Kind::Mpsc);
    let _consumer = Consumer::create(guard.name(), &options).expect("create");
    let path = guard.path();
    assert!(references_to(&path).expect("count") >= 2, "the parent maps the segment and holds a descriptor");
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Stops the churning thread when the forking loop ends, by a failed
    /// assertion too (the scope joins the thread before it lets a panic by).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut producer = Producer::open(guard.name(), &options).expect("open");
                let _ = producer.try_send(b"churn");
            }
        });
        let _stop = StopOnDrop(&stop);
        for _ in 0..30 {
            let child = match fork() {
                Fork::Child(socket) => in_child(socket, |_| match references_to(&path)? {
                    0 => Ok(()),
                    n => Err(format!("the child holds {n} mappings or descriptors of {path}")),
                }),
                Fork::Parent(child) => child,
            };
            child.expect_success(CHILD_LIMIT);
        }
    });
}
