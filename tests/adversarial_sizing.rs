//! Adversarial review of `RingOptions::for_messages(n, s)`: a sliding window
//! (one out, one in) that keeps n - 1 messages of random sizes up to s in
//! the ring at every position, on both kinds; a send must never find the
//! ring full. (Held up.)

mod common;

use common::SegmentGuard;
use shmring::{Consumer, Kind, Producer, RingOptions};

#[test]
fn a_sliding_window_of_n_minus_one_messages_never_blocks_a_send() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |max: usize| {
        shmring::payload::xorshift(&mut rng);
        match rng % 4 {
            0 => max,
            1 => 0,
            _ => (rng >> 8) as usize % (max + 1),
        }
    };
    for kind in [Kind::Spsc, Kind::Mpsc] {
        for (count, max) in [(2, 4000), (3, 1000), (5, 777), (9, 300), (17, 120), (2, 1), (64, 60)] {
            let segment = SegmentGuard::new("adv-sizing");
            let options = RingOptions::new().kind(kind).for_messages(count, max);
            let mut consumer = Consumer::create(segment.name(), &options).expect("create");
            let mut producer = Producer::open(segment.name(), &options).expect("open");
            let mut buf = Vec::new();
            let mut in_ring = 0usize;
            for step in 0..20_000u32 {
                if in_ring < count {
                    let msg = vec![step as u8; next(max)];
                    let sent = producer.try_send(&msg);
                    assert!(
                        sent.is_ok(),
                        "{kind} for_messages({count}, {max}): step {step}, {in_ring} in the ring, {} bytes: {sent:?}",
                        msg.len()
                    );
                    in_ring += 1;
                }
                if in_ring == count || step % 3 == 0 {
                    consumer.try_recv(&mut buf).expect("recv");
                    in_ring -= 1;
                }
            }
        }
    }
}
