//! Waiting on many rings at once: one thread sleeps until a message arrives
//! on any of several consumers, or room appears in any of several producers.
//!
//! It is the park step of [`super::park`] done over every side together:
//! read each side's futex word, announce on each side's wake line, one
//! SeqCst fence, re-check every side, and only if none is ready sleep on all
//! the words at once (`futex_waitv`; see `sync::wait_any` for more than 128
//! words or an older kernel), then withdraw every announcement. A peer that
//! publishes fences, sees the announcement on its own line and wakes the
//! waiter exactly as it would wake a single-ring sleeper, so the other side
//! of each ring needs no change.

use super::consumer::Consumer;
use super::producer::Producer;
use super::{Pace, RingBacking, SLEEPER_ANNOUNCE, WAITING_FOR_ANY};
use crate::layout::WakeLine;
use crate::sync::{sleeper_fence, wait_any, AtomicU64, FutexWord, Ordering};
use crate::wait::{block_for, WaitStrategy, Waitable};
use std::time::Duration;

/// One side of a ring that [`select`] can wait on.
pub trait Watched {
    /// The line this side sleeps on; `None` when the side can no longer
    /// wait (a handle that will fail at once), which is then ready.
    fn wake_line(&self) -> Option<&WakeLine>;
    /// Whether the call it waits for would go on now: a message or room,
    /// or an error the call would return.
    fn ready(&mut self, pace: Pace) -> bool;
    /// A word for a spin loop over many sides to watch instead of calling
    /// [`ready`](Self::ready): while it reads zero, `ready` would say no as
    /// far as the ring itself goes (liveness is left to the full looks
    /// every [`FULL_LOOK_EVERY`] spins). `None`: no such word, always look
    /// in full. It must lie in memory that stays mapped while the side is
    /// borrowed, and is taken again after every full look.
    fn spin_word(&self) -> Option<&AtomicU64> {
        None
    }
    /// Records, where others can see it, that the side is announced on its
    /// line (see `Parkable::mark_parked`).
    fn mark_parked(&self, _parked: bool) {}
    /// The longest it may sleep before re-checking its peers' liveness.
    fn park_slice(&self) -> Duration;
}

impl<W: Watched + ?Sized> Watched for &mut W {
    fn wake_line(&self) -> Option<&WakeLine> {
        (**self).wake_line()
    }
    fn ready(&mut self, pace: Pace) -> bool {
        (**self).ready(pace)
    }
    fn spin_word(&self) -> Option<&AtomicU64> {
        (**self).spin_word()
    }
    fn mark_parked(&self, parked: bool) {
        (**self).mark_parked(parked)
    }
    fn park_slice(&self) -> Duration {
        (**self).park_slice()
    }
}

/// A consumer is ready when a message waits (or a receive would fail).
impl<B: RingBacking> Watched for Consumer<B> {
    fn wake_line(&self) -> Option<&WakeLine> {
        Some(&self.backing.header().consumer_wake)
    }
    fn ready(&mut self, pace: Pace) -> bool {
        !matches!(self.try_find(pace), Ok(None))
    }
    /// The word at `head`: zero until a message, padding or (MPSC) a
    /// claim is there.
    fn spin_word(&self) -> Option<&AtomicU64> {
        Some(self.backing.region().word(self.head))
    }
    fn park_slice(&self) -> Duration {
        self.park_slice
    }
}

/// A producer waiting for room for a `len`-byte message (the public
/// handles have their own, which checks for fork and poison first).
#[cfg(shmring_loom)]
#[derive(Debug)]
pub struct RoomFor<'a, B: RingBacking> {
    /// The producer.
    pub producer: &'a mut Producer<B>,
    /// The payload length it wants room for.
    pub len: usize,
}

/// Ready when a send of `len` bytes would not wait (or would fail).
#[cfg(shmring_loom)]
impl<B: RingBacking> Watched for RoomFor<'_, B> {
    fn wake_line(&self) -> Option<&WakeLine> {
        Some(self.producer.wake_line())
    }
    fn ready(&mut self, pace: Pace) -> bool {
        self.producer.ready_for(self.len, pace)
    }
    fn mark_parked(&self, parked: bool) {
        self.producer.mark_parked(parked);
    }
    fn park_slice(&self) -> Duration {
        self.producer.park_slice()
    }
}

impl<B: RingBacking> Producer<B> {
    /// The line this producer sleeps on while it waits for room.
    pub(crate) fn wake_line(&self) -> &WakeLine {
        &self.backing.header().producer_wake
    }

    /// Whether a send of `len` bytes would go on now: room, or an error.
    pub(crate) fn ready_for(&mut self, len: usize, pace: Pace) -> bool {
        !matches!(self.has_room(len, pace), Ok(false))
    }

    /// The longest it sleeps before re-checking the consumer's liveness.
    pub(crate) fn park_slice(&self) -> Duration {
        self.park_slice
    }
}

/// How often a spinning [`select`] looks at every side in full (its peers'
/// liveness included) rather than watching [`Watched::spin_word`]: one spin
/// in this many.
pub const FULL_LOOK_EVERY: u32 = 128;

/// What one [`select`] found, and what it cost.
#[derive(Debug, Default)]
pub struct Selection {
    /// Indices of the sides found ready, in order.
    pub ready: Vec<usize>,
    /// `futex_waitv` (or fallback `FUTEX_WAIT`) calls made so far.
    pub futex_waits: u64,
    /// Parks so far: picks which group of words a partial wait sleeps on.
    round: usize,
    /// Spins so far: every [`FULL_LOOK_EVERY`]th looks at each side in full.
    spins: u32,
    /// Per side, the address of its [`Watched::spin_word`] (0: none), taken
    /// from the sides at the start of each call and after each full look.
    /// Addresses, not references: the list is kept between calls, beyond
    /// the borrow of the sides, and read only within a call (see `look`).
    spin_words: Vec<usize>,
}

/// Waits with `strategy`, at most `timeout`, until at least one of `sides`
/// is ready, and lists in `selection.ready` every side found ready at that
/// moment (empty: the timeout passed). A side's readiness is a hint, as
/// with `crossbeam_channel::Select::ready`: the caller's non-blocking call
/// normally succeeds, and if another thread or producer took the message
/// or room first, it waits again.
pub fn select<W: Watched>(sides: &mut [W], strategy: WaitStrategy, timeout: Duration, selection: &mut Selection) {
    selection.ready.clear();
    selection.spin_words.clear();
    selection.spin_words.extend(sides.iter().map(spin_word_address));
    let mut waiting = AnyOf { sides, selection };
    // Never `Err`: a side's stop counts as ready.
    let _ = block_for(&mut waiting, strategy, timeout);
}

/// The address of `side`'s spin word, or 0.
fn spin_word_address<W: Watched>(side: &W) -> usize {
    side.spin_word().map_or(0, |word| std::ptr::from_ref(word) as usize)
}

/// Lists in `selection.ready` the sides ready now: one full look at each,
/// no waiting.
pub fn select_now<W: Watched>(sides: &mut [W], selection: &mut Selection) {
    AnyOf { sides, selection }.look(Pace::Call);
}

/// The sides of one [`select`], as one [`Waitable`].
struct AnyOf<'a, W> {
    sides: &'a mut [W],
    selection: &'a mut Selection,
}

impl<W: Watched> AnyOf<'_, W> {
    /// Lists the ready sides; whether there are any. A spin reads each
    /// side's spin word (one load for a consumer, from a compact list, so
    /// that a sweep over many idle rings stays short) and looks in full
    /// only at sides whose word is not zero, except every
    /// [`FULL_LOOK_EVERY`]th spin.
    fn look(&mut self, pace: Pace) -> bool {
        let selection = &mut *self.selection;
        selection.ready.clear();
        let quick = pace == Pace::Spin && selection.spins % FULL_LOOK_EVERY != 0;
        if pace == Pace::Spin {
            selection.spins = selection.spins.wrapping_add(1);
        }
        if selection.spin_words.len() != self.sides.len() {
            selection.spin_words.clear();
            selection.spin_words.resize(self.sides.len(), 0);
        }
        for (i, address) in selection.spin_words.iter_mut().enumerate() {
            if quick && *address != 0 {
                // SAFETY: `address` is of an `AtomicU64` that `side` lent
                // (`spin_word`) during this call: at its start or after its
                // last full look below. The side is borrowed for the whole
                // call, and a spin word lies in memory that stays mapped
                // while it is (the trait's contract); an `AtomicU64` may
                // alias bytes other processes write.
                let word = unsafe { &*(*address as *const AtomicU64) };
                if word.load(Ordering::Relaxed) == 0 {
                    continue;
                }
            }
            let side = &mut self.sides[i];
            if side.ready(pace) {
                selection.ready.push(i);
            }
            *address = spin_word_address(side);
        }
        !selection.ready.is_empty()
    }

    /// The park step over every side (see the module docs).
    fn park_all(&mut self, timeout: Duration) -> bool {
        let announce_all = !crate::sync::mutant("select_announces_on_first_only");
        // Each word as read before announcing (`None`: a stopped side).
        let mut seqs: Vec<Option<u32>> = Vec::with_capacity(self.sides.len());
        for (i, side) in self.sides.iter().enumerate() {
            seqs.push(side.wake_line().map(|line| {
                let seq = line.seq.load(Ordering::Acquire);
                if announce_all || i == 0 {
                    // Any message will do (the re-check looks at every ring):
                    // said outright, not only by an epoch that wraps.
                    line.waiting_for.store(WAITING_FOR_ANY, Ordering::Relaxed);
                    line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
                }
                seq
            }));
        }
        sleeper_fence();
        for side in self.sides.iter() {
            side.mark_parked(true);
        }
        let found = self.look(Pace::Park) || seqs.contains(&None);
        if !found {
            let words: Vec<(&FutexWord, u32)> = self
                .sides
                .iter()
                .zip(&seqs)
                .filter_map(|(side, seq)| Some((&side.wake_line()?.seq, (*seq)?)))
                .collect();
            self.selection.futex_waits += 1;
            wait_any(&words, timeout, self.selection.round);
            self.selection.round = self.selection.round.wrapping_add(1);
        }
        for (i, (side, seq)) in self.sides.iter().zip(&seqs).enumerate() {
            side.mark_parked(false);
            if let (Some(line), Some(_)) = (side.wake_line(), seq) {
                if announce_all || i == 0 {
                    line.sleepers.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        found
    }
}

impl<W: Watched> Waitable for AnyOf<'_, W> {
    type Ready = ();
    type Stop = std::convert::Infallible;

    fn poll(&mut self, pace: Pace) -> Result<Option<()>, Self::Stop> {
        Ok(self.look(pace).then_some(()))
    }

    fn park(&mut self, timeout: Duration) -> Result<Option<()>, Self::Stop> {
        Ok(self.park_all(timeout).then_some(()))
    }

    fn park_slice(&self) -> Duration {
        self.sides.iter().map(Watched::park_slice).min().unwrap_or(crate::wait::PARK_SLICE)
    }
}

#[cfg(any(feature = "async", shmring_loom))]
/// A side announced as asleep on its wake line while another thread (the
/// async reactor) sleeps on the line's futex word for it: the first half of
/// a park, made by [`announce`] and ended by [`withdraw`].
#[derive(Debug)]
pub struct Announcement {
    /// The futex word's address.
    pub word: usize,
    /// Its value read before announcing: sleep while it holds.
    pub seq: u32,
}

#[cfg(any(feature = "async", shmring_loom))]
/// Announces `side` on its line, as a park does before it sleeps, and
/// re-checks: `None` if the side is ready (or stopped), with nothing left
/// announced; otherwise the word to sleep on for it, and the side stays
/// announced until [`withdraw`]. A peer that publishes after the re-check
/// sees the announcement, bumps the word and wakes it (see the module docs).
pub fn announce<W: Watched>(side: &mut W) -> Option<Announcement> {
    let line = side.wake_line()?;
    let seq = line.seq.load(Ordering::Acquire);
    line.waiting_for.store(WAITING_FOR_ANY, Ordering::Relaxed);
    line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
    let word = std::ptr::from_ref(&line.seq) as usize;
    sleeper_fence();
    side.mark_parked(true);
    let announced = Announcement { word, seq };
    if side.ready(Pace::Park) {
        withdraw(side, announced);
        return None;
    }
    Some(announced)
}

#[cfg(any(feature = "async", shmring_loom))]
/// Ends an [`announce`]ment of `side`.
pub fn withdraw<W: Watched>(side: &W, announced: Announcement) {
    side.mark_parked(false);
    if crate::sync::mutant("cancel_keeps_announcement") {
        return;
    }
    if let Some(line) = side.wake_line() {
        debug_assert_eq!(std::ptr::from_ref(&line.seq) as usize, announced.word);
        line.sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Loom models only: the reactor's sleep for one announced side, on the
/// modelled `futex_waitv` (the real reactor passes addresses to the kernel).
#[cfg(shmring_loom)]
pub fn wait_for_reactor(word: &FutexWord, seq: u32) {
    wait_any(&[(word, seq)], Duration::MAX, 0);
}
