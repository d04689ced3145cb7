//! Taking a role in a segment (the consumer, the SPSC producer, an MPSC
//! producer slot) against live, dead and just-spawned holders; the trust rule
//! for lending in place; and the sticky record of corruption.

use super::*;
use crate::error::{Corrupted, Error, RingStop, Role};
use crate::layout::{Slot, FLAG_HANDED_OUT};
use crate::ring::{self, RingBacking};
use crate::segment::Segment;
use crate::sync::Ordering;
use std::time::Duration;

pub(super) fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// How long a role whose lock is held while its slot says detached is tried
/// again before it is reported taken (see [`claim_role`]).
pub(super) const SPAWN_GRACE: Duration = Duration::from_millis(100);

/// Whether `slot`'s lock, found held, is more likely a child's passing copy
/// of a dropped handle's descriptor than a live holder: the slot does not
/// say attached (a holder marks it attached right after taking the lock,
/// and detached before letting go).
pub(super) fn held_in_passing(segment: &Segment, slot: Slot) -> bool {
    RingBacking::header(segment)
        .participant(slot)
        .is_some_and(|p| p.state.load(crate::sync::Ordering::Acquire) != crate::layout::SLOT_ATTACHED)
}

/// Takes `slot`'s lock in `segment`, or reports who holds it.
///
/// A child being spawned (`posix_spawn` and `vfork` run no fork handlers)
/// holds copies of its parent's descriptors until it execs, and with them
/// the lock of a handle the parent has just dropped. So a lock held while
/// the slot says detached is tried again for a moment before the role is
/// reported taken; a live holder's slot says attached, and is reported at
/// once.
pub(super) fn claim_role(segment: &Segment, slot: Slot, role: Role) -> Result<(), Error> {
    let mut deadline = None;
    loop {
        if segment.try_lock(slot)? {
            return Ok(());
        }
        let holder =
            RingBacking::header(segment).participant(slot).map_or(0, |p| p.pid.load(crate::sync::Ordering::Relaxed));
        let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + SPAWN_GRACE);
        if !held_in_passing(segment, slot) || std::time::Instant::now() >= deadline {
            return Err(Error::AlreadyAttached { segment: segment.name().to_string(), role, pid: holder });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the first producer slot of an MPSC segment that no live producer
/// holds and whose dead holder (if any) left no unresolved claim.
///
/// A slot blocked by a dead producer's unresolved claim is not taken over:
/// only the consumer can resolve the claim, by skipping it when it reaches
/// it (see `ring::mpsc`). If such a slot is all that is left and no live
/// consumer is attached, the error says so ([`Error::ProducerSlotBlocked`]):
/// retrying is useless until a consumer attaches.
pub(super) fn take_producer_slot(segment: &Segment) -> Result<usize, Error> {
    let max = segment.identity().max_producers;
    let header = RingBacking::header(segment);
    let relaxed = crate::sync::Ordering::Relaxed;
    let mut deadline = None;
    loop {
        let mut blocked = None;
        // A slot locked while it says detached may be held for a moment by
        // a child being spawned (see `claim_role`).
        let mut in_passing = false;
        for n in 0..max as usize {
            let slot = Slot::Producer(n);
            if !segment.try_lock(slot)? {
                in_passing |= held_in_passing(segment, slot);
                continue;
            }
            if ring::slot_reusable(segment, n) {
                return Ok(n);
            }
            // Its holder is dead (we hold its lock) and its claim unresolved.
            let attached =
                header.participant(slot).is_some_and(|p| p.state.load(relaxed) == crate::layout::SLOT_ATTACHED);
            if attached && blocked.is_none() {
                blocked = Some((n, header.claim(n).map_or(0, |line| line.start.load(relaxed))));
            }
            segment.unlock(slot)?;
        }
        let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + SPAWN_GRACE);
        if in_passing && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let segment_name = segment.name().to_string();
        return match blocked {
            Some((slot, position)) if !segment.is_locked(Slot::Consumer) => {
                Err(Error::ProducerSlotBlocked { segment: segment_name, slot: slot as u32, position })
            }
            _ => Err(Error::TooManyProducers { segment: segment_name, max }),
        };
    }
}

/// The first [`Corrupted`] a handle met. Every later send, receive, read or
/// reserve returns it again, so a handle never trusts a segment it has seen
/// damaged, even if the bytes look right later (a peer may still be
/// scribbling). Costs the fast path one branch on this field.
#[derive(Debug, Default)]
pub(super) struct Poison(Option<Corrupted>);

impl Poison {
    /// `Err` with the recorded corruption, if there is one.
    #[inline(always)]
    pub(super) fn check<S: RingStop>(&self) -> Result<(), S> {
        match &self.0 {
            None => Ok(()),
            Some(c) => Err(Self::again(c)),
        }
    }

    #[cold]
    fn again<S: RingStop>(c: &Corrupted) -> S {
        S::from(c.clone())
    }

    /// Whether a corruption was recorded (every call then fails at once).
    pub(super) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Records `stop` if it is the first corruption met; passes it on.
    /// Out of line: only a call that failed comes here.
    #[cold]
    #[inline(never)]
    pub(super) fn note<S: RingStop>(&mut self, stop: S) -> S {
        if let (None, Some(c)) = (&self.0, stop.corruption()) {
            self.0 = Some(c.clone());
        }
        stop
    }

    /// A batch's count, or its stop if it sent or handed out nothing (a
    /// stop after some messages is met again by the next call; a
    /// corruption is recorded now).
    pub(super) fn counted<S: RingStop, E: From<S>>(&mut self, batch: crate::ring::Batch<S>) -> Result<usize, E> {
        match batch.stop {
            Some(stop) if batch.count == 0 => Err(self.note(stop).into()),
            Some(stop) => {
                self.note(stop);
                Ok(batch.count)
            }
            None => Ok(batch.count),
        }
    }

    /// [`check`](Self::check), then `run` with its corruption recorded.
    #[inline(always)]
    pub(super) fn guard<T, S: RingStop, E: From<S>>(&mut self, run: impl FnOnce() -> Result<T, S>) -> Result<T, E> {
        self.check::<S>()?;
        run().map_err(|stop| self.note(stop).into())
    }
}

/// Whether the handle just attached in `slot` may lend the segment's memory
/// in place (the trust rule, see [`RingOptions::borrow_in_place`]), recorded
/// in its slot's `lends` for [`AnonymousRing::send_over`]: lending is
/// recorded first, then the handed-out mark read (both SeqCst, as
/// `send_over` marks then reads), and withdrawn if the mark is there.
pub(super) fn may_lend(segment: &Segment, slot: Slot, options: &RingOptions) -> bool {
    let header = segment.header();
    let Some(participant) = header.ring.participant(slot) else { return false };
    if !options.borrow_in_place || !segment.writers_trusted() {
        participant.lends.store(0, Ordering::SeqCst);
        return false;
    }
    participant.lends.store(1, Ordering::SeqCst);
    if header.identity.flags.load(Ordering::SeqCst) & FLAG_HANDED_OUT != 0 {
        participant.lends.store(0, Ordering::SeqCst);
        return false;
    }
    true
}
