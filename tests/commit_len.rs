//! `Grant::commit_len`: a grant reserved for the largest size a message can
//! have, committed with the length actually written.

mod common;

use common::{SegmentGuard, StreamSizes};
use shmring::{Consumer, Kind, Producer, RingOptions, TryRecvError};
use std::time::Duration;

fn options(kind: Kind, borrow: bool) -> RingOptions {
    RingOptions::new().kind(kind).capacity(1 << 14).max_message(1024).borrow_in_place(borrow)
}

/// Both kinds, grants lent in place and staged: random grant sizes, each
/// committed with a random shorter (or equal, or larger) length, over many
/// laps. The consumer gets exactly the committed prefix of every message,
/// in order, and nothing of the rest of the grants.
#[test]
fn the_committed_prefix_arrives_and_the_rest_never_does() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("commit-len");
            let options = options(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            let (mut sizes, mut lens) = (StreamSizes::new(3), StreamSizes::new(4));
            let mut buf = Vec::new();
            for seq in 0..20_000u64 {
                let reserved = sizes.next(1024);
                // Up to 8 past the grant: a longer length commits the grant.
                let asked = lens.next(reserved + 9) - 1;
                let sent = asked.min(reserved);
                let mut grant = producer.reserve(reserved).expect("reserve");
                grant.fill(0xEE);
                shmring::payload::fill(5, seq, &mut grant[..sent]);
                grant.commit_len(asked);
                let n = consumer.try_recv(&mut buf).unwrap_or_else(|e| panic!("{kind:?} message {seq}: {e}"));
                assert_eq!(n, sent, "{kind:?} borrow={borrow} message {seq}: reserved {reserved}, committed {asked}");
                shmring::payload::check(5, seq, &buf)
                    .unwrap_or_else(|e| panic!("{kind:?} borrow={borrow} message {seq}: {e}"));
                assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{kind:?} after {seq}");
            }
            assert_eq!(producer.stats().messages, 20_000);
        }
    }
}

/// MPSC: while one producer commits short grants, another sends whole
/// messages into the claims after them, so the rest of every short claim
/// lies between two live records. Each producer's stream arrives whole and
/// in order, and the short claims' rests are never delivered.
#[test]
fn mpsc_short_commits_between_other_producers_records() {
    let segment = SegmentGuard::new("commit-len-mpsc");
    let options = options(Kind::Mpsc, true);
    let mut consumer = Consumer::create(segment.name(), &options).expect("create");
    let count = 50_000u64;
    let mut producers: Vec<_> =
        (0..2).map(|_| Producer::open(segment.name(), &options).expect("open producer")).collect();
    let threads: Vec<_> = producers
        .drain(..)
        .enumerate()
        .map(|(stream, mut producer)| {
            std::thread::spawn(move || {
                let mut sizes = StreamSizes::new(10 + stream as u32);
                for seq in 0..count {
                    let len = 12 + sizes.next(300);
                    if stream == 0 {
                        let mut grant = producer.reserve(1000).expect("reserve");
                        grant.fill(0xEE);
                        shmring::payload::fill(stream as u32, seq, &mut grant[..len]);
                        grant.commit_len(len);
                    } else {
                        let mut msg = vec![0; len];
                        shmring::payload::fill(stream as u32, seq, &mut msg);
                        producer.send(&msg).expect("send");
                    }
                }
            })
        })
        .collect();
    let mut next = [0u64; 2];
    let mut buf = Vec::new();
    while next != [count; 2] {
        consumer.recv_timeout(&mut buf, Duration::from_secs(30)).expect("recv");
        let (stream, _) = shmring::payload::identify(&buf).expect("a message of one of the streams");
        let stream = stream as usize % 2;
        shmring::payload::check(stream as u32, next[stream], &buf)
            .unwrap_or_else(|e| panic!("stream {stream} message {}: {e}", next[stream]));
        next[stream] += 1;
    }
    for thread in threads {
        thread.join().expect("producer");
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Disconnected));
}

/// A grant written and then dropped (or leaked) gives its space back: the
/// next, shorter messages in that space arrive, and the bytes the dropped
/// grant wrote are never read as records.
#[test]
fn a_written_grant_that_is_dropped_or_leaked_leaves_no_trace() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [true, false] {
            let segment = SegmentGuard::new("commit-len-drop");
            let options = options(kind, borrow);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            let mut buf = Vec::new();
            for seq in 0..5_000u64 {
                let mut grant = producer.reserve(1000).expect("reserve");
                grant.fill(0xEE);
                if seq % 2 == 0 {
                    drop(grant);
                } else {
                    std::mem::forget(grant);
                }
                let mut msg = [0u8; 20];
                shmring::payload::fill(7, seq, &mut msg);
                producer.send(&msg).expect("send");
                let n = consumer.try_recv(&mut buf).unwrap_or_else(|e| panic!("{kind:?} borrow={borrow} {seq}: {e}"));
                assert_eq!(n, 20);
                shmring::payload::check(7, seq, &buf).unwrap_or_else(|e| panic!("{kind:?} {seq}: {e}"));
                assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty), "{kind:?} after {seq}");
            }
        }
    }
}
