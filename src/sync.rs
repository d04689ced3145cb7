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
pub const MUTANTS: [&str; 29] = [
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
mod futex {
    use super::{AtomicU32, Ordering};
    use rustix::thread::futex;
    use std::time::Duration;

    /// A 32-bit word in shared memory that processes sleep on.
    ///
    /// Never `FUTEX_PRIVATE`: the word is shared between processes, and a
    /// private futex is keyed by (mm, address), which another process never
    /// matches.
    #[repr(transparent)]
    #[derive(Debug, Default)]
    pub struct FutexWord(AtomicU32);

    impl FutexWord {
        /// The word's current value.
        pub fn load(&self, order: Ordering) -> u32 {
            self.0.load(order)
        }

        /// The word itself, for the shared [`FutexWord::bump`].
        pub(super) fn word(&self) -> &AtomicU32 {
            &self.0
        }

        /// `futex(FUTEX_WAIT)`: sleep while the word equals `expected`, at most
        /// `timeout`. However it ends (woken, timed out, interrupted, or the
        /// word had already changed), the caller re-checks its condition.
        pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
            let timespec = timeout.map(|t| rustix::thread::futex::Timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            // Errors are outcomes here: AGAIN (the word changed before we
            // slept), INTR (a signal), TIMEDOUT. All mean "re-check".
            let _ = futex::wait(&self.0, futex::Flags::empty(), expected, timespec.as_ref());
        }

        /// `futex(FUTEX_WAKE)` for every sleeper on the word.
        pub(crate) fn wake_all(&self) {
            // An error here (EFAULT, EINVAL) cannot happen for a valid
            // `&AtomicU32`; a failed wake would be caught by the sleeper's
            // bounded park slice anyway.
            let _ = futex::wake(&self.0, futex::Flags::empty(), i32::MAX as u32);
        }
    }

    /// The most words one `futex_waitv` call takes (the kernel's
    /// `FUTEX_WAITV_MAX`).
    const WAITV_MAX: usize = 128;

    /// How long [`wait_any`] sleeps when it cannot sleep on every word at
    /// once: the words it leaves out are looked at again after at most this.
    const PARTIAL_SLICE: Duration = Duration::from_millis(1);

    /// Whether `futex_waitv` is to be used: unknown, yes, no.
    static WAITV: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(WAITV_UNKNOWN);
    const WAITV_UNKNOWN: u8 = 0;
    const WAITV_YES: u8 = 1;
    const WAITV_NO: u8 = 2;

    /// Whether this process may call `futex_waitv`: not if the environment
    /// says `SHMRING_FUTEX_WAITV=off` (for a seccomp filter that kills on
    /// unknown system calls rather than failing them), not once a call has
    /// been refused (`ENOSYS` before Linux 5.16, `EPERM` from a seccomp
    /// filter, ...).
    pub(crate) fn waitv_enabled() -> bool {
        match WAITV.load(Ordering::Relaxed) {
            WAITV_YES => true,
            WAITV_NO => false,
            _ => {
                let off = std::env::var_os("SHMRING_FUTEX_WAITV").is_some_and(|v| v == "off");
                WAITV.store(if off { WAITV_NO } else { WAITV_YES }, Ordering::Relaxed);
                !off
            }
        }
    }

    /// Sleeps until any of `words` no longer holds the value paired with it,
    /// or is woken, at most `timeout`. Like [`FutexWord::wait`], however it
    /// ends the caller re-checks.
    ///
    /// One `futex_waitv` sleeps on up to [`WAITV_MAX`] words. For more, or
    /// where `futex_waitv` is unavailable (then one `FUTEX_WAIT` on one
    /// word), it sleeps on one group of them for at most [`PARTIAL_SLICE`]
    /// (unless that one word is all there is); `round` picks the group, so
    /// that callers that count it up take turns.
    pub(crate) fn wait_any(words: &[(&FutexWord, u32)], timeout: Duration, round: usize) {
        if words.is_empty() {
            return std::thread::sleep(timeout);
        }
        if waitv_enabled() {
            let groups = words.len().div_ceil(WAITV_MAX);
            let (group, timeout) = if groups == 1 {
                (words, timeout)
            } else {
                let start = round % groups * WAITV_MAX;
                (&words[start..words.len().min(start + WAITV_MAX)], timeout.min(PARTIAL_SLICE))
            };
            let mut waits = [futex::Wait::new(); WAITV_MAX];
            for (wait, (word, expected)) in waits.iter_mut().zip(group) {
                wait.val = u64::from(*expected);
                wait.uaddr = futex::WaitPtr::new(word.0.as_ptr().cast());
                wait.flags = futex::WaitFlags::SIZE_U32;
            }
            match waitv(&waits[..group.len()], timeout) {
                // Woken, a word had changed, timed out, or interrupted.
                Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => return,
                // ENOSYS (before Linux 5.16), EPERM or another refusal (a
                // seccomp filter): never again in this process. Taking it
                // for a wake-up would make every wait spin.
                Err(_) => WAITV.store(WAITV_NO, Ordering::Relaxed),
            }
        }
        let (word, expected) = words[round % words.len()];
        // One word is all there is to sleep on: no turns needed.
        let timeout = if words.len() == 1 { timeout } else { timeout.min(PARTIAL_SLICE) };
        word.wait(expected, Some(timeout));
    }

    #[cfg(feature = "async")]
    /// How [`wait_on_addresses`] ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Woke {
        /// Woken on the shared word of this index.
        Shared(usize),
        /// Woken on the private word, or it had changed.
        Private,
        /// Some word no longer held its value (the call does not say which),
        /// or a word's address was not mapped.
        Changed,
        /// Timed out or interrupted.
        Nothing,
        /// No `futex_waitv` here (see [`wait_any`]).
        Unsupported,
    }

    #[cfg(feature = "async")]
    /// Sleeps until one of `shared` (the address of a [`FutexWord`] in a
    /// mapping, and the value to wait while it holds; at most 127) or the
    /// process-private `private` word changes or is woken, at most
    /// `timeout`. For a thread that sleeps for others (the async reactor):
    /// addresses, not references, because the mappings are not its own; the
    /// kernel reads them, this process never does, and an address no longer
    /// mapped fails the call (`Changed`) rather than anything worse.
    pub(crate) fn wait_on_addresses(shared: &[(usize, u32)], private: (&AtomicU32, u32), timeout: Duration) -> Woke {
        if !waitv_enabled() {
            return Woke::Unsupported;
        }
        let mut waits = [futex::Wait::new(); WAITV_MAX];
        let count = shared.len().min(WAITV_MAX - 1);
        for (wait, &(address, expected)) in waits.iter_mut().zip(&shared[..count]) {
            wait.val = u64::from(expected);
            wait.uaddr = futex::WaitPtr::new(address as *mut std::ffi::c_void);
            wait.flags = futex::WaitFlags::SIZE_U32;
        }
        let own = &mut waits[count];
        own.val = u64::from(private.1);
        own.uaddr = futex::WaitPtr::new(private.0.as_ptr().cast());
        own.flags = futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE;
        match waitv(&waits[..=count], timeout) {
            Ok(i) if i < count => Woke::Shared(i),
            Ok(_) => Woke::Private,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Woke::Changed,
            Err(rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => Woke::Nothing,
            // ENOSYS, EPERM or another refusal (see `wait_any`).
            Err(_) => {
                WAITV.store(WAITV_NO, Ordering::Relaxed);
                Woke::Unsupported
            }
        }
    }

    /// Whether any of `shared` (as for [`wait_on_addresses`], at most 128)
    /// no longer holds its value: a `futex_waitv` whose deadline has passed,
    /// so the kernel compares the words and returns at once. An address no
    /// longer mapped counts as changed; `None` if `futex_waitv` fails
    /// otherwise.
    #[cfg(feature = "async")]
    pub(crate) fn any_changed(shared: &[(usize, u32)]) -> Option<bool> {
        let mut waits = [futex::Wait::new(); WAITV_MAX];
        let count = shared.len().min(WAITV_MAX);
        for (wait, &(address, expected)) in waits.iter_mut().zip(&shared[..count]) {
            wait.val = u64::from(expected);
            wait.uaddr = futex::WaitPtr::new(address as *mut std::ffi::c_void);
            wait.flags = futex::WaitFlags::SIZE_U32;
        }
        match waitv(&waits[..count], Duration::ZERO) {
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Some(true),
            Err(rustix::io::Errno::TIMEDOUT) | Ok(_) => Some(false),
            Err(_) => None,
        }
    }

    #[cfg(feature = "async")]
    /// `FUTEX_WAIT` on a process-private word, at most `timeout` (however
    /// it ends, the caller re-checks).
    pub(crate) fn wait_private(word: &AtomicU32, expected: u32, timeout: Duration) {
        let timespec = futex::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = futex::wait(word, futex::Flags::PRIVATE, expected, Some(&timespec));
    }

    /// `FUTEX_WAIT` on the shared futex word at `address` while it holds
    /// `expected`, at most `timeout`: whether it no longer held it (the
    /// call failed with `EAGAIN`, or `EFAULT` for an address no longer
    /// mapped). With a zero `timeout`, a look at the word through the
    /// kernel. For the async reactor without `futex_waitv`: as for
    /// [`wait_on_addresses`], the words are not this thread's to read.
    #[cfg(feature = "async")]
    pub(crate) fn wait_at_address(address: usize, expected: u32, timeout: Duration) -> bool {
        let timespec = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: FUTEX_WAIT makes the kernel read the 4 bytes at `address`
        // (failing with EFAULT if they are not mapped) and read `timespec`,
        // which lives for the call; nothing of this process is written.
        let rc = unsafe {
            libc::syscall(libc::SYS_futex, address as *const u32, libc::FUTEX_WAIT, expected, &timespec as *const _)
        };
        rc == -1
            && matches!(
                rustix::io::Errno::from_raw_os_error(errno()),
                rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT
            )
    }

    /// `FUTEX_WAKE` of every sleeper on the shared futex word at `address`
    /// (see [`wait_at_address`]).
    #[cfg(feature = "async")]
    pub(crate) fn wake_at_address(address: usize) {
        // SAFETY: FUTEX_WAKE only looks the address up in the kernel's
        // futex table (EFAULT if it is not mapped); nothing is read or
        // written in this process.
        unsafe {
            libc::syscall(libc::SYS_futex, address as *const u32, libc::FUTEX_WAKE, i32::MAX);
        }
    }

    /// The calling thread's `errno`.
    #[cfg(feature = "async")]
    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[cfg(feature = "async")]
    /// `FUTEX_WAKE` of every sleeper on a process-private word.
    pub(crate) fn wake_private(word: &AtomicU32) {
        let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
    }

    /// `futex_waitv` with a relative `timeout` (the call takes a deadline on
    /// the monotonic clock). Not `FUTEX2_PRIVATE`: the words are shared
    /// between processes (see [`FutexWord`]).
    fn waitv(waits: &[futex::Wait], timeout: Duration) -> rustix::io::Result<usize> {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(timeout.subsec_nanos());
        let secs = i64::try_from(timeout.as_secs())
            .ok()
            .and_then(|s| now.tv_sec.checked_add(s))
            .and_then(|s| s.checked_add((nanos / 1_000_000_000) as i64))
            .unwrap_or(i64::MAX);
        let deadline = futex::Timespec { tv_sec: secs, tv_nsec: (nanos % 1_000_000_000) as i64 };
        futex::waitv(waits, futex::WaitvFlags::empty(), Some(&deadline), futex::ClockId::Monotonic)
    }
}

#[cfg(shmring_loom)]
mod futex {
    use super::{AtomicU32, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// A loom model of a futex word that keeps the kernel's contract: `wait`
    /// compares the word under the bucket lock and sleeps only if it still
    /// equals `expected`; `wake_all` takes the bucket lock and wakes every
    /// sleeper, those of [`wait_any`] too. Timeouts are not modelled (a wait
    /// blocks until woken), so a lost wake-up is reported by loom as a
    /// deadlock.
    #[derive(Debug)]
    pub struct FutexWord {
        word: AtomicU32,
        /// The bucket lock, guarding the [`wait_any`] sleepers queued here.
        bucket: Mutex<Vec<Arc<Doorbell>>>,
        sleepers: Condvar,
    }

    /// A sleeper of [`wait_any`], queued on each of its words as the kernel
    /// queues a `futex_waitv` sleeper on each word's bucket.
    #[derive(Debug)]
    pub(crate) struct Doorbell {
        rung: Mutex<bool>,
        ringing: Condvar,
    }

    impl Default for FutexWord {
        fn default() -> Self {
            FutexWord { word: AtomicU32::new(0), bucket: Mutex::new(Vec::new()), sleepers: Condvar::new() }
        }
    }

    impl FutexWord {
        /// The word's current value.
        pub fn load(&self, order: Ordering) -> u32 {
            self.word.load(order)
        }

        /// The word itself, for the shared [`FutexWord::bump`].
        pub(super) fn word(&self) -> &AtomicU32 {
            &self.word
        }

        pub(crate) fn wait(&self, expected: u32, _timeout: Option<Duration>) {
            let bucket = self.bucket.lock().unwrap();
            if self.word.load(Ordering::SeqCst) != expected {
                return;
            }
            drop(self.sleepers.wait(bucket).unwrap());
        }

        pub(crate) fn wake_all(&self) {
            let bucket = self.bucket.lock().unwrap();
            self.sleepers.notify_all();
            for bell in bucket.iter() {
                *bell.rung.lock().unwrap() = true;
                bell.ringing.notify_all();
            }
        }
    }

    /// `futex_waitv`: each word is compared under its bucket lock and the
    /// sleeper queued there in the same critical section; a changed word
    /// returns at once; a wake of any queued word rings the doorbell.
    pub(crate) fn wait_any(words: &[(&FutexWord, u32)], _timeout: Duration, _round: usize) {
        let bell = Arc::new(Doorbell { rung: Mutex::new(false), ringing: Condvar::new() });
        let mut queued = 0;
        for (word, expected) in words {
            let mut bucket = word.bucket.lock().unwrap();
            if word.word.load(Ordering::SeqCst) != *expected {
                break;
            }
            bucket.push(Arc::clone(&bell));
            queued += 1;
        }
        if queued == words.len() {
            let mut rung = bell.rung.lock().unwrap();
            while !*rung {
                rung = bell.ringing.wait(rung).unwrap();
            }
        }
        for (word, _) in &words[..queued] {
            word.bucket.lock().unwrap().retain(|queued| !Arc::ptr_eq(queued, &bell));
        }
    }
}
