//! A ring in heap memory, for the loom models: the same header and
//! algorithms, with loom's atomics and a loom-tracked data region.

use super::*;

/// A ring in heap memory, for the loom models: the same header and algorithms,
/// with loom's atomics and a loom-tracked data region.
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
