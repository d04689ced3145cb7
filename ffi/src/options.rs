//! How to create or open a ring: `shmring_options` and its setters.

use crate::args::{handle, release, try_arg};
use crate::error::{fail, guard, panicked, SHMRING_E_INVALID, SHMRING_OK};
use shmring::{Kind, RingOptions, WaitStrategy};
use std::ffi::c_int;
use std::panic::catch_unwind;
use std::ptr;
use std::time::Duration;

/// Wait strategy: poll without ever sleeping.
pub const SHMRING_WAIT_BUSY: c_int = 0;
/// Wait strategy: spin 50 µs, then sleep on the futex (the default).
pub const SHMRING_WAIT_SPIN: c_int = 1;
/// Wait strategy: sleep on the futex at once.
pub const SHMRING_WAIT_PARK: c_int = 2;

/// Ring kind: one producer, one consumer (the default).
pub const SHMRING_KIND_SPSC: c_int = 0;
/// Ring kind: many producer processes, one consumer.
pub const SHMRING_KIND_MPSC: c_int = 1;

/// How to create or open a ring (a [`RingOptions`]). Not thread-safe.
#[derive(Debug, Default)]
pub struct shmring_options {
    options: RingOptions,
}

/// The options at `options`, or the defaults if it is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`.
pub(crate) unsafe fn options_or_default(options: *const shmring_options) -> RingOptions {
    // SAFETY: the caller's contract: NULL or a live handle.
    match unsafe { options.as_ref() } {
        Some(options) => options.options.clone(),
        None => RingOptions::new(),
    }
}

/// New options with the defaults: SPSC, 1 MiB capacity, max message capacity
/// / 4, mode 0600, unlink on free, spin-then-park. NULL only if a panic was
/// caught (see `shmring_last_error`). Free with `shmring_options_free`.
#[no_mangle]
pub extern "C" fn shmring_options_new() -> *mut shmring_options {
    match catch_unwind(|| Box::into_raw(Box::default())) {
        Ok(options) => options,
        Err(payload) => {
            panicked(payload);
            ptr::null_mut()
        }
    }
}

/// Frees options (NULL: nothing). Handles made with them keep their own copy.
///
/// # Safety
///
/// `options` is NULL or from `shmring_options_new`, not freed yet.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_free(options: *mut shmring_options) {
    // SAFETY: forwarded contract: from `Box::into_raw` in
    // `shmring_options_new`, not freed yet.
    unsafe { release(options) };
}

/// Changes the options behind `options` with `change` (NULL: nothing, but
/// the last error says so).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
unsafe fn set(options: *mut shmring_options, change: impl FnOnce(RingOptions) -> RingOptions) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let options = try_arg!(unsafe { handle(options, "options") });
        options.options = change(std::mem::take(&mut options.options));
        SHMRING_OK
    })
}

/// Bytes in the data region of a new ring: a power of two, a multiple of the
/// page size, 4 KiB to 1 TiB (checked when the ring is created:
/// `SHMRING_E_INVALID`). Default 1 MiB.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_capacity(options: *mut shmring_options, bytes: usize) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.capacity(bytes)) };
}

/// Largest message of a new ring. Default capacity / 4; at most capacity / 2
/// - 8.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_max_message(options: *mut shmring_options, bytes: usize) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.max_message(bytes)) };
}

/// Sizes a new ring to always hold `count` messages of up to `max_size`
/// bytes, and makes `max_size` the largest message.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_for_messages(options: *mut shmring_options, count: usize, max_size: usize) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.for_messages(count, max_size)) };
}

/// The kind to create, and the kind an opened segment must be:
/// `SHMRING_KIND_SPSC` (default) or `SHMRING_KIND_MPSC`. Another value:
/// `SHMRING_E_INVALID`, options unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_kind(options: *mut shmring_options, kind: c_int) -> c_int {
    let kind = match kind {
        SHMRING_KIND_SPSC => Kind::Spsc,
        SHMRING_KIND_MPSC => Kind::Mpsc,
        other => return fail(SHMRING_E_INVALID, format_args!("unknown ring kind {other}")),
    };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.kind(kind)) }
}

/// Producer slots of a new MPSC ring, 1 to 64 (default 64).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_max_producers(options: *mut shmring_options, producers: usize) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.max_producers(producers)) };
}

/// How blocking calls wait: `SHMRING_WAIT_BUSY`, `SHMRING_WAIT_SPIN`
/// (default) or `SHMRING_WAIT_PARK`. Another value: `SHMRING_E_INVALID`,
/// options unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_wait(options: *mut shmring_options, strategy: c_int) -> c_int {
    let strategy = match strategy {
        SHMRING_WAIT_BUSY => WaitStrategy::BusySpin,
        SHMRING_WAIT_SPIN => WaitStrategy::default(),
        SHMRING_WAIT_PARK => WaitStrategy::Park,
        other => return fail(SHMRING_E_INVALID, format_args!("unknown wait strategy {other}")),
    };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.wait(strategy)) }
}

/// Permission bits of a new segment (default 0600; must give the owner read
/// and write).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_mode(options: *mut shmring_options, mode: u32) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.mode(mode)) };
}

/// Whether the creating handle removes the name when freed (non-zero: yes,
/// the default).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_unlink_on_free(options: *mut shmring_options, unlink: c_int) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.unlink_on_drop(unlink != 0)) };
}

/// How long opening waits for a segment that does not exist yet (default 0:
/// `SHMRING_E_NOT_FOUND` at once; `UINT64_MAX`: about 584 years).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_open_timeout_ns(options: *mut shmring_options, timeout_ns: u64) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.open_timeout(Duration::from_nanos(timeout_ns))) };
}

/// How long opening waits, once the segment exists, for its creator to
/// finish the header (default 1 s).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_ready_timeout_ns(options: *mut shmring_options, timeout_ns: u64) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.ready_timeout(Duration::from_nanos(timeout_ns))) };
}

/// How often a blocked side checks that its peers are alive (default 50 ms;
/// 1 ms to 60 s, checked at create/open).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_liveness_interval_ns(options: *mut shmring_options, interval_ns: u64) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.liveness_interval(Duration::from_nanos(interval_ns))) };
}

/// Non-zero: open segments owned by another user (refused by default,
/// `SHMRING_E_PERMISSION`).
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_options_allow_foreign_owner(options: *mut shmring_options, allow: c_int) {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.allow_foreign_owner(allow != 0)) };
}
