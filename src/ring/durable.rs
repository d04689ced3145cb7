//! File-backed rings: never overwriting what a recovery may keep.
//!
//! After a crash of the machine, each page of the file holds what was last
//! written back, which may be older or newer than any other page: the kernel
//! writes dirty pages back in no particular order. Recovery (see
//! [`super::persist`]) keeps the records from the later of the `head` it
//! finds on the disk and the flush's `kept_from`, up to the durable tail.
//! Those bytes were written back by a flush; for them to be intact, nothing
//! may have overwritten them since, whichever header the disk ends up with.
//!
//! So producers of a file ring (and an MPSC consumer, which zeroes) never
//! overwrite the *flushed zone*, from `durable_head` to `flush_pending`:
//! `durable_head` is a consumer position that an `msync` of the header had
//! reached before it was raised (every `head` the disk can hold is at or
//! past it), and `flush_pending` is the position the latest flush covers
//! (every durable tail the disk can hold is at or before it). Space outside
//! the zone is reused as in a memory ring: a file ring that is never flushed
//! runs without a single write-back.
//!
//! A flush stores `flush_pending` (SeqCst), a SeqCst fence, then reads the
//! consumer's `head` (`kept_from`) and writes back from there. An SPSC
//! producer reads `head`, a SeqCst fence, then `flush_pending` (see
//! [`spsc_limit`]). Either it saw the flush's `flush_pending`, so it stays
//! out of the zone, or the flush read its `head` or a later one, so what it
//! overwrites lies before `kept_from`, which recovery skips. A flush of an
//! SPSC ring raises `durable_head` to its `kept_from` once the header is
//! written back, so with frequent flushes the zone is what was unconsumed
//! at the last flush.
//!
//! MPSC rings keep the stricter rule: producers claim only up to
//! `durable_head` plus the capacity, whether or not anything was flushed
//! (their space must be zeroed first, and only the consumer zeroes).
//!
//! The consumer raises `durable_head` (`release`): when it has consumed half
//! a lap past it and the zone is not empty (MPSC: always), when an MPSC
//! producer waits for it (`release_wanted`), and in its `flush`. An SPSC
//! producer that would otherwise wait raises it itself
//! (`release_by_producer`), so it never depends on the consumer's next call;
//! MPSC producers do (their release must zero space, below). An MPSC
//! consumer of a file ring does not zero what it consumes (the disk's
//! `head` may be older, and recovery must find those records whole): it
//! zeroes the range it releases, after the header is on the disk and before
//! producers may claim it, and being the only one that zeroes, it never
//! polls a stale word of an earlier lap. For the same reason an MPSC claim
//! in a file ring leaves 8 bytes free (as SPSC's terminator does), so the
//! word at the claim position is always zero or newer.
//!
//! `flush` in an MPSC ring covers records committed after an open claim too:
//! a producer that commits a record starting below `flush_pending` writes
//! its payload back before its commit word (a SeqCst fence between its
//! payload and its read of `flush_pending`). Either the flush's write-back
//! saw the payload, or the producer wrote it back itself: a commit word on
//! the disk never comes with a stale payload.

use super::RingBacking;
use crate::sync::{publish, AtomicU64, Ordering};

/// The word whose value plus the capacity bounds where MPSC producers may
/// write: the consumer's `head` in memory, `durable_head` in a file ring
/// (for SPSC, see [`spsc_limit`]). Below it, records are released: a walk
/// may skip to it.
pub fn limit_word<B: RingBacking>(backing: &B) -> &AtomicU64 {
    let header = backing.header();
    if backing.persistent() {
        &header.persistence.durable_head
    } else {
        &header.consumer.head
    }
}

/// Where an SPSC producer of a file ring at `tail` may write up to, minus the
/// capacity, having read the consumer's `head` (Acquire) just before: `head`
/// if nothing it would overwrite from `tail` on lies in the flushed zone,
/// else `durable_head` (see the module's documentation).
#[inline]
pub(super) fn spsc_limit<B: RingBacking>(backing: &B, head: u64, tail: u64, capacity: u64) -> u64 {
    let persistence = &backing.header().persistence;
    // Pairs with the fence in `persist::flush` after it raises
    // `flush_pending`: either this load sees that flush's value, or the
    // flush's read of `head` comes after ours.
    crate::sync::fence(Ordering::SeqCst);
    let pending = persistence.flush_pending.load(Ordering::Relaxed);
    let durable = persistence.durable_head.load(Ordering::Acquire);
    let zone_empty = pending <= durable || tail.saturating_sub(capacity) >= pending;
    if zone_empty || crate::sync::mutant("limit_from_head") {
        head
    } else {
        durable
    }
}

/// A producer of a file ring found it full below `limit` while the consumer
/// is past it: asks the consumer to release. The caller wakes the consumer.
pub(super) fn want_release<B: RingBacking>(backing: &B, limit: u64) -> bool {
    let header = backing.header();
    if header.consumer.head.load(Ordering::Relaxed) <= limit {
        return false;
    }
    header.persistence.release_wanted.store(1, Ordering::Relaxed);
    true
}

/// Whether the consumer at `head` should release now: a producer waits, or
/// it is half a lap past the durable head and (SPSC) the flushed zone is not
/// empty, so that a producer may soon need the release (MPSC producers
/// always do).
pub(super) fn release_due<B: RingBacking>(backing: &B, head: u64, capacity: u64, mpsc: bool) -> bool {
    let persistence = &backing.header().persistence;
    let durable = persistence.durable_head.load(Ordering::Relaxed);
    if head <= durable {
        return false;
    }
    if head - durable >= capacity / 2 && (mpsc || persistence.flush_pending.load(Ordering::Relaxed) > durable) {
        return true;
    }
    persistence.release_wanted.load(Ordering::Relaxed) != 0
}

/// The consumer, at `head`, makes its position durable and lets producers
/// reuse the space before it: writes the header back (`msync`), then (MPSC:
/// `zero`) zeroes the range from the old durable head, then raises
/// `durable_head` (Release, `fetch_max`: an SPSC producer may raise it too,
/// see [`release_by_producer`]). Only the consumer calls this and only it
/// zeroes, so nothing else writes that range meanwhile. Returns `false` if
/// the write-back failed (nothing raised; a later call tries again).
pub fn release<B: RingBacking>(backing: &B, head: u64, zero: bool) -> bool {
    let persistence = &backing.header().persistence;
    persistence.release_wanted.store(0, Ordering::Relaxed);
    let durable = persistence.durable_head.load(Ordering::Relaxed);
    // Only an MPSC release zeroes, and never more than a lap.
    if head <= durable || (zero && head - durable > backing.region().len() as u64) {
        return head == durable;
    }
    if crate::sync::mutant("release_before_sync") {
        persistence.durable_head.store(head, publish());
    }
    if !backing.sync_header() {
        return false;
    }
    if zero && !crate::sync::mutant("no_release_zeroing") {
        // A flush walk that reads these zeros must also read the `head`
        // stored before them (it then never marks them: see
        // `persist::flushable_end`).
        crate::sync::fence(Ordering::Release);
        backing.region().zero_positions(durable, head);
    }
    persistence.durable_head.fetch_max(head, publish());
    true
}

/// An SPSC producer of a file ring that would otherwise wait for the
/// consumer to release: makes the consumer's `head` durable itself (writes
/// the header back after reading it) and raises `durable_head` to it. SPSC
/// only: an MPSC release must zero, which only the consumer does. Returns
/// whether it raised anything.
pub(super) fn release_by_producer<B: RingBacking>(backing: &B, limit: u64) -> bool {
    let header = backing.header();
    let head = header.consumer.head.load(Ordering::Acquire);
    if head <= limit || head % 8 != 0 || !backing.sync_header() {
        return false;
    }
    header.persistence.durable_head.fetch_max(head, publish());
    true
}

/// [`release`], then wakes producers waiting for room, for a caller without
/// the consumer's own waker (`flush` through a shared reference).
pub fn release_and_wake<B: RingBacking>(backing: &B, head: u64, zero: bool) -> bool {
    let released = release(backing, head, zero);
    let mut stats = super::Stats::default();
    super::Waker::default().wake_if_sleeping(&backing.header().producer_wake, &mut stats);
    released
}
