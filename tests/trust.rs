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

/// An anonymous ring made in this process lends in place; once it has
/// crossed a socket, who holds it cannot be known (peer credentials name
/// whoever made or connected the socket, not whoever holds its other end):
/// it is not sent while a handle lends in place, handles attached after
/// sending copy, and so do the receiver's.
#[test]
fn an_anonymous_ring_that_crossed_a_socket_stops_lending() {
    let options = RingOptions::new().capacity(1 << 16);
    let ring = AnonymousRing::create("trust", &options).expect("create");
    let consumer = ring.consumer(&options).expect("consumer");
    assert!(consumer.borrows_in_place(), "a ring of this process");
    let (here, there) = UnixStream::pair().expect("socketpair");
    match ring.send_over(&here) {
        Err(Error::PermissionDenied { detail, .. }) => assert!(detail.contains("lends its memory"), "{detail}"),
        other => panic!("sent while a handle lends in place: {other:?}"),
    }
    drop(consumer);
    ring.send_over(&here).expect("send with no lending handle");
    let mut consumer = ring.consumer(&options).expect("consumer after sending");
    assert!(!consumer.borrows_in_place(), "a ring that was sent");
    let received = AnonymousRing::receive_from(&there, &options).expect("receive");
    let mut producer = received.producer(&options).expect("producer");
    assert!(!producer.borrows_in_place(), "a ring that was received");
    let mut grant = producer.reserve(5).expect("reserve");
    grant.copy_from_slice(b"hello");
    grant.commit();
    assert_eq!(&*consumer.read().expect("read"), b"hello");
    // Copies opted out of with borrow_in_place(false) can be sent any time.
    let ring = AnonymousRing::create("trust-copies", &options).expect("create");
    let _copying = ring.consumer(&options.clone().borrow_in_place(false)).expect("consumer");
    ring.send_over(&here).expect("send with only copying handles");
}
