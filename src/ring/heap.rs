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
    /// A file ring's model: `head`, `kept_from` and `durable_tail` as the
    /// last header write-back put them on the disk (see [`HeapRing::file`]).
    synced: Option<[crate::sync::AtomicU64; 3]>,
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
            synced: None,
        }
    }

    /// A file ring's model: persistent, and a header write-back records the
    /// consumer's `head`, `kept_from` and `durable_tail` as the disk would
    /// then hold them ([`synced_header`](Self::synced_header)).
    pub fn file(capacity: usize, max_message: u32) -> Self {
        let synced = [0; 3].map(crate::sync::AtomicU64::new);
        HeapRing { synced: Some(synced), ..HeapRing::new(capacity, max_message) }
    }

    /// `(head, kept_from, durable_tail)` as the last header write-back put
    /// them on the (modelled) disk.
    pub fn synced_header(&self) -> (u64, u64, u64) {
        let load = |n: usize| self.synced.as_ref().map_or(0, |synced| synced[n].load(Ordering::Acquire));
        // In the order a write-back stores them: a durable tail comes with
        // its `kept_from` or a later one.
        let durable_tail = load(2);
        let kept_from = load(1);
        (load(0), kept_from, durable_tail)
    }

    /// The word at `position` (Acquire), for models that inspect records.
    pub fn word(&self, position: u64) -> u64 {
        self.region.word(position).load(Ordering::Acquire)
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

    /// Models a stale or hostile producers' claim position (the `tail`
    /// hint a consumer reads to judge how much room it freed).
    pub fn set_claim_hint(&self, tail: u64) {
        self.header.producer.tail.store(tail, Ordering::Relaxed);
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
        self.synced.is_some()
    }
    fn sync_header(&self) -> bool {
        if let Some(synced) = &self.synced {
            // The durable tail and `kept_from` share a cache line, copied
            // as a unit: read in the order opposite to the flush's stores.
            let persistence = &self.header.persistence;
            // The modelled disk is then written in the opposite order, so
            // that `synced_header` reads a pair the write-back copied.
            let durable_tail = persistence.durable_tail.load(Ordering::Acquire);
            let kept_from = persistence.kept_from.load(Ordering::Acquire);
            let head = self.header.consumer.head.load(Ordering::Acquire);
            for (disk, value) in synced.iter().zip([head, kept_from, durable_tail]) {
                disk.fetch_max(value, Ordering::AcqRel);
            }
        }
        true
    }
}
