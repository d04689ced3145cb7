//! What a handle reports: its counters (`shmring_stats`), its segment's
//! largest message and its capacity.

use crate::args::{handle_ref, try_arg};
use crate::error::{fail, guard, SHMRING_E_INVALID, SHMRING_OK};
use crate::handles::{shmring_consumer, shmring_producer};
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A handle's counters (see [`shmring::Stats`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmring_stats {
    /// Messages sent (producer) or received (consumer).
    pub messages: u64,
    /// Payload bytes sent or received.
    pub bytes: u64,
    /// `futex(FUTEX_WAIT)` calls made by this handle.
    pub futex_waits: u64,
    /// `futex(FUTEX_WAKE)` calls made by this handle.
    pub futex_wakes: u64,
    /// Consumer of an MPSC ring: records skipped because their producer died
    /// before committing them.
    pub torn_records: u64,
}

fn stats_of(stats: shmring::Stats) -> shmring_stats {
    shmring_stats {
        messages: stats.messages,
        bytes: stats.bytes,
        futex_waits: stats.futex_waits,
        futex_wakes: stats.futex_wakes,
        torn_records: stats.torn_records,
    }
}

/// Writes the counters of the handle behind `ptr` (`stats` reads them) to
/// `*out`.
///
/// # Safety
///
/// `ptr` is NULL or a live handle not being changed; `out` is NULL or valid
/// for a write.
unsafe fn write_stats<T>(
    ptr: *const T,
    what: &str,
    out: *mut shmring_stats,
    stats: impl FnOnce(&T) -> shmring::Stats,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let target = try_arg!(unsafe { handle_ref(ptr, what) });
        // SAFETY: `out` is NULL or valid for a write.
        let Some(out) = (unsafe { out.as_mut() }) else { return fail(SHMRING_E_INVALID, "the stats pointer is NULL") };
        *out = stats_of(stats(target));
        SHMRING_OK
    })
}

/// What `value` reads of the handle behind `ptr`: 0 for NULL, or if a panic
/// was caught.
///
/// # Safety
///
/// `ptr` is NULL or a live handle not being changed.
unsafe fn value_or_zero<T, V: Default>(ptr: *const T, value: impl FnOnce(&T) -> V) -> V {
    // SAFETY: forwarded contract.
    catch_unwind(AssertUnwindSafe(|| unsafe { ptr.as_ref() }.map_or_else(V::default, value))).unwrap_or_default()
}

/// Writes the producer's counters to `*out`.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_stats(producer: *const shmring_producer, out: *mut shmring_stats) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { write_stats(producer, "producer", out, |p| p.inner.stats()) }
}

/// Writes the consumer's counters to `*out`.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_stats(consumer: *const shmring_consumer, out: *mut shmring_stats) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { write_stats(consumer, "consumer", out, |c| c.inner.stats()) }
}

/// The largest message the producer's segment takes (0 for NULL).
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_max_message(producer: *const shmring_producer) -> usize {
    // SAFETY: forwarded contract.
    unsafe { value_or_zero(producer, |p| p.inner.max_message()) }
}

/// The largest message the consumer's segment takes (0 for NULL): a buffer
/// this large never gets `SHMRING_E_TOO_LARGE`.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_max_message(consumer: *const shmring_consumer) -> usize {
    // SAFETY: forwarded contract.
    unsafe { value_or_zero(consumer, |c| c.inner.max_message()) }
}

/// Bytes in the producer's data region (0 for NULL).
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_capacity(producer: *const shmring_producer) -> usize {
    // SAFETY: forwarded contract.
    unsafe { value_or_zero(producer, |p| p.inner.capacity()) }
}

/// Bytes in the consumer's data region (0 for NULL).
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_capacity(consumer: *const shmring_consumer) -> usize {
    // SAFETY: forwarded contract.
    unsafe { value_or_zero(consumer, |c| c.inner.capacity()) }
}
