//! `RingOptions::for_messages(n, s)`: a ring that always holds `n` messages
//! of up to `s` bytes, wherever in the region its positions are (a record
//! that does not fit before the end of the region needs padding first, so a
//! ring of exactly `n` records would not do).

mod common;

use common::SegmentGuard;
use shmring::{Consumer, Kind, Producer, RingOptions, TryRecvError};

/// Sizes from a small reproducible generator, up to `max`, biased to `max`.
fn size(rng: &mut u64, max: usize) -> usize {
    shmring::payload::xorshift(rng);
    if *rng % 3 == 0 {
        max
    } else {
        (*rng % (max as u64 + 1)) as usize
    }
}

#[test]
fn a_ring_for_n_messages_takes_n_messages_at_every_position() {
    let mut rng = 0x2545_F491_4F6C_DD1D;
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for (count, max) in [
            (8, 504),
            (16, 248),
            (32, 120),
            (256, 24),
            (1, 0),
            (1, 4000),
            (2, 1),
            (3, 100),
            (7, 1000),
            (100, 37),
            (1000, 200),
        ] {
            let segment = SegmentGuard::new("for-messages");
            let options = RingOptions::new().kind(kind).for_messages(count, max);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            assert_eq!(producer.max_message(), max.max(1));
            let mut buf = Vec::new();
            // Start the n messages at many positions of the lap, the wrap
            // included: shift by one message of a random size each round.
            for round in 0..64 {
                for i in 0..count {
                    // Every other round only messages of the largest size.
                    let len = if round % 2 == 0 { max } else { size(&mut rng, max) };
                    let msg = vec![(i % 251) as u8; len];
                    let sent = producer.try_send(&msg);
                    assert!(sent.is_ok(), "{kind}, for_messages({count}, {max}), round {round}: message {i}: {sent:?}");
                }
                for i in 0..count {
                    let got = consumer.try_recv(&mut buf);
                    assert!(got.is_ok(), "{kind} ({count}, {max}) round {round}: receive {i}: {got:?}");
                    assert!(buf.iter().all(|&b| b == (i % 251) as u8));
                }
                assert_eq!(consumer.try_recv(&mut buf), Err(TryRecvError::Empty));
                let shift = vec![0u8; size(&mut rng, max)];
                producer.try_send(&shift).expect("shift");
                consumer.try_recv(&mut buf).expect("shift back");
            }
        }
    }
}

#[test]
fn sizes_no_ring_can_take_are_refused_at_create() {
    let segment = SegmentGuard::new("for-messages-too-big");
    for (count, max) in [(usize::MAX, 8), (1 << 40, 4096), (0, u32::MAX as usize), (1, usize::MAX)] {
        let options = RingOptions::new().for_messages(count, max);
        let err = Consumer::create(segment.name(), &options).expect_err("too big for any ring");
        assert!(matches!(err, shmring::Error::InvalidOptions { .. }), "{err:?}");
    }
}
