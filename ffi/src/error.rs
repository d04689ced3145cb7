//! Return codes and the thread-local last error: the `SHMRING_E_*` codes and
//! their names, the mapping of Rust errors to codes, the message each
//! failure leaves for `shmring_last_error`, and the catching of panics at the
//! boundary.

use shmring::{Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::{self, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

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

// ---------------------------------------------------------------------------
// The thread-local last error.

/// A hot-path error kept as it is, formatted only if it is asked for: a
/// `try_send` loop that meets `FULL` costs no formatting.
#[derive(Debug)]
pub(crate) enum Hot {
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
pub(crate) fn fail(code: c_int, text: impl Display) -> c_int {
    store(LastError::Text(c_text(text.to_string())));
    code
}

/// Records a hot-path error of `segment` (formatted later, if asked) and
/// returns its code.
#[inline]
pub(crate) fn fail_hot(segment: &Arc<str>, error: impl Into<Hot> + HotCode) -> c_int {
    let code = error.code();
    let names_segment = error.names_segment();
    store(LastError::Hot { segment: Arc::clone(segment), error: error.into(), names_segment });
    code
}

/// The C code of a hot-path error, and whether its message names the
/// segment already.
pub(crate) trait HotCode {
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
    with BufferTooSmall => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(RecvError => Recv { Disconnected => SHMRING_E_DISCONNECTED }
    with BufferTooSmall => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);
hot_codes!(RecvTimeoutError => RecvTimeout { Timeout => SHMRING_E_TIMEOUT, Disconnected => SHMRING_E_DISCONNECTED }
    with BufferTooSmall => SHMRING_E_TOO_LARGE, Corrupted => SHMRING_E_CORRUPTED, ForkedHandle => SHMRING_E_FORKED);

/// The length of the message a receive left in the ring because the buffer
/// was too small (`*len` then says it).
pub(crate) trait Needed {
    fn needed(&self) -> Option<usize>;
}

macro_rules! needed {
    ($($ty:ident),*) => {$(
        impl Needed for $ty {
            fn needed(&self) -> Option<usize> {
                match self {
                    $ty::BufferTooSmall(e) => Some(e.len),
                    _ => None,
                }
            }
        }
    )*};
}

needed!(TryRecvError, RecvError, RecvTimeoutError);

/// The C code of a setup error.
fn setup_code(e: &Error) -> c_int {
    match e {
        Error::InvalidName { .. } | Error::InvalidOptions { .. } => SHMRING_E_INVALID,
        Error::NotFound { .. } => SHMRING_E_NOT_FOUND,
        Error::AlreadyExists { .. } => SHMRING_E_EXISTS,
        Error::PermissionDenied { .. } => SHMRING_E_PERMISSION,
        Error::NoSpace { .. } | Error::NoHugePages { .. } => SHMRING_E_NO_SPACE,
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
pub(crate) fn fail_setup(e: &Error) -> c_int {
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
pub(crate) fn guard(body: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) => panicked(payload),
    }
}

#[cold]
pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> c_int {
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
// The last error and the codes' names, for C.

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
