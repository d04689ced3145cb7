//! The single producer: claims space with plain stores (it is the only
//! writer of `tail`), frames records, and commits them.

use super::record::{encode, record_size, Record, HEADER_LEN, TAG_MESSAGE, TAG_PADDING};
use super::region::ViewMut;
use super::{forget_dead_sleepers, mark_attached, mark_detached, park_once, Parkable, Waker};
use super::{PeerWatch, RingBacking, Stats};
use crate::error::{Corrupted, Stop, TooLarge};
use crate::layout::{Slot, WakeLine};
use crate::sync::{Ordering, OBSERVE, PUBLISH};
use crate::wait::{block, WaitStrategy, Waitable};
use std::time::Duration;

/// The producer side of an SPSC ring.
#[derive(Debug)]
pub struct Producer<B: RingBacking> {
    backing: B,
    /// Next position to write. Authoritative: only this handle writes records.
    tail: u64,
    /// The consumer's `head` as last read; refreshed only when the ring looks
    /// full, so streaming does not pull the consumer's line every message.
    cached_head: u64,
    /// Every word from `tail` up to here is known to be zero (this handle
    /// zeroed it, and only this handle writes free space).
    zeroed_to: u64,
    capacity: u64,
    max_message: u32,
    watch: PeerWatch,
    /// Wakes the consumer when it sleeps.
    waker: Waker,
    stats: Stats,
}

/// Space claimed for one message: `len` payload bytes at `position + 8`.
#[derive(Debug, Clone, Copy)]
struct Claim {
    position: u64,
    len: u32,
}

impl<B: RingBacking> Producer<B> {
    /// Attaches to the ring as its producer (the caller holds the producer
    /// role) and recovers the write position.
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
        let head = header.consumer.head.load(Ordering::Acquire);
        let hint = header.producer.tail.load(Ordering::Relaxed);
        if head % 8 != 0 || hint % 8 != 0 {
            return Err(corrupted(format!("head {head} or tail {hint} is not 8-byte aligned")));
        }
        if hint > head && hint - head > capacity {
            return Err(corrupted(format!("tail {hint} is more than the capacity {capacity} ahead of head {head}")));
        }
        let mut tail = hint.max(head);
        loop {
            let word = backing.region().word(tail).load(OBSERVE);
            if word == 0 {
                break;
            }
            let record = super::record::decode(word, tail, capacity, max_message).map_err(&corrupted)?;
            tail += record.size();
            if tail - head > capacity {
                return Err(corrupted(format!("committed records run past head {head} plus the capacity")));
            }
        }
        header.producer.tail.store(tail, Ordering::Relaxed);
        // The single producer is the only one that sleeps on this line.
        forget_dead_sleepers(&header.producer_wake);
        mark_attached(header, Slot::Producer(0), pid);
        Ok(Producer {
            tail,
            cached_head: head,
            zeroed_to: tail,
            capacity,
            max_message,
            watch: PeerWatch::new(Slot::Consumer),
            waker: Waker::default(),
            stats: Stats::default(),
            backing,
        })
    }

    /// The backing this producer writes to.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// This handle's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes written into the ring since it was created (the next position).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Room for `len` bytes, or `None` when full. Publishes the padding at the
    /// wrap as part of the claim.
    fn try_claim(&mut self, len: usize, slow: bool) -> Result<Option<Claim>, Stop> {
        let max = self.max_message as usize;
        if len > max {
            return Err(Stop::TooLarge(TooLarge { len, max }));
        }
        let header = self.backing.header();
        let size = record_size(len as u64);
        let offset = self.tail & (self.capacity - 1);
        let padding = if offset + size > self.capacity { self.capacity - offset } else { 0 };
        let needed = padding + size + HEADER_LEN;
        if self.tail + needed - self.cached_head > self.capacity {
            let head = header.consumer.head.load(OBSERVE);
            if head % 8 != 0 || head < self.cached_head || head > self.tail {
                return Err(Stop::Corrupted(Corrupted::new(
                    self.backing.name(),
                    format!(
                        "consumer head {head} is outside the valid range {}..={} or misaligned",
                        self.cached_head, self.tail
                    ),
                )));
            }
            self.cached_head = head;
            if self.tail + needed - head > self.capacity {
                // Full. Only now does the consumer's absence matter: while
                // there is room, messages wait in the ring for the next one.
                if self.watch.peer_gone(&self.backing, slow) {
                    return Err(Stop::Disconnected);
                }
                return Ok(None);
            }
        }
        if padding > 0 {
            // The terminator of the padding: the first word of the next lap.
            self.terminate(self.tail + padding);
            let pad_len = (padding - HEADER_LEN) as u32;
            let region = self.backing.region();
            region.word(self.tail).store(encode(TAG_PADDING, pad_len, self.tail), PUBLISH);
            self.tail += padding;
            self.backing.header().producer.tail.store(self.tail, Ordering::Relaxed);
        }
        Ok(Some(Claim { position: self.tail, len: len as u32 }))
    }

    /// Writes the terminator, then the commit word (Release), then wakes the
    /// consumer if it sleeps.
    fn commit(&mut self, claim: Claim) {
        let size = Record::Message { len: claim.len }.size();
        self.terminate(claim.position + size);
        let region = self.backing.region();
        region.word(claim.position).store(encode(TAG_MESSAGE, claim.len, claim.position), PUBLISH);
        self.zero_ahead(claim.position + size);
        self.tail = claim.position + size;
        let header = self.backing.header();
        header.producer.tail.store(self.tail, Ordering::Relaxed);
        self.stats.messages += 1;
        // Only this handle writes the counter: a load and a store, no RMW.
        let sent = header.producer.messages.load(Ordering::Relaxed);
        header.producer.messages.store(sent.wrapping_add(1), Ordering::Relaxed);
        self.stats.bytes += u64::from(claim.len);
        self.waker.wake_if_sleeping(&header.consumer_wake, &mut self.stats);
    }

    fn write_claim(&mut self, claim: Claim, msg: &[u8]) {
        let written = self.backing.region().write(payload_offset(claim.position, self.capacity), msg);
        debug_assert!(written, "a claim always lies inside the region");
        self.commit(claim);
    }

    /// Makes the word at `position` (free space) read zero, so that the
    /// consumer, once it gets there, polls a zero until the next commit and
    /// never a stale word of an earlier lap. Usually [`zero_ahead`] did it
    /// already, off the critical path.
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

    /// After a commit whose terminator is at `end`: zero the free space up to
    /// the end of the cache line after `end`'s. The next commits then find
    /// their terminators written, and their own stores do not queue behind
    /// a store to a line this core does not hold (stores leave in order, so
    /// that store would delay the commit's visibility by a cache miss).
    #[inline(always)]
    fn zero_ahead(&mut self, end: u64) {
        if crate::sync::mutant("no_terminator") {
            return;
        }
        let limit = ((end | 63) + 65).min(self.cached_head + self.capacity);
        let mut from = self.zeroed_to.max(end);
        let region = self.backing.region();
        while from < limit {
            let offset = from & (self.capacity - 1);
            let len = (limit - from).min(self.capacity - offset);
            let zeroed = region.zero(offset as usize, len as usize);
            debug_assert!(zeroed, "free space always lies inside the region");
            from += len;
        }
        self.zeroed_to = self.zeroed_to.max(from);
    }

    /// Sends `msg` if there is room now.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), Stop> {
        match self.try_claim(msg.len(), false)? {
            Some(claim) => {
                self.write_claim(claim, msg);
                Ok(())
            }
            None => Err(Stop::Timeout),
        }
    }

    /// Sends `msg`, waiting for room with `strategy` for at most `timeout`.
    pub fn send(&mut self, msg: &[u8], strategy: WaitStrategy, timeout: Option<Duration>) -> Result<(), Stop> {
        let claim = block(&mut Room { producer: self, len: msg.len() }, strategy, timeout)?;
        self.write_claim(claim, msg);
        Ok(())
    }

    /// Claims `len` bytes in the ring if there is room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_, B>, Stop> {
        match self.try_claim(len, false)? {
            Some(claim) => Grant::new(self, claim),
            None => Err(Stop::Timeout),
        }
    }

    /// Claims `len` bytes, waiting for room with `strategy` for at most `timeout`.
    pub fn reserve(
        &mut self,
        len: usize,
        strategy: WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Grant<'_, B>, Stop> {
        let claim = block(&mut Room { producer: self, len }, strategy, timeout)?;
        Grant::new(self, claim)
    }
}

impl<B: RingBacking> Drop for Producer<B> {
    fn drop(&mut self) {
        let header = self.backing.header();
        mark_detached(header, Slot::Producer(0), &header.consumer_wake, &mut self.stats);
    }
}

/// Offset in the region of the payload of the record at `position`.
#[inline(always)]
fn payload_offset(position: u64, capacity: u64) -> usize {
    ((position & (capacity - 1)) + HEADER_LEN) as usize
}

/// A producer waiting for room for a `len`-byte message.
struct Room<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    len: usize,
}

impl<B: RingBacking> Waitable for Room<'_, B> {
    type Ready = Claim;

    fn poll(&mut self) -> Result<Option<Claim>, Stop> {
        self.producer.try_claim(self.len, false)
    }

    fn park(&mut self, timeout: Duration) -> Result<Option<Claim>, Stop> {
        park_once(self, timeout)
    }
}

impl<B: RingBacking> Parkable for Room<'_, B> {
    type Ready = Claim;

    fn line(&self) -> &WakeLine {
        &self.producer.backing.header().producer_wake
    }

    fn recheck(&mut self) -> Result<Option<Claim>, Stop> {
        self.producer.try_claim(self.len, true)
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.producer.stats
    }
}

/// Space claimed in the ring for one message, written in place.
///
/// Dereferences to the `len` bytes of the payload. [`commit`](Grant::commit)
/// publishes them; dropping the grant without committing discards them (the
/// consumer never sees them).
#[derive(Debug)]
pub struct Grant<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    view: ViewMut<'a>,
    claim: Claim,
}

impl<'a, B: RingBacking> Grant<'a, B> {
    fn new(producer: &'a mut Producer<B>, claim: Claim) -> Result<Self, Stop> {
        let offset = payload_offset(claim.position, producer.capacity);
        let region: *const super::Region = producer.backing.region();
        // SAFETY: `region` points into `producer.backing`, which lives (and
        // keeps its mapping) for all of 'a. The claimed bytes lie between our
        // tail and the consumer's head plus capacity, which the protocol gives
        // to this producer alone until it commits; the grant holds the producer
        // mutably for its whole life, so no other view of them exists in this
        // process. The view points into the mapping, not into `Producer`, so it
        // does not alias the `&mut Producer` held beside it.
        let view = unsafe { (*region).view_mut(offset, claim.len as usize) };
        match view {
            Some(view) => Ok(Grant { producer, view, claim }),
            None => Err(Stop::Corrupted(Corrupted::new(
                producer.backing.name(),
                format!("claim at position {} does not fit the region", claim.position),
            ))),
        }
    }

    /// Publishes the message.
    pub fn commit(self) {
        let Grant { producer, mut view, claim } = self;
        view.flush_into(producer.backing.region(), payload_offset(claim.position, producer.capacity));
        producer.commit(claim);
    }
}

impl<B: RingBacking> std::ops::Deref for Grant<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.view
    }
}

impl<B: RingBacking> std::ops::DerefMut for Grant<'_, B> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.view
    }
}
