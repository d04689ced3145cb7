//! The receiving handle and its borrowed read guard.

use super::*;
use crate::error::{BufferTooSmall, Error, ForkedHandle, RecvError, RecvStop, RecvTimeoutError, Role, TryRecvError};
use crate::layout::{Kind, Slot};
use crate::ring::Stats;
use crate::ring::{self, RingBacking};
use crate::segment::fork::ProcessLocal;
use crate::segment::Segment;
use crate::wait::WaitStrategy;
use std::mem::MaybeUninit;
use std::path::Path;
use std::time::Duration;

/// The receiving side of a ring (SPSC or MPSC: there is one consumer).
///
/// ```no_run
/// use shmring::{Consumer, RingOptions};
/// let mut consumer = Consumer::create("/prices", &RingOptions::new())?;
/// let mut buf = Vec::new();
/// let len = consumer.recv(&mut buf)?; // a copy
/// let msg = consumer.read()?; // borrowed in place; freed on drop
/// println!("{len} bytes, then {:?}", &*msg);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A consumer inherited by a forked child fails there and its drop does
/// nothing: see [`Producer`'s section on fork](Producer#fork).
#[derive(Debug)]
pub struct Consumer {
    ring: ProcessLocal<ring::Consumer<Segment>>,
    wait: WaitStrategy,
    poison: Poison,
}

impl Consumer {
    /// Creates the segment `name` (`O_EXCL`) of the options' kind and attaches
    /// as its consumer.
    pub fn create(name: &str, options: &RingOptions) -> Result<Consumer, Error> {
        Self::attach(segment_for(Target::Create(name), options)?, options)
    }

    /// Opens the existing segment `name` as its consumer, continuing from
    /// where the previous consumer stopped. Fails with
    /// [`Error::AlreadyAttached`] while another live consumer holds it.
    pub fn open(name: &str, options: &RingOptions) -> Result<Consumer, Error> {
        Self::attach(segment_for(Target::Open(name), options)?, options)
    }

    /// Creates a file-backed segment at `path` (`O_EXCL`: never an existing
    /// file) of the options' kind and attaches as its consumer. The file
    /// stays when the handle is dropped: it is the ring's storage.
    pub fn create_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<Consumer, Error> {
        Self::attach(segment_for(Target::CreateFile(path.as_ref()), options)?, options)
    }

    /// Opens the file-backed segment at `path` as its consumer. After a
    /// restart of the machine the ring is first recovered: what was flushed
    /// is kept, what was written after the last flush is dropped and counted
    /// (see [`lost_records`](Self::lost_records)), and the consumer resumes
    /// from its last flushed position.
    ///
    /// ```no_run
    /// let mut consumer = shmring::Consumer::open_file("/var/lib/app/journal.ring", &shmring::RingOptions::new())?;
    /// let mut buf = Vec::new();
    /// while consumer.try_recv(&mut buf).is_ok() { /* apply the entry */ }
    /// consumer.flush()?; // the position survives a restart from here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<Consumer, Error> {
        Self::attach(segment_for(Target::OpenFile(path.as_ref()), options)?, options)
    }

    /// Writes every message committed so far and this consumer's position
    /// back to the file with `msync(MS_SYNC)`: once this returns, the
    /// position survives the processes and the machine going down, and the
    /// space before it is released to the producers (a file ring's producers
    /// never overwrite what a recovery may keep). In effect a no-op for
    /// shared memory and memfd rings, which do not outlive the machine.
    #[doc(alias = "msync")]
    pub fn flush(&self) -> Result<(), Error> {
        self.this_process()?;
        let segment = self.ring.backing();
        backing::flush(segment)?;
        if !segment.persistent() {
            return Ok(());
        }
        let mpsc = segment.kind() == Kind::Mpsc;
        if ring::durable::release_and_wake(segment, self.ring.position(), mpsc) {
            return Ok(());
        }
        Err(Error::from_os(segment.name(), "msync", rustix::io::Errno::IO))
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

    pub(super) fn attach(segment: Segment, options: &RingOptions) -> Result<Consumer, Error> {
        claim_role(&segment, Slot::Consumer, Role::Consumer)?;
        let kind = segment.kind();
        let mut ring = ring::Consumer::attach(segment, pid(), kind)?;
        ring.set_liveness_interval(options.liveness_interval);
        ring.set_defer_room_wakes(options.defer_room_wakes);
        let lends = may_lend(ring.backing(), Slot::Consumer, options);
        ring.set_borrow_in_place(lends);
        Ok(Consumer { ring: ProcessLocal::new(ring), wait: options.wait, poison: Poison::default() })
    }

    /// Copies the next message into `buf` (replacing its contents), blocking
    /// while the ring is empty; returns its length. After every producer has
    /// gone and the ring is drained: [`RecvError::Disconnected`].
    ///
    /// MPSC: messages arrive in the order producers claimed space. A record
    /// whose producer died before committing it is skipped once the kernel
    /// says that producer is dead (within about 1.2 times
    /// [`RingOptions::liveness_interval`], 60 ms by default), and counted in
    /// [`Stats::torn_records`](crate::Stats::torn_records); a live producer's record is always waited
    /// for.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.this_process()?;
        let wait = self.wait;
        self.poison.guard(|| self.ring.recv(buf, wait))
    }

    /// Copies the next message into `buf` if one is waiting.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        match self.ring.try_recv(buf) {
            Ok(Some(len)) => Ok(len),
            Ok(None) => Err(TryRecvError::Empty),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Copies the next message into `buf`, blocking at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize, RecvTimeoutError> {
        self.this_process()?;
        let wait = self.wait;
        let received = self.poison.guard::<_, _, RecvTimeoutError>(|| self.ring.recv_for(buf, wait, timeout))?;
        received.ok_or(RecvTimeoutError::Timeout)
    }

    /// Copies the next message into the start of `buf`, blocking while the
    /// ring is empty; returns its length. A fixed buffer, no allocation: one
    /// copy from the ring. A message longer than `buf` is not consumed:
    /// [`RecvError::BufferTooSmall`] gives its length, and the next receive
    /// finds it again. Otherwise as [`recv`](Self::recv).
    ///
    /// ```
    /// # let name = format!("/doc-recv-into-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// use shmring::{BufferTooSmall, RecvError};
    /// let mut consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// producer.send(b"a long message")?;
    /// let mut small = [0u8; 4];
    /// let too_small = consumer.recv_into(&mut small).unwrap_err();
    /// assert_eq!(too_small, RecvError::BufferTooSmall(BufferTooSmall { len: 14, capacity: 4 }));
    /// let mut buf = [0u8; 64];
    /// let len = consumer.recv_into(&mut buf)?;
    /// assert_eq!(&buf[..len], b"a long message");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.this_process()?;
        let (wait, capacity) = (self.wait, buf.len());
        let received = self.poison.guard::<_, _, RecvError>(|| self.ring.recv_into_init(buf, wait))?;
        received.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// [`recv_into`](Self::recv_into) if a message is waiting.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.this_process()?;
        let capacity = buf.len();
        let received = self.poison.guard::<_, _, TryRecvError>(|| self.ring.try_recv_into_init(buf))?;
        received.ok_or(TryRecvError::Empty)?.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// [`recv_into`](Self::recv_into), blocking at most `timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvTimeoutError> {
        self.this_process()?;
        let (wait, capacity) = (self.wait, buf.len());
        let received =
            self.poison.guard::<_, _, RecvTimeoutError>(|| self.ring.recv_into_init_for(buf, wait, timeout))?;
        received.ok_or(RecvTimeoutError::Timeout)?.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// [`recv_into`](Self::recv_into) into memory that need not be
    /// initialised, such as a `Vec`'s spare capacity
    /// ([`Vec::spare_capacity_mut`]): the first `len` bytes are initialised
    /// when it returns `Ok(len)` (so `Vec::set_len` may then cover them).
    ///
    /// ```
    /// # let name = format!("/doc-recv-into-uninit-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// let mut consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// producer.send(b"appended")?;
    /// let mut log: Vec<u8> = Vec::with_capacity(64);
    /// let len = consumer.recv_into_uninit(log.spare_capacity_mut())?;
    /// assert_eq!(len, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_into_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> Result<usize, RecvError> {
        self.this_process()?;
        let (wait, capacity) = (self.wait, buf.len());
        let received = self.poison.guard::<_, _, RecvError>(|| self.ring.recv_into(buf, wait))?;
        received.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// [`recv_into_uninit`](Self::recv_into_uninit) if a message is waiting.
    pub fn try_recv_into_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> Result<usize, TryRecvError> {
        self.this_process()?;
        let capacity = buf.len();
        let received = self.poison.guard::<_, _, TryRecvError>(|| self.ring.try_recv_into(buf))?;
        received.ok_or(TryRecvError::Empty)?.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// [`recv_into_uninit`](Self::recv_into_uninit), blocking at most
    /// `timeout`.
    pub fn recv_into_uninit_timeout(
        &mut self,
        buf: &mut [MaybeUninit<u8>],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.this_process()?;
        let (wait, capacity) = (self.wait, buf.len());
        let received = self.poison.guard::<_, _, RecvTimeoutError>(|| self.ring.recv_into_for(buf, wait, timeout))?;
        received.ok_or(RecvTimeoutError::Timeout)?.map_err(|len| BufferTooSmall { len, capacity }.into())
    }

    /// Borrows the next message in place, blocking while the ring is empty.
    /// Its space is freed when the guard drops.
    ///
    /// In place only where the trust rule allows it (every process that can
    /// write the segment runs as this user: see
    /// [`RingOptions::borrow_in_place`]); otherwise the message is first
    /// copied to a buffer of this handle, so the guard's bytes never change
    /// under the caller whatever a peer writes.
    pub fn read(&mut self) -> Result<ReadGuard<'_>, RecvError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        let wait = self.wait;
        match self.ring.read(wait) {
            Ok(guard) => Ok(ReadGuard(guard)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Borrows the next message in place if one is waiting.
    pub fn try_read(&mut self) -> Result<ReadGuard<'_>, TryRecvError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        match self.ring.try_read() {
            Ok(Some(guard)) => Ok(ReadGuard(guard)),
            Ok(None) => Err(TryRecvError::Empty),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Borrows the next message in place, blocking at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>, RecvTimeoutError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        let wait = self.wait;
        match self.ring.read_for(wait, timeout) {
            Ok(Some(guard)) => Ok(ReadGuard(guard)),
            Ok(None) => Err(RecvTimeoutError::Timeout),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Hands the messages waiting, up to `max`, to `each`, oldest first,
    /// blocking while the ring is empty; returns how many it handed out.
    /// The batch releases their space and checks for a waiting producer
    /// once, not per message: the cheapest way to take a stream. Space is
    /// also released whenever the batch has held back a quarter of the
    /// capacity, so producers refill the ring while `each` works.
    ///
    /// `each` sees each message in place where the trust rule allows (as
    /// [`read`](Self::read)), otherwise a copy in a buffer of this handle;
    /// it cannot keep the slice. A message is consumed once it is handed
    /// out, even if `each` panics. An error met after some messages ends
    /// the batch with their count; the next call reports it. A handler
    /// that forks ends the child's batch at once ([`RecvError::ForkedHandle`]
    /// there).
    ///
    /// The space of what `each` has seen is the batch's until it is
    /// released: a handler that waits for room in this same ring (or in a
    /// ring whose consumer waits for this one) may wait for space its own
    /// batch holds. Forward with `try_send` or `send_timeout` there, or take
    /// such messages with [`recv`](Self::recv).
    ///
    /// ```
    /// # let name = format!("/doc-drain-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// let mut consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// producer.send_batch(&[&b"one"[..], b"two", b"three"])?;
    /// let mut total = 0;
    /// let count = consumer.drain(64, |msg| total += msg.len())?;
    /// assert_eq!((count, total), (3, 11));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&mut self, max: usize, each: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        let wait = self.wait;
        let each = self.watching_forks(each);
        let batch = self.ring.drain(wait, max, each);
        self.batch_counted(batch)
    }

    /// [`drain`](Self::drain) of what is waiting now:
    /// [`TryRecvError::Empty`] if nothing is (and `max` is not 0).
    pub fn try_drain(&mut self, max: usize, each: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        let each = self.watching_forks(each);
        let batch = self.ring.try_drain(max, each);
        match self.batch_counted::<TryRecvError>(batch)? {
            0 if max > 0 => Err(TryRecvError::Empty),
            count => Ok(count),
        }
    }

    /// [`drain`](Self::drain), blocking at most `timeout` for the first
    /// message.
    pub fn drain_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        each: impl FnMut(&[u8]),
    ) -> Result<usize, RecvTimeoutError> {
        self.this_process()?;
        self.poison.check::<RecvStop>()?;
        let wait = self.wait;
        let each = self.watching_forks(each);
        let batch = self.ring.drain_for(wait, timeout, max, each);
        match self.batch_counted::<RecvTimeoutError>(batch)? {
            0 if max > 0 => Err(RecvTimeoutError::Timeout),
            count => Ok(count),
        }
    }

    /// `each`, then whether this is still the process that attached the
    /// handle: a handler may fork, and the child's drain must end there.
    fn watching_forks<F: FnMut(&[u8])>(&self, mut each: F) -> impl FnMut(&[u8]) -> bool + use<F> {
        let here = self.ring.still_here();
        move |msg| {
            each(msg);
            here()
        }
    }

    /// A batch's count, or its stop (see `Poison::counted`); in a process
    /// forked by the batch's handler, `ForkedHandle`: the child's batch
    /// ended there.
    fn batch_counted<E: From<RecvStop> + From<ForkedHandle>>(
        &mut self,
        batch: ring::Batch<RecvStop>,
    ) -> Result<usize, E> {
        self.this_process()?;
        self.poison.counted(batch)
    }

    /// Whether [`read`](Self::read) lends the message in place (`true`) or
    /// copies it to a buffer of this handle first, as the trust rule decided
    /// at attach (see [`RingOptions::borrow_in_place`]).
    pub fn borrows_in_place(&self) -> bool {
        self.ring.borrows_in_place()
    }

    /// Bytes consumed since the segment was created.
    pub fn position(&self) -> u64 {
        self.ring.position()
    }

    /// Records dropped by recoveries after restarts of the machine (written
    /// after the last flush, so possibly torn): counted in the file, so every
    /// later opener sees the total. 0 from a handle inherited across `fork`,
    /// which no longer sees the file.
    pub fn lost_records(&self) -> u64 {
        if self.ring.inherited() {
            return 0;
        }
        RingBacking::header(self.ring.backing()).persistence.lost_records.load(crate::sync::Ordering::Relaxed)
    }
}

impl Consumer {
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

    /// The ring, for a multi-ring wait; `None` if every call would fail
    /// at once (forked or poisoned), so there is nothing to wait for.
    pub(super) fn ring_to_watch(&self) -> Option<&ring::Consumer<Segment>> {
        (!self.ring.inherited() && !self.poison.is_set()).then_some(&*self.ring)
    }

    /// [`ring_to_watch`](Self::ring_to_watch), mutably.
    pub(super) fn ring_to_watch_mut(&mut self) -> Option<&mut ring::Consumer<Segment>> {
        (!self.ring.inherited() && !self.poison.is_set()).then_some(&mut *self.ring)
    }

    /// `Err` in a process forked from the one that attached this handle
    /// (see `Producer::this_process`).
    #[inline(always)]
    fn this_process(&self) -> Result<(), ForkedHandle> {
        if self.ring.inherited() {
            return Err(forked(self.ring.backing(), Role::Consumer));
        }
        Ok(())
    }
}

/// A message borrowed in place (see [`Consumer::read`]). Dereferences to the
/// payload; dropping it frees the space.
#[derive(Debug)]
pub struct ReadGuard<'a>(ring::ReadGuard<'a, Segment>);

impl ReadGuard<'_> {
    /// Leaves the message in the ring instead of consuming it: the next
    /// receive or read returns it again (to look at a message's size or
    /// first bytes before deciding where it goes).
    ///
    /// ```
    /// # let name = format!("/doc-put-back-{}", std::process::id());
    /// # let options = shmring::RingOptions::new().unlink_on_drop(true);
    /// let mut consumer = shmring::Consumer::create(&name, &options)?;
    /// let mut producer = shmring::Producer::open(&name, &options)?;
    /// producer.send(b"a long message")?;
    /// let guard = consumer.read()?;
    /// assert_eq!(guard.len(), 14);
    /// guard.put_back();
    /// assert_eq!(&*consumer.read()?, b"a long message");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_back(self) {
        self.0.put_back();
    }
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
