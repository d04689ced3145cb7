//! Sleeping on a wake line and waking its sleepers: the futex half of the
//! wake-up protocol (see the module docs of `ring`).

use super::*;

/// What a [`Waitable`] side of a ring adds so that its `park` can be
/// [`park_once`]: the wake line it sleeps on, and the re-check.
pub(crate) trait Parkable: Waitable {
    /// The line this side sleeps on.
    fn line(&self) -> &WakeLine;
    /// The re-check after announcing (the slow path: may probe liveness).
    fn recheck(&mut self) -> Result<Option<Self::Ready>, Self::Stop>;
    /// Where the futex calls are counted.
    fn stats(&mut self) -> &mut Stats;
    /// Records, where others can see it, that this side is announced on its
    /// line (`true`, after announcing) or about to withdraw (`false`).
    fn mark_parked(&self, _parked: bool) {}
}

/// One park step: read the futex word, announce (one sleeper, one epoch),
/// fence, re-check, and only if still not ready sleep on the word (at most
/// `timeout`); then withdraw (the count, not the epoch).
///
/// The word is read before announcing, so a waker that sees the announcement
/// bumps the word after this read (its read of `sleepers` happens-before the
/// bump, which this Acquire load would otherwise have synchronised with): the
/// wait then returns at once, and the caller re-checks.
pub(crate) fn park_once<P: Parkable>(side: &mut P, timeout: Duration) -> Result<Option<P::Ready>, P::Stop> {
    let line = side.line();
    let seq = if crate::sync::mutant("announce_before_seq_read") {
        line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
        sleeper_fence();
        line.seq.load(Ordering::Acquire)
    } else {
        let seq = line.seq.load(Ordering::Acquire);
        line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed);
        sleeper_fence();
        seq
    };
    side.mark_parked(true);
    let attempt = side.recheck();
    if let Ok(None) = attempt {
        side.stats().futex_waits += 1;
        side.line().seq.wait(seq, Some(timeout));
    }
    side.mark_parked(false);
    side.line().sleepers.fetch_sub(1, Ordering::Relaxed);
    attempt
}

/// Withdraws one announcement on `line` for a sleeper that died announced
/// (if the count is not already zero).
pub(crate) fn withdraw_dead_sleeper(line: &WakeLine) {
    let _ = line
        .sleepers
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| (word & SLEEPER_COUNT_MASK > 0).then(|| word - 1));
}

/// The waking half of the protocol, for one line, held by the side that
/// publishes to it.
///
/// A woken sleeper takes tens of microseconds to be scheduled and withdraw;
/// meanwhile its count stays up, and a producer streaming millions of
/// messages a second would issue a `FUTEX_WAKE` for every one of them. So the
/// waker remembers the `sleepers` word it last woke for and skips the wake
/// while the word is unchanged. That is safe because every sleeper counted in
/// that word read `seq` before announcing, hence before the bump that went
/// with the wake: its wait returns at once, and to wait again it must
/// withdraw and announce anew, which moves the epoch and so earns a wake of
/// its own. (The epoch wraps after 2^24 announcements; an exact wrap between
/// two publishes could delay a wake by one park slice, never lose it.)
///
/// A consumer's wakes of producers waiting for room may also be deferred
/// ([`wake_for_room`](Self::wake_for_room)) and are then owed until paid.
#[derive(Debug, Default)]
pub(crate) struct Waker {
    woken_for: Option<u32>,
    /// A wake was deferred since the last one: the consumer pays it before
    /// it waits or reports an empty ring ([`pay_owed`](Self::pay_owed)).
    owed: bool,
}

impl Waker {
    /// After publishing: wake the other side if someone announced itself
    /// since the last wake.
    #[inline(always)]
    pub(crate) fn wake_if_sleeping(&mut self, line: &WakeLine, stats: &mut Stats) {
        self.wake_for_room(line, stats, || true);
    }

    /// A wake deferred by [`wake_for_room`](Self::wake_for_room), if any,
    /// now (for whoever is still announced).
    #[cold]
    pub(crate) fn pay_owed(&mut self, line: &WakeLine, stats: &mut Stats) {
        if std::mem::take(&mut self.owed) {
            self.wake_if_sleeping(line, stats);
        }
    }

    /// Whether a wake deferred by [`wake_for_room`](Self::wake_for_room) is
    /// still owed.
    #[inline(always)]
    pub(crate) fn owes(&self) -> bool {
        self.owed
    }

    /// After releasing space: as [`wake_if_sleeping`](Self::wake_if_sleeping),
    /// but a producer that announced itself is woken only once `worth()`
    /// says the room is worth waking it for; until then the wake is owed.
    #[inline(always)]
    pub(crate) fn wake_for_room(&mut self, line: &WakeLine, stats: &mut Stats, worth: impl FnOnce() -> bool) {
        waker_fence();
        let sleepers = line.sleepers.load(Ordering::Relaxed);
        if sleepers & SLEEPER_COUNT_MASK == 0 {
            return;
        }
        let unchanged = if crate::sync::mutant("wake_once_per_count") {
            self.woken_for.is_some_and(|w| w & SLEEPER_COUNT_MASK == sleepers & SLEEPER_COUNT_MASK)
        } else {
            self.woken_for == Some(sleepers)
        };
        if unchanged {
            return;
        }
        if !worth() {
            self.owed = !crate::sync::mutant("room_wake_not_owed");
            return;
        }
        self.owed = false;
        self.woken_for = Some(sleepers);
        wake_all(line, stats);
    }
}

/// Bumps `line`'s futex word and wakes every sleeper on it: out of line, so
/// that the publishing paths, which almost never get here, stay short.
#[cold]
#[inline(never)]
fn wake_all(line: &WakeLine, stats: &mut Stats) {
    line.seq.bump();
    line.seq.wake_all();
    stats.futex_wakes += 1;
}

/// Forgets the announcements on `line` of sleepers that no longer exist. Only
/// for a line on which nobody but the caller's role can sleep, called when the
/// role is taken: an earlier holder killed while parked never withdrew, and
/// its count would otherwise stay up for good (costing a wake per epoch, and
/// after 255 such deaths overflowing into the epoch). The epoch is kept, so
/// wakers' memories of it stay meaningful.
pub(crate) fn forget_dead_sleepers(line: &WakeLine) {
    line.sleepers.fetch_and(!SLEEPER_COUNT_MASK, Ordering::Relaxed);
}
