//! Regression tests for an adversarial review: option values at the edge of
//! their types, errors that stay reported, slots held by dead producers,
//! descriptors that are not memfds, and error messages that say exactly what
//! happened (once).

mod common;

use common::SegmentGuard;
use shmring::*;
use std::time::Duration;

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

fn options() -> RingOptions {
    RingOptions::new().capacity(8192).max_message(1024).ready_timeout(Duration::from_millis(50))
}

/// Finding 1: a ready timeout beyond what `Instant` can hold is "no
/// deadline", not an overflow panic.
#[test]
fn a_ready_timeout_of_duration_max_opens_without_panicking() {
    let segment = SegmentGuard::new("ready-max");
    options().create(segment.name()).expect("create");
    let forever = options().ready_timeout(Duration::MAX);
    let mut consumer = Consumer::open(segment.name(), &forever).expect("consumer");
    let mut producer = Producer::open(segment.name(), &forever).expect("producer");
    producer.send(b"x").expect("send");
    assert_eq!(&*consumer.read().expect("read"), b"x");

    let ring = AnonymousRing::create("ready-max", &forever).expect("anonymous");
    ring.consumer(&forever).expect("anonymous consumer");
}
