//! Looking at segments without taking part: what `shmring ls` and
//! `shmring stat` show, and the removal of stale segments.
//!
//! Inspection opens a segment read-only and validates it exactly as attaching
//! does, but takes no role and changes nothing. Whether a participant is alive
//! comes from the kernel's lock on its byte of the segment, not from its pid.
//!
//! The mapping is read-only (`PROT_READ`), and on read-only memory the only
//! atomic accesses Rust allows are Relaxed loads of at most the target's
//! native width (see "Atomic accesses to read-only memory" in
//! `core::sync::atomic`): so every load here is Relaxed, and where an
//! Acquire load's ordering is wanted an Acquire fence follows the load. The
//! header's fields are 8 bytes at most, within that limit on 64-bit targets;
//! on 32-bit ones (a 4-byte limit) the 8-byte loads are outside what Rust
//! guarantees.

use crate::error::Error;
use crate::layout::{
    Kind, Participant, Slot, WakeLine, SLEEPER_COUNT_BITS, SLEEPER_COUNT_MASK, SLOT_ATTACHED, SLOT_DETACHED,
    SLOT_EMPTY, WAITING_FOR_ANY, WAITING_POSITION_BITS, WAITING_POSITION_MASK,
};
use crate::ring::RingBacking;
use crate::segment::{unlink, Segment};
use crate::sync::{fence, Ordering};
use std::time::Duration;

/// Where POSIX shared-memory objects live on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// A participant slot as the header records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Never attached.
    Empty,
    /// Attached (alive or not: see [`ParticipantInfo::alive`]).
    Attached,
    /// Detached cleanly.
    Detached,
    /// A value no version of shmring writes (corruption).
    Unknown(u32),
}

/// One participant slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// What the slot says.
    pub state: SlotState,
    /// The pid the last holder recorded (a hint: it may be in another PID
    /// namespace).
    pub pid: u32,
    /// How many times the slot has been taken.
    pub attachments: u32,
    /// Whether a live process holds the slot's lock.
    pub alive: bool,
    /// Messages this slot's holders committed (a producer) or read (the
    /// consumer).
    pub messages: u64,
}

impl ParticipantInfo {
    /// Attached, but its process is gone.
    pub fn is_dead(&self) -> bool {
        self.state == SlotState::Attached && !self.alive
    }
}

/// One direction of the wake-up protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeInfo {
    /// The futex word.
    pub seq: u32,
    /// Sleepers announced on it.
    pub sleepers: u32,
    /// Times anyone has announced itself on it (modulo 2^24): how often a
    /// side went to park.
    pub parks: u32,
    /// The position of the record the last announcement said it waits for
    /// (an MPSC consumer's `head` when it last parked), if it said one;
    /// `None` for a sleeper woken by any record (and on the producers'
    /// line). A hint: the line keeps the position modulo 2^40.
    pub waiting_for: Option<u64>,
}

/// Everything the header of a segment says, read at one moment.
///
/// ```no_run
/// let info = shmring::inspect::inspect("/telemetry")?;
/// println!("{} ring, {} of {} bytes used, {} messages pending", info.kind, info.used_bytes(), info.capacity, info.pending_messages());
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// Ring kind.
    pub kind: Kind,
    /// Layout version.
    pub version: u32,
    /// Bytes in the data region.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u32,
    /// Producer slots.
    pub max_producers: u32,
    /// Pid of the creator (a hint).
    pub creator_pid: u32,
    /// Uid of the creator.
    pub creator_uid: u32,
    /// Owner of the object (`fstat`).
    pub owner_uid: u32,
    /// Permission bits of the object.
    pub mode: u32,
    /// Size of the object in bytes.
    pub size: u64,
    /// Position of the next record to read.
    pub head: u64,
    /// Position up to which records have been written.
    pub tail: u64,
    /// Messages committed since creation.
    pub messages_sent: u64,
    /// Messages consumed since creation.
    pub messages_read: u64,
    /// MPSC: records skipped because their producer died before committing.
    pub torn_records: u64,
    /// File-backed rings: every record before this position is durable.
    pub durable_tail: u64,
    /// File-backed rings: records dropped by recoveries after restarts of
    /// the machine (written after the last flush).
    pub lost_records: u64,
    /// Where the consumer sleeps.
    pub consumer_wake: WakeInfo,
    /// Where producers sleep.
    pub producer_wake: WakeInfo,
    /// The consumer's slot.
    pub consumer: ParticipantInfo,
    /// The producer slots in use for this kind.
    pub producers: Vec<ParticipantInfo>,
}

impl SegmentInfo {
    /// Bytes between head and tail (records and padding not yet consumed).
    pub fn used_bytes(&self) -> u64 {
        self.tail.saturating_sub(self.head).min(self.capacity)
    }

    /// Messages committed and not yet consumed.
    pub fn pending_messages(&self) -> u64 {
        self.messages_sent.saturating_sub(self.messages_read)
    }

    /// Every participant that ever attached is dead or gone, and at least one
    /// died without detaching: nobody will clean this segment up.
    pub fn is_stale(&self) -> bool {
        let all = || std::iter::once(&self.consumer).chain(&self.producers);
        all().all(|p| !p.alive) && all().any(ParticipantInfo::is_dead)
    }
}

fn participant(segment: &Segment, slot: Slot, p: &Participant, messages: u64) -> ParticipantInfo {
    let state = p.state.load(Ordering::Relaxed);
    // Read-only mapping: a Relaxed load and a fence, not an Acquire load.
    fence(Ordering::Acquire);
    let state = match state {
        SLOT_EMPTY => SlotState::Empty,
        SLOT_ATTACHED => SlotState::Attached,
        SLOT_DETACHED => SlotState::Detached,
        other => SlotState::Unknown(other),
    };
    ParticipantInfo {
        state,
        pid: p.pid.load(Ordering::Relaxed),
        attachments: p.attachments.load(Ordering::Relaxed),
        alive: segment.is_locked(slot),
        messages,
    }
}

/// `line` as it reads; `head`, the consumer's position as read just before,
/// from which the position a consumer waits for is told (the line holds it
/// modulo 2^40): the one nearest `head` (a hint: a consumer that read 2^39
/// bytes or more since its last park may show one 2^40 off).
fn wake(line: &WakeLine, head: u64) -> WakeInfo {
    let announced = line.sleepers.load(Ordering::Relaxed);
    let word = line.waiting_for.load(Ordering::Relaxed);
    let said = word != WAITING_FOR_ANY && word >> WAITING_POSITION_BITS == u64::from(announced >> SLEEPER_COUNT_BITS);
    let waited = word.wrapping_sub(1) & WAITING_POSITION_MASK;
    let ahead = waited.wrapping_sub(head) & WAITING_POSITION_MASK;
    let half = 1 << (WAITING_POSITION_BITS - 1);
    let nearest =
        if ahead < half { head.checked_add(ahead) } else { head.checked_sub((WAITING_POSITION_MASK - ahead) + 1) };
    WakeInfo {
        seq: line.seq.load(Ordering::Relaxed),
        sleepers: announced & SLEEPER_COUNT_MASK,
        parks: announced >> SLEEPER_COUNT_BITS,
        waiting_for: said.then(|| nearest.unwrap_or(waited)),
    }
}

/// Reads the header of segment `name` (read-only, no role taken).
pub fn inspect(name: &str) -> Result<SegmentInfo, Error> {
    describe(name, &Segment::open_read_only(name, Duration::from_millis(100))?)
}

/// Reads the header of the file-backed segment at `path` (read-only, no
/// role taken, no recovery).
///
/// ```no_run
/// let info = shmring::inspect::inspect_file("/var/lib/app/journal.ring")?;
/// println!("durable up to {}, {} records lost to restarts", info.durable_tail, info.lost_records);
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn inspect_file(path: impl AsRef<std::path::Path>) -> Result<SegmentInfo, Error> {
    let path = path.as_ref();
    describe(&path.to_string_lossy(), &Segment::open_file_read_only(path, Duration::from_millis(100))?)
}

fn describe(name: &str, segment: &Segment) -> Result<SegmentInfo, Error> {
    let (owner_uid, mode, size) = segment.file_stat()?;
    let id = *segment.identity();
    let ring = RingBacking::header(segment);
    // SPSC counts in the producer line; each MPSC producer in its claim line.
    let sent = |n: usize| match segment.kind() {
        Kind::Spsc => ring.producer.messages.load(Ordering::Relaxed),
        Kind::Mpsc => ring.claim(n).map_or(0, |line| line.messages.load(Ordering::Relaxed)),
    };
    let producers: Vec<ParticipantInfo> = ring
        .producer_slots
        .0
        .iter()
        .take(id.max_producers as usize)
        .enumerate()
        .map(|(n, p)| participant(segment, Slot::Producer(n), p, sent(n)))
        .collect();
    let messages_read = ring.consumer.messages.load(Ordering::Relaxed);
    // Read-only mapping: Relaxed loads and a fence, not Acquire loads.
    let head = ring.consumer.head.load(Ordering::Relaxed);
    let tail = ring.producer.tail.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    Ok(SegmentInfo {
        name: name.to_owned(),
        kind: segment.kind(),
        version: id.version,
        capacity: id.capacity,
        max_message: id.max_message,
        max_producers: id.max_producers,
        creator_pid: id.creator_pid,
        creator_uid: id.creator_uid,
        owner_uid,
        mode,
        size,
        head,
        tail,
        messages_sent: producers.iter().fold(0u64, |sum, p| sum.wrapping_add(p.messages)),
        messages_read,
        torn_records: ring.consumer.torn_records.load(Ordering::Relaxed),
        durable_tail: ring.persistence.durable_tail.load(Ordering::Relaxed),
        lost_records: ring.persistence.lost_records.load(Ordering::Relaxed),
        consumer_wake: wake(&ring.consumer_wake, head),
        producer_wake: wake(&ring.producer_wake, head),
        consumer: participant(segment, Slot::Consumer, &ring.consumer_slot, messages_read),
        producers,
    })
}

/// One object found in [`SHM_DIR`].
#[derive(Debug)]
pub struct Listing {
    /// Its name (with the leading `/`).
    pub name: String,
    /// Its header, or why it is not a readable shmring segment.
    pub info: Result<SegmentInfo, Error>,
}

/// Every shared-memory object in [`SHM_DIR`], sorted by name, each with its
/// header or the reason it has none.
pub fn list() -> Result<Vec<Listing>, Error> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|source| Error::Io {
        segment: SHM_DIR.to_owned(),
        op: "read_dir",
        source,
    })?;
    let mut listings: Vec<Listing> = dir
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .map(|file| {
            let name = format!("/{file}");
            let info = inspect(&name);
            Listing { name, info }
        })
        .collect();
    listings.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listings)
}

/// Unlinks every stale shmring segment in [`SHM_DIR`] (see
/// [`SegmentInfo::is_stale`]) and returns their names. Live segments, idle
/// ones that nobody has died on, and objects that are not shmring segments
/// are left alone.
///
/// Each segment found stale is opened again and checked again, this time
/// holding a shared lock on every participant's lock byte, and is unlinked
/// only if its name still refers to the very object checked (same device and
/// inode). So:
///
/// * a segment someone removed and created anew under the same name after the
///   listing is not removed (unless the replacement happens in the instant
///   between the last `stat` of the name and the `shm_unlink`, which no
///   system call can close: there is no "unlink this inode");
/// * a process that opens the segment while it is being removed cannot take
///   a role in it (it gets [`Error::AlreadyAttached`] or
///   [`Error::TooManyProducers`], and on a retry finds no segment), rather
///   than attaching to a segment about to lose its name;
/// * two `remove_stale` running at once may each see the other's lock as a
///   live participant and leave that segment for the next run.
pub fn remove_stale() -> Result<Vec<String>, Error> {
    let mut removed = Vec::new();
    for listing in list()? {
        if listing.info.is_ok_and(|info| info.is_stale()) && remove_if_stale(&listing.name, &mut |_| {})? {
            removed.push(listing.name);
        }
    }
    Ok(removed)
}

/// Unlinks `name` if it is stale and its name still refers to the object
/// found stale (see [`remove_stale`]); `between` runs between the check and
/// the unlink (tests widen the window with it).
fn remove_if_stale(name: &str, between: &mut dyn FnMut(&str)) -> Result<bool, Error> {
    // Gone, replaced by something unreadable, or not ours: not stale now.
    let Ok(segment) = Segment::open_read_only(name, Duration::from_millis(100)) else { return Ok(false) };
    // While this is held nobody is alive in the segment, and nobody can
    // attach to it.
    if !segment.try_hold_participants()? {
        return Ok(false);
    }
    // So it is stale if anyone died attached (the lock makes the liveness
    // probes moot: no participant holds its byte).
    let info = describe(name, &segment)?;
    if !std::iter::once(&info.consumer).chain(&info.producers).any(|p| p.state == SlotState::Attached) {
        return Ok(false);
    }
    between(name);
    let path = format!("{SHM_DIR}{name}");
    let current = match rustix::fs::stat(path.as_str()) {
        Ok(stat) => (stat.st_dev, stat.st_ino),
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(Error::from_os(name, "stat", e)),
    };
    if current != segment.file_id()? {
        return Ok(false);
    }
    // Another process may have removed it first: not an error.
    match unlink(name) {
        Ok(()) => Ok(true),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::SLOT_ATTACHED;
    use crate::segment::Shape;

    fn shape() -> Shape {
        Shape { kind: Kind::Spsc, capacity: 1 << 12, max_message: 64, max_producers: 1, mode: 0o600, huge_pages: false }
    }

    /// A segment whose producer slot says attached with no process holding
    /// its lock: as a producer killed while attached leaves it.
    fn stale(name: &str) -> Segment {
        let segment = Segment::create(name, &shape(), true).expect("create");
        segment.header().ring.producer_slots.0[0].state.store(SLOT_ATTACHED, Ordering::Relaxed);
        assert!(inspect(name).expect("inspect").is_stale());
        segment
    }

    fn name(tag: &str) -> String {
        format!("/shmring-unit-{tag}-{}", std::process::id())
    }

    /// The segment found stale is unlinked and a new one created under its
    /// name between the check and the unlink: the new one is left alone.
    #[test]
    fn a_segment_replaced_after_the_check_is_not_removed() {
        let name = name("replaced");
        let _old = stale(&name);
        let mut replacement = None;
        let removed = remove_if_stale(&name, &mut |name| {
            unlink(name).expect("unlink the stale one");
            replacement = Some(Segment::create(name, &shape(), true).expect("create anew"));
        })
        .expect("remove_if_stale");
        let replacement = replacement.expect("the window was reached");
        assert!(!removed, "reported as removed");
        let info = inspect(&name).expect("the new segment is still there");
        assert_eq!(info.creator_pid, replacement.identity().creator_pid);
        assert!(!info.is_stale());
    }

    /// A process that opens the segment while it is being removed is refused
    /// instead of attaching to a segment about to be unlinked.
    #[test]
    fn an_opener_racing_with_the_removal_is_refused() {
        let name = name("racing");
        let _old = stale(&name);
        let mut attempt = None;
        let removed = remove_if_stale(&name, &mut |name| {
            attempt = Some(
                crate::channel::Producer::open(name, &crate::channel::RingOptions::new().capacity(1 << 12)).map(drop),
            );
        })
        .expect("remove_if_stale");
        assert!(removed);
        let attempt = attempt.expect("the window was reached");
        assert!(matches!(attempt, Err(Error::AlreadyAttached { .. })), "{attempt:?}");
        assert!(matches!(inspect(&name), Err(Error::NotFound { .. })));
    }
}
