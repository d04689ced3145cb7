//! The ring algorithms: record framing, claim and commit, wrap-around, and the
//! wake-up protocol. They know nothing of how their memory was mapped: a
//! [`RingBacking`] hands them the header and the data region. The same code
//! runs over a shared mapping and, under `--cfg shmring_loom`, over loom-tracked
//! heap memory.
//!
//! # Protocol
//!
//! * Positions are `u64` byte counters that never wrap; the offset in the
//!   region is `position & (capacity - 1)`.
//! * A record is published by a Release store of its commit word
//!   ([`record`]). The consumer polls the commit word at `head` with Acquire;
//!   zero means "nothing yet".
//! * Before committing a record of `n` bytes at `p`, the SPSC producer zeroes
//!   the word at `p + n` (the *terminator*). So the word the consumer polls
//!   next is always zero or a record committed in this lap, never stale bytes
//!   of an earlier lap. This costs one 8-byte store per message and needs 8
//!   bytes of slack: a ring is full when a record plus its terminator no
//!   longer fits.
//! * The consumer frees space by a Release store of `head`; the producer
//!   reloads `head` (Acquire) only when its cached copy says the ring is full.
//! * Wake-ups, one [`WakeLine`] per direction: the side that must wait bumps
//!   `sleepers`, fences (SeqCst), reads the futex word, re-checks its
//!   condition and only then sleeps on the word. The other side, after
//!   publishing, fences (SeqCst) and, only if `sleepers` is non-zero, bumps the
//!   word and wakes. One of the two fences always sees the other side's store,
//!   so no wake-up is lost; in steady streaming nobody sleeps and no system
//!   call is made.
//!
//! [`WakeLine`]: crate::layout::WakeLine

#[cfg(shmring_loom)]
pub use crate::{record, region};
#[cfg(not(shmring_loom))]
pub(crate) use crate::{record, region};

mod consumer;
pub mod durable;
mod mpsc;
pub mod persist;
mod producer;
mod spsc;

pub use consumer::{Consumer, ReadGuard};
pub use mpsc::slot_reusable;
#[cfg(shmring_loom)]
pub use mpsc::DieAt;
pub use producer::{Grant, Producer};
pub use region::Region;

use crate::error::Stop;
use crate::layout::{
    RingHeader, Slot, WakeLine, SLEEPER_ANNOUNCE, SLEEPER_COUNT_MASK, SLOT_ATTACHED, SLOT_DETACHED, SLOT_EMPTY,
};
use crate::sync::{sleeper_fence, waker_fence, Ordering};
pub(crate) use crate::wait::Pace;
use std::sync::Arc;
use std::time::Duration;

/// The memory (and liveness oracle) a ring runs on.
pub trait RingBacking {
    /// The ring's part of the header.
    fn header(&self) -> &RingHeader;
    /// The data region.
    fn region(&self) -> &Region;
    /// The segment's name, for error messages.
    fn name(&self) -> &Arc<str>;
    /// The largest payload a record may carry (validated at attach).
    fn max_message(&self) -> u32;
    /// Producer slots in use (1 for SPSC; validated at attach).
    fn max_producers(&self) -> u32;
    /// Whether the participant in `slot` is alive. Called only when its slot
    /// says it is attached, and at most every probe interval
    /// ([`crate::wait::PROBE_INTERVAL`] by default).
    fn is_alive(&self, slot: Slot) -> bool;
    /// Whether the ring outlives the machine (a file): producers then reuse
    /// space only behind the durable head (see [`durable`]).
    fn persistent(&self) -> bool {
        false
    }
    /// Writes the header back to the disk and waits (`msync(MS_SYNC)`);
    /// `false` if that failed. Called only when [`persistent`](Self::persistent).
    fn sync_header(&self) -> bool {
        true
    }
    /// Writes the data of positions `from..to` (at most a lap) back to the
    /// disk and waits; `false` if that failed. Called only when
    /// [`persistent`](Self::persistent).
    fn sync_positions(&self, from: u64, to: u64) -> bool {
        let _ = (from, to);
        true
    }
}

impl<T: RingBacking + ?Sized> RingBacking for Arc<T> {
    fn header(&self) -> &RingHeader {
        (**self).header()
    }
    fn region(&self) -> &Region {
        (**self).region()
    }
    fn name(&self) -> &Arc<str> {
        (**self).name()
    }
    fn max_message(&self) -> u32 {
        (**self).max_message()
    }
    fn max_producers(&self) -> u32 {
        (**self).max_producers()
    }
    fn is_alive(&self, slot: Slot) -> bool {
        (**self).is_alive(slot)
    }
    fn persistent(&self) -> bool {
        (**self).persistent()
    }
    fn sync_header(&self) -> bool {
        (**self).sync_header()
    }
    fn sync_positions(&self, from: u64, to: u64) -> bool {
        (**self).sync_positions(from, to)
    }
}

/// Counters kept by each handle, in its own process memory.
///
/// `futex_waits` and `futex_wakes` count the only system calls the ring makes
/// after attaching (besides rate-limited liveness probes while waiting), so
/// `(futex_waits + futex_wakes) / messages` is the system calls per message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent (producer) or received (consumer).
    pub messages: u64,
    /// Payload bytes sent or received.
    pub bytes: u64,
    /// `futex(FUTEX_WAIT)` calls made by this handle.
    pub futex_waits: u64,
    /// `futex(FUTEX_WAKE)` calls made by this handle.
    pub futex_wakes: u64,
    /// Consumer of an MPSC ring: records skipped because the producer that
    /// claimed them died before committing.
    pub torn_records: u64,
}

/// A side that can wait on one direction of the wake-up protocol.
pub(crate) trait Parkable {
    type Ready;
    /// The line this side sleeps on.
    fn line(&self) -> &WakeLine;
    /// The re-check after announcing (the slow path: may probe liveness).
    fn recheck(&mut self) -> Result<Option<Self::Ready>, Stop>;
    /// Where the futex calls are counted.
    fn stats(&mut self) -> &mut Stats;
    /// Records, where others can see it, that this side is announced on its
    /// line (`true`, after announcing) or about to withdraw (`false`).
    fn mark_parked(&self, _parked: bool) {}
}

/// One park step: read the futex word, announce (one sleeper, one epoch),
/// fence, re-check, and only if still not ready sleep on the word (at most
/// `timeout`); then withdraw (the count, not the epoch).
///
/// The word is read before announcing, so a waker that sees the announcement
/// bumps the word after this read (its read of `sleepers` happens-before the
/// bump, which this Acquire load would otherwise have synchronised with): the
/// wait then returns at once, and the caller re-checks.
pub(crate) fn park_once<P: Parkable>(side: &mut P, timeout: Duration) -> Result<Option<P::Ready>, Stop> {
    let line = side.line();
    let seq = if crate::sync::mutant("announce_before_seq_read") {
        line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
        sleeper_fence();
        line.seq.load(Ordering::Acquire)
    } else {
        let seq = line.seq.load(Ordering::Acquire);
        line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
        sleeper_fence();
        seq
    };
    side.mark_parked(true);
    let attempt = side.recheck();
    if let Ok(None) = attempt {
        side.stats().futex_waits += 1;
        side.line().seq.wait(seq, Some(timeout));
    }
    side.mark_parked(false);
    side.line().sleepers.fetch_sub(1, Ordering::Relaxed);
    attempt
}

/// Withdraws one announcement on `line` for a sleeper that died announced
/// (if the count is not already zero).
pub(crate) fn withdraw_dead_sleeper(line: &WakeLine) {
    let _ = line
        .sleepers
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| (word & SLEEPER_COUNT_MASK > 0).then(|| word - 1));
}

/// The waking half of the protocol, for one line, held by the side that
/// publishes to it.
///
/// A woken sleeper takes tens of microseconds to be scheduled and withdraw;
/// meanwhile its count stays up, and a producer streaming millions of
/// messages a second would issue a `FUTEX_WAKE` for every one of them. So the
/// waker remembers the `sleepers` word it last woke for and skips the wake
/// while the word is unchanged. That is safe because every sleeper counted in
/// that word read `seq` before announcing, hence before the bump that went
/// with the wake: its wait returns at once, and to wait again it must
/// withdraw and announce anew, which moves the epoch and so earns a wake of
/// its own. (The epoch wraps after 2^24 announcements; an exact wrap between
/// two publishes could delay a wake by one park slice, never lose it.)
#[derive(Debug, Default)]
pub(crate) struct Waker {
    woken_for: Option<u32>,
}

impl Waker {
    /// After publishing: wake the other side if someone announced itself
    /// since the last wake.
    #[inline(always)]
    pub(crate) fn wake_if_sleeping(&mut self, line: &WakeLine, stats: &mut Stats) {
        waker_fence();
        let sleepers = line.sleepers.load(Ordering::Relaxed);
        if sleepers & SLEEPER_COUNT_MASK == 0 {
            return;
        }
        let unchanged = if crate::sync::mutant("wake_once_per_count") {
            self.woken_for.is_some_and(|w| w & SLEEPER_COUNT_MASK == sleepers & SLEEPER_COUNT_MASK)
        } else {
            self.woken_for == Some(sleepers)
        };
        if !unchanged {
            self.woken_for = Some(sleepers);
            line.seq.bump();
            line.seq.wake_all();
            stats.futex_wakes += 1;
        }
    }
}

/// Forgets the announcements on `line` of sleepers that no longer exist. Only
/// for a line on which nobody but the caller's role can sleep, called when the
/// role is taken: an earlier holder killed while parked never withdrew, and
/// its count would otherwise stay up for good (costing a wake per epoch, and
/// after 255 such deaths overflowing into the epoch). The epoch is kept, so
/// wakers' memories of it stay meaningful.
pub(crate) fn forget_dead_sleepers(line: &WakeLine) {
    line.sleepers.fetch_and(!SLEEPER_COUNT_MASK, Ordering::Relaxed);
}

/// Paces the checks a waiting side makes through system calls (liveness
/// probes): at most every `interval`, whatever the rate of calls. The clock
/// is read only when a side found nothing to do (an empty or full ring), and
/// in a spin loop only every 1024th poll.
#[derive(Debug)]
pub(crate) struct Limiter {
    polls: u32,
    pub(crate) interval: Duration,
    #[cfg(not(shmring_loom))]
    last_probe: Option<std::time::Instant>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            polls: 0,
            interval: crate::wait::PROBE_INTERVAL,
            #[cfg(not(shmring_loom))]
            last_probe: None,
        }
    }
}

impl Limiter {
    /// Whether a check is due now.
    #[cfg(not(shmring_loom))]
    pub(crate) fn due(&mut self, pace: Pace) -> bool {
        if pace == Pace::Spin {
            self.polls = self.polls.wrapping_add(1);
            if self.polls % 1024 != 0 {
                return false;
            }
        }
        let now = std::time::Instant::now();
        match self.last_probe {
            Some(last) if now.duration_since(last) < self.interval => false,
            _ => {
                self.last_probe = Some(now);
                true
            }
        }
    }

    /// Under loom there is no clock: a check is due on every park re-check
    /// (the models park rather than poll).
    #[cfg(shmring_loom)]
    pub(crate) fn due(&mut self, pace: Pace) -> bool {
        let _ = (self.polls, self.interval);
        pace == Pace::Park
    }
}

/// What a waiting side knows of a peer slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerStatus {
    /// Never attached.
    Never,
    /// Attached and (as far as checked) alive.
    Present,
    /// Detached, or its holder died.
    Gone,
}

/// Watches the peer a handle waits on: its slot state, and (rate-limited) the
/// kernel's word on whether it is alive.
#[derive(Debug)]
pub(crate) struct PeerWatch {
    peer: Slot,
    /// The slot's `attachments` count when the probe found its holder dead:
    /// the verdict stands until someone attaches again.
    dead_holder: Option<u32>,
    pub(crate) limiter: Limiter,
}

impl PeerWatch {
    pub(crate) fn new(peer: Slot) -> Self {
        PeerWatch { peer, dead_holder: None, limiter: Limiter::default() }
    }

    /// Whether the peer has detached or died: its slot's state on every call,
    /// the kernel's word on its liveness as often as `pace` allows (see
    /// [`Limiter`]).
    pub(crate) fn peer_gone<B: RingBacking>(&mut self, backing: &B, pace: Pace) -> bool {
        let limiter = &mut self.limiter;
        matches!(Self::status_of(self.peer, &mut self.dead_holder, backing, || limiter.due(pace)), PeerStatus::Gone)
    }

    /// The peer's status, probing its liveness only if `may_probe` says so.
    pub(crate) fn status<B: RingBacking>(&mut self, backing: &B, may_probe: impl FnOnce() -> bool) -> PeerStatus {
        Self::status_of(self.peer, &mut self.dead_holder, backing, may_probe)
    }

    fn status_of<B: RingBacking>(
        peer: Slot,
        dead_holder: &mut Option<u32>,
        backing: &B,
        may_probe: impl FnOnce() -> bool,
    ) -> PeerStatus {
        let Some(participant) = backing.header().participant(peer) else { return PeerStatus::Never };
        match participant.state.load(Ordering::Acquire) {
            SLOT_DETACHED => PeerStatus::Gone,
            SLOT_ATTACHED => {
                let attachments = participant.attachments.load(Ordering::Relaxed);
                if *dead_holder == Some(attachments) {
                    return PeerStatus::Gone;
                }
                *dead_holder = None;
                if may_probe() && !backing.is_alive(peer) {
                    *dead_holder = Some(attachments);
                    return PeerStatus::Gone;
                }
                PeerStatus::Present
            }
            SLOT_EMPTY => PeerStatus::Never,
            // Not a state shmring writes: treat as absent, never as alive.
            _ => PeerStatus::Gone,
        }
    }
}

/// Marks `slot` attached by `pid`; a producer also counts the change in the
/// producer line first (see `ProducersWatch::all_gone`).
pub(crate) fn mark_attached(header: &RingHeader, slot: Slot, pid: u32) {
    if let Some(p) = header.participant(slot) {
        p.pid.store(pid, Ordering::Relaxed);
        p.attachments.fetch_add(1, Ordering::Relaxed);
        count_producer_change(header, slot);
        p.state.store(SLOT_ATTACHED, Ordering::Release);
    }
}

/// Counts a producer's attach or detach in the producer line, before its
/// slot says so: a consumer that read a slot before one producer attached
/// and another slot after another detached (a rolling restart) sees the
/// count moved, whichever the order in which it saw them.
fn count_producer_change(header: &RingHeader, slot: Slot) {
    if let Slot::Producer(_) = slot {
        header.producer.changes.fetch_add(1, Ordering::Release);
    }
}

/// Marks `slot` detached and wakes whoever waits on `peer_line`, so a peer
/// parked on this side notices at once.
pub(crate) fn mark_detached(header: &RingHeader, slot: Slot, peer_line: &WakeLine, stats: &mut Stats) {
    if let Some(p) = header.participant(slot) {
        // No longer lending in place (see `AnonymousRing::send_over`).
        p.lends.store(0, Ordering::Relaxed);
        count_producer_change(header, slot);
        p.state.store(SLOT_DETACHED, Ordering::Release);
    }
    // A fresh waker: whoever is announced must hear of the detach.
    Waker::default().wake_if_sleeping(peer_line, stats);
}

/// A ring in heap memory, for the loom models: the same header and algorithms,
/// with loom's atomics and a loom-tracked data region.
#[cfg(shmring_loom)]
#[derive(Debug)]
pub struct HeapRing {
    header: RingHeader,
    region: Region,
    name: Arc<str>,
    max_message: u32,
    /// Producer slots in use: the fewer, the fewer loom operations per scan.
    producers: u32,
    /// Per producer slot, set when a model "kills" it. Only MPSC models have
    /// it, so SPSC models pay no extra loom operations.
    dead: Option<Vec<crate::sync::AtomicU32>>,
    /// A file ring's model: the `head` of the last header write-back (see
    /// [`HeapRing::file`]).
    synced_head: Option<crate::sync::AtomicU64>,
}

#[cfg(shmring_loom)]
impl HeapRing {
    /// A zeroed ring of `capacity` bytes taking messages up to `max_message`.
    pub fn new(capacity: usize, max_message: u32) -> Self {
        HeapRing {
            header: RingHeader::default(),
            region: Region::new_heap(capacity),
            name: Arc::from("/loom"),
            max_message,
            producers: 2,
            dead: None,
            synced_head: None,
        }
    }

    /// A file ring's model: persistent, and a header write-back records the
    /// consumer's `head` as the disk would then hold it
    /// ([`synced_head`](Self::synced_head)).
    pub fn file(capacity: usize, max_message: u32) -> Self {
        HeapRing { synced_head: Some(crate::sync::AtomicU64::new(0)), ..HeapRing::new(capacity, max_message) }
    }

    /// The `head` the last header write-back put on the (modelled) disk.
    pub fn synced_head(&self) -> u64 {
        self.synced_head.as_ref().map_or(0, |head| head.load(Ordering::Acquire))
    }

    /// The same with `producers` producer slots in use (2 by default; at
    /// most [`MAX_PRODUCERS`](crate::layout::MAX_PRODUCERS)).
    pub fn with_producers(self, producers: u32) -> Self {
        assert!(producers as usize <= crate::layout::MAX_PRODUCERS);
        HeapRing { producers, ..self }
    }

    /// The same, with producers that a model can kill ([`HeapRing::kill`]).
    pub fn with_killable_producers(capacity: usize, max_message: u32) -> Self {
        let dead = (0..crate::layout::MAX_PRODUCERS).map(|_| crate::sync::AtomicU32::new(0)).collect();
        HeapRing { dead: Some(dead), ..HeapRing::new(capacity, max_message) }
    }

    /// Models the death of the producer in `slot` (whose thread has stopped
    /// for good): the kernel drops its lock (Release, as the kernel's own
    /// locking orders the dead process's stores before the probe that sees
    /// the lock gone), and the consumer's park slice expires (modelled as a
    /// wake, since loom has no timeouts).
    pub fn kill(&self, slot: usize) {
        if let Some(flag) = self.dead.as_ref().and_then(|dead| dead.get(slot)) {
            flag.store(1, Ordering::Release);
        }
        let line = &self.header.consumer_wake;
        line.seq.bump();
        line.seq.wake_all();
    }

    /// Zeroes the word at `position`, as a process killed in the middle of
    /// zeroing it left it (for models of interrupted work).
    pub fn zero_word(&self, position: u64) {
        let offset = (position & (self.region.len() as u64 - 1)) as usize;
        self.region.zero(offset, 8);
    }

    /// Models a new process taking producer slot `slot` (its lock, so the
    /// slot reads alive again).
    pub fn revive(&self, slot: usize) {
        if let Some(flag) = self.dead.as_ref().and_then(|dead| dead.get(slot)) {
            flag.store(0, Ordering::Release);
        }
    }
}

#[cfg(shmring_loom)]
impl RingBacking for HeapRing {
    fn header(&self) -> &RingHeader {
        &self.header
    }
    fn region(&self) -> &Region {
        &self.region
    }
    fn name(&self) -> &Arc<str> {
        &self.name
    }
    fn max_message(&self) -> u32 {
        self.max_message
    }
    fn max_producers(&self) -> u32 {
        self.producers
    }
    fn is_alive(&self, slot: Slot) -> bool {
        match (slot, &self.dead) {
            (Slot::Producer(n), Some(dead)) => dead.get(n).is_some_and(|flag| flag.load(Ordering::Acquire) == 0),
            _ => true,
        }
    }
    fn persistent(&self) -> bool {
        self.synced_head.is_some()
    }
    fn sync_header(&self) -> bool {
        if let Some(synced) = &self.synced_head {
            synced.fetch_max(self.header.consumer.head.load(Ordering::Acquire), Ordering::AcqRel);
        }
        true
    }
}
