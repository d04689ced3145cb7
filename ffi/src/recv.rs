//! Receiving: `shmring_recv`, `shmring_try_recv`, `shmring_recv_timeout`
//! (copying a message out) and their `_with` variants (reading it in place).

use crate::args::{handle, try_arg, CallbackScope};
use crate::error::{fail, fail_hot, guard, Hot, HotCode, SHMRING_E_INVALID, SHMRING_E_TOO_LARGE, SHMRING_OK};
use crate::handles::shmring_consumer;
use shmring::Consumer;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::time::Duration;

/// Reads a message in place (`shmring_recv_with`): `len` bytes at `data`,
/// valid only during the call; `ctx` as given.
pub type shmring_read_fn = Option<unsafe extern "C" fn(data: *const c_void, len: usize, ctx: *mut c_void)>;

/// Copies the message `guard` lends into `buf` and consumes it, or, if it
/// is larger than `cap`, leaves it in the ring and reports its size.
///
/// # Safety
///
/// `buf` is NULL (then `cap` is 0) or valid for `cap` bytes of writes.
#[inline(always)]
unsafe fn deliver(
    guard: shmring::ReadGuard<'_>,
    buf: *mut c_void,
    cap: usize,
    len: &mut usize,
    segment: &str,
) -> c_int {
    let n = guard.len();
    *len = n;
    if n > cap {
        // Consumes nothing: the next receive finds this message again.
        guard.put_back();
        return too_small(segment, n, cap);
    }
    if n > 0 {
        // SAFETY: `buf` is valid for `cap >= n` bytes of writes (the
        // caller's contract; a NULL `buf` has `cap` 0 < `n`, handled above),
        // and it cannot overlap the guard's bytes, which are the ring's
        // memory or a buffer of the handle, neither of them given out.
        unsafe { ptr::copy_nonoverlapping(guard.as_ptr(), buf.cast::<u8>(), n) };
    }
    drop(guard);
    SHMRING_OK
}

#[cold]
fn too_small(segment: &str, n: usize, cap: usize) -> c_int {
    fail(
        SHMRING_E_TOO_LARGE,
        format_args!(
            "segment {segment}: the next message is {n} bytes, larger than the buffer of {cap} bytes; \
             it was left in the ring"
        ),
    )
}

/// Receives the next message into `buf`.
///
/// A buffer that takes the segment's largest message cannot be too small:
/// then `copy` copies the message out to the handle's staging buffer
/// (consuming it), and from there to `buf`. The Rust API copies only into a
/// `Vec`; even so, this measured a few nanoseconds a message faster than
/// borrowing the message in place and copying from the ring (64-byte
/// messages, one process, 700,000 at a time). A smaller buffer needs
/// the size before the message is consumed: `read` borrows it, and it is
/// copied and consumed only if it fits (see [`deliver`]).
///
/// # Safety
///
/// `consumer` NULL or live and unaliased; `buf` NULL or `cap` writable
/// bytes; `len` NULL or writable.
#[inline(always)]
pub(crate) unsafe fn receive<E: Into<Hot> + HotCode, F: Into<Hot> + HotCode>(
    consumer: *mut shmring_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    copy: impl FnOnce(&mut Consumer, &mut Vec<u8>) -> Result<usize, F>,
    read: impl FnOnce(&mut Consumer) -> Result<shmring::ReadGuard<'_>, E>,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle(consumer, "consumer") });
        // SAFETY: `len` is NULL or valid for writes (forwarded contract).
        let Some(len) = (unsafe { len.as_mut() }) else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: len is NULL", consumer.segment));
        };
        *len = 0;
        if buf.is_null() && cap != 0 {
            return fail(
                SHMRING_E_INVALID,
                format_args!("segment {}: buf is NULL with a cap of {cap}", consumer.segment),
            );
        }
        let segment = &consumer.segment;
        if cap >= consumer.max_message {
            return match copy(&mut consumer.inner, &mut consumer.staging) {
                Ok(n) => {
                    let staged = &consumer.staging[..n];
                    if n > 0 {
                        // SAFETY: `buf` is valid for `cap >= max_message >=
                        // n` bytes of writes (the caller's contract; `n > 0`
                        // so `cap > 0` and `buf` is not NULL), and it does
                        // not overlap the handle's own staging buffer.
                        unsafe { ptr::copy_nonoverlapping(staged.as_ptr(), buf.cast::<u8>(), n) };
                    }
                    *len = n;
                    SHMRING_OK
                }
                Err(e) => fail_hot(segment, e),
            };
        }
        match read(&mut consumer.inner) {
            // SAFETY: `buf` is NULL with `cap` 0 (checked) or valid for
            // `cap` bytes (forwarded contract).
            Ok(guard) => unsafe { deliver(guard, buf, cap, len, segment) },
            Err(e) => fail_hot(segment, e),
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
    unsafe { receive(consumer, buf, cap, len, |c, v| c.recv(v), |c| c.read()) }
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
    unsafe { receive(consumer, buf, cap, len, |c, v| c.try_recv(v), |c| c.try_read()) }
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
        receive(consumer, buf, cap, len, |c, v| c.recv_timeout(v, timeout), |c| c.read_timeout(timeout))
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
