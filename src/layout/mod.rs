//! The `#[repr(C)]` header at the start of every segment (layout version 5).
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
//!               machine restart, kept from, durable head, flush in progress,
//!               release wanted, unsettled claims, recoveries (file-backed rings)
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
//! `ring::durable`). Version 5 adds `kept_from` (moving `recoveries`): a flush writes back only
//! what was not consumed when it started, and producers reuse space freely
//! outside what a flush may have kept. Segments of other versions are
//! refused by name.
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
pub const VERSION: u32 = 5;
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

mod identity;
mod lines;
#[cfg(not(shmring_loom))]
mod pinned;

pub use identity::*;
pub use lines::*;

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
