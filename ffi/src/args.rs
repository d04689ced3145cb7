//! The C arguments: handles, buffers, names and paths checked (NULL is
//! `SHMRING_E_INVALID`, never a crash) and turned into Rust references; new
//! handles boxed into out pointers, and freed.

use crate::error::{fail, guard, SHMRING_E_INVALID, SHMRING_E_TOO_LARGE, SHMRING_OK};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;

thread_local! {
    /// The handles whose callback (`shmring_send_with`, `shmring_recv_with`)
    /// is running on this thread, innermost last. Handles are not
    /// thread-safe, so a call back into one comes on this thread.
    static IN_CALLBACK: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// How many callbacks run on this thread: the common case, none, costs
    /// one thread-local load.
    static CALLBACKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// While it lives, calls on the handle at `ptr` are refused (its callback
/// runs, and the handle is borrowed for it).
pub(crate) struct CallbackScope(usize);

impl CallbackScope {
    pub(crate) fn enter<T>(ptr: *const T) -> CallbackScope {
        IN_CALLBACK.with(|running| running.borrow_mut().push(ptr as usize));
        CALLBACKS.with(|n| n.set(n.get() + 1));
        CallbackScope(ptr as usize)
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CALLBACKS.with(|n| n.set(n.get().saturating_sub(1)));
        IN_CALLBACK.with(|running| {
            let mut running = running.borrow_mut();
            if let Some(at) = running.iter().rposition(|p| *p == self.0) {
                running.remove(at);
            }
        });
    }
}

/// `SHMRING_E_INVALID` if `ptr`'s callback is running on this thread: the
/// handle is in use by the call that runs it, and a second reference to it
/// would alias (a nested send would discard the outer claim, a nested
/// receive return the outer message again).
#[inline(always)]
fn not_in_its_callback<T>(ptr: *const T, what: &str) -> Result<(), c_int> {
    if CALLBACKS.with(|n| n.get()) == 0 {
        return Ok(());
    }
    let inside = IN_CALLBACK.with(|running| running.borrow().contains(&(ptr as usize)));
    if inside {
        return Err(fail(SHMRING_E_INVALID, format_args!("the {what} handle was called from its own callback")));
    }
    Ok(())
}

/// The handle behind `ptr`, or `SHMRING_E_INVALID` if it is NULL or its own
/// callback is running.
///
/// # Safety
///
/// `ptr` is NULL or a pointer returned by this library's constructor for `T`
/// and not freed, and no other reference to it is in use (but for the one a
/// running callback of its own holds, which this refuses).
pub(crate) unsafe fn handle<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, c_int> {
    not_in_its_callback(ptr, what)?;
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
pub(crate) unsafe fn bytes<'a>(data: *const c_void, len: usize, segment: &str) -> Result<&'a [u8], c_int> {
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(fail(SHMRING_E_INVALID, format_args!("segment {segment}: data is NULL with a length of {len}")));
    }
    if len > isize::MAX as usize {
        // No buffer is this long (nor any segment's maximum): a slice of it
        // would be undefined behaviour.
        return Err(fail(
            SHMRING_E_TOO_LARGE,
            format_args!("segment {segment}: a message of {len} bytes is too large"),
        ));
    }
    // SAFETY: the caller's contract: `len` readable bytes at `data`, which
    // is not NULL (checked above), and `len` is at most `isize::MAX`.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// The handle behind `ptr`, shared, or `SHMRING_E_INVALID` if it is NULL.
///
/// # Safety
///
/// `ptr` is NULL or a pointer returned by this library's constructor for `T`
/// and not freed, and not being changed by another call.
pub(crate) unsafe fn handle_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, c_int> {
    not_in_its_callback(ptr, what)?;
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
pub(crate) unsafe fn utf8<'a>(name: *const c_char, what: &str) -> Result<&'a str, c_int> {
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
pub(crate) unsafe fn path_arg<'a>(path: *const c_char) -> Result<&'a Path, c_int> {
    use std::os::unix::ffi::OsStrExt;
    if path.is_null() {
        return Err(fail(SHMRING_E_INVALID, "the file path is NULL"));
    }
    // SAFETY: the caller's contract: a NUL-terminated string, not NULL.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

/// Runs a constructor: checks `out`, makes the handle with `make`, boxes it
/// into `*out` (NULL on failure).
///
/// # Safety
///
/// `out` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn construct<T>(out: *mut *mut T, make: impl FnOnce() -> Result<T, c_int>) -> c_int {
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

/// The value of an argument check, or its error code returned at once.
macro_rules! try_arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}
pub(crate) use try_arg;

/// Frees a handle that a constructor boxed (NULL: nothing).
///
/// # Safety
///
/// `handle` is NULL or from `Box::into_raw` (in [`construct`] or
/// `shmring_options_new`), not freed yet, not in use.
pub(crate) unsafe fn release<T>(handle: *mut T) {
    guard(|| {
        if !handle.is_null() {
            // SAFETY: from `Box::into_raw` and not freed yet (the caller's
            // contract).
            drop(unsafe { Box::from_raw(handle) });
        }
        SHMRING_OK
    });
}
