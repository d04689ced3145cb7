//! The `#[repr(C)]` header at the start of every segment (layout version 4).
//!
//! ```text
//! offset  size  line
//!      0   128  identity: magic, version, kind, sizes, creator, checksum, state,
//!               flags
//!    128   128  producer line: tail (next position to claim), messages sent,
//!               producer attaches and detaches
//!    256   128  consumer line: head, messages read, freeing_to, torn records
//!    384   128  consumer wake line: futex word + sleeper count
//!    512   128  producer wake line: futex word + sleeper count
//!    640   128  consumer participant slot
//!    768  1024  producer participant slots (64 x 16 bytes)
//!   1792  8192  producer claim lines (64 x 128 bytes): each MPSC producer's
//!               claim intent and message count, one line per producer
//!   9984   128  persistence line: durable tail, boot id, records lost to a
//!               machine restart, durable head, flush in progress, release
//!               wanted, unsettled claims (file-backed rings)
//!  10112        end of header; the data region starts at 12288 (or the next page)
//! ```
//!
//! Version 2 added the consumer line's `freeing_to` and `torn_records`, the
//! claim lines (MPSC) and the persistence line (file-backed rings). Version 3
//! changes the record stamp (lap-aware: see `ring::record`) and adds the
//! producer line's `changes`. Version 4 adds the persistence line's
//! `durable_head`, `flush_pending`, `release_wanted` and `unsettled_from`:
//! file-backed rings
//! reuse space only behind a consumer position that is on the disk (see
//! `ring::durable`). Segments of other versions are refused by name.
//!
//! Every field is an atomic, including the identity that is written once: the
//! mapping is shared with processes we do not trust, and an atomic read of a
//! word someone else is scribbling on is still a defined read. Nothing here is
//! a pointer or a `usize`; everything is a fixed-width integer, so a segment
//! means the same to every process (and, for file-backed rings, to every run).
//!
//! Lines that different sides write are 128-byte aligned (two 64-byte lines, to
//! keep the adjacent-line prefetcher from pairing them), a fixed value of our
//! own: `CachePadded`'s alignment differs by architecture and a layout must not.

use crate::sync::{AtomicU32, AtomicU64, FutexWord, Ordering};

/// `b"SHMRING\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");
/// The layout version this build reads and writes.
pub const VERSION: u32 = 4;
/// `state` while the creator is still writing the header.
pub const STATE_INITIALIZING: u32 = 0;
/// `state` once the header is complete (stored with Release).
pub const STATE_READY: u32 = u32::from_le_bytes(*b"RDY1");
/// The most producers an MPSC segment can register.
pub const MAX_PRODUCERS: usize = if cfg!(shmring_loom) { 3 } else { 64 };
/// The largest position (bytes since the ring was created) a side accepts
/// from the header when it attaches; a larger one is reported as corrupted.
/// From here a side needs 2^63 more bytes (about nine years at 30 GB/s) to
/// reach the end of the `u64` position space, so no position arithmetic of a
/// side that attached can overflow, whatever a hostile header said.
pub const MAX_POSITION: u64 = 1 << 63;
/// Alignment of every independently written line of the header.
pub const LINE: usize = 128;
/// Bytes reserved for the header; the data region starts here (or at the
/// first page boundary after it, on machines with larger pages).
pub const HEADER_BYTES: u64 = 12288;

/// The two ring kinds. Fixed at creation and checked on attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One producer, one consumer.
    Spsc,
    /// Many producers, one consumer.
    Mpsc,
}

impl Kind {
    /// The value stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Mpsc => 2,
        }
    }

    /// The kind stored as `code`, if it is one.
    pub const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpsc),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Spsc => "SPSC",
            Kind::Mpsc => "MPSC",
        })
    }
}

/// A header line: `T` alone on its own 128-byte aligned block.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Who made the segment and how it is shaped. Written once by the creator
/// before `state` becomes [`STATE_READY`]; covered by `checksum`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Identity {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`Kind::code`].
    pub kind: AtomicU32,
    /// Bytes in the data region: a power of two and a multiple of the page size.
    pub capacity: AtomicU64,
    /// Offset of the data region from the start of the segment.
    pub data_offset: AtomicU64,
    /// Size of the whole segment: `data_offset + capacity`.
    pub total_size: AtomicU64,
    /// Largest payload a record may carry.
    pub max_message: AtomicU32,
    /// Producer slots in use for this kind (1 for SPSC).
    pub max_producers: AtomicU32,
    /// Process that created the segment (a hint for humans).
    pub creator_pid: AtomicU32,
    /// User that created the segment.
    pub creator_uid: AtomicU32,
    /// [`IdentityFields::checksum`] of the fields above.
    pub checksum: AtomicU64,
    /// [`STATE_INITIALIZING`], then [`STATE_READY`].
    pub state: AtomicU32,
    /// [`FLAG_HANDED_OUT`], once set. Not covered by the checksum: a forged
    /// flag can only make handles copy rather than lend.
    pub flags: AtomicU32,
}

/// [`Identity::flags`]: the segment's descriptor crossed a socket (an
/// anonymous ring sent or received): who can write it cannot be known, so no
/// handle lends its memory in place (the trust rule).
pub const FLAG_HANDED_OUT: u32 = 1;

/// A plain copy of the identity fields, as read from (or to be written to) a
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityFields {
    /// See [`Identity::magic`].
    pub magic: u64,
    /// See [`Identity::version`].
    pub version: u32,
    /// See [`Identity::kind`].
    pub kind: u32,
    /// See [`Identity::capacity`].
    pub capacity: u64,
    /// See [`Identity::data_offset`].
    pub data_offset: u64,
    /// See [`Identity::total_size`].
    pub total_size: u64,
    /// See [`Identity::max_message`].
    pub max_message: u32,
    /// See [`Identity::max_producers`].
    pub max_producers: u32,
    /// See [`Identity::creator_pid`].
    pub creator_pid: u32,
    /// See [`Identity::creator_uid`].
    pub creator_uid: u32,
}

impl IdentityFields {
    /// FNV-1a over the fields in declaration order. Not a defence against an
    /// attacker (who can rewrite the checksum too), but a torn or scribbled
    /// identity is caught before any size in it is trusted.
    pub fn checksum(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let words = [
            self.magic,
            u64::from(self.version),
            u64::from(self.kind),
            self.capacity,
            self.data_offset,
            self.total_size,
            u64::from(self.max_message),
            u64::from(self.max_producers),
            u64::from(self.creator_pid),
            u64::from(self.creator_uid),
        ];
        for byte in words.iter().flat_map(|w| w.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

impl Identity {
    /// Read every field (Relaxed: call after observing `state` with Acquire).
    pub fn read(&self) -> IdentityFields {
        let r = Ordering::Relaxed;
        IdentityFields {
            magic: self.magic.load(r),
            version: self.version.load(r),
            kind: self.kind.load(r),
            capacity: self.capacity.load(r),
            data_offset: self.data_offset.load(r),
            total_size: self.total_size.load(r),
            max_message: self.max_message.load(r),
            max_producers: self.max_producers.load(r),
            creator_pid: self.creator_pid.load(r),
            creator_uid: self.creator_uid.load(r),
        }
    }

    /// Write every field and the checksum. The caller publishes them by
    /// storing [`STATE_READY`] into `state` with Release afterwards.
    pub fn write(&self, fields: &IdentityFields) {
        let r = Ordering::Relaxed;
        self.magic.store(fields.magic, r);
        self.version.store(fields.version, r);
        self.kind.store(fields.kind, r);
        self.capacity.store(fields.capacity, r);
        self.data_offset.store(fields.data_offset, r);
        self.total_size.store(fields.total_size, r);
        self.max_message.store(fields.max_message, r);
        self.max_producers.store(fields.max_producers, r);
        self.creator_pid.store(fields.creator_pid, r);
        self.creator_uid.store(fields.creator_uid, r);
        self.checksum.store(fields.checksum(), r);
    }
}

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
}

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
    /// How many recoveries after a restart the segment has been through.
    pub recoveries: AtomicU64,
    /// File-backed rings: a consumer position that the header on the disk
    /// has reached (`msync` of the header with `head` at or past it
    /// completed before this word was raised). Producers reuse space only up
    /// to this plus the capacity, so nothing a recovery may keep is
    /// overwritten. Raised only by the consumer (MPSC: after zeroing the
    /// space it frees).
    pub durable_head: AtomicU64,
    /// File-backed MPSC rings: the claim position a `flush` covers, stored
    /// (SeqCst) before it writes the records back. A producer committing a
    /// record that starts below it writes its payload back first.
    pub flush_pending: AtomicU64,
    /// File-backed rings: non-zero while a producer waits for the consumer
    /// to raise `durable_head`.
    pub release_wanted: AtomicU64,
    /// File-backed MPSC rings: where the next `flush` starts writing back:
    /// the first claim that was still open when a flush went past it (its
    /// commit, which may come later, is written back by the next flush), or
    /// the durable tail.
    pub unsettled_from: AtomicU64,
}

/// The part of the header the ring algorithms use.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    /// See [`ProducerLine`].
    pub producer: Line<ProducerLine>,
    /// See [`ConsumerLine`].
    pub consumer: Line<ConsumerLine>,
    /// The consumer sleeps here when the ring is empty.
    pub consumer_wake: Line<WakeLine>,
    /// Producers sleep here when the ring is full.
    pub producer_wake: Line<WakeLine>,
    /// The consumer's registration.
    pub consumer_slot: Line<Participant>,
    /// Producer registrations (SPSC uses slot 0).
    pub producer_slots: Line<[Participant; MAX_PRODUCERS]>,
    /// MPSC producers' claims, one line per producer slot.
    pub claims: [Line<ClaimLine>; MAX_PRODUCERS],
    /// See [`PersistenceLine`].
    pub persistence: Line<PersistenceLine>,
}

impl Default for RingHeader {
    fn default() -> Self {
        RingHeader {
            producer: Line::default(),
            consumer: Line::default(),
            consumer_wake: Line::default(),
            producer_wake: Line::default(),
            consumer_slot: Line::default(),
            producer_slots: Line(std::array::from_fn(|_| Participant::default())),
            claims: std::array::from_fn(|_| Line::default()),
            persistence: Line::default(),
        }
    }
}

/// The whole header at offset 0 of a segment.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SegmentHeader {
    /// See [`Identity`].
    pub identity: Line<Identity>,
    /// See [`RingHeader`].
    pub ring: RingHeader,
}

/// Which participant slot (and lock byte) a handle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The consumer.
    Consumer,
    /// Producer slot `n`.
    Producer(usize),
}

impl Slot {
    /// Byte of the segment file whose lock marks this participant alive.
    /// Locks are advisory and do not touch the data, so the bytes of the
    /// identity line double as lock bytes.
    pub fn lock_byte(self) -> u64 {
        match self {
            Slot::Consumer => 0,
            Slot::Producer(n) => 1 + n as u64,
        }
    }
}

/// The byte of the segment file whose lock serialises recovery after a
/// machine restart (file-backed rings): after every participant's byte.
pub const RECOVERY_LOCK_BYTE: u64 = 1 + MAX_PRODUCERS as u64;

impl RingHeader {
    /// The participant record of `slot`, if the slot exists.
    pub fn participant(&self, slot: Slot) -> Option<&Participant> {
        match slot {
            Slot::Consumer => Some(&self.consumer_slot),
            Slot::Producer(n) => self.producer_slots.0.get(n),
        }
    }

    /// The claim line of producer slot `n`, if the slot exists.
    pub fn claim(&self, n: usize) -> Option<&ClaimLine> {
        self.claims.get(n).map(|line| &line.0)
    }
}

#[cfg(not(shmring_loom))]
mod pinned {
    use super::*;
    use static_assertions::{const_assert, const_assert_eq};
    use std::mem::{align_of, offset_of, size_of};

    const_assert_eq!(size_of::<FutexWord>(), 4);
    const_assert_eq!(size_of::<Identity>(), 72);
    const_assert_eq!(offset_of!(Identity, flags), 68);
    const_assert_eq!(offset_of!(Identity, checksum), 56);
    const_assert_eq!(offset_of!(Identity, state), 64);
    const_assert_eq!(size_of::<Participant>(), 16);
    const_assert_eq!(align_of::<SegmentHeader>(), LINE);
    const_assert_eq!(offset_of!(SegmentHeader, ring), 128);
    const_assert_eq!(offset_of!(RingHeader, producer), 0);
    const_assert_eq!(offset_of!(RingHeader, consumer), 128);
    const_assert_eq!(offset_of!(RingHeader, consumer_wake), 256);
    const_assert_eq!(offset_of!(RingHeader, producer_wake), 384);
    const_assert_eq!(offset_of!(RingHeader, consumer_slot), 512);
    const_assert_eq!(offset_of!(RingHeader, producer_slots), 640);
    const_assert_eq!(offset_of!(WakeLine, sleepers), 4);
    const_assert_eq!(offset_of!(ProducerLine, messages), 8);
    const_assert_eq!(offset_of!(ProducerLine, changes), 16);
    const_assert_eq!(offset_of!(ConsumerLine, messages), 8);
    const_assert_eq!(offset_of!(ConsumerLine, freeing_to), 16);
    const_assert_eq!(offset_of!(ConsumerLine, torn_records), 24);
    const_assert_eq!(offset_of!(RingHeader, claims), 1664);
    const_assert_eq!(size_of::<Line<ClaimLine>>(), LINE);
    const_assert_eq!(offset_of!(ClaimLine, end), 8);
    const_assert_eq!(offset_of!(ClaimLine, parked), 24);
    const_assert_eq!(offset_of!(RingHeader, persistence), 9856);
    const_assert_eq!(offset_of!(PersistenceLine, boot_id), 8);
    const_assert_eq!(offset_of!(PersistenceLine, lost_records), 24);
    const_assert_eq!(offset_of!(PersistenceLine, durable_head), 40);
    const_assert_eq!(offset_of!(PersistenceLine, flush_pending), 48);
    const_assert_eq!(offset_of!(PersistenceLine, release_wanted), 56);
    const_assert_eq!(offset_of!(PersistenceLine, unsettled_from), 64);
    const_assert_eq!(size_of::<SegmentHeader>(), 10112);
    const_assert!(size_of::<SegmentHeader>() as u64 <= HEADER_BYTES);
    // Every lock byte lies inside the header, before the data region.
    const_assert!((MAX_PRODUCERS as u64) < HEADER_BYTES);
}

#[cfg(all(test, not(shmring_loom)))]
mod tests {
    use super::*;

    fn sample() -> IdentityFields {
        IdentityFields {
            magic: MAGIC,
            version: VERSION,
            kind: Kind::Spsc.code(),
            capacity: 1 << 16,
            data_offset: HEADER_BYTES,
            total_size: HEADER_BYTES + (1 << 16),
            max_message: 1 << 14,
            max_producers: 1,
            creator_pid: 42,
            creator_uid: 1000,
        }
    }

    #[test]
    fn checksum_covers_every_field() {
        let base = sample();
        let sum = base.checksum();
        let variants = [
            IdentityFields { magic: base.magic ^ 1, ..base },
            IdentityFields { version: base.version + 1, ..base },
            IdentityFields { kind: 2, ..base },
            IdentityFields { capacity: 1 << 17, ..base },
            IdentityFields { data_offset: 0, ..base },
            IdentityFields { total_size: 0, ..base },
            IdentityFields { max_message: 1, ..base },
            IdentityFields { max_producers: 2, ..base },
            IdentityFields { creator_pid: 43, ..base },
            IdentityFields { creator_uid: 0, ..base },
        ];
        for v in variants {
            assert_ne!(v.checksum(), sum, "{v:?}");
        }
    }

    #[test]
    fn identity_round_trips() {
        let id = Identity::default();
        id.write(&sample());
        assert_eq!(id.read(), sample());
        assert_eq!(id.checksum.load(Ordering::Relaxed), sample().checksum());
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [Kind::Spsc, Kind::Mpsc] {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(3), None);
    }
}
