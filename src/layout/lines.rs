//! The lines of the ring header that the sides write as they run: the
//! producer and consumer lines, claims, wake lines, participant slots and
//! the persistence line.

use super::*;

/// Written by the producer(s) only.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ProducerLine {
    /// The position up to which space has been claimed. SPSC: advanced by the
    /// producer after each commit (a hint for a restarted producer and for
    /// tools; the consumer never needs it). MPSC: the CAS-claimed position.
    pub tail: AtomicU64,
    /// Messages committed since creation (for tools; nothing synchronises on
    /// it).
    pub messages: AtomicU64,
    /// Producer attaches and clean detaches since creation, each counted
    /// (Release) before its slot says so: a consumer that sees no producer
    /// attached checks that this did not move while it looked at the slots.
    pub changes: AtomicU64,
}

/// Written by the consumer only.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ConsumerLine {
    /// The position of the next record to read. Everything before it is free
    /// for producers. Advanced with Release after a record is released.
    pub head: AtomicU64,
    /// Messages consumed since creation (for tools; nothing synchronises on
    /// it).
    pub messages: AtomicU64,
    /// MPSC: the end of the range the consumer is zeroing before it advances
    /// `head` there. A consumer killed in the middle leaves it above `head`,
    /// and the next one finishes the job instead of finding a half-zeroed
    /// record.
    pub freeing_to: AtomicU64,
    /// MPSC: records whose producer died before committing them, skipped.
    pub torn_records: AtomicU64,
}

/// [`ClaimLine::start`] when the producer is not claiming anything.
pub const NO_CLAIM: u64 = u64::MAX;

/// One MPSC producer's claim in progress, on a line of its own (written on
/// every message, so producers never share a line).
///
/// A producer publishes `end` then `start` *before* its CAS on the claim
/// position, and keeps them until its next attempt, so that whoever finds
/// the record at `start` unwritten can tell which producers may own it (see
/// `ring::mpsc`).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ClaimLine {
    /// The claim position the producer read and tries to move, or
    /// [`NO_CLAIM`].
    pub start: AtomicU64,
    /// Where the claim ends (after the padding and the record).
    pub end: AtomicU64,
    /// Messages this slot's holders committed (for tools).
    pub messages: AtomicU64,
    /// 1 while the holder is announced as a sleeper on the producers' wake
    /// line (set after announcing, cleared before withdrawing), so that the
    /// next holder of a dead producer's slot can withdraw the announcement
    /// the dead one never did.
    pub parked: AtomicU64,
}

/// One direction of the wake-up protocol.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WakeLine {
    /// The futex word sleepers wait on; wakers bump it before waking.
    pub seq: FutexWord,
    /// Who is announced as (about to be) asleep on `seq`: the count in the
    /// low [`SLEEPER_COUNT_BITS`] bits, and above them an epoch that every
    /// announcement advances, so a waker can tell "the sleepers I already
    /// woke" from "someone announced since" (see `ring::Waker`).
    pub sleepers: AtomicU32,
    /// What the consumer's sleeper waits for, stored when it announces: 0,
    /// anything published on this line (a `Select` or an async wait); else,
    /// for a parked MPSC consumer, the epoch of its announcement (see
    /// `sleepers`) above [`WAITING_POSITION_BITS`] and below them the
    /// position of the record it waits for, plus one, modulo
    /// 2^[`WAITING_POSITION_BITS`] (a ring holds at most 2^40 bytes, so the
    /// positions a producer compares it with are told apart). An MPSC
    /// producer whose record is neither that one nor one at the start of a
    /// lap after padding from there need not wake it: it reads in order. A
    /// waker that reads another epoch in `sleepers` wakes for anything: the
    /// sleeper up announced without saying (a consumer of a build that knows
    /// no such field, which leaves a newer consumer's last word in place).
    /// Only MPSC producers read it: an SPSC consumer's parks and the
    /// producers' line leave it alone.
    pub waiting_for: AtomicU64,
}

/// [`WakeLine::waiting_for`]: the sleeper waits for anything published.
pub const WAITING_FOR_ANY: u64 = 0;
/// Bits of [`WakeLine::waiting_for`] below the epoch: the position waited
/// for (plus one), modulo 2^40.
pub const WAITING_POSITION_BITS: u32 = 40;
/// The position part of [`WakeLine::waiting_for`].
pub const WAITING_POSITION_MASK: u64 = (1 << WAITING_POSITION_BITS) - 1;

/// Bits of [`WakeLine::sleepers`] that count sleepers (at most 65 ever wait
/// on one line: 64 producers, or the consumer).
pub const SLEEPER_COUNT_BITS: u32 = 8;
/// The sleeper count of a [`WakeLine::sleepers`] word (the rest is the epoch).
pub const SLEEPER_COUNT_MASK: u32 = (1 << SLEEPER_COUNT_BITS) - 1;
/// What one announcement adds to [`WakeLine::sleepers`]: one sleeper, one epoch.
pub const SLEEPER_ANNOUNCE: u32 = 1 | (1 << SLEEPER_COUNT_BITS);

/// [`Participant::state`]: never attached.
pub const SLOT_EMPTY: u32 = 0;
/// [`Participant::state`]: attached; alive while it holds its lock byte.
pub const SLOT_ATTACHED: u32 = 1;
/// [`Participant::state`]: detached cleanly.
pub const SLOT_DETACHED: u32 = 2;

/// A producer's or the consumer's registration. Liveness is not read from
/// here: it is the kernel-held lock on this slot's lock byte of the segment
/// file (see `segment`); `pid` is only a hint for humans.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Participant {
    /// [`SLOT_EMPTY`], [`SLOT_ATTACHED`] or [`SLOT_DETACHED`].
    pub state: AtomicU32,
    /// Process id of the last attached holder (as seen in its namespace).
    pub pid: AtomicU32,
    /// How many times the slot has been taken.
    pub attachments: AtomicU32,
    /// 1 while the holder lends the ring's memory in place (a descriptor is
    /// not sent while a live holder does: see `AnonymousRing::send_over`).
    pub lends: AtomicU32,
}

/// What a file-backed ring needs to survive a restart of the machine. Shared
/// memory and memfd rings carry it too (unused: they do not outlive the
/// machine).
#[repr(C)]
#[derive(Debug, Default)]
pub struct PersistenceLine {
    /// Every record before this position was committed and written back to
    /// the file (`msync`) before this word was; raised by `flush`.
    pub durable_tail: AtomicU64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`) when the
    /// segment was created or last recovered. Another one means the machine
    /// restarted since: what is past `durable_tail` may be torn.
    pub boot_id: [AtomicU64; 2],
    /// Records dropped by recoveries after a restart (written after the last
    /// flush, so possibly torn).
    pub lost_records: AtomicU64,
    /// File-backed rings: the consumer's `head` when the latest `flush`
    /// started (it writes back nothing before it, consumed by then). Stored
    /// before `durable_tail`, in the same 64-byte cache line (which a
    /// write-back copies as a unit): recovery keeps the records from the
    /// later of this and the `head` on the disk up to the durable tail.
    pub kept_from: AtomicU64,
    /// File-backed rings: a consumer position that the header on the disk
    /// has reached (`msync` of the header with `head` at or past it
    /// completed before this word was raised): every `head` a recovery can
    /// find is at or past it. Raised by the consumer when it releases space
    /// (MPSC: after zeroing it), by an SPSC producer that would otherwise
    /// wait, and by an SPSC `flush`. See `ring::durable`.
    pub durable_head: AtomicU64,
    /// File-backed rings: the claim position the latest `flush` covers,
    /// stored (SeqCst) before it writes the records back. Producers do not
    /// reuse the space from `durable_head` to here (a recovery may keep it);
    /// an MPSC producer committing a record that starts below it writes its
    /// payload back first.
    pub flush_pending: AtomicU64,
    /// File-backed rings: non-zero while a producer waits for the consumer
    /// to raise `durable_head`.
    pub release_wanted: AtomicU64,
    /// File-backed MPSC rings: where the next `flush` starts writing back:
    /// the first claim that was still open when a flush went past it (its
    /// commit, which may come later, is written back by the next flush), or
    /// the durable tail.
    pub unsettled_from: AtomicU64,
    /// How many recoveries after a restart the segment has been through.
    pub recoveries: AtomicU64,
}
