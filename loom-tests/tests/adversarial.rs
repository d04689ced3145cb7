//! Adversarial models of the MPSC ring (review of the change after
//! 4ccd0db): the real `ring` code over loom-tracked heap memory.
//!
//! * A rolling restart of producers (a new producer attaches, and only then
//!   the old one detaches, as a supervisor replacing a worker does): at no
//!   instant is no producer attached, so the consumer must never report
//!   `Disconnected`. The README: "`Disconnected` for an MPSC consumer means
//!   the ring is drained and every producer that ever attached has detached
//!   or died".
#![cfg(shmring_loom)]

use loom::thread;
use shmring::error::RecvStop;
use shmring::ring::{Consumer, HeapRing, Producer};
use shmring::Kind;
use shmring_loom_tests::model;
use std::sync::Arc;

fn producer(ring: &Arc<HeapRing>, slot: usize) -> Producer<Arc<HeapRing>> {
    Producer::attach_mpsc(Arc::clone(ring), 10 + slot as u32, slot).expect("attach producer")
}

/// The producer in slot 1 is replaced by one in slot 0: the supervisor
/// attaches the new one, then drops the old one. `mpsc_nothing_at_head`
/// reads the slots' states one by one (`ProducersWatch::all_gone`): slot 0
/// before the new producer marks it attached, slot 1 after the old one
/// marks it detached, and concludes that every producer is gone.
#[test]
fn a_rolling_restart_of_producers_is_never_disconnected() {
    model("a_rolling_restart_of_producers_is_never_disconnected", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Mpsc).expect("attach consumer");
        let old = producer(&ring, 1);
        let supervisor_ring = Arc::clone(&ring);
        let supervisor = thread::spawn(move || {
            let new = producer(&supervisor_ring, 0);
            drop(old);
            new
        });
        let outcome = consumer.try_recv(&mut Vec::new());
        let new = supervisor.join().unwrap();
        assert_ne!(
            outcome,
            Err(RecvStop::Disconnected),
            "Disconnected although a producer was attached at every instant (the new one stays attached)"
        );
        drop(new);
    });
}

/// The same restart where the supervisor reacts to the new producer's slot
/// saying attached (as one polling the segment with the inspector would),
/// not to its attach returning: the old one detaches as soon as the new
/// slot says attached, possibly before anything else the attach does.
#[test]
fn a_restart_that_reacts_to_the_slot_state_is_never_disconnected() {
    use shmring::ring::RingBacking;
    model("a_restart_that_reacts_to_the_slot_state_is_never_disconnected", || {
        let ring = Arc::new(HeapRing::with_killable_producers(64, 24));
        let mut consumer = Consumer::attach(Arc::clone(&ring), 2, Kind::Mpsc).expect("attach consumer");
        let old = producer(&ring, 1);
        let new_ring = Arc::clone(&ring);
        let attacher = thread::spawn(move || producer(&new_ring, 0));
        let supervisor_ring = Arc::clone(&ring);
        let supervisor = thread::spawn(move || {
            let slot = &supervisor_ring.header().producer_slots.0[0];
            while slot.state.load(std::sync::atomic::Ordering::Acquire) != shmring::layout::SLOT_ATTACHED {
                thread::yield_now();
            }
            drop(old);
        });
        let outcome = consumer.try_recv(&mut Vec::new());
        supervisor.join().unwrap();
        let new = attacher.join().unwrap();
        assert_ne!(
            outcome,
            Err(RecvStop::Disconnected),
            "Disconnected although a producer was attached at every instant"
        );
        drop(new);
    });
}
