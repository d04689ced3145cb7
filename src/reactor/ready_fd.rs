//! [`ReadyFd`]: a ring's readiness as a file descriptor, for event loops
//! that wait on descriptors (epoll, mio, a C program's `poll`).

use super::handles::AsyncState;
use crate::ring::{Pace, Watched};
use crate::{Consumer, Producer};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

/// A handle and an `eventfd` that becomes readable when the handle can go
/// on: a [`Consumer`] has a message (or its receive would fail at once), a
/// [`Producer`] has room for a message of the length given. It is driven by
/// the same reactor as the async handles, so a ring can sit in an existing
/// event loop next to sockets and timers, at no cost to the ring's peers.
///
/// The loop: [`arm`](Self::arm), wait for the descriptor to be readable,
/// then use the handle through [`get_mut`](Self::get_mut) (which clears
/// the descriptor) until it would block, and arm again. A descriptor that
/// is readable once armed means "look now": a wake-up may be early (for
/// instance the liveness re-check every park slice), never lost.
///
/// ```
/// use rustix::event::{poll, PollFd, PollFlags};
/// use shmring::{Consumer, Producer, ReadyFd, TryRecvError};
/// # let name = format!("/doc-ready-fd-{}", std::process::id());
/// # let options = shmring::RingOptions::new().unlink_on_drop(true);
/// let mut ready = ReadyFd::consumer(Consumer::create(&name, &options)?)?;
/// let mut producer = Producer::open(&name, &options)?; // normally elsewhere
/// producer.send(b"hello")?;
/// ready.arm();
/// let mut fds = [PollFd::new(&ready, PollFlags::IN)];
/// poll(&mut fds, None)?; // or epoll, mio, ... beside other descriptors
/// let mut buf = Vec::new();
/// while let Ok(_) = ready.get_mut().try_recv(&mut buf) { /* handle it */ }
/// # assert_eq!(buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[allow(private_bounds)]
pub struct ReadyFd<H: Source> {
    handle: H,
    /// For a producer: the message length it waits for room for.
    room_for: usize,
    signal: Arc<Signal>,
    waker: Waker,
    state: AsyncState,
}

/// The eventfd, as the waker the reactor wakes.
#[derive(Debug)]
struct Signal(OwnedFd);

impl Signal {
    fn raise(&self) {
        // Fails only if the counter would overflow (it is then readable
        // anyway).
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    fn clear(&self) {
        // Non-blocking: `EAGAIN` when it was not raised.
        let _ = rustix::io::read(&self.0, &mut [0u8; 8]);
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.raise();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

#[allow(private_bounds)]
impl<H: Source> ReadyFd<H> {
    fn with(handle: H, room_for: usize) -> std::io::Result<ReadyFd<H>> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let signal = Arc::new(Signal(fd));
        let waker = Waker::from(Arc::clone(&signal));
        Ok(ReadyFd { handle, room_for, signal, waker, state: AsyncState::default() })
    }
}

impl ReadyFd<Consumer> {
    /// `consumer`, with a descriptor that is readable once armed and a
    /// message waits.
    pub fn consumer(consumer: Consumer) -> std::io::Result<ReadyFd<Consumer>> {
        ReadyFd::with(consumer, 0)
    }
}

impl ReadyFd<Producer> {
    /// `producer`, with a descriptor that is readable once armed and there
    /// is room for a message of `len` bytes.
    pub fn producer(producer: Producer, len: usize) -> std::io::Result<ReadyFd<Producer>> {
        ReadyFd::with(producer, len)
    }
}

#[allow(private_bounds)]
impl<H: Source> ReadyFd<H> {
    /// Makes the descriptor readable as soon as the handle can go on (at
    /// once if it can now).
    pub fn arm(&mut self) {
        self.signal.clear();
        self.handle.end_wait(&mut self.state, self.room_for);
        let cx = Context::from_waker(&self.waker);
        if self.handle.wait(&mut self.state, self.room_for, &cx) {
            self.signal.raise();
        }
    }

    /// The handle: clears the descriptor and ends the armed wait.
    pub fn get_mut(&mut self) -> &mut H {
        self.signal.clear();
        self.handle.end_wait(&mut self.state, self.room_for);
        &mut self.handle
    }

    /// The handle.
    pub fn get_ref(&self) -> &H {
        &self.handle
    }
}

/// A handle a [`ReadyFd`] can wait for.
trait Source {
    /// Ends the wait in progress (see `AsyncState::end_wait`).
    fn end_wait(&mut self, state: &mut AsyncState, room_for: usize);
    /// Whether it can go on now; if not, waits with `cx`'s waker.
    fn wait(&mut self, state: &mut AsyncState, room_for: usize, cx: &Context<'_>) -> bool;
}

impl Source for Consumer {
    fn end_wait(&mut self, state: &mut AsyncState, _: usize) {
        state.end_wait(self);
    }
    fn wait(&mut self, state: &mut AsyncState, _: usize, cx: &Context<'_>) -> bool {
        self.ready(Pace::Call) || state.wait(self, cx).is_ready()
    }
}

impl Source for Producer {
    fn end_wait(&mut self, state: &mut AsyncState, room_for: usize) {
        state.end_wait(&self.room_for(room_for));
    }
    fn wait(&mut self, state: &mut AsyncState, room_for: usize, cx: &Context<'_>) -> bool {
        let mut room = self.room_for(room_for);
        room.ready(Pace::Call) || state.wait(&mut room, cx).is_ready()
    }
}

#[allow(private_bounds)]
impl<H: Source> Drop for ReadyFd<H> {
    fn drop(&mut self) {
        self.handle.end_wait(&mut self.state, self.room_for);
    }
}

#[allow(private_bounds)]
impl<H: Source> AsFd for ReadyFd<H> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.signal.0.as_fd()
    }
}

#[allow(private_bounds)]
impl<H: Source> AsRawFd for ReadyFd<H> {
    fn as_raw_fd(&self) -> RawFd {
        self.signal.0.as_raw_fd()
    }
}
