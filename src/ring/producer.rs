//! A producer handle: sending, zero-copy grants, waiting for room, and
//! committing. How space is claimed is the one thing the two ring kinds do
//! differently: [`super::spsc`] (the only writer: plain stores, a
//! terminator word) and [`super::mpsc`] (a CAS on the shared claim position,
//! with a published intent and a claim marker so that a producer's death is
//! recoverable).

use super::record::{encode, payload_offset, Record, HEADER_LEN, TAG_DISCARDED, TAG_MESSAGE};
use super::region::LentView;
use super::{mark_detached, park_once, Parkable, Waker};
use super::{Pace, PeerWatch, RingBacking, Stats};
use crate::error::{Corrupted, SendStop, TooLarge};
use crate::layout::{Slot, WakeLine};
use crate::sync::publish;
use crate::wait::{block, block_for, WaitStrategy, Waitable};
use std::time::Duration;

/// The producer side of a ring (SPSC, or one of the producers of an MPSC
/// ring).
#[derive(Debug)]
pub struct Producer<B: RingBacking> {
    pub(super) backing: B,
    pub(super) capacity: u64,
    pub(super) max_message: u32,
    /// The consumer's `head` (a file ring: `durable_head`, see
    /// [`super::durable`]) as last read; refreshed only when the ring looks
    /// full, so streaming does not pull the consumer's line every message.
    pub(super) cached_head: u64,
    /// SPSC: the next position to write (authoritative: only this handle
    /// writes records). MPSC: the end of this handle's last claim.
    pub(super) tail: u64,
    /// SPSC: every word from `tail` up to here is known to be zero (this
    /// handle zeroed it, and only this handle writes free space).
    pub(super) zeroed_to: u64,
    /// MPSC: the producer slot this handle holds. `None`: the SPSC producer.
    pub(super) mpsc_slot: Option<usize>,
    pub(super) watch: PeerWatch,
    /// Wakes the consumer when it sleeps.
    pub(super) waker: Waker,
    pub(super) stats: Stats,
    /// The longest a park lasts before the consumer's liveness is re-checked.
    pub(super) park_slice: Duration,
    /// The claim of the grant handed out last, until it is committed or
    /// discarded. A grant leaked with `mem::forget` leaves it here, and the
    /// next claim (or `Drop`) discards it: in an MPSC ring an open claim
    /// holds up the consumer, so only a producer's death may leave one.
    pub(super) open_claim: Option<Claim>,
    /// Whether grants are views of the ring itself (see
    /// [`set_borrow_in_place`](Self::set_borrow_in_place)).
    pub(super) in_place: bool,
    /// Whether a grant's view of the ring is counted as lent (see
    /// [`lend_view`](Self::lend_view)).
    view_lent: LentView,
    /// Where a grant is written when it may not be a view of the ring.
    pub(super) staging: Vec<u8>,
    /// A file ring (see [`super::durable`]).
    pub(super) persistent: bool,
    /// Loom models only: where this producer stops as if killed.
    #[cfg(shmring_loom)]
    pub(super) die_at: Option<super::die::DieAt>,
    /// Loom models only: whether it reached `die_at` (a claim that "died"
    /// reports the ring full, as a full ring does: the models check this).
    #[cfg(shmring_loom)]
    pub(super) died: std::cell::Cell<bool>,
}

/// Space claimed for one message: `len` payload bytes at `position + 8`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claim {
    pub(super) position: u64,
    pub(super) len: u32,
}

impl<B: RingBacking> Producer<B> {
    pub(super) fn new(backing: B, cached_head: u64, tail: u64, mpsc_slot: Option<usize>) -> Self {
        Producer {
            capacity: backing.region().len() as u64,
            max_message: backing.max_message(),
            cached_head,
            tail,
            zeroed_to: tail,
            mpsc_slot,
            watch: PeerWatch::new(Slot::Consumer),
            waker: Waker::default(),
            stats: Stats::default(),
            park_slice: crate::wait::PARK_SLICE,
            open_claim: None,
            in_place: false,
            view_lent: LentView::default(),
            staging: Vec::new(),
            persistent: backing.persistent(),
            #[cfg(shmring_loom)]
            die_at: None,
            #[cfg(shmring_loom)]
            died: std::cell::Cell::new(false),
            backing,
        }
    }

    /// The backing this producer writes to.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// This handle's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// SPSC: bytes written into the ring since it was created (the next
    /// position). MPSC: the end of this handle's last claim.
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// How often a waiting producer checks that the consumer is alive: it
    /// parks at most `interval` at a time and probes at most every fifth of
    /// it.
    pub fn set_liveness_interval(&mut self, interval: Duration) {
        self.park_slice = interval;
        self.watch.limiter.interval = crate::wait::probe_interval(interval);
    }

    /// Whether a [`Grant`] may be a view of the ring itself (default: no,
    /// it is a buffer of this handle, copied into the ring on commit). The
    /// trust rule is the consumer's (see
    /// [`Consumer::set_borrow_in_place`](super::Consumer::set_borrow_in_place)):
    /// a `&mut [u8]` of shared memory promises that nobody else touches it.
    pub fn set_borrow_in_place(&mut self, in_place: bool) {
        self.in_place = in_place;
    }

    /// Whether grants are views of the ring itself.
    pub fn borrows_in_place(&self) -> bool {
        self.in_place
    }

    /// The participant slot this producer holds.
    pub fn slot(&self) -> Slot {
        Slot::Producer(self.mpsc_slot.unwrap_or(0))
    }

    /// Where the space producers may write ends, minus the capacity: the
    /// consumer's `head`, read with Acquire; in a file ring, what
    /// [`durable`](super::durable) allows (MPSC: `durable_head`; SPSC: `head`
    /// unless that overwrites the flushed zone).
    #[inline]
    pub(super) fn limit(&self) -> u64 {
        let header = self.backing.header();
        if self.persistent && self.mpsc_slot.is_some() && !crate::sync::mutant("limit_from_head") {
            return header.persistence.durable_head.load(crate::sync::observe());
        }
        let head = header.consumer.head.load(crate::sync::observe());
        if !self.persistent || self.mpsc_slot.is_some() {
            return head;
        }
        // What it cached is still safe to write up to (it read that `head`
        // before its fence: see `durable`); never more than `head`, so a
        // head that went back is still reported.
        super::durable::spsc_limit(&self.backing, head, self.tail, self.capacity).max(self.cached_head).min(head)
    }

    /// The consumer's `head` (a file ring's durable head never passes it).
    #[cold]
    pub(super) fn consumed_to(&self) -> u64 {
        self.backing.header().consumer.head.load(crate::sync::observe())
    }

    pub(super) fn corrupted(&self, what: String) -> SendStop {
        SendStop::Corrupted(Corrupted::new(self.backing.name(), what))
    }

    /// MPSC: records in the slot's claim line whether this producer is
    /// announced as a sleeper (see `ClaimLine::parked`). Not under loom,
    /// whose models do not kill parked producers: it would only add
    /// interleavings to explore.
    pub(crate) fn mark_parked(&self, parked: bool) {
        #[cfg(not(shmring_loom))]
        if let Some(slot) = self.mpsc_slot {
            self.backing.header().claims[slot].parked.store(u64::from(parked), crate::sync::Ordering::Relaxed);
        }
        #[cfg(shmring_loom)]
        let _ = parked;
    }

    /// Whether a `len`-byte message would find room now, without claiming
    /// it (an error: the claim would fail). SPSC: a claim's only effect
    /// before its commit is the padding at a wrap, which is published
    /// either way, so it claims and forgets. MPSC: a claim is a CAS others
    /// see, so it only computes (see [`mpsc_has_room`](Self::mpsc_has_room)).
    pub(super) fn has_room(&mut self, len: usize, pace: Pace) -> Result<bool, SendStop> {
        match self.mpsc_slot {
            None => Ok(self.try_claim(len, pace)?.is_some()),
            Some(_) => {
                let max = self.max_message as usize;
                if len > max {
                    return Err(SendStop::TooLarge(TooLarge { len, max }));
                }
                // As a claim does: a leaked grant's claim holds up the
                // consumer, so the space it waits for would never come.
                if let Some(leaked) = self.open_claim.take() {
                    self.forget_leaked(leaked);
                }
                self.mpsc_has_room(len as u32, pace)
            }
        }
    }

    /// Room for `len` bytes, or `None` when full.
    #[inline]
    fn try_claim(&mut self, len: usize, pace: Pace) -> Result<Option<Claim>, SendStop> {
        let max = self.max_message as usize;
        if len > max {
            return Err(SendStop::TooLarge(TooLarge { len, max }));
        }
        if let Some(leaked) = self.open_claim.take() {
            self.forget_leaked(leaked);
        }
        match self.mpsc_slot {
            None => self.spsc_claim(len as u32, pace),
            Some(slot) => self.mpsc_claim(slot, len as u32, pace),
        }
    }

    /// Publishes the claimed record as a message of its first `len` bytes
    /// (`len` ≤ the claim's length) with a Release store of its word,
    /// counts it, and wakes the consumer if it sleeps.
    ///
    /// A shorter message leaves the rest of the claim. SPSC: it stays free
    /// space, as nothing else claimed after it (but no longer known to be
    /// zero: the grant may have written it). MPSC: other producers may
    /// have claimed after it, so the rest becomes a discarded record, whose
    /// word is stored before the message's Release store publishes both: a
    /// consumer that reads the message finds the next record's word written.
    /// Records are multiples of 8 bytes, so the rest is 0 or at least a
    /// record header.
    #[inline]
    pub(super) fn commit(&mut self, claim: Claim, len: u32) {
        self.commit_quietly(claim, len);
        self.wake_consumer_for(claim.position);
    }

    /// [`commit`](Self::commit) without waking the consumer: a batch wakes
    /// it once, after its last commit and before it waits for room (see
    /// [`super::batch`]).
    #[inline(always)]
    pub(super) fn commit_quietly(&mut self, claim: Claim, len: u32) {
        let size = Record::Message { len }.size();
        let word = encode(TAG_MESSAGE, len, claim.position, self.capacity);
        match self.mpsc_slot {
            None => {
                if len < claim.len {
                    self.spsc_written_from(claim.position + size);
                }
                self.spsc_publish(claim.position, size, word)
            }
            Some(slot) => {
                let claimed = Record::Message { len: claim.len }.size();
                let rest_first = !crate::sync::mutant("remainder_after_publish");
                if rest_first {
                    self.give_back_rest(claim, size);
                }
                if self.persistent {
                    self.write_back_if_flushed_over(claim.position, claimed);
                }
                self.mpsc_publish(slot, claim.position, word);
                if !rest_first {
                    self.give_back_rest(claim, size);
                }
            }
        }
        self.stats.messages += 1;
        self.stats.bytes += u64::from(len);
    }

    /// Wakes the consumer if it sleeps (or is about to: the fence in
    /// `wake_if_sleeping` orders every commit before it).
    #[inline]
    pub(super) fn wake_consumer(&mut self) {
        self.waker.wake_if_sleeping(&self.backing.header().consumer_wake, &mut self.stats);
    }

    /// [`wake_consumer`](Self::wake_consumer) after publishing the record at
    /// `position` alone: a consumer that says it waits for another record
    /// (MPSC, behind another producer's claim) is left asleep.
    /// An SPSC consumer always waits for anything (its one producer's next
    /// record is the one at its `head`), so an SPSC producer skips the test.
    #[inline(always)]
    fn wake_consumer_for(&mut self, position: u64) {
        match self.mpsc_slot {
            None => self.wake_consumer(),
            Some(_) => {
                let line = &self.backing.header().consumer_wake;
                self.waker.wake_for_record(line, &mut self.stats, position, self.capacity);
            }
        }
    }

    /// MPSC: makes the rest of `claim` after its first `size` bytes a
    /// discarded record, if there is a rest. Relaxed: the commit of the
    /// record before it publishes it.
    #[inline]
    fn give_back_rest(&self, claim: Claim, size: u64) {
        let claimed = Record::Message { len: claim.len }.size();
        if claimed > size && !crate::sync::mutant("no_remainder_record") {
            let rest = claim.position + size;
            let rest_len = (claimed - size - HEADER_LEN) as u32;
            let word = encode(TAG_DISCARDED, rest_len, rest, self.capacity);
            self.backing.region().word(rest).store(word, crate::sync::Ordering::Relaxed);
        }
    }

    /// A file ring's MPSC producer, before committing the record at
    /// `position`: if a `flush` has covered that position (it went past
    /// this open claim), writes the payload back first, so that the commit
    /// word never reaches the disk without it (see [`super::durable`]).
    #[cold]
    #[inline(never)]
    fn write_back_if_flushed_over(&mut self, position: u64, size: u64) {
        // StoreLoad: pairs with the SeqCst store of `flush_pending` and the
        // fence after it in `flush` (see `durable`). Not loom-modelled: the
        // other side of the pairing is the kernel reading the pages.
        crate::sync::fence(crate::sync::Ordering::SeqCst);
        let pending = self.backing.header().persistence.flush_pending.load(crate::sync::Ordering::Relaxed);
        if position < pending {
            // A failure is reported by the flush that covers the record
            // (`msync` reports the file's write-back errors to every caller).
            let _ = self.backing.sync_positions(position, position + size);
        }
    }

    /// Asks the consumer of a file ring to release space (it waits for the
    /// durable head, not for the consumer), and wakes it if it sleeps.
    pub(super) fn want_release(&mut self, limit: u64) {
        if super::durable::want_release(&self.backing, limit) {
            self.waker.wake_if_sleeping(&self.backing.header().consumer_wake, &mut self.stats);
        }
    }

    /// Counts the view of the ring a grant lends, so that a fork meanwhile
    /// copies the region for the child (see `Region::lend`).
    pub(super) fn lend_view(&mut self) {
        self.view_lent.lend(self.backing.region());
    }

    /// Ends the count of [`lend_view`](Self::lend_view).
    pub(super) fn return_view(&mut self) {
        self.view_lent.give_back(self.backing.region());
    }

    /// The claim of a grant that was leaked (`mem::forget`): discarded, and
    /// its view no longer counted. Sound because the caller holds the
    /// producer mutably, which the leaked grant's borrow (and any view made
    /// from it) excluded for as long as it lived.
    #[cold]
    fn forget_leaked(&mut self, leaked: Claim) {
        self.return_view();
        self.discard(leaked);
    }

    /// Gives up a claim without publishing a message. SPSC: the space is
    /// simply not committed and the next claim takes it again (its grant may
    /// have written it, so it is no longer known to be zero). MPSC: other
    /// producers may have claimed after it, so it is committed as a
    /// discarded record, which the consumer skips.
    pub(super) fn discard(&mut self, claim: Claim) {
        match self.mpsc_slot {
            None => self.spsc_written_from(claim.position),
            Some(_) => {
                let word = encode(TAG_DISCARDED, claim.len, claim.position, self.capacity);
                self.backing.region().word(claim.position).store(word, publish());
                self.wake_consumer_for(claim.position);
            }
        }
    }

    #[inline(always)]
    fn write_claim(&mut self, claim: Claim, msg: &[u8]) {
        self.write_claim_quietly(claim, msg);
        self.wake_consumer_for(claim.position);
    }

    /// Writes `msg` into `claim` and commits it without waking the consumer.
    #[inline(always)]
    pub(super) fn write_claim_quietly(&mut self, claim: Claim, msg: &[u8]) {
        let written = self.backing.region().write(payload_offset(claim.position, self.capacity), msg);
        debug_assert!(written, "a claim always lies inside the region");
        self.commit_quietly(claim, claim.len);
    }

    /// Room for `len` bytes now (`None`: full).
    pub(super) fn claim_now(&mut self, len: usize) -> Result<Option<Claim>, SendStop> {
        self.try_claim(len, Pace::Call)
    }

    /// Room for `len` bytes, waiting with `strategy`.
    pub(super) fn claim(&mut self, len: usize, strategy: WaitStrategy) -> Result<Claim, SendStop> {
        block(&mut Room { producer: self, len }, strategy)
    }

    /// Room for `len` bytes, waiting with `strategy` for at most `timeout`.
    pub(super) fn claim_for(
        &mut self,
        len: usize,
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<Claim>, SendStop> {
        block_for(&mut Room { producer: self, len }, strategy, timeout)
    }

    /// Sends `msg` if there is room now (`false`: full).
    ///
    /// The common case, an SPSC ring with room as far as this handle knows
    /// and no wrap, is inlined into the caller; the rest is out of line, so
    /// that the send path saves and restores few registers (the same for
    /// [`send`](Self::send)).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<bool, SendStop> {
        match self.spsc_claim_without_looking(msg.len()) {
            Some(claim) => {
                self.write_claim(claim, msg);
                Ok(true)
            }
            None => self.try_send_by_protocol(msg),
        }
    }

    /// [`try_send`](Self::try_send) by the whole claim protocol.
    #[inline(never)]
    fn try_send_by_protocol(&mut self, msg: &[u8]) -> Result<bool, SendStop> {
        let claim = self.claim_now(msg.len())?;
        Ok(claim.map(|claim| self.write_claim(claim, msg)).is_some())
    }

    /// Sends `msg`, waiting for room with `strategy`.
    #[inline]
    pub fn send(&mut self, msg: &[u8], strategy: WaitStrategy) -> Result<(), SendStop> {
        match self.spsc_claim_without_looking(msg.len()) {
            Some(claim) => {
                self.write_claim(claim, msg);
                Ok(())
            }
            None => self.send_by_protocol(msg, strategy),
        }
    }

    /// [`send`](Self::send) by the whole claim protocol, waiting for room.
    #[inline(never)]
    fn send_by_protocol(&mut self, msg: &[u8], strategy: WaitStrategy) -> Result<(), SendStop> {
        let claim = self.claim(msg.len(), strategy)?;
        self.write_claim(claim, msg);
        Ok(())
    }

    /// Sends `msg`, waiting for room with `strategy` for at most `timeout`
    /// (`false`: still full).
    pub fn send_for(&mut self, msg: &[u8], strategy: WaitStrategy, timeout: Duration) -> Result<bool, SendStop> {
        let claim = self.claim_for(msg.len(), strategy, timeout)?;
        Ok(claim.map(|claim| self.write_claim(claim, msg)).is_some())
    }
}

impl<B: RingBacking> Drop for Producer<B> {
    fn drop(&mut self) {
        if let Some(leaked) = self.open_claim.take() {
            if !crate::sync::mutant("no_discard_on_drop") {
                self.forget_leaked(leaked);
            }
        }
        let slot = self.slot();
        let header = self.backing.header();
        mark_detached(header, slot, &header.consumer_wake, &mut self.stats);
    }
}

/// A producer waiting for room for a `len`-byte message.
struct Room<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    len: usize,
}

impl<B: RingBacking> Waitable for Room<'_, B> {
    type Ready = Claim;
    type Stop = SendStop;

    fn poll(&mut self, pace: Pace) -> Result<Option<Claim>, SendStop> {
        self.producer.try_claim(self.len, pace)
    }

    fn park(&mut self, timeout: Duration) -> Result<Option<Claim>, SendStop> {
        park_once(self, timeout)
    }

    fn park_slice(&self) -> Duration {
        self.producer.park_slice
    }
}

impl<B: RingBacking> Parkable for Room<'_, B> {
    fn line(&self) -> &WakeLine {
        &self.producer.backing.header().producer_wake
    }

    fn recheck(&mut self) -> Result<Option<Claim>, SendStop> {
        self.producer.try_claim(self.len, Pace::Park)
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.producer.stats
    }

    fn mark_parked(&self, parked: bool) {
        self.producer.mark_parked(parked);
    }
}
