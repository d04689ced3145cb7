//! The consumer: polls the commit word at `head`, validates it, hands out the
//! payload, and frees the space. Shared by the SPSC and MPSC rings; MPSC
//! also zeroes consumed space and resolves records whose producer died (see
//! [`super::mpsc`]).

use super::durable;
use super::mpsc_resolve::{ProducersWatch, Step};
use super::record::{decode, message_len, payload_offset, Record};
use super::region::LentView;
use super::{forget_dead_sleepers, mark_attached, mark_detached, park_once, Parkable, Waker};
use super::{Pace, PeerWatch, RingBacking, Stats};
use crate::error::{Corrupted, RecvStop};
use crate::layout::{Kind, Slot, WakeLine, MAX_POSITION};
use crate::sync::{observe, publish, Ordering};
use crate::wait::{block, block_for, WaitStrategy, Waitable};
use std::mem::MaybeUninit;
use std::time::Duration;

/// The consumer side of a ring.
#[derive(Debug)]
pub struct Consumer<B: RingBacking> {
    pub(super) backing: B,
    /// Position of the next record. Authoritative: only this handle frees
    /// space, and it never re-reads `head` from shared memory after attach.
    pub(super) head: u64,
    /// `head` as last published to the producers: behind `head` only in the
    /// middle of a batch (see [`super::batch`]), which publishes once.
    pub(super) released: u64,
    /// Messages a batch consumed and not yet added to the header's count:
    /// added with every publication of `head`, so that the count never lags
    /// a `head` that a successor would continue from (a single receive
    /// counts its message before it publishes).
    pub(super) unreported: u64,
    pub(super) capacity: u64,
    max_message: u32,
    /// SPSC: the producer.
    watch: PeerWatch,
    /// MPSC: the producers. Its presence also means consumed space is zeroed
    /// before it is freed (producers claim ranges whose first word must read
    /// zero until they mark or commit them).
    pub(super) mpsc: Option<ProducersWatch>,
    /// Wakes producers when they sleep.
    waker: Waker,
    /// See [`set_defer_room_wakes`](Self::set_defer_room_wakes).
    defer_room_wakes: bool,
    pub(super) stats: Stats,
    /// The longest a park lasts before the producers' liveness is re-checked.
    pub(super) park_slice: Duration,
    /// Whether [`read`](Self::read) lends the payload in place (see
    /// [`set_borrow_in_place`](Self::set_borrow_in_place)).
    pub(super) in_place: bool,
    /// Whether a read guard's view of the ring is counted as lent (see
    /// [`lend_view`](Self::lend_view)).
    view_lent: LentView,
    /// Where `read` copies a payload to when it may not lend it in place.
    pub(super) staging: Vec<u8>,
    /// A file ring: consumed space is released to producers only once this
    /// position is on the disk (see [`super::durable`]).
    persistent: bool,
}

/// A committed message found at `head`: `len` payload bytes at
/// `position + 8`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub(super) position: u64,
    pub(super) len: u32,
}

impl<B: RingBacking> Consumer<B> {
    /// Attaches to the ring as its consumer (the caller holds the consumer
    /// role) and continues from the shared `head`: nothing committed and not
    /// yet released is lost (a message a killed consumer was reading is
    /// delivered again). MPSC: a release the previous consumer was killed in
    /// the middle of is finished first.
    pub fn attach(backing: B, pid: u32, kind: Kind) -> Result<Self, Corrupted> {
        let header = backing.header();
        let capacity = backing.region().len() as u64;
        let max_message = backing.max_message();
        let corrupted = |what: String| Corrupted::new(backing.name(), what);
        let mut head = header.consumer.head.load(Ordering::Acquire);
        if head % 8 != 0 || head > MAX_POSITION {
            return Err(corrupted(format!(
                "head {head} is not 8-byte aligned or beyond the largest position {MAX_POSITION}"
            )));
        }
        if kind == Kind::Mpsc && !crate::sync::mutant("ignore_freeing_to") {
            let freeing_to = header.consumer.freeing_to.load(Ordering::Relaxed);
            if freeing_to > head {
                let tail = header.producer.tail.load(Ordering::Acquire);
                if freeing_to % 8 != 0 || freeing_to > tail || freeing_to - head > capacity {
                    return Err(corrupted(format!(
                        "an interrupted release reaches {freeing_to}, outside head {head} .. claim position {tail}"
                    )));
                }
                backing.region().zero_positions(head, freeing_to);
                head = freeing_to;
                header.consumer.head.store(head, publish());
            }
        }
        let persistent = backing.persistent();
        if persistent {
            // SPSC: the durable head may lag any distance (nothing is
            // written back while nothing is flushed); MPSC zeroes from it,
            // so it is at most a lap behind.
            let durable = header.persistence.durable_head.load(Ordering::Acquire);
            let lags_too_far = kind == Kind::Mpsc && head - durable.min(head) > capacity;
            if durable % 8 != 0 || durable > head || lags_too_far {
                return Err(corrupted(format!(
                    "durable head {durable} is misaligned or outside head {head} minus a lap"
                )));
            }
        }
        let word = backing.region().word(head).load(observe());
        if word != 0 {
            decode(word, head, capacity, max_message).map_err(|what| Corrupted::new(backing.name(), what))?;
        }
        // The consumer role is exclusive: only a dead predecessor can be
        // announced on the consumer's line.
        forget_dead_sleepers(&header.consumer_wake);
        mark_attached(header, Slot::Consumer, pid);
        let mpsc = (kind == Kind::Mpsc).then(|| ProducersWatch::new(backing.max_producers()));
        Ok(Consumer {
            head,
            released: head,
            unreported: 0,
            capacity,
            max_message,
            mpsc,
            watch: PeerWatch::new(Slot::Producer(0)),
            waker: Waker::default(),
            defer_room_wakes: false,
            stats: Stats::default(),
            park_slice: crate::wait::PARK_SLICE,
            in_place: false,
            view_lent: LentView::default(),
            staging: Vec::new(),
            persistent,
            backing,
        })
    }

    /// The backing this consumer reads from.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// Whether producers waiting for room are woken only once half the
    /// ring is free (or before this consumer waits), not at every release
    /// (see `RingOptions::defer_room_wakes`).
    pub fn set_defer_room_wakes(&mut self, defer: bool) {
        self.defer_room_wakes = defer;
    }

    /// How often a waiting consumer checks that its producers are alive (and,
    /// MPSC, whether the producer of an unfinished record has died): it parks
    /// at most `interval` at a time and probes at most every fifth of it.
    pub fn set_liveness_interval(&mut self, interval: Duration) {
        self.park_slice = interval;
        let probe = crate::wait::probe_interval(interval);
        self.watch.limiter.interval = probe;
        if let Some(producers) = self.mpsc.as_mut() {
            producers.set_probe_interval(probe);
        }
    }

    /// Whether [`read`](Self::read) may lend a payload in place (default:
    /// no, it copies it to a buffer of this handle first).
    ///
    /// The trust rule: a view in place is a `&[u8]` of shared memory, which
    /// promises that nobody changes those bytes while it lives. The protocol
    /// keeps every process that follows it off them, but a process that can
    /// write the segment and does not follow it could change them, and code
    /// that checked a byte and then used it could be miscompiled. So lend in
    /// place only if every process that can write the segment is trusted as
    /// much as this one (the public handles decide this from the segment's
    /// owner, mode and origin).
    pub fn set_borrow_in_place(&mut self, in_place: bool) {
        self.in_place = in_place;
    }

    /// Whether [`read`](Self::read) lends payloads in place.
    pub fn borrows_in_place(&self) -> bool {
        self.in_place
    }

    /// This handle's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes consumed since the ring was created (the next position to read).
    pub fn position(&self) -> u64 {
        self.head
    }

    pub(super) fn corrupted(&self, what: String) -> RecvStop {
        RecvStop::Corrupted(Corrupted::new(self.backing.name(), what))
    }

    /// The message at `head`, skipping padding (and, MPSC, discarded and torn
    /// records); `None` when there is none yet.
    ///
    /// The common case, a message at `head`, is inlined into the caller;
    /// everything else is [`find_past`](Self::find_past), out of line, so
    /// that the receive path saves and restores few registers.
    #[inline(always)]
    pub(super) fn try_find(&mut self, pace: Pace) -> Result<Option<Found>, RecvStop> {
        let word = self.backing.region().word(self.head).load(observe());
        match message_len(word, self.head, self.capacity, self.max_message) {
            Some(len) => Ok(Some(Found { position: self.head, len })),
            None => self.find_past(word, pace),
        }
    }

    /// [`try_find`](Self::try_find) when `word`, the word read at `head`,
    /// is not a message's: nothing yet, padding, or (MPSC) a discarded,
    /// claimed or torn record; or damage.
    #[inline(never)]
    fn find_past(&mut self, first_word: u64, pace: Pace) -> Result<Option<Found>, RecvStop> {
        let mut word = first_word;
        loop {
            let step = if word == 0 {
                self.nothing_at_head(pace)?
            } else {
                match decode(word, self.head, self.capacity, self.max_message) {
                    Ok(Record::Message { len }) => return Ok(Some(Found { position: self.head, len })),
                    Ok(Record::Padding { .. }) if self.head & (self.capacity - 1) == 0 => {
                        return Err(
                            self.corrupted(format!("padding record at position {} fills the whole region", self.head))
                        );
                    }
                    Ok(skipped @ Record::Padding { .. }) => {
                        self.free_to(self.head + skipped.size());
                        Step::Again
                    }
                    Ok(skipped @ Record::Discarded { .. }) if self.mpsc.is_some() => {
                        self.free_to(self.head + skipped.size());
                        Step::Again
                    }
                    Ok(Record::Claimed { owner, len }) if self.mpsc.is_some() => {
                        self.mpsc_claimed_at_head(owner, len, word, pace)?
                    }
                    Ok(other) => {
                        return Err(self.corrupted(format!(
                            "an SPSC ring holds an MPSC record ({other:?}) at position {}",
                            self.head
                        )));
                    }
                    Err(what) => return Err(self.corrupted(what)),
                }
            };
            match step {
                Step::Again => word = self.backing.region().word(self.head).load(observe()),
                Step::Wait => {
                    // Never wait holding space back (a batch cut short), nor
                    // owing producers a wake.
                    if self.released != self.head {
                        self.publish_head();
                    }
                    if self.waker.owes() {
                        self.waker.pay_owed(&self.backing.header().producer_wake, &mut self.stats);
                    }
                    // Idle: a producer may be waiting for the durable head.
                    if self.persistent
                        && durable::release_due(&self.backing, self.head, self.capacity, self.mpsc.is_some())
                    {
                        self.release_durably();
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The word at `head` is zero.
    fn nothing_at_head(&mut self, pace: Pace) -> Result<Step, RecvStop> {
        if self.mpsc.is_some() {
            return self.mpsc_nothing_at_head(pace);
        }
        if !self.watch.peer_gone(&self.backing, pace) {
            return Ok(Step::Wait);
        }
        // The producer's last commit happens-before its detach, which we
        // just observed: one more look tells drained from not yet seen.
        if self.backing.region().word(self.head).load(observe()) == 0 {
            return Err(RecvStop::Disconnected);
        }
        Ok(Step::Again)
    }

    /// Frees everything from `head` to `end` and wakes a producer waiting
    /// for room. MPSC zeroes it first, saying so in `freeing_to` so that a
    /// consumer killed in the middle is finished by the next. A file ring
    /// instead releases space in larger steps once `head` is on the disk
    /// (see [`super::durable`]).
    #[inline]
    pub(super) fn free_to(&mut self, end: u64) {
        self.head = end;
        self.publish_head();
    }

    /// Frees everything from `released` to `head` (see
    /// [`free_to`](Self::free_to)).
    #[inline]
    pub(super) fn publish_head(&mut self) {
        let end = self.head;
        if self.persistent {
            return self.free_to_in_file(end);
        }
        self.report_consumed();
        let header = self.backing.header();
        if self.mpsc.is_some() {
            self.zero_consumed(end);
        }
        self.released = end;
        header.consumer.head.store(end, publish());
        let (capacity, defer) = (self.capacity, self.defer_room_wakes);
        self.waker.wake_for_room(&header.producer_wake, &mut self.stats, || {
            !defer || room_worth_a_wake(header, end, capacity)
        });
    }

    /// MPSC: zeroes what was consumed from `released` to `end`, saying so
    /// first in `freeing_to` (see [`free_to`](Self::free_to)). Out of line:
    /// a loop of `memset` calls would crowd the receive path's registers.
    #[inline(never)]
    fn zero_consumed(&self, end: u64) {
        self.backing.header().consumer.freeing_to.store(end, Ordering::Relaxed);
        let from = if crate::sync::mutant("zero_last_word_only") { end - 8 } else { self.released };
        self.backing.region().zero_positions(from, end);
    }

    /// [`free_to`](Self::free_to) in a file ring: nothing is zeroed now;
    /// space is released once `head` is on the disk (see
    /// [`super::durable`]). Out of line, so that memory rings' hot path
    /// stays short.
    #[cold]
    #[inline(never)]
    fn free_to_in_file(&mut self, end: u64) {
        self.head = end;
        self.released = end;
        self.report_consumed();
        self.backing.header().consumer.head.store(end, publish());
        if durable::release_due(&self.backing, end, self.capacity, self.mpsc.is_some()) {
            // Wakes the producers itself.
            self.release_durably();
            return;
        }
        self.waker.wake_if_sleeping(&self.backing.header().producer_wake, &mut self.stats);
    }

    /// File rings: makes `head` durable and releases the space before it to
    /// the producers (see [`durable::release`]); `false` if the write-back
    /// failed.
    pub fn release_durably(&mut self) -> bool {
        if !self.persistent {
            return true;
        }
        let released = durable::release(&self.backing, self.head, self.mpsc.is_some());
        self.waker.wake_if_sleeping(&self.backing.header().producer_wake, &mut self.stats);
        released
    }

    /// Counts the view of the ring a read guard lends, so that a fork
    /// meanwhile copies the region for the child (see `Region::lend`). A
    /// guard leaked with `mem::forget` left its count: the next guard reuses
    /// it, and the next copying receive ends it (holding the consumer
    /// mutably, it proves the leaked guard and its views are gone).
    pub(super) fn lend_view(&mut self) {
        self.view_lent.lend(self.backing.region());
    }

    /// Ends the count of [`lend_view`](Self::lend_view).
    pub(super) fn return_view(&mut self) {
        self.view_lent.give_back(self.backing.region());
    }

    #[inline]
    pub(super) fn release(&mut self, found: Found) {
        self.stats.messages += 1;
        crate::sync::count_one(&self.backing.header().consumer.messages);
        self.stats.bytes += u64::from(found.len);
        self.free_to(found.position + Record::Message { len: found.len }.size());
    }

    /// Adds the messages a batch consumed since the last publication to the
    /// header's count (read by tools), before `head` is published past them.
    #[inline]
    fn report_consumed(&mut self) {
        if self.unreported != 0 {
            crate::sync::count(&self.backing.header().consumer.messages, self.unreported);
            self.unreported = 0;
        }
    }

    #[inline]
    fn copy_out(&mut self, found: Found, buf: &mut Vec<u8>) -> usize {
        if self.view_lent.is_lent() {
            self.return_view();
        }
        let len = found.len as usize;
        buf.clear();
        let offset = payload_offset(found.position, self.capacity);
        let copied = self.backing.region().append_to(offset, len, buf);
        debug_assert!(copied, "a decoded record always lies inside the region");
        self.release(found);
        len
    }

    /// Copies the message `found` into the start of `buf` (which need not be
    /// initialised) and consumes it; if it is longer than `buf`, leaves it
    /// (the next call finds it again) and returns its length as the error.
    #[inline]
    fn copy_into(&mut self, found: Found, buf: &mut [MaybeUninit<u8>]) -> Result<usize, usize> {
        if self.view_lent.is_lent() {
            self.return_view();
        }
        let len = found.len as usize;
        let Some(dst) = buf.get_mut(..len) else { return Err(len) };
        let offset = payload_offset(found.position, self.capacity);
        let copied = self.backing.region().read_uninit(offset, dst);
        debug_assert!(copied, "a decoded record always lies inside the region");
        self.release(found);
        Ok(len)
    }

    /// The next message if there is one now.
    #[inline]
    pub(super) fn next_now(&mut self) -> Result<Option<Found>, RecvStop> {
        self.try_find(Pace::Call)
    }

    /// Waits for the next message with `strategy`.
    #[inline]
    pub(super) fn next(&mut self, strategy: WaitStrategy) -> Result<Found, RecvStop> {
        block(&mut Message { consumer: self }, strategy)
    }

    /// Waits for the next message with `strategy` for at most `timeout`.
    #[inline]
    pub(super) fn next_for(&mut self, strategy: WaitStrategy, timeout: Duration) -> Result<Option<Found>, RecvStop> {
        block_for(&mut Message { consumer: self }, strategy, timeout)
    }

    /// Copies the next message into the start of `buf` (which need not be
    /// initialised) if one is waiting (`None`: empty); returns its length
    /// (`Err(len)`: it is `len` bytes, longer than `buf`, and was left in
    /// the ring).
    #[inline(always)]
    pub fn try_recv_into(&mut self, buf: &mut [MaybeUninit<u8>]) -> Result<Option<Result<usize, usize>>, RecvStop> {
        let found = self.next_now()?;
        Ok(found.map(|found| self.copy_into(found, buf)))
    }

    /// [`try_recv_into`](Self::try_recv_into), waiting with `strategy`.
    #[inline(always)]
    pub fn recv_into(
        &mut self,
        buf: &mut [MaybeUninit<u8>],
        strategy: WaitStrategy,
    ) -> Result<Result<usize, usize>, RecvStop> {
        let found = self.next(strategy)?;
        Ok(self.copy_into(found, buf))
    }

    /// [`try_recv_into`](Self::try_recv_into), waiting with `strategy` for
    /// at most `timeout` (`None`: still empty).
    pub fn recv_into_for(
        &mut self,
        buf: &mut [MaybeUninit<u8>],
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<Result<usize, usize>>, RecvStop> {
        let found = self.next_for(strategy, timeout)?;
        Ok(found.map(|found| self.copy_into(found, buf)))
    }

    /// [`try_recv_into`](Self::try_recv_into) into initialised bytes.
    #[inline]
    pub fn try_recv_into_init(&mut self, buf: &mut [u8]) -> Result<Option<Result<usize, usize>>, RecvStop> {
        self.try_recv_into(as_uninit(buf))
    }

    /// [`recv_into`](Self::recv_into) into initialised bytes.
    #[inline]
    pub fn recv_into_init(&mut self, buf: &mut [u8], strategy: WaitStrategy) -> Result<Result<usize, usize>, RecvStop> {
        self.recv_into(as_uninit(buf), strategy)
    }

    /// [`recv_into_for`](Self::recv_into_for) into initialised bytes.
    pub fn recv_into_init_for(
        &mut self,
        buf: &mut [u8],
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<Result<usize, usize>>, RecvStop> {
        self.recv_into_for(as_uninit(buf), strategy, timeout)
    }

    /// Copies the next message into `buf` (replacing its contents) if one is
    /// waiting (`None`: empty); returns its length.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, RecvStop> {
        let found = self.next_now()?;
        Ok(found.map(|found| self.copy_out(found, buf)))
    }

    /// Copies the next message into `buf`, waiting with `strategy`.
    #[inline]
    pub fn recv(&mut self, buf: &mut Vec<u8>, strategy: WaitStrategy) -> Result<usize, RecvStop> {
        let found = self.next(strategy)?;
        Ok(self.copy_out(found, buf))
    }

    /// Copies the next message into `buf`, waiting with `strategy` for at
    /// most `timeout` (`None`: still empty).
    pub fn recv_for(
        &mut self,
        buf: &mut Vec<u8>,
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<usize>, RecvStop> {
        let found = self.next_for(strategy, timeout)?;
        Ok(found.map(|found| self.copy_out(found, buf)))
    }
}

impl<B: RingBacking> Drop for Consumer<B> {
    fn drop(&mut self) {
        self.return_view();
        // A batch cut short by a panic: what it handed out is consumed.
        if self.released != self.head {
            self.publish_head();
        }
        let header = self.backing.header();
        mark_detached(header, Slot::Consumer, &header.producer_wake, &mut self.stats);
    }
}

/// A consumer waiting for a message.
struct Message<'a, B: RingBacking> {
    consumer: &'a mut Consumer<B>,
}

impl<B: RingBacking> Waitable for Message<'_, B> {
    type Ready = Found;
    type Stop = RecvStop;

    #[inline(always)]
    fn poll(&mut self, pace: Pace) -> Result<Option<Found>, RecvStop> {
        self.consumer.try_find(pace)
    }

    fn park(&mut self, timeout: Duration) -> Result<Option<Found>, RecvStop> {
        park_once(self, timeout)
    }

    fn park_slice(&self) -> Duration {
        self.consumer.park_slice
    }
}

impl<B: RingBacking> Parkable for Message<'_, B> {
    fn line(&self) -> &WakeLine {
        &self.consumer.backing.header().consumer_wake
    }

    fn recheck(&mut self) -> Result<Option<Found>, RecvStop> {
        self.consumer.try_find(Pace::Park)
    }

    fn stats(&mut self) -> &mut Stats {
        &mut self.consumer.stats
    }

    /// MPSC: the record at `head`. The consumer reads in order, so no other
    /// producer's record lets it go on: it need not be woken for them (see
    /// `Waker::wake_for_record`). SPSC: not said (one producer, whose next
    /// record is the one at `head`, and which wakes it for anything).
    fn waiting_for(&self) -> Option<u64> {
        self.consumer.mpsc.as_ref().map(|_| self.consumer.head)
    }
}

/// Whether the space free once `head` is released is worth waking a
/// producer that waits for room: at least half the ring, by the producers'
/// claim position (`tail`, a hint: a stale one only wakes early; a garbage
/// one defers the wake until the consumer waits, see `Waker::pay_owed`).
/// Waking for less would, with the ring full, wake the producers once per
/// message: each sends one, finds the ring full again and parks anew.
fn room_worth_a_wake(header: &crate::layout::RingHeader, head: u64, capacity: u64) -> bool {
    let claimed = header.producer.tail.load(Ordering::Relaxed);
    claimed.saturating_sub(head) <= capacity / 2
}

/// `buf` seen as possibly uninitialised bytes, for the receives that copy a
/// message into it. Private: they write only bytes copied from the ring, so
/// `buf` stays initialised.
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the only writes
    // through the result are `copy_into`'s copies of initialised bytes.
    unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) }
}
