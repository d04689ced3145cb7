//! Producer and consumer handles: created or opened (on a named segment or
//! a file), flushed, freed; and segment names unlinked.

use crate::args::{construct, handle, path_arg, release, try_arg, utf8};
use crate::error::{fail_setup, guard, SHMRING_OK};
use crate::options::{options_or_default, shmring_options};
use shmring::{Consumer, Error, Producer, RingOptions};
use std::ffi::{c_char, c_int};
use std::sync::Arc;

/// A producer handle (a [`Producer`]). Not thread-safe.
#[derive(Debug)]
pub struct shmring_producer {
    pub(crate) inner: Producer,
    pub(crate) segment: Arc<str>,
}

/// A consumer handle (a [`Consumer`]). Not thread-safe.
#[derive(Debug)]
pub struct shmring_consumer {
    pub(crate) inner: Consumer,
    pub(crate) segment: Arc<str>,
}

impl shmring_producer {
    fn new(inner: Producer) -> Self {
        let segment = Arc::from(inner.name());
        shmring_producer { inner, segment }
    }
}

impl shmring_consumer {
    fn new(inner: Consumer) -> Self {
        let segment = Arc::from(inner.name());
        shmring_consumer { inner, segment }
    }
}

/// Makes a handle with `make` (and `wrap`) from the segment name or file
/// path that `target` reads and the options (NULL: the defaults), into
/// `*out`.
///
/// # Safety
///
/// `options` NULL or live; `out` NULL or writable.
unsafe fn attach<'a, H, T, A: ?Sized + 'a>(
    out: *mut *mut H,
    options: *const shmring_options,
    target: impl FnOnce() -> Result<&'a A, c_int>,
    make: impl FnOnce(&A, &RingOptions) -> Result<T, Error>,
    wrap: impl FnOnce(T) -> H,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe {
            construct(out, || {
                let target = target()?;
                let options = options_or_default(options);
                make(target, &options).map(wrap).map_err(|e| fail_setup(&e))
            })
        }
    })
}

/// Creates the segment `name` (e.g. `"/jobs"`; never an existing one) and
/// attaches as its consumer. `options` NULL: the defaults. On success
/// `*out` is the handle; on failure NULL.
///
/// # Safety
///
/// `name` is NULL or NUL-terminated; `options` is NULL or live; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_create(
    name: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_consumer,
) -> c_int {
    // SAFETY: forwarded contract (`name` NULL or NUL-terminated).
    unsafe { attach(out, options, || utf8(name, "segment name"), Consumer::create, shmring_consumer::new) }
}

/// Opens the existing segment `name` as its consumer (`SHMRING_E_BUSY` while
/// a live consumer holds it).
///
/// # Safety
///
/// As `shmring_consumer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_open(
    name: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_consumer,
) -> c_int {
    // SAFETY: forwarded contract (`name` NULL or NUL-terminated).
    unsafe { attach(out, options, || utf8(name, "segment name"), Consumer::open, shmring_consumer::new) }
}

/// Creates the segment `name` and attaches as a producer.
///
/// # Safety
///
/// As `shmring_consumer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_create(
    name: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_producer,
) -> c_int {
    // SAFETY: forwarded contract (`name` NULL or NUL-terminated).
    unsafe { attach(out, options, || utf8(name, "segment name"), Producer::create, shmring_producer::new) }
}

/// Opens the existing segment `name` as a producer (SPSC: `SHMRING_E_BUSY`
/// while a live producer holds it; MPSC: takes a free slot).
///
/// # Safety
///
/// As `shmring_consumer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_open(
    name: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_producer,
) -> c_int {
    // SAFETY: forwarded contract (`name` NULL or NUL-terminated).
    unsafe { attach(out, options, || utf8(name, "segment name"), Producer::open, shmring_producer::new) }
}

/// Creates a file-backed ring at `path` (never an existing file; mode 0600)
/// and attaches as its consumer. The file stays when the handle is freed.
///
/// # Safety
///
/// `path` is NULL or NUL-terminated; `options` is NULL or live; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_create_file(
    path: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_consumer,
) -> c_int {
    // SAFETY: forwarded contract (`path` NULL or NUL-terminated).
    unsafe { attach(out, options, || path_arg(path), |p, o| Consumer::create_file(p, o), shmring_consumer::new) }
}

/// Opens the file-backed ring at `path` as its consumer.
///
/// # Safety
///
/// As `shmring_consumer_create_file`.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_open_file(
    path: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_consumer,
) -> c_int {
    // SAFETY: forwarded contract (`path` NULL or NUL-terminated).
    unsafe { attach(out, options, || path_arg(path), |p, o| Consumer::open_file(p, o), shmring_consumer::new) }
}

/// Creates a file-backed ring at `path` and attaches as a producer.
///
/// # Safety
///
/// As `shmring_consumer_create_file`.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_create_file(
    path: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_producer,
) -> c_int {
    // SAFETY: forwarded contract (`path` NULL or NUL-terminated).
    unsafe { attach(out, options, || path_arg(path), |p, o| Producer::create_file(p, o), shmring_producer::new) }
}

/// Opens the file-backed ring at `path` as a producer.
///
/// # Safety
///
/// As `shmring_consumer_create_file`.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_open_file(
    path: *const c_char,
    options: *const shmring_options,
    out: *mut *mut shmring_producer,
) -> c_int {
    // SAFETY: forwarded contract (`path` NULL or NUL-terminated).
    unsafe { attach(out, options, || path_arg(path), |p, o| Producer::open_file(p, o), shmring_producer::new) }
}

/// Detaches and frees a consumer (NULL: nothing). The creating handle
/// removes the segment's name, unless the options said otherwise.
///
/// # Safety
///
/// `consumer` is NULL or from a constructor, not freed yet, not in use.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_free(consumer: *mut shmring_consumer) {
    // SAFETY: forwarded contract: from `Box::into_raw` in `construct`, not
    // freed yet.
    unsafe { release(consumer) };
}

/// Detaches and frees a producer (NULL: nothing).
///
/// # Safety
///
/// `producer` is NULL or from a constructor, not freed yet, not in use.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_free(producer: *mut shmring_producer) {
    // SAFETY: forwarded contract: from `Box::into_raw` in `construct`, not
    // freed yet.
    unsafe { release(producer) };
}

/// Removes the name of the segment `name` (handles attached to it keep
/// working). `SHMRING_E_NOT_FOUND` if there is none.
///
/// # Safety
///
/// `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn shmring_unlink(name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let name = try_arg!(unsafe { utf8(name, "segment name") });
        match shmring::unlink(name) {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_setup(&e),
        }
    })
}

/// Runs `flush` on the handle behind `ptr`: a setup error's code if it
/// fails.
///
/// # Safety
///
/// `ptr` is NULL or a live handle not in use elsewhere.
unsafe fn flush<T>(ptr: *mut T, what: &str, flush: impl FnOnce(&T) -> Result<(), Error>) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let target = try_arg!(unsafe { handle(ptr, what) });
        match flush(target) {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_setup(&e),
        }
    })
}

/// File-backed rings: makes every message committed so far durable
/// (`msync(MS_SYNC)`). In effect a no-op for shared memory.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_flush(producer: *mut shmring_producer) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { flush(producer, "producer", |p| p.inner.flush()) }
}

/// File-backed rings: makes the consumer's position durable.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_flush(consumer: *mut shmring_consumer) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { flush(consumer, "consumer", |c| c.inner.flush()) }
}
