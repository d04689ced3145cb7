//! Record framing, shared by the SPSC and MPSC rings.
//!
//! A record is an 8-byte commit word followed by the payload, padded to a
//! multiple of 8. The commit word is the record header *and* its publication:
//! it is zero until the record is committed, and the consumer polls it (so
//! learning of a message and reading its first payload bytes touch the same
//! cache line, instead of a separate tail index plus the payload).
//!
//! ```text
//!  63            40 39      32 31                 0
//! +----------------+----------+--------------------+
//! | stamp (24 bit) | tag (8)  | payload length (32) |
//! +----------------+----------+--------------------+
//! ```
//!
//! The stamp is the low 24 bits of `position / 8 + lap`, where `lap` is
//! `position / capacity`, so a header is only valid at the position it was
//! written for: a stale header from an earlier lap, or a scribble, is
//! reported as corruption instead of being delivered. A header `j` laps old
//! at the same offset differs by `j * (capacity / 8 + 1)` (mod 2^24), which
//! is never zero for `0 < j < 2^24`: `capacity / 8 + 1` is odd below
//! 128 MiB, and 1 (mod 2^24) from 128 MiB up, where the position bits alone
//! would repeat every lap. Within one lap, headers at different offsets
//! differ unless the offsets are a multiple of 128 MiB apart.
//! A record never crosses the end of the region: a padding record fills the
//! rest of the region and the next record starts at offset 0.
//!
//! MPSC adds two tags. A producer that has claimed space writes a *claim
//! marker* (tag `0x80 | slot`) in the commit word at once, so a record whose
//! producer died before committing names its owner. A producer that drops a
//! grant without committing writes a *discarded* record, which the consumer
//! skips.

/// Bytes of the commit word.
pub const HEADER_LEN: u64 = 8;
/// Records start at multiples of this.
pub const ALIGN: u64 = 8;
/// Tag of a message record.
pub const TAG_MESSAGE: u8 = 0x4D;
/// Tag of a padding record (skipped by the consumer).
pub const TAG_PADDING: u8 = 0x50;
/// Tag of a record its producer gave up: an MPSC grant dropped uncommitted,
/// or the rest of one committed shorter than its claim (`commit_len`).
pub const TAG_DISCARDED: u8 = 0x44;
/// Tag of a claim marker: this bit, or'ed with the owner's producer slot.
pub const TAG_CLAIM: u8 = 0x80;
/// The producer slot bits of a claim marker's tag.
pub const CLAIM_OWNER_MASK: u8 = 0x3F;

/// Bytes a record with a `len`-byte payload occupies.
#[inline(always)]
pub const fn record_size(len: u64) -> u64 {
    HEADER_LEN + ((len + ALIGN - 1) & !(ALIGN - 1))
}

/// Offset in a region of `capacity` bytes (a power of two) of the payload of
/// the record at `position`.
#[inline(always)]
pub fn payload_offset(position: u64, capacity: u64) -> usize {
    ((position & (capacity - 1)) + HEADER_LEN) as usize
}

/// The padding a record of `size` bytes claimed at `position` needs first:
/// the rest of the lap if the record would cross the end of the region
/// (records never do), else none.
#[inline(always)]
pub fn padding_before(position: u64, size: u64, capacity: u64) -> u64 {
    let offset = position & (capacity - 1);
    if offset + size > capacity {
        capacity - offset
    } else {
        0
    }
}

/// The pieces `(offset, len)` of a region of `capacity` bytes (a power of
/// two) that positions `from..to` cover: one, or two where they wrap. A
/// range longer than a lap yields nothing (damage or a caller's bug, never
/// a write past the range).
#[inline(always)]
pub fn region_pieces(from: u64, to: u64, capacity: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut at = from;
    std::iter::from_fn(move || {
        if at >= to || to - at > capacity {
            return None;
        }
        let offset = at & (capacity - 1);
        let len = (to - at).min(capacity - offset);
        at += len;
        Some((offset, len))
    })
}

/// The stamp of a record at `position` in a region of `capacity` bytes (a
/// power of two).
#[inline(always)]
const fn stamp(position: u64, capacity: u64) -> u64 {
    ((position >> 3).wrapping_add(position >> capacity.trailing_zeros())) & 0xFF_FFFF
}

/// The commit word of a record at `position` in a region of `capacity`
/// bytes.
#[inline(always)]
pub const fn encode(tag: u8, len: u32, position: u64, capacity: u64) -> u64 {
    (stamp(position, capacity) << 40) | ((tag as u64) << 32) | len as u64
}

/// A committed record as its commit word describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A message with a payload of `len` bytes.
    Message {
        /// Payload length.
        len: u32,
    },
    /// Padding of `len` bytes after the header, up to the end of the region.
    Padding {
        /// Bytes after the header.
        len: u32,
    },
    /// Space claimed by MPSC producer slot `owner` for a `len`-byte message
    /// that is not committed yet.
    Claimed {
        /// The producer slot that claimed it.
        owner: u8,
        /// Payload length.
        len: u32,
    },
    /// A record of `len` payload bytes its producer discarded (a dropped
    /// grant, or the rest of a grant committed shorter).
    Discarded {
        /// Payload length.
        len: u32,
    },
}

impl Record {
    /// Total bytes of the record, header included.
    #[inline(always)]
    pub fn size(self) -> u64 {
        match self {
            Record::Message { len } | Record::Claimed { len, .. } | Record::Discarded { len } => {
                record_size(u64::from(len))
            }
            Record::Padding { len } => HEADER_LEN + u64::from(len),
        }
    }
}

/// Decode and validate a non-zero commit word found at `position`, in a
/// region of `capacity` bytes with the given maximum message size.
///
/// Rejects a wrong stamp or tag, a message longer than the maximum, a record
/// that would cross the end of the region, and padding that does not end
/// exactly there.
#[inline(always)]
pub fn decode(word: u64, position: u64, capacity: u64, max_message: u32) -> Result<Record, String> {
    match message_len(word, position, capacity, max_message) {
        Some(len) => Ok(Record::Message { len }),
        None => decode_other(word, position, capacity, max_message),
    }
}

/// The common case of [`decode`] in a few instructions: the payload length
/// if `word` is a valid message's commit word at `position` (stamp and tag
/// compared at once, then the two bounds); `None` for anything else,
/// valid or not, which `decode` then tells apart.
#[inline(always)]
pub fn message_len(word: u64, position: u64, capacity: u64, max_message: u32) -> Option<u32> {
    let len = word as u32;
    let valid = word >> 32 == (stamp(position, capacity) << 8) | TAG_MESSAGE as u64
        && len <= max_message
        && (position & (capacity - 1)) + record_size(u64::from(len)) <= capacity;
    valid.then_some(len)
}

/// Padding, and every way a word can be invalid.
#[cold]
#[inline(never)]
fn decode_other(word: u64, position: u64, capacity: u64, max_message: u32) -> Result<Record, String> {
    let len = word as u32;
    let tag = (word >> 32) as u8;
    if word >> 40 != stamp(position, capacity) {
        return Err(format!("record header {word:#018x} at position {position} carries the stamp of another position"));
    }
    let offset = position & (capacity - 1);
    let record = match tag {
        TAG_MESSAGE if len <= max_message => Record::Message { len },
        TAG_MESSAGE => {
            return Err(format!(
                "record at position {position} claims a length of {len} bytes, over the maximum of {max_message}"
            ))
        }
        TAG_PADDING if offset + HEADER_LEN + u64::from(len) == capacity => Record::Padding { len },
        TAG_PADDING => {
            return Err(format!(
                "padding record at position {position} has length {len}, which does not reach the end of the region"
            ))
        }
        TAG_DISCARDED | TAG_CLAIM..=u8::MAX if len > max_message => {
            return Err(format!(
                "record at position {position} claims a length of {len} bytes, over the maximum of {max_message}"
            ))
        }
        TAG_DISCARDED => Record::Discarded { len },
        claim if claim & !CLAIM_OWNER_MASK == TAG_CLAIM => Record::Claimed { owner: claim & CLAIM_OWNER_MASK, len },
        other => return Err(format!("record at position {position} has unknown tag {other:#04x}")),
    };
    if offset + record.size() > capacity {
        return Err(format!("record at position {position} of {} bytes crosses the end of the region", record.size()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 4096;

    #[test]
    fn padding_and_payload_offsets() {
        assert_eq!(padding_before(4072, 24, CAP), 0, "ends exactly at the end of the region");
        assert_eq!(padding_before(4072, 32, CAP), 24, "would cross the end: pad to it");
        assert_eq!(padding_before(CAP + 8, 4088, CAP), 0, "a later lap, same offsets");
        assert_eq!(payload_offset(CAP + 16, CAP), 24);
        let pieces = |from, to| region_pieces(from, to, CAP).collect::<Vec<_>>();
        assert_eq!(pieces(8, 40), [(8, 32)]);
        assert_eq!(pieces(4080, CAP + 24), [(4080, 16), (0, 24)], "wraps: two pieces");
        assert_eq!(pieces(40, 40), []);
        assert_eq!(pieces(0, CAP + 8), [], "more than a lap: nothing");
    }

    #[test]
    fn sizes_are_aligned() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
    }

    #[test]
    fn round_trip() {
        for pos in [0, 8, 4088 - 16, 1 << 40, (1 << 40) + 64] {
            let w = encode(TAG_MESSAGE, 5, pos, CAP);
            assert_ne!(w, 0);
            assert_eq!(decode(w, pos, CAP, 1024), Ok(Record::Message { len: 5 }));
        }
        let pad = encode(TAG_PADDING, 16, 4072, CAP);
        assert_eq!(decode(pad, 4072, CAP, 1024), Ok(Record::Padding { len: 16 }));
        // A zero-byte padding record is a valid, non-zero word.
        assert_ne!(encode(TAG_PADDING, 0, 4088, CAP), 0);
        assert_eq!(decode(encode(TAG_PADDING, 0, 4088, CAP), 4088, CAP, 1024), Ok(Record::Padding { len: 0 }));
    }

    #[test]
    fn rejects_garbage() {
        // Written for another position (a stale lap).
        assert!(decode(encode(TAG_MESSAGE, 5, 0, CAP), CAP, CAP, 1024).is_err());
        // A stale lap at every capacity, up to 1 TiB: the stamp is lap-aware
        // (bits 3..27 of the position alone repeat every 128 MiB).
        for shift in 12..=40 {
            let capacity = 1u64 << shift;
            for (position, laps) in
                [(0, 1), (8, 1), (capacity - 16, 1), (capacity << 3, 1), (5 * capacity + 64, 3), (0, 1 << 23)]
            {
                let old = encode(TAG_MESSAGE, 5, position, capacity);
                let later = position + laps * capacity;
                assert!(
                    decode(old, later, capacity, 1024).is_err(),
                    "capacity 2^{shift}, {laps} laps after {position}"
                );
                assert_eq!(
                    decode(encode(TAG_MESSAGE, 5, later, capacity), later, capacity, 1024),
                    Ok(Record::Message { len: 5 })
                );
            }
        }
        // Over the maximum.
        assert!(decode(encode(TAG_MESSAGE, 1025, 0, CAP), 0, CAP, 1024).is_err());
        // Crossing the end.
        assert!(decode(encode(TAG_MESSAGE, 64, 4064, CAP), 4064, CAP, 1024).is_err());
        // Padding that stops short of the end.
        assert!(decode(encode(TAG_PADDING, 8, 4000, CAP), 4000, CAP, 1024).is_err());
        // Unknown tag.
        assert!(decode(encode(0x11, 8, 0, CAP), 0, CAP, 1024).is_err());
        // Length near u32::MAX does not overflow.
        assert!(decode(encode(TAG_MESSAGE, u32::MAX, 0, CAP), 0, CAP, u32::MAX).is_err());
        // Claim markers and discarded records are bounded like messages.
        assert!(decode(encode(TAG_CLAIM | 3, 1025, 0, CAP), 0, CAP, 1024).is_err());
        assert!(decode(encode(TAG_DISCARDED, 64, 4064, CAP), 4064, CAP, 1024).is_err());
        // Tags 0xC0.. are not claim markers (owner bits are six).
        assert!(decode(encode(0xC1, 8, 0, CAP), 0, CAP, 1024).is_err());
    }

    #[test]
    fn claim_markers_name_their_owner() {
        let w = encode(TAG_CLAIM | 63, 100, 256, CAP);
        assert_eq!(decode(w, 256, CAP, 1024), Ok(Record::Claimed { owner: 63, len: 100 }));
        assert_eq!(decode(encode(TAG_DISCARDED, 5, 8, CAP), 8, CAP, 1024), Ok(Record::Discarded { len: 5 }));
        assert_eq!(Record::Claimed { owner: 1, len: 9 }.size(), 24);
    }
}
