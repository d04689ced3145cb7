//! Batches: many messages for one wake-up check, and on the consumer's side
//! one release of their space.
//!
//! A producer's batch commits each message as `send` does (each record is
//! published by its own Release store, so the consumer may take the first
//! while the rest are written), but checks for a sleeping consumer once,
//! after its last commit, and before it waits for room: a consumer that
//! went to sleep on what the batch had committed is woken before the
//! producer waits for that consumer to make room.
//!
//! A consumer's drain hands out messages one after another and publishes
//! `head` (and checks for sleeping producers) once: when the batch ends,
//! when it has held back [`RELEASE_EVERY`] of the capacity, and before it
//! would wait (`try_find` publishes before reporting an empty ring). Holding
//! space back is what a slow consumer does anyway; producers see less room
//! for a while, never a wrong position.

use super::consumer::{Consumer, Found};
use super::producer::{Claim, Producer};
use super::record::{encode, payload_offset, Record, TAG_MESSAGE};
use super::RingBacking;
use crate::error::{RecvStop, SendStop, TooLarge};
use crate::wait::WaitStrategy;
use std::time::Duration;

/// A drain publishes its position, and a batch send its records, at least
/// every this fraction of the capacity (a quarter), so that the other side
/// gets on with its part while a long batch is still being handled.
#[cfg(not(shmring_loom))]
const RELEASE_EVERY: u64 = 4;
/// The loom models' rings hold a few records: a whole lap, so that what a
/// batch holds back is more than one record.
#[cfg(shmring_loom)]
const RELEASE_EVERY: u64 = 1;

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
    /// Sends `msgs` in order, with one wake-up check for the batch. With a
    /// `strategy`, waits for room as `send` does; without, stops at the
    /// first message that does not fit now (`count` says how many went).
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
        let mut batch = Sending { holds: self.mpsc_slot.is_none() && !self.persistent, producer: self, held: None };
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
                    batch.publish();
                    if count > 0 && !crate::sync::mutant("batch_waits_unwoken") {
                        batch.producer.wake_consumer();
                    }
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
        batch.publish();
        if count > 0 {
            batch.producer.wake_consumer();
        }
        Ok(Batch { count, stop })
    }
}

/// A batch being sent. In an SPSC memory ring (`holds`) the first record's
/// word is held back (`held`: its position and word) and stored last, so
/// that the consumer finds the records written so far all at once (see
/// `spsc_commit_held`): the cache lines move once per batch, not once per
/// message. Dropping it publishes, so even a panic in a message's `as_ref`
/// leaves no record unpublished before others.
struct Sending<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    holds: bool,
    held: Option<(u64, u64)>,
}

impl<B: RingBacking> Sending<'_, B> {
    /// Publishes the held record before a claim of a `len`-byte message
    /// that pads to the next lap (the padding record moves the `tail`
    /// hint, which must not pass a held record), and once a quarter of the
    /// capacity is held, so that the consumer is not kept waiting longer.
    #[inline]
    fn before_claim(&mut self, len: usize) {
        let Some((position, _)) = self.held else { return };
        let producer = &*self.producer;
        let size = super::record::record_size(len as u64);
        let pads = super::record::padding_before(producer.tail, size, producer.capacity) > 0;
        if pads || producer.tail - position >= producer.capacity / RELEASE_EVERY {
            self.publish();
        }
    }

    /// Writes `msg` into `claim` and commits it (held back, if this is the
    /// first record since the last publication).
    #[inline]
    fn write(&mut self, claim: Claim, msg: &[u8]) {
        if !self.holds {
            return self.producer.write_claim_quietly(claim, msg);
        }
        let producer = &mut *self.producer;
        let written = producer.backing.region().write(payload_offset(claim.position, producer.capacity), msg);
        debug_assert!(written, "a claim always lies inside the region");
        let size = Record::Message { len: claim.len }.size();
        let word = encode(TAG_MESSAGE, claim.len, claim.position, producer.capacity);
        let hold = self.held.is_none();
        producer.spsc_commit_held(claim.position, size, word, hold);
        if hold {
            self.held = Some((claim.position, word));
        }
        producer.stats.messages += 1;
        producer.stats.bytes += msg.len() as u64;
    }

    /// Publishes the held record, and so every record written after it.
    #[inline]
    fn publish(&mut self) {
        if let Some((position, word)) = self.held.take() {
            self.producer.spsc_publish_held(position, word);
        }
    }
}

impl<B: RingBacking> Drop for Sending<'_, B> {
    fn drop(&mut self) {
        if self.held.is_some() {
            self.publish();
            self.producer.wake_consumer();
        }
    }
}

impl<B: RingBacking> Consumer<B> {
    /// Hands up to `max` of the messages waiting now to `each`, oldest
    /// first. Their space is released once at the end (and every
    /// [`RELEASE_EVERY`]th of the capacity). In place where the trust rule
    /// allows (as `read`), otherwise through this handle's buffer. A
    /// message is consumed once it is handed out, even if `each` panics.
    pub fn try_drain<F: FnMut(&[u8])>(&mut self, max: usize, each: F) -> Batch<RecvStop> {
        self.drain_from(None, max, each)
    }

    /// [`try_drain`](Self::try_drain), first waiting with `strategy` for a
    /// message.
    pub fn drain<F: FnMut(&[u8])>(&mut self, strategy: WaitStrategy, max: usize, each: F) -> Batch<RecvStop> {
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
    pub fn drain_for<F: FnMut(&[u8])>(
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
    /// now, up to `max` messages in all.
    fn drain_from<F: FnMut(&[u8])>(&mut self, first: Option<Found>, max: usize, mut each: F) -> Batch<RecvStop> {
        let mut count = 0;
        let mut bytes = 0u64;
        let mut next = first;
        let release_every = self.capacity / RELEASE_EVERY;
        if self.in_place {
            // A fork while `each` runs copies the region for the child.
            self.lend_view();
        }
        let stop = loop {
            if count >= max {
                break None;
            }
            let found = match next.take().map(Ok).or_else(|| self.next_now().transpose()) {
                None => break None,
                Some(Ok(found)) => found,
                Some(Err(why)) => break Some(why),
            };
            if let Err(why) = self.hand_out(found, &mut each) {
                break Some(why);
            }
            count += 1;
            bytes += u64::from(found.len);
            if self.head - self.released >= release_every && !crate::sync::mutant("drain_keeps_space") {
                self.publish_head();
            }
        };
        if self.in_place {
            self.return_view();
        }
        if count > 0 {
            self.stats.messages += count as u64;
            self.stats.bytes += bytes;
            crate::sync::count(&self.backing.header().consumer.messages, count as u64);
        }
        if self.released != self.head && !crate::sync::mutant("drain_keeps_space") {
            self.publish_head();
        }
        Batch { count, stop }
    }

    /// Consumes `found` and calls `each` with its payload, in place or
    /// copied. Its space is published later, by the caller.
    #[inline]
    fn hand_out<F: FnMut(&[u8])>(&mut self, found: Found, each: &mut F) -> Result<(), RecvStop> {
        let offset = payload_offset(found.position, self.capacity);
        let len = found.len as usize;
        if self.in_place {
            let region: *const super::Region = self.backing.region();
            // SAFETY: `region` points into `self.backing`, which outlives
            // this call. The record is committed, and its space is released
            // only by `publish_head` after `each` returns (the view lives
            // only for the call: `each` takes any lifetime, so keeps
            // nothing); `self` is borrowed mutably for all of it, so nothing
            // in this process frees or zeroes those bytes meanwhile; and
            // `in_place` is set only where every process that can write
            // the segment is trusted to keep the protocol.
            let Some(view) = (unsafe { (*region).view(offset, len) }) else {
                return Err(self.outside(found));
            };
            self.consume(found);
            each(&view);
        } else {
            self.staging.clear();
            if !self.backing.region().append_to(offset, len, &mut self.staging) {
                return Err(self.outside(found));
            }
            self.consume(found);
            each(&self.staging);
        }
        Ok(())
    }

    /// Moves `head` past `found` without publishing it: the batch publishes
    /// once (and `try_find`, the next time it finds the ring empty).
    #[inline]
    fn consume(&mut self, found: Found) {
        self.head = found.position + Record::Message { len: found.len }.size();
    }

    #[cold]
    fn outside(&self, found: Found) -> RecvStop {
        self.corrupted(format!("record at position {} does not fit the region", found.position))
    }
}
