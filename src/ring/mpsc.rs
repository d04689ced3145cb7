//! The MPSC claim protocol: many producers claim space with a CAS on the
//! shared claim position, and a producer that dies before committing never
//! wedges the consumer or the other producers.
//!
//! # Claiming
//!
//! A producer holding slot `k`:
//!
//! 1. reads the claim position `t` (`tail`) and checks for room against the
//!    consumer's `head` (cached; re-read only when the ring looks full);
//! 2. publishes its *intent* in its own claim line: `end` (the claim's end,
//!    after any padding to the end of the region), then `start = t`
//!    (Release);
//! 3. CASes `tail` from `t` to `end` (Release, so whoever sees the new tail
//!    sees the intent); on failure it goes back to 1;
//! 4. writes a *claim marker* (tag `0x80 | k`) in the commit word of its
//!    record, then, if the claim wraps, the padding record (Release: whoever
//!    sees the padding sees the marker);
//! 5. writes the payload and commits (Release), as in SPSC.
//!
//! The consumer delivers records strictly in claim order: it polls the
//! commit word at `head`, and a slow producer delays only what was claimed
//! after it. Consumed space is zeroed before `head` moves past it, so free
//! space always reads zero and a word at `head` is zero, a marker, or a
//! commit of this lap, never a stale header of an earlier lap. (So MPSC
//! needs no terminator.)
//!
//! # A producer that dies
//!
//! When the record at `head` stays uncommitted, the consumer finds its owner
//! (at most every probe interval, or each time it wakes from a park):
//!
//! * a claim marker names the owner slot;
//! * a zero word with `tail > head` is a claim between steps 3 and 4; its
//!   owner is among the slots whose intent starts at `head` (the winner wrote
//!   its intent before its CAS and keeps it until its next attempt, which
//!   comes after its commit).
//!
//! Liveness is the kernel's lock on the slot's byte of the segment: exact,
//! immediate, and independent of PID namespaces. If any possible owner is
//! alive, the consumer waits: an alive but slow producer is never skipped.
//! Only when every possible owner is dead is the claim skipped (zeroed,
//! `head` advanced, counted in `torn_records`). Several dead producers can
//! hold intents at `head` only if a loser of the CAS died too; the true end
//! is the smallest of their ends where the next claim verifiably starts (the
//! claim position, a non-zero word, or another intent), since the winner
//! died before writing anything inside its claim.
//!
//! A slot whose holder died is given to a new producer only once its intent
//! is resolved (consumed past, or provably never claimed), so the evidence
//! the consumer needs is never overwritten.

use super::die::DieAt;
use super::producer::{Claim, Producer};
use super::record::{encode, padding_before, record_size, HEADER_LEN, TAG_CLAIM, TAG_PADDING};
use super::{mark_attached, withdraw_dead_sleeper, Pace, RingBacking};
use crate::error::{Corrupted, SendStop};
use crate::layout::{Slot, MAX_POSITION, NO_CLAIM};
use crate::sync::{observe, publish, Ordering};
use crossbeam_utils::Backoff;

/// Ordering of the store of a claim marker (see `mpsc_claim`).
fn mark() -> Ordering {
    crate::sync::unless_mutant("relaxed_marker", Ordering::Release)
}

/// Ordering of the CAS that claims space: Release, so the intent written
/// before it is visible to whoever observes the new claim position.
fn claim() -> Ordering {
    crate::sync::unless_mutant("relaxed_claim", Ordering::Release)
}

impl<B: RingBacking> Producer<B> {
    /// Attaches to an MPSC ring as the producer in `slot`. The caller holds
    /// the slot's lock and has checked with [`slot_reusable`] that a dead
    /// predecessor's claim is resolved.
    pub fn attach_mpsc(backing: B, pid: u32, slot: usize) -> Result<Self, Corrupted> {
        let header = backing.header();
        if slot >= backing.max_producers() as usize {
            return Err(Corrupted::new(backing.name(), format!("producer slot {slot} does not exist")));
        }
        // A file ring's producers reuse space behind the durable head, not
        // the consumer's head (see `durable`).
        let head = super::durable::limit_word(&backing).load(observe());
        let consumed_to = header.consumer.head.load(observe());
        if head % 8 != 0 || head > MAX_POSITION || head > consumed_to {
            return Err(Corrupted::new(
                backing.name(),
                format!(
                    "head {head} is not 8-byte aligned, beyond the largest position {MAX_POSITION} or past the \
                     consumer's head {consumed_to}"
                ),
            ));
        }
        let line = &header.claims[slot];
        line.start.store(NO_CLAIM, Ordering::Release);
        // A predecessor that died parked never withdrew its announcement.
        if line.parked.swap(0, Ordering::Relaxed) != 0 {
            withdraw_dead_sleeper(&header.producer_wake);
        }
        mark_attached(header, Slot::Producer(slot), pid);
        Ok(Producer::new(backing, head, head, Some(slot)))
    }

    /// Makes a loom model's producer stop for good at `stage` of its next
    /// claim, as if killed (the claim then reports the ring full).
    #[cfg(shmring_loom)]
    pub fn die_at(&mut self, stage: DieAt) {
        self.die_at = Some(stage);
    }

    /// Whether this loom model's producer reached the stage it dies at.
    #[cfg(shmring_loom)]
    pub fn died(&self) -> bool {
        self.died.get()
    }

    #[inline(always)]
    fn dies_at(&self, _stage: DieAt) -> bool {
        #[cfg(shmring_loom)]
        {
            self.died.set(self.die_at == Some(_stage));
            self.died.get()
        }
        #[cfg(not(shmring_loom))]
        false
    }

    /// Claims room for a `len`-byte record in slot `slot`'s name, or `None`
    /// when full.
    #[inline]
    pub(super) fn mpsc_claim(&mut self, slot: usize, len: u32, pace: Pace) -> Result<Option<Claim>, SendStop> {
        let capacity = self.capacity;
        let size = record_size(u64::from(len));
        // A file ring keeps the word at the claim position free (see
        // `durable`).
        let reserve = if self.persistent { 8 } else { 0 };
        let backoff = Backoff::new();
        loop {
            let header = self.backing.header();
            let tail = header.producer.tail.load(Ordering::Relaxed);
            // A tail far from our head is caught below (the claim position
            // must stay within a lap of head); its sum is checked.
            if tail % 8 != 0 {
                return Err(self.corrupted(format!("claim position {tail} is not 8-byte aligned")));
            }
            let padding = padding_before(tail, size, capacity);
            let Some(end) = tail.checked_add(padding + size) else {
                return Err(self.corrupted(format!("claim position {tail} is at the end of the position space")));
            };
            if tail < self.cached_head || end + reserve - self.cached_head > capacity {
                // Looks full, or the tail is older than our head: read the
                // consumer's head.
                let head = self.limit();
                if head % 8 != 0 || head < self.cached_head || (self.persistent && head > self.consumed_to()) {
                    return Err(self.corrupted(format!(
                        "consumer head {head} went back from {} or is misaligned",
                        self.cached_head
                    )));
                }
                self.cached_head = head;
                if head > tail {
                    // Others claimed and the consumer consumed since we read
                    // the tail; a fresh tail cannot be behind the head.
                    let fresh = header.producer.tail.load(Ordering::Relaxed);
                    if fresh < head {
                        return Err(self.corrupted(format!("claim position {fresh} is behind head {head}")));
                    }
                    continue;
                }
                if tail - head > capacity {
                    return Err(self.corrupted(format!(
                        "claim position {tail} is more than the capacity {capacity} ahead of head {head}"
                    )));
                }
                if end + reserve - head > capacity {
                    // Full: withdraw the intent (a parked producer must not
                    // look like the owner of a claim it lost). Release, like
                    // every change of `start`: whoever reads the withdrawal
                    // also sees the commit of this producer's last claim,
                    // whose intent it replaces (see `unmarked_claim_end`).
                    // (The waker's SeqCst fence after that commit already
                    // gives this store release semantics, which is why no
                    // loom mutant of it can fail; the ordering is kept
                    // explicit so it does not rest on the wake protocol.)
                    header.claims[slot].start.store(NO_CLAIM, Ordering::Release);
                    if self.watch.peer_gone(&self.backing, pace) {
                        return Err(SendStop::Disconnected);
                    }
                    if self.persistent {
                        self.want_release(head);
                    }
                    return Ok(None);
                }
            }
            let line = &header.claims[slot];
            let intent_first = !crate::sync::mutant("intent_after_claim");
            if intent_first {
                line.end.store(end, Ordering::Relaxed);
                line.start.store(tail, Ordering::Release);
            }
            if self.dies_at(DieAt::Intent) {
                return Ok(None);
            }
            if header.producer.tail.compare_exchange_weak(tail, end, claim(), Ordering::Relaxed).is_err() {
                backoff.spin();
                continue;
            }
            if !intent_first {
                line.end.store(end, Ordering::Relaxed);
                line.start.store(tail, Ordering::Release);
            }
            if self.dies_at(DieAt::Claimed) {
                return Ok(None);
            }
            let position = tail + padding;
            let region = self.backing.region();
            if !crate::sync::mutant("no_claim_marker") {
                // Release: whoever sees the marker sees the CAS before it
                // (so the claim position covers the record) and, before
                // that, this producer's hold on its slot's lock.
                region.word(position).store(encode(TAG_CLAIM | slot as u8, len, position, capacity), mark());
            }
            if padding > 0 {
                region.word(tail).store(encode(TAG_PADDING, (padding - HEADER_LEN) as u32, tail, capacity), publish());
            }
            if self.dies_at(DieAt::Marked) {
                return Ok(None);
            }
            self.tail = end;
            return Ok(Some(Claim { position, len }));
        }
    }

    /// Whether a claim of `len` bytes would find room now, computed as
    /// [`mpsc_claim`](Self::mpsc_claim) does but without claiming. Anything
    /// the claim would report as corrupt counts as room (the claim then
    /// reports it). When full it does what a waiting claim does: asks a
    /// file ring's consumer to release, and checks that the consumer lives.
    pub(super) fn mpsc_has_room(&mut self, len: u32, pace: Pace) -> Result<bool, SendStop> {
        let reserve = if self.persistent { 8 } else { 0 };
        let size = record_size(u64::from(len));
        let tail = self.backing.header().producer.tail.load(Ordering::Relaxed);
        let padding = padding_before(tail, size, self.capacity);
        let Some(end) = tail.checked_add(padding + size + reserve) else { return Ok(true) };
        let head = self.limit();
        let corrupt =
            tail % 8 != 0 || head % 8 != 0 || head < self.cached_head || tail - head.min(tail) > self.capacity;
        if corrupt || head > tail || end - head <= self.capacity {
            return Ok(true);
        }
        if self.persistent {
            self.want_release(head);
        }
        if self.watch.peer_gone(&self.backing, pace) {
            return Err(SendStop::Disconnected);
        }
        Ok(false)
    }

    /// Commits the record at `position` with `word` (Release) and counts it
    /// in the slot's line.
    #[inline]
    pub(super) fn mpsc_publish(&mut self, slot: usize, position: u64, word: u64) {
        self.backing.region().word(position).store(word, publish());
        // Only this slot's holder writes its counter.
        crate::sync::count_one(&self.backing.header().claims[slot].messages);
    }
}
