//! Durability of rings that outlive the machine's uptime (file-backed).
//!
//! The data of a shared file mapping reaches the disk when the kernel writes
//! its dirty pages back, in no particular order, unless `msync` forces it.
//! So after a restart of the machine, a record whose commit word made it to
//! the disk may have a payload page that did not: a torn record. Instead of
//! a checksum on every record, the header keeps a *durable tail*: `flush`
//! writes back every committed record up to some position, and only then
//! raises `durable_tail` to it and writes the header back. Recovery after a
//! restart keeps the records from `head` to `max(head, durable_tail)` and
//! drops (zeroes and counts) the rest, so a torn record is never delivered.
//! What keeps those records from being overwritten after their flush, and
//! MPSC records committed after an open claim whole, is in
//! [`super::durable`].
//!
//! A process that dies does not lose its writes: they are in the page cache,
//! which the next process maps. Recovery is needed only when the machine
//! itself restarted, which the kernel's boot id in the header tells (see
//! `segment`).

use super::record::{decode, Record};
use super::RingBacking;
use crate::error::Corrupted;
use crate::layout::{MAX_POSITION, NO_CLAIM};
use crate::sync::{observe, Ordering};

/// How far a flush may go from `from` towards `covered`: the end of the run
/// of records that are committed (messages, padding, discarded records) or
/// claimed and marked (MPSC: open claims, whose producers write their
/// payload back before committing once `flush_pending` covers them; see
/// [`super::durable`]). Stops at `covered`, at the first zero word (the end,
/// or a claim not marked yet), or at an invalid word, at most a lap on.
/// Returns that end and the first open claim it went past.
///
/// Records consumed after the flush started count too (a recovery may start
/// at any `head` from `kept_from` on, so they must be on the disk whole). The
/// consumer may release records while this walks over them; a released
/// record is zeroed and reused only after `durable_head` passes it, so a word
/// read while `durable_head` (read after it) is still at or before it is the
/// record that was there; otherwise the walk goes on from `durable_head`,
/// which is always a record boundary. (A memory ring: `head` instead.)
pub fn flushable_end<B: RingBacking>(backing: &B, from: u64, covered: u64, mark: bool) -> (u64, Option<u64>) {
    if from > MAX_POSITION {
        // A position no side accepts: nothing to make durable.
        return (from, None);
    }
    let region = backing.region();
    // A file ring's records are kept whole up to the durable head (a
    // recovery may start anywhere from there), and zeroed or reused only
    // below it; a memory ring's up to `head`.
    let head = super::durable::limit_word(backing);
    let capacity = region.len() as u64;
    let (mut start, mut at) = (from, from);
    let mut first_open = None;
    // Each step moves forward by a record or to a later head; the cap keeps
    // a walk racing a fast consumer finite.
    for _ in 0..2 * capacity / 8 {
        // Never past what the flush covers: the durable tail stays at or
        // before `flush_pending`, outside of which producers reuse space.
        if at >= covered {
            break;
        }
        let word = region.word(at).load(observe());
        let consumed_to = head.load(Ordering::Acquire);
        if consumed_to > at {
            if consumed_to > MAX_POSITION {
                break;
            }
            (start, at) = (consumed_to, consumed_to);
            first_open = first_open.filter(|open| *open >= consumed_to);
            continue;
        }
        if word == 0 {
            if mark && at < covered && !consumed(backing, at) && mark_for_owner(backing, at, covered) {
                continue;
            }
            break;
        }
        let size = match decode(word, at, capacity, backing.max_message()) {
            Ok(record @ (Record::Message { .. } | Record::Padding { .. } | Record::Discarded { .. })) => record.size(),
            Ok(record @ Record::Claimed { .. }) if at < covered => {
                first_open.get_or_insert(at);
                record.size()
            }
            Ok(Record::Claimed { .. }) | Err(_) => break,
        };
        if at + size - start > capacity {
            break;
        }
        at += size;
    }
    (at, first_open)
}

/// [`flushable_end`], MPSC: waiting for a claim below `covered` whose producer
/// has not marked it yet (a window of a few instructions between its claim
/// and its marker, unless the producer is descheduled there): after a
/// millisecond it marks such a claim for its producer if the intents tell
/// who that is (see [`mark_for_owner`]), and it waits up to
/// [`UNMARKED_PATIENCE`] for the producer otherwise. So `flush` covers every
/// record committed before it, whatever other producers hold open, unless a
/// producer stays stopped between its claim and its marker that long while
/// another's failed claim at the same place leaves the owner unknown; then
/// it covers the records before that claim.
pub fn flush_end<B: RingBacking>(
    backing: &B,
    from: u64,
    covered: u64,
    kind: crate::layout::Kind,
) -> (u64, Option<u64>) {
    if kind == crate::layout::Kind::Spsc {
        // Every SPSC record before the claim position read is committed:
        // there is nothing to wait for.
        return flushable_end(backing, from, covered, false);
    }
    let started = std::time::Instant::now();
    loop {
        let waited = started.elapsed();
        let late = waited >= std::time::Duration::from_millis(1);
        let (end, first_open) = flushable_end(backing, from, covered, late);
        if end >= covered || backing.region().word(end).load(observe()) != 0 || waited >= UNMARKED_PATIENCE {
            return (end, first_open);
        }
        if late {
            std::thread::sleep(std::time::Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// How long `flush` waits for a producer stopped between its claim and its
/// marker when the intents do not tell who it is.
pub const UNMARKED_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The word at `at` (below the claim position `covered`, read after it) is
/// zero: a claim whose producer has not marked it, stopped or dead between
/// its claim and its marker. If exactly one producer's intent starts there
/// (the winner of the claim always has one; more means a loser's stale one
/// too, and then nothing is done) and the claim does not wrap, writes the
/// marker that producer would write (`compare_exchange` from zero, Release,
/// so a marker or commit of its own is never overwritten; its own marker,
/// if it comes, overwrites this one with the same owner and size). Returns
/// whether the word is now non-zero.
fn mark_for_owner<B: RingBacking>(backing: &B, at: u64, covered: u64) -> bool {
    let header = backing.header();
    let capacity = backing.region().len() as u64;
    let mut owner = None;
    for slot in 0..(backing.max_producers() as usize).min(header.claims.len()) {
        let line = &header.claims[slot];
        if line.start.load(Ordering::Acquire) == at {
            if owner.is_some() {
                return false;
            }
            owner = Some((slot, line.end.load(Ordering::Relaxed)));
        }
    }
    let Some((slot, end)) = owner else { return false };
    let offset = at & (capacity - 1);
    if end <= at + 8 || end > covered || end % 8 != 0 || offset + (end - at) > capacity {
        return false;
    }
    let Ok(len) = u32::try_from(end - at - 8) else { return false };
    if len > backing.max_message() {
        return false;
    }
    let marker = super::record::encode(super::record::TAG_CLAIM | slot as u8, len, at, capacity);
    let word = backing.region().word(at);
    if word.compare_exchange(0, marker, Ordering::Release, Ordering::Relaxed).is_ok() && consumed(backing, at) {
        // The consumer passed `at` meanwhile (this walk was stopped between
        // its check and its mark): the zero it marked may be space the
        // consumer released. Take the marker back: released space reads
        // zero.
        let _ = word.compare_exchange(marker, 0, Ordering::Relaxed, Ordering::Relaxed);
        return false;
    }
    word.load(observe()) != 0
}

/// Whether the consumer is past `at`: a zero word there is then released
/// space (an MPSC file ring's consumer zeroes what it releases), never a
/// claim to mark. The consumer stores `head` before it zeroes (and a fence
/// in `durable::release` orders the two), so a walk that read such a zero
/// reads that `head` or a later one.
fn consumed<B: RingBacking>(backing: &B, at: u64) -> bool {
    crate::sync::fence(Ordering::Acquire);
    backing.header().consumer.head.load(Ordering::Acquire) > at
}

/// Makes durable what is committed (see `Producer::flush`): every record
/// from the consumer's `head` (`kept_from`) to the claim position read at
/// the start, MPSC records after another producer's open claim included.
/// `write_back(from, to)` writes positions back and waits (at most the last
/// lap matters: older bytes were overwritten), `write_back_header` the
/// header. An SPSC flush then raises `durable_head` to `kept_from`.
///
/// Order (see [`super::durable`]): `flush_pending` (SeqCst), a SeqCst
/// fence, `head`; the records; `kept_from`, then the durable tail; the
/// header.
pub fn flush<B: RingBacking, E>(
    backing: &B,
    kind: crate::layout::Kind,
    write_back: impl FnOnce(u64, u64) -> Result<(), E>,
    write_back_header: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    let header = backing.header();
    let persistence = &header.persistence;
    let claimed = header.producer.tail.load(Ordering::Acquire);
    // Before anything is written back: from now on, producers stay out of
    // the zone up to `covered`, and an MPSC producer that commits below it
    // writes its payload back itself.
    let covered = persistence.flush_pending.fetch_max(claimed, Ordering::SeqCst).max(claimed);
    crate::sync::fence(Ordering::SeqCst);
    // What is consumed by now need not be kept: a producer that did not see
    // `covered` overwrites only behind this `head` (see `durable`).
    let kept_from = if crate::sync::mutant("kept_from_durable_head") {
        persistence.durable_head.load(Ordering::Acquire)
    } else {
        header.consumer.head.load(Ordering::Acquire).min(covered)
    };
    // From the first claim an earlier flush went past while it was open (it
    // may be committed now), or else the durable tail, but not before
    // `kept_from`: what is before the durable tail is on the disk already.
    let unsettled = persistence.unsettled_from.load(Ordering::Acquire);
    let durable = persistence.durable_tail.load(Ordering::Acquire);
    let from = durable.min(unsettled).max(kept_from);
    let (end, first_open) = flush_end(backing, from, covered, kind);
    write_back(from, end)?;
    // Only once the records are on the disk may the header say so; the
    // start first, so a header holding this durable tail holds this start
    // or a later one (the two share a 64-byte cache line, which a
    // write-back copies as a unit; a later start only drops records
    // consumed by then).
    // Either of two racing flushes leaves a valid `unsettled_from`: each
    // walk saw every record before its first open claim committed.
    persistence.kept_from.fetch_max(kept_from, Ordering::Release);
    persistence.durable_tail.fetch_max(end, Ordering::Release);
    let settled_to = first_open.unwrap_or(end);
    if settled_to > unsettled {
        let _ = persistence.unsettled_from.compare_exchange(unsettled, settled_to, Ordering::AcqRel, Ordering::Relaxed);
    }
    write_back_header()?;
    // The header on the disk now has `head` at or past `kept_from`. (MPSC:
    // only the consumer raises it, after zeroing.)
    if kind == crate::layout::Kind::Spsc
        && persistence.durable_head.fetch_max(kept_from, crate::sync::publish()) < kept_from
    {
        let mut stats = super::Stats::default();
        super::Waker::default().wake_if_sleeping(&header.producer_wake, &mut stats);
    }
    Ok(())
}

/// Recovery after a restart of the machine. The caller holds the recovery
/// lock, and no participant from before the restart can be alive.
///
/// Keeps the records from `head` (or the last flush's `kept_from`, if later)
/// to the durable tail that decode as records of their positions (all of
/// them, unless the file was damaged otherwise), zeroes every other byte of
/// the region (so neither side can read a torn record, and the free space
/// reads zero as both protocols require), and resets the positions and
/// claims that only live participants could have been using. Returns how many records it dropped
/// (also added to the header's `lost_records`).
pub fn recover_after_restart<B: RingBacking>(backing: &B) -> Result<u64, Corrupted> {
    let header = backing.header();
    let region = backing.region();
    let capacity = region.len() as u64;
    let disk_head = header.consumer.head.load(Ordering::Acquire);
    let kept_from = header.persistence.kept_from.load(Ordering::Acquire);
    let durable = header.persistence.durable_tail.load(Ordering::Acquire);
    // What the consumer had consumed when the flush started is not kept.
    let head = disk_head.max(kept_from);
    let keep = head.max(durable);
    if head % 8 != 0 || durable % 8 != 0 || keep - head > capacity || keep > MAX_POSITION {
        return Err(Corrupted::new(
            backing.name(),
            format!(
                "head {disk_head} (kept from {kept_from}) and durable tail {durable} are misaligned, more than a lap \
                 apart, or beyond the largest position {MAX_POSITION}"
            ),
        ));
    }
    // The kept records must all decode; a damaged one ends what is kept.
    let (keep, _) = walk_records(backing, head, keep);
    // Count what is dropped: the records that still decode after `keep`.
    let (_, lost_records) = walk_records(backing, keep, keep + capacity);
    region.zero_positions(keep, head + capacity);
    header.consumer.head.store(head, Ordering::Relaxed);
    header.producer.tail.store(keep, Ordering::Relaxed);
    let persistence = &header.persistence;
    persistence.durable_tail.store(keep, Ordering::Relaxed);
    persistence.durable_head.store(head, Ordering::Relaxed);
    persistence.kept_from.store(head, Ordering::Relaxed);
    persistence.flush_pending.store(keep, Ordering::Relaxed);
    persistence.unsettled_from.store(keep, Ordering::Relaxed);
    persistence.release_wanted.store(0, Ordering::Relaxed);
    // Nothing is left half-freed: everything past `keep` is zero.
    header.consumer.freeing_to.store(head, Ordering::Relaxed);
    for claim in &header.claims {
        claim.start.store(NO_CLAIM, Ordering::Relaxed);
    }
    persistence.lost_records.fetch_add(lost_records, Ordering::Relaxed);
    persistence.recoveries.fetch_add(1, Ordering::Relaxed);
    Ok(lost_records)
}

/// Walks the records from `from` towards `to` (at most a lap on): returns
/// where the run of records that decode as records of their positions ends
/// (at most `to`) and how many messages and claims it holds.
fn walk_records<B: RingBacking>(backing: &B, from: u64, to: u64) -> (u64, u64) {
    let region = backing.region();
    let capacity = region.len() as u64;
    let (mut at, mut messages) = (from, 0);
    while at < to {
        let word = region.word(at).load(observe());
        if word == 0 {
            break;
        }
        let Ok(record) = decode(word, at, capacity, backing.max_message()) else { break };
        if at + record.size() - from > capacity || at + record.size() > to {
            break;
        }
        if matches!(record, Record::Message { .. } | Record::Claimed { .. }) {
            messages += 1;
        }
        at += record.size();
    }
    (at, messages)
}
