//! What becomes of a handle in a process forked from the one that attached
//! it: nothing that acts for the parent.
//!
//! A handle acts for the process that attached it, and that process's
//! liveness is what its lock says. A forked child gets a copy of everything:
//! the handle, its mapping and its descriptor. Left alone, the copy would act
//! for the parent (its drop would mark the parent's slot detached), and the
//! child's copy of the mapping or descriptor would keep the parent's open file
//! description, and so its liveness lock, for as long as the child lives (a
//! mapping references the open file description as much as a descriptor
//! does).
//!
//! # Mechanism
//!
//! * Every descriptor and mapping of a handle's segment is *tracked* in a
//!   process-local list from the system call that makes it to the one that
//!   releases it, both made with the list locked, so that no fork sees a
//!   descriptor or mapping the list does not.
//! * `pthread_atfork` handlers, installed once, before anything is tracked:
//!   *prepare* takes the list's spin lock (so the list is whole and nobody
//!   is half-way through changing it while the process is copied), *parent*
//!   releases it, and *child*, in the new process before `fork` returns
//!   there, replaces each tracked mapping with a private anonymous one of the
//!   same size (a view left over from the parent reads zeros instead of
//!   faulting, and reaches nobody), closes each tracked descriptor, empties
//!   the list and increments the *fork generation*. The child then holds no
//!   reference to the parent's open file descriptions: the parent's locks
//!   die with the parent.
//! * A handle records the generation it was attached in ([`ProcessLocal`]).
//!   Every operation compares it with the current one (one relaxed load, no
//!   system call) and fails in a child with [`ForkedHandle`]. In a child the
//!   handle's drop does nothing at all: no store to the (now private) header,
//!   no wake, no unlink, and no close or unmap (the descriptor numbers are
//!   closed already and may have been reused since).
//!
//! Not tracked: an [`AnonymousRing`]'s own memfd (a child is meant to inherit
//! it and attach afresh, and it holds no lock: every handle reopens it) and
//! read-only inspection segments (no lock either).
//!
//! The child handler runs in a copy of a possibly multi-threaded process, so
//! it makes only system calls (`mmap`, `munmap`, `close`, through rustix's
//! raw system calls) and touches only the list, which the prepare handler
//! locked for it: no allocation, no lock of anyone else's. A process made by
//! a raw `clone` system call skips the handlers and is not covered; `vfork`
//! and `posix_spawn` children share nothing once they `exec`, and every
//! descriptor shmring opens is close-on-exec.
//!
//! [`ForkedHandle`]: crate::ForkedHandle
//! [`AnonymousRing`]: crate::AnonymousRing

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use rustix::fd::{AsRawFd, OwnedFd, RawFd};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// How many forks separate this process from the first one: 0 in a process
/// that was not forked since the handlers were installed, and incremented
/// only by the child handler, before `fork` returns in the child. So within
/// one process it never changes once `fork` has returned, and a relaxed load
/// is enough: it is this process's own constant.
static GENERATION: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Whether a segment's descriptor and mappings belong to its process alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A handle's: tracked, and closed and blanked in a forked child.
    Process,
    /// An anonymous ring's own memfd, or an inspection: a child keeps them.
    Inherited,
}

/// One tracked descriptor or mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Fd(RawFd),
    /// `lent`: the address of the mapping's count of views lent in place
    /// (an `AtomicU32` that lives as long as the mapping), or 0.
    Mapping {
        base: usize,
        len: usize,
        lent: usize,
    },
}

/// A tracked descriptor or mapping, until it is [`release`]d.
#[derive(Debug)]
pub(crate) struct Tracked {
    entry: Entry,
    generation: u64,
}

impl Tracked {
    /// Whether this process was forked from the one that tracked it (whose
    /// child handler has closed or blanked it here).
    pub(crate) fn inherited(&self) -> bool {
        self.generation != generation()
    }
}

/// The tracked descriptors and mappings, behind a spin lock that the prepare
/// handler takes (a spin lock because the child handler must release it
/// without any help from the thread that held it, which does not exist
/// there).
struct Registry {
    locked: AtomicU32,
    entries: UnsafeCell<Vec<Entry>>,
}

// SAFETY: `entries` is only touched by a thread that holds `locked` (see
// `with_entries`, and the atfork handlers, which hold it from prepare to
// parent or child).
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry { locked: AtomicU32::new(0), entries: UnsafeCell::new(Vec::new()) };

fn lock() {
    let mut spins = 0u32;
    while REGISTRY.locked.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
        // Held only across one system call and a push or a removal.
        if spins < 100 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn unlock() {
    REGISTRY.locked.store(0, Ordering::Release);
}

/// Runs `f` on the list, with the lock held (so no fork happens meanwhile).
/// `f` must not fork, nor call back into this module.
fn with_entries<T>(f: impl FnOnce(&mut Vec<Entry>) -> T) -> T {
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            unlock();
        }
    }
    lock();
    let _unlock = Unlock;
    // SAFETY: the lock is held until `_unlock` drops, after `f` returns: no
    // other thread, and no atfork handler, touches the list meanwhile; `f`
    // does not re-enter this module, so this is the only reference.
    f(unsafe { &mut *REGISTRY.entries.get() })
}

/// Opens a descriptor with `open`; for [`Scope::Process`], with forks held
/// off, tracked until [`release`]d. Fails with `ENOMEM` if the fork handlers
/// cannot be installed (the only error `pthread_atfork` has).
pub(crate) fn open_fd(
    scope: Scope,
    open: impl FnOnce() -> Result<OwnedFd, Errno>,
) -> Result<(OwnedFd, Option<Tracked>), Errno> {
    if scope == Scope::Inherited {
        return Ok((open()?, None));
    }
    install()?;
    with_entries(|entries| {
        let fd = open()?;
        let entry = Entry::Fd(fd.as_raw_fd());
        entries.push(entry);
        Ok((fd, Some(Tracked { entry, generation: generation() })))
    })
}

/// Maps with `map` (which returns the mapping's base and length); for
/// [`Scope::Process`], with forks held off, tracked until [`release`]d.
/// `lent`, if any, counts the views of the mapping lent in place, and must
/// live as long as the mapping: a child forked while it is not zero gets a
/// copy of the mapping's bytes instead of zeros, so that no view changes.
pub(crate) fn map(
    scope: Scope,
    lent: Option<&AtomicU32>,
    map: impl FnOnce() -> Result<(NonNull<u8>, usize), Errno>,
) -> Result<(NonNull<u8>, usize, Option<Tracked>), Errno> {
    if scope == Scope::Inherited {
        let (base, len) = map()?;
        return Ok((base, len, None));
    }
    install()?;
    with_entries(|entries| {
        let (base, len) = map()?;
        let lent = lent.map_or(0, |count| count as *const AtomicU32 as usize);
        let entry = Entry::Mapping { base: base.as_ptr() as usize, len, lent };
        entries.push(entry);
        Ok((base, len, Some(Tracked { entry, generation: generation() })))
    })
}

/// Releases a descriptor or mapping: runs `release` (its `close` or
/// `munmap`), with forks held off and then untracked if it is tracked.
/// Except in a process forked from the one that tracked it: there the child
/// handler has closed or blanked it already (and a descriptor number may
/// name something else by now), so `release` is not run and this returns
/// `false`: the caller must leak what it holds.
pub(crate) fn release(tracked: Option<Tracked>, release: impl FnOnce()) -> bool {
    let Some(tracked) = tracked else {
        release();
        return true;
    };
    if tracked.inherited() {
        return false;
    }
    with_entries(|entries| {
        release();
        if let Some(at) = entries.iter().position(|entry| *entry == tracked.entry) {
            entries.swap_remove(at);
        }
    });
    true
}

/// A value (a handle's ring) that acts for the process that made it. In a
/// process forked from that one, [`inherited`](Self::inherited) is true and
/// dropping it does nothing: the value is leaked, its destructor never runs.
pub(crate) struct ProcessLocal<T> {
    value: ManuallyDrop<T>,
    generation: u64,
}

impl<T> ProcessLocal<T> {
    pub(crate) fn new(value: T) -> Self {
        ProcessLocal { value: ManuallyDrop::new(value), generation: generation() }
    }

    /// Whether this process was forked from the one that made the value: a
    /// relaxed load of a process-local word and a comparison, no system call.
    #[inline(always)]
    pub(crate) fn inherited(&self) -> bool {
        generation() != self.generation
    }

    /// A check that says, whenever called, whether this is still the
    /// process that made the value (for loops that run the caller's code,
    /// which may fork).
    pub(crate) fn still_here(&self) -> impl Fn() -> bool + use<T> {
        let made_in = self.generation;
        move || generation() == made_in
    }
}

impl<T> std::ops::Deref for ProcessLocal<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for ProcessLocal<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ProcessLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (*self.value).fmt(f)
    }
}

impl<T> Drop for ProcessLocal<T> {
    fn drop(&mut self) {
        if !self.inherited() {
            // SAFETY: `value` is dropped here, once, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}

/// `INSTALL` once the handlers are installed in this process. Before: 0, or
/// the pid of the process whose thread is installing them.
const INSTALLED: u32 = u32::MAX;
static INSTALL: AtomicU32 = AtomicU32::new(0);

/// Installs the atfork handlers, once per process image.
fn install() -> Result<(), Errno> {
    if INSTALL.load(Ordering::Acquire) == INSTALLED {
        return Ok(());
    }
    install_slow()
}

#[cold]
fn install_slow() -> Result<(), Errno> {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    loop {
        let state = INSTALL.load(Ordering::Acquire);
        if state == INSTALLED {
            return Ok(());
        }
        if state == me {
            // Another thread of this process is installing them.
            std::thread::yield_now();
            continue;
        }
        // 0: nobody started. Another pid: the process this one was forked
        // from was installing them when it forked, and the fork came first
        // (glibc orders `pthread_atfork` and `fork`; had the registration
        // come first, the child handler would have said INSTALLED here), so
        // they are not registered in this process. (A `Once` would wait for
        // ever here for a thread that does not exist in this process.)
        if INSTALL.compare_exchange(state, me, Ordering::Acquire, Ordering::Acquire).is_err() {
            continue;
        }
        let prepare: unsafe extern "C" fn() = prepare;
        let parent: unsafe extern "C" fn() = parent;
        let child: unsafe extern "C" fn() = child;
        // SAFETY: registers three functions that live for the whole program
        // and are sound to call at the points glibc calls them (see each).
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if rc != 0 {
            INSTALL.store(0, Ordering::Release);
            return Err(Errno::from_raw_os_error(rc));
        }
        INSTALL.store(INSTALLED, Ordering::Release);
        return Ok(());
    }
}

/// Before `fork`, in the forking thread: lock the list, so the child gets it
/// whole and no other thread is half-way through opening or closing a tracked
/// descriptor or mapping.
extern "C" fn prepare() {
    lock();
}

/// After `fork`, in the parent.
extern "C" fn parent() {
    unlock();
}

/// After `fork`, in the child (its only thread), before `fork` returns
/// there: give up every tracked descriptor and mapping, which belong to the
/// parent's handles, and move to the next generation. Only system calls and
/// the locked list: no allocation, no other lock.
extern "C" fn child() {
    // SAFETY: `prepare` took the lock in the thread that is this process's
    // only thread now, so nothing else can touch the list; it is released
    // below, after the last use of this reference.
    let entries = unsafe { &mut *REGISTRY.entries.get() };
    for entry in entries.iter() {
        match *entry {
            // SAFETY: a tracked count lives as long as its mapping, which is
            // tracked, so not yet unmapped.
            Entry::Mapping { base, len, lent } if lent != 0 && unsafe { lent_now(lent) } => {
                if !preserve(base, len) {
                    blank(base, len);
                }
            }
            Entry::Mapping { base, len, .. } => blank(base, len),
            // SAFETY: a tracked descriptor is open: it is tracked from the
            // call that opened it to the one that closes it, both under the
            // lock the fork was made under. It belongs to a parent's handle,
            // which in this process is inert from now on (its generation is
            // behind) and never uses or closes the number again.
            Entry::Fd(fd) => unsafe { rustix::io::close(fd) },
        }
    }
    // Keeps the allocation: clearing frees nothing.
    entries.clear();
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // Registered before this fork, so registered in this process.
    INSTALL.store(INSTALLED, Ordering::Relaxed);
    unlock();
}

/// Whether the count at address `lent` says a view is lent in place.
///
/// # Safety
/// `lent` is the address of a live `AtomicU32`.
unsafe fn lent_now(lent: usize) -> bool {
    // SAFETY: the caller's.
    unsafe { &*(lent as *const AtomicU32) }.load(Ordering::Relaxed) != 0
}

/// Replaces the tracked mapping at `base` with a private anonymous copy of
/// its bytes (for a mapping with views lent in place: what they show does
/// not change, and nothing written to it reaches the ring). False if the
/// memory for the copy cannot be had.
fn preserve(base: usize, len: usize) -> bool {
    let flags = MapFlags::PRIVATE | MapFlags::NORESERVE;
    // SAFETY: a fresh anonymous mapping where the kernel chooses: it aliases
    // nothing.
    let Ok(copy) =
        (unsafe { rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, flags) })
    else {
        return false;
    };
    // SAFETY: both ranges are `len` bytes of mappings of this process (the
    // tracked one, not yet unmapped, and the fresh one), and they do not
    // overlap. Only this thread runs in the child; the source may be written
    // by other processes meanwhile, which copies whatever is there.
    unsafe { std::ptr::copy_nonoverlapping(base as *const u8, copy.cast::<u8>(), len) };
    // SAFETY: moves the fresh mapping (`len` bytes, nothing refers to it)
    // over the tracked one at `base`, which the kernel unmaps in the same
    // step: every pointer into `base .. base + len` stays valid and reads
    // the same bytes.
    let moved = unsafe {
        rustix::mm::mremap_fixed(copy, len, len, rustix::mm::MremapFlags::MAYMOVE, base as *mut std::ffi::c_void)
    };
    if moved.is_err() {
        // SAFETY: the fresh mapping, which nothing refers to.
        let _ = unsafe { rustix::mm::munmap(copy, len) };
        return false;
    }
    true
}

/// Replaces the tracked mapping at `base` with private anonymous memory of
/// the same size, which drops this process's reference to the segment's
/// open file description and leaves the addresses mapped, reading zeros.
fn blank(base: usize, len: usize) {
    let at = base as *mut std::ffi::c_void;
    let flags = MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE;
    // SAFETY: `base .. base + len` is a whole mapping made by `map` and not
    // yet unmapped (it is tracked). It is replaced by memory of the same size
    // at the same place, so every pointer into it stays valid, and nothing in
    // this process reads it through the handle again (it is inert). No view
    // lent in place is alive (its count is zero: `preserve` handles those),
    // except when the memory for a copy could not be had.
    if unsafe { rustix::mm::mmap_anonymous(at, len, ProtFlags::READ | ProtFlags::WRITE, flags) }.is_ok() {
        return;
    }
    // Strict overcommit may refuse that much writable memory; read-only costs
    // nothing (a write through a leftover view would fault).
    // SAFETY: as above.
    if unsafe { rustix::mm::mmap_anonymous(at, len, ProtFlags::READ, flags) }.is_ok() {
        return;
    }
    // Last resort: at least drop the reference to the segment.
    // SAFETY: the whole mapping, as above; the handle never touches it again.
    let _ = unsafe { rustix::mm::munmap(at, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_untracks_and_runs_once() {
        let (fd, tracked) = open_fd(Scope::Process, || rustix::io::dup(std::io::stderr())).expect("dup");
        let entry = tracked.as_ref().map(|t| t.entry).expect("tracked");
        assert!(with_entries(|entries| entries.contains(&entry)));
        let mut closed = false;
        assert!(release(tracked, || {
            drop(fd);
            closed = true;
        }));
        assert!(closed);
        assert!(!with_entries(|entries| entries.contains(&entry)));
    }

    #[test]
    fn inherited_scope_is_not_tracked() {
        let (_fd, tracked) = open_fd(Scope::Inherited, || rustix::io::dup(std::io::stderr())).expect("dup");
        assert!(tracked.is_none());
        let local = ProcessLocal::new(5u8);
        assert!(!local.inherited());
        assert_eq!(*local, 5);
    }
}
