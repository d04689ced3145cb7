//! Writing a file segment back to the disk: `msync`, `sync_file_range`
//! and the directory's `fsync`.

use super::*;
use crate::record::region_pieces;

impl Segment {
    /// Writes the data of positions `from..to` back to the file and waits
    /// (`msync(MS_SYNC)`). The region holds only the last lap of a longer
    /// range (a flush whose walk jumped ahead to a released position): that
    /// lap is written back.
    pub(crate) fn write_back_positions(&self, from: u64, to: u64) -> Result<(), Error> {
        let capacity = self.identity.capacity;
        let data = self.identity.data_offset;
        for (offset, len) in region_pieces(from.max(to.saturating_sub(capacity)), to, capacity) {
            self.msync(data + offset, len, true)?;
        }
        Ok(())
    }

    /// Writes the header back to the file and waits (`msync(MS_SYNC)`).
    pub(crate) fn write_back_header(&self) -> Result<(), Error> {
        self.msync(0, HEADER_BYTES, true)
    }

    pub(super) fn msync(&self, offset: u64, len: u64, sync: bool) -> Result<(), Error> {
        let page = page_size();
        let start = offset & !(page - 1);
        // The mapping's length is a whole number of pages.
        let end = ((offset + len).div_ceil(page) * page).min(self.mapping.len as u64);
        if len == 0 || start >= end {
            return Ok(());
        }
        let flags = if sync { rustix::mm::MsyncFlags::SYNC } else { rustix::mm::MsyncFlags::ASYNC };
        // SAFETY: `start..end` is page-aligned and inside the mapping we own
        // (checked against its length above); msync only writes pages back
        // and changes no memory.
        unsafe {
            rustix::mm::msync(self.mapping.base.as_ptr().add(start as usize).cast(), (end - start) as usize, flags)
        }
        .map_err(|e| Error::from_os(&self.name, "msync", e))?;
        if sync && crate::testing::write_back_hooked() {
            crate::testing::written_back(&self.name, start, &self.copy_of(start, end));
        }
        Ok(())
    }

    /// The mapping's bytes `start..end` (inside it), copied (for the
    /// write-back hook of the tests).
    #[cold]
    pub(super) fn copy_of(&self, start: u64, end: u64) -> Vec<u8> {
        let len = (end - start) as usize;
        let mut copy = Vec::with_capacity(len);
        // SAFETY: `start..end` lies inside the mapping (the caller checked it
        // against the mapping's length), which lives as long as `self`; the
        // destination is `len` bytes of the new vector's capacity, which do
        // not overlap it, initialised before `set_len`. Bytes a peer writes
        // meanwhile read as garbage, as in `Region::append_to`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.mapping.base.as_ptr().add(start as usize), copy.as_mut_ptr(), len);
            copy.set_len(len);
        }
        copy
    }

    /// Starts writing back the pages of the header and of positions
    /// `from..to` (at most a lap) without waiting for the disk
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A no-op for segments that
    /// are not files.
    pub(crate) fn start_write_back(&self, from: u64, to: u64) -> Result<(), Error> {
        if !self.persistent {
            return Ok(());
        }
        let capacity = self.identity.capacity;
        let data = self.identity.data_offset;
        let mut ranges = vec![(0, data)];
        ranges.extend(region_pieces(from, to, capacity).map(|(offset, len)| (data + offset, len)));
        for (offset, len) in ranges {
            // SAFETY: `sync_file_range` takes integers only; the descriptor is
            // open (owned by self).
            let rc = unsafe {
                libc::sync_file_range(
                    self.fd.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if rc != 0 {
                let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
                return Err(Error::from_os(&self.name, "sync_file_range", errno));
            }
        }
        Ok(())
    }
}

/// `fsync` of the directory holding `path`, so that the file's entry is on
/// the disk.
pub(super) fn sync_directory_of(path: &Path) -> Result<(), Errno> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&dir)
}
