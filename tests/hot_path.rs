//! A send's common case (an SPSC claim with room below the producer's copy
//! of `head`, no wrap, no leaked grant) and a receive's (a valid message at
//! `head`) are inlined; everything else takes the whole protocol out of line
//! (docs/design.md). These tests mix every way in and every way out, so that
//! a message sent the short way right after a state only the long way
//! handles (a leaked or dropped grant, a short commit, the wrap, a full
//! ring, a batch) is still delivered once, in order and intact.

mod common;

use common::{SegmentGuard, TempDir};
use shmring::*;
use std::collections::VecDeque;
use std::time::Duration;

const MAX: usize = 1024;

fn options(kind: Kind, borrow: bool) -> RingOptions {
    RingOptions::new().kind(kind).capacity(1 << 14).max_message(MAX).borrow_in_place(borrow)
}

/// xorshift64: the same sequence for a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A payload length: mostly small (the inlined sends), around a cache
    /// line's edges, or anything up to the maximum.
    fn len(&mut self) -> usize {
        match self.below(4) {
            0 => self.below(17) as usize,
            1 => [55, 56, 57, 63, 64, 65, 120][self.below(7) as usize],
            _ => self.below(MAX as u64 + 1) as usize,
        }
    }
}

/// What the consumer must receive next, in order: (sequence number, length).
struct Expected {
    queue: VecDeque<(u64, usize)>,
    next_seq: u64,
}

impl Expected {
    fn message(&mut self, len: usize) -> Vec<u8> {
        let mut msg = vec![0u8; len];
        payload::fill(7, self.next_seq, &mut msg);
        msg
    }

    fn sent(&mut self, len: usize) {
        self.queue.push_back((self.next_seq, len));
        self.next_seq += 1;
    }

    fn received(&mut self, got: &[u8], how: &str) {
        let (seq, len) = self.queue.pop_front().unwrap_or_else(|| panic!("{how}: a message nobody sent"));
        assert_eq!(got.len(), len, "{how}: seq {seq} has the wrong length");
        payload::check(7, seq, got).unwrap_or_else(|e| panic!("{how}: {e}"));
    }
}

/// Receives one message (or a few, `drain`) by a method chosen by `rng`;
/// `false` when the ring was empty.
fn receive(consumer: &mut Consumer, expected: &mut Expected, rng: &mut Rng, buf: &mut Vec<u8>) -> bool {
    match rng.below(5) {
        0 => match consumer.try_recv(buf) {
            Ok(_) => expected.received(buf, "try_recv"),
            Err(TryRecvError::Empty) => return false,
            Err(e) => panic!("try_recv: {e}"),
        },
        1 => {
            let mut fixed = [0u8; MAX];
            match consumer.try_recv_into(&mut fixed) {
                Ok(n) => expected.received(&fixed[..n], "try_recv_into"),
                Err(TryRecvError::Empty) => return false,
                Err(e) => panic!("try_recv_into: {e}"),
            }
        }
        2 => match consumer.try_read() {
            // Put back half of them: the next receive must find it again.
            Ok(guard) if rng.below(2) == 0 => guard.put_back(),
            Ok(guard) => expected.received(&guard, "try_read"),
            Err(TryRecvError::Empty) => return false,
            Err(e) => panic!("try_read: {e}"),
        },
        3 => {
            let max = 1 + rng.below(8) as usize;
            match consumer.try_drain(max, |msg| expected.received(msg, "try_drain")) {
                Ok(_) => {}
                Err(TryRecvError::Empty) => return false,
                Err(e) => panic!("try_drain: {e}"),
            }
        }
        _ => match consumer.recv_timeout(buf, Duration::ZERO) {
            Ok(_) => expected.received(buf, "recv_timeout"),
            Err(RecvTimeoutError::Timeout) => return false,
            Err(e) => panic!("recv_timeout: {e}"),
        },
    }
    true
}

fn receive_all(consumer: &mut Consumer, expected: &mut Expected, rng: &mut Rng, buf: &mut Vec<u8>) {
    let mut empty_in_a_row = 0;
    // Some methods may put a message back: empty five times running is empty.
    while empty_in_a_row < 5 {
        empty_in_a_row = if receive(consumer, expected, rng, buf) { 0 } else { empty_in_a_row + 1 };
    }
    assert!(expected.queue.is_empty(), "{} messages never arrived", expected.queue.len());
}

/// `steps` random operations of one producer and its consumer.
fn mixed_stream(producer: &mut Producer, consumer: &mut Consumer, seed: u64, steps: u32) {
    let mut rng = Rng(seed);
    let mut expected = Expected { queue: VecDeque::new(), next_seq: 0 };
    let mut buf = Vec::new();
    for _ in 0..steps {
        match rng.below(10) {
            0..=2 => {
                let msg = expected.message(rng.len());
                match producer.try_send(&msg) {
                    Ok(()) => expected.sent(msg.len()),
                    Err(TrySendError::Full) => receive_all(consumer, &mut expected, &mut rng, &mut buf),
                    Err(e) => panic!("try_send: {e}"),
                }
            }
            3 => {
                // `send` blocks while full: only into an empty ring.
                receive_all(consumer, &mut expected, &mut rng, &mut buf);
                let msg = expected.message(rng.len());
                producer.send(&msg).expect("send");
                expected.sent(msg.len());
            }
            4 => {
                let msg = expected.message(rng.len());
                match producer.send_timeout(&msg, Duration::ZERO) {
                    Ok(()) => expected.sent(msg.len()),
                    Err(SendTimeoutError::Timeout) => {}
                    Err(e) => panic!("send_timeout: {e}"),
                }
            }
            5 | 6 => {
                let reserved = rng.len();
                let action = rng.below(4);
                let len = if reserved == 0 { 0 } else { rng.below(reserved as u64 + 1) as usize };
                let msg = expected.message(len);
                let mut grant = match producer.try_reserve(reserved) {
                    Ok(grant) => grant,
                    Err(TrySendError::Full) => continue,
                    Err(e) => panic!("try_reserve: {e}"),
                };
                // Bytes past a short commit must never be taken for a record.
                grant.fill(0xFF);
                grant[..len].copy_from_slice(&msg);
                match action {
                    0 => drop(grant),
                    1 => std::mem::forget(grant),
                    _ => {
                        grant.commit_len(len);
                        expected.sent(len);
                    }
                }
            }
            7 => {
                let msgs: Vec<Vec<u8>> = (0..1 + rng.below(6)).map(|i| expected.message_at(i, &mut rng)).collect();
                match producer.try_send_batch(&msgs) {
                    Ok(n) => msgs[..n].iter().for_each(|m| expected.sent(m.len())),
                    Err(TrySendError::Full) => {}
                    Err(e) => panic!("try_send_batch: {e}"),
                }
            }
            _ => {
                receive(consumer, &mut expected, &mut rng, &mut buf);
            }
        }
    }
    receive_all(consumer, &mut expected, &mut rng, &mut buf);
}

impl Expected {
    /// The `i`th message of a batch about to be sent (numbered from the
    /// next sequence number on).
    fn message_at(&self, i: u64, rng: &mut Rng) -> Vec<u8> {
        let mut msg = vec![0u8; rng.len()];
        payload::fill(7, self.next_seq + i, &mut msg);
        msg
    }
}

#[test]
fn every_way_in_mixes_with_every_way_out_in_memory_rings() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for borrow in [false, true] {
            for seed in 1..=4u64 {
                let segment = SegmentGuard::new("hot-mix");
                let options = options(kind, borrow);
                let mut consumer = Consumer::create(segment.name(), &options).expect("create");
                let mut producer = Producer::open(segment.name(), &options).expect("open");
                mixed_stream(&mut producer, &mut consumer, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 6_000);
            }
        }
    }
}

#[test]
fn every_way_in_mixes_with_every_way_out_in_file_rings() {
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for seed in 1..=3u64 {
            let dir = TempDir::new("hot-mix-file");
            let path = dir.0.join("ring");
            let options = options(kind, false);
            let mut consumer = Consumer::create_file(&path, &options).expect("create");
            let mut producer = Producer::open_file(&path, &options).expect("open");
            mixed_stream(&mut producer, &mut consumer, seed.wrapping_mul(0xD1B5_4A32_D192_ED03), 4_000);
            // What was sent and received survives a reopen: the producer
            // recovers its position past every record and sends on.
            drop(producer);
            let mut producer = Producer::open_file(&path, &options).expect("reopen");
            mixed_stream(&mut producer, &mut consumer, seed, 1_000);
        }
    }
}
