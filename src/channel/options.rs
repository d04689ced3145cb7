//! [`RingOptions`]: what a ring is made with or expected to be.

#[allow(unused_imports)] // the handles the docs link to
use crate::channel::{AnonymousRing, Consumer, Producer};
use crate::error::Error;
use crate::layout::{Kind, MAX_PRODUCERS};
use crate::segment::{self, Expect, Segment, Shape};
use crate::wait::WaitStrategy;
use std::path::Path;
use std::time::Duration;

/// Default data region size: 1 MiB.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

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
    pub(super) kind: Kind,
    pub(super) max_producers: Option<usize>,
    pub(super) capacity: usize,
    pub(super) max_message: Option<usize>,
    pub(super) mode: u32,
    pub(super) unlink_on_drop: bool,
    pub(super) wait: WaitStrategy,
    pub(super) open_timeout: Duration,
    pub(super) ready_timeout: Duration,
    pub(super) allow_foreign_owner: bool,
    pub(super) liveness_interval: Duration,
    pub(super) borrow_in_place: bool,
    pub(super) defer_room_wakes: bool,
    pub(super) huge_pages: bool,
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
            open_timeout: Duration::ZERO,
            ready_timeout: Duration::from_secs(1),
            allow_foreign_owner: false,
            liveness_interval: crate::wait::PARK_SLICE,
            borrow_in_place: true,
            defer_room_wakes: false,
            huge_pages: false,
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
    pub fn max_producers(mut self, producers: usize) -> Self {
        self.max_producers = Some(producers);
        self
    }

    /// Bytes in the data region (creation only): a power of two, a multiple of
    /// the page size, from 4 KiB to 1 TiB.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message (creation only). Default: capacity / 4. At most
    /// capacity / 2 - 8.
    pub fn max_message(mut self, bytes: usize) -> Self {
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
    pub fn for_messages(mut self, count: usize, max_size: usize) -> Self {
        // A ring's largest message is at least 1 byte (0-byte messages fit
        // any ring).
        let max_size = max_size.max(1);
        let record = max_size.checked_add(15).map(|bytes| bytes & !7);
        let needed = count.checked_add(1).zip(record).and_then(|(records, record)| records.checked_mul(record));
        let page = crate::segment::page_size() as usize;
        self.capacity = needed
            .and_then(usize::checked_next_power_of_two)
            .map_or(usize::MAX, |capacity| capacity.max(page).max(4096));
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

    /// How long opening waits for a segment that does not exist yet, for a
    /// process that may start before the one that creates the ring. Default
    /// zero: [`Error::NotFound`] at once. `Duration::MAX` waits without
    /// limit. Once the segment exists, [`ready_timeout`](Self::ready_timeout)
    /// bounds the wait for its creator to finish it; one whose creator gave
    /// up and removed it meanwhile is waited for anew.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let options = shmring::RingOptions::new().open_timeout(Duration::from_secs(10));
    /// let consumer = shmring::Consumer::open("/prices", &options)?; // the producer may start later
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How long opening waits, once the segment exists, for a creator that
    /// has not finished writing its header. Default 1 s. A timeout too long
    /// for the clock to count (`Duration::MAX`) waits without limit. It does
    /// not wait for the segment to be created: see
    /// [`open_timeout`](Self::open_timeout).
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

    /// Whether a consumer wakes producers that wait for room only once half
    /// the ring is free, or when it is about to wait or finds the ring empty,
    /// rather than at every release (default: false; read by the consumer).
    ///
    /// With the ring full (a consumer slower than its producers) and the
    /// producers parked, a wake at every release makes each producer send
    /// one message and park again: a `FUTEX_WAKE` and a `FUTEX_WAIT` or more
    /// per message. Deferred, they are woken once per half ring; in the demo
    /// with four producers on two cores that was 4.8-5.4x the messages per
    /// second and 0.0007 futex calls per message instead of 0.3-0.4
    /// (docs/performance.md).
    ///
    /// The cost: a consumer that frees some room and then blocks on
    /// something else (its own send on another ring, a lock, I/O) leaves a
    /// producer parked until its next liveness check (see
    /// [`liveness_interval`](Self::liveness_interval)); in a request/reply
    /// pair of rings, both full, each such round waits that long. A
    /// `ReadyFd` of a producer is likewise told of room
    /// freed without a wake only at that check. `send_timeout` looks once
    /// more at its deadline. Use it for a consumer that only consumes.
    ///
    /// ```
    /// let options = shmring::RingOptions::new().defer_room_wakes(true);
    /// ```
    pub fn defer_room_wakes(mut self, defer: bool) -> Self {
        self.defer_room_wakes = defer;
        self
    }

    /// Checks what only attaching uses (the rest is checked by the segment
    /// it creates or opens): called once per handle, by `segment_for`,
    /// before anything is created.
    pub(super) fn check_attach_options(&self, segment: &str) -> Result<(), Error> {
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

    /// Back an anonymous ring ([`AnonymousRing::create`]) with 2 MiB huge
    /// pages (`MFD_HUGETLB`) instead of 4 KiB ones (default: no).
    ///
    /// For large rings: fewer TLB misses and page-table walks while the
    /// ring streams (1.15x-1.25x the throughput of 1 KiB and 64 KiB
    /// messages through a 64 MiB ring: `cargo bench --bench pages`),
    /// and one page fault per 2 MiB where pre-faulting is skipped instead
    /// of one per 4 KiB. The capacity must be at least 2 MiB; the header
    /// takes a huge page of its own. Huge pages come from a pool the
    /// administrator reserves (`sysctl vm.nr_hugepages=N`); creating a ring
    /// that the pool cannot supply fails with [`Error::NoHugePages`], and
    /// its pages return to the pool when the last handle and descriptor are
    /// gone. Only anonymous rings can have them: `/dev/shm` and regular
    /// files are not on hugetlbfs, so creating a named or file ring with
    /// this option is [`Error::InvalidOptions`]. Opening needs nothing: the
    /// segment says (a build from before this option reports such a ring as
    /// corrupted).
    ///
    /// Give the descriptor only to processes trusted not to punch holes in
    /// it (`fallocate`): no seal forbids that and still lets the ring be
    /// written, and on huge pages a hole gives its page back to the pool,
    /// so that a later touch, if the pool is empty by then, kills the
    /// toucher with `SIGBUS` (on 4 KiB pages a hole reads back as zeros, as
    /// if the peer had written them).
    ///
    /// ```no_run
    /// use shmring::{AnonymousRing, RingOptions};
    /// let options = RingOptions::new().capacity(64 << 20).max_message(1 << 20).huge_pages(true);
    /// let ring = AnonymousRing::create("frames", &options)?; // 33 huge pages
    /// let (mut producer, mut consumer) = (ring.producer(&options)?, ring.consumer(&options)?);
    /// producer.send(&[7u8; 65536])?;
    /// let mut buf = Vec::new();
    /// assert_eq!(consumer.recv(&mut buf)?, 65536);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn huge_pages(mut self, huge: bool) -> Self {
        self.huge_pages = huge;
        self
    }

    /// Open segments owned by another user (refused by default).
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    pub(super) fn shape(&self) -> Shape {
        // A quarter of the ring, within what a record can carry (a 32 GiB
        // ring's quarter would not fit the 32-bit length).
        // (`usize` is at most 64 bits wide: the casts to u64 are lossless.)
        let capacity = self.capacity as u64;
        let default_max = (capacity / 4).min(segment::max_message_for(capacity));
        let default_producers = match self.kind {
            Kind::Spsc => 1,
            Kind::Mpsc => MAX_PRODUCERS as u64,
        };
        Shape {
            kind: self.kind,
            capacity,
            max_message: self.max_message.map_or(default_max, |bytes| bytes as u64),
            max_producers: self.max_producers.map_or(default_producers, |producers| producers as u64),
            mode: self.mode,
            huge_pages: self.huge_pages,
        }
    }

    pub(super) fn expect(&self) -> Expect {
        Expect {
            kind: Some(self.kind),
            allow_foreign_owner: self.allow_foreign_owner,
            open_timeout: self.open_timeout,
            ready_timeout: self.ready_timeout,
        }
    }

    /// Creates a segment of the options' kind and leaves it, attached by
    /// nobody: for a supervisor that starts the producers and consumer as
    /// other processes. Remove it with [`unlink`](super::unlink).
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
