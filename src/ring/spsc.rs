//! The single producer's claim protocol: it is the only writer of `tail`, so
//! it claims with plain stores, and before committing a record it zeroes the
//! word after it (the terminator), so the consumer never polls stale bytes.

use super::producer::{Claim, Producer};
use super::record::{decode, encode, padding_before, record_size, HEADER_LEN, TAG_PADDING};
use super::{forget_dead_sleepers, mark_attached, Pace, RingBacking};
use crate::error::{Corrupted, SendStop};
use crate::layout::{Slot, MAX_POSITION};
use crate::sync::{observe, publish, Ordering};

/// While streaming, the producer zeroes free space ahead of its commits to
/// the end of a block of this many bytes (see `zero_ahead`): a few cache
/// lines, so the step is rare for small messages and short for all.
const ZERO_AHEAD_BLOCK: u64 = 512;

/// Records this long or longer, header included (payloads of 248 bytes
/// and more), are not zeroed ahead of: the zeroing writes lines the next
/// record overwrites anyway, and the next terminator is written by
/// `terminate` unless earlier zeroing covers it. Measured between two
/// processes, skipping it made 256- and 512-byte messages about 1.4x as
/// fast and 1 KiB 1.04x-1.18x, and it made 128-byte ones 0.87x
/// (docs/performance.md).
const ZERO_AHEAD_MAX_RECORD: u64 = 256;

impl<B: RingBacking> Producer<B> {
    /// Attaches to an SPSC ring as its producer (the caller holds the
    /// producer role) and recovers the write position.
    ///
    /// The shared `tail` is only a hint (a producer killed between its commit
    /// and its `tail` store leaves it behind), so the position is recovered by
    /// walking committed records from `max(tail, head)` to the first zero
    /// word, which the terminator protocol guarantees is the real end.
    pub fn attach(backing: B, pid: u32) -> Result<Self, Corrupted> {
        let header = backing.header();
        let capacity = backing.region().len() as u64;
        let max_message = backing.max_message();
        let corrupted = |what: String| Corrupted::new(backing.name(), what);
        // The durable head first: it only follows `head`, so read in this
        // order it is never past it.
        let limit = super::durable::limit_word(&backing).load(Ordering::Acquire);
        let head = header.consumer.head.load(Ordering::Acquire);
        let hint = header.producer.tail.load(Ordering::Relaxed);
        if head % 8 != 0 || hint % 8 != 0 || head > MAX_POSITION || hint > MAX_POSITION {
            return Err(corrupted(format!(
                "head {head} or tail {hint} is not 8-byte aligned or beyond the largest position {MAX_POSITION}"
            )));
        }
        if hint > head && hint - head > capacity {
            return Err(corrupted(format!("tail {hint} is more than the capacity {capacity} ahead of head {head}")));
        }
        let mut tail = hint.max(head);
        loop {
            let word = backing.region().word(tail).load(observe());
            if word == 0 {
                break;
            }
            let record = decode(word, tail, capacity, max_message).map_err(&corrupted)?;
            tail += record.size();
            if tail - head > capacity {
                return Err(corrupted(format!("committed records run past head {head} plus the capacity")));
            }
        }
        header.producer.tail.store(tail, Ordering::Relaxed);
        if limit % 8 != 0 || limit > head {
            return Err(corrupted(format!("durable head {limit} is misaligned or past head {head}")));
        }
        // The single producer is the only one that sleeps on this line.
        forget_dead_sleepers(&header.producer_wake);
        mark_attached(header, Slot::Producer(0), pid);
        Ok(Producer::new(backing, limit, tail, None))
    }

    /// The claim [`spsc_claim`](Self::spsc_claim) makes when this handle
    /// need not look at anything shared: an SPSC producer, no leaked grant
    /// to discard, `len` allowed, no padding, and room below the `head` it
    /// read last. `None` when any of that does not hold (not when full):
    /// the caller then claims the whole way.
    #[inline(always)]
    pub(super) fn spsc_claim_without_looking(&self, len: usize) -> Option<Claim> {
        if self.mpsc_slot.is_some() || self.open_claim.is_some() || len > self.max_message as usize {
            return None;
        }
        let capacity = self.capacity;
        let tail = self.tail;
        let size = record_size(len as u64);
        let fits_before_wrap = (tail & (capacity - 1)) + size <= capacity;
        let room = tail + size + HEADER_LEN - self.cached_head <= capacity;
        (fits_before_wrap && room).then_some(Claim { position: tail, len: len as u32 })
    }

    /// Room for a `len`-byte record, or `None` when full. Publishes the
    /// padding at the wrap as part of the claim.
    #[inline]
    pub(super) fn spsc_claim(&mut self, len: u32, pace: Pace) -> Result<Option<Claim>, SendStop> {
        let capacity = self.capacity;
        let tail = self.tail;
        let size = record_size(u64::from(len));
        let padding = padding_before(tail, size, capacity);
        let needed = padding + size + HEADER_LEN;
        if tail + needed - self.cached_head > capacity {
            let head = self.limit();
            if head % 8 != 0 || head < self.cached_head || head > tail {
                return Err(self.corrupted(format!(
                    "consumer head {head} is outside the valid range {}..={tail} or misaligned",
                    self.cached_head
                )));
            }
            self.cached_head = head;
            if tail + needed - head > capacity && !self.released_by_itself(tail + needed, head) {
                // Full. Only now does the consumer's absence matter: while
                // there is room, messages wait in the ring for the next one.
                if self.watch.peer_gone(&self.backing, pace) {
                    return Err(SendStop::Disconnected);
                }
                return Ok(None);
            }
        }
        if padding > 0 {
            // The terminator of the padding: the first word of the next lap.
            self.terminate(tail + padding);
            let region = self.backing.region();
            region.word(tail).store(encode(TAG_PADDING, (padding - HEADER_LEN) as u32, tail, capacity), publish());
            self.tail = tail + padding;
            self.backing.header().producer.tail.store(tail + padding, Ordering::Relaxed);
        }
        Ok(Some(Claim { position: tail + padding, len }))
    }

    /// A file ring full below the durable head `limit` while the consumer
    /// is past it: makes the consumer's position durable and raises the
    /// limit itself (see `durable`). Whether there is room up to `end` now.
    #[cold]
    fn released_by_itself(&mut self, end: u64, limit: u64) -> bool {
        if !self.persistent || !super::durable::release_by_producer(&self.backing, limit) {
            return false;
        }
        let raised = self.limit();
        // Past our own tail is a damaged head: left to the next claim's
        // check, which reports it (never a position subtracted below zero).
        if raised < limit || raised % 8 != 0 || raised > self.tail {
            return false;
        }
        self.cached_head = raised;
        end - raised <= self.capacity
    }

    /// Writes the terminator, then the commit word `word` (Release) of the
    /// `size`-byte record at `position`, then zeroes ahead.
    #[inline]
    pub(super) fn spsc_publish(&mut self, position: u64, size: u64, word: u64) {
        let streaming = self.zeroed_to > position + size;
        self.terminate(position + size);
        self.backing.region().word(position).store(word, publish());
        self.zero_ahead(position + size, size, streaming);
        self.tail = position + size;
        let line = &self.backing.header().producer;
        line.tail.store(position + size, Ordering::Relaxed);
        crate::sync::count_one(&line.messages);
    }

    /// A batch's commit of the `size`-byte record at `position` (see
    /// [`super::batch`]): as [`spsc_publish`](Self::spsc_publish), but the
    /// word is stored Relaxed, and not at all while `held` (the batch's
    /// first record, whose word the batch stores last, with Release, to
    /// publish every record after it at once). No `tail` hint either: a
    /// hint past a record not yet published would let a producer that
    /// recovers after our death skip it, and the consumer wait at its zero
    /// word for ever.
    #[inline]
    pub(super) fn spsc_commit_held(&mut self, position: u64, size: u64, word: u64, held: bool) {
        let streaming = self.zeroed_to > position + size;
        self.terminate(position + size);
        if !held {
            self.backing.region().word(position).store(word, Ordering::Relaxed);
        }
        self.zero_ahead(position + size, size, streaming);
        self.tail = position + size;
    }

    /// Publishes the held first record of a batch (its word `word` at
    /// `position`), and with it every record the batch wrote after it
    /// (`count` in all, then counted); then the `tail` hint.
    #[inline]
    pub(super) fn spsc_publish_held(&mut self, position: u64, word: u64, count: u64) {
        let order = if crate::sync::mutant("held_word_relaxed") { Ordering::Relaxed } else { publish() };
        self.backing.region().word(position).store(word, order);
        let line = &self.backing.header().producer;
        line.tail.store(self.tail, Ordering::Relaxed);
        crate::sync::count(&line.messages, count);
    }

    /// Makes the word at `position` (free space) read zero, so that the
    /// consumer, once it gets there, polls a zero until the next commit and
    /// never a stale word of an earlier lap. While records are small,
    /// [`zero_ahead`] usually did it already, off the critical path; after a
    /// record of [`ZERO_AHEAD_MAX_RECORD`] bytes or more, this store is the
    /// only zeroing.
    ///
    /// [`zero_ahead`]: Self::zero_ahead
    #[inline(always)]
    fn terminate(&mut self, position: u64) {
        if crate::sync::mutant("no_terminator") {
            return;
        }
        if position >= self.zeroed_to {
            self.backing.region().word(position).store(0, Ordering::Relaxed);
            self.zeroed_to = position + HEADER_LEN;
        }
    }

    /// A grant may have written anything from `position` on, in free space
    /// that `zero_ahead` had zeroed: the next terminators there must be
    /// written again, not assumed. (Without this, a grant written and then
    /// dropped, or committed shorter, left its bytes where the consumer
    /// reads the next record's word.)
    #[cold]
    pub(super) fn spsc_written_from(&mut self, position: u64) {
        self.zeroed_to = self.zeroed_to.min(position);
    }

    /// After a commit whose terminator is at `end`, of a `size`-byte record
    /// shorter than [`ZERO_AHEAD_MAX_RECORD`]: make sure the free space up
    /// to the end of the cache line after `end`'s reads zero. The
    /// next commits then find their terminators written, and their own
    /// stores do not queue behind a store to a line this core does not hold
    /// (stores leave in order, so that store would delay the commit's
    /// visibility by a cache miss).
    ///
    /// `streaming`: the zeroed space reached past this commit's terminator
    /// before [`terminate`](Self::terminate) ran. Then it zeroes on to the
    /// end of the [`ZERO_AHEAD_BLOCK`] it starts in: one `memset` every few
    /// small messages instead of one each (about 25 instructions a message
    /// fewer). Otherwise (a grant wrote past its commit, which sets
    /// `zeroed_to` back to the terminator, or earlier) only what is needed:
    /// a producer that reserves large and commits short would otherwise
    /// zero a block on every message.
    #[inline(always)]
    fn zero_ahead(&mut self, end: u64, size: u64, streaming: bool) {
        if crate::sync::mutant("no_terminator") || size >= ZERO_AHEAD_MAX_RECORD {
            return;
        }
        let capacity = self.capacity;
        let free_end = self.cached_head + capacity;
        let mut from = self.zeroed_to.max(end);
        let needed = ((end | 63) + 65).min(free_end);
        if from >= needed {
            return;
        }
        let limit = if streaming { needed.max((from | (ZERO_AHEAD_BLOCK - 1)) + 1).min(free_end) } else { needed };
        let region = self.backing.region();
        // Written out, not `region_pieces`: its lap check would cost every
        // commit 7 instructions (callgrind), and `from` is within a lap of
        // `limit` by construction (past the consumer's head).
        while from < limit {
            let offset = from & (capacity - 1);
            let len = (limit - from).min(capacity - offset);
            let zeroed = region.zero(offset as usize, len as usize);
            debug_assert!(zeroed, "free space always lies inside the region");
            from += len;
        }
        self.zeroed_to = self.zeroed_to.max(from);
    }
}
