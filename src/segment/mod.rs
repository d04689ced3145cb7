//! A mapped segment: a shared-memory object, a regular file or a memfd,
//! sized with `ftruncate` + `fallocate` and mapped `MAP_SHARED`; the
//! validation of a header found in one; the kernel locks that tell whether a
//! participant is alive; and, for files, write-back (`msync`) and the
//! boot id and lock that recovery after a restart needs (the recovery itself
//! is the ring's, run by `channel::backing`). It knows nothing of the ring
//! algorithms: its only view of the data is a [`Region`].
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
//! This module (with its [`fork`]), [`crate::region`] and [`crate::ring`] are the
//! only ones with `unsafe` code that touches mappings.
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
//! [`fork`]). What a child needs it attaches afresh.

use crate::error::{Corrupted, Error};
use crate::layout::{
    IdentityFields, Kind, SegmentHeader, Slot, HEADER_BYTES, MAGIC, MAX_PRODUCERS, RECOVERY_LOCK_BYTE,
    STATE_INITIALIZING, STATE_READY, VERSION,
};
use crate::record::record_size;
use crate::region::Region;
use crate::sync::{fence, AtomicU32, Ordering};
use fork::{Scope, Tracked};
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

mod fd;
pub(crate) mod fork;
mod huge;
mod locks;
mod mapping;
mod shape;
mod validate;
mod write_back;

use fd::*;
use huge::*;
use locks::*;
use mapping::*;
pub(crate) use shape::*;
pub use shape::{unlink, validate_name};
use validate::*;
use write_back::*;

/// A mapped segment. Owns the descriptor (and so its participant lock) and
/// the mapping; unmaps on drop, and unlinks a shared-memory name if it
/// created it and was asked to (files and memfds are never removed). In a
/// process forked from the one that made it (a handle's segment), dropping it
/// does none of that: see [`fork`].
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

/// How a segment being attached was reached: by a name (shared memory or a
/// file path, which its creator removes if it fails) or not (a memfd).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Named {
    Yes,
    No,
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
        refuse_huge_pages(name, shape)?;
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
        refuse_huge_pages(&name, shape)?;
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
        let mut flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        if shape.huge_pages {
            flags |= rustix::fs::MemfdFlags::HUGETLB | rustix::fs::MemfdFlags::HUGE_2MB;
        }
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
        let total = data_offset(shape) + shape.capacity;
        rustix::fs::ftruncate(&fd, total).map_err(|e| Error::from_os(name, "ftruncate", e))?;
        // Reserve the pages now, so a full /dev/shm (or huge page pool) is
        // an error here rather than a SIGBUS at the first touch of a page
        // later.
        match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, total) {
            Ok(()) | Err(Errno::OPNOTSUPP) => {}
            Err(Errno::NOSPC) if shape.huge_pages => {
                return Err(Error::NoHugePages { segment: name.to_owned(), bytes: total })
            }
            Err(Errno::NOSPC) => return Err(Error::NoSpace { segment: name.to_owned(), bytes: total }),
            Err(e) => return Err(Error::from_os(name, "fallocate", e)),
        }
        let identity = IdentityFields {
            magic: MAGIC,
            version: VERSION,
            kind: shape.kind.code(),
            capacity: shape.capacity,
            data_offset: data_offset(shape),
            total_size: total,
            // Both checked by `check_shape` (at most u32::MAX - 8 and 64).
            max_message: shape.max_message as u32,
            max_producers: shape.max_producers as u32,
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
        until_created(expect.open_timeout, || {
            let fd = SegmentFd::open(name, "shm_open", Scope::Process, || {
                shm::open(name, shm::OFlags::RDWR, Mode::empty())
            })?;
            Self::attach(name, fd, expect, Named::Yes, true)
        })
    }

    /// Opens the file segment `path` and validates it. After a restart of
    /// the machine the caller recovers it (see [`restarted`](Self::restarted)).
    pub(crate) fn open_file(path: &Path, expect: &Expect) -> Result<Segment, Error> {
        let name = path.to_string_lossy();
        let mut segment = until_created(expect.open_timeout, || {
            let fd = SegmentFd::open(&name, "open", Scope::Process, || {
                rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            })?;
            Self::attach(&name, fd, expect, Named::Yes, true)
        })?;
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
        let mut segment = Self::attach(&name, own, expect, Named::No, true)?;
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
        let expect = Expect { kind: None, allow_foreign_owner: true, open_timeout: Duration::ZERO, ready_timeout };
        Self::attach(name, fd, &expect, Named::Yes, false)
    }

    /// Opens and validates a file segment read-only, taking no role (tools).
    pub(crate) fn open_file_read_only(path: &Path, ready_timeout: Duration) -> Result<Segment, Error> {
        let name = path.to_string_lossy();
        let fd = SegmentFd::open(&name, "open", Scope::Inherited, || {
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        })?;
        let expect = Expect { kind: None, allow_foreign_owner: true, open_timeout: Duration::ZERO, ready_timeout };
        Self::attach(&name, fd, &expect, Named::Yes, false)
    }

    fn attach(name: &str, fd: SegmentFd, expect: &Expect, named: Named, writable: bool) -> Result<Segment, Error> {
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
        // A creator that fails removes the name it made: an object opened
        // by name (a memfd never has one) that has lost it while we wait for
        // its header is gone, and the name may be made again. `NotFound`, so
        // that an open with `open_timeout` goes back to waiting for it. Not
        // judged from the first `fstat`: the name may already be gone then.
        let named = named == Named::Yes;
        let removed = |fd: &SegmentFd| named && rustix::fs::fstat(fd).is_ok_and(|now| now.st_nlink == 0);
        // The creator sizes the object right after creating it: wait for a
        // header to be there at all.
        let mut size = stat.st_size as u64;
        while size < HEADER_BYTES {
            if size >= 8 && !starts_with_magic(&fd) {
                return Err(Error::NotShmring { segment });
            }
            if removed(&fd) {
                return Err(Error::NotFound { segment });
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
        // On huge pages the probe is one huge page: the kernel maps that much
        // anyway, and would refuse to unmap less of it.
        let huge_page = huge_page_of(&fd);
        let probe_len = HEADER_BYTES.max(huge_page.unwrap_or(0));
        let probe = Mapping::new(name, &fd, probe_len as usize, false, writable, false)
            .map_err(|e| pool_short(e, huge_page.is_some(), probe_len))?;
        let (identity, stored_checksum) =
            probe.header().identity.wait_ready(name, deadline, expect.ready_timeout, || removed(&fd))?;
        validate_identity(name, &identity, stored_checksum, size, expect)?;
        drop(probe);
        // Pre-fault the pages only if they all exist (a segment made here is
        // fully allocated): populating a hostile sparse object would allocate
        // all of it. (On hugetlbfs the mapping reserves a sparse object's
        // huge pages anyway, and fails if the pool cannot: `NoHugePages`.)
        let blocks = rustix::fs::fstat(&fd).map_err(|e| Error::from_os(name, "fstat", e))?.st_blocks as u64;
        let populate = writable && blocks.saturating_mul(512) >= size;
        let mut segment = Self::map(name, fd, identity, false, populate, writable)
            .map_err(|e| pool_short(e, huge_page.is_some(), identity.total_size))?;
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
    #[inline]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// Whether the segment is a regular file, which outlives the machine.
    #[inline]
    pub(crate) fn persistent(&self) -> bool {
        self.persistent
    }

    /// The segment's name.
    #[inline]
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Owner, permission bits and size of the object, from `fstat`.
    pub(crate) fn file_stat(&self) -> Result<(u32, u32, u64), Error> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| Error::from_os(&self.name, "fstat", e))?;
        Ok((stat.st_uid, stat.st_mode & 0o7777, stat.st_size as u64))
    }

    /// The identity validated at attach.
    #[inline]
    pub(crate) fn identity(&self) -> &IdentityFields {
        &self.identity
    }

    /// Bytes in the data region (mapped, so within the address space).
    pub(crate) fn capacity(&self) -> usize {
        self.identity.capacity as usize
    }

    /// The largest message, as validated at attach.
    pub(crate) fn max_message(&self) -> usize {
        self.identity.max_message as usize
    }

    /// The kind validated at attach.
    #[inline]
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_code(self.identity.kind).unwrap_or(Kind::Spsc)
    }

    /// The whole header.
    #[inline]
    pub(crate) fn header(&self) -> &SegmentHeader {
        self.mapping.header()
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
