//! A mapped segment: a shared-memory object, a regular file or a memfd,
//! sized with `ftruncate` + `fallocate` and mapped `MAP_SHARED`; the
//! validation of a header found in one; the kernel locks that tell whether a
//! participant is alive; and write-back (`msync`) and restart recovery for
//! files.
//!
//! # Backings
//!
//! The ring and header code do not know which one they sit on: everything
//! here works on a descriptor.
//!
//! * POSIX shared memory: `shm_open` by name, for unrelated processes.
//! * A regular file, created `O_EXCL` with mode 0600. It outlives the
//!   processes, is never removed by shmring, and `flush` writes it back (see
//!   [`crate::ring::persist`]).
//! * A memfd: an anonymous `memfd_create` object, sealed against
//!   shrinking, inherited across `fork`/`exec` or passed over a Unix socket.
//!   Every process (re)opens it through `/proc/self/fd/N`, which gives it an
//!   open file description of its own, so that its liveness lock is its own
//!   and not shared with the process it got the descriptor from.
//!
//! This module, [`crate::fork`] and [`crate::ring`] are the only ones with
//! `unsafe` code that touches mappings.
//!
//! # Liveness
//!
//! Each participant holds an open-file-description lock (`F_OFD_SETLK`) on one
//! byte of the segment ([`Slot::lock_byte`]). The kernel drops it when the
//! holder's last descriptor for that open file closes, which includes every
//! kind of death, so a probe (`F_OFD_GETLK`) is exact and immediate, and means
//! the same across PID namespaces and after pid reuse. The pid in the slot is
//! only a hint for humans.
//!
//! Liveness is per process. A forked child inherits descriptors and
//! mappings, and each would keep the parent's open file description, and so
//! its lock, alive as long as the child lives: so a handle's descriptor and
//! mappings are tracked, and closed and blanked in every forked child (see
//! [`crate::fork`]). What a child needs it attaches afresh.

use crate::error::{Corrupted, Error};
use crate::fork::{self, Scope, Tracked};
use crate::layout::{
    IdentityFields, Kind, SegmentHeader, Slot, HEADER_BYTES, MAGIC, MAX_PRODUCERS, RECOVERY_LOCK_BYTE,
    STATE_INITIALIZING, STATE_READY, VERSION,
};
use crate::record::record_size;
use crate::region::Region;
use crate::sync::{fence, AtomicU32, Ordering};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FallocateFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;
use std::mem::ManuallyDrop;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Smallest data region.
pub const MIN_CAPACITY: u64 = 4096;
/// Largest data region (1 TiB): positions are `u64`, mappings are `usize`.
pub const MAX_CAPACITY: u64 = 1 << 40;

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
    pub max_message: u32,
    pub max_producers: u32,
    pub mode: u32,
}

/// How to attach to an existing segment.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The kind the caller needs (`None`: any, for tools).
    pub kind: Option<Kind>,
    pub allow_foreign_owner: bool,
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
    if shape.max_message == 0 || u64::from(shape.max_message) > max_allowed {
        return invalid(format!(
            "max message size {} is not allowed: with a capacity of {cap} it must be from 1 to {max_allowed} bytes \
             (a record plus the padding before it must fit in the ring)",
            shape.max_message
        ));
    }
    let producers_ok = match shape.kind {
        Kind::Spsc => shape.max_producers == 1,
        Kind::Mpsc => (1..=MAX_PRODUCERS as u32).contains(&shape.max_producers),
    };
    if !producers_ok {
        return invalid(format!(
            "max producers {} is not allowed for an {} ring (SPSC: 1, MPSC: 1 to {MAX_PRODUCERS})",
            shape.max_producers, shape.kind
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

/// Offset of the data region: the header page, or one page if pages are
/// larger.
fn data_offset() -> u64 {
    HEADER_BYTES.max(page_size())
}

/// A mapped segment. Owns the descriptor (and so its participant lock) and
/// the mapping; unmaps on drop, and unlinks a shared-memory name if it
/// created it and was asked to (files and memfds are never removed). In a
/// process forked from the one that made it (a handle's segment), dropping it
/// does none of that: see [`crate::fork`].
#[derive(Debug)]
pub(crate) struct Segment {
    /// The name for messages: `/name`, the file's path, or `memfd:label`.
    name: Arc<str>,
    region: Region,
    /// Declared after `region`, which points into it, and before `fd`.
    mapping: Mapping,
    fd: SegmentFd,
    /// The identity as validated at attach: sizes are never re-read from
    /// shared memory.
    identity: IdentityFields,
    /// Unlink the shared-memory name on drop (a creator that was asked to).
    unlink_on_drop: bool,
    /// Whether every process that can write the segment runs as this
    /// process's user (see [`writers_trusted`](Self::writers_trusted)).
    writers_trusted: bool,
    /// A regular file: the ring outlives the machine (see
    /// [`crate::ring::durable`]).
    persistent: bool,
}

// SAFETY: the segment owns its descriptor and mapping; nothing in it is tied
// to the thread that made it, and all access to the mapping is through atomics
// or through the ring's single-owner protocol.
unsafe impl Send for Segment {}

impl Segment {
    /// Creates the segment `O_CREAT | O_EXCL` (never touching an existing
    /// object), sizes it, reserves its pages, maps it and writes the header.
    pub(crate) fn create(name: &str, shape: &Shape, unlink_on_drop: bool) -> Result<Segment, Error> {
        validate_name(name)?;
        check_shape(name, shape)?;
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let fd = SegmentFd::open(name, "shm_open", Scope::Process, || {
            shm::open(name, flags, Mode::from_raw_mode(shape.mode))
        })?;
        // From here on the name is ours: remove it again if anything fails.
        let created = Self::init(name, fd, shape, unlink_on_drop);
        if created.is_err() {
            let _ = shm::unlink(name);
        }
        created
    }

    /// Creates the regular file `path` (`O_CREAT | O_EXCL`, never an existing
    /// file) as a segment. The file stays when the segment is dropped.
    pub(crate) fn create_file(path: &Path, shape: &Shape) -> Result<Segment, Error> {
        let name = path.to_string_lossy();
        check_shape(&name, shape)?;
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = SegmentFd::open(&name, "open", Scope::Process, || {
            rustix::fs::open(path, flags, Mode::from_raw_mode(shape.mode))
        })?;
        let created = Self::init(&name, fd, shape, false).and_then(|mut segment| {
            segment.persistent = true;
            // The header on the disk and the file in its directory, before
            // anyone is told the ring exists: a crash after this returns
            // leaves a ring that reopens.
            segment.msync(0, segment.identity.total_size, true)?;
            rustix::fs::fsync(&segment.fd).map_err(|e| Error::from_os(&name, "fsync", e))?;
            sync_directory_of(path).map_err(|e| Error::from_os(&name, "fsync (directory)", e))?;
            Ok(segment)
        });
        if created.is_err() {
            let _ = std::fs::remove_file(path);
        }
        created
    }

    /// Creates an anonymous memfd segment, sealed against shrinking (and
    /// growing, and further seals) once sized. Its descriptor and mapping are
    /// inherited by forked children as they are (an anonymous ring's own
    /// segment, which takes no role).
    pub(crate) fn create_memfd(label: &str, shape: &Shape) -> Result<Segment, Error> {
        let name = format!("memfd:{label}");
        check_shape(&name, shape)?;
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let fd = SegmentFd::open(&name, "memfd_create", Scope::Inherited, || rustix::fs::memfd_create(label, flags))?;
        let mut segment = Self::init(&name, fd, shape, false)?;
        // Only holders of the descriptor can write a memfd, whatever its mode.
        segment.writers_trusted = true;
        rustix::fs::fcntl_add_seals(&segment.fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| Error::from_os(&name, "fcntl(F_ADD_SEALS)", e))?;
        Ok(segment)
    }

    fn init(name: &str, fd: SegmentFd, shape: &Shape, unlink_on_drop: bool) -> Result<Segment, Error> {
        // The umask may have narrowed the mode: set it exactly.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(shape.mode)).map_err(|e| Error::from_os(name, "fchmod", e))?;
        let total = data_offset() + shape.capacity;
        rustix::fs::ftruncate(&fd, total).map_err(|e| Error::from_os(name, "ftruncate", e))?;
        // Reserve the pages now, so a full /dev/shm is an error here rather
        // than a SIGBUS at the first touch of a page later.
        match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, total) {
            Ok(()) | Err(Errno::OPNOTSUPP) => {}
            Err(Errno::NOSPC) => return Err(Error::NoSpace { segment: name.to_owned(), bytes: total }),
            Err(e) => return Err(Error::from_os(name, "fallocate", e)),
        }
        let identity = IdentityFields {
            magic: MAGIC,
            version: VERSION,
            kind: shape.kind.code(),
            capacity: shape.capacity,
            data_offset: data_offset(),
            total_size: total,
            max_message: shape.max_message,
            max_producers: shape.max_producers,
            creator_pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
            creator_uid: rustix::process::geteuid().as_raw(),
        };
        let mut segment = Self::map(name, fd, identity, unlink_on_drop, true, true)?;
        // Made here with these permission bits (exactly: see `fchmod` above).
        segment.writers_trusted = shape.mode & 0o022 == 0;
        let header = segment.header();
        store_boot_id(&header.ring.persistence, current_boot_id());
        header.identity.write(&identity);
        header.identity.state.store(STATE_READY, Ordering::Release);
        Ok(segment)
    }

    /// Opens an existing segment and validates its header against `fstat` and
    /// `expect`, waiting up to `expect.ready_timeout` for its creator to
    /// finish.
    pub(crate) fn open(name: &str, expect: &Expect) -> Result<Segment, Error> {
        validate_name(name)?;
        let fd =
            SegmentFd::open(name, "shm_open", Scope::Process, || shm::open(name, shm::OFlags::RDWR, Mode::empty()))?;
        Self::attach(name, fd, expect, true)
    }

    /// Opens the file segment `path` and validates it. After a restart of
    /// the machine the caller recovers it (see [`restarted`](Self::restarted)).
    pub(crate) fn open_file(path: &Path, expect: &Expect) -> Result<Segment, Error> {
        let name = path.to_string_lossy();
        let fd = SegmentFd::open(&name, "open", Scope::Process, || {
            rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        })?;
        let mut segment = Self::attach(&name, fd, expect, true)?;
        segment.persistent = true;
        Ok(segment)
    }

    /// Opens a memfd segment from descriptor number `fd` of this process
    /// (inherited, or received over a Unix socket). It is reopened through
    /// `/proc/self/fd`, so the segment has an open file description (and so
    /// liveness locks) of its own, and no descriptor is taken over. It must be
    /// sealed against shrinking (so that no one can truncate it under our
    /// mapping) and hold a valid header. `scope`: [`Scope::Process`] for a
    /// handle, [`Scope::Inherited`] for an anonymous ring's own segment.
    ///
    /// The descriptor as received is checked first, and only a regular file
    /// sealed against shrinking (which only a memfd can be) is reopened:
    /// reopening read-write whatever a peer sent (a FIFO, a device, a file
    /// opened read-only) would act on it before knowing what it is.
    pub(crate) fn open_memfd(
        fd: std::os::fd::RawFd,
        label: &str,
        expect: &Expect,
        scope: Scope,
    ) -> Result<Segment, Error> {
        let name = format!("memfd:{label}");
        let received = fstat_raw(fd).map_err(|e| Error::from_os(&name, "fstat", e))?;
        let file_type = received.st_mode & libc::S_IFMT;
        if file_type != libc::S_IFREG {
            return Err(Error::NotMemfd { segment: name, found: file_type_name(file_type) });
        }
        // EINVAL: not a memfd (nor anything else that can be sealed).
        let seals = seals_raw(fd).unwrap_or(SealFlags::empty());
        if !seals.contains(SealFlags::SHRINK) {
            return Err(Error::NotSealed { segment: name });
        }
        let path = format!("/proc/self/fd/{fd}");
        let own = SegmentFd::open(&name, "open(/proc/self/fd)", scope, || {
            rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        })?;
        // Another thread may have closed the number and opened something else
        // on it since the checks: the reopened file must be the one checked
        // (seals belong to the file and are never removed, so they hold).
        let reopened = rustix::fs::fstat(&own).map_err(|e| Error::from_os(&name, "fstat", e))?;
        if (reopened.st_dev, reopened.st_ino) != (received.st_dev, received.st_ino) {
            return Err(Error::Io {
                segment: name,
                op: "open(/proc/self/fd)",
                source: std::io::Error::other(format!("descriptor {fd} changed while it was being reopened")),
            });
        }
        let mut segment = Self::attach(&name, own, expect, true)?;
        // Only holders of a descriptor can write a memfd, whatever its mode:
        // its creator (the owner) and whoever it was handed to, which the
        // caller judges (`AnonymousRing`).
        segment.writers_trusted = segment.file_stat()?.0 == rustix::process::geteuid().as_raw();
        Ok(segment)
    }

    /// Opens and validates a segment read-only, taking no role: for tools that
    /// look at segments (of any kind, and of other users) without touching
    /// them. Such a segment is never handed to a ring, and its header is only
    /// read with Relaxed loads (ordered by fences where needed): on a
    /// `PROT_READ` mapping any other atomic access is undefined behaviour.
    pub(crate) fn open_read_only(name: &str, ready_timeout: Duration) -> Result<Segment, Error> {
        validate_name(name)?;
        let fd = SegmentFd::open(name, "shm_open", Scope::Inherited, || {
            shm::open(name, shm::OFlags::RDONLY, Mode::empty())
        })?;
        let expect = Expect { kind: None, allow_foreign_owner: true, ready_timeout };
        Self::attach(name, fd, &expect, false)
    }

    /// Opens and validates a file segment read-only, taking no role (tools).
    pub(crate) fn open_file_read_only(path: &Path, ready_timeout: Duration) -> Result<Segment, Error> {
        let name = path.to_string_lossy();
        let fd = SegmentFd::open(&name, "open", Scope::Inherited, || {
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        })?;
        let expect = Expect { kind: None, allow_foreign_owner: true, ready_timeout };
        Self::attach(&name, fd, &expect, false)
    }

    fn attach(name: &str, fd: SegmentFd, expect: &Expect, writable: bool) -> Result<Segment, Error> {
        // A timeout longer than `Instant` can count to (`Duration::MAX`) means
        // no deadline at all, not an overflow.
        let deadline = Instant::now().checked_add(expect.ready_timeout);
        let segment = name.to_owned();
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::from_os(name, "fstat", e))?;
        // The effective uid: the one a segment made here belongs to, and the
        // one the trust rule compares owners with.
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me && !expect.allow_foreign_owner {
            return Err(Error::PermissionDenied {
                segment,
                detail: format!(
                    "it belongs to uid {}, not to this process's uid {me} (see RingOptions::allow_foreign_owner)",
                    stat.st_uid
                ),
            });
        }
        // The creator sizes the object right after creating it: wait for a
        // header to be there at all.
        let mut size = stat.st_size as u64;
        while size < HEADER_BYTES {
            if size >= 8 && !starts_with_magic(&fd) {
                return Err(Error::NotShmring { segment });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(if size == 0 {
                    Error::NotReady { segment, waited: expect.ready_timeout }
                } else {
                    Error::SizeMismatch { segment, expected: HEADER_BYTES, found: size }
                });
            }
            std::thread::sleep(Duration::from_millis(1));
            size = rustix::fs::fstat(&fd).map_err(|e| Error::from_os(name, "fstat", e))?.st_size as u64;
        }
        // Map only the header until it is validated: its sizes are untrusted.
        let probe = Mapping::new(name, &fd, HEADER_BYTES as usize, false, writable, false)?;
        let (identity, stored_checksum) = probe.header().identity.wait_ready(name, deadline, expect.ready_timeout)?;
        validate_identity(name, &identity, stored_checksum, size, expect)?;
        drop(probe);
        // Pre-fault the pages only if they all exist (a segment made here is
        // fully allocated): populating a hostile sparse object would allocate
        // all of it.
        let blocks = rustix::fs::fstat(&fd).map_err(|e| Error::from_os(name, "fstat", e))?.st_blocks as u64;
        let populate = writable && blocks.saturating_mul(512) >= size;
        let mut segment = Self::map(name, fd, identity, false, populate, writable)?;
        segment.writers_trusted = stat.st_uid == rustix::process::geteuid().as_raw() && stat.st_mode & 0o022 == 0;
        Ok(segment)
    }

    fn map(
        name: &str,
        fd: SegmentFd,
        identity: IdentityFields,
        unlink_on_drop: bool,
        populate: bool,
        writable: bool,
    ) -> Result<Segment, Error> {
        let mapping = Mapping::new(name, &fd, identity.total_size as usize, populate, writable, true)?;
        let data = NonNull::new(mapping.base.as_ptr().wrapping_add(identity.data_offset as usize))
            .ok_or_else(|| Error::Corrupted(Corrupted::new(&Arc::from(name), "data region at a null address")))?;
        // SAFETY: validated (or, for a new segment, chosen) so that
        // `data_offset + capacity == total_size`, the length we mapped; the data
        // offset is a multiple of the page size so `data` is 8-aligned; the
        // capacity is a power of two >= 4096. The mapping is owned by the
        // `Segment` we return, which drops `region` before unmapping (in a
        // forked child, where it is never unmapped, the child handler puts
        // private memory of the same size in its place: see `fork::blank`).
        // The count of views lent in place lives in the mapping too. A
        // read-only segment's region is only ever loaded from: such segments
        // are never handed to a ring, which is the only writer.
        let region = unsafe { Region::from_raw(data, identity.capacity as usize, mapping.lent.as_deref()) };
        let writers_trusted = false;
        let persistent = false;
        Ok(Segment {
            name: Arc::from(name),
            region,
            mapping,
            fd,
            identity,
            unlink_on_drop,
            writers_trusted,
            persistent,
        })
    }

    /// The segment's descriptor (the memfd to hand to another process).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes the data of positions `from..to` (at most a lap) back to the
    /// file and waits (`msync(MS_SYNC)`).
    pub(crate) fn write_back_positions(&self, from: u64, to: u64) -> Result<(), Error> {
        let capacity = self.identity.capacity;
        let data = self.identity.data_offset;
        let mut at = from;
        while at < to && to - at <= capacity {
            let offset = at & (capacity - 1);
            let len = (to - at).min(capacity - offset);
            self.msync(data + offset, len, true)?;
            at += len;
        }
        Ok(())
    }

    /// Writes the header back to the file and waits (`msync(MS_SYNC)`).
    pub(crate) fn write_back_header(&self) -> Result<(), Error> {
        self.msync(0, HEADER_BYTES, true)
    }

    fn msync(&self, offset: u64, len: u64, sync: bool) -> Result<(), Error> {
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
    fn copy_of(&self, start: u64, end: u64) -> Vec<u8> {
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
        let mut at = from;
        while at < to && to - at <= capacity {
            let offset = at & (capacity - 1);
            let len = (to - at).min(capacity - offset);
            ranges.push((data + offset, len));
            at += len;
        }
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

    /// File segments: whether the machine restarted since the segment was
    /// last created or recovered (the header holds another boot id).
    pub(crate) fn restarted(&self) -> bool {
        load_boot_id(&self.header().ring.persistence) != current_boot_id()
    }

    /// Takes the lock that serialises recovery after a restart (waiting for
    /// it); released when the guard drops.
    pub(crate) fn lock_recovery(&self) -> Result<RecoveryLock<'_>, Error> {
        if self.recovery_lock(libc::F_WRLCK) != 0 {
            let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
            return Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLKW)", errno));
        }
        Ok(RecoveryLock(self))
    }

    fn recovery_lock(&self, kind: libc::c_int) -> libc::c_int {
        let mut lock = byte_lock_at(kind, RECOVERY_LOCK_BYTE);
        // SAFETY: `fcntl(F_OFD_SETLKW)` reads the `flock` we pass by
        // pointer, valid for the call; the descriptor is open.
        unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLKW, &mut lock) }
    }

    /// Records this boot's id in the header and writes the header back: the
    /// segment is current (recovered, or proven not to need it).
    pub(crate) fn mark_booted(&self) -> Result<(), Error> {
        store_boot_id(&self.header().ring.persistence, current_boot_id());
        self.write_back_header()
    }

    /// Whether every process that can write the segment runs as this
    /// process's user, as far as the segment itself tells: it belongs to
    /// this user (the effective uid) and gives no write permission to its
    /// group or others, as it was when attached (for a memfd, only its owner;
    /// who else holds a descriptor is the caller's to judge). Such processes
    /// can already write this process's memory (`ptrace`), so trusting them
    /// to keep the protocol costs nothing; anyone else may not be.
    pub(crate) fn writers_trusted(&self) -> bool {
        self.writers_trusted
    }

    /// The data region.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// Whether the segment is a regular file, which outlives the machine.
    pub(crate) fn persistent(&self) -> bool {
        self.persistent
    }

    /// The segment's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Owner, permission bits and size of the object, from `fstat`.
    pub(crate) fn file_stat(&self) -> Result<(u32, u32, u64), Error> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| Error::from_os(&self.name, "fstat", e))?;
        Ok((stat.st_uid, stat.st_mode & 0o7777, stat.st_size as u64))
    }

    /// The identity validated at attach.
    pub(crate) fn identity(&self) -> &IdentityFields {
        &self.identity
    }

    /// The kind validated at attach.
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_code(self.identity.kind).unwrap_or(Kind::Spsc)
    }

    /// The whole header.
    pub(crate) fn header(&self) -> &SegmentHeader {
        self.mapping.header()
    }

    /// Takes the participant lock of `slot`: `false` if a live process holds
    /// it.
    pub(crate) fn try_lock(&self, slot: Slot) -> Result<bool, Error> {
        let mut lock = byte_lock(libc::F_WRLCK, slot);
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::from_io_error(&std::io::Error::last_os_error()) {
            Some(Errno::AGAIN) | Some(Errno::ACCESS) => Ok(false),
            Some(e) => Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK)", e)),
            None => Ok(false),
        }
    }

    /// Whether any participant (the consumer or a producer slot) holds its
    /// lock.
    pub(crate) fn any_participant_alive(&self) -> bool {
        let producers = (0..self.identity.max_producers as usize).map(Slot::Producer);
        std::iter::once(Slot::Consumer).chain(producers).any(|slot| self.is_locked(slot))
    }

    /// Releases the participant lock of `slot` (taken with
    /// [`try_lock`](Self::try_lock) by a producer that then found the slot
    /// unusable).
    pub(crate) fn unlock(&self, slot: Slot) -> Result<(), Error> {
        let mut lock = byte_lock(libc::F_UNLCK, slot);
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(());
        }
        let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
        Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK, F_UNLCK)", errno))
    }

    /// Takes a shared lock on every participant's lock byte (the consumer's
    /// and each producer slot's) at once: `false` if a live participant
    /// holds one. Held until the segment is dropped; meanwhile no process
    /// can take a role in the segment (its `try_lock` fails). For removing a
    /// stale segment; works on a read-only segment.
    pub(crate) fn try_hold_participants(&self) -> Result<bool, Error> {
        let mut lock = byte_lock_at(libc::F_RDLCK, Slot::Consumer.lock_byte());
        // Bytes 0..=max_producers: the consumer's, then producer n's at 1 + n.
        lock.l_len = libc::off_t::from(self.identity.max_producers) + 1;
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::from_io_error(&std::io::Error::last_os_error()) {
            Some(Errno::AGAIN) | Some(Errno::ACCESS) | None => Ok(false),
            Some(e) => Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK, F_RDLCK)", e)),
        }
    }

    /// Device and inode of the object (`fstat`): which file this is,
    /// whatever its name refers to now.
    pub(crate) fn file_id(&self) -> Result<(u64, u64), Error> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| Error::from_os(&self.name, "fstat", e))?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// Whether some open file description (another handle, in any process)
    /// holds the participant lock of `slot`.
    pub(crate) fn is_locked(&self, slot: Slot) -> bool {
        let mut lock = byte_lock(libc::F_WRLCK, slot);
        // SAFETY: `fcntl(F_OFD_GETLK)` reads and writes the `flock` we pass by
        // pointer, valid for the call; the descriptor is open.
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        // If the probe itself fails, say "alive": a false "dead" would let a
        // second process take a live role.
        rc != 0 || lock.l_type != libc::F_UNLCK as libc::c_short
    }
}

/// `fsync` of the directory holding `path`, so that the file's entry is on
/// the disk.
fn sync_directory_of(path: &Path) -> Result<(), Errno> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&dir)
}

/// The recovery lock of a segment, held until dropped (see
/// [`Segment::lock_recovery`]).
pub(crate) struct RecoveryLock<'a>(&'a Segment);

impl Drop for RecoveryLock<'_> {
    fn drop(&mut self) {
        self.0.recovery_lock(libc::F_UNLCK);
    }
}

impl Drop for Segment {
    /// Unlinks the name if asked to (then the fields unmap and close), except
    /// in a process forked from the one that made the segment, which has no
    /// business removing it.
    fn drop(&mut self) {
        if self.unlink_on_drop && !self.fd.inherited() {
            let _ = shm::unlink(&*self.name);
        }
    }
}

/// A segment's descriptor: closed on drop (with forks held off if it is
/// tracked), and left alone in a forked child, whose atfork handler closed
/// it already (see [`crate::fork`]).
#[derive(Debug)]
struct SegmentFd {
    fd: ManuallyDrop<OwnedFd>,
    /// `None`: [`Scope::Inherited`].
    tracked: Option<Tracked>,
}

impl SegmentFd {
    /// Opens a descriptor with `open`, `op` naming the call in errors.
    fn open(
        name: &str,
        op: &'static str,
        scope: Scope,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<SegmentFd, Error> {
        let (fd, tracked) = fork::open_fd(scope, open).map_err(|e| Error::from_os(name, op, e))?;
        Ok(SegmentFd { fd: ManuallyDrop::new(fd), tracked })
    }

    fn scope(&self) -> Scope {
        if self.tracked.is_some() {
            Scope::Process
        } else {
            Scope::Inherited
        }
    }

    /// Whether this process was forked from the one that opened it.
    fn inherited(&self) -> bool {
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

/// A `flock` for one participant byte.
fn byte_lock(kind: libc::c_int, slot: Slot) -> libc::flock {
    byte_lock_at(kind, slot.lock_byte())
}

/// A `flock` for the byte at `offset`.
fn byte_lock_at(kind: libc::c_int, offset: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers; all-zero is a valid
    // value (and the `l_pid` of 0 that OFD locks require).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = offset as libc::off_t;
    lock.l_len = 1;
    lock
}

/// The kernel's boot id as two words; zeros if it cannot be read (then a
/// file segment is recovered on every open that finds no participant alive:
/// safe, and only unflushed records are at stake).
fn current_boot_id() -> [u64; 2] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    match u128::from_str_radix(&hex, 16) {
        Ok(id) if hex.len() == 32 && id != 0 => [(id >> 64) as u64, id as u64],
        _ => [0, 0],
    }
}

fn load_boot_id(line: &crate::layout::PersistenceLine) -> [u64; 2] {
    let id = [line.boot_id[0].load(Ordering::Relaxed), line.boot_id[1].load(Ordering::Relaxed)];
    // An unreadable boot id never matches, so such a segment is recovered.
    if id == [0, 0] {
        [u64::MAX; 2]
    } else {
        id
    }
}

fn store_boot_id(line: &crate::layout::PersistenceLine, id: [u64; 2]) {
    line.boot_id[0].store(id[0], Ordering::Relaxed);
    line.boot_id[1].store(id[1], Ordering::Relaxed);
}

/// `fstat` of descriptor number `fd`, which may not be open (then `EBADF`):
/// no `BorrowedFd` is made of a number nobody vouches for.
fn fstat_raw(fd: std::os::fd::RawFd) -> Result<libc::stat, Errno> {
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
fn seals_raw(fd: std::os::fd::RawFd) -> Result<SealFlags, Errno> {
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
fn file_type_name(file_type: libc::mode_t) -> &'static str {
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

fn starts_with_magic(fd: &SegmentFd) -> bool {
    let mut magic = [0u8; 8];
    matches!(rustix::io::pread(fd, &mut magic, 0), Ok(8)) && u64::from_le_bytes(magic) == MAGIC
}

/// A plain `mmap` owned until dropped (the header probe, and the segment's
/// mapping), tracked like its descriptor (see [`SegmentFd`]): in a forked
/// child it is never unmapped, the child handler having put private memory in
/// its place.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    len: usize,
    /// `None`: [`Scope::Inherited`].
    tracked: Option<Tracked>,
    /// Views of the data lent in place (the ring's `Region` counts them): a
    /// child forked while one is lent gets a copy of the bytes, not zeros.
    /// Boxed, so its address (tracked with the mapping) stays put.
    lent: Option<Box<AtomicU32>>,
}

impl Mapping {
    /// Maps `len` bytes of `fd`, tracked as `fd` is; `populate` pre-faults
    /// them (`MAP_POPULATE`), so the first lap of the ring takes no page
    /// faults.
    fn new(
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

    fn header(&self) -> &SegmentHeader {
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
    fn wait_ready(
        &self,
        name: &str,
        deadline: Option<Instant>,
        waited: Duration,
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
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::NotReady { segment: name.to_owned(), waited });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Checks every identity field before any of them is used.
fn validate_identity(
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
    if id.data_offset < HEADER_BYTES || id.data_offset % page_size() != 0 || id.data_offset > 1 << 20 {
        return Err(corrupt(
            name,
            format!("data offset {} is not a page-aligned offset after the header", id.data_offset),
        ));
    }
    let shape = Shape {
        kind: kind.unwrap_or(Kind::Spsc),
        capacity: id.capacity,
        max_message: id.max_message,
        max_producers: id.max_producers,
        mode: 0o600,
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

fn corrupt(name: &str, what: String) -> Error {
    Error::Corrupted(Corrupted::new(&Arc::from(name), what))
}
