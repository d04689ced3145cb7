//! The consumer: polls the commit word at `head`, validates it, hands out the
//! payload, and frees the space. Shared by the SPSC and MPSC rings; they
//! differ only in whether consumed space is zeroed.

use super::record::{decode, Record, HEADER_LEN};
use super::region::View;
use super::{forget_dead_sleepers, mark_attached, mark_detached, park_once, Parkable, Waker};
use super::{PeerWatch, RingBacking, Stats};
use crate::error::{Corrupted, Stop};
use crate::layout::{Slot, WakeLine};
use crate::sync::{Ordering, OBSERVE, PUBLISH};
use crate::wait::{block, WaitStrategy, Waitable};
use std::time::Duration;

/// The consumer side of a ring.
#[derive(Debug)]
pub struct Consumer<B: RingBacking> {
    backing: B,
    /// Position of the next record. Authoritative: only this handle frees
    /// space, and it never re-reads `head` from shared memory after attach.
    head: u64,
    capacity: u64,
    max_message: u32,
    /// Zero each consumed record before freeing it (MPSC: producers claim
    /// ranges whose first word must read zero until they commit).
    zero_consumed: bool,
    watch: PeerWatch,
    /// Wakes the producer when it sleeps.
    waker: Waker,
    stats: Stats,
}

/// A committed message found at `head`: `len` payload bytes at
/// `position + 8`.
#[derive(Debug, Clone, Copy)]
struct Found {
    position: u64,
    len: u32,
}

impl<B: RingBacking> Consumer<B> {
    /// Attaches to the ring as its consumer (the caller holds the consumer
    /// role) and continues from the shared `head`: nothing committed and not
    /// yet released is lost (a message a killed consumer was reading is
    /// delivered again).
    pub fn attach(backing: B, pid: u32, zero_consumed: bool, producer: Slot) -> Result<Self, Corrupted> {
        let header = backing.header();
        let capacity = backing.region().len() as u64;
        let max_message = backing.max_message();
        let head = header.consumer.head.load(Ordering::Acquire);
        if head % 8 != 0 {
            return Err(Corrupted::new(backing.name(), format!("head {head} is not 8-byte aligned")));
        }
        let word = backing.region().word(head).load(OBSERVE);
        if word != 0 {
            decode(word, head, capacity, max_message).map_err(|what| Corrupted::new(backing.name(), what))?;
        }
        // The consumer role is exclusive: only a dead predecessor can be
        // announced on the consumer's line.
        forget_dead_sleepers(&header.consumer_wake);
        mark_attached(header, Slot::Consumer, pid);
        Ok(Consumer {
            head,
            capacity,
            max_message,
            zero_consumed,
            watch: PeerWatch::new(producer),
            waker: Waker::default(),
            stats: Stats::default(),
            backing,
        })
    }

    /// The backing this consumer reads from.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// This handle's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes consumed since the ring was created (the next position to read).
    pub fn position(&self) -> u64 {
        self.head
    }

    fn corrupted(&self, what: String) -> Stop {
        Stop::Corrupted(Corrupted::new(self.backing.name(), what))
    }

    /// The message at `head`, skipping a padding record; `None` when empty.
    fn try_find(&mut self, slow: bool) -> Result<Option<Found>, Stop> {
        let region = self.backing.region();
        let mut word = region.word(self.head).load(OBSERVE);
        if word == 0 {
            if !self.watch.peer_gone(&self.backing, slow) {
                return Ok(None);
            }
            // The producer's last commit happens-before its detach, which we
            // just observed: one more look tells drained from not yet seen.
            word = region.word(self.head).load(OBSERVE);
            if word == 0 {
                return Err(Stop::Disconnected);
            }
        }
        match decode(word, self.head, self.capacity, self.max_message) {
            Ok(Record::Message { len }) => Ok(Some(Found { position: self.head, len })),
            Ok(Record::Padding { .. }) if self.head & (self.capacity - 1) == 0 => {
                Err(self.corrupted(format!("padding record at position {} fills the whole region", self.head)))
            }
            Ok(padding @ Record::Padding { .. }) => {
                self.free(self.head, padding.size());
                // The next record starts the next lap, at offset 0; a padding
                // record there is refused above, so this recursion ends.
                self.try_find(slow)
            }
            Err(what) => Err(self.corrupted(what)),
        }
    }

    /// Frees the `size` bytes at `position` (== head) and wakes a producer
    /// waiting for room.
    fn free(&mut self, position: u64, size: u64) {
        let region = self.backing.region();
        if self.zero_consumed {
            region.zero((position & (self.capacity - 1)) as usize, size as usize);
        }
        self.head = position + size;
        let header = self.backing.header();
        header.consumer.head.store(self.head, PUBLISH);
        self.waker.wake_if_sleeping(&header.producer_wake, &mut self.stats);
    }

    fn release(&mut self, found: Found) {
        self.stats.messages += 1;
        let counter = &self.backing.header().consumer.messages;
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.stats.bytes += u64::from(found.len);
        self.free(found.position, Record::Message { len: found.len }.size());
    }

    fn copy_out(&mut self, found: Found, buf: &mut Vec<u8>) -> usize {
        let len = found.len as usize;
        buf.clear();
        let offset = ((found.position & (self.capacity - 1)) + HEADER_LEN) as usize;
        let copied = self.backing.region().append_to(offset, len, buf);
        debug_assert!(copied, "a decoded record always lies inside the region");
        self.release(found);
        len
    }

    /// Copies the next message into `buf` (replacing its contents) if one is
    /// waiting; returns its length.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, Stop> {
        match self.try_find(false)? {
            Some(found) => Ok(self.copy_out(found, buf)),
            None => Err(Stop::Timeout),
        }
    }

    /// Copies the next message into `buf`, waiting with `strategy` for at most
    /// `timeout`.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        strategy: WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<usize, Stop> {
        let found = block(&mut Message { consumer: self }, strategy, timeout)?;
        Ok(self.copy_out(found, buf))
    }

    /// Borrows the next message in place if one is waiting.
    pub fn try_read(&mut self) -> Result<ReadGuard<'_, B>, Stop> {
        match self.try_find(false)? {
            Some(found) => ReadGuard::new(self, found),
            None => Err(Stop::Timeout),
        }
    }

    /// Borrows the next message in place, waiting with `strategy` for at most
    /// `timeout`.
    pub fn read(&mut self, strategy: WaitStrategy, timeout: Option<Duration>) -> Result<ReadGuard<'_, B>, Stop> {
        let found = block(&mut Message { consumer: self }, strategy, timeout)?;
        ReadGuard::new(self, found)
    }
}

impl<B: RingBacking> Drop for Consumer<B> {
    fn drop(&mut self) {
        let header = self.backing.header();
        mark_detached(header, Slot::Consumer, &header.producer_wake, &mut self.stats);
    }
}

/// A consumer waiting for a message.
struct Message<'a, B: RingBacking> {
    consumer: &'a mut Consumer<B>,
}

impl<B: RingBacking> Waitable for Message<'_, B> {
    type Ready = Found;

    fn poll(&mut self) -> Result<Option<Found>, Stop> {
        self.consumer.try_find(false)
    }

    fn park(&mut self, timeout: Duration) -> Result<Option<Found>, Stop> {
        park_once(self, timeout)
    }
}

impl<B: RingBacking> Parkable for Message<'_, B> {
    type Ready = Found;

    fn line(&self) -> &WakeLine {
        &self.consumer.backing.header().consumer_wake
    }

    fn recheck(&mut self) -> Result<Option<Found>, Stop> {
        self.consumer.try_find(true)
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.consumer.stats
    }
}

/// A message borrowed in place. Dereferences to its payload; dropping the
/// guard frees its space in the ring.
#[derive(Debug)]
pub struct ReadGuard<'a, B: RingBacking> {
    consumer: &'a mut Consumer<B>,
    view: View<'a>,
    found: Found,
}

impl<'a, B: RingBacking> ReadGuard<'a, B> {
    fn new(consumer: &'a mut Consumer<B>, found: Found) -> Result<Self, Stop> {
        let offset = ((found.position & (consumer.capacity - 1)) + HEADER_LEN) as usize;
        let region: *const super::Region = consumer.backing.region();
        // SAFETY: `region` points into `consumer.backing`, which lives (and
        // keeps its mapping) for all of 'a. The record is committed and lies
        // before `head` plus its size, which no producer may reuse until we
        // advance `head` in `Drop`; the guard holds the consumer mutably, so
        // nothing in this process frees or zeroes those bytes meanwhile. The
        // view points into the mapping, not into `Consumer`.
        let view = unsafe { (*region).view(offset, found.len as usize) };
        match view {
            Some(view) => Ok(ReadGuard { consumer, view, found }),
            None => Err(consumer.corrupted(format!("record at position {} does not fit the region", found.position))),
        }
    }
}

impl<B: RingBacking> std::ops::Deref for ReadGuard<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.view
    }
}

impl<B: RingBacking> Drop for ReadGuard<'_, B> {
    fn drop(&mut self) {
        self.consumer.release(self.found);
    }
}
