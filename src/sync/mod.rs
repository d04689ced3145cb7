//! The atomics, fences and futex the ring is written against.
//!
//! This is the only module that names `std::sync::atomic` or `loom`. Normally
//! it re-exports the standard atomics and wraps the kernel futex; under
//! `--cfg shmring_loom` it re-exports loom's atomics and a modelled futex, so
//! the ring algorithms in [`crate::ring`] are written once and model-checked as
//! they are.
//!
//! The orderings the protocol depends on are named functions here rather
//! than literals at the use sites. In a loom build only, the environment
//! variable `SHMRING_MUTANT`, read when a model first asks, weakens one of
//! them or removes one fence (see [`MUTANTS`]), so that `loom-tests` can show
//! the models catch exactly that bug, every mutant from one build. In a
//! normal build [`mutant`] is a constant `false` and never reads anything.

#[cfg(not(shmring_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(shmring_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The protocol weakenings a loom build can be run with, each named by
/// what it breaks.
#[cfg_attr(not(shmring_loom), allow(dead_code))]
pub const MUTANTS: [&str; 34] = [
    "relaxed_publish",                // commit / head stores Relaxed instead of Release
    "relaxed_observe",                // commit / head loads Relaxed instead of Acquire
    "no_sleeper_fence_waker",         // no SeqCst fence between publish and sleeper check
    "no_sleeper_fence_sleeper",       // no SeqCst fence between announce and re-check
    "wake_without_bump",              // waker wakes without changing the futex word
    "wake_once_per_count",            // waker skips a wake when only the epoch moved
    "announce_before_seq_read",       // sleeper reads the futex word after announcing
    "no_terminator",                  // producer does not zero the word after a record
    "relaxed_claim",                  // MPSC claim CAS Relaxed instead of Release
    "no_claim_marker",                // MPSC producer does not mark its claim
    "intent_after_claim",             // MPSC producer publishes its intent after its CAS
    "word_before_intents",            // MPSC consumer reads a candidate end's word before the intents
    "ignore_freeing_to",              // MPSC consumer attaches without finishing an interrupted release
    "no_discard_on_drop",             // MPSC producer drops without discarding a leaked grant's claim
    "reuse_unresolved_slot",          // MPSC slot of a dead producer reused before its claim is resolved
    "relaxed_marker",                 // MPSC claim marker stored Relaxed: seen without its CAS or its lock
    "no_attach_count",                // MPSC consumer trusts one scan of the slots for "all producers gone"
    "limit_from_head",                // file ring producers reuse space behind head, ignoring the flushed zone
    "kept_from_durable_head",         // file ring flush starts at the durable head, not the head it read
    "release_before_sync",            // file ring consumer raises the durable head before the header is on disk
    "no_release_zeroing",             // file MPSC consumer releases space without zeroing it
    "no_remainder_record",            // MPSC shorter commit leaves the rest of its claim unwritten
    "remainder_after_publish",        // MPSC shorter commit writes the rest's record after publishing
    "batch_wakes_only_at_end", // a batch send wakes the consumer neither every quarter nor before it waits for room
    "zero_last_word_only",     // MPSC consumer zeroes only the last word of what it frees (a batch: several records)
    "held_word_relaxed",       // a batch publishes its held first record (and all after it) Relaxed
    "drain_keeps_space",       // a drain publishes none of the space it consumed (not at a quarter, not at its end)
    "select_announces_on_first_only", // a multi-ring wait announces itself on its first ring's line only
    "cancel_keeps_announcement", // an async wait withdrawn (cancelled or woken) leaves its announcement on the line
    "room_wake_not_owed",      // a consumer defers a producer's wake for little room and forgets it
    "sleep_after_head_moved",  // an MPSC consumer sleeps although its re-check moved past what it announced
    "no_wake_across_padding",  // an MPSC record at a lap's start wakes no consumer waiting at padding before it
    "ignore_waiting_epoch",    // a producer trusts waiting_for although another announcement than its own is up
    "remember_skipped_wake", // a producer that skipped a wake (not the record waited for) remembers the epoch as woken
];

/// Whether this (loom) build runs with the named mutant: `SHMRING_MUTANT`
/// as the process found it; an unknown name stops the model at once.
#[cfg(shmring_loom)]
pub(crate) fn mutant(name: &str) -> bool {
    static MUTANT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let chosen = MUTANT.get_or_init(|| {
        let chosen = std::env::var("SHMRING_MUTANT").unwrap_or_default();
        assert!(
            chosen.is_empty() || MUTANTS.contains(&chosen.as_str()),
            "SHMRING_MUTANT names no known mutant (see sync::MUTANTS): {chosen}"
        );
        chosen
    });
    chosen == name
}

/// Never, outside loom builds: a constant the compiler folds away.
#[cfg(not(shmring_loom))]
#[inline(always)]
pub(crate) const fn mutant(_name: &str) -> bool {
    false
}

#[cfg(not(target_has_atomic = "64"))]
compile_error!("shmring needs 64-bit atomics: positions in the shared header are AtomicU64");

/// `ordering`, or Relaxed with the named mutant.
#[inline(always)]
pub(crate) fn unless_mutant(name: &str, ordering: Ordering) -> Ordering {
    if mutant(name) {
        Ordering::Relaxed
    } else {
        ordering
    }
}

/// Ordering of the store that makes a record (or a freed range) visible.
#[inline(always)]
pub(crate) fn publish() -> Ordering {
    unless_mutant("relaxed_publish", Ordering::Release)
}

/// Ordering of the load that observes a published record (or freed range).
#[inline(always)]
pub(crate) fn observe() -> Ordering {
    unless_mutant("relaxed_observe", Ordering::Acquire)
}

/// The waker's StoreLoad barrier: between publishing and reading the peer's
/// sleeper count. Pairs with [`sleeper_fence`].
#[inline(always)]
pub(crate) fn waker_fence() {
    if !mutant("no_sleeper_fence_waker") {
        fence(Ordering::SeqCst);
    }
}

/// Adds one to a counter that only the caller's handle writes (a message
/// count in the header, read by tools): a load and a store, no
/// read-modify-write on the hot path.
#[inline(always)]
pub(crate) fn count_one(counter: &AtomicU64) {
    count(counter, 1);
}

/// Adds `n` to a counter of one writer, as [`count_one`] does 1.
#[inline(always)]
pub(crate) fn count(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The sleeper's StoreLoad barrier: between announcing itself and re-checking
/// the condition it waits for. Pairs with [`waker_fence`].
#[inline(always)]
pub(crate) fn sleeper_fence() {
    if !mutant("no_sleeper_fence_sleeper") {
        fence(Ordering::SeqCst);
    }
}

pub(crate) use futex::wait_any;
pub use futex::FutexWord;
#[cfg(all(feature = "async", not(shmring_loom)))]
pub(crate) use futex::{
    any_changed, wait_at_address, wait_on_addresses, wait_private, waitv_enabled, wake_at_address, wake_private, Woke,
};

// One `bump` for both futex words (the kernel's and loom's model), so that the
// `wake_without_bump` mutant the models catch is applied to the code a normal
// build runs, not to a loom-only copy of it.
impl FutexWord {
    /// Change the word so that a sleeper that read the old value does not go
    /// to sleep (or is woken by the following [`wake_all`]).
    ///
    /// [`wake_all`]: FutexWord::wake_all
    pub(crate) fn bump(&self) {
        if !mutant("wake_without_bump") {
            self.word().fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(not(shmring_loom))]
mod futex;

#[cfg(shmring_loom)]
#[path = "loom_futex.rs"]
mod futex;
