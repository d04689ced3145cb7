//! Huge pages (`RingOptions::huge_pages`): which segments may have them,
//! how an opener knows a descriptor is on hugetlbfs, and the error a short
//! pool makes.

use super::*;

/// Huge pages back only anonymous rings: `/dev/shm` is tmpfs and a file
/// ring's file system is not hugetlbfs.
pub(super) fn refuse_huge_pages(name: &str, shape: &Shape) -> Result<(), Error> {
    if !shape.huge_pages {
        return Ok(());
    }
    Err(Error::InvalidOptions {
        segment: name.to_owned(),
        reason: "huge pages back only anonymous rings (AnonymousRing::create): /dev/shm and regular files are not \
                 on hugetlbfs"
            .to_owned(),
    })
}

/// A mapping of a hugetlbfs file refused for want of memory: the pool
/// cannot supply (or reserve) its huge pages.
pub(super) fn pool_short(e: Error, huge: bool, bytes: u64) -> Error {
    match e {
        Error::Io { segment, op: "mmap", source } if huge && source.raw_os_error() == Some(libc::ENOMEM) => {
            Error::NoHugePages { segment, bytes }
        }
        other => other,
    }
}

/// The page size of the hugetlbfs file `fd` is on (its block size), or
/// `None` for any other file system.
pub(super) fn huge_page_of(fd: &SegmentFd) -> Option<u64> {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let fs = rustix::fs::fstatfs(fd).ok()?;
    if fs.f_type as i64 != HUGETLBFS_MAGIC {
        return None;
    }
    Some(fs.f_bsize as u64).filter(|size| size.is_power_of_two())
}
