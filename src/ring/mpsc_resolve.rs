//! The consumer's side of MPSC: what the record at `head` is when its
//! producer has not committed it (an open claim, a claim not marked yet, a
//! dead producer's claim), whether every producer is gone, and when a dead
//! producer's slot may be taken again.

use super::record::{decode, record_size, Record};
use super::{Consumer, Limiter, Pace, PeerStatus, PeerWatch, RingBacking};
use crate::error::RecvStop;
use crate::layout::{ClaimLine, Slot, MAX_PRODUCERS, NO_CLAIM, SLOT_ATTACHED, SLOT_DETACHED, SLOT_EMPTY};
use crate::sync::{observe, Ordering};
use std::time::Duration;

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
/// needs no owner to be consumed), or the discarded rest of a claim
/// committed shorter (`commit_len`), which the commit published first and
/// so also needs no owner; anywhere else past the start, the intent lost
/// its CAS.
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
    pub(super) fn mpsc_nothing_at_head(&mut self, pace: Pace) -> Result<Step, RecvStop> {
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
                return Err(RecvStop::Disconnected);
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
    fn unmarked_claim_end(&mut self, head: u64, tail: u64) -> Result<Option<u64>, RecvStop> {
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
    pub(super) fn mpsc_claimed_at_head(
        &mut self,
        owner: u8,
        len: u32,
        word: u64,
        pace: Pace,
    ) -> Result<Step, RecvStop> {
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
        crate::sync::count_one(&self.backing.header().consumer.torn_records);
        self.free_to(end);
    }
}
