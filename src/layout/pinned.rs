//! The layout's offsets and sizes, pinned at compile time: a change that
//! moves a field fails the build (and must bump `VERSION`).

use super::*;
use static_assertions::{const_assert, const_assert_eq};
use std::mem::{align_of, offset_of, size_of};

const_assert_eq!(size_of::<FutexWord>(), 4);
const_assert_eq!(size_of::<Identity>(), 72);
const_assert_eq!(offset_of!(Identity, flags), 68);
const_assert_eq!(offset_of!(Identity, checksum), 56);
const_assert_eq!(offset_of!(Identity, state), 64);
const_assert_eq!(size_of::<Participant>(), 16);
const_assert_eq!(align_of::<SegmentHeader>(), LINE);
const_assert_eq!(offset_of!(SegmentHeader, ring), 128);
const_assert_eq!(offset_of!(RingHeader, producer), 0);
const_assert_eq!(offset_of!(RingHeader, consumer), 128);
const_assert_eq!(offset_of!(RingHeader, consumer_wake), 256);
const_assert_eq!(offset_of!(RingHeader, producer_wake), 384);
const_assert_eq!(offset_of!(RingHeader, consumer_slot), 512);
const_assert_eq!(offset_of!(RingHeader, producer_slots), 640);
const_assert_eq!(offset_of!(WakeLine, sleepers), 4);
const_assert_eq!(offset_of!(WakeLine, waiting_for), 8);
const_assert_eq!(offset_of!(ProducerLine, messages), 8);
const_assert_eq!(offset_of!(ProducerLine, changes), 16);
const_assert_eq!(offset_of!(ConsumerLine, messages), 8);
const_assert_eq!(offset_of!(ConsumerLine, freeing_to), 16);
const_assert_eq!(offset_of!(ConsumerLine, torn_records), 24);
const_assert_eq!(offset_of!(RingHeader, claims), 1664);
const_assert_eq!(size_of::<Line<ClaimLine>>(), LINE);
const_assert_eq!(offset_of!(ClaimLine, end), 8);
const_assert_eq!(offset_of!(ClaimLine, parked), 24);
const_assert_eq!(offset_of!(RingHeader, persistence), 9856);
const_assert_eq!(offset_of!(PersistenceLine, boot_id), 8);
const_assert_eq!(offset_of!(PersistenceLine, lost_records), 24);
const_assert_eq!(offset_of!(PersistenceLine, durable_head), 40);
const_assert_eq!(offset_of!(PersistenceLine, flush_pending), 48);
const_assert_eq!(offset_of!(PersistenceLine, release_wanted), 56);
const_assert_eq!(offset_of!(PersistenceLine, unsettled_from), 64);
const_assert_eq!(offset_of!(PersistenceLine, kept_from), 32);
const_assert_eq!(offset_of!(PersistenceLine, recoveries), 72);
const_assert_eq!(size_of::<SegmentHeader>(), 10112);
const_assert!(size_of::<SegmentHeader>() as u64 <= HEADER_BYTES);
// Every lock byte lies inside the header, before the data region.
const_assert!((MAX_PRODUCERS as u64) < HEADER_BYTES);
