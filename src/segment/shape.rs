//! What a segment may be made with: names, sizes, limits.

use super::*;

/// Smallest data region.
pub const MIN_CAPACITY: u64 = 4096;
/// Largest data region (1 TiB): positions are `u64`, mappings are `usize`.
pub const MAX_CAPACITY: u64 = 1 << 40;
// A waiting MPSC consumer's position and a producer's, within one ring's
// capacity of each other, are told apart modulo 2^WAITING_POSITION_BITS.
const _: () = assert!(MAX_CAPACITY <= 1 << crate::layout::WAITING_POSITION_BITS);

/// Checks a POSIX shared-memory name before any system call: a leading `/`,
/// no other `/`, not empty after it, not `.` or `..`, no NUL, at most 255
/// bytes after the slash (the `NAME_MAX` of the `/dev/shm` file it becomes).
///
/// ```
/// assert!(shmring::validate_name("/market-data").is_ok());
/// assert!(shmring::validate_name("market-data").is_err());
/// assert!(shmring::validate_name("/a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| Err(Error::InvalidName { name: name.to_owned(), reason });
    let Some(rest) = name.strip_prefix('/') else {
        return invalid("it must start with '/'");
    };
    if rest.is_empty() {
        invalid("it must have at least one character after '/'")
    } else if rest.contains('/') {
        invalid("it must not contain '/' after the first character")
    } else if rest.contains('\0') {
        invalid("it must not contain NUL")
    } else if rest == "." || rest == ".." {
        invalid("'.' and '..' are not segment names")
    } else if rest.len() > 255 {
        invalid("it must be at most 255 bytes after the '/'")
    } else {
        Ok(())
    }
}

/// `shm_unlink`: removes the name; processes that have the segment mapped
/// keep using it until they unmap it.
///
/// ```no_run
/// shmring::unlink("/stale-ring")?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &str) -> Result<(), Error> {
    validate_name(name)?;
    shm::unlink(name).map_err(|e| Error::from_os(name, "shm_unlink", e))
}

/// What to make when creating a segment.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub kind: Kind,
    pub capacity: u64,
    pub max_message: u64,
    pub max_producers: u64,
    pub mode: u32,
    /// Back it with 2 MiB huge pages (a memfd only: see [`HUGE_PAGE`]).
    pub huge_pages: bool,
}

/// How to attach to an existing segment.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The kind the caller needs (`None`: any, for tools).
    pub kind: Option<Kind>,
    pub allow_foreign_owner: bool,
    /// How long to wait for a segment that does not exist yet.
    pub open_timeout: Duration,
    /// How long to wait for the creator to finish the header.
    pub ready_timeout: Duration,
}

/// Checks that `shape` can make a ring; the message says what is allowed.
pub(crate) fn check_shape(name: &str, shape: &Shape) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidOptions { segment: name.to_owned(), reason });
    let page = page_size();
    let cap = shape.capacity;
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) || !cap.is_power_of_two() || cap % page != 0 {
        return invalid(format!(
            "capacity {cap} is not allowed: it must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes \
             and a multiple of the page size ({page})"
        ));
    }
    let max_allowed = max_message_for(cap);
    if shape.max_message == 0 || shape.max_message > max_allowed {
        return invalid(format!(
            "max message size {} is not allowed: with a capacity of {cap} it must be from 1 to {max_allowed} bytes \
             (a record plus the padding before it must fit in the ring)",
            shape.max_message
        ));
    }
    let producers_ok = match shape.kind {
        Kind::Spsc => shape.max_producers == 1,
        Kind::Mpsc => (1..=MAX_PRODUCERS as u64).contains(&shape.max_producers),
    };
    if !producers_ok {
        return invalid(format!(
            "max producers {} is not allowed for an {} ring (SPSC: 1, MPSC: 1 to {MAX_PRODUCERS})",
            shape.max_producers, shape.kind
        ));
    }
    if shape.huge_pages && cap < HUGE_PAGE {
        return invalid(format!(
            "capacity {cap} is not allowed with huge pages: it must be at least one huge page ({HUGE_PAGE} bytes)"
        ));
    }
    if shape.mode & !0o777 != 0 || shape.mode & 0o600 != 0o600 {
        return invalid(format!(
            "mode {:o} is not allowed: it must be permission bits only and give the owner read and write",
            shape.mode
        ));
    }
    Ok(())
}

/// The largest payload a ring of `capacity` bytes can take: a record of that
/// size, the padding that may precede it (less than one record) and the
/// terminator word must fit in the ring.
pub(crate) fn max_message_for(capacity: u64) -> u64 {
    (capacity / 2).saturating_sub(8).min(u64::from(u32::MAX - 8)) & !7
}

pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The huge page that backs a ring made with `RingOptions::huge_pages`:
/// 2 MiB (`MFD_HUGE_2MB`), the size every x86-64 and arm64 kernel with
/// huge pages offers.
pub(crate) const HUGE_PAGE: u64 = 2 << 20;

/// Offset of the data region: the header page, or one page if pages are
/// larger; on huge pages one huge page, so that the data starts on one
/// (and a hugetlb file's size, which must be a multiple of it, is).
pub(super) fn data_offset(shape: &Shape) -> u64 {
    if shape.huge_pages {
        HUGE_PAGE
    } else {
        HEADER_BYTES.max(page_size())
    }
}
