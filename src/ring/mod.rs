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
//! * Wake-ups, one [`WakeLine`] per direction: the side that must wait reads
//!   the futex word, bumps `sleepers`, fences (SeqCst), re-checks its
//!   condition and only then sleeps on the word (with the value it read).
//!   The other side, after publishing, fences (SeqCst) and, only if
//!   `sleepers` is non-zero, bumps the word and wakes. One of the two fences always sees the other side's store,
//!   so no wake-up is lost; in steady streaming nobody sleeps and no system
//!   call is made. An MPSC consumer's announcement also says which record
//!   it waits for, and producers wake it only for that one
//!   ([`WakeLine::waiting_for`], `Waker::wake_for_record`).
//!
//! [`WakeLine`]: crate::layout::WakeLine

#[cfg(shmring_loom)]
pub use crate::{record, region};
#[cfg(not(shmring_loom))]
pub(crate) use crate::{record, region};

mod batch;
mod consumer;
mod die;
pub mod durable;
mod grant;
#[cfg(shmring_loom)]
mod heap;
mod mpsc;
mod mpsc_resolve;
mod park;
mod peer;
pub mod persist;
mod producer;
mod read_guard;
mod select;
mod spsc;

pub use batch::Batch;
pub use consumer::Consumer;
#[cfg(shmring_loom)]
pub use die::DieAt;
pub use grant::Grant;
#[cfg(shmring_loom)]
pub use heap::HeapRing;
pub use mpsc_resolve::slot_reusable;
pub(crate) use park::*;
pub(crate) use peer::*;
pub use producer::Producer;
pub use read_guard::ReadGuard;
pub use region::Region;
#[cfg(shmring_loom)]
pub use select::wait_for_reactor;
#[cfg(shmring_loom)]
pub use select::RoomFor;
#[cfg(any(feature = "async", shmring_loom))]
pub use select::{announce, withdraw, Announcement};
pub use select::{select, select_now, Selection, Watched};

use crate::layout::{
    RingHeader, Slot, WakeLine, SLEEPER_ANNOUNCE, SLEEPER_COUNT_BITS, SLEEPER_COUNT_MASK, SLOT_ATTACHED, SLOT_DETACHED,
    SLOT_EMPTY, WAITING_FOR_ANY, WAITING_POSITION_BITS, WAITING_POSITION_MASK,
};
use crate::sync::{sleeper_fence, waker_fence, Ordering};
pub(crate) use crate::wait::Pace;
use crate::wait::Waitable;
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
