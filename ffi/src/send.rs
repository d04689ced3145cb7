//! Sending: `shmring_send`, `shmring_try_send`, `shmring_send_timeout`
//! (copying a message in) and their `_with` variants (writing it in place).

use crate::args::{bytes, handle, try_arg, CallbackScope};
use crate::error::{fail, fail_hot, guard, Hot, HotCode, SHMRING_E_INVALID, SHMRING_OK};
use crate::handles::shmring_producer;
use shmring::Producer;
use std::ffi::{c_int, c_void};
use std::time::Duration;

/// Writes a message in place (`shmring_send_with`): `len` bytes at `data`,
/// whose initial contents are unspecified; `ctx` as given.
pub type shmring_fill_fn = Option<unsafe extern "C" fn(data: *mut c_void, len: usize, ctx: *mut c_void)>;

/// Copies the message at `data` into the ring with `send`.
///
/// # Safety
///
/// `producer` NULL or live and unaliased; `data` NULL or `len` readable bytes.
#[inline(always)]
unsafe fn send_bytes<E: Into<Hot> + HotCode>(
    producer: *mut shmring_producer,
    data: *const c_void,
    len: usize,
    send: impl FnOnce(&mut Producer, &[u8]) -> Result<(), E>,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle(producer, "producer") });
        // SAFETY: forwarded contract.
        let msg = try_arg!(unsafe { bytes(data, len, &producer.segment) });
        match send(&mut producer.inner, msg) {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_hot(&producer.segment, e),
        }
    })
}

/// Sends the `len` bytes at `data` (NULL is allowed with `len` 0), blocking
/// while the ring is full. `SHMRING_E_DISCONNECTED`: the ring is full and no
/// consumer is attached; `SHMRING_E_TOO_LARGE`: over the segment's maximum.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere; `data` is NULL
/// or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmring_send(producer: *mut shmring_producer, data: *const c_void, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_bytes(producer, data, len, |p, msg| p.send(msg)) }
}

/// Sends if there is room now: `SHMRING_E_FULL` if not.
///
/// # Safety
///
/// As `shmring_send`.
#[no_mangle]
pub unsafe extern "C" fn shmring_try_send(producer: *mut shmring_producer, data: *const c_void, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_bytes(producer, data, len, |p, msg| p.try_send(msg)) }
}

/// Sends, blocking at most `timeout_ns` nanoseconds while the ring is full:
/// `SHMRING_E_TIMEOUT` then.
///
/// # Safety
///
/// As `shmring_send`.
#[no_mangle]
pub unsafe extern "C" fn shmring_send_timeout(
    producer: *mut shmring_producer,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_bytes(producer, data, len, |p, msg| p.send_timeout(msg, Duration::from_nanos(timeout_ns))) }
}

/// Claims `len` bytes with `reserve`, has `fill` write them, commits.
///
/// # Safety
///
/// `producer` NULL or live and unaliased; `fill` as `shmring_send_with`
/// says.
#[inline(always)]
unsafe fn send_with<E: Into<Hot> + HotCode>(
    producer: *mut shmring_producer,
    len: usize,
    fill: shmring_fill_fn,
    ctx: *mut c_void,
    reserve: impl FnOnce(&mut Producer, usize) -> Result<shmring::Grant<'_>, E>,
) -> c_int {
    guard(|| {
        let handle_ptr = producer;
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle(producer, "producer") });
        let Some(fill) = fill else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: the fill callback is NULL", producer.segment));
        };
        match reserve(&mut producer.inner, len) {
            Ok(mut grant) => {
                // Calls on this handle from inside the callback are refused.
                let _scope = CallbackScope::enter(handle_ptr);
                // SAFETY: `fill` is a C function of this type (the caller's
                // contract), given `len` writable bytes that nothing else
                // uses until it returns (the grant holds them), and it
                // returns normally without calling into this handle.
                unsafe { fill(grant.as_mut_ptr().cast::<c_void>(), grant.len(), ctx) };
                grant.commit();
                SHMRING_OK
            }
            Err(e) => fail_hot(&producer.segment, e),
        }
    })
}

/// Sends a message of `len` bytes written in place: claims the space
/// (blocking while the ring is full), calls `fill(data, len, ctx)` to write
/// it, then publishes it. Where the trust rule allows, `data` is the ring's
/// own memory (zero-copy); otherwise a buffer copied in on return. `fill`
/// must return normally (no `longjmp`, no C++ exception); a call on this
/// producer from inside it is refused with `SHMRING_E_INVALID`. Errors as `shmring_send`; on an
/// error `fill` is not called.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere; `fill` is
/// NULL or a function that keeps the rules above.
#[no_mangle]
pub unsafe extern "C" fn shmring_send_with(
    producer: *mut shmring_producer,
    len: usize,
    fill: shmring_fill_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_with(producer, len, fill, ctx, |p, len| p.reserve(len)) }
}

/// As `shmring_send_with`, but `SHMRING_E_TIMEOUT` (and `fill` not called)
/// after `timeout_ns` nanoseconds without room.
///
/// # Safety
///
/// As `shmring_send_with`.
#[no_mangle]
pub unsafe extern "C" fn shmring_send_with_timeout(
    producer: *mut shmring_producer,
    len: usize,
    fill: shmring_fill_fn,
    ctx: *mut c_void,
    timeout_ns: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_with(producer, len, fill, ctx, |p, len| p.reserve_timeout(len, Duration::from_nanos(timeout_ns))) }
}

/// As `shmring_send_with`, but `SHMRING_E_FULL` (and `fill` not called) if
/// there is no room now.
///
/// # Safety
///
/// As `shmring_send_with`.
#[no_mangle]
pub unsafe extern "C" fn shmring_try_send_with(
    producer: *mut shmring_producer,
    len: usize,
    fill: shmring_fill_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send_with(producer, len, fill, ctx, |p, len| p.try_reserve(len)) }
}
