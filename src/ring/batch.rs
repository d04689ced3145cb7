//! Batches: many messages for one wake-up check, and on the consumer's side
//! one release of their space.
//!
//! A producer's batch checks for a sleeping consumer after its last commit,
//! after every quarter of the capacity it commits, and before it waits for
//! room: a consumer that went to sleep on what the batch had committed is
//! woken before the producer waits for that consumer to make room. In an
//! SPSC memory ring it also holds back the first record's word, so that
//! the records behind it are published by one store (see [`Sending`]).
//!
//! A consumer's drain hands out messages one after another and publishes
//! `head` (and checks for sleeping producers) once: when the batch ends,
//! when it has held back a quarter of the capacity, and before it would
//! wait (`try_find` publishes before reporting an empty ring). Holding
//! space back is what a slow consumer does anyway; producers see less room
//! for a while, never a wrong position.

use super::consumer::{Consumer, Found};
use super::producer::{Claim, Producer};
use super::record::{encode, payload_offset, Record, TAG_MESSAGE};
use super::RingBacking;
use crate::error::{RecvStop, SendStop, TooLarge};
use crate::wait::WaitStrategy;
use std::time::Duration;

/// A drain publishes its position, and a batch send its records (and wakes
/// the consumer), at least every this fraction of the capacity (a
/// quarter), so that the other side gets on with its part while a long
/// batch is still being handled.
#[cfg(not(shmring_loom))]
const RELEASE_EVERY: u64 = 4;
/// The loom models' rings hold a few records: half a lap, so that a batch
/// holds back more than one record and still reaches the early releases.
#[cfg(shmring_loom)]
const RELEASE_EVERY: u64 = 2;

/// How far a batch got: how many messages it sent or handed out, and what
/// stopped it early, if anything did.
#[derive(Debug)]
pub struct Batch<S> {
    /// Messages sent, or handed to the caller.
    pub count: usize,
    /// Why the batch ended before its end: the ring was found unusable.
    pub stop: Option<S>,
}

impl<B: RingBacking> Producer<B> {
    /// Sends `msgs` in order, checking for a sleeping consumer at the end,
    /// every quarter of the capacity and before a wait for room, not per
    /// message. With a `strategy`, waits for room as `send` does; without,
    /// stops at the first message that does not fit now (`count` says how
    /// many went).
    /// A message longer than the ring takes is refused before any is sent.
    pub fn send_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        strategy: Option<WaitStrategy>,
    ) -> Result<Batch<SendStop>, TooLarge> {
        let max = self.max_message as usize;
        if let Some(len) = msgs.iter().map(|m| m.as_ref().len()).find(|&len| len > max) {
            return Err(TooLarge { len, max });
        }
        let holds = self.mpsc_slot.is_none() && !self.persistent;
        let mut batch = Sending { holds, producer: self, held: None, held_count: 0, unwoken: 0 };
        let mut count = 0;
        let mut stop = None;
        for msg in msgs {
            let msg = msg.as_ref();
            batch.before_claim(msg.len());
            let claim = match batch.producer.claim_now(msg.len()) {
                Ok(Some(claim)) => claim,
                Ok(None) => {
                    // The consumer may be asleep on what this batch committed:
                    // publish and wake it before waiting for it to make room.
                    batch.wake(false);
                    let Some(strategy) = strategy else { break };
                    match batch.producer.claim(msg.len(), strategy) {
                        Ok(claim) => claim,
                        Err(why) => {
                            stop = Some(why);
                            break;
                        }
                    }
                }
                Err(why) => {
                    stop = Some(why);
                    break;
                }
            };
            batch.write(claim, msg);
            count += 1;
        }
        // Dropping `batch` publishes and wakes the consumer.
        Ok(Batch { count, stop })
    }
}

/// A batch being sent. In an SPSC memory ring (`holds`) the first record's
/// word is held back (`held`: its position and word) and stored last, so
/// that the consumer finds the records written so far all at once (see
/// `spsc_commit_held`): the cache lines move once per batch, not once per
/// message. Dropping it publishes (and wakes), so even a panic in a
/// message's `as_ref` leaves no record unpublished before others.
struct Sending<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    holds: bool,
    held: Option<(u64, u64)>,
    /// Records written behind the held word, counted in the header's
    /// message count only once published (a producer killed while holding
    /// leaves them uncounted, as they are never delivered).
    held_count: u64,
    /// Bytes committed since the consumer was last woken.
    unwoken: u64,
}

impl<B: RingBacking> Sending<'_, B> {
    /// Publishes the held record before a claim of a `len`-byte message
    /// that pads to the next lap: the padding record moves the `tail` hint,
    /// which must not pass a held record.
    #[inline]
    fn before_claim(&mut self, len: usize) {
        if self.held.is_none() {
            return;
        }
        let producer = &*self.producer;
        let size = super::record::record_size(len as u64);
        if super::record::padding_before(producer.tail, size, producer.capacity) > 0 {
            self.publish();
        }
    }

    /// Writes `msg` into `claim` and commits it (held back, if this is the
    /// first record since the last publication); every quarter of the
    /// capacity, publishes and wakes the consumer.
    #[inline]
    fn write(&mut self, claim: Claim, msg: &[u8]) {
        let size = Record::Message { len: claim.len }.size();
        if self.holds {
            let producer = &mut *self.producer;
            let written = producer.backing.region().write(payload_offset(claim.position, producer.capacity), msg);
            debug_assert!(written, "a claim always lies inside the region");
            let word = encode(TAG_MESSAGE, claim.len, claim.position, producer.capacity);
            let hold = self.held.is_none();
            producer.spsc_commit_held(claim.position, size, word, hold);
            if hold {
                self.held = Some((claim.position, word));
            }
            self.held_count += 1;
            producer.stats.messages += 1;
            producer.stats.bytes += msg.len() as u64;
        } else {
            self.producer.write_claim_quietly(claim, msg);
        }
        self.unwoken += size;
        if self.unwoken >= self.producer.capacity / RELEASE_EVERY {
            self.wake(false);
        }
    }

    /// Publishes the held record, and so every record written after it.
    #[inline]
    fn publish(&mut self) {
        if let Some((position, word)) = self.held.take() {
            self.producer.spsc_publish_held(position, word, self.held_count);
            self.held_count = 0;
        }
    }

    /// Publishes, and wakes the consumer if it sleeps (`at_end`: the
    /// batch's last wake).
    #[inline]
    fn wake(&mut self, at_end: bool) {
        self.publish();
        if !at_end && crate::sync::mutant("batch_wakes_only_at_end") {
            return;
        }
        if self.unwoken > 0 {
            self.producer.wake_consumer();
        }
        self.unwoken = 0;
    }
}

impl<B: RingBacking> Drop for Sending<'_, B> {
    fn drop(&mut self) {
        self.wake(true);
    }
}

impl<B: RingBacking> Consumer<B> {
    /// Hands up to `max` of the messages waiting now to `each`, oldest
    /// first. `each` returns whether this process still owns the consumer:
    /// `false` (it forked, and this is the child) ends the drain at once,
    /// touching the ring no more (the child's mapping is no longer the
    /// ring). Their space is released once at the
    /// end (and every quarter of the capacity). In place where the trust
    /// rule allows (as `read`), otherwise through this handle's buffer. A
    /// message is consumed once it is handed out, even if `each` panics.
    pub fn try_drain<F: FnMut(&[u8]) -> bool>(&mut self, max: usize, each: F) -> Batch<RecvStop> {
        self.drain_from(None, max, each)
    }

    /// [`try_drain`](Self::try_drain), first waiting with `strategy` for a
    /// message.
    pub fn drain<F: FnMut(&[u8]) -> bool>(&mut self, strategy: WaitStrategy, max: usize, each: F) -> Batch<RecvStop> {
        if max == 0 {
            return Batch { count: 0, stop: None };
        }
        match self.next(strategy) {
            Ok(first) => self.drain_from(Some(first), max, each),
            Err(why) => Batch { count: 0, stop: Some(why) },
        }
    }

    /// [`try_drain`](Self::try_drain), first waiting with `strategy` at most
    /// `timeout` for a message (none came: `count` 0 and no `stop`).
    pub fn drain_for<F: FnMut(&[u8]) -> bool>(
        &mut self,
        strategy: WaitStrategy,
        timeout: Duration,
        max: usize,
        each: F,
    ) -> Batch<RecvStop> {
        if max == 0 {
            return Batch { count: 0, stop: None };
        }
        match self.next_for(strategy, timeout) {
            Ok(Some(first)) => self.drain_from(Some(first), max, each),
            Ok(None) => Batch { count: 0, stop: None },
            Err(why) => Batch { count: 0, stop: Some(why) },
        }
    }

    /// Hands out `first` (found by a wait) if given, then what is waiting
    /// now, up to `max` messages in all, until `each` says the process
    /// changed.
    fn drain_from<F: FnMut(&[u8]) -> bool>(
        &mut self,
        first: Option<Found>,
        max: usize,
        mut each: F,
    ) -> Batch<RecvStop> {
        let release_every = self.capacity / RELEASE_EVERY;
        let lends = self.in_place;
        if lends {
            // A fork while `each` runs copies the region for the child.
            self.lend_view();
        }
        let mut batch = Draining { consumer: self, lends, count: 0, bytes: 0, inert: false };
        let mut next = first;
        loop {
            if batch.count >= max {
                break;
            }
            let consumer = &mut *batch.consumer;
            let found = match next.take().map(Ok).or_else(|| consumer.next_now().transpose()) {
                None => break,
                Some(Ok(found)) => found,
                Some(Err(why)) => return Batch { count: batch.count, stop: Some(why) },
            };
            match batch.hand_out(found, &mut each) {
                Ok(true) => {}
                Ok(false) => {
                    batch.inert = true;
                    break;
                }
                Err(why) => return Batch { count: batch.count, stop: Some(why) },
            }
            let consumer = &mut *batch.consumer;
            if consumer.head - consumer.released >= release_every && !crate::sync::mutant("drain_keeps_space") {
                batch.publish();
            }
        }
        Batch { count: batch.count, stop: None }
    }

    #[cold]
    fn outside(&self, found: Found) -> RecvStop {
        self.corrupted(format!("record at position {} does not fit the region", found.position))
    }
}

/// A drain in progress. Dropping it (also when a handler panics) counts
/// what was handed out, ends the lent view, and publishes `head`; unless
/// the handler forked and this is the child (`inert`), where the mapping is
/// no longer the ring and nothing may touch it. (A handler that forks and
/// then panics in the child unwinds before it can say so: the child then
/// writes into its own blank copy of the mapping, which is harmless.)
struct Draining<'a, B: RingBacking> {
    consumer: &'a mut Consumer<B>,
    inert: bool,
    lends: bool,
    count: usize,
    bytes: u64,
}

impl<B: RingBacking> Draining<'_, B> {
    /// Consumes `found` and calls `each` with its payload, in place where
    /// the trust rule allows, else copied to the consumer's buffer; whether
    /// `each` wants more. Its space is published later.
    #[inline]
    fn hand_out<F: FnMut(&[u8]) -> bool>(&mut self, found: Found, each: &mut F) -> Result<bool, RecvStop> {
        let consumer = &mut *self.consumer;
        let offset = payload_offset(found.position, consumer.capacity);
        let len = found.len as usize;
        let view = if consumer.in_place {
            let region: *const super::Region = consumer.backing.region();
            // SAFETY: `region` points into `consumer.backing`, which
            // outlives this call. The record is committed, and its space is
            // released only after `each` returns (the view lives only for
            // the call: `each` takes any lifetime, so keeps nothing); the
            // drain holds the consumer mutably, so nothing in this process
            // frees or zeroes those bytes meanwhile; and `in_place` is set
            // only where every process that can write the segment is
            // trusted to keep the protocol.
            let Some(view) = (unsafe { (*region).view(offset, len) }) else {
                return Err(consumer.outside(found));
            };
            Some(view)
        } else {
            consumer.staging.clear();
            if !consumer.backing.region().append_to(offset, len, &mut consumer.staging) {
                return Err(consumer.outside(found));
            }
            None
        };
        // Consumed from the call on, even if `each` panics: published when
        // the drain ends (or by the next look at an empty ring).
        consumer.head = found.position + Record::Message { len: found.len }.size();
        self.count += 1;
        consumer.unreported += 1;
        self.bytes += u64::from(found.len);
        Ok(match &view {
            Some(view) => each(view),
            None => each(&consumer.staging),
        })
    }

    /// Publishes `head` (counting what was handed out first).
    #[inline]
    fn publish(&mut self) {
        self.consumer.publish_head();
    }
}

impl<B: RingBacking> Drop for Draining<'_, B> {
    fn drop(&mut self) {
        if self.inert {
            return;
        }
        let consumer = &mut *self.consumer;
        if self.lends {
            consumer.return_view();
        }
        consumer.stats.messages += self.count as u64;
        consumer.stats.bytes += self.bytes;
        if consumer.released != consumer.head && !crate::sync::mutant("drain_keeps_space") {
            consumer.publish_head();
        }
    }
}
