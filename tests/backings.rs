//! The backings besides POSIX shared memory: an anonymous memfd ring
//! inherited by a child or passed over a Unix socket, and file-backed
//! persistent rings with `flush`, reopening after every process died, and
//! recovery after a (simulated) restart of the machine.

mod common;

use common::{
    deadline, field, receive_stream, send_stream, spawn_child, until, wait_for_line, within, ChildGuard, TempDir,
};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use shmring::{AnonymousRing, Consumer, Error, Producer, RecvTimeoutError, RingOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

const COUNT: u64 = 200_000;

fn options() -> RingOptions {
    RingOptions::new().capacity(64 << 10).max_message(4096)
}

/// A duplicate of `fd` without `FD_CLOEXEC`, so a spawned child inherits it.
fn inheritable(fd: impl AsFd) -> OwnedFd {
    rustix::io::dup(fd).expect("dup")
}

fn finish(child: ChildGuard) -> String {
    let (ok, out) = child.finish(Duration::from_secs(60));
    assert!(ok, "child failed: {out}");
    out
}

/// Parent produces, child (inheriting the memfd) consumes; then the reverse.
/// No name in `/dev/shm` at any point.
#[test]
fn anonymous_ring_shared_with_a_child_both_ways() {
    for child_role in ["anon-consume", "anon-produce"] {
        let ring = AnonymousRing::create("fork-test", &options()).expect("create");
        common::stream_with_inheriting_child(&ring, &options(), child_role, COUNT);
    }
}

/// Each attach has its own open file description: a child's liveness lock is
/// not the parent's, so the parent sees the child's consumer die.
#[test]
fn a_killed_child_consumer_is_seen_dead_through_the_shared_memfd() {
    let ring = AnonymousRing::create("liveness", &options()).expect("create");
    let fd = inheritable(&ring);
    let env = [
        ("SHMRING_NAME", String::new()),
        ("SHMRING_FD", fd.as_raw_fd().to_string()),
        ("SHMRING_COUNT", "0".to_owned()),
        ("SHMRING_HOLD", "1".to_owned()),
    ];
    let mut child = spawn_child("anon-consume", &env);
    wait_for_line(&mut child, "attached");
    let mut producer = ring.producer(&options()).expect("producer");
    child.kill_alive("the child holding the consumer role");
    let filler = vec![0u8; 1000];
    let end = deadline(30);
    while until(end, "noticing the dead consumer") {
        match producer.send_timeout(&filler, Duration::from_secs(5)) {
            Ok(()) => {}
            Err(shmring::SendTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// An unrelated process connects to a Unix socket and receives the ring's
/// memfd (`SCM_RIGHTS`); it consumes what this process produces.
#[test]
fn memfd_passed_over_a_unix_socket_to_another_process() {
    let dir = TempDir::new("socket");
    let path = dir.0.join("ring.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let ring = AnonymousRing::create("socket-test", &options()).expect("create");
    let env = [
        ("SHMRING_NAME", String::new()),
        ("SHMRING_SOCKET", path.display().to_string()),
        ("SHMRING_COUNT", COUNT.to_string()),
    ];
    let child = spawn_child("anon-consume", &env);
    let (socket, _) =
        within(Duration::from_secs(60), "the child connecting", move || listener.accept()).expect("accept");
    ring.send_over(&socket).expect("send the ring");
    let mut producer = ring.producer(&options()).expect("producer");
    send_stream(&mut producer, COUNT);
    drop(producer);
    assert_eq!(field(&finish(child), "received"), COUNT as i64);
}

/// Sends `fd` over a fresh socket pair and tries to receive it as a ring.
fn receive(fd: impl AsFd) -> Result<AnonymousRing, Error> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let (here, there) = UnixStream::pair().expect("pair");
    let fds = [fd.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(&here, &[std::io::IoSlice::new(b"R")], &mut control, SendFlags::empty()).expect("sendmsg");
    AnonymousRing::receive_from(&there, &options().ready_timeout(Duration::from_millis(50)))
}

fn memfd(bytes: &[u8]) -> OwnedFd {
    use rustix::fs::{memfd_create, MemfdFlags};
    let fd = memfd_create("hostile", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).expect("memfd");
    std::fs::File::from(fd.try_clone().expect("clone")).write_all_at(bytes, 0).expect("write");
    fd
}

fn seal(fd: &OwnedFd) {
    use rustix::fs::{fcntl_add_seals, SealFlags};
    fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW).expect("seal");
}

/// What a hostile (or confused) peer can hand over is refused with a clear
/// error: an unsealed memfd (even with a valid ring in it), a descriptor that
/// is not a memfd at all, a sealed memfd too small for a header, and one that
/// is not a shmring segment.
#[test]
fn received_descriptors_are_validated() {
    // A valid ring's bytes, copied into a memfd nobody sealed.
    let ring = AnonymousRing::create("valid", &options()).expect("create");
    let mut bytes = vec![0u8; (12288 + (64 << 10)) as usize];
    std::fs::File::from(ring.as_fd().try_clone_to_owned().expect("dup")).read_exact_at(&mut bytes, 0).expect("read");
    let unsealed = memfd(&bytes);
    let err = receive(&unsealed).unwrap_err();
    assert!(matches!(err, Error::NotSealed { .. }), "{err:?}");
    assert!(err.to_string().contains("not a memfd sealed against shrinking"), "{err}");
    // The same bytes, sealed: accepted, and usable.
    seal(&unsealed);
    let accepted = receive(&unsealed).expect("a sealed copy of a valid ring");
    accepted.consumer(&options()).expect("attach to it");

    let dir = TempDir::new("not-memfd");
    let file = std::fs::File::create(dir.0.join("plain")).expect("file");
    assert!(matches!(receive(&file), Err(Error::NotSealed { .. })));

    let tiny = memfd(b"SHMRING\0 but far too small");
    seal(&tiny);
    let err = receive(&tiny).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. } | Error::NotShmring { .. }), "{err:?}");

    let garbage = memfd(&vec![0x5Au8; 64 << 10]);
    seal(&garbage);
    assert!(matches!(receive(&garbage), Err(Error::NotShmring { .. })));

    // An inherited descriptor number that is not a ring.
    assert!(matches!(AnonymousRing::open_inherited(file.as_raw_fd(), &options()), Err(Error::NotSealed { .. })));
}

fn file_producer(path: &Path, count: u64, flush: bool) -> ChildGuard {
    let mut env = vec![
        ("SHMRING_NAME", String::new()),
        ("SHMRING_FILE", path.display().to_string()),
        ("SHMRING_COUNT", count.to_string()),
    ];
    if flush {
        env.push(("SHMRING_FLUSH", "1".into()));
    }
    let mut child = spawn_child("file-produce", &env);
    wait_for_line(&mut child, "done");
    child
}

/// The header's boot id words (persistence line): rewriting them makes the
/// file look as if it was last used before a restart of the machine.
const BOOT_ID_AT: u64 = 128 + 9856 + 8;

fn simulate_restart(path: &Path) {
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    file.write_all_at(&[0x42; 16], BOOT_ID_AT).expect("rewrite the boot id");
}

/// Write N, flush, SIGKILL the producer; then the machine "restarts": every
/// flushed message is there. Without a restart, messages that were never
/// flushed are all there too (the page cache kept them), and none is lost.
#[test]
fn flushed_messages_survive_the_processes_and_a_restart() {
    // About 1.6 MB of records: they fit in the ring with no consumer.
    const N: u64 = 5_000;
    let dir = TempDir::new("file");
    let path = dir.0.join("ring");
    RingOptions::new().capacity(4 << 20).max_message(4096).create_file(&path).expect("create");
    let options = RingOptions::new();

    // Not flushed, producer killed, no restart: all there, none lost.
    file_producer(&path, N, false).kill_alive("the file producer");
    let mut consumer = Consumer::open_file(&path, &options).expect("reopen");
    assert_eq!(receive_stream(&mut consumer, N), N);
    let end = consumer.recv_timeout(&mut Vec::new(), Duration::from_secs(5));
    assert_eq!(end, Err(RecvTimeoutError::Disconnected), "the killed producer is seen dead");
    assert_eq!(consumer.lost_records(), 0);
    consumer.flush().expect("flush the consumer's position");
    drop(consumer);

    // Flushed, killed, restarted: the flushed messages all come back.
    let dir2 = TempDir::new("file2");
    let path2 = dir2.0.join("ring");
    RingOptions::new().capacity(4 << 20).max_message(4096).create_file(&path2).expect("create");
    file_producer(&path2, N, true).kill_alive("the flushing file producer");
    simulate_restart(&path2);
    let mut consumer = Consumer::open_file(&path2, &options).expect("reopen after the restart");
    assert_eq!(receive_stream(&mut consumer, N), N);
    assert_eq!(consumer.lost_records(), 0);
}

/// After a restart, what was written after the last flush may be torn: it is
/// dropped and counted, never delivered, whatever happened to its pages.
#[test]
fn unflushed_records_are_dropped_after_a_restart_never_delivered_torn() {
    const FLUSHED: u64 = 1000;
    const AFTER: u64 = 300;
    let dir = TempDir::new("torn");
    let path = dir.0.join("ring");
    let create = RingOptions::new().capacity(1 << 20).max_message(4096);
    let mut producer = Producer::create_file(&path, &create).expect("create");
    let mut buf = vec![0u8; 100];
    for seq in 0..FLUSHED + AFTER {
        common::fill_stream(seq, &mut buf);
        producer.try_send(&buf).expect("send");
        if seq + 1 == FLUSHED {
            producer.flush().expect("flush");
        }
    }
    let flushed_end = 12288 + FLUSHED * 112; // records of 8 + 104 bytes
    drop(producer);
    // The crash tore the unflushed records: garbage over some of them.
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&vec![0xEE; 5000], flushed_end + 2000).expect("tear");
    simulate_restart(&path);

    let mut consumer = Consumer::open_file(&path, &RingOptions::new()).expect("reopen");
    assert_eq!(receive_stream(&mut consumer, FLUSHED + AFTER), FLUSHED, "exactly the flushed messages");
    // The unflushed records whose headers still decode: those before the
    // tear, and the one it starts inside.
    assert_eq!(consumer.lost_records(), 2000 / 112 + 1);
    // Writing goes on after the recovered end.
    let mut producer = Producer::open_file(&path, &RingOptions::new()).expect("producer again");
    producer.try_send(b"after the restart").expect("send");
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(10)), Ok(17));
}

/// Flushing while the consumer frees records under the flush's walk: every
/// flush succeeds, nothing is lost, and a final flush makes everything up to
/// the claim position durable.
#[test]
fn flushes_race_a_streaming_consumer() {
    const N: u64 = 100_000;
    let dir = TempDir::new("flush-race");
    let path = dir.0.join("ring");
    let options = RingOptions::new().capacity(64 << 10).max_message(1024);
    let mut consumer = Consumer::create_file(&path, &options).expect("create");
    let producer_path = path.clone();
    let producer = std::thread::spawn(move || {
        let mut producer = Producer::open_file(&producer_path, &options).expect("open");
        let mut buf = [0u8; 100];
        for seq in 0..N {
            common::fill_stream(seq, &mut buf);
            producer.send_timeout(&buf, Duration::from_secs(30)).expect("send");
            if seq % 500 == 0 {
                producer.flush().expect("flush while streaming");
            }
        }
        producer.flush().expect("final flush");
    });
    assert_eq!(receive_stream(&mut consumer, N), N);
    within(Duration::from_secs(60), "the producer thread", move || producer.join()).expect("producer thread");
    let info = shmring::inspect::inspect_file(&path).expect("inspect");
    assert_eq!(info.durable_tail, info.tail, "everything committed is durable after the last flush");
    assert_eq!(info.durable_tail % 8, 0);
}

/// Locks do not survive a restart: while a participant holds one, a foreign
/// boot id cannot mean the machine restarted since (the file was copied, or
/// the id could not be read), and an opener must not recover, which would
/// zero records a live process may be writing.
#[test]
fn no_recovery_while_a_participant_is_alive() {
    // About 30 KB of records: they fit the 64 KiB ring with nobody reading.
    const N: u64 = 100;
    let dir = TempDir::new("live");
    let path = dir.0.join("ring");
    let mut consumer = Consumer::create_file(&path, &options()).expect("create");
    let mut producer = Producer::open_file(&path, &options()).expect("producer");
    send_stream(&mut producer, N);
    drop(producer);
    simulate_restart(&path);
    let producer = Producer::open_file(&path, &options()).expect("a second opener");
    assert_eq!(receive_stream(&mut consumer, N), N, "nothing unflushed was dropped");
    assert_eq!(consumer.lost_records(), 0);
    drop(producer);
}

/// MPSC over a file: two producers, a flush, then a third process claims
/// space and dies with the machine before committing; after the restart the
/// flushed messages of both producers come back, the claim is dropped and
/// counted, and every slot is free again.
#[test]
fn mpsc_file_ring_recovers_after_a_restart() {
    use shmring::Kind;
    let dir = TempDir::new("mpsc-file");
    let path = dir.0.join("ring");
    let options = RingOptions::new().kind(Kind::Mpsc).max_producers(3).capacity(64 << 10);
    options.create_file(&path).expect("create");
    let mut a = Producer::open_file(&path, &options).expect("a");
    let mut b = Producer::open_file(&path, &options).expect("b");
    for i in 0..50u8 {
        a.try_send(&[i; 40]).expect("a sends");
        b.try_send(&[i | 0x80; 24]).expect("b sends");
    }
    b.flush().expect("flush covers both producers' committed records");
    drop((a, b));
    let env = [("SHMRING_NAME", String::new()), ("SHMRING_FILE", path.display().to_string())];
    let mut holder = spawn_child("mpsc-hold-claim", &env);
    wait_for_line(&mut holder, "claimed");
    holder.kill_alive("the claim holder"); // with the machine: its claim is never committed
    simulate_restart(&path);
    let mut consumer = Consumer::open_file(&path, &options).expect("reopen after the restart");
    let mut buf = Vec::new();
    for i in 0..50u8 {
        assert_eq!(consumer.try_recv(&mut buf), Ok(40));
        assert_eq!(buf, [i; 40]);
        assert_eq!(consumer.try_recv(&mut buf), Ok(24));
        assert_eq!(buf, [i | 0x80; 24]);
    }
    assert_eq!(consumer.lost_records(), 1, "the claim left uncommitted");
    let producers: Vec<Producer> =
        (0..3).map(|_| Producer::open_file(&path, &options).expect("slots free after recovery")).collect();
    assert_eq!(producers.iter().map(Producer::slot).collect::<Vec<_>>(), [0, 1, 2]);
}

/// A truncated file or a corrupted flushed page gives a clean error.
#[test]
fn damaged_files_give_clean_errors() {
    let dir = TempDir::new("damaged");
    let path = dir.0.join("ring");
    let mut producer = Producer::create_file(&path, &options()).expect("create");
    send_stream(&mut producer, 100);
    producer.flush().expect("flush");
    drop(producer);
    let truncated = dir.0.join("truncated");
    std::fs::copy(&path, &truncated).expect("copy");
    std::fs::OpenOptions::new().write(true).open(&truncated).expect("open").set_len(20000).expect("truncate");
    let err = Consumer::open_file(&truncated, &options()).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xEE; 8], 12288).expect("corrupt the first record");
    let err = Consumer::open_file(&path, &options()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err:?}");
    assert!(err.to_string().contains("carries the stamp of another position"), "{err}");
    // Creating over an existing file is refused and leaves it alone.
    assert!(matches!(Producer::create_file(&path, &options()), Err(Error::AlreadyExists { .. })));
}
