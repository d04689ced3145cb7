//! The sending handle and its zero-copy grant.

use super::*;
use crate::error::{Error, ForkedHandle, Role, SendError, SendStop, SendTimeoutError, TrySendError};
use crate::layout::{Kind, Slot};
use crate::ring;
use crate::ring::Stats;
use crate::segment::fork::ProcessLocal;
use crate::segment::Segment;
use crate::wait::WaitStrategy;
use std::path::Path;
use std::time::Duration;

/// The sending side of a ring: the producer of an SPSC ring, or one of the
/// producers of an MPSC ring.
///
/// ```no_run
/// use shmring::{Producer, RingOptions};
/// let mut producer = Producer::open("/prices", &RingOptions::new())?;
/// producer.send(b"EURUSD 1.0842")?;
/// let mut grant = producer.reserve(16)?; // zero-copy
/// grant.copy_from_slice(&42u128.to_le_bytes());
/// grant.commit();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Fork
///
/// A handle acts for the process that attached it. In a child forked after
/// the attach, every operation on the inherited copy (`send`, `reserve`,
/// `flush`, ... and the [`Consumer`]'s `recv`, `read`, ...) fails at once
/// with the `ForkedHandle` variant of its error type ([`ForkedHandle`]),
/// which names the segment; the accessors (`name`, `capacity`, `position`,
/// `stats`, ...) answer with what the handle knew at the fork; and dropping
/// it does nothing to the ring: the parent's slot stays attached, nothing is
/// woken or unlinked. The child's copy of the handle's mapping and descriptor
/// is given up before `fork` returns in the child, so the parent's liveness
/// lock dies with the parent, whatever its children do. A grant or borrowed
/// message the forking thread held is left over in the child: it keeps
/// showing the same bytes (a mapping with a view lent in place is copied
/// for the child, not blanked; a guard leaked with `mem::forget` counts as
/// lent until the handle's next claim, or for a read guard its next copying
/// receive), and what is written or committed through it goes nowhere. A child
/// that needs the ring attaches afresh ([`Producer::open`],
/// [`AnonymousRing::producer`], ...).
///
/// [`ForkedHandle`]: crate::ForkedHandle
#[derive(Debug)]
pub struct Producer {
    ring: ProcessLocal<ring::Producer<Segment>>,
    wait: WaitStrategy,
    poison: Poison,
}

impl Producer {
    /// Creates the segment `name` (`O_EXCL`: never an existing one) of the
    /// options' kind and attaches as a producer.
    pub fn create(name: &str, options: &RingOptions) -> Result<Producer, Error> {
        Self::attach(segment_for(Target::Create(name), options)?, options)
    }

    /// Opens the existing segment `name` as a producer.
    ///
    /// SPSC: fails with [`Error::AlreadyAttached`] while another live
    /// producer holds it; takes over from a dead one. MPSC: takes a free
    /// producer slot, or fails with [`Error::TooManyProducers`]; or with
    /// [`Error::ProducerSlotBlocked`] when the only slots not held by live
    /// producers are blocked by dead producers' unfinished claims and no
    /// consumer is attached to skip them.
    pub fn open(name: &str, options: &RingOptions) -> Result<Producer, Error> {
        Self::attach(segment_for(Target::Open(name), options)?, options)
    }

    /// Creates a file-backed segment at `path` (`O_EXCL`: never an existing
    /// file) of the options' kind and attaches as a producer. The file stays
    /// when the handle is dropped: it is the ring's storage.
    ///
    /// ```no_run
    /// let mut producer = shmring::Producer::create_file("/var/lib/app/journal.ring", &shmring::RingOptions::new())?;
    /// producer.send(b"entry")?;
    /// producer.flush()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<Producer, Error> {
        Self::attach(segment_for(Target::CreateFile(path.as_ref()), options)?, options)
    }

    /// Opens the file-backed segment at `path` as a producer. After a
    /// restart of the machine the ring is first recovered: what was flushed
    /// is kept, what was written after the last flush is dropped and counted
    /// (see [`Consumer::lost_records`]).
    pub fn open_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<Producer, Error> {
        Self::attach(segment_for(Target::OpenFile(path.as_ref()), options)?, options)
    }

    /// Writes every message committed so far back to the file with
    /// `msync(MS_SYNC)`, and only then records in the header how far that
    /// goes: once this returns, those messages survive the processes and
    /// the machine going down. In effect a no-op for shared memory and memfd
    /// rings, which do not outlive the machine.
    #[doc(alias = "msync")]
    pub fn flush(&self) -> Result<(), Error> {
        self.this_process()?;
        backing::flush(self.ring.backing())
    }

    /// Starts writing back what is committed and the header
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) without waiting for the
    /// disk, so that a later [`flush`](Self::flush) has less to wait for. It
    /// promises nothing after a crash of the machine: recovery keeps only
    /// what `flush` made durable. A no-op for shared memory and memfd rings.
    pub fn flush_async(&self) -> Result<(), Error> {
        self.this_process()?;
        flush_async(self.ring.backing())
    }

    pub(super) fn attach(segment: Segment, options: &RingOptions) -> Result<Producer, Error> {
        let mut ring = match segment.kind() {
            Kind::Spsc => {
                claim_role(&segment, Slot::Producer(0), Role::Producer)?;
                ring::Producer::attach(segment, pid())?
            }
            Kind::Mpsc => {
                let slot = take_producer_slot(&segment)?;
                ring::Producer::attach_mpsc(segment, pid(), slot)?
            }
        };
        ring.set_liveness_interval(options.liveness_interval);
        let lends = may_lend(ring.backing(), ring.slot(), options);
        ring.set_borrow_in_place(lends);
        Ok(Producer { ring: ProcessLocal::new(ring), wait: options.wait, poison: Poison::default() })
    }

    /// Whether a [`Grant`] is the ring's own memory (`true`) or a buffer
    /// copied into it on commit, as the trust rule decided at attach (see
    /// [`RingOptions::borrow_in_place`]).
    pub fn borrows_in_place(&self) -> bool {
        self.ring.borrows_in_place()
    }

    /// The producer slot this handle holds (always 0 in an SPSC ring).
    pub fn slot(&self) -> usize {
        match self.ring.slot() {
            Slot::Producer(n) => n,
            Slot::Consumer => 0,
        }
    }

    /// Sends `msg`, blocking while the ring is full.
    ///
    /// It waits until the record (8 bytes of header, the message rounded up
    /// to 8 bytes, and, if it would cross the end of the region, padding to
    /// the end first) fits between the consumer's position and a lap ahead
    /// of it. In a ring sized by [`RingOptions::for_messages`]`(n, s)` a
    /// message of up to `s` bytes gets room as soon as fewer than `n`
    /// messages are in the ring.
    ///
    /// [`SendError::Disconnected`] means the ring is full and no consumer is
    /// attached to make room (it detached or died). While there is room,
    /// messages are accepted whether or not a consumer is attached: they wait
    /// in the ring for the next one, which continues where the last stopped.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.this_process()?;
        let wait = self.wait;
        self.poison.guard(|| self.ring.send(msg, wait))
    }

    /// Sends `msg` if there is room now: [`TrySendError::Full`] if not, or
    /// [`TrySendError::Disconnected`] if not and no consumer is attached.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        match self.ring.try_send(msg) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TrySendError::Full),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Sends `msg`, blocking at most `timeout` while the ring is full.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.this_process()?;
        let wait = self.wait;
        let sent = self.poison.guard::<_, _, SendTimeoutError>(|| self.ring.send_for(msg, wait, timeout))?;
        sent.then_some(()).ok_or(SendTimeoutError::Timeout)
    }

    /// Sends `msgs` in order, blocking while the ring is full, with one
    /// check for a sleeping consumer per batch instead of one per message;
    /// returns how many were sent. The consumer is also woken every
    /// quarter of the capacity the batch writes and before the producer
    /// waits for room. In an SPSC ring the messages written between those
    /// points become visible together, with one store, so the consumer
    /// takes them in one go; in an MPSC ring each as it is committed.
    ///
    /// A message longer than [`max_message`](Self::max_message) is refused
    /// with [`SendError::TooLarge`] before any is sent. If the ring becomes
    /// unusable after some were sent (no consumer left to make room, or
    /// corruption), the count says how many went and the next call reports
    /// why: nothing is lost unseen.
    ///
    /// ```
    /// # let name = format!("/doc-send-batch-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// let mut consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// let prices: Vec<[u8; 16]> = (0..100u128).map(|p| p.to_le_bytes()).collect();
    /// assert_eq!(producer.send_batch(&prices)?, 100);
    /// let mut received = 0;
    /// while received < 100 {
    ///     received += consumer.drain(usize::MAX, |msg| assert_eq!(msg.len(), 16))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, SendError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        let wait = self.wait;
        let batch = self.ring.send_batch(msgs, Some(wait)).map_err(SendStop::TooLarge)?;
        self.poison.counted(batch)
    }

    /// Sends as many of `msgs`, in order, as fit now; returns how many (the
    /// rest are left to the caller). [`TrySendError::Full`] if not even the
    /// first fits (and `msgs` is not empty). Otherwise as
    /// [`send_batch`](Self::send_batch).
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, TrySendError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        let batch =
            self.ring.send_batch(msgs, None).map_err(|too_large| TrySendError::from(SendStop::TooLarge(too_large)))?;
        match self.poison.counted::<_, TrySendError>(batch)? {
            0 if !msgs.is_empty() => Err(TrySendError::Full),
            count => Ok(count),
        }
    }

    /// Claims `len` bytes in the ring to write in place, blocking while full.
    ///
    /// The grant is the ring's own memory only where the trust rule allows
    /// it (every process that can write the segment runs as this user: see
    /// [`RingOptions::borrow_in_place`]); otherwise it is a buffer of this
    /// handle, copied into the ring by [`Grant::commit`].
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        let wait = self.wait;
        match self.ring.reserve(len, wait) {
            Ok(grant) => Ok(Grant(grant)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Claims `len` bytes if there is room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>, TrySendError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        match self.ring.try_reserve(len) {
            Ok(Some(grant)) => Ok(Grant(grant)),
            Ok(None) => Err(TrySendError::Full),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Claims `len` bytes, blocking at most `timeout` while full.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>, SendTimeoutError> {
        self.this_process()?;
        self.poison.check::<SendStop>()?;
        let wait = self.wait;
        match self.ring.reserve_for(len, wait, timeout) {
            Ok(Some(grant)) => Ok(Grant(grant)),
            Ok(None) => Err(SendTimeoutError::Timeout),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// SPSC: bytes written since the segment was created, records and
    /// padding included: `position() % capacity()` is where the next record
    /// starts. MPSC: where this producer's last claim ended.
    pub fn position(&self) -> u64 {
        self.ring.position()
    }
}

impl Producer {
    /// This handle's counters (in a forked child: as they were at the fork).
    pub fn stats(&self) -> Stats {
        self.ring.stats()
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.ring.backing().name()
    }

    /// The ring's kind (SPSC or MPSC), as its header says.
    pub fn kind(&self) -> Kind {
        self.ring.backing().kind()
    }

    /// Bytes in the data region.
    pub fn capacity(&self) -> usize {
        self.ring.backing().capacity()
    }

    /// The largest message the segment takes.
    pub fn max_message(&self) -> usize {
        self.ring.backing().max_message()
    }

    /// The strategy blocking calls use.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Changes the strategy blocking calls use.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.wait = strategy;
    }

    /// A handle for [`Select`](crate::Select) that is ready when a send of
    /// `len` bytes would not wait: there is room for it, or the send would
    /// fail at once (the consumer is gone, `len` is over
    /// [`max_message`](Self::max_message), ...).
    ///
    /// ```
    /// # let name = format!("/doc-room-for-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// let _consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// let mut select = shmring::Select::new();
    /// assert_eq!(select.wait(&mut [producer.room_for(100)]), [0]);
    /// producer.try_send(&[7; 100])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn room_for(&mut self, len: usize) -> RoomFor<'_> {
        RoomFor { producer: self, len }
    }

    /// The ring, for a multi-ring wait; `None` if every call would fail
    /// at once (forked or poisoned), so there is nothing to wait for.
    pub(super) fn ring_to_watch(&self) -> Option<&ring::Producer<Segment>> {
        (!self.ring.inherited() && !self.poison.is_set()).then_some(&*self.ring)
    }

    /// [`ring_to_watch`](Self::ring_to_watch), mutably.
    pub(super) fn ring_to_watch_mut(&mut self) -> Option<&mut ring::Producer<Segment>> {
        (!self.ring.inherited() && !self.poison.is_set()).then_some(&mut *self.ring)
    }

    /// `Err` in a process forked from the one that attached this handle.
    /// The check every operation starts with: a relaxed load of a
    /// process-local word and a comparison, no system call.
    #[inline(always)]
    fn this_process(&self) -> Result<(), ForkedHandle> {
        if self.ring.inherited() {
            return Err(forked(self.ring.backing(), Role::Producer));
        }
        Ok(())
    }
}

/// Space in the ring for one message, written in place (see
/// [`Producer::reserve`]). Dereferences to the payload bytes, whose initial
/// contents are unspecified. [`commit`](Grant::commit) publishes the message;
/// dropping the grant discards it.
#[derive(Debug)]
pub struct Grant<'a>(ring::Grant<'a, Segment>);

impl Grant<'_> {
    /// Publishes the message: all the bytes of the grant.
    pub fn commit(self) {
        self.0.commit();
    }

    /// Publishes the first `len` bytes of the grant as the message, for a
    /// message whose length is known only once it is written (serialised
    /// into a grant of the largest size it can have). A `len` over the
    /// grant's length publishes the whole grant. The rest of the space is
    /// given back: the consumer never sees it, and in an MPSC ring it is
    /// skipped as a discarded record of its own.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// let mut producer = shmring::Producer::open("/log", &shmring::RingOptions::new())?;
    /// let mut grant = producer.reserve(256)?;
    /// let mut unwritten: &mut [u8] = &mut grant;
    /// write!(unwritten, "order {} filled at {}", 42, 1.0842)?;
    /// let len = 256 - unwritten.len();
    /// grant.commit_len(len);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_len(self, len: usize) {
        self.0.commit_len(len);
    }
}

impl std::ops::Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
