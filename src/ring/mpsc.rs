//! The MPSC claim protocol: many producers claim space with a CAS on the
//! shared claim position, and a producer that dies before committing never
//! wedges the consumer or the other producers.
//!
//! # Claiming
//!
//! A producer holding slot `k`:
//!
//! 1. reads the claim position `t` (`tail`) and checks for room against the
//!    consumer's `head` (cached; re-read only when the ring looks full);
//! 2. publishes its *intent* in its own claim line: `end` (the claim's end,
//!    after any padding to the end of the region), then `start = t`
//!    (Release);
//! 3. CASes `tail` from `t` to `end` (Release, so whoever sees the new tail
//!    sees the intent); on failure it goes back to 1;
//! 4. writes a *claim marker* (tag `0x80 | k`) in the commit word of its
//!    record, then, if the claim wraps, the padding record (Release: whoever
//!    sees the padding sees the marker);
//! 5. writes the payload and commits (Release), as in SPSC.
//!
//! The consumer delivers records strictly in claim order: it polls the
//! commit word at `head`, and a slow producer delays only what was claimed
//! after it. Consumed space is zeroed before `head` moves past it, so free
//! space always reads zero and a word at `head` is zero, a marker, or a
//! commit of this lap, never a stale header of an earlier lap. (So MPSC
//! needs no terminator.)
//!
//! # A producer that dies
//!
//! When the record at `head` stays uncommitted, the consumer finds its owner
//! (at most every probe interval, or each time it wakes from a park):
//!
//! * a claim marker names the owner slot;
//! * a zero word with `tail > head` is a claim between steps 3 and 4; its
//!   owner is among the slots whose intent starts at `head` (the winner wrote
//!   its intent before its CAS and keeps it until its next attempt, which
//!   comes after its commit).
//!
//! Liveness is the kernel's lock on the slot's byte of the segment: exact,
//! immediate, and independent of PID namespaces. If any possible owner is
//! alive, the consumer waits: an alive but slow producer is never skipped.
//! Only when every possible owner is dead is the claim skipped (zeroed,
//! `head` advanced, counted in `torn_records`). Several dead producers can
//! hold intents at `head` only if a loser of the CAS died too; the true end
//! is the smallest of their ends where the next claim verifiably starts (the
//! claim position, a non-zero word, or another intent), since the winner
//! died before writing anything inside its claim.
//!
//! A slot whose holder died is given to a new producer only once its intent
//! is resolved (consumed past, or provably never claimed), so the evidence
//! the consumer needs is never overwritten.

use super::producer::{Claim, Producer};
use super::record::{decode, encode, record_size, Record, HEADER_LEN, TAG_CLAIM, TAG_PADDING};
use super::{mark_attached, withdraw_dead_sleeper, Consumer, Limiter, Pace, PeerStatus, PeerWatch, RingBacking};
use crate::error::{Corrupted, Stop};
use crate::layout::{ClaimLine, Slot, MAX_POSITION, MAX_PRODUCERS, NO_CLAIM, SLOT_ATTACHED, SLOT_DETACHED, SLOT_EMPTY};
use crate::sync::{observe, publish, Ordering};
use crossbeam_utils::Backoff;
use std::time::Duration;

/// Ordering of the store of a claim marker (see `mpsc_claim`).
fn mark() -> Ordering {
    crate::sync::unless_mutant("relaxed_marker", Ordering::Release)
}

/// Ordering of the CAS that claims space: Release, so the intent written
/// before it is visible to whoever observes the new claim position.
fn claim() -> Ordering {
    crate::sync::unless_mutant("relaxed_claim", Ordering::Release)
}

/// Where a loom model can make a producer "die" (stop for good, without
/// detaching) in the middle of a claim.
#[cfg(shmring_loom)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DieAt {
    /// After publishing the intent, before the CAS.
    Intent = 0,
    /// After the CAS, before the claim marker.
    Claimed = 1,
    /// After the claim marker (and padding), before the commit.
    Marked = 2,
}

impl<B: RingBacking> Producer<B> {
    /// Attaches to an MPSC ring as the producer in `slot`. The caller holds
    /// the slot's lock and has checked with [`slot_reusable`] that a dead
    /// predecessor's claim is resolved.
    pub fn attach_mpsc(backing: B, pid: u32, slot: usize) -> Result<Self, Corrupted> {
        let header = backing.header();
        if slot >= backing.max_producers() as usize {
            return Err(Corrupted::new(backing.name(), format!("producer slot {slot} does not exist")));
        }
        // A file ring's producers reuse space behind the durable head, not
        // the consumer's head (see `durable`).
        let head = super::durable::limit_word(&backing).load(observe());
        let consumed_to = header.consumer.head.load(observe());
        if head % 8 != 0 || head > MAX_POSITION || head > consumed_to {
            return Err(Corrupted::new(
                backing.name(),
                format!(
                    "head {head} is not 8-byte aligned, beyond the largest position {MAX_POSITION} or past the \
                     consumer's head {consumed_to}"
                ),
            ));
        }
        let line = &header.claims[slot];
        line.start.store(NO_CLAIM, Ordering::Release);
        // A predecessor that died parked never withdrew its announcement.
        if line.parked.swap(0, Ordering::Relaxed) != 0 {
            withdraw_dead_sleeper(&header.producer_wake);
        }
        mark_attached(header, Slot::Producer(slot), pid);
        Ok(Producer::new(backing, head, head, Some(slot)))
    }

    /// Makes a loom model's producer stop for good at `stage` of its next
    /// claim, as if killed (the claim then returns `Stop::Timeout`).
    #[cfg(shmring_loom)]
    pub fn die_at(&mut self, stage: DieAt) {
        self.die_at = Some(stage);
    }

    #[inline(always)]
    fn dies_at(&self, _stage: u8) -> bool {
        #[cfg(shmring_loom)]
        return self.die_at.map(|s| s as u8) == Some(_stage);
        #[cfg(not(shmring_loom))]
        false
    }

    /// Claims room for a `len`-byte record in slot `slot`'s name, or `None`
    /// when full.
    #[inline]
    pub(super) fn mpsc_claim(&mut self, slot: usize, len: u32, pace: Pace) -> Result<Option<Claim>, Stop> {
        let capacity = self.capacity;
        let size = record_size(u64::from(len));
        // A file ring keeps the word at the claim position free (see
        // `durable`).
        let reserve = if self.persistent { 8 } else { 0 };
        let backoff = Backoff::new();
        loop {
            let header = self.backing.header();
            let tail = header.producer.tail.load(Ordering::Relaxed);
            // A tail far from our head is caught below (the claim position
            // must stay within a lap of head); its sum is checked.
            if tail % 8 != 0 {
                return Err(self.corrupted(format!("claim position {tail} is not 8-byte aligned")));
            }
            let offset = tail & (capacity - 1);
            let padding = if offset + size > capacity { capacity - offset } else { 0 };
            let Some(end) = tail.checked_add(padding + size) else {
                return Err(self.corrupted(format!("claim position {tail} is at the end of the position space")));
            };
            if tail < self.cached_head || end + reserve - self.cached_head > capacity {
                // Looks full, or the tail is older than our head: read the
                // consumer's head.
                let head = self.limit();
                if head % 8 != 0 || head < self.cached_head || (self.persistent && head > self.consumed_to()) {
                    return Err(self.corrupted(format!(
                        "consumer head {head} went back from {} or is misaligned",
                        self.cached_head
                    )));
                }
                self.cached_head = head;
                if head > tail {
                    // Others claimed and the consumer consumed since we read
                    // the tail; a fresh tail cannot be behind the head.
                    let fresh = header.producer.tail.load(Ordering::Relaxed);
                    if fresh < head {
                        return Err(self.corrupted(format!("claim position {fresh} is behind head {head}")));
                    }
                    continue;
                }
                if tail - head > capacity {
                    return Err(self.corrupted(format!(
                        "claim position {tail} is more than the capacity {capacity} ahead of head {head}"
                    )));
                }
                if end + reserve - head > capacity {
                    // Full: withdraw the intent (a parked producer must not
                    // look like the owner of a claim it lost). Release, like
                    // every change of `start`: whoever reads the withdrawal
                    // also sees the commit of this producer's last claim,
                    // whose intent it replaces (see `unmarked_claim_end`).
                    // (The waker's SeqCst fence after that commit already
                    // gives this store release semantics, which is why no
                    // loom mutant of it can fail; the ordering is kept
                    // explicit so it does not rest on the wake protocol.)
                    header.claims[slot].start.store(NO_CLAIM, Ordering::Release);
                    if self.watch.peer_gone(&self.backing, pace) {
                        return Err(Stop::Disconnected);
                    }
                    if self.persistent {
                        self.want_release(head);
                    }
                    return Ok(None);
                }
            }
            let line = &header.claims[slot];
            let intent_first = !crate::sync::mutant("intent_after_claim");
            if intent_first {
                line.end.store(end, Ordering::Relaxed);
                line.start.store(tail, Ordering::Release);
            }
            if self.dies_at(DIE_INTENT) {
                return Err(Stop::Timeout);
            }
            if header.producer.tail.compare_exchange_weak(tail, end, claim(), Ordering::Relaxed).is_err() {
                backoff.spin();
                continue;
            }
            if !intent_first {
                line.end.store(end, Ordering::Relaxed);
                line.start.store(tail, Ordering::Release);
            }
            if self.dies_at(DIE_CLAIMED) {
                return Err(Stop::Timeout);
            }
            let position = tail + padding;
            let region = self.backing.region();
            if !crate::sync::mutant("no_claim_marker") {
                // Release: whoever sees the marker sees the CAS before it
                // (so the claim position covers the record) and, before
                // that, this producer's hold on its slot's lock.
                region.word(position).store(encode(TAG_CLAIM | slot as u8, len, position, capacity), mark());
            }
            if padding > 0 {
                region.word(tail).store(encode(TAG_PADDING, (padding - HEADER_LEN) as u32, tail, capacity), publish());
            }
            if self.dies_at(DIE_MARKED) {
                return Err(Stop::Timeout);
            }
            self.tail = end;
            return Ok(Some(Claim { position, len }));
        }
    }

    /// Commits the record at `position` with `word` (Release) and counts it
    /// in the slot's line.
    #[inline]
    pub(super) fn mpsc_publish(&mut self, slot: usize, position: u64, word: u64) {
        self.backing.region().word(position).store(word, publish());
        // Only this slot's holder writes its counter: a load and a store.
        let line = &self.backing.header().claims[slot];
        line.messages.store(line.messages.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

const DIE_INTENT: u8 = 0;
const DIE_CLAIMED: u8 = 1;
const DIE_MARKED: u8 = 2;

/// Whether producer slot `slot`, whose lock the caller holds, can be taken:
/// never used, cleanly detached, or its dead holder's last claim is resolved
/// (withdrawn, consumed past, or provably never made).
pub fn slot_reusable<B: RingBacking>(backing: &B, slot: usize) -> bool {
    let header = backing.header();
    let (Some(participant), Some(line)) = (header.participant(Slot::Producer(slot)), header.claim(slot)) else {
        return false;
    };
    match participant.state.load(Ordering::Acquire) {
        SLOT_EMPTY | SLOT_DETACHED => true,
        SLOT_ATTACHED => crate::sync::mutant("reuse_unresolved_slot") || claim_resolved(backing, slot, line),
        _ => false,
    }
}

/// Whether the intent on `line` (slot `slot`'s) no longer needs its slot
/// kept: withdrawn; a claim never made (the claim position never reached
/// its start); consumed past its end; or `head` past its start without
/// stopping on this slot's marker. The consumer frees whole records, so a
/// `head` strictly inside a won claim can only be the record after the
/// claim's padding, which carries this slot's marker (or its commit, which
/// needs no owner to be consumed); anywhere else past the start, the
/// intent lost its CAS.
fn claim_resolved<B: RingBacking>(backing: &B, slot: usize, line: &ClaimLine) -> bool {
    let header = backing.header();
    let start = line.start.load(Ordering::Acquire);
    let end = line.end.load(Ordering::Relaxed);
    if start == NO_CLAIM || header.producer.tail.load(Ordering::Acquire) <= start {
        return true;
    }
    let head = header.consumer.head.load(Ordering::Acquire);
    if end <= head {
        return true;
    }
    if head <= start {
        return false;
    }
    let capacity = backing.region().len() as u64;
    let word = backing.region().word(head).load(observe());
    let own_marker = word != 0
        && matches!(decode(word, head, capacity, backing.max_message()), Ok(Record::Claimed { owner, .. }) if usize::from(owner) == slot);
    !own_marker
}

/// The consumer's view of the producers of an MPSC ring.
#[derive(Debug)]
pub(super) struct ProducersWatch {
    producers: Vec<PeerWatch>,
    /// Paces the slow checks (liveness probes) while the consumer is stuck.
    pub(super) limiter: Limiter,
}

impl ProducersWatch {
    pub(super) fn new(max_producers: u32) -> Self {
        let producers =
            (0..max_producers.min(MAX_PRODUCERS as u32) as usize).map(|n| PeerWatch::new(Slot::Producer(n)));
        ProducersWatch { producers: producers.collect(), limiter: Limiter::default() }
    }

    pub(super) fn set_probe_interval(&mut self, interval: Duration) {
        self.limiter.interval = interval;
    }

    /// Every producer that ever attached has detached or died, and at least
    /// one did. Reads every slot's state; asks the kernel whether an attached
    /// one is alive only when `due` says a probe is due.
    fn all_gone<B: RingBacking>(&mut self, backing: &B, due: &mut Due) -> bool {
        let changes = &backing.header().producer.changes;
        let before = changes.load(Ordering::Acquire);
        let mut any = false;
        for watch in &mut self.producers {
            match watch.status(backing, || due.now(&mut self.limiter)) {
                PeerStatus::Present => return false,
                PeerStatus::Gone => any = true,
                PeerStatus::Never => {}
            }
        }
        // The slots are read one by one: a producer that attached during
        // the scan (before another detached, in a rolling restart) may have
        // been read before it marked its slot. Both counted their change
        // first (Release): if `before` shows the detach's count, the attach
        // that came before it shows in the scan; if not, the detach seen in
        // the scan shows its count now.
        any && (crate::sync::mutant("no_attach_count") || changes.load(Ordering::Acquire) == before)
    }
}

/// Whether a probe is due in this look at the ring, decided at most once
/// (asking the limiter starts its next interval).
struct Due {
    pace: Pace,
    answer: Option<bool>,
}

impl Due {
    fn new(pace: Pace) -> Self {
        Due { pace, answer: None }
    }

    fn now(&mut self, limiter: &mut Limiter) -> bool {
        *self.answer.get_or_insert_with(|| limiter.due(self.pace))
    }
}

/// What the consumer does next about its position.
pub(super) enum Step {
    /// Nothing to deliver yet.
    Wait,
    /// The position changed or may have: look again.
    Again,
}

impl<B: RingBacking> Consumer<B> {
    /// The word at `head` is zero: empty, a claim without its marker yet, or
    /// (all producers gone) the end of the stream.
    ///
    /// The producers' slot states are read on every call, so a clean detach
    /// of the last producer is reported at once by every kind of receive
    /// call; what needs the kernel (is an attached producer, or the owner of
    /// a claim at `head`, dead?) is asked at most every probe interval.
    pub(super) fn mpsc_nothing_at_head(&mut self, pace: Pace) -> Result<Step, Stop> {
        let Some(producers) = self.mpsc.as_mut() else { return Ok(Step::Wait) };
        let mut due = Due::new(pace);
        let all_gone = producers.all_gone(&self.backing, &mut due);
        // Only the end of the stream or a dead producer's claim needs more
        // than a wait, and the latter only once a probe is due.
        if !all_gone && !due.now(&mut producers.limiter) {
            return Ok(Step::Wait);
        }
        let head = self.head;
        let tail = self.backing.header().producer.tail.load(observe());
        if tail % 8 != 0 || tail < head || tail - head > self.capacity {
            return Err(self.corrupted(format!(
                "claim position {tail} is misaligned or outside head {head} .. head + capacity {}",
                self.capacity
            )));
        }
        if tail == head {
            if !all_gone {
                return Ok(Step::Wait);
            }
            // Each producer's last claim and commit happen-before its detach
            // (or death) that we just observed: one more look at both tells
            // drained from not yet seen (the tail read above may predate a
            // claim of a producer that then died).
            let header = self.backing.header();
            if header.producer.tail.load(observe()) == head && self.backing.region().word(head).load(observe()) == 0 {
                return Err(Stop::Disconnected);
            }
            return Ok(Step::Again);
        }
        match self.unmarked_claim_end(head, tail)? {
            Some(end) => {
                self.skip_torn(end);
                Ok(Step::Again)
            }
            None => Ok(Step::Wait),
        }
    }

    /// The claim at `head` (a zero word, `tail > head`): its end if every
    /// producer that may own it is dead, `None` while one may be alive.
    fn unmarked_claim_end(&mut self, head: u64, tail: u64) -> Result<Option<u64>, Stop> {
        let header = self.backing.header();
        let slots = (self.backing.max_producers() as usize).min(MAX_PRODUCERS);
        let mut ends = [0u64; MAX_PRODUCERS];
        let mut found = 0;
        for (n, line) in header.claims.iter().take(slots).enumerate() {
            // Acquire pairs with the producer's Release of `start`: `end` is
            // the one written with it (or a newer one for the same start).
            if line.start.load(Ordering::Acquire) != head {
                continue;
            }
            let end = line.end.load(Ordering::Relaxed);
            if end <= head {
                continue;
            }
            if self.backing.is_alive(Slot::Producer(n)) {
                // It may be the owner: never skip a live producer's claim.
                return Ok(None);
            }
            // A dead intent past the claim position lost its CAS.
            if end <= tail && end % 8 == 0 {
                ends[found] = end;
                found += 1;
            }
        }
        let region = self.backing.region();
        if region.word(head).load(observe()) != 0 {
            // Committed (or marked) since we looked.
            return Ok(None);
        }
        let ends = &mut ends[..found];
        ends.sort_unstable();
        // Whether a claim verifiably starts at `end`. The claim position was
        // read (Acquire) before this. If it has moved past `end` and a claim
        // starts there, its owner published its intent (start = `end`)
        // before the CAS we saw, and replaces that intent (Release) only
        // after committing or discarding the record at `end`: so either the
        // intent shows `end` or, read after it (Acquire), the word at `end`
        // is non-zero. The intents must be read first: a word read before
        // them can predate a commit whose intent has moved on by the time
        // they are read, and the true end would be rejected (and the next
        // candidate, inside a live producer's record, wrongly accepted).
        let next_claim_starts_at = |end: u64| {
            let intent = || header.claims.iter().take(slots).any(|line| line.start.load(Ordering::Acquire) == end);
            let word = || region.word(end).load(observe()) != 0;
            if crate::sync::mutant("word_before_intents") {
                end == tail || word() || intent()
            } else {
                end == tail || intent() || word()
            }
        };
        match ends.iter().copied().find(|&end| next_claim_starts_at(end)) {
            Some(end) => Ok(Some(end)),
            None => Err(self.corrupted(format!(
                "position {head} is claimed (the claim position is {tail}) but no producer's claim starts there"
            ))),
        }
    }

    /// The record at `head` carries the claim marker `word` of producer slot
    /// `owner`: skip it if that producer is dead.
    pub(super) fn mpsc_claimed_at_head(&mut self, owner: u8, len: u32, word: u64, pace: Pace) -> Result<Step, Stop> {
        let Some(producers) = self.mpsc.as_mut() else { return Ok(Step::Wait) };
        if !producers.limiter.due(pace) {
            return Ok(Step::Wait);
        }
        let head = self.head;
        if u32::from(owner) >= self.backing.max_producers() {
            return Err(self.corrupted(format!("claim marker at position {head} names producer slot {owner}")));
        }
        let end = head.saturating_add(record_size(u64::from(len)));
        // The marker is stored with Release after the claim's CAS, which
        // came after its owner took the slot's lock: seen (Acquire), it
        // shows both. So the claim position covers the record, or the marker
        // is forged; and the probe below cannot take a live owner that has
        // just taken over the slot for the dead one before it.
        let tail = self.backing.header().producer.tail.load(observe());
        if end > tail {
            return Err(self
                .corrupted(format!("claim marker at position {head} reaches {end}, past the claim position {tail}")));
        }
        if self.backing.is_alive(Slot::Producer(owner.into())) {
            return Ok(Step::Wait);
        }
        // Dead: but its commit may have landed just before it died.
        if self.backing.region().word(head).load(observe()) != word {
            return Ok(Step::Again);
        }
        self.skip_torn(end);
        Ok(Step::Again)
    }

    /// Frees a dead producer's record up to `end` and counts it.
    fn skip_torn(&mut self, end: u64) {
        self.stats.torn_records += 1;
        let counter = &self.backing.header().consumer.torn_records;
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.free_to(end);
    }
}
