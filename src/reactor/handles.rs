//! The async handles: a [`Consumer`] or [`Producer`] whose waits are
//! futures, woken by the process's reactor (see [`super::thread`]).

use super::thread::{Reactor, Ticket};
use crate::ring::{self, Announcement, Pace, Watched};
use crate::{Consumer, Producer, ReadGuard, RecvError, SendError, TryRecvError, TrySendError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A wait in progress: announced on the ring's line, registered with the
/// reactor.
#[derive(Debug)]
struct Waiting {
    announced: Announcement,
    reactor: &'static Reactor,
    ticket: Ticket,
}

/// What an async handle adds to its sync handle: the wait in progress and
/// the spin before one.
#[derive(Debug, Default)]
pub(super) struct AsyncState {
    waiting: Option<Waiting>,
    spin: Duration,
}

impl AsyncState {
    /// Ends the wait in progress, if any: cancels the registration and
    /// withdraws the announcement. Called before every look at the ring
    /// (so the handle's state, poison included, is the one it announced
    /// with), and when a future or the handle is dropped.
    pub(super) fn end_wait<W: Watched>(&mut self, side: &W) {
        if let Some(waiting) = self.waiting.take() {
            waiting.reactor.cancel(waiting.ticket);
            ring::withdraw(side, waiting.announced);
        }
    }

    /// After `side` was found not ready: spins for the handle's spin time
    /// looking again (`Ready` once it is), then announces and registers
    /// (`Pending`; the task is woken when the ring changes). Also `Ready`
    /// if the re-check after announcing finds it ready.
    pub(super) fn wait<W: Watched>(&mut self, side: &mut W, cx: &Context<'_>) -> Poll<()> {
        if !self.spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.spin {
                std::hint::spin_loop();
                if side.ready(Pace::Spin) {
                    return Poll::Ready(());
                }
            }
        }
        let Some(reactor) = Reactor::get() else {
            // No reactor thread: look again at the executor's next turn.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        match ring::announce(side) {
            None => Poll::Ready(()),
            Some(announced) => {
                let ticket = reactor.register(announced.word, announced.seq, cx.waker().clone(), side.park_slice());
                self.waiting = Some(Waiting { announced, reactor, ticket });
                Poll::Pending
            }
        }
    }
}

/// How often a poll looks again at once after its ring looked ready and
/// then was not, before it yields to the executor (the readiness of an
/// MPSC producer is a hint: another producer may take the room first).
const LOOKS_PER_POLL: usize = 4;

/// A [`Consumer`] whose receives are futures: `recv(&mut buf).await`,
/// `read().await`. Works on any executor (tokio's multi-thread and
/// current-thread runtimes included): a waiting task costs no thread and no
/// polling; the process's one reactor thread sleeps on every waiting ring's
/// futex word at once and wakes the task. The producers need no change.
///
/// Cancellation-safe: a future dropped at any point has consumed nothing
/// (a message is taken only in the poll that returns it) and leaves no
/// registration or announcement behind.
///
/// ```
/// # let name = format!("/doc-async-{}", std::process::id());
/// # let options = shmring::RingOptions::new().unlink_on_drop(true);
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// use shmring::{AsyncConsumer, Consumer, Producer};
/// let mut consumer = AsyncConsumer::new(Consumer::create(&name, &options)?);
/// let mut producer = Producer::open(&name, &options)?; // normally elsewhere
/// runtime.block_on(async {
///     let mut buf = Vec::new();
///     producer.send(b"hello")?;
///     consumer.recv(&mut buf).await?;
///     assert_eq!(buf, b"hello");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncConsumer {
    consumer: Consumer,
    state: AsyncState,
}

impl AsyncConsumer {
    /// Wraps `consumer`.
    pub fn new(consumer: Consumer) -> AsyncConsumer {
        AsyncConsumer { consumer, state: AsyncState::default() }
    }

    /// Spins for `spin` polling the ring before a wait registers with the
    /// reactor (default: not at all). A spin of a few microseconds saves
    /// the reactor's wake-up when messages come that fast, at the price of
    /// the executor thread it spins on.
    pub fn set_spin(&mut self, spin: Duration) {
        self.state.spin = spin;
    }

    /// Copies the next message into `buf` (replacing its contents), waiting
    /// while the ring is empty; its length. Errors as
    /// [`Consumer::recv`].
    pub fn recv<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> RecvFuture<'a> {
        RecvFuture { handle: self, buf }
    }

    /// Borrows the next message in place (or copies it, as
    /// [`Consumer::read`] decides), waiting while the ring is empty.
    pub fn read(&mut self) -> ReadFuture<'_> {
        ReadFuture { handle: Some(self) }
    }

    /// [`recv`](Self::recv) as a poll, for hand-written futures and
    /// streams: `Ready` with a message or an error, or `Pending` with `cx`'s
    /// waker registered.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<Result<usize, RecvError>> {
        for _ in 0..LOOKS_PER_POLL {
            self.state.end_wait(&self.consumer);
            match self.consumer.try_recv(buf) {
                Ok(len) => return Poll::Ready(Ok(len)),
                Err(TryRecvError::Empty) => {}
                Err(e) => return Poll::Ready(Err(recv_error(e))),
            }
            if self.state.wait(&mut self.consumer, cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// `Ready` once a message (or an error) waits: then the next receive
    /// or read returns at once.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.state.end_wait(&self.consumer);
        if self.consumer.ready(Pace::Call) {
            return Poll::Ready(());
        }
        self.state.wait(&mut self.consumer, cx)
    }

    /// The sync handle.
    pub fn get_ref(&self) -> &Consumer {
        &self.consumer
    }

    /// The sync handle, mutably (for `try_recv`, `drain`, `stats`, ...).
    pub fn get_mut(&mut self) -> &mut Consumer {
        self.state.end_wait(&self.consumer);
        &mut self.consumer
    }
}

impl Drop for AsyncConsumer {
    fn drop(&mut self) {
        self.state.end_wait(&self.consumer);
    }
}

/// The future of [`AsyncConsumer::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a> {
    handle: &'a mut AsyncConsumer,
    buf: &'a mut Vec<u8>,
}

impl Future for RecvFuture<'_> {
    type Output = Result<usize, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.handle.poll_recv(cx, this.buf)
    }
}

/// Dropped while waiting: the registration and announcement end now.
impl Drop for RecvFuture<'_> {
    fn drop(&mut self) {
        self.handle.state.end_wait(&self.handle.consumer);
    }
}

/// The future of [`AsyncConsumer::read`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadFuture<'a> {
    /// Taken when the guard is handed out.
    handle: Option<&'a mut AsyncConsumer>,
}

impl<'a> Future for ReadFuture<'a> {
    type Output = Result<ReadGuard<'a>, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(handle) = this.handle.as_mut() else { panic!("`ReadFuture` polled after it returned") };
        if handle.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let handle = this.handle.take().expect("checked above");
        // Ready means a message or an error is at `head`, and only this
        // handle consumes: the read finds it. The one exception is a ring
        // found drained and disconnected that a new producer attached to
        // since: reported as it was found.
        Poll::Ready(match handle.consumer.try_read() {
            Ok(guard) => Ok(guard),
            Err(TryRecvError::Empty) => Err(RecvError::Disconnected),
            Err(e) => Err(recv_error(e)),
        })
    }
}

impl Drop for ReadFuture<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.as_mut() {
            handle.state.end_wait(&handle.consumer);
        }
    }
}

/// A [`Producer`] whose sends wait for room as futures:
/// `send(msg).await`. See [`AsyncConsumer`] for how waiting works; the
/// consumer needs no change.
///
/// ```
/// # let name = format!("/doc-async-send-{}", std::process::id());
/// # let options = shmring::RingOptions::new().unlink_on_drop(true);
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// use shmring::{AsyncProducer, Consumer, Producer};
/// let mut consumer = Consumer::create(&name, &options)?; // normally elsewhere
/// let mut producer = AsyncProducer::new(Producer::open(&name, &options)?);
/// runtime.block_on(producer.send(b"hello"))?;
/// assert_eq!(&*consumer.read()?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncProducer {
    producer: Producer,
    state: AsyncState,
}

impl AsyncProducer {
    /// Wraps `producer`.
    pub fn new(producer: Producer) -> AsyncProducer {
        AsyncProducer { producer, state: AsyncState::default() }
    }

    /// As [`AsyncConsumer::set_spin`].
    pub fn set_spin(&mut self, spin: Duration) {
        self.state.spin = spin;
    }

    /// Sends `msg`, waiting while the ring has no room for it. Errors as
    /// [`Producer::send`].
    pub fn send<'a>(&'a mut self, msg: &'a [u8]) -> SendFuture<'a> {
        SendFuture { handle: self, msg }
    }

    /// [`send`](Self::send) as a poll: `Ready` once sent or failed,
    /// `Pending` with `cx`'s waker registered.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<(), SendError>> {
        for _ in 0..LOOKS_PER_POLL {
            self.state.end_wait(&self.producer.room_for(msg.len()));
            match self.producer.try_send(msg) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(TrySendError::Full) => {}
                Err(e) => return Poll::Ready(Err(send_error(e))),
            }
            if self.state.wait(&mut self.producer.room_for(msg.len()), cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The sync handle.
    pub fn get_ref(&self) -> &Producer {
        &self.producer
    }

    /// The sync handle, mutably.
    pub fn get_mut(&mut self) -> &mut Producer {
        self.state.end_wait(&self.producer.room_for(0));
        &mut self.producer
    }
}

impl Drop for AsyncProducer {
    fn drop(&mut self) {
        self.state.end_wait(&self.producer.room_for(0));
    }
}

/// The future of [`AsyncProducer::send`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a> {
    handle: &'a mut AsyncProducer,
    msg: &'a [u8],
}

impl Future for SendFuture<'_> {
    type Output = Result<(), SendError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.handle.poll_send(cx, this.msg)
    }
}

impl Drop for SendFuture<'_> {
    fn drop(&mut self) {
        let handle = &mut *self.handle;
        handle.state.end_wait(&handle.producer.room_for(0));
    }
}

/// A non-blocking receive's error as a blocking one's (`Empty` is handled
/// by the caller).
fn recv_error(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Empty | TryRecvError::Disconnected => RecvError::Disconnected,
        TryRecvError::BufferTooSmall(e) => RecvError::BufferTooSmall(e),
        TryRecvError::Corrupted(e) => RecvError::Corrupted(e),
        TryRecvError::ForkedHandle(e) => RecvError::ForkedHandle(e),
    }
}

/// A non-blocking send's error as a blocking one's (`Full` is handled by
/// the caller).
fn send_error(e: TrySendError) -> SendError {
    match e {
        TrySendError::Full | TrySendError::Disconnected => SendError::Disconnected,
        TrySendError::TooLarge(e) => SendError::TooLarge(e),
        TrySendError::Corrupted(e) => SendError::Corrupted(e),
        TrySendError::ForkedHandle(e) => SendError::ForkedHandle(e),
    }
}
