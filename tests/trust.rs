//! The trust rule for borrowed views: `read` and `reserve` lend the ring's
//! own memory only when every process that can write the segment runs as
//! this user; otherwise they go through a buffer of the handle, and what a
//! guard or grant shows never changes under the caller, whatever is written
//! into the segment meanwhile.

mod common;

use common::SegmentGuard;
use shmring::{AnonymousRing, Consumer, Error, Producer, RingOptions};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Where the payload of the first record of a fresh ring lies in the file:
/// the data region (12 KiB on 4 KiB pages) plus the 8-byte record header.
const FIRST_PAYLOAD: u64 = 12288 + 8;

#[test]
fn a_private_segment_lends_in_place_and_one_others_can_write_does_not() {
    for (mode, in_place) in [(0o600, true), (0o640, true), (0o660, false), (0o606, false), (0o666, false)] {
        let segment = SegmentGuard::new("trust-mode");
        let options = RingOptions::new().capacity(1 << 16).mode(mode);
        let mut consumer = Consumer::create(segment.name(), &options).expect("create");
        let mut producer = Producer::open(segment.name(), &options).expect("open");
        assert_eq!(consumer.borrows_in_place(), in_place, "consumer, mode {mode:o}");
        assert_eq!(producer.borrows_in_place(), in_place, "producer, mode {mode:o}");
        // Either way the data is the same.
        for seq in 0u32..3000 {
            let len = (seq as usize * 13) % 700;
            let mut grant = producer.reserve_timeout(len, Duration::from_secs(5)).expect("reserve");
            for (i, byte) in grant.iter_mut().enumerate() {
                *byte = (seq as usize ^ i) as u8;
            }
            grant.commit();
            let msg = consumer.read_timeout(Duration::from_secs(5)).expect("read");
            assert!(msg.iter().enumerate().all(|(i, &b)| b == (seq as usize ^ i) as u8), "mode {mode:o}, {seq}");
        }
    }
    // Opt out on a private segment.
    let segment = SegmentGuard::new("trust-opt-out");
    let options = RingOptions::new().borrow_in_place(false);
    let consumer = Consumer::create(segment.name(), &options).expect("create");
    assert!(!consumer.borrows_in_place());
}

/// A segment other users can write: bytes written into the file under a
/// live guard or grant (as a peer breaking the protocol would) do not show
/// through it. Before the rule, the "immutable" `&[u8]` changed.
#[test]
fn what_a_guard_or_grant_shows_never_changes_when_others_can_write() {
    let segment = SegmentGuard::new("trust-scribble");
    let options = RingOptions::new().capacity(1 << 16).mode(0o666);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let mut producer = Producer::open(segment.name(), &options).expect("open");

    let mut grant = producer.reserve(16).expect("reserve");
    grant.copy_from_slice(b"written by us...");
    segment.write_at(FIRST_PAYLOAD, b"SCRIBBLED BYTES!");
    assert_eq!(&*grant, b"written by us...", "a grant changed under its producer");
    grant.commit();

    let guard = consumer.read().expect("read");
    assert_eq!(&*guard, b"written by us...");
    segment.write_at(FIRST_PAYLOAD, b"SCRIBBLED AGAIN!");
    assert_eq!(&*guard, b"written by us...", "a read guard changed under its consumer");
    drop(guard);
}

/// An anonymous ring among this user's processes lends in place; sent to a
/// process of another user, it must not while a handle of this process
/// lends it, and handles attached after copy. (Needs root to run the peer
/// as another user; elsewhere only the same-user half runs.)
#[test]
fn an_anonymous_ring_shared_with_another_user_stops_lending() {
    let options = RingOptions::new().capacity(1 << 16);
    let ring = AnonymousRing::create("trust", &options).expect("create");
    let consumer = ring.consumer(&options).expect("consumer");
    assert!(consumer.borrows_in_place(), "a ring of this process");
    let (here, there) = UnixStream::pair().expect("socketpair");
    ring.send_over(&here).expect("send to the same user");
    let received = AnonymousRing::receive_from(&there, &options).expect("receive");
    let producer = received.producer(&options).expect("producer");
    assert!(producer.borrows_in_place(), "received from the same user");
    drop(producer);

    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: the other-user half of this test needs to run a peer as another user");
        return;
    }
    // A peer running as `nobody` that connects to us (the peer credentials
    // of a socket are those of whoever connected it).
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(format!("shmring-trust-{}", std::process::id()))
        .expect("abstract address");
    let listener = std::os::unix::net::UnixListener::bind_addr(&address).expect("listen");
    let connect = format!(
        "import socket, time; s = socket.socket(socket.AF_UNIX); s.connect('\\0shmring-trust-{}'); time.sleep(60)",
        std::process::id()
    );
    let mut peer = {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("python3");
        command.args(["-c", &connect]).uid(65534).gid(65534);
        common::ChildGuard::new(command.spawn().expect("spawn a peer as nobody"))
    };
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let here = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                assert!(peer.try_wait().is_none(), "the peer exited without connecting");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the peer did not connect: {e}"),
        }
    };
    here.set_nonblocking(false).expect("blocking");
    match ring.send_over(&here) {
        Err(Error::PermissionDenied { detail, .. }) => assert!(detail.contains("another user"), "{detail}"),
        other => panic!("sent to another user while a handle lends in place: {other:?}"),
    }
    drop(consumer);
    ring.send_over(&here).expect("send to another user with no lending handle");
    let consumer = ring.consumer(&options).expect("consumer after sending");
    assert!(!consumer.borrows_in_place(), "a ring shared with another user");
    peer.kill_alive("the peer");
}
