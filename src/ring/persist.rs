//! Durability of rings that outlive the machine's uptime (file-backed).
//!
//! The data of a shared file mapping reaches the disk when the kernel writes
//! its dirty pages back, in no particular order, unless `msync` forces it.
//! So after a restart of the machine, a record whose commit word made it to
//! the disk may have a payload page that did not: a torn record. Instead of
//! a checksum on every record, the header keeps a *durable tail*: `flush`
//! writes back every committed record up to some position, and only then
//! raises `durable_tail` to it and writes the header back. Recovery after a
//! restart keeps what is before `max(head, durable_tail)` and drops (zeroes
//! and counts) the rest, so a torn record is never delivered.
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

/// The end of the run of committed records (messages, padding, discarded
/// records) that starts at `from`: the first position whose word is zero, a
/// claim marker or invalid, at most a lap on.
///
/// The consumer may free records while this walks over them, and a freed
/// record may be zeroed or already hold the next lap's bytes. Since the
/// consumer zeroes before it publishes `head`, and producers write only
/// below `head + capacity`, a word read while `head` (read after it) is still
/// at or before it is the record that was there; otherwise the walk goes on
/// from `head`, which is always a record boundary.
pub fn committed_end<B: RingBacking>(backing: &B, from: u64) -> u64 {
    if from > MAX_POSITION {
        // A position no side accepts: nothing to make durable.
        return from;
    }
    let region = backing.region();
    let head = &backing.header().consumer.head;
    let capacity = region.len() as u64;
    let (mut start, mut at) = (from, from);
    // Each step moves forward by a record or to a later head; the cap keeps
    // a walk racing a fast consumer finite.
    for _ in 0..2 * capacity / 8 {
        let word = region.word(at).load(observe());
        let consumed_to = head.load(Ordering::Acquire);
        if consumed_to > at {
            if consumed_to > MAX_POSITION {
                return at;
            }
            (start, at) = (consumed_to, consumed_to);
            continue;
        }
        if word == 0 {
            return at;
        }
        let size = match decode(word, at, capacity, backing.max_message()) {
            Ok(record @ (Record::Message { .. } | Record::Padding { .. } | Record::Discarded { .. })) => record.size(),
            Ok(Record::Claimed { .. }) | Err(_) => return at,
        };
        if at + size - start > capacity {
            return at;
        }
        at += size;
    }
    at
}

/// Recovery after a restart of the machine. The caller holds the recovery
/// lock, and no participant from before the restart can be alive.
///
/// Keeps the records before `max(head, durable_tail)`, zeroes every other
/// byte of the region (so neither side can read a torn record, and the free
/// space reads zero as both protocols require), and resets the positions and
/// claims that only live participants could have been using. Returns how
/// many records it dropped (also added to the header's `lost_records`).
pub fn recover_after_restart<B: RingBacking>(backing: &B) -> Result<u64, Corrupted> {
    let header = backing.header();
    let region = backing.region();
    let capacity = region.len() as u64;
    let head = header.consumer.head.load(Ordering::Acquire);
    let durable = header.persistence.durable_tail.load(Ordering::Acquire);
    let keep = head.max(durable);
    if head % 8 != 0 || durable % 8 != 0 || keep - head > capacity || keep > MAX_POSITION {
        return Err(Corrupted::new(
            backing.name(),
            format!(
                "head {head} and durable tail {durable} are misaligned, more than a lap apart, or beyond the largest \
                 position {MAX_POSITION}"
            ),
        ));
    }
    // Count what is dropped: the records that still decode after `keep`.
    let mut lost_records = 0;
    let mut at = keep;
    while at - keep < capacity {
        let word = region.word(at).load(observe());
        if word == 0 {
            break;
        }
        let Ok(record) = decode(word, at, capacity, backing.max_message()) else { break };
        if at + record.size() - keep > capacity {
            break;
        }
        if matches!(record, Record::Message { .. } | Record::Claimed { .. }) {
            lost_records += 1;
        }
        at += record.size();
    }
    region.zero_positions(keep, head + capacity);
    header.producer.tail.store(keep, Ordering::Relaxed);
    header.persistence.durable_tail.store(keep, Ordering::Relaxed);
    let freeing_to = &header.consumer.freeing_to;
    freeing_to.store(freeing_to.load(Ordering::Relaxed).min(keep), Ordering::Relaxed);
    for claim in &header.claims {
        claim.start.store(NO_CLAIM, Ordering::Relaxed);
    }
    let persistence = &header.persistence;
    persistence.lost_records.fetch_add(lost_records, Ordering::Relaxed);
    persistence.recoveries.fetch_add(1, Ordering::Relaxed);
    Ok(lost_records)
}
