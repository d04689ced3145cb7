//! A segment's descriptor, and what `fstat` and the seals tell of one.

use super::*;

/// A segment's descriptor: closed on drop (with forks held off if it is
/// tracked), and left alone in a forked child, whose atfork handler closed
/// it already (see [`crate::segment::fork`]).
#[derive(Debug)]
pub(super) struct SegmentFd {
    pub(super) fd: ManuallyDrop<OwnedFd>,
    /// `None`: [`Scope::Inherited`].
    pub(super) tracked: Option<Tracked>,
}

impl SegmentFd {
    /// Opens a descriptor with `open`, `op` naming the call in errors.
    pub(super) fn open(
        name: &str,
        op: &'static str,
        scope: Scope,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<SegmentFd, Error> {
        let (fd, tracked) = fork::open_fd(scope, open).map_err(|e| Error::from_os(name, op, e))?;
        Ok(SegmentFd { fd: ManuallyDrop::new(fd), tracked })
    }

    pub(super) fn scope(&self) -> Scope {
        if self.tracked.is_some() {
            Scope::Process
        } else {
            Scope::Inherited
        }
    }

    /// Whether this process was forked from the one that opened it.
    pub(super) fn inherited(&self) -> bool {
        self.tracked.as_ref().is_some_and(Tracked::inherited)
    }
}

impl AsFd for SegmentFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SegmentFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SegmentFd {
    fn drop(&mut self) {
        let fd = &mut self.fd;
        fork::release(self.tracked.take(), || {
            // SAFETY: the descriptor is closed here, once; `fd` is not used
            // again. (In a forked child this is not run: the descriptor is
            // leaked, its number closed already by the child handler.)
            unsafe { ManuallyDrop::drop(fd) }
        });
    }
}

/// `fstat` of descriptor number `fd`, which may not be open (then `EBADF`):
/// no `BorrowedFd` is made of a number nobody vouches for.
pub(super) fn fstat_raw(fd: std::os::fd::RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: `stat` is a plain C struct of integers; all-zero is valid.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fstat` writes one `struct stat` through the pointer, which is
    // valid for the call; any number is acceptable as a descriptor (one
    // that is not open fails with EBADF), and it is neither kept nor closed.
    if unsafe { libc::fstat(fd, &mut stat) } == 0 {
        Ok(stat)
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// `fcntl(F_GET_SEALS)` of descriptor number `fd` (see [`fstat_raw`]).
pub(super) fn seals_raw(fd: std::os::fd::RawFd) -> Result<SealFlags, Errno> {
    // SAFETY: F_GET_SEALS takes no argument and touches no memory of ours;
    // any number is acceptable as a descriptor.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals >= 0 {
        Ok(SealFlags::from_bits_retain(seals as u32))
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// What a file of `S_IFMT` type `file_type` is, for messages.
pub(super) fn file_type_name(file_type: libc::mode_t) -> &'static str {
    match file_type {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    }
}

pub(super) fn starts_with_magic(fd: &SegmentFd) -> bool {
    let mut magic = [0u8; 8];
    matches!(rustix::io::pread(fd, &mut magic, 0), Ok(8)) && u64::from_le_bytes(magic) == MAGIC
}

/// Runs `open` until it finds the segment, for at most `timeout` (which
/// `Duration::MAX` makes unlimited): a segment that does not exist yet may
/// be about to be created. Polls every millisecond at first, backing off to
/// every 10 ms; any other error is returned at once.
pub(super) fn until_created<T>(timeout: Duration, mut open: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        match open() {
            Err(Error::NotFound { .. }) if deadline.is_none_or(|d| Instant::now() < d) => {
                let left = deadline.map_or(pause, |d| d.saturating_duration_since(Instant::now()));
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}
