//! Validating the identity found in a segment's header.

use super::*;

impl crate::layout::Identity {
    /// Waits until the creator has published the header (`state` READY),
    /// then reads it and its stored checksum.
    ///
    /// `state` is loaded Relaxed and followed by an Acquire fence, which
    /// orders the reads after it as an Acquire load would: an Acquire load
    /// is not allowed on the read-only (`PROT_READ`) mapping the inspection
    /// path probes, where only Relaxed loads of at most 8 bytes are (see
    /// "Atomic accesses to read-only memory" in `core::sync::atomic`).
    /// `deadline`: `None` waits as long as it takes.
    pub(super) fn wait_ready(
        &self,
        name: &str,
        deadline: Option<Instant>,
        waited: Duration,
        removed: impl Fn() -> bool,
    ) -> Result<(IdentityFields, u64), Error> {
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state == STATE_READY {
                fence(Ordering::Acquire);
                return Ok((self.read(), self.checksum.load(Ordering::Relaxed)));
            }
            let magic = self.magic.load(Ordering::Relaxed);
            if magic == MAGIC && state != STATE_INITIALIZING {
                // Our header, with a state no version of shmring writes.
                return Err(corrupt(name, format!("header state {state:#010x} is neither initialising nor ready")));
            }
            if state != STATE_INITIALIZING || (magic != 0 && magic != MAGIC) {
                return Err(Error::NotShmring { segment: name.to_owned() });
            }
            if removed() {
                return Err(Error::NotFound { segment: name.to_owned() });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::NotReady { segment: name.to_owned(), waited });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Checks every identity field before any of them is used.
pub(super) fn validate_identity(
    name: &str,
    id: &IdentityFields,
    stored_checksum: u64,
    file_size: u64,
    expect: &Expect,
) -> Result<(), Error> {
    let segment = || name.to_owned();
    if id.magic != MAGIC {
        return Err(Error::NotShmring { segment: segment() });
    }
    if id.version != VERSION {
        return Err(Error::VersionMismatch { segment: segment(), found: id.version, expected: VERSION });
    }
    if id.checksum() != stored_checksum {
        return Err(Error::ChecksumMismatch { segment: segment() });
    }
    let kind = Kind::from_code(id.kind);
    match (kind, expect.kind) {
        (None, Some(expected)) => return Err(Error::KindMismatch { segment: segment(), found: None, expected }),
        (None, None) => return Err(corrupt(name, format!("unknown ring kind {}", id.kind))),
        (Some(found), Some(expected)) if found != expected => {
            return Err(Error::KindMismatch { segment: segment(), found: Some(found), expected })
        }
        _ => {}
    }
    if id.data_offset < HEADER_BYTES || id.data_offset % page_size() != 0 || id.data_offset > HUGE_PAGE {
        return Err(corrupt(
            name,
            format!("data offset {} is not a page-aligned offset after the header", id.data_offset),
        ));
    }
    let shape = Shape {
        kind: kind.unwrap_or(Kind::Spsc),
        capacity: id.capacity,
        max_message: u64::from(id.max_message),
        max_producers: u64::from(id.max_producers),
        mode: 0o600,
        huge_pages: false,
    };
    check_shape(name, &shape).map_err(|e| match e {
        Error::InvalidOptions { reason, .. } => corrupt(name, reason),
        other => other,
    })?;
    if id.total_size != id.data_offset + id.capacity {
        return Err(corrupt(
            name,
            format!("total size {} is not data offset {} + capacity {}", id.total_size, id.data_offset, id.capacity),
        ));
    }
    if file_size != id.total_size {
        return Err(Error::SizeMismatch { segment: segment(), expected: id.total_size, found: file_size });
    }
    debug_assert!(record_size(u64::from(id.max_message)) * 2 <= id.capacity);
    Ok(())
}

pub(super) fn corrupt(name: &str, what: String) -> Error {
    Error::Corrupted(Corrupted::new(&Arc::from(name), what))
}
