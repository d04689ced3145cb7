//! The kernel futex: waits and wakes on words in shared memory, and the
//! `futex_waitv` waits on many words (see the parent module).

use super::{AtomicU32, Ordering};
use rustix::thread::futex;
use std::time::Duration;

/// A 32-bit word in shared memory that processes sleep on.
///
/// Never `FUTEX_PRIVATE`: the word is shared between processes, and a
/// private futex is keyed by (mm, address), which another process never
/// matches.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct FutexWord(AtomicU32);

impl FutexWord {
    /// The word's current value.
    pub fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }

    /// The word itself, for the shared [`FutexWord::bump`].
    pub(super) fn word(&self) -> &AtomicU32 {
        &self.0
    }

    /// `futex(FUTEX_WAIT)`: sleep while the word equals `expected`, at most
    /// `timeout`. However it ends (woken, timed out, interrupted, or the
    /// word had already changed), the caller re-checks its condition.
    pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
        let timespec = timeout.map(|t| rustix::thread::futex::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        // Errors are outcomes here: AGAIN (the word changed before we
        // slept), INTR (a signal), TIMEDOUT. All mean "re-check".
        let _ = futex::wait(&self.0, futex::Flags::empty(), expected, timespec.as_ref());
    }

    /// `futex(FUTEX_WAKE)` for every sleeper on the word.
    pub(crate) fn wake_all(&self) {
        // An error here (EFAULT, EINVAL) cannot happen for a valid
        // `&AtomicU32`; a failed wake would be caught by the sleeper's
        // bounded park slice anyway.
        let _ = futex::wake(&self.0, futex::Flags::empty(), i32::MAX as u32);
    }
}

/// The most words one `futex_waitv` call takes (the kernel's
/// `FUTEX_WAITV_MAX`).
const WAITV_MAX: usize = 128;

/// How long [`wait_any`] sleeps when it cannot sleep on every word at
/// once: the words it leaves out are looked at again after at most this.
const PARTIAL_SLICE: Duration = Duration::from_millis(1);

/// Whether `futex_waitv` is to be used: unknown, yes, no.
static WAITV: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(WAITV_UNKNOWN);
const WAITV_UNKNOWN: u8 = 0;
const WAITV_YES: u8 = 1;
const WAITV_NO: u8 = 2;

/// Whether this process may call `futex_waitv`: not if the environment
/// says `SHMRING_FUTEX_WAITV=off` (for a seccomp filter that kills on
/// unknown system calls rather than failing them), not once a call has
/// been refused (`ENOSYS` before Linux 5.16, `EPERM` from a seccomp
/// filter, ...).
pub(crate) fn waitv_enabled() -> bool {
    match WAITV.load(Ordering::Relaxed) {
        WAITV_YES => true,
        WAITV_NO => false,
        _ => {
            let off = std::env::var_os("SHMRING_FUTEX_WAITV").is_some_and(|v| v == "off");
            WAITV.store(if off { WAITV_NO } else { WAITV_YES }, Ordering::Relaxed);
            !off
        }
    }
}

/// Sleeps until any of `words` no longer holds the value paired with it,
/// or is woken, at most `timeout`. Like [`FutexWord::wait`], however it
/// ends the caller re-checks.
///
/// One `futex_waitv` sleeps on up to [`WAITV_MAX`] words. For more, or
/// where `futex_waitv` is unavailable (then one `FUTEX_WAIT` on one
/// word), it sleeps on one group of them for at most [`PARTIAL_SLICE`]
/// (unless that one word is all there is); `round` picks the group, so
/// that callers that count it up take turns.
pub(crate) fn wait_any(words: &[(&FutexWord, u32)], timeout: Duration, round: usize) {
    if words.is_empty() {
        return std::thread::sleep(timeout);
    }
    if waitv_enabled() {
        let groups = words.len().div_ceil(WAITV_MAX);
        let (group, timeout) = if groups == 1 {
            (words, timeout)
        } else {
            let start = round % groups * WAITV_MAX;
            (&words[start..words.len().min(start + WAITV_MAX)], timeout.min(PARTIAL_SLICE))
        };
        let mut waits = [futex::Wait::new(); WAITV_MAX];
        for (wait, (word, expected)) in waits.iter_mut().zip(group) {
            wait.val = u64::from(*expected);
            wait.uaddr = futex::WaitPtr::new(word.0.as_ptr().cast());
            wait.flags = futex::WaitFlags::SIZE_U32;
        }
        match waitv(&waits[..group.len()], timeout) {
            // Woken, a word had changed, timed out, or interrupted.
            Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => return,
            // ENOSYS (before Linux 5.16), EPERM or another refusal (a
            // seccomp filter): never again in this process. Taking it
            // for a wake-up would make every wait spin.
            Err(_) => WAITV.store(WAITV_NO, Ordering::Relaxed),
        }
    }
    let (word, expected) = words[round % words.len()];
    // One word is all there is to sleep on: no turns needed.
    let timeout = if words.len() == 1 { timeout } else { timeout.min(PARTIAL_SLICE) };
    word.wait(expected, Some(timeout));
}

#[cfg(feature = "async")]
/// How [`wait_on_addresses`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Woken on the shared word of this index.
    Shared(usize),
    /// Woken on the private word, or it had changed.
    Private,
    /// Some word no longer held its value (the call does not say which),
    /// or a word's address was not mapped.
    Changed,
    /// Timed out or interrupted.
    Nothing,
    /// No `futex_waitv` here (see [`wait_any`]).
    Unsupported,
}

#[cfg(feature = "async")]
/// Sleeps until one of `shared` (the address of a [`FutexWord`] in a
/// mapping, and the value to wait while it holds; at most 127) or the
/// process-private `private` word changes or is woken, at most
/// `timeout`. For a thread that sleeps for others (the async reactor):
/// addresses, not references, because the mappings are not its own; the
/// kernel reads them, this process never does, and an address no longer
/// mapped fails the call (`Changed`) rather than anything worse.
pub(crate) fn wait_on_addresses(shared: &[(usize, u32)], private: (&AtomicU32, u32), timeout: Duration) -> Woke {
    if !waitv_enabled() {
        return Woke::Unsupported;
    }
    let mut waits = [futex::Wait::new(); WAITV_MAX];
    let count = shared.len().min(WAITV_MAX - 1);
    for (wait, &(address, expected)) in waits.iter_mut().zip(&shared[..count]) {
        wait.val = u64::from(expected);
        wait.uaddr = futex::WaitPtr::new(address as *mut std::ffi::c_void);
        wait.flags = futex::WaitFlags::SIZE_U32;
    }
    let own = &mut waits[count];
    own.val = u64::from(private.1);
    own.uaddr = futex::WaitPtr::new(private.0.as_ptr().cast());
    own.flags = futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE;
    match waitv(&waits[..=count], timeout) {
        Ok(i) if i < count => Woke::Shared(i),
        Ok(_) => Woke::Private,
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Woke::Changed,
        Err(rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => Woke::Nothing,
        // ENOSYS, EPERM or another refusal (see `wait_any`).
        Err(_) => {
            WAITV.store(WAITV_NO, Ordering::Relaxed);
            Woke::Unsupported
        }
    }
}

/// Whether any of `shared` (as for [`wait_on_addresses`], at most 128)
/// no longer holds its value: a `futex_waitv` whose deadline has passed,
/// so the kernel compares the words and returns at once. An address no
/// longer mapped counts as changed; `None` if `futex_waitv` fails
/// otherwise.
#[cfg(feature = "async")]
pub(crate) fn any_changed(shared: &[(usize, u32)]) -> Option<bool> {
    let mut waits = [futex::Wait::new(); WAITV_MAX];
    let count = shared.len().min(WAITV_MAX);
    for (wait, &(address, expected)) in waits.iter_mut().zip(&shared[..count]) {
        wait.val = u64::from(expected);
        wait.uaddr = futex::WaitPtr::new(address as *mut std::ffi::c_void);
        wait.flags = futex::WaitFlags::SIZE_U32;
    }
    match waitv(&waits[..count], Duration::ZERO) {
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Some(true),
        Err(rustix::io::Errno::TIMEDOUT) | Ok(_) => Some(false),
        Err(_) => None,
    }
}

#[cfg(feature = "async")]
/// `FUTEX_WAIT` on a process-private word, at most `timeout` (however
/// it ends, the caller re-checks).
pub(crate) fn wait_private(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timespec = futex::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let _ = futex::wait(word, futex::Flags::PRIVATE, expected, Some(&timespec));
}

/// `FUTEX_WAIT` on the shared futex word at `address` while it holds
/// `expected`, at most `timeout`: whether it no longer held it (the
/// call failed with `EAGAIN`, or `EFAULT` for an address no longer
/// mapped). With a zero `timeout`, a look at the word through the
/// kernel. For the async reactor without `futex_waitv`: as for
/// [`wait_on_addresses`], the words are not this thread's to read.
#[cfg(feature = "async")]
pub(crate) fn wait_at_address(address: usize, expected: u32, timeout: Duration) -> bool {
    let timespec = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT makes the kernel read the 4 bytes at `address`
    // (failing with EFAULT if they are not mapped) and read `timespec`,
    // which lives for the call; nothing of this process is written.
    let rc = unsafe {
        libc::syscall(libc::SYS_futex, address as *const u32, libc::FUTEX_WAIT, expected, &timespec as *const _)
    };
    rc == -1
        && matches!(rustix::io::Errno::from_raw_os_error(errno()), rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT)
}

/// `FUTEX_WAKE` of every sleeper on the shared futex word at `address`
/// (see [`wait_at_address`]).
#[cfg(feature = "async")]
pub(crate) fn wake_at_address(address: usize) {
    // SAFETY: FUTEX_WAKE only looks the address up in the kernel's
    // futex table (EFAULT if it is not mapped); nothing is read or
    // written in this process.
    unsafe {
        libc::syscall(libc::SYS_futex, address as *const u32, libc::FUTEX_WAKE, i32::MAX);
    }
}

/// The calling thread's `errno`.
#[cfg(feature = "async")]
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(feature = "async")]
/// `FUTEX_WAKE` of every sleeper on a process-private word.
pub(crate) fn wake_private(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
}

/// `futex_waitv` with a relative `timeout` (the call takes a deadline on
/// the monotonic clock). Not `FUTEX2_PRIVATE`: the words are shared
/// between processes (see [`FutexWord`]).
fn waitv(waits: &[futex::Wait], timeout: Duration) -> rustix::io::Result<usize> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(timeout.subsec_nanos());
    let secs = i64::try_from(timeout.as_secs())
        .ok()
        .and_then(|s| now.tv_sec.checked_add(s))
        .and_then(|s| s.checked_add((nanos / 1_000_000_000) as i64))
        .unwrap_or(i64::MAX);
    let deadline = futex::Timespec { tv_sec: secs, tv_nsec: (nanos % 1_000_000_000) as i64 };
    futex::waitv(waits, futex::WaitvFlags::empty(), Some(&deadline), futex::ClockId::Monotonic)
}
