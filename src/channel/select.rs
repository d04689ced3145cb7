//! [`Select`]: one thread waiting on many rings at once.

use super::{Consumer, Producer};
use crate::layout::WakeLine;
use crate::ring::{self, Pace, Watched};
use crate::sync::AtomicU64;
use crate::wait::{WaitStrategy, PARK_SLICE};
use std::time::Duration;

/// Waits on many rings at once: for a message on any of several
/// [`Consumer`]s, or room in any of several [`Producer`]s
/// ([`Producer::room_for`]), from one thread.
///
/// A wait first polls every handle (spinning as its [`WaitStrategy`] says),
/// then announces itself on every ring's wake line and sleeps on all of
/// them in one `futex_waitv` system call (Linux 5.16 and later), so that a
/// peer that publishes wakes it exactly as it wakes a single sleeping
/// handle: the other side of each ring needs no change and pays nothing
/// while nobody sleeps. A wait on more than 128 rings sleeps on 128 of them
/// at a time, in turns of at most 1 ms; where `futex_waitv` is missing
/// (older kernels, or `SHMRING_FUTEX_WAITV=off` in the environment, for a
/// seccomp filter that kills on unknown system calls) it sleeps on one ring
/// at a time in such turns. In those two cases a message on a ring it is
/// not sleeping on is noticed within about 1 ms per turn.
///
/// Readiness is a hint, as for `crossbeam_channel::Select`: a handle
/// reported ready normally lets its `try_` call succeed, but it may still
/// find nothing (in an MPSC ring another producer may take the room first).
/// A handle whose calls would fail at once (its peer gone, a corrupt ring, a
/// handle inherited across `fork`) counts as ready, so the error is met
/// where it belongs: in the call.
///
/// ```
/// use shmring::{Consumer, Producer, RingOptions, Select, TryRecvError};
/// # let pid = std::process::id();
/// let options = RingOptions::new().unlink_on_drop(true);
/// let mut consumers = Vec::new();
/// let mut producers = Vec::new();
/// for client in 0..3 {
///     let name = format!("/doc-select-{pid}-{client}");
///     consumers.push(Consumer::create(&name, &options)?);
///     producers.push(Producer::open(&name, &options)?);
/// }
/// producers[2].send(b"from client 2")?;
///
/// let mut select = Select::new();
/// let mut buf = Vec::new();
/// for &ready in select.wait(&mut consumers) {
///     match consumers[ready].try_recv(&mut buf) {
///         Ok(_) => assert_eq!((ready, &buf[..]), (2, &b"from client 2"[..])),
///         Err(TryRecvError::Empty) => {} // a hint: look again later
///         Err(e) => return Err(e.into()),
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Consumers and producers mix through `&mut dyn Selectable`:
///
/// ```
/// # use shmring::{Consumer, Producer, RingOptions, Select, Selectable};
/// # let pid = std::process::id();
/// # let options = RingOptions::new().unlink_on_drop(true);
/// # let mut requests = Consumer::create(&format!("/doc-select-mix-a-{pid}"), &options)?;
/// # let _client = Producer::open(&format!("/doc-select-mix-a-{pid}"), &options)?;
/// # let _reader = Consumer::create(&format!("/doc-select-mix-b-{pid}"), &options)?;
/// # let mut replies = Producer::open(&format!("/doc-select-mix-b-{pid}"), &options)?;
/// let mut room = replies.room_for(64);
/// let handles: &mut [&mut dyn Selectable] = &mut [&mut requests, &mut room];
/// assert_eq!(Select::new().wait(handles), [1]); // room for a reply, no request
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Select {
    strategy: WaitStrategy,
    selection: ring::Selection,
}

impl Select {
    /// A multi-ring wait with the default [`WaitStrategy`] (spin for 50 µs,
    /// then sleep).
    pub fn new() -> Select {
        Select::default()
    }

    /// A multi-ring wait that waits with `strategy`.
    pub fn with_strategy(strategy: WaitStrategy) -> Select {
        Select { strategy, selection: ring::Selection::default() }
    }

    /// Blocks until at least one of `handles` is ready and returns the
    /// indices of every handle ready at that moment, in order (never
    /// empty). A parked wait re-checks its handles' peers at least every
    /// [`RingOptions::liveness_interval`](crate::RingOptions::liveness_interval),
    /// so a peer that dies makes its handle ready (its call then fails).
    /// With no handles it blocks for ever.
    pub fn wait<S: Selectable>(&mut self, handles: &mut [S]) -> &[usize] {
        self.wait_timeout(handles, Duration::MAX)
    }

    /// [`wait`](Self::wait), for at most `timeout`: an empty list once it
    /// has passed with no handle ready.
    pub fn wait_timeout<S: Selectable>(&mut self, handles: &mut [S], timeout: Duration) -> &[usize] {
        ring::select(handles, self.strategy, timeout, &mut self.selection);
        &self.selection.ready
    }

    /// The indices of the handles ready now, without waiting (maybe empty).
    pub fn try_ready<S: Selectable>(&mut self, handles: &mut [S]) -> &[usize] {
        ring::select_now(handles, &mut self.selection);
        &self.selection.ready
    }

    /// The system calls this `Select` has made to sleep (one per park,
    /// whatever the number of rings).
    pub fn futex_waits(&self) -> u64 {
        self.selection.futex_waits
    }

    /// The strategy it waits with.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }
}

/// Something [`Select`] can wait on: a [`Consumer`] (for a message), a
/// [`RoomFor`] (for room to send), or a mutable reference to either, also
/// as `&mut dyn Selectable` to mix them. Implemented only by shmring's
/// handles.
#[allow(private_bounds)]
pub trait Selectable: Watched {}

impl Selectable for Consumer {}
impl Selectable for RoomFor<'_> {}
impl<S: Selectable + ?Sized> Selectable for &mut S {}

/// A [`Producer`] waiting for room for a message of a given length, for
/// [`Select`] (see [`Producer::room_for`]).
#[derive(Debug)]
pub struct RoomFor<'a> {
    pub(super) producer: &'a mut Producer,
    pub(super) len: usize,
}

impl RoomFor<'_> {
    /// The producer, to send once the wait says there is room.
    pub fn producer(&mut self) -> &mut Producer {
        self.producer
    }
}

/// Ready when a message waits (or a receive would fail at once).
impl Watched for Consumer {
    fn wake_line(&self) -> Option<&WakeLine> {
        self.ring_to_watch().and_then(Watched::wake_line)
    }
    fn ready(&mut self, pace: Pace) -> bool {
        self.ring_to_watch_mut().is_none_or(|ring| ring.ready(pace))
    }
    fn spin_word(&self) -> Option<&AtomicU64> {
        self.ring_to_watch().and_then(Watched::spin_word)
    }
    fn park_slice(&self) -> Duration {
        self.ring_to_watch().map_or(PARK_SLICE, Watched::park_slice)
    }
}

/// Ready when a send of its length would not wait (or would fail at once).
impl Watched for RoomFor<'_> {
    fn wake_line(&self) -> Option<&WakeLine> {
        self.producer.ring_to_watch().map(ring::Producer::wake_line)
    }
    fn ready(&mut self, pace: Pace) -> bool {
        let len = self.len;
        self.producer.ring_to_watch_mut().is_none_or(|ring| ring.ready_for(len, pace))
    }
    fn mark_parked(&self, parked: bool) {
        if let Some(ring) = self.producer.ring_to_watch() {
            ring.mark_parked(parked);
        }
    }
    fn park_slice(&self) -> Duration {
        self.producer.ring_to_watch().map_or(PARK_SLICE, ring::Producer::park_slice)
    }
}
