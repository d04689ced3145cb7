//! Lock-free message rings between processes, over POSIX shared memory.
//!
//! One producer and one consumer (SPSC), or many producer processes and one
//! consumer (MPSC: [`RingOptions::kind`]), where a producer killed in the
//! middle of a message costs nobody more than that message. A ring can also
//! live in a file that persists ([`Producer::create_file`],
//! [`Producer::flush`]) or in an anonymous memfd shared by `fork` or over a
//! Unix socket ([`AnonymousRing`]).
//!
//! A segment made by `shm_open` + `ftruncate` + `mmap(MAP_SHARED)` holds a
//! header and a ring of variable-length messages. Once both sides are
//! attached, passing a message costs no system call and no kernel copy: the
//! producer writes into the ring (or in place, with [`Producer::reserve`]),
//! the consumer reads in place ([`Consumer::read`]) or copies out
//! ([`Consumer::recv`]). Processes enter the kernel only to sleep on a futex
//! when one of them actually has to wait.
//!
//! ```
//! use shmring::{Consumer, Producer, RingOptions};
//!
//! let name = format!("/shmring-doc-{}", std::process::id());
//! let options = RingOptions::new().capacity(64 * 1024);
//! let mut consumer = Consumer::create(&name, &options)?; // unlinks on drop
//! let mut producer = Producer::open(&name, &options)?; // usually another process
//!
//! producer.send(b"hello")?;
//! let mut grant = producer.reserve(5)?;
//! grant.copy_from_slice(b"world");
//! grant.commit();
//!
//! let mut buf = Vec::new();
//! consumer.recv(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! assert_eq!(&*consumer.read()?, b"world");
//!
//! drop(producer);
//! assert_eq!(consumer.try_recv(&mut buf), Err(shmring::TryRecvError::Disconnected));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules
//!
//! * `layout`: the header in shared memory, pinned at compile time; `record`
//!   and `region`: the record format and the data region (leaf modules).
//! * `segment`: creating, opening, validating and mapping segments; its
//!   `fork` says what becomes of a handle in a forked child (it fails, and
//!   its drop does nothing), and how a child's copy of a mapping or
//!   descriptor is kept from holding the parent's liveness lock.
//! * `ring`: the algorithms (record framing, commit words, wake-ups), written
//!   once and model-checked with loom.
//! * [`wait`]: how a blocked side waits.
//! * [`inspect`]: reading segments without taking part (what the `shmring`
//!   tool shows), and removing stale ones.
//! * [`error`]: what can go wrong, by name.
//! * `channel`: the public handles ([`Producer`], [`Consumer`],
//!   [`AnonymousRing`], [`RingOptions`]): where a segment comes from, taking
//!   a role in it, and mapping the ring's reasons to the public errors.
//!
//! Imports run one way: `channel` uses `segment` and `ring`; the async
//! `reactor` uses `ring` and `segment`'s fork generation; `ring` uses
//! `layout`, `record`, `region`, `wait` and `sync`; `segment` uses `layout`,
//! `region` and `sync`; nothing below imports what is above it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
#[cfg(shmring_loom)]
pub mod layout;
#[cfg(not(shmring_loom))]
pub(crate) mod layout;
#[cfg(shmring_loom)]
pub mod record;
#[cfg(not(shmring_loom))]
pub(crate) mod record;
#[cfg(shmring_loom)]
#[allow(unsafe_code)]
pub mod region;
#[cfg(not(shmring_loom))]
#[allow(unsafe_code)]
pub(crate) mod region;
#[cfg(shmring_loom)]
#[allow(unsafe_code)]
pub mod ring;
#[cfg(not(shmring_loom))]
#[allow(unsafe_code)]
pub(crate) mod ring;
#[allow(unsafe_code)]
mod sync;
pub mod wait;

#[cfg(not(shmring_loom))]
mod channel;
#[cfg(not(shmring_loom))]
pub mod inspect;
#[cfg(not(shmring_loom))]
#[doc(hidden)]
pub mod payload;
#[cfg(all(feature = "async", not(shmring_loom)))]
mod reactor;
#[cfg(not(shmring_loom))]
#[allow(unsafe_code)]
mod segment;
#[cfg(not(shmring_loom))]
#[doc(hidden)]
pub mod testing;

#[cfg(not(shmring_loom))]
pub use channel::{
    unlink, validate_name, AnonymousRing, Consumer, Grant, Producer, ReadGuard, RingOptions, RoomFor, Select,
    Selectable, DEFAULT_CAPACITY,
};
pub use error::{
    BufferTooSmall, Corrupted, Error, ForkedHandle, RecvError, RecvTimeoutError, Role, SendError, SendTimeoutError,
    TooLarge, TryRecvError, TrySendError,
};
pub use layout::Kind;
#[cfg(all(feature = "async", not(shmring_loom)))]
pub use reactor::{reactor_syscalls, AsyncConsumer, AsyncProducer, ReadFuture, ReadyFd, RecvFuture, SendFuture};
pub use ring::Stats;
pub use wait::WaitStrategy;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
