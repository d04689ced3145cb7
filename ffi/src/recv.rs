//! Receiving: `shmring_recv`, `shmring_try_recv`, `shmring_recv_timeout`
//! (copying a message out) and their `_with` variants (reading it in place).

use crate::args::{handle, try_arg, CallbackScope};
use crate::error::{fail, fail_hot, guard, Hot, HotCode, Needed, SHMRING_E_INVALID, SHMRING_OK};
use crate::handles::shmring_consumer;
use shmring::Consumer;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::time::Duration;

/// Reads a message in place (`shmring_recv_with`): `len` bytes at `data`,
/// valid only during the call; `ctx` as given.
pub type shmring_read_fn = Option<unsafe extern "C" fn(data: *const c_void, len: usize, ctx: *mut c_void)>;

/// Receives the next message into `buf` with `recv` (the library's
/// `recv_into` forms: one copy from the ring, and a message longer than
/// `cap` is left in the ring and its length reported).
///
/// # Safety
///
/// `consumer` NULL or live and unaliased; `buf` NULL or `cap` writable
/// bytes; `len` NULL or writable.
#[inline(always)]
pub(crate) unsafe fn receive<E: Into<Hot> + HotCode + Needed>(
    consumer: *mut shmring_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    recv: impl FnOnce(&mut Consumer, &mut [MaybeUninit<u8>]) -> Result<usize, E>,
) -> c_int {
    guard(|| {
        // SAFETY: `len` is NULL or valid for writes (forwarded contract).
        // Set first: every error, a refused handle's too, leaves it 0.
        let mut len = unsafe { len.as_mut() };
        if let Some(len) = len.as_deref_mut() {
            *len = 0;
        }
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle(consumer, "consumer") });
        let Some(len) = len else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: len is NULL", consumer.segment));
        };
        let buf: &mut [MaybeUninit<u8>] = if cap == 0 {
            &mut []
        } else if buf.is_null() {
            return fail(
                SHMRING_E_INVALID,
                format_args!("segment {}: buf is NULL with a cap of {cap}", consumer.segment),
            );
        } else if cap > isize::MAX as usize {
            return fail(
                SHMRING_E_INVALID,
                format_args!("segment {}: a cap of {cap} bytes is larger than any buffer can be", consumer.segment),
            );
        } else {
            // SAFETY: `buf` is not NULL and valid for `cap` bytes of writes
            // (the caller's contract), not used elsewhere during the call,
            // and `cap` is at most `isize::MAX` (checked). Any bytes, the
            // uninitialised ones of a fresh C buffer too, are valid
            // `MaybeUninit<u8>`.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<MaybeUninit<u8>>(), cap) }
        };
        match recv(&mut consumer.inner, buf) {
            Ok(n) => {
                *len = n;
                SHMRING_OK
            }
            Err(e) => {
                *len = e.needed().unwrap_or(0);
                fail_hot(&consumer.segment, e)
            }
        }
    })
}

/// Copies the next message into `buf` (up to `cap` bytes) and sets `*len` to
/// its length, blocking while the ring is empty. A message larger than `cap`
/// is `SHMRING_E_TOO_LARGE`: nothing is consumed, and `*len` is the size
/// needed. `SHMRING_E_DISCONNECTED`: the ring is drained and no producer is
/// attached any more. On other errors `*len` is 0.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere; `buf` is NULL
/// (with `cap` 0) or valid for `cap` bytes of writes; `len` is NULL or valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_recv(
    consumer: *mut shmring_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { receive(consumer, buf, cap, len, |c, b| c.recv_into_uninit(b)) }
}

/// Copies the next message if one is waiting: `SHMRING_E_EMPTY` if not.
///
/// # Safety
///
/// As `shmring_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmring_try_recv(
    consumer: *mut shmring_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { receive(consumer, buf, cap, len, |c, b| c.try_recv_into_uninit(b)) }
}

/// Copies the next message, blocking at most `timeout_ns` nanoseconds while
/// the ring is empty: `SHMRING_E_TIMEOUT` then.
///
/// # Safety
///
/// As `shmring_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmring_recv_timeout(
    consumer: *mut shmring_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        let timeout = Duration::from_nanos(timeout_ns);
        receive(consumer, buf, cap, len, |c, b| c.recv_into_uninit_timeout(b, timeout))
    }
}

/// Borrows the next message with `read_msg` and has `read` look at it in
/// place; frees it after.
///
/// # Safety
///
/// `consumer` NULL or live and unaliased; `read` as `shmring_recv_with`
/// says.
#[inline(always)]
unsafe fn recv_with<E: Into<Hot> + HotCode>(
    consumer: *mut shmring_consumer,
    read: shmring_read_fn,
    ctx: *mut c_void,
    read_msg: impl FnOnce(&mut Consumer) -> Result<shmring::ReadGuard<'_>, E>,
) -> c_int {
    guard(|| {
        let handle_ptr = consumer;
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle(consumer, "consumer") });
        let Some(read) = read else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: the read callback is NULL", consumer.segment));
        };
        match read_msg(&mut consumer.inner) {
            Ok(msg) => {
                // Calls on this handle from inside the callback are refused.
                let _scope = CallbackScope::enter(handle_ptr);
                // SAFETY: `read` is a C function of this type (the caller's
                // contract), given `msg.len()` readable bytes that stay
                // unchanged until it returns (the guard holds them), and it
                // returns normally without calling into this handle.
                unsafe { read(msg.as_ptr().cast::<c_void>(), msg.len(), ctx) };
                drop(msg);
                SHMRING_OK
            }
            Err(e) => fail_hot(&consumer.segment, e),
        }
    })
}

/// Receives the next message in place, blocking while the ring is empty:
/// calls `read(data, len, ctx)` with the message (the ring's own memory
/// where the trust rule allows, zero-copy; otherwise a copy in a buffer of
/// the handle), then frees it. `data` is valid only during the call. `read`
/// must return normally (no `longjmp`, no C++ exception); a call on this
/// consumer from inside it is refused with `SHMRING_E_INVALID`. Errors as `shmring_recv` (never
/// `SHMRING_E_TOO_LARGE`); on an error `read` is not called.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere; `read` is NULL
/// or a function that keeps the rules above.
#[no_mangle]
pub unsafe extern "C" fn shmring_recv_with(
    consumer: *mut shmring_consumer,
    read: shmring_read_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { recv_with(consumer, read, ctx, |c| c.read()) }
}

/// As `shmring_recv_with`, but `SHMRING_E_TIMEOUT` (and `read` not called)
/// after `timeout_ns` nanoseconds without a message.
///
/// # Safety
///
/// As `shmring_recv_with`.
#[no_mangle]
pub unsafe extern "C" fn shmring_recv_with_timeout(
    consumer: *mut shmring_consumer,
    read: shmring_read_fn,
    ctx: *mut c_void,
    timeout_ns: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { recv_with(consumer, read, ctx, |c| c.read_timeout(Duration::from_nanos(timeout_ns))) }
}

/// As `shmring_recv_with`, but `SHMRING_E_EMPTY` (and `read` not called) if
/// no message is waiting.
///
/// # Safety
///
/// As `shmring_recv_with`.
#[no_mangle]
pub unsafe extern "C" fn shmring_try_recv_with(
    consumer: *mut shmring_consumer,
    read: shmring_read_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { recv_with(consumer, read, ctx, |c| c.try_read()) }
}
