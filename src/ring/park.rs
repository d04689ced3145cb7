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
    /// The position of the record this side waits for, to say in
    /// [`WakeLine::waiting_for`] (an MPSC consumer's `head`); `None` (the
    /// default) where no waker reads it: producers waiting for room, an SPSC
    /// consumer (its producer wakes it for anything).
    fn waiting_for(&self) -> Option<u64> {
        None
    }
}

/// One park step: read the futex word, announce (one sleeper, one epoch; an
/// MPSC consumer also says what it waits for), fence, re-check, and only if
/// still not ready sleep on the word (at most `timeout`); then withdraw (the
/// count, not the epoch).
///
/// The word is read before announcing, so a waker that sees the announcement
/// bumps the word after this read (its read of `sleepers` happens-before the
/// bump, which this Acquire load would otherwise have synchronised with): the
/// wait then returns at once, and the caller re-checks.
///
/// An MPSC consumer says what it waits for in `waiting_for` (the record at
/// `head`, with its announcement's epoch) before the fence: if the waker's
/// fence comes after it, the waker reads this announcement's word (or a
/// later one); otherwise the re-check sees the waker's record (and any
/// padding before it). If the re-check moved on (past a discarded record or
/// padding at `head`), the announcement names a record already passed, and
/// a waker whose record is the new `head` may have skipped its wake: so the
/// side does not sleep then, and the caller parks again, anew.
pub(crate) fn park_once<P: Parkable>(side: &mut P, timeout: Duration) -> Result<Option<P::Ready>, P::Stop> {
    let waiting_for = side.waiting_for();
    let line = side.line();
    let seq = if crate::sync::mutant("announce_before_seq_read") {
        announce(line, waiting_for);
        sleeper_fence();
        line.seq.load(Ordering::Acquire)
    } else {
        let seq = line.seq.load(Ordering::Acquire);
        announce(line, waiting_for);
        sleeper_fence();
        seq
    };
    side.mark_parked(true);
    let attempt = side.recheck();
    let moved_on = side.waiting_for() != waiting_for && !crate::sync::mutant("sleep_after_head_moved");
    if let (Ok(None), false) = (&attempt, moved_on) {
        side.stats().futex_waits += 1;
        side.line().seq.wait(seq, Some(timeout));
    }
    side.mark_parked(false);
    side.line().sleepers.fetch_sub(1, Ordering::Relaxed);
    attempt
}

/// Announces one sleeper on `line` (one sleeper, one epoch) and, if it
/// waits for the record at `waiting_for`, says so with this announcement's
/// epoch (see [`WakeLine::waiting_for`]). One that does not say is woken for
/// anything.
fn announce(line: &WakeLine, waiting_for: Option<u64>) {
    let word = line.sleepers.fetch_add(SLEEPER_ANNOUNCE, Ordering::Relaxed).wrapping_add(SLEEPER_ANNOUNCE);
    if let Some(position) = waiting_for {
        let epoch = u64::from(word >> SLEEPER_COUNT_BITS) << WAITING_POSITION_BITS;
        line.waiting_for.store(epoch | (position.wrapping_add(1) & WAITING_POSITION_MASK), Ordering::Relaxed);
    }
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

    /// After an MPSC producer published the record at `position` (or a
    /// discarded one there): as [`wake_if_sleeping`](Self::wake_if_sleeping),
    /// but only a sleeper that waits for anything or for this record is
    /// woken (see [`WakeLine::waiting_for`]). A consumer parked behind
    /// another producer's unfinished claim is then not woken (and parked
    /// again) by every record committed after that claim.
    #[inline(always)]
    pub(crate) fn wake_for_record(&mut self, line: &WakeLine, stats: &mut Stats, position: u64, capacity: u64) {
        waker_fence();
        let Some(sleepers) = self.announced_since_last_wake(line) else { return };
        if crate::sync::mutant("remember_skipped_wake") {
            self.woken_for = Some(sleepers);
        }
        if !waits_for_record(line, sleepers, position, capacity) {
            // Not remembered as woken: the next record of this waker may be
            // the one this announcement waits for. And the memo is
            // forgotten: `sleepers` moved since, so it could only match again
            // after the epoch wrapped.
            if !crate::sync::mutant("remember_skipped_wake") {
                self.woken_for = None;
            }
            return;
        }
        self.woken_for = Some(sleepers);
        wake_all(line, stats);
    }

    /// The `sleepers` word if someone is announced on `line` and announced
    /// itself since this waker's last wake. After the waker's fence.
    #[inline(always)]
    fn announced_since_last_wake(&self, line: &WakeLine) -> Option<u32> {
        let sleepers = line.sleepers.load(Ordering::Relaxed);
        if sleepers & SLEEPER_COUNT_MASK == 0 {
            return None;
        }
        let unchanged = if crate::sync::mutant("wake_once_per_count") {
            self.woken_for.is_some_and(|w| w & SLEEPER_COUNT_MASK == sleepers & SLEEPER_COUNT_MASK)
        } else {
            self.woken_for == Some(sleepers)
        };
        (!unchanged).then_some(sleepers)
    }

    /// After releasing space: as [`wake_if_sleeping`](Self::wake_if_sleeping),
    /// but a producer that announced itself is woken only once `worth()`
    /// says the room is worth waking it for; until then the wake is owed.
    #[inline(always)]
    pub(crate) fn wake_for_room(&mut self, line: &WakeLine, stats: &mut Stats, worth: impl FnOnce() -> bool) {
        waker_fence();
        let Some(sleepers) = self.announced_since_last_wake(line) else { return };
        if !worth() {
            self.owed = !crate::sync::mutant("room_wake_not_owed");
            return;
        }
        self.owed = false;
        self.woken_for = Some(sleepers);
        wake_all(line, stats);
    }
}

/// Whether the sleepers announced on `line` (its `sleepers` word as read
/// after the waker's fence) wait for the record published at `position` in
/// a ring of `capacity` bytes: they wait for anything, or the announcement
/// up did not say (its epoch is not the one `waiting_for` carries), or it
/// waits for this record, or for the padding before it (a record at the
/// start of a lap may follow padding from where the consumer waits, less
/// than a lap before; a wake for another record there is only early).
/// Positions are compared modulo 2^40 (see [`WakeLine::waiting_for`]). A
/// hostile value only makes a wake early or skipped, and a skipped one is
/// made up by the sleeper's park slice.
#[inline(always)]
fn waits_for_record(line: &WakeLine, sleepers: u32, position: u64, capacity: u64) -> bool {
    let word = line.waiting_for.load(Ordering::Relaxed);
    if word == WAITING_FOR_ANY {
        return true;
    }
    let said = word >> WAITING_POSITION_BITS == u64::from(sleepers >> SLEEPER_COUNT_BITS);
    if !said && !crate::sync::mutant("ignore_waiting_epoch") {
        return true;
    }
    // How far this record lies past the one waited for.
    let past = position.wrapping_add(1).wrapping_sub(word) & WAITING_POSITION_MASK;
    past == 0 || (position & (capacity - 1) == 0 && past < capacity && !crate::sync::mutant("no_wake_across_padding"))
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
