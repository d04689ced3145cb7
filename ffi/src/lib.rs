//! The C ABI of [`shmring`]: `libshmring_ffi.so` / `libshmring_ffi.a` and the
//! header `include/shmring.h`.
//!
//! Every function here is `extern "C"` and declared, with the same
//! signature, in `include/shmring.h` (a test, `tests/header.rs`, fails if the
//! two disagree). Conventions, as the header states them:
//!
//! * Functions that can fail return [`SHMRING_OK`] (0) or a negative
//!   `SHMRING_E_*` code, and leave a message in [`shmring_last_error`]
//!   (thread-local, naming the segment where there is one).
//! * No panic crosses the boundary: each entry point catches it and returns
//!   [`SHMRING_E_PANIC`].
//! * A NULL handle, a NULL required pointer or a name that is not UTF-8 is
//!   [`SHMRING_E_INVALID`], never a crash. A pointer that is not NULL must be
//!   valid (a handle from its constructor and not yet freed, a buffer of the
//!   length given).
//! * Handles (options, producers, consumers) are not thread-safe: one may be
//!   moved to another thread, but used by one thread at a time.
//!
//! Names follow C (`shmring_producer`, not `ShmringProducer`), so that the
//! header and this file read the same.
#![allow(non_camel_case_types)]

use shmring::{
    Consumer, Error, Kind, Producer, RecvError, RecvTimeoutError, RingOptions, SendError, SendTimeoutError,
    TryRecvError, TrySendError, WaitStrategy,
};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt::{self, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

/// Success.
pub const SHMRING_OK: c_int = 0;
/// The ring has no room for the message now (`shmring_try_send`).
pub const SHMRING_E_FULL: c_int = -1;
/// No message is waiting now (`shmring_try_recv`).
pub const SHMRING_E_EMPTY: c_int = -2;
/// The timeout passed (`*_timeout`), or a creator did not finish writing the
/// header within the options' ready timeout.
pub const SHMRING_E_TIMEOUT: c_int = -3;
/// The peer is gone: the ring is full and the consumer detached or died, or
/// the ring is drained and no producer is attached any more.
pub const SHMRING_E_DISCONNECTED: c_int = -4;
/// A message over the segment's maximum (send), or a message larger than the
/// buffer (receive: nothing is consumed, and `*len` says the size needed).
pub const SHMRING_E_TOO_LARGE: c_int = -5;
/// The shared memory broke the ring's invariants (or a header's checksum
/// does not match). A handle that saw this returns it from then on.
pub const SHMRING_E_CORRUPTED: c_int = -6;
/// A NULL or otherwise invalid argument, a name that is not UTF-8 or not a
/// valid shared-memory name, or options that cannot make a ring.
pub const SHMRING_E_INVALID: c_int = -7;
/// No segment (or file) has that name.
pub const SHMRING_E_NOT_FOUND: c_int = -8;
/// A segment (or file) of that name exists already.
pub const SHMRING_E_EXISTS: c_int = -9;
/// The kernel refused access, or the segment belongs to another user.
pub const SHMRING_E_PERMISSION: c_int = -10;
/// The handle was inherited across `fork`: attach again in this process.
pub const SHMRING_E_FORKED: c_int = -11;
/// The role is taken: a live consumer or (SPSC) producer is attached, or
/// every MPSC producer slot is held.
pub const SHMRING_E_BUSY: c_int = -12;
/// `/dev/shm` (or the file system) has no room for the segment.
pub const SHMRING_E_NO_SPACE: c_int = -13;
/// The object is not a ring this build can use: not a shmring segment,
/// another layout version, another kind (SPSC/MPSC), the wrong size, or a
/// descriptor that is not a sealed memfd.
pub const SHMRING_E_INCOMPATIBLE: c_int = -14;
/// Another system call failed (the message names it and the OS error).
pub const SHMRING_E_IO: c_int = -15;
/// A panic inside the library was caught at the boundary (a bug: please
/// report the message).
pub const SHMRING_E_PANIC: c_int = -16;

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

/// A producer handle (a [`Producer`]). Not thread-safe.
#[derive(Debug)]
pub struct shmring_producer {
    inner: Producer,
    segment: Arc<str>,
}

/// A consumer handle (a [`Consumer`]). Not thread-safe.
#[derive(Debug)]
pub struct shmring_consumer {
    inner: Consumer,
    segment: Arc<str>,
    /// The segment's largest message: a buffer this large takes any.
    max_message: usize,
    /// Where a message is copied out before it is copied to the caller's
    /// buffer, when that buffer takes any message (see [`receive`]).
    staging: Vec<u8>,
}

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

/// Writes a message in place (`shmring_send_with`): `len` bytes at `data`,
/// whose initial contents are unspecified; `ctx` as given.
pub type shmring_fill_fn = Option<unsafe extern "C" fn(data: *mut c_void, len: usize, ctx: *mut c_void)>;

/// Reads a message in place (`shmring_recv_with`): `len` bytes at `data`,
/// valid only during the call; `ctx` as given.
pub type shmring_read_fn = Option<unsafe extern "C" fn(data: *const c_void, len: usize, ctx: *mut c_void)>;

// ---------------------------------------------------------------------------
// The thread-local last error.

/// A hot-path error kept as it is, formatted only if it is asked for: a
/// `try_send` loop that meets `FULL` costs no formatting.
#[derive(Debug)]
enum Hot {
    TrySend(TrySendError),
    Send(SendError),
    SendTimeout(SendTimeoutError),
    TryRecv(TryRecvError),
    Recv(RecvError),
    RecvTimeout(RecvTimeoutError),
}

impl Display for Hot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hot::TrySend(e) => e.fmt(f),
            Hot::Send(e) => e.fmt(f),
            Hot::SendTimeout(e) => e.fmt(f),
            Hot::TryRecv(e) => e.fmt(f),
            Hot::Recv(e) => e.fmt(f),
            Hot::RecvTimeout(e) => e.fmt(f),
        }
    }
}

/// What [`shmring_last_error`] returns.
#[derive(Debug)]
enum LastError {
    /// No call on this thread has failed yet.
    None,
    /// A hot-path error of `segment`, not formatted yet.
    Hot { segment: Arc<str>, error: Hot, names_segment: bool },
    /// A formatted message.
    Text(CString),
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const { RefCell::new(LastError::None) };
}

fn store(error: LastError) {
    // A thread being torn down has no slot left: the code still says it.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = error;
        }
    });
}

/// A message as a C string (a NUL inside, which no name can hold, becomes
/// `?`).
fn c_text(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let bytes: Vec<u8> = e.into_vec().into_iter().map(|b| if b == 0 { b'?' } else { b }).collect();
        CString::new(bytes).unwrap_or_default()
    })
}

/// Records `text` as the last error and returns `code`.
#[cold]
fn fail(code: c_int, text: impl Display) -> c_int {
    store(LastError::Text(c_text(text.to_string())));
    code
}

/// Records a hot-path error of `segment` (formatted later, if asked) and
/// returns its code.
#[inline]
fn fail_hot(segment: &Arc<str>, error: impl Into<Hot> + HotCode) -> c_int {
    let code = error.code();
    let names_segment = error.names_segment();
    store(LastError::Hot { segment: Arc::clone(segment), error: error.into(), names_segment });
    code
}

/// The C code of a hot-path error, and whether its message names the
/// segment already.
trait HotCode {
    fn code(&self) -> c_int;
    fn names_segment(&self) -> bool;
}

macro_rules! hot_codes {
    ($ty:ident => $wrap:ident { $($unit:ident => $code:ident),* } $(with $($payload:ident => $pcode:ident),*)?) => {
        impl From<$ty> for Hot {
            fn from(e: $ty) -> Hot {
                Hot::$wrap(e)
            }
        }
        impl HotCode for $ty {
            fn code(&self) -> c_int {
                match self {
                    $( $ty::$unit => $code, )*
                    $($( $ty::$payload(_) => $pcode, )*)?
                }
            }
            fn names_segment(&self) -> bool {
                matches!(self, $ty::Corrupted(_) | $ty::ForkedHandle(_))
            }
        }
    };
}

hot_codes!(TrySendError => TrySend { Full => SHMRING_E_FULL, Disconnected => SHMRING_E_DISCONNECTED }
    with TooLarge => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(SendError => Send { Disconnected => SHMRING_E_DISCONNECTED }
    with TooLarge => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(SendTimeoutError => SendTimeout { Timeout => SHMRING_E_TIMEOUT, Disconnected => SHMRING_E_DISCONNECTED }
    with TooLarge => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(TryRecvError => TryRecv { Empty => SHMRING_E_EMPTY, Disconnected => SHMRING_E_DISCONNECTED }
    with Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(RecvError => Recv { Disconnected => SHMRING_E_DISCONNECTED }
    with Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(RecvTimeoutError => RecvTimeout { Timeout => SHMRING_E_TIMEOUT, Disconnected => SHMRING_E_DISCONNECTED }
    with Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);

/// The C code of a setup error.
fn setup_code(e: &Error) -> c_int {
    match e {
        Error::InvalidName { .. } | Error::InvalidOptions { .. } => SHMRING_E_INVALID,
        Error::NotFound { .. } => SHMRING_E_NOT_FOUND,
        Error::AlreadyExists { .. } => SHMRING_E_EXISTS,
        Error::PermissionDenied { .. } => SHMRING_E_PERMISSION,
        Error::NoSpace { .. } => SHMRING_E_NO_SPACE,
        Error::NotShmring { .. }
        | Error::VersionMismatch { .. }
        | Error::KindMismatch { .. }
        | Error::SizeMismatch { .. }
        | Error::NotSealed { .. }
        | Error::NotMemfd { .. } => SHMRING_E_INCOMPATIBLE,
        Error::ChecksumMismatch { .. } | Error::Corrupted(_) => SHMRING_E_CORRUPTED,
        Error::NotReady { .. } => SHMRING_E_TIMEOUT,
        Error::AlreadyAttached { .. } | Error::TooManyProducers { .. } | Error::ProducerSlotBlocked { .. } => {
            SHMRING_E_BUSY
        }
        Error::ForkedHandle(_) => SHMRING_E_FORKED,
        _ => SHMRING_E_IO,
    }
}

/// Records a setup error (its message and its causes, each said once) and
/// returns its code.
#[cold]
fn fail_setup(e: &Error) -> c_int {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    fail(setup_code(e), text)
}

/// Runs an entry point's body; a panic becomes [`SHMRING_E_PANIC`] with its
/// message.
#[inline(always)]
fn guard(body: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) => panicked(payload),
    }
}

#[cold]
fn panicked(payload: Box<dyn std::any::Any + Send>) -> c_int {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    // Dropping the payload could panic in turn: leak it instead.
    std::mem::forget(payload);
    fail(SHMRING_E_PANIC, format_args!("internal error (a panic was caught at the C boundary): {what}"))
}

// ---------------------------------------------------------------------------
// Arguments.

/// The handle behind `ptr`, or `SHMRING_E_INVALID` if it is NULL.
///
/// # Safety
///
/// `ptr` is NULL or a pointer returned by this library's constructor for `T`
/// and not freed, and no other reference to it is in use.
unsafe fn handle<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, c_int> {
    // SAFETY: the caller's contract: a live, unaliased handle or NULL.
    match unsafe { ptr.as_mut() } {
        Some(handle) => Ok(handle),
        None => Err(fail(SHMRING_E_INVALID, format_args!("the {what} handle is NULL"))),
    }
}

/// The bytes at `data`, or `SHMRING_E_INVALID` if it is NULL with a length.
///
/// # Safety
///
/// `data` is NULL or points to `len` readable bytes that stay unchanged while
/// the slice is used.
unsafe fn bytes<'a>(data: *const c_void, len: usize, segment: &str) -> Result<&'a [u8], c_int> {
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(fail(SHMRING_E_INVALID, format_args!("segment {segment}: data is NULL with a length of {len}")));
    }
    // SAFETY: the caller's contract: `len` readable bytes at `data`, which
    // is not NULL (checked above).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// The handle behind `ptr`, shared, or `SHMRING_E_INVALID` if it is NULL.
///
/// # Safety
///
/// `ptr` is NULL or a pointer returned by this library's constructor for `T`
/// and not freed, and not being changed by another call.
unsafe fn handle_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, c_int> {
    // SAFETY: the caller's contract: a live handle or NULL.
    match unsafe { ptr.as_ref() } {
        Some(handle) => Ok(handle),
        None => Err(fail(SHMRING_E_INVALID, format_args!("the {what} handle is NULL"))),
    }
}

/// The C string at `name` as UTF-8, or `SHMRING_E_INVALID`.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string.
unsafe fn utf8<'a>(name: *const c_char, what: &str) -> Result<&'a str, c_int> {
    if name.is_null() {
        return Err(fail(SHMRING_E_INVALID, format_args!("the {what} is NULL")));
    }
    // SAFETY: the caller's contract: a NUL-terminated string, not NULL.
    let text = unsafe { CStr::from_ptr(name) };
    text.to_str().map_err(|_| {
        fail(SHMRING_E_INVALID, format_args!("the {what} {:?} is not valid UTF-8", text.to_string_lossy()))
    })
}

/// The C string at `path` as a path (any bytes but NUL).
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string.
unsafe fn path_arg<'a>(path: *const c_char) -> Result<&'a Path, c_int> {
    use std::os::unix::ffi::OsStrExt;
    if path.is_null() {
        return Err(fail(SHMRING_E_INVALID, "the file path is NULL"));
    }
    // SAFETY: the caller's contract: a NUL-terminated string, not NULL.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

/// The options at `options`, or the defaults if it is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `shmring_options`.
unsafe fn options_or_default(options: *const shmring_options) -> RingOptions {
    // SAFETY: the caller's contract: NULL or a live handle.
    match unsafe { options.as_ref() } {
        Some(options) => options.options.clone(),
        None => RingOptions::new(),
    }
}

/// Runs a constructor: checks `out`, makes the handle with `make`, boxes it
/// into `*out` (NULL on failure).
///
/// # Safety
///
/// `out` is NULL or valid for a write of a pointer.
unsafe fn construct<T>(out: *mut *mut T, make: impl FnOnce() -> Result<T, c_int>) -> c_int {
    if out.is_null() {
        return fail(SHMRING_E_INVALID, "the out pointer is NULL");
    }
    // SAFETY: `out` is valid for writes (the caller's contract), not NULL.
    unsafe { out.write(ptr::null_mut()) };
    match make() {
        Ok(handle) => {
            // SAFETY: as above.
            unsafe { out.write(Box::into_raw(Box::new(handle))) };
            SHMRING_OK
        }
        Err(code) => code,
    }
}

macro_rules! try_arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

// ---------------------------------------------------------------------------
// Errors.

/// The message of the last call on this thread that failed: what was wrong,
/// naming the segment where there is one. An empty string if no call on this
/// thread has failed. The pointer is valid until the next call of a
/// `shmring_*` function on this thread; never NULL; do not free it.
#[no_mangle]
pub extern "C" fn shmring_last_error() -> *const c_char {
    static EMPTY: &CStr = c"";
    let text = catch_unwind(|| {
        LAST_ERROR
            .try_with(|last| {
                let mut last = last.try_borrow_mut().ok()?;
                if let LastError::Hot { segment, error, names_segment } = &*last {
                    let text = match names_segment {
                        true => error.to_string(),
                        false => format!("segment {segment}: {error}"),
                    };
                    *last = LastError::Text(c_text(text));
                }
                match &*last {
                    // The CString's buffer stays where it is until the
                    // value is replaced, by a later failing call.
                    LastError::Text(text) => Some(text.as_ptr()),
                    _ => None,
                }
            })
            .ok()
            .flatten()
    });
    text.ok().flatten().unwrap_or(EMPTY.as_ptr())
}

/// The name of a code (`"SHMRING_E_FULL"`...), or `"SHMRING_E_UNKNOWN"`. A
/// static string: never NULL, do not free it.
#[no_mangle]
pub extern "C" fn shmring_strerror(code: c_int) -> *const c_char {
    let name: &'static CStr = match code {
        SHMRING_OK => c"SHMRING_OK",
        SHMRING_E_FULL => c"SHMRING_E_FULL",
        SHMRING_E_EMPTY => c"SHMRING_E_EMPTY",
        SHMRING_E_TIMEOUT => c"SHMRING_E_TIMEOUT",
        SHMRING_E_DISCONNECTED => c"SHMRING_E_DISCONNECTED",
        SHMRING_E_TOO_LARGE => c"SHMRING_E_TOO_LARGE",
        SHMRING_E_CORRUPTED => c"SHMRING_E_CORRUPTED",
        SHMRING_E_INVALID => c"SHMRING_E_INVALID",
        SHMRING_E_NOT_FOUND => c"SHMRING_E_NOT_FOUND",
        SHMRING_E_EXISTS => c"SHMRING_E_EXISTS",
        SHMRING_E_PERMISSION => c"SHMRING_E_PERMISSION",
        SHMRING_E_FORKED => c"SHMRING_E_FORKED",
        SHMRING_E_BUSY => c"SHMRING_E_BUSY",
        SHMRING_E_NO_SPACE => c"SHMRING_E_NO_SPACE",
        SHMRING_E_INCOMPATIBLE => c"SHMRING_E_INCOMPATIBLE",
        SHMRING_E_IO => c"SHMRING_E_IO",
        SHMRING_E_PANIC => c"SHMRING_E_PANIC",
        _ => c"SHMRING_E_UNKNOWN",
    };
    name.as_ptr()
}

// ---------------------------------------------------------------------------
// Options.

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
    guard(|| {
        if !options.is_null() {
            // SAFETY: from `Box::into_raw` in `shmring_options_new` and not
            // freed yet (the caller's contract).
            drop(unsafe { Box::from_raw(options) });
        }
        SHMRING_OK
    });
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
pub unsafe extern "C" fn shmring_options_capacity(options: *mut shmring_options, bytes: u64) {
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
pub unsafe extern "C" fn shmring_options_max_message(options: *mut shmring_options, bytes: u32) {
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
pub unsafe extern "C" fn shmring_options_for_messages(options: *mut shmring_options, count: u64, max_size: u32) {
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
pub unsafe extern "C" fn shmring_options_max_producers(options: *mut shmring_options, producers: u32) {
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

/// How long opening waits for a creator to finish the header (default 1 s).
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

// ---------------------------------------------------------------------------
// Handles.

impl shmring_producer {
    fn new(inner: Producer) -> Self {
        let segment = Arc::from(inner.name());
        shmring_producer { inner, segment }
    }
}

impl shmring_consumer {
    fn new(inner: Consumer) -> Self {
        let segment = Arc::from(inner.name());
        let max_message = inner.max_message();
        // The staging buffer grows to the largest message met, not to the
        // segment's maximum (which can be gigabytes).
        shmring_consumer { inner, segment, max_message, staging: Vec::new() }
    }
}

/// Makes a handle of a named segment with `make`.
///
/// # Safety
///
/// `name` NULL or NUL-terminated; `options` NULL or live; `out` NULL or
/// writable.
unsafe fn named<H, T>(
    name: *const c_char,
    options: *const shmring_options,
    out: *mut *mut H,
    make: impl FnOnce(&str, &RingOptions) -> Result<T, Error>,
    wrap: impl FnOnce(T) -> H,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe {
            construct(out, || {
                let name = utf8(name, "segment name")?;
                let options = options_or_default(options);
                make(name, &options).map(wrap).map_err(|e| fail_setup(&e))
            })
        }
    })
}

/// Makes a handle of a file-backed ring with `make`.
///
/// # Safety
///
/// As [`named`].
unsafe fn filed<H, T>(
    path: *const c_char,
    options: *const shmring_options,
    out: *mut *mut H,
    make: impl FnOnce(&Path, &RingOptions) -> Result<T, Error>,
    wrap: impl FnOnce(T) -> H,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe {
            construct(out, || {
                let path = path_arg(path)?;
                let options = options_or_default(options);
                make(path, &options).map(wrap).map_err(|e| fail_setup(&e))
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
    // SAFETY: forwarded contract.
    unsafe { named(name, options, out, Consumer::create, shmring_consumer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { named(name, options, out, Consumer::open, shmring_consumer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { named(name, options, out, Producer::create, shmring_producer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { named(name, options, out, Producer::open, shmring_producer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { filed(path, options, out, |p, o| Consumer::create_file(p, o), shmring_consumer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { filed(path, options, out, |p, o| Consumer::open_file(p, o), shmring_consumer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { filed(path, options, out, |p, o| Producer::create_file(p, o), shmring_producer::new) }
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
    // SAFETY: forwarded contract.
    unsafe { filed(path, options, out, |p, o| Producer::open_file(p, o), shmring_producer::new) }
}

/// Detaches and frees a consumer (NULL: nothing). The creating handle
/// removes the segment's name, unless the options said otherwise.
///
/// # Safety
///
/// `consumer` is NULL or from a constructor, not freed yet, not in use.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_free(consumer: *mut shmring_consumer) {
    guard(|| {
        if !consumer.is_null() {
            // SAFETY: from `Box::into_raw` in `construct`, not freed yet.
            drop(unsafe { Box::from_raw(consumer) });
        }
        SHMRING_OK
    });
}

/// Detaches and frees a producer (NULL: nothing).
///
/// # Safety
///
/// `producer` is NULL or from a constructor, not freed yet, not in use.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_free(producer: *mut shmring_producer) {
    guard(|| {
        if !producer.is_null() {
            // SAFETY: from `Box::into_raw` in `construct`, not freed yet.
            drop(unsafe { Box::from_raw(producer) });
        }
        SHMRING_OK
    });
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

// ---------------------------------------------------------------------------
// Sending.

/// Runs `send` on the producer and the message.
///
/// # Safety
///
/// `producer` NULL or live and unaliased; `data` NULL or `len` readable bytes.
#[inline(always)]
unsafe fn with_message(
    producer: *mut shmring_producer,
    data: *const c_void,
    len: usize,
    send: impl FnOnce(&mut Producer, &[u8], &Arc<str>) -> c_int,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle(producer, "producer") });
        // SAFETY: forwarded contract.
        let msg = try_arg!(unsafe { bytes(data, len, &producer.segment) });
        send(&mut producer.inner, msg, &producer.segment)
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
    unsafe {
        with_message(producer, data, len, |p, msg, segment| match p.send(msg) {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_hot(segment, e),
        })
    }
}

/// Sends if there is room now: `SHMRING_E_FULL` if not.
///
/// # Safety
///
/// As `shmring_send`.
#[no_mangle]
pub unsafe extern "C" fn shmring_try_send(producer: *mut shmring_producer, data: *const c_void, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_message(producer, data, len, |p, msg, segment| match p.try_send(msg) {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_hot(segment, e),
        })
    }
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
    unsafe {
        with_message(producer, data, len, |p, msg, segment| {
            match p.send_timeout(msg, Duration::from_nanos(timeout_ns)) {
                Ok(()) => SHMRING_OK,
                Err(e) => fail_hot(segment, e),
            }
        })
    }
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
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle(producer, "producer") });
        let Some(fill) = fill else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: the fill callback is NULL", producer.segment));
        };
        match reserve(&mut producer.inner, len) {
            Ok(mut grant) => {
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
/// must return normally (no `longjmp`, no C++ exception) and must not call
/// shmring functions on this producer. Errors as `shmring_send`; on an
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

// ---------------------------------------------------------------------------
// Receiving.

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
unsafe fn receive<E: Into<Hot> + HotCode, F: Into<Hot> + HotCode>(
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
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle(consumer, "consumer") });
        let Some(read) = read else {
            return fail(SHMRING_E_INVALID, format_args!("segment {}: the read callback is NULL", consumer.segment));
        };
        match read_msg(&mut consumer.inner) {
            Ok(msg) => {
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
/// must return normally (no `longjmp`, no C++ exception) and must not call
/// shmring functions on this consumer. Errors as `shmring_recv` (never
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

// ---------------------------------------------------------------------------
// Accessors, flush.

fn stats_of(stats: shmring::Stats) -> shmring_stats {
    shmring_stats {
        messages: stats.messages,
        bytes: stats.bytes,
        futex_waits: stats.futex_waits,
        futex_wakes: stats.futex_wakes,
        torn_records: stats.torn_records,
    }
}

/// Writes the producer's counters to `*out`.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_stats(producer: *const shmring_producer, out: *mut shmring_stats) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle_ref(producer, "producer") });
        // SAFETY: `out` is NULL or valid for a write.
        let Some(out) = (unsafe { out.as_mut() }) else { return fail(SHMRING_E_INVALID, "the stats pointer is NULL") };
        *out = stats_of(producer.inner.stats());
        SHMRING_OK
    })
}

/// Writes the consumer's counters to `*out`.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere; `out` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_stats(consumer: *const shmring_consumer, out: *mut shmring_stats) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle_ref(consumer, "consumer") });
        // SAFETY: `out` is NULL or valid for a write.
        let Some(out) = (unsafe { out.as_mut() }) else { return fail(SHMRING_E_INVALID, "the stats pointer is NULL") };
        *out = stats_of(consumer.inner.stats());
        SHMRING_OK
    })
}

/// The largest message the producer's segment takes (0 for NULL).
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_max_message(producer: *const shmring_producer) -> usize {
    // SAFETY: forwarded contract.
    catch_unwind(|| unsafe { producer.as_ref() }.map_or(0, |p| p.inner.max_message())).unwrap_or(0)
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
    catch_unwind(|| unsafe { consumer.as_ref() }.map_or(0, |c| c.inner.max_message())).unwrap_or(0)
}

/// Bytes in the producer's data region (0 for NULL).
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_capacity(producer: *const shmring_producer) -> u64 {
    // SAFETY: forwarded contract.
    catch_unwind(|| unsafe { producer.as_ref() }.map_or(0, |p| p.inner.capacity())).unwrap_or(0)
}

/// Bytes in the consumer's data region (0 for NULL).
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_capacity(consumer: *const shmring_consumer) -> u64 {
    // SAFETY: forwarded contract.
    catch_unwind(|| unsafe { consumer.as_ref() }.map_or(0, |c| c.inner.capacity())).unwrap_or(0)
}

/// File-backed rings: makes every message committed so far durable
/// (`msync(MS_SYNC)`). In effect a no-op for shared memory.
///
/// # Safety
///
/// `producer` is NULL or a live producer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_producer_flush(producer: *mut shmring_producer) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let producer = try_arg!(unsafe { handle(producer, "producer") });
        match producer.inner.flush() {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_setup(&e),
        }
    })
}

/// File-backed rings: makes the consumer's position durable.
///
/// # Safety
///
/// `consumer` is NULL or a live consumer not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn shmring_consumer_flush(consumer: *mut shmring_consumer) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let consumer = try_arg!(unsafe { handle(consumer, "consumer") });
        match consumer.inner.flush() {
            Ok(()) => SHMRING_OK,
            Err(e) => fail_setup(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `shmring_last_error` returns a NUL-terminated string that
        // stays valid until the next call on this thread; copied at once.
        unsafe { CStr::from_ptr(shmring_last_error()) }.to_string_lossy().into_owned()
    }

    /// A panic inside an entry point is a code and a message, not an unwind
    /// into C (which would be undefined behaviour). No entry point panics
    /// through a correct library, so this is provoked here.
    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("boom at the boundary"));
        assert_eq!(code, SHMRING_E_PANIC);
        assert!(last_error().contains("boom at the boundary"), "{}", last_error());
        let code = guard(|| std::panic::panic_any(42));
        assert_eq!(code, SHMRING_E_PANIC);
        assert!(last_error().contains("internal error"), "{}", last_error());
    }

    /// Hot-path errors are formatted when asked for, naming the segment once.
    #[test]
    fn hot_errors_name_the_segment_once() {
        let segment: Arc<str> = Arc::from("/orders");
        assert_eq!(fail_hot(&segment, TrySendError::Full), SHMRING_E_FULL);
        assert_eq!(last_error(), "segment /orders: the ring is full");
        assert_eq!(fail_hot(&segment, RecvTimeoutError::Timeout), SHMRING_E_TIMEOUT);
        assert_eq!(last_error(), "segment /orders: timed out waiting for a message");
        // Stays until the next failure.
        assert_eq!(last_error(), "segment /orders: timed out waiting for a message");
        assert_eq!(fail(SHMRING_E_INVALID, "a\0b"), SHMRING_E_INVALID);
        assert_eq!(last_error(), "a?b");
    }

    #[test]
    fn every_code_has_a_name() {
        for code in -16..=0 {
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(shmring_strerror(code)) }.to_str().unwrap();
            assert!(name.starts_with("SHMRING_") && !name.ends_with("UNKNOWN"), "{code}: {name}");
        }
    }
}
