//! Adversarial review (2): `AnonymousRing::send_over` refuses while a handle
//! of *this `AnonymousRing` object* lends in place, and only handles of the
//! object that sent it stop lending. Both are per object, not per memfd: a
//! second `AnonymousRing` over the same memfd (safe code, same process:
//! `open_inherited` on the first one's descriptor) has its own count and
//! its own flag.

use shmring::{AnonymousRing, RingOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

fn options() -> RingOptions {
    RingOptions::new().capacity(1 << 16).borrow_in_place(true)
}

/// A lending consumer exists; the same memfd still goes over a socket.
#[test]
fn a_second_ring_object_sends_the_memfd_while_the_first_lends() {
    let options = options();
    let ring = AnonymousRing::create("adv2-sendover-a", &options).expect("create");
    let consumer = ring.consumer(&options).expect("consumer");
    assert!(consumer.borrows_in_place(), "precondition: the first ring's consumer lends in place");
    // The refusal the fix added.
    let (here, _there) = UnixStream::pair().expect("socketpair");
    assert!(ring.send_over(&here).is_err(), "precondition: send_over refuses while a handle lends");

    // Same process, safe code: another object over the same memfd.
    let alias = AnonymousRing::open_inherited(ring.as_fd().as_raw_fd(), &options).expect("open_inherited");
    let sent = alias.send_over(&here);
    assert!(
        sent.is_err(),
        "the memfd crossed a socket while a handle of this process lends it in place (consumer \
         borrows_in_place() = {})",
        consumer.borrows_in_place()
    );
}

/// The memfd crossed a socket (sent through another object); a handle
/// attached afterwards through the first object still lends in place.
#[test]
fn a_handle_attached_after_the_memfd_was_sent_through_another_object_lends() {
    let options = options();
    let ring = AnonymousRing::create("adv2-sendover-b", &options).expect("create");
    let alias = AnonymousRing::open_inherited(ring.as_fd().as_raw_fd(), &options).expect("open_inherited");
    let (here, _there) = UnixStream::pair().expect("socketpair");
    alias.send_over(&here).expect("send_over");
    let consumer = ring.consumer(&options).expect("consumer");
    assert!(
        !consumer.borrows_in_place(),
        "a ring that crossed a socket lends in place when attached through another AnonymousRing"
    );
}
