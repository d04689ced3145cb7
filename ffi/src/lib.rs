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
//! header and this crate read the same.
//!
//! The modules, each with one job; every public item is re-exported here, at
//! the crate root:
//!
//! * `error`: the return codes, the thread-local last error, panics caught
//!   at the boundary;
//! * `args`: C arguments checked and turned into Rust references, handles
//!   boxed and freed;
//! * `options`: `shmring_options` and its setters;
//! * `handles`: producers and consumers created, opened, flushed, freed;
//! * `send` and `recv`: messages copied or written/read in place;
//! * `accessors`: a handle's counters and sizes.
#![allow(non_camel_case_types)]

mod accessors;
mod args;
mod error;
mod handles;
mod options;
mod recv;
mod send;

pub use accessors::*;
pub use error::*;
pub use handles::*;
pub use options::*;
pub use recv::*;
pub use send::*;
