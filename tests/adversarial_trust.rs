//! Adversarial review of the trust rule: a view in place (`read`, `reserve`)
//! must never be handed out while a process of another user can write the
//! segment. Each test runs a peer as `nobody` (needs root; skipped
//! otherwise) that really gets write access to the ring's memory and writes
//! into a message while this process holds it borrowed. A `&[u8]` whose
//! bytes change under it is exactly the unsoundness the rule exists to
//! prevent.

mod common;

use common::{ChildGuard, SegmentGuard};
use shmring::{AnonymousRing, Consumer, Producer, RingOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Offset in the segment of the first record's payload (4 KiB pages: the
/// data region starts at 12288, the record header is 8 bytes).
const FIRST_PAYLOAD: u64 = 12288 + 8;
const MESSAGE: &[u8; 16] = b"written by us...";
const LIMIT: Duration = Duration::from_secs(20);

fn root() -> bool {
    let root = rustix::process::geteuid().is_root() && Command::new("python3").arg("-V").output().is_ok();
    if !root {
        eprintln!("skipped: needs root and python3 to run a peer as another user");
    }
    root
}

/// A python3 process running as uid/gid 65534, talking line by line.
struct Peer {
    child: ChildGuard,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Runs `script` as nobody; `keep_fd` (if any) is inherited at the
    /// same number.
    fn spawn(script: &str, keep_fd: Option<i32>) -> Peer {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("python3");
        command.args(["-c", script]).uid(65534).gid(65534).stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some(fd) = keep_fd {
            // SAFETY: only fcntl, async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut raw = command.spawn().expect("spawn python3 as nobody");
        let stdin = raw.stdin.take().expect("stdin");
        let stdout = raw.stdout.take().expect("stdout");
        let child = ChildGuard::new(raw);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer { child, stdin, lines }
    }

    fn expect(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) if line.starts_with(prefix) => line,
            other => panic!("the peer did not say {prefix:?}: {other:?}"),
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = &mut self.stdin;
        stdin.write_all(format!("{line}\n").as_bytes()).expect("write to the peer");
        stdin.flush().expect("flush");
    }
}

/// The python half shared by both tests: given a writable mapping `m`, say
/// who we are, wait for "go", scribble over the first payload, say "done".
fn scribble_script(open_mapping: &str) -> String {
    format!(
        "import os, sys, mmap, socket, time\n\
         {open_mapping}\n\
         print('mapped uid=%d' % os.getuid(), flush=True)\n\
         sys.stdin.readline()\n\
         m[{FIRST_PAYLOAD}:{FIRST_PAYLOAD} + 16] = b'SCRIBBLED BYTES!'\n\
         print('done', flush=True)\n\
         time.sleep(60)\n"
    )
}

/// `send_over` asks the socket for its peer's credentials, but
/// `SO_PEERCRED` records who *created* the socket pair (or connected), not
/// who holds the other end now. Here this process (root) makes the pair
/// and hands one end to a process running as `nobody`: `send_over` takes
/// it for the same user, handles keep lending in place, and `nobody`
/// writes into a message this process holds borrowed.
#[test]
fn a_ring_sent_over_a_socket_another_user_holds_is_never_lent_in_place() {
    if !root() {
        return;
    }
    let options = RingOptions::new().capacity(1 << 16);
    let ring = AnonymousRing::create("adversarial-peercred", &options).expect("create");
    let (here, there) = UnixStream::pair().expect("socketpair");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&there);
    let script = scribble_script(&format!(
        "s = socket.socket(fileno={fd})\n\
         _, fds, _, _ = socket.recv_fds(s, 1, 1)\n\
         m = mmap.mmap(fds[0], os.fstat(fds[0]).st_size)"
    ));
    let mut peer = Peer::spawn(&script, Some(fd));
    drop(there);
    ring.send_over(&here).expect("send_over");
    let uid = peer.expect("mapped");
    assert_eq!(uid, "mapped uid=65534", "the peer runs as another user");

    let mut producer = ring.producer(&options).expect("producer");
    let mut consumer = ring.consumer(&options).expect("consumer");
    let lends = consumer.borrows_in_place();
    producer.send(MESSAGE).expect("send");
    let guard = consumer.read_timeout(LIMIT).expect("read");
    assert_eq!(&*guard, MESSAGE);
    peer.say("go");
    peer.expect("done");
    assert_eq!(
        &*guard, MESSAGE,
        "a borrowed message changed under its guard: another user ({uid}) could write the ring, yet \
         borrows_in_place() = {lends}"
    );
    drop(guard);
    peer.child.kill();
}

/// Permissions are checked when a segment is opened; a process of another
/// user that opened (and mapped) a segment while it was 0666 keeps writing
/// it after a `chmod 0600`. No opener can see that (a flag in the header
/// could be forged by that very writer), so the trust rule states it as its
/// assumption: this user's processes do not give others write access behind
/// its back, and a segment that was ever widened needs
/// `borrow_in_place(false)`. With it, what a guard shows never changes.
#[test]
fn a_segment_mapped_by_another_user_before_a_chmod_needs_borrow_in_place_false() {
    if !root() {
        return;
    }
    let segment = SegmentGuard::new("adversarial-chmod");
    let shared = RingOptions::new().capacity(1 << 16).mode(0o666).unlink_on_drop(false);
    shared.create(segment.name()).expect("create 0666");
    let path = segment.path();
    let script = scribble_script(&format!(
        "f = open('{path}', 'r+b')\n\
         m = mmap.mmap(f.fileno(), os.fstat(f.fileno()).st_size)"
    ));
    let mut peer = Peer::spawn(&script, None);
    let uid = peer.expect("mapped");
    assert_eq!(uid, "mapped uid=65534", "the peer runs as another user");
    // The owner makes the segment private again: too late.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 0600");

    let options = RingOptions::new().borrow_in_place(false);
    let mut consumer = Consumer::open(segment.name(), &options).expect("consumer");
    let mut producer = Producer::open(segment.name(), &options).expect("producer");
    let lends = consumer.borrows_in_place();
    assert!(!lends, "borrow_in_place(false)");
    producer.send(MESSAGE).expect("send");
    let guard = consumer.read_timeout(LIMIT).expect("read");
    assert_eq!(&*guard, MESSAGE);
    peer.say("go");
    peer.expect("done");
    assert_eq!(
        &*guard, MESSAGE,
        "a borrowed message changed under its guard: {uid} still has the segment mapped writable, yet \
         borrows_in_place() = {lends}"
    );
    drop(guard);
    peer.child.kill();
}
