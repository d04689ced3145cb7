//! The public handles: a [`Producer`] and a [`Consumer`] joined through a
//! segment, and the [`RingOptions`] builder that makes or opens it. The same
//! handles serve both ring kinds (the options say which kind to create or
//! expect) and every backing: a shared-memory name (`create`/`open`), a
//! regular file (`create_file`/`open_file`), or an [`AnonymousRing`] (a
//! memfd, for `fork` and for passing over a Unix socket).

use crate::error::{
    Corrupted, Error, ForkedHandle, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Stop, TryRecvError,
    TrySendError,
};
use crate::fork::{ProcessLocal, Scope};
use crate::layout::{Kind, Slot, FLAG_HANDED_OUT, MAX_PRODUCERS};
use crate::ring::{self, RingBacking, Stats};
use crate::segment::{self, Expect, Segment, Shape};
use crate::sync::Ordering;
use crate::wait::WaitStrategy;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Default data region size: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

/// How to create or open a ring.
///
/// ```no_run
/// use shmring::{Producer, RingOptions, WaitStrategy};
/// let options = RingOptions::new()
///     .capacity(4 << 20)
///     .max_message(64 << 10)
///     .wait(WaitStrategy::BusySpin);
/// let mut producer = Producer::create("/telemetry", &options)?;
/// producer.send(b"hello")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RingOptions {
    kind: Kind,
    max_producers: Option<u32>,
    capacity: u64,
    max_message: Option<u32>,
    mode: u32,
    unlink_on_drop: bool,
    wait: WaitStrategy,
    ready_timeout: Duration,
    allow_foreign_owner: bool,
    liveness_interval: Duration,
    borrow_in_place: bool,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            kind: Kind::Spsc,
            max_producers: None,
            capacity: DEFAULT_CAPACITY,
            max_message: None,
            mode: 0o600,
            unlink_on_drop: true,
            wait: WaitStrategy::default(),
            ready_timeout: Duration::from_secs(1),
            allow_foreign_owner: false,
            liveness_interval: crate::wait::PARK_SLICE,
            borrow_in_place: true,
        }
    }
}

impl RingOptions {
    /// The defaults: SPSC, 1 MiB capacity, max message capacity / 4, mode
    /// 0600, unlink on drop, spin-then-park, 1 s to wait for a creator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring kind to create, and the kind an opened segment must be
    /// (otherwise [`Error::KindMismatch`]). Default [`Kind::Spsc`].
    ///
    /// ```no_run
    /// use shmring::{Kind, Producer, RingOptions};
    /// let options = RingOptions::new().kind(Kind::Mpsc).max_producers(8);
    /// options.create("/orders")?;
    /// let mut a = Producer::open("/orders", &options)?; // each in its own process, usually
    /// let mut b = Producer::open("/orders", &options)?;
    /// a.send(b"from a")?;
    /// b.send(b"from b")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Producer slots of a new MPSC segment (creation only): how many
    /// producers can be attached at once, 1 to 64. Default 64. An SPSC
    /// segment has exactly 1.
    pub fn max_producers(mut self, producers: u32) -> Self {
        self.max_producers = Some(producers);
        self
    }

    /// Bytes in the data region (creation only): a power of two, a multiple of
    /// the page size, from 4 KiB to 1 TiB.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message (creation only). Default: capacity / 4. At most
    /// capacity / 2 - 8.
    pub fn max_message(mut self, bytes: u32) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// Sizes a new ring (creation only) to always hold `count` messages of
    /// up to `max_size` bytes each, and makes `max_size` (at least 1) the
    /// largest message.
    ///
    /// A byte ring does not hold "N messages" by itself: a record that does
    /// not fit before the end of the region is preceded by padding to the
    /// end, so "one out, one in" can still leave a sender waiting. This
    /// computes the capacity for the worst case: `count` records of
    /// `max_size` bytes, the padding before one of them (at most a record
    /// less 8 bytes: the records in a ring span less than a lap, so at most
    /// one wrap), and the 8-byte end word an SPSC ring keeps free, rounded up
    /// to a power of two of at least a page. With such a ring, a send of up
    /// to `max_size` bytes never waits while fewer than `count` messages are
    /// in it (see [`Producer::send`]). A size no ring can take (over 1 TiB)
    /// is reported by the create call as [`Error::InvalidOptions`].
    ///
    /// ```
    /// let options = shmring::RingOptions::new().for_messages(1000, 200);
    /// # let name = format!("/shmring-doc-for-messages-{}", std::process::id());
    /// let mut producer = shmring::Producer::create(&name, &options)?;
    /// for _ in 0..1000 {
    ///     producer.try_send(&[7; 200])?; // never Full
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_messages(mut self, count: u64, max_size: u32) -> Self {
        // A ring's largest message is at least 1 byte (0-byte messages fit
        // any ring).
        let max_size = max_size.max(1);
        let record = crate::ring::record::record_size(u64::from(max_size));
        let needed = count.checked_add(1).and_then(|records| records.checked_mul(record));
        self.capacity = needed
            .and_then(u64::checked_next_power_of_two)
            .map_or(u64::MAX, |capacity| capacity.max(crate::segment::page_size()).max(4096));
        self.max_message = Some(max_size);
        self
    }

    /// Permission bits of a new segment (creation only). Default 0600; must
    /// give the owner read and write.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Whether the creating handle removes the name when dropped. Default:
    /// true. Set false to leave the segment for later processes.
    pub fn unlink_on_drop(mut self, unlink: bool) -> Self {
        self.unlink_on_drop = unlink;
        self
    }

    /// How blocking calls wait. Default [`WaitStrategy::SpinThenPark`].
    pub fn wait(mut self, strategy: WaitStrategy) -> Self {
        self.wait = strategy;
        self
    }

    /// How long opening waits for a creator that has not finished writing the
    /// header. Default 1 s. A timeout too long for the clock to count
    /// (`Duration::MAX`) waits without limit.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How often a blocked side checks that its peers are alive: it parks at
    /// most this long at a time, and asks the kernel at most every fifth of
    /// it. This bounds how long a dead peer can hold it up once the death
    /// has happened: a producer blocked on a full ring learns that the
    /// consumer died, and (MPSC) the consumer skips the unfinished record of
    /// a producer that died mid-write, within about 1.2 times this. Default
    /// 50 ms; 1 ms to 60 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = shmring::RingOptions::new().liveness_interval(Duration::from_millis(5));
    /// ```
    pub fn liveness_interval(mut self, interval: Duration) -> Self {
        self.liveness_interval = interval;
        self
    }

    fn check_liveness_interval(&self, segment: &str) -> Result<(), Error> {
        let allowed = Duration::from_millis(1)..=Duration::from_secs(60);
        if allowed.contains(&self.liveness_interval) {
            return Ok(());
        }
        Err(Error::InvalidOptions {
            segment: segment.to_owned(),
            reason: format!(
                "liveness interval {:?} is not allowed: it must be from 1 ms to 60 s",
                self.liveness_interval
            ),
        })
    }

    /// Whether [`Consumer::read`] and [`Producer::reserve`] may lend the
    /// ring's own memory (default: true, where the trust rule allows it).
    ///
    /// The trust rule: a borrowed view is a `&[u8]` (or `&mut [u8]`) of
    /// shared memory, which promises that nobody changes those bytes while it
    /// lives. Every process that keeps the protocol stays off them, but one
    /// that can write the segment and does not keep it could change them
    /// under a check the compiler relied on. So views are lent in place only
    /// when every process that can write the segment runs as this process's
    /// (effective) user, which could write this process's memory anyway: a
    /// named segment or file that belongs to this user and gives its group
    /// and others no write permission when the handle attaches, or an
    /// [`AnonymousRing`] made in this process or inherited from one of this
    /// user's, never sent or received over a socket. Otherwise, or with
    /// `false` here, `read` copies the message to a buffer of the handle and a
    /// grant is a buffer copied into the ring on commit: the same API, one
    /// copy more, and sound whatever a peer does.
    /// [`Consumer::borrows_in_place`] tells which a handle does.
    ///
    /// The rule trusts this user's processes not to give another user write
    /// access behind its back: a segment whose mode was widened while another
    /// user opened it and narrowed again, or a memfd whose descriptor was
    /// handed to another user by other means than
    /// [`AnonymousRing::send_over`], needs `borrow_in_place(false)`.
    pub fn borrow_in_place(mut self, borrow: bool) -> Self {
        self.borrow_in_place = borrow;
        self
    }

    /// Open segments owned by another user (refused by default).
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    fn shape(&self) -> Shape {
        // A quarter of the ring, within what a record can carry (a 32 GiB
        // ring's quarter would not fit the 32-bit length).
        let default_max = (self.capacity / 4).min(segment::max_message_for(self.capacity)) as u32;
        let default_producers = match self.kind {
            Kind::Spsc => 1,
            Kind::Mpsc => MAX_PRODUCERS as u32,
        };
        Shape {
            kind: self.kind,
            capacity: self.capacity,
            max_message: self.max_message.unwrap_or(default_max),
            max_producers: self.max_producers.unwrap_or(default_producers),
            mode: self.mode,
        }
    }

    fn expect(&self) -> Expect {
        Expect {
            kind: Some(self.kind),
            allow_foreign_owner: self.allow_foreign_owner,
            ready_timeout: self.ready_timeout,
        }
    }

    /// Creates a segment of the options' kind and leaves it, attached by
    /// nobody: for a supervisor that starts the producers and consumer as
    /// other processes. Remove it with [`unlink`](crate::unlink).
    ///
    /// ```no_run
    /// let options = shmring::RingOptions::new().capacity(1 << 16);
    /// options.create("/jobs")?;
    /// let mut consumer = shmring::Consumer::open("/jobs", &options)?;
    /// # shmring::unlink("/jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self, name: &str) -> Result<(), Error> {
        Segment::create(name, &self.shape(), false).map(drop)
    }

    /// Creates a file-backed segment at `path` (`O_EXCL`, mode 0600 by
    /// default) and leaves it. The file is never removed by shmring: it is
    /// the ring's persistent storage (see [`Producer::flush`]).
    pub fn create_file(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        Segment::create_file(path.as_ref(), &self.shape()).map(drop)
    }
}

/// Makes durable what is committed in `segment` (see [`Producer::flush`]):
/// writes back the records from the durable tail (or `head`) on, then raises
/// the durable tail and writes the header back. MPSC: every record committed
/// before the call, including those after another producer's open claim
/// (see [`ring::durable`]).
fn flush(segment: &Segment) -> Result<(), Error> {
    use crate::sync::Ordering;
    let header = RingBacking::header(segment);
    let persistence = &header.persistence;
    let claimed = header.producer.tail.load(Ordering::Acquire);
    // Before the write-back: a producer that commits below `claimed` from
    // now on writes its payload back itself.
    persistence.flush_pending.fetch_max(claimed, Ordering::SeqCst);
    crate::sync::fence(Ordering::SeqCst);
    // From the first claim an earlier flush went past while it was open (it
    // may be committed now), or else the durable tail.
    let unsettled = persistence.unsettled_from.load(Ordering::Acquire);
    let durable = persistence.durable_tail.load(Ordering::Acquire);
    let from = durable.min(unsettled).max(header.consumer.head.load(Ordering::Acquire));
    let (end, first_open) = ring::persist::flush_end(segment, from, claimed);
    segment.write_back(from, end, true)?;
    // Only once the records are on the disk may the header say so. Either
    // of two racing flushes leaves a valid `unsettled_from`: each walk saw
    // every record before its first open claim committed.
    persistence.durable_tail.fetch_max(end, Ordering::Release);
    let settled_to = first_open.unwrap_or(end);
    if settled_to > unsettled {
        let _ = persistence.unsettled_from.compare_exchange(unsettled, settled_to, Ordering::AcqRel, Ordering::Relaxed);
    }
    segment.write_back(end, end, true)
}

fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// How long a role whose lock is held while its slot says detached is tried
/// again before it is reported taken (see [`claim_role`]).
const SPAWN_GRACE: Duration = Duration::from_millis(100);

/// Whether `slot`'s lock, found held, is more likely a child's passing copy
/// of a dropped handle's descriptor than a live holder: the slot does not
/// say attached (a holder marks it attached right after taking the lock,
/// and detached before letting go).
fn held_in_passing(segment: &Segment, slot: Slot) -> bool {
    RingBacking::header(segment)
        .participant(slot)
        .is_some_and(|p| p.state.load(crate::sync::Ordering::Acquire) != crate::layout::SLOT_ATTACHED)
}

/// Takes `slot`'s lock in `segment`, or reports who holds it.
///
/// A child being spawned (`posix_spawn` and `vfork` run no fork handlers)
/// holds copies of its parent's descriptors until it execs, and with them
/// the lock of a handle the parent has just dropped. So a lock held while
/// the slot says detached is tried again for a moment before the role is
/// reported taken; a live holder's slot says attached, and is reported at
/// once.
fn claim_role(segment: &Segment, slot: Slot, role: &'static str) -> Result<(), Error> {
    let mut deadline = None;
    loop {
        if segment.try_lock(slot)? {
            return Ok(());
        }
        let holder =
            RingBacking::header(segment).participant(slot).map_or(0, |p| p.pid.load(crate::sync::Ordering::Relaxed));
        let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + SPAWN_GRACE);
        if !held_in_passing(segment, slot) || std::time::Instant::now() >= deadline {
            return Err(Error::AlreadyAttached { segment: segment.name().to_string(), role, pid: holder });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the first producer slot of an MPSC segment that no live producer
/// holds and whose dead holder (if any) left no unresolved claim.
///
/// A slot blocked by a dead producer's unresolved claim is not taken over:
/// only the consumer can resolve the claim, by skipping it when it reaches
/// it (see `ring::mpsc`). If such a slot is all that is left and no live
/// consumer is attached, the error says so ([`Error::ProducerSlotBlocked`]):
/// retrying is useless until a consumer attaches.
fn take_producer_slot(segment: &Segment) -> Result<usize, Error> {
    let max = segment.identity().max_producers;
    let header = RingBacking::header(segment);
    let relaxed = crate::sync::Ordering::Relaxed;
    let mut deadline = None;
    loop {
        let mut blocked = None;
        // A slot locked while it says detached may be held for a moment by
        // a child being spawned (see `claim_role`).
        let mut in_passing = false;
        for n in 0..max as usize {
            let slot = Slot::Producer(n);
            if !segment.try_lock(slot)? {
                in_passing |= held_in_passing(segment, slot);
                continue;
            }
            if ring::slot_reusable(segment, n) {
                return Ok(n);
            }
            // Its holder is dead (we hold its lock) and its claim unresolved.
            let attached =
                header.participant(slot).is_some_and(|p| p.state.load(relaxed) == crate::layout::SLOT_ATTACHED);
            if attached && blocked.is_none() {
                blocked = Some((n, header.claim(n).map_or(0, |line| line.start.load(relaxed))));
            }
            segment.unlock(slot)?;
        }
        let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + SPAWN_GRACE);
        if in_passing && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let segment_name = segment.name().to_string();
        return match blocked {
            Some((slot, position)) if !segment.is_locked(Slot::Consumer) => {
                Err(Error::ProducerSlotBlocked { segment: segment_name, slot: slot as u32, position })
            }
            _ => Err(Error::TooManyProducers { segment: segment_name, max }),
        };
    }
}

/// The first [`Corrupted`] a handle met. Every later send, receive, read or
/// reserve returns it again, so a handle never trusts a segment it has seen
/// damaged, even if the bytes look right later (a peer may still be
/// scribbling). Costs the fast path one branch on this field.
#[derive(Debug, Default)]
struct Poison(Option<Corrupted>);

impl Poison {
    /// `Err` with the recorded corruption, if there is one.
    #[inline(always)]
    fn check(&self) -> Result<(), Stop> {
        match &self.0 {
            None => Ok(()),
            Some(c) => Err(Self::again(c)),
        }
    }

    #[cold]
    fn again(c: &Corrupted) -> Stop {
        Stop::Corrupted(c.clone())
    }

    /// Records `stop` if it is the first corruption met; passes it on.
    #[inline]
    fn note(&mut self, stop: Stop) -> Stop {
        if let (None, Stop::Corrupted(c)) = (&self.0, &stop) {
            self.0 = Some(c.clone());
        }
        stop
    }

    /// [`check`](Self::check), then `result` with its corruption recorded.
    #[inline(always)]
    fn guard<T, E: From<Stop>>(&mut self, run: impl FnOnce() -> Result<T, Stop>) -> Result<T, E> {
        self.check()?;
        run().map_err(|stop| self.note(stop).into())
    }
}

/// The accessors `Producer` and `Consumer` share.
macro_rules! handle_accessors {
    ($handle:ident, $role:literal, $role_word:literal) => {
        impl $handle {
            /// `Err` in a process forked from the one that attached this
            /// handle. The check every operation starts with: a relaxed load
            /// of a process-local word and a comparison, no system call.
            #[inline(always)]
            fn this_process(&self) -> Result<(), ForkedHandle> {
                if self.ring.inherited() {
                    return Err(self.forked());
                }
                Ok(())
            }

            #[cold]
            #[inline(never)]
            fn forked(&self) -> ForkedHandle {
                ForkedHandle::new(self.ring.backing().name(), $role_word)
            }

            #[doc = concat!("Creates a file-backed segment at `path` (`O_EXCL`: never an existing file) and attaches ")]
            #[doc = concat!("as ", $role, ". The file stays when the handle is dropped: it is the ring's storage.")]
            ///
            /// ```no_run
            #[doc = concat!("let mut handle = shmring::", stringify!($handle), "::create_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// handle.flush()?;
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn create_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<$handle, Error> {
                let path = path.as_ref();
                options.check_liveness_interval(&path.to_string_lossy())?;
                Self::attach(Segment::create_file(path, &options.shape())?, options)
            }

            #[doc = concat!("Opens the file-backed segment at `path` as ", $role, ". After a restart of the machine ")]
            /// the ring is first recovered: what was flushed is kept, what was
            /// written after the last flush is dropped and counted (see
            /// [`Consumer::lost_records`]), and the consumer resumes from its
            /// last flushed position.
            ///
            /// ```no_run
            #[doc = concat!("let handle = shmring::", stringify!($handle), "::open_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn open_file(path: impl AsRef<Path>, options: &RingOptions) -> Result<$handle, Error> {
                let path = path.as_ref();
                options.check_liveness_interval(&path.to_string_lossy())?;
                Self::attach(Segment::open_file(path, &options.expect())?, options)
            }

            /// Writes every message committed so far, and the consumer's
            /// position, back to the file with `msync(MS_SYNC)`, and only then
            /// records in the header how far that goes: once this returns,
            /// those messages (and that position) survive the processes and the
            /// machine going down. In effect a no-op for shared memory and
            /// memfd rings, which do not outlive the machine.
            ///
            /// ```no_run
            #[doc = concat!("let handle = shmring::", stringify!($handle), "::open_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// handle.flush()?;
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[doc(alias = "msync")]
            pub fn flush(&self) -> Result<(), Error> {
                self.this_process()?;
                flush(self.ring.backing())?;
                self.release_after_flush()
            }

            /// Starts writing back what is committed and the header
            /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) without waiting for
            /// the disk, so that a later [`flush`](Self::flush) has less to
            /// wait for. It promises nothing after a crash of the machine:
            /// recovery keeps only what `flush` made durable. A no-op for
            /// shared memory and memfd rings.
            pub fn flush_async(&self) -> Result<(), Error> {
                self.this_process()?;
                let segment = self.ring.backing();
                let header = RingBacking::header(segment);
                let from = header.consumer.head.load(crate::sync::Ordering::Acquire);
                let to = header.producer.tail.load(crate::sync::Ordering::Acquire);
                segment.start_write_back(from, to)
            }

            /// This handle's counters (in a forked child: as they were at the
            /// fork).
            pub fn stats(&self) -> Stats {
                self.ring.stats()
            }

            /// The segment's name.
            pub fn name(&self) -> &str {
                self.ring.backing().name()
            }

            /// Bytes in the data region.
            pub fn capacity(&self) -> u64 {
                self.ring.backing().identity().capacity
            }

            /// The largest message the segment takes.
            pub fn max_message(&self) -> usize {
                self.ring.backing().identity().max_message as usize
            }

            /// The strategy blocking calls use.
            pub fn wait_strategy(&self) -> WaitStrategy {
                self.wait
            }

            /// Changes the strategy blocking calls use.
            pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
                self.wait = strategy;
            }
        }
    };
}

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
/// lent for good, so every later fork copies that ring), and what is
/// written or committed through it goes nowhere. A child
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
        options.check_liveness_interval(name)?;
        let segment = Segment::create(name, &options.shape(), options.unlink_on_drop)?;
        Self::attach(segment, options)
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
        options.check_liveness_interval(name)?;
        Self::attach(Segment::open(name, &options.expect())?, options)
    }

    /// A producer's flush moves only the durable tail.
    fn release_after_flush(&self) -> Result<(), Error> {
        Ok(())
    }

    fn attach(segment: Segment, options: &RingOptions) -> Result<Producer, Error> {
        let mut ring = match segment.kind() {
            Kind::Spsc => {
                claim_role(&segment, Slot::Producer(0), "producer")?;
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
        self.poison.guard(|| self.ring.send(msg, wait, None))
    }

    /// Sends `msg` if there is room now: [`TrySendError::Full`] if not, or
    /// [`TrySendError::Disconnected`] if not and no consumer is attached.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.this_process()?;
        self.poison.guard(|| self.ring.try_send(msg))
    }

    /// Sends `msg`, blocking at most `timeout` while the ring is full.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.this_process()?;
        let wait = self.wait;
        self.poison.guard(|| self.ring.send(msg, wait, Some(timeout)))
    }

    /// Claims `len` bytes in the ring to write in place, blocking while full.
    ///
    /// The grant is the ring's own memory only where the trust rule allows
    /// it (every process that can write the segment runs as this user: see
    /// [`RingOptions::borrow_in_place`]); otherwise it is a buffer of this
    /// handle, copied into the ring by [`Grant::commit`].
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError> {
        self.this_process()?;
        self.poison.check()?;
        let wait = self.wait;
        match self.ring.reserve(len, wait, None) {
            Ok(grant) => Ok(Grant(grant)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Claims `len` bytes if there is room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>, TrySendError> {
        self.this_process()?;
        self.poison.check()?;
        match self.ring.try_reserve(len) {
            Ok(grant) => Ok(Grant(grant)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Claims `len` bytes, blocking at most `timeout` while full.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>, SendTimeoutError> {
        self.this_process()?;
        self.poison.check()?;
        let wait = self.wait;
        match self.ring.reserve(len, wait, Some(timeout)) {
            Ok(grant) => Ok(Grant(grant)),
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

handle_accessors!(Producer, "a producer", "producer");

/// Space in the ring for one message, written in place (see
/// [`Producer::reserve`]). Dereferences to the payload bytes, whose initial
/// contents are unspecified. [`commit`](Grant::commit) publishes the message;
/// dropping the grant discards it.
#[derive(Debug)]
pub struct Grant<'a>(ring::Grant<'a, Segment>);

impl Grant<'_> {
    /// Publishes the message.
    pub fn commit(self) {
        self.0.commit();
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
        options.check_liveness_interval(name)?;
        let segment = Segment::create(name, &options.shape(), options.unlink_on_drop)?;
        Self::attach(segment, options)
    }

    /// Opens the existing segment `name` as its consumer, continuing from
    /// where the previous consumer stopped. Fails with
    /// [`Error::AlreadyAttached`] while another live consumer holds it.
    pub fn open(name: &str, options: &RingOptions) -> Result<Consumer, Error> {
        options.check_liveness_interval(name)?;
        Self::attach(Segment::open(name, &options.expect())?, options)
    }

    /// A consumer's flush also makes its position durable (the header was
    /// just written back with it) and, in a file ring, releases the space
    /// before it to the producers (see [`ring::durable`]).
    fn release_after_flush(&self) -> Result<(), Error> {
        let segment = self.ring.backing();
        if !segment.persistent() {
            return Ok(());
        }
        let mpsc = segment.kind() == Kind::Mpsc;
        if ring::durable::release_and_wake(segment, self.ring.position(), mpsc) {
            return Ok(());
        }
        Err(Error::from_os(segment.name(), "msync", rustix::io::Errno::IO))
    }

    fn attach(segment: Segment, options: &RingOptions) -> Result<Consumer, Error> {
        claim_role(&segment, Slot::Consumer, "consumer")?;
        let kind = segment.kind();
        let mut ring = ring::Consumer::attach(segment, pid(), kind)?;
        ring.set_liveness_interval(options.liveness_interval);
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
    /// [`Stats::torn_records`]; a live producer's record is always waited
    /// for.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.this_process()?;
        let wait = self.wait;
        self.poison.guard(|| self.ring.recv(buf, wait, None))
    }

    /// Copies the next message into `buf` if one is waiting.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.this_process()?;
        self.poison.guard(|| self.ring.try_recv(buf))
    }

    /// Copies the next message into `buf`, blocking at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize, RecvTimeoutError> {
        self.this_process()?;
        let wait = self.wait;
        self.poison.guard(|| self.ring.recv(buf, wait, Some(timeout)))
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
        self.poison.check()?;
        let wait = self.wait;
        match self.ring.read(wait, None) {
            Ok(guard) => Ok(ReadGuard(guard)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Borrows the next message in place if one is waiting.
    pub fn try_read(&mut self) -> Result<ReadGuard<'_>, TryRecvError> {
        self.this_process()?;
        self.poison.check()?;
        match self.ring.try_read() {
            Ok(guard) => Ok(ReadGuard(guard)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
    }

    /// Borrows the next message in place, blocking at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>, RecvTimeoutError> {
        self.this_process()?;
        self.poison.check()?;
        let wait = self.wait;
        match self.ring.read(wait, Some(timeout)) {
            Ok(guard) => Ok(ReadGuard(guard)),
            Err(stop) => Err(self.poison.note(stop).into()),
        }
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

/// A ring in anonymous shared memory: a memfd, sealed so that nobody can
/// shrink it, with no name in `/dev/shm`. Create it, then either `fork` (or
/// spawn a child that inherits the descriptor) or send it to another process
/// over a Unix socket; each process then attaches as a producer or the
/// consumer.
///
/// Each attach reopens the memfd through `/proc/self/fd`, so every handle
/// has an open file description (and a liveness lock) of its own. The
/// `AnonymousRing` itself is inherited by a forked child as it is, and the
/// child attaches through it: attach after forking. A handle made before
/// `fork` stays the parent's: in the child it fails with
/// [`ForkedHandle`](crate::ForkedHandle) and its drop does nothing (see
/// [`Producer`'s section on fork](Producer#fork)).
///
/// ```no_run
/// use shmring::{AnonymousRing, RingOptions};
/// use std::os::unix::net::UnixStream;
/// let options = RingOptions::new();
/// let ring = AnonymousRing::create("telemetry", &options)?;
/// let (here, there) = UnixStream::pair()?; // `there`: another process's end
/// ring.send_over(&here)?;
/// let received = AnonymousRing::receive_from(&there, &options)?; // validated like any segment
/// let mut consumer = received.consumer(&options)?;
/// let mut producer = ring.producer(&options)?;
/// producer.send(b"no name in /dev/shm")?;
/// assert_eq!(&*consumer.read()?, b"no name in /dev/shm");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AnonymousRing {
    segment: Segment,
    label: String,
}

impl AnonymousRing {
    fn new(segment: Segment, label: String) -> Self {
        AnonymousRing { segment, label }
    }

    /// Creates an anonymous ring of the options' kind and shape. `label` names
    /// it in messages (and in `/proc/PID/fd`).
    #[doc(alias = "memfd_create")]
    pub fn create(label: &str, options: &RingOptions) -> Result<AnonymousRing, Error> {
        options.check_liveness_interval(label)?;
        Ok(AnonymousRing::new(Segment::create_memfd(label, &options.shape())?, label.to_owned()))
    }

    /// Opens the ring whose memfd is descriptor `fd` of this process (for
    /// example inherited from the parent that created it). The descriptor is
    /// not taken over: the ring reopens it. It must be a memfd sealed against
    /// shrinking ([`Error::NotMemfd`] or [`Error::NotSealed`] otherwise,
    /// found before it is reopened) with a valid header of the options' kind.
    pub fn open_inherited(fd: RawFd, options: &RingOptions) -> Result<AnonymousRing, Error> {
        let label = format!("fd{fd}");
        options.check_liveness_interval(&label)?;
        Ok(AnonymousRing::new(Segment::open_memfd(fd, &label, &options.expect(), Scope::Inherited)?, label))
    }

    /// Sends the ring's descriptor over a Unix stream socket (`SCM_RIGHTS`,
    /// with one byte of data).
    ///
    /// Whoever holds the socket's other end can then write the ring, and
    /// nothing proves who that is (peer credentials name whoever made or
    /// connected the socket). So the ring is first marked as handed out, in
    /// its own header, for every process and every `AnonymousRing` of it:
    /// from then on no handle lends its memory in place. And it is sent only
    /// while no live handle, in any process, lends it
    /// ([`Error::PermissionDenied`] otherwise: send it before attaching
    /// them, or attach them with [`RingOptions::borrow_in_place`]`(false)`).
    pub fn send_over(&self, socket: &UnixStream) -> Result<(), Error> {
        // SeqCst, as the attach side (`may_lend`): either a handle sees the
        // mark and copies, or this sees the handle's `lends` and refuses.
        let header = self.segment.header();
        header.identity.flags.fetch_or(FLAG_HANDED_OUT, Ordering::SeqCst);
        let producers = (0..self.segment.identity().max_producers as usize).map(Slot::Producer);
        let lending = std::iter::once(Slot::Consumer).chain(producers).any(|slot| {
            header.ring.participant(slot).is_some_and(|p| p.lends.load(Ordering::SeqCst) != 0)
                && self.segment.is_locked(slot)
        });
        if lending {
            return Err(Error::PermissionDenied {
                segment: format!("memfd:{}", self.label),
                detail: "it would be sent to another process while a live handle lends its memory in place: \
                         send it before attaching handles, or attach them with RingOptions::borrow_in_place(false)"
                    .to_owned(),
            });
        }
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let fds = [self.segment.fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(socket, &[std::io::IoSlice::new(b"R")], &mut control, SendFlags::empty())
            .map_err(|e| Error::from_os(&format!("memfd:{}", self.label), "sendmsg", e))?;
        Ok(())
    }

    /// Receives a ring's descriptor sent with [`send_over`](Self::send_over)
    /// and validates it exactly as a named segment is validated (the peer can
    /// send anything): a memfd sealed against shrinking, large enough, with a
    /// valid header of the options' kind. Its handles copy rather than lend
    /// in place: who else holds it cannot be known (the trust rule, see
    /// [`RingOptions::borrow_in_place`]).
    pub fn receive_from(socket: &UnixStream, options: &RingOptions) -> Result<AnonymousRing, Error> {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let label = "received".to_owned();
        let os_error = |op, e| Error::from_os(&format!("memfd:{label}"), op, e);
        let mut byte = [0u8; 1];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(socket, &mut [std::io::IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| os_error("recvmsg", e))?;
        let mut received = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // Keep the first; any others are closed as the iterator drops them.
                for fd in fds {
                    received.get_or_insert(fd);
                }
            }
        }
        let Some(fd) = received.filter(|_| got.bytes == 1) else {
            return Err(os_error("recvmsg", rustix::io::Errno::BADMSG));
        };
        options.check_liveness_interval(&label)?;
        // Reopened: the received descriptor shares the sender's open file
        // description, and so would its locks.
        let segment = Segment::open_memfd(fd.as_raw_fd(), &label, &options.expect(), Scope::Inherited)?;
        // Crossed a socket: nobody's handles lend it in place any more.
        segment.header().identity.flags.fetch_or(FLAG_HANDED_OUT, Ordering::SeqCst);
        Ok(AnonymousRing::new(segment, label))
    }

    /// Attaches as a producer (reopening the memfd: see the type's docs).
    pub fn producer(&self, options: &RingOptions) -> Result<Producer, Error> {
        Producer::attach(self.reopen(options)?, options)
    }

    /// Attaches as the consumer (reopening the memfd: see the type's docs).
    pub fn consumer(&self, options: &RingOptions) -> Result<Consumer, Error> {
        Consumer::attach(self.reopen(options)?, options)
    }

    fn reopen(&self, options: &RingOptions) -> Result<Segment, Error> {
        options.check_liveness_interval(&self.label)?;
        Segment::open_memfd(self.segment.fd().as_raw_fd(), &self.label, &options.expect(), Scope::Process)
    }
}

/// Whether the handle just attached in `slot` may lend the segment's memory
/// in place (the trust rule, see [`RingOptions::borrow_in_place`]), recorded
/// in its slot's `lends` for [`AnonymousRing::send_over`]: lending is
/// recorded first, then the handed-out mark read (both SeqCst, as
/// `send_over` marks then reads), and withdrawn if the mark is there.
fn may_lend(segment: &Segment, slot: Slot, options: &RingOptions) -> bool {
    let header = segment.header();
    let Some(participant) = header.ring.participant(slot) else { return false };
    if !options.borrow_in_place || !segment.writers_trusted() {
        participant.lends.store(0, Ordering::SeqCst);
        return false;
    }
    participant.lends.store(1, Ordering::SeqCst);
    if header.identity.flags.load(Ordering::SeqCst) & FLAG_HANDED_OUT != 0 {
        participant.lends.store(0, Ordering::SeqCst);
        return false;
    }
    true
}

impl AsFd for AnonymousRing {
    /// The memfd, for passing to a child (clear `FD_CLOEXEC` on a duplicate)
    /// or another process. The trust rule assumes it goes to this user's
    /// processes only: handing it to a process of another user this way,
    /// which [`send_over`](AnonymousRing::send_over) would refuse while
    /// handles lend in place, needs this process's handles attached with
    /// [`RingOptions::borrow_in_place`]`(false)`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.segment.fd()
    }
}

handle_accessors!(Consumer, "its consumer", "consumer");

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

/// Re-exported so tools can check a name without creating anything.
pub use segment::{unlink, validate_name};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_message_is_valid_for_every_capacity() {
        for shift in 12..=40 {
            let options = RingOptions::new().capacity(1 << shift);
            let shape = options.shape();
            assert!(segment::check_shape("/t", &shape).is_ok(), "capacity 2^{shift}: {}", shape.max_message);
        }
        // Nonsense capacities get a clear error, not an overflow.
        for capacity in [0, 1, 8, 4095] {
            assert!(segment::check_shape("/t", &RingOptions::new().capacity(capacity).shape()).is_err());
        }
    }
}
