//! The shared mapping of a segment.

use super::*;

/// A plain `mmap` owned until dropped (the header probe, and the segment's
/// mapping), tracked like its descriptor (see [`SegmentFd`]): in a forked
/// child it is never unmapped, the child handler having put private memory in
/// its place.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) base: NonNull<u8>,
    pub(super) len: usize,
    /// `None`: [`Scope::Inherited`].
    pub(super) tracked: Option<Tracked>,
    /// Views of the data lent in place (the ring's `Region` counts them): a
    /// child forked while one is lent gets a copy of the bytes, not zeros.
    /// Boxed, so its address (tracked with the mapping) stays put.
    pub(super) lent: Option<Box<AtomicU32>>,
}

impl Mapping {
    /// Maps `len` bytes of `fd`, tracked as `fd` is; `populate` pre-faults
    /// them (`MAP_POPULATE`), so the first lap of the ring takes no page
    /// faults.
    pub(super) fn new(
        name: &str,
        fd: &SegmentFd,
        len: usize,
        populate: bool,
        writable: bool,
        count_views: bool,
    ) -> Result<Mapping, Error> {
        let flags = if populate { MapFlags::SHARED | MapFlags::POPULATE } else { MapFlags::SHARED };
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        let lent = count_views.then(|| Box::new(AtomicU32::new(0)));
        let (base, len, tracked) = fork::map(fd.scope(), lent.as_deref(), || {
            // SAFETY: a fresh shared mapping of `len` bytes of our own
            // descriptor at an address the kernel chooses: it aliases no Rust
            // object. Bytes past the end of the file would fault, which is why
            // callers size `len` from a validated header checked against
            // `fstat`.
            let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) }?;
            match NonNull::new(ptr.cast::<u8>()) {
                Some(base) => Ok((base, len)),
                None => {
                    // SAFETY: the mapping just made, which nothing refers to.
                    let _ = unsafe { rustix::mm::munmap(ptr, len) };
                    Err(Errno::FAULT)
                }
            }
        })
        .map_err(|e| Error::from_os(name, "mmap", e))?;
        Ok(Mapping { base, len, tracked, lent })
    }

    pub(super) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping starts with at least HEADER_BYTES >=
        // size_of::<SegmentHeader>() bytes, is page-aligned (>= its 128-byte
        // alignment), and stays mapped as long as `self` (in a forked child,
        // blanked but mapped). Every field is an atomic, so concurrent writes
        // by other processes are not data races. The mapping of a read-only
        // segment (`open_read_only`) is `PROT_READ`: its only users
        // (`wait_ready`, `inspect`) do nothing but Relaxed loads of at most 8
        // bytes on it, ordered by fences.
        unsafe { self.base.cast::<SegmentHeader>().as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let (base, len) = (self.base, self.len);
        fork::release(self.tracked.take(), || {
            // SAFETY: our own mapping, unmapped once; `header()` borrows, and
            // a segment's `region`, end with `self`. (Not run in a forked
            // child: there the mapping stays, blanked, for ever.)
            let _ = unsafe { rustix::mm::munmap(base.as_ptr().cast(), len) };
        });
    }
}
