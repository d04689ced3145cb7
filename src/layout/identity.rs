//! The identity line: what a segment is, written once by its creator and
//! validated by everyone who attaches.

use super::*;

/// Who made the segment and how it is shaped. Written once by the creator
/// before `state` becomes [`STATE_READY`]; covered by `checksum`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Identity {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`Kind::code`].
    pub kind: AtomicU32,
    /// Bytes in the data region: a power of two and a multiple of the page size.
    pub capacity: AtomicU64,
    /// Offset of the data region from the start of the segment.
    pub data_offset: AtomicU64,
    /// Size of the whole segment: `data_offset + capacity`.
    pub total_size: AtomicU64,
    /// Largest payload a record may carry.
    pub max_message: AtomicU32,
    /// Producer slots in use for this kind (1 for SPSC).
    pub max_producers: AtomicU32,
    /// Process that created the segment (a hint for humans).
    pub creator_pid: AtomicU32,
    /// User that created the segment.
    pub creator_uid: AtomicU32,
    /// [`IdentityFields::checksum`] of the fields above.
    pub checksum: AtomicU64,
    /// [`STATE_INITIALIZING`], then [`STATE_READY`].
    pub state: AtomicU32,
    /// [`FLAG_HANDED_OUT`], once set. Not covered by the checksum: a forged
    /// flag can only make handles copy rather than lend.
    pub flags: AtomicU32,
}

/// [`Identity::flags`]: the segment's descriptor crossed a socket (an
/// anonymous ring sent or received): who can write it cannot be known, so no
/// handle lends its memory in place (the trust rule).
pub const FLAG_HANDED_OUT: u32 = 1;

/// A plain copy of the identity fields, as read from (or to be written to) a
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityFields {
    /// See `Identity::magic`.
    pub magic: u64,
    /// See `Identity::version`.
    pub version: u32,
    /// See `Identity::kind`.
    pub kind: u32,
    /// See `Identity::capacity`.
    pub capacity: u64,
    /// See `Identity::data_offset`.
    pub data_offset: u64,
    /// See `Identity::total_size`.
    pub total_size: u64,
    /// See `Identity::max_message`.
    pub max_message: u32,
    /// See `Identity::max_producers`.
    pub max_producers: u32,
    /// See `Identity::creator_pid`.
    pub creator_pid: u32,
    /// See `Identity::creator_uid`.
    pub creator_uid: u32,
}

impl IdentityFields {
    /// FNV-1a over the fields in declaration order. Not a defence against an
    /// attacker (who can rewrite the checksum too), but a torn or scribbled
    /// identity is caught before any size in it is trusted.
    pub fn checksum(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let words = [
            self.magic,
            u64::from(self.version),
            u64::from(self.kind),
            self.capacity,
            self.data_offset,
            self.total_size,
            u64::from(self.max_message),
            u64::from(self.max_producers),
            u64::from(self.creator_pid),
            u64::from(self.creator_uid),
        ];
        for byte in words.iter().flat_map(|w| w.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

impl Identity {
    /// Read every field (Relaxed: call after observing `state` with Acquire).
    pub fn read(&self) -> IdentityFields {
        let r = Ordering::Relaxed;
        IdentityFields {
            magic: self.magic.load(r),
            version: self.version.load(r),
            kind: self.kind.load(r),
            capacity: self.capacity.load(r),
            data_offset: self.data_offset.load(r),
            total_size: self.total_size.load(r),
            max_message: self.max_message.load(r),
            max_producers: self.max_producers.load(r),
            creator_pid: self.creator_pid.load(r),
            creator_uid: self.creator_uid.load(r),
        }
    }

    /// Write every field and the checksum. The caller publishes them by
    /// storing [`STATE_READY`] into `state` with Release afterwards.
    pub fn write(&self, fields: &IdentityFields) {
        let r = Ordering::Relaxed;
        self.magic.store(fields.magic, r);
        self.version.store(fields.version, r);
        self.kind.store(fields.kind, r);
        self.capacity.store(fields.capacity, r);
        self.data_offset.store(fields.data_offset, r);
        self.total_size.store(fields.total_size, r);
        self.max_message.store(fields.max_message, r);
        self.max_producers.store(fields.max_producers, r);
        self.creator_pid.store(fields.creator_pid, r);
        self.creator_uid.store(fields.creator_uid, r);
        self.checksum.store(fields.checksum(), r);
    }
}

#[cfg(all(test, not(shmring_loom)))]
mod tests {
    use super::*;

    fn sample() -> IdentityFields {
        IdentityFields {
            magic: MAGIC,
            version: VERSION,
            kind: Kind::Spsc.code(),
            capacity: 1 << 16,
            data_offset: HEADER_BYTES,
            total_size: HEADER_BYTES + (1 << 16),
            max_message: 1 << 14,
            max_producers: 1,
            creator_pid: 42,
            creator_uid: 1000,
        }
    }

    #[test]
    fn checksum_covers_every_field() {
        let base = sample();
        let sum = base.checksum();
        let variants = [
            IdentityFields { magic: base.magic ^ 1, ..base },
            IdentityFields { version: base.version + 1, ..base },
            IdentityFields { kind: 2, ..base },
            IdentityFields { capacity: 1 << 17, ..base },
            IdentityFields { data_offset: 0, ..base },
            IdentityFields { total_size: 0, ..base },
            IdentityFields { max_message: 1, ..base },
            IdentityFields { max_producers: 2, ..base },
            IdentityFields { creator_pid: 43, ..base },
            IdentityFields { creator_uid: 0, ..base },
        ];
        for v in variants {
            assert_ne!(v.checksum(), sum, "{v:?}");
        }
    }

    #[test]
    fn identity_round_trips() {
        let id = Identity::default();
        id.write(&sample());
        assert_eq!(id.read(), sample());
        assert_eq!(id.checksum.load(Ordering::Relaxed), sample().checksum());
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [Kind::Spsc, Kind::Mpsc] {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(3), None);
    }
}
