//! The reactor: one thread per process that sleeps on the futex words of
//! every async handle waiting for its ring, and wakes their tasks.
//!
//! A task that finds its ring empty (or full) announces itself on the
//! ring's wake line exactly as a parked handle does (`ring::announce`), then
//! registers the futex word, the value it read before announcing, and its
//! `Waker`. The reactor sleeps on all registered words at once (one
//! `futex_waitv`, with its own process-private doorbell word so that a new
//! registration interrupts it), and when a word is woken it wakes that
//! registration's task and forgets the registration. The peer's side is the
//! ordinary wake-up protocol: it sees the announcement and bumps and wakes
//! the word. So no wake-up is lost for the same reason a parked handle's
//! is not, and the task withdraws its announcement when it next runs (or
//! when its future or handle is dropped).

use crate::sync::{
    any_changed, wait_at_address, wait_on_addresses, wait_private, waitv_enabled, wake_at_address, wake_private, Woke,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

/// How long the reactor sleeps with nothing registered (a registration
/// rings the doorbell anyway).
const IDLE_SLICE: Duration = Duration::from_secs(1);

/// When the reactor cannot sleep on every registered word at once (more
/// than one `futex_waitv` takes, or no `futex_waitv`), it sleeps on one
/// group (or word) at a time, at most this long, then asks the kernel which
/// of the others changed meanwhile.
const TURN: Duration = Duration::from_millis(1);

/// Without `futex_waitv`, the longest the reactor sleeps on a single
/// registered word: a registration made while it sleeps there may not
/// interrupt it (see `run`), so this bounds that delay.
const FALLBACK_SINGLE: Duration = Duration::from_millis(10);

/// The most shared words one reactor sleep takes (one `futex_waitv` slot
/// is its doorbell's).
const SHARED_MAX: usize = 127;

/// One task waiting for one ring.
#[derive(Debug)]
struct Registration {
    id: u64,
    word: usize,
    seq: u32,
    waker: Waker,
    /// When its task re-checks anyway (its handle's park slice: the
    /// liveness of its peers).
    due: Instant,
}

/// The process's reactor, once started, by fork generation (see
/// `crate::segment::fork`): a forked child has a copy of its parent's reactor but not
/// its thread, so it starts its own. (Slots, not a lock: a lock that another
/// thread held at the fork would stay held in the child.)
static REACTORS: [OnceLock<Option<&'static Reactor>>; 64] = [const { OnceLock::new() }; 64];

/// The reactors of processes forked more than 63 times deep.
static DEEPER: Mutex<Vec<(u64, Option<&'static Reactor>)>> = Mutex::new(Vec::new());

/// The process's reactor.
#[derive(Debug)]
pub(crate) struct Reactor {
    registrations: Mutex<Vec<Registration>>,
    /// Bumped by every registration, so that a reactor about to sleep on
    /// the old set does not (its `futex_waitv` finds the word changed), and
    /// woken if it already sleeps (see [`asleep`](Self::asleep)).
    doorbell: AtomicU32,
    /// Without `futex_waitv`: the word the reactor sleeps on (0: none), which
    /// a registration wakes too.
    sleeping_on: AtomicUsize,
    /// Whether the reactor is in (or about to enter) its sleep: a
    /// registration wakes the doorbell only then. Set before the sleep and
    /// read after the doorbell's bump, both SeqCst: either the registration
    /// sees it set and wakes, or the reactor's sleep, which compares the
    /// doorbell after setting it, sees the bump and returns at once.
    asleep: AtomicBool,
    next_id: AtomicU64,
    /// System calls made by the reactor (to sleep) and by registrations
    /// (to wake it).
    syscalls: AtomicU64,
}

/// A registration, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl Reactor {
    /// This process's reactor, its thread started on first use; `None` if
    /// the thread could not be started (no memory, or the thread limit):
    /// async waits then poll.
    pub(crate) fn get() -> Option<&'static Reactor> {
        let generation = crate::segment::fork::generation();
        match REACTORS.get(generation as usize) {
            Some(slot) => *slot.get_or_init(Reactor::start),
            None => {
                let mut deeper = DEEPER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((_, reactor)) = deeper.iter().find(|(g, _)| *g == generation) {
                    return *reactor;
                }
                let reactor = Reactor::start();
                deeper.push((generation, reactor));
                reactor
            }
        }
    }

    /// A new reactor and its thread.
    fn start() -> Option<&'static Reactor> {
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor {
            registrations: Mutex::new(Vec::new()),
            doorbell: AtomicU32::new(0),
            sleeping_on: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            syscalls: AtomicU64::new(0),
        }));
        std::thread::Builder::new().name("shmring-reactor".into()).spawn(move || reactor.run()).ok()?;
        Some(reactor)
    }

    /// The system calls of this process's reactor and its registrations so
    /// far (0 if it was never started).
    pub(crate) fn syscalls_so_far() -> u64 {
        let started =
            REACTORS.get(crate::segment::fork::generation() as usize).and_then(|slot| slot.get().copied().flatten());
        started.map_or(0, |r| r.syscalls.load(Ordering::Relaxed))
    }

    /// Wakes `waker` once the futex word at `word` no longer holds `seq` or
    /// is woken, or after `slice` (the task's re-check of its peers).
    pub(crate) fn register(&self, word: usize, seq: u32, waker: Waker, slice: Duration) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let due = Instant::now().checked_add(slice).unwrap_or_else(|| Instant::now() + IDLE_SLICE);
        self.lock().push(Registration { id, word, seq, waker, due });
        self.doorbell.fetch_add(1, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            self.syscalls.fetch_add(1, Ordering::Relaxed);
            wake_private(&self.doorbell);
            let sleeping_on = self.sleeping_on.load(Ordering::SeqCst);
            if sleeping_on != 0 {
                self.syscalls.fetch_add(1, Ordering::Relaxed);
                wake_at_address(sleeping_on);
            }
        }
        Ticket(id)
    }

    /// Forgets a registration (if the reactor has not already woken it).
    pub(crate) fn cancel(&self, ticket: Ticket) {
        let mut registrations = self.lock();
        if let Some(i) = registrations.iter().position(|r| r.id == ticket.0) {
            registrations.swap_remove(i);
        }
    }

    /// The registrations, also after a task panicked while holding the
    /// lock (a plain `Vec` is never left half-changed by these methods).
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Registration>> {
        self.registrations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The reactor thread: sleeps on the registered words until one is
    /// woken, a registration comes, or the earliest registration is due;
    /// then wakes the tasks whose words changed (and those due).
    fn run(&self) {
        let mut shared: Vec<(usize, u32)> = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut changed: Vec<usize> = Vec::new();
        let mut round = 0usize;
        loop {
            let doorbell = self.doorbell.load(Ordering::SeqCst);
            shared.clear();
            ids.clear();
            let mut first_due = None::<Instant>;
            for r in self.lock().iter() {
                shared.push((r.word, r.seq));
                ids.push(r.id);
                first_due = Some(first_due.map_or(r.due, |d| d.min(r.due)));
            }
            let now = Instant::now();
            if first_due.is_some_and(|due| due <= now) {
                // Due: those tasks re-check (their peers' liveness).
                self.wake_due(now);
                continue;
            }
            let until_due = first_due.map_or(IDLE_SLICE, |due| due - now);
            round = round.wrapping_add(1);
            changed.clear();
            self.asleep.store(true, Ordering::SeqCst);
            // A registration since the snapshot: look again rather than
            // sleep (it saw `asleep` unset, or will wake us).
            if self.doorbell.load(Ordering::SeqCst) == doorbell {
                if waitv_enabled() {
                    self.sleep_waitv(&shared, doorbell, until_due, round, &mut changed);
                } else {
                    self.sleep_fallback(&shared, doorbell, until_due, round, &mut changed);
                }
            }
            self.asleep.store(false, Ordering::Relaxed);
            if !changed.is_empty() {
                self.wake(|id| ids.iter().zip(0..).any(|(&r, i)| r == id && changed.contains(&i)));
            }
        }
    }

    /// One sleep with `futex_waitv` on one group of at most 127 words (the
    /// groups take turns of at most [`TURN`] when there are several), then
    /// the indices of the words that changed in `changed`.
    fn sleep_waitv(
        &self,
        shared: &[(usize, u32)],
        doorbell: u32,
        until_due: Duration,
        round: usize,
        changed: &mut Vec<usize>,
    ) {
        let groups = shared.len().div_ceil(SHARED_MAX).max(1);
        let first = round % groups * SHARED_MAX;
        let group = &shared[first.min(shared.len())..shared.len().min(first + SHARED_MAX)];
        let slice = if groups > 1 { until_due.min(TURN) } else { until_due };
        self.syscalls.fetch_add(1, Ordering::Relaxed);
        match wait_on_addresses(group, (&self.doorbell, doorbell), slice) {
            Woke::Shared(i) => changed.push(first + i),
            Woke::Private | Woke::Nothing | Woke::Unsupported => {}
            // The doorbell moved (a registration): only "look again".
            Woke::Changed if self.doorbell.load(Ordering::Acquire) != doorbell => {}
            Woke::Changed => self.count(changed_among(group, first, changed)),
        }
        // The groups not slept on: which changed meanwhile.
        for (g, other) in shared.chunks(SHARED_MAX).enumerate() {
            if groups > 1 && g * SHARED_MAX != first {
                self.count(1);
                match any_changed(other) {
                    Some(false) => {}
                    Some(true) => self.count(changed_among(other, g * SHARED_MAX, changed)),
                    None => changed.extend(g * SHARED_MAX..g * SHARED_MAX + other.len()),
                }
            }
        }
    }

    /// One sleep without `futex_waitv`: on the doorbell if nothing is
    /// registered; otherwise on one registered word at a time (turns of
    /// [`TURN`], or [`FALLBACK_SINGLE`] for a single one), woken by a
    /// registration through that word; then one look at every word through
    /// the kernel for the ones that changed.
    fn sleep_fallback(
        &self,
        shared: &[(usize, u32)],
        doorbell: u32,
        until_due: Duration,
        round: usize,
        changed: &mut Vec<usize>,
    ) {
        self.count(1);
        let Some(&(word, seq)) = shared.get(round % shared.len().max(1)) else {
            wait_private(&self.doorbell, doorbell, until_due);
            return;
        };
        let slice = until_due.min(if shared.len() == 1 { FALLBACK_SINGLE } else { TURN });
        self.sleeping_on.store(word, Ordering::SeqCst);
        if self.doorbell.load(Ordering::SeqCst) == doorbell {
            wait_at_address(word, seq, slice);
        }
        self.sleeping_on.store(0, Ordering::Relaxed);
        for (i, &(word, seq)) in shared.iter().enumerate() {
            self.count(1);
            if wait_at_address(word, seq, Duration::ZERO) {
                changed.push(i);
            }
        }
    }

    /// Counts system calls.
    fn count(&self, calls: u64) {
        self.syscalls.fetch_add(calls, Ordering::Relaxed);
    }

    /// Wakes and forgets the registrations due by `now`.
    fn wake_due(&self, now: Instant) {
        let mut woken = Vec::new();
        self.lock().retain(|r| {
            if r.due <= now {
                woken.push(r.waker.clone());
                return false;
            }
            true
        });
        wake_all(woken);
    }

    /// Wakes and forgets the registrations whose id `chosen` picks.
    fn wake(&self, chosen: impl Fn(u64) -> bool) {
        let mut woken = Vec::new();
        self.lock().retain(|r| {
            if chosen(r.id) {
                woken.push(r.waker.clone());
                return false;
            }
            true
        });
        wake_all(woken);
    }
}

/// Wakes `wakers`, outside the registrations' lock (a waker may run code
/// that registers again). A waker that panics is the task's own affair: it
/// must not end the reactor thread, on which every async wait of the
/// process depends.
fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
    }
}

/// Adds to `changed` the indices (offset by `first`) of the words of
/// `shared` that no longer hold their values, given that some does:
/// `futex_waitv` says only "some", so the set is halved with one call per
/// half (a few calls for one changed word among many). If the kernel will
/// not say, every word of the half counts as changed (its task re-checks).
/// Returns the system calls made.
fn changed_among(shared: &[(usize, u32)], first: usize, changed: &mut Vec<usize>) -> u64 {
    if shared.len() == 1 {
        changed.push(first);
        return 0;
    }
    let half = shared.len() / 2;
    let mut calls = 0;
    for (part, at) in [(&shared[..half], first), (&shared[half..], first + half)] {
        calls += 1;
        match any_changed(part) {
            Some(false) => {}
            Some(true) => calls += changed_among(part, at, changed),
            None => changed.extend(at..at + part.len()),
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The halving finds exactly the words that changed, one or several,
    /// among sets of every size up to one `futex_waitv`.
    #[test]
    fn changed_among_finds_exactly_the_changed_words() {
        let words: Vec<AtomicU32> = (0..127).map(AtomicU32::new).collect();
        let shared: Vec<(usize, u32)> =
            words.iter().map(|w| (w.as_ptr() as usize, w.load(Ordering::Relaxed))).collect();
        for len in [2, 3, 17, 64, 127] {
            for moved in [vec![0], vec![len - 1], vec![len / 2, len / 3], (0..len).step_by(5).collect::<Vec<_>>()] {
                for &i in &moved {
                    words[i].fetch_add(1000, Ordering::Relaxed);
                }
                let mut changed = Vec::new();
                changed_among(&shared[..len], 0, &mut changed);
                changed.sort_unstable();
                let mut expected = moved.clone();
                expected.sort_unstable();
                expected.dedup();
                assert_eq!(changed, expected, "{len} words");
                for &i in &moved {
                    words[i].store(i as u32, Ordering::Relaxed);
                }
            }
        }
    }
}
