//! The producer and consumer loops shared by the `producer`, `consumer` and
//! `demo` examples. Payloads carry their producer's id and sequence number,
//! so a consumer can verify every byte and each producer's order (SPSC: one
//! producer; MPSC: several), at every size from 0 bytes up: see [`fill`].
#![allow(dead_code)] // each example uses part of this module

pub mod guards;

use clap::Args;
use shmring::{payload, AnonymousRing, Consumer, Kind, Producer, RecvTimeoutError, RingOptions, WaitStrategy};
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

/// Payloads of this size and up are `shmring::payload`'s: the sequence
/// number (8 bytes), the producer id (4), then bytes generated from both.
pub const FULL: usize = 12;

/// Producer ids the consumer tracks.
pub const MAX_PRODUCER_ID: u32 = 4096;

/// Fills `buf` with message `seq` of producer `id`.
///
/// From [`FULL`] bytes up, `shmring::payload`'s format. A shorter payload
/// cannot carry both numbers, so:
///
/// * SPSC: the first `buf.len()` bytes of the same format (the low bytes of
///   `seq`, then of `id`). One producer's messages arrive in order, so the
///   consumer knows which `seq` comes next and checks these bytes against it;
///   an empty message is checked by its place alone.
/// * MPSC: byte 0 is `id` (so `id` must be under 256), then the first
///   `buf.len() - 1` bytes of the same format. An empty message cannot name
///   its producer, so an MPSC producer never sends one (see [`check_sizes`]).
pub fn fill(mpsc: bool, id: u32, seq: u64, buf: &mut [u8]) {
    match buf.split_first_mut() {
        Some((tag, rest)) if mpsc && rest.len() < FULL - 1 => {
            *tag = id as u8;
            payload::fill(id, seq, rest);
        }
        _ => payload::fill(id, seq, buf),
    }
}

/// Refuses, before anything is sent, sizes whose payloads a consumer could
/// not attribute to this producer and verify.
pub fn check_sizes(mpsc: bool, id: u32, min: usize) -> Result<(), String> {
    if id >= MAX_PRODUCER_ID {
        return Err(format!("producer id {id}: the consumer tracks ids below {MAX_PRODUCER_ID}"));
    }
    if mpsc && min == 0 {
        return Err("an empty MPSC message cannot name its producer, so no consumer could verify it: \
                    use sizes of 1 byte and up (--size, --min-size)"
            .into());
    }
    if mpsc && min < FULL && id > u32::from(u8::MAX) {
        return Err(format!(
            "MPSC payloads under {FULL} bytes name their producer in one byte: with --id {id}, use sizes of {FULL} bytes and up"
        ));
    }
    Ok(())
}

/// Opens with `open`, waiting up to `timeout` for the segment (or file) to be
/// created: a producer started right after its consumer (`consumer --create
/// &` then `producer`) may otherwise look before the consumer has created it.
fn open_waiting<T>(
    timeout: Duration,
    mut open: impl FnMut() -> Result<T, shmring::Error>,
) -> Result<T, shmring::Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match open() {
            Err(shmring::Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Where a ring is: exactly one of these.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct RingArgs {
    /// Segment name in /dev/shm, e.g. /demo.
    #[arg(long)]
    pub name: Option<String>,
    /// A file-backed (persistent) ring at this path.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// An anonymous ring whose memfd this process inherited as descriptor N.
    #[arg(long)]
    pub fd: Option<i32>,
}

impl RingArgs {
    fn producer(&self, create: bool, options: &RingOptions, wait: Duration) -> Result<Producer, Box<dyn Error>> {
        Ok(match (&self.name, &self.file, self.fd) {
            (Some(name), _, _) if create => Producer::create(name, options)?,
            (Some(name), _, _) => open_waiting(wait, || Producer::open(name, options))?,
            (_, Some(path), _) if create => Producer::create_file(path, options)?,
            (_, Some(path), _) => open_waiting(wait, || Producer::open_file(path, options))?,
            (_, _, Some(fd)) => AnonymousRing::open_inherited(fd, options)?.producer(options)?,
            _ => return Err("--name, --file or --fd is needed".into()),
        })
    }

    fn consumer(&self, create: bool, options: &RingOptions, wait: Duration) -> Result<Consumer, Box<dyn Error>> {
        Ok(match (&self.name, &self.file, self.fd) {
            (Some(name), _, _) if create => Consumer::create(name, options)?,
            (Some(name), _, _) => open_waiting(wait, || Consumer::open(name, options))?,
            (_, Some(path), _) if create => Consumer::create_file(path, options)?,
            (_, Some(path), _) => open_waiting(wait, || Consumer::open_file(path, options))?,
            (_, _, Some(fd)) => AnonymousRing::open_inherited(fd, options)?.consumer(options)?,
            _ => return Err("--name, --file or --fd is needed".into()),
        })
    }
}

/// Options of a producer process.
#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    /// Where the ring is: a shared-memory name, a file, or an inherited
    /// memfd.
    #[command(flatten)]
    pub ring: RingArgs,
    /// Create the segment (otherwise open an existing one).
    #[arg(long)]
    pub create: bool,
    /// The segment is (or is created as) an MPSC ring: many producers.
    #[arg(long)]
    pub mpsc: bool,
    /// Data region size in bytes, when creating.
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: u64,
    /// Messages to send (default: until --seconds runs out, or 1,000,000).
    #[arg(long)]
    pub count: Option<u64>,
    /// Send for this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Smallest payload (random sizes from --min-size to --max-size).
    #[arg(long, requires = "max_size")]
    pub min_size: Option<usize>,
    /// Largest payload (random sizes from --min-size to --max-size).
    #[arg(long, requires = "min_size")]
    pub max_size: Option<usize>,
    /// Wait strategy: busy, spin or park.
    #[arg(long, default_value = "spin")]
    pub wait: WaitStrategy,
    /// Write payloads in place with reserve/commit instead of send.
    #[arg(long, conflicts_with = "batch")]
    pub zero_copy: bool,
    /// Send in batches of this many messages (`send_batch`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,
    /// This producer's id, written into every payload (so the consumer can
    /// check each producer's order).
    #[arg(long, visible_alias = "stream", default_value_t = 0)]
    pub id: u32,
    /// Without --create: wait this many seconds for the segment to be created.
    #[arg(long, default_value_t = 10.0)]
    pub open_timeout: f64,
}

/// Options of a consumer process.
#[derive(Args, Debug, Clone)]
pub struct ConsumerArgs {
    /// Where the ring is: a shared-memory name, a file, or an inherited
    /// memfd.
    #[command(flatten)]
    pub ring: RingArgs,
    /// Create the segment (otherwise open an existing one).
    #[arg(long)]
    pub create: bool,
    /// The segment is (or is created as) an MPSC ring: many producers.
    #[arg(long)]
    pub mpsc: bool,
    /// Data region size in bytes, when creating.
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: u64,
    /// Keep going until this many producers have been seen (a producer that
    /// starts late is not mistaken for the end of the stream). MPSC: the
    /// number of producers; messages from more are errors.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Stop after this many messages (default: when the producers are gone).
    #[arg(long)]
    pub count: Option<u64>,
    /// Check every byte, and the order of each producer's messages.
    #[arg(long)]
    pub verify: bool,
    /// Wait strategy: busy, spin or park.
    #[arg(long, default_value = "spin")]
    pub wait: WaitStrategy,
    /// Read in place (borrowed guards) instead of copying out.
    #[arg(long)]
    pub zero_copy: bool,
    /// Take messages in batches (`drain`): in place where allowed, with one
    /// release of their space per batch.
    #[arg(long, conflicts_with = "zero_copy")]
    pub batch: bool,
    /// Wake producers waiting for room once half the ring is free, not at
    /// every release (`RingOptions::defer_room_wakes`).
    #[arg(long)]
    pub defer_room_wakes: bool,
    /// Give up after this many seconds without a message.
    #[arg(long, default_value_t = 30.0)]
    pub idle_timeout: f64,
    /// Without --create: wait this many seconds for the segment to be created.
    #[arg(long, default_value_t = 10.0)]
    pub open_timeout: f64,
}

/// What one side did: printed as one `key=value` line.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub role: String,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub secs: f64,
    pub futex_calls: u64,
    pub torn: u64,
}

impl Summary {
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.secs.max(1e-9)
    }

    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9) / 1e9
    }

    /// Parses a line printed by `Display`.
    pub fn parse(line: &str) -> Option<Summary> {
        let (role, rest) = line.split_once(": ")?;
        let mut s = Summary { role: role.to_owned(), ..Summary::default() };
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "messages" => s.messages = value.parse().ok()?,
                "bytes" => s.bytes = value.parse().ok()?,
                "errors" => s.errors = value.parse().ok()?,
                "secs" => s.secs = value.parse().ok()?,
                "futex_calls" => s.futex_calls = value.parse().ok()?,
                "torn_records" => s.torn = value.parse().ok()?,
                _ => {}
            }
        }
        Some(s)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: messages={} bytes={} errors={} secs={:.3} msgs_per_s={:.0} gb_per_s={:.3} futex_calls={} futex_per_msg={:.6} torn_records={}",
            self.role.replace(' ', "-"),
            self.messages,
            self.bytes,
            self.errors,
            self.secs,
            self.msgs_per_s(),
            self.gb_per_s(),
            self.futex_calls,
            self.futex_calls as f64 / self.messages.max(1) as f64,
            self.torn
        )
    }
}

/// Payload sizes: fixed, or a reproducible pseudo-random mix.
pub struct Sizes {
    min: usize,
    max: usize,
    state: u64,
}

impl Sizes {
    pub fn new(fixed: usize, min: Option<usize>, max: Option<usize>, seed: u64) -> Sizes {
        let (min, max) = match (min, max) {
            (Some(a), Some(b)) => (a.min(b), a.max(b)),
            _ => (fixed, fixed),
        };
        Sizes { min, max, state: seed | 1 }
    }

    pub fn next(&mut self) -> usize {
        if self.min == self.max {
            return self.min;
        }
        shmring::payload::xorshift(&mut self.state);
        self.min + (self.state % (self.max - self.min + 1) as u64) as usize
    }
}

fn options(capacity: u64, wait: WaitStrategy, mpsc: bool) -> RingOptions {
    let options = RingOptions::new().capacity(capacity as usize).wait(wait);
    if mpsc {
        options.kind(Kind::Mpsc)
    } else {
        options
    }
}

/// Counts each producer's messages and, when verifying, checks each message
/// against the next sequence number of the producer it names (or, for a
/// payload too short to name it, the one [`fill`] says it belongs to).
#[derive(Default)]
pub struct Verifier {
    mpsc: bool,
    /// Next sequence number per producer id (`u64::MAX`: not seen yet).
    /// Indexed by id: a hash lookup per message would cost more than the
    /// ring does.
    next: Vec<u64>,
    producers: usize,
    /// MPSC: how many producers there are; a message from one more is an
    /// error (a 1-byte payload is only its producer's tag, so a damaged tag
    /// shows as a producer too many).
    limit: Option<usize>,
    /// SPSC: the producer the last message named; short messages are its.
    current: Option<u32>,
    /// SPSC: short messages that came before any message named their
    /// producer.
    unnamed: Option<Unnamed>,
}

/// An SPSC producer seen only through short messages so far.
#[derive(Default)]
struct Unnamed {
    next: u64,
    /// The bytes of its id that its messages of 9 to 11 bytes showed.
    id_bytes: [Option<u8>; 4],
}

impl Verifier {
    pub fn new(mpsc: bool) -> Verifier {
        Verifier { mpsc, ..Verifier::default() }
    }

    /// MPSC: messages from more than `producers` producers are errors.
    pub fn producers_expected(self, producers: usize) -> Verifier {
        Verifier { limit: Some(producers), ..self }
    }

    /// Counts `msg` and, if `verify`, checks it (an error is counted and the
    /// first ten are printed).
    pub fn observe(&mut self, msg: &[u8], verify: bool, summary: &mut Summary) {
        summary.messages += 1;
        summary.bytes += msg.len() as u64;
        let outcome = if self.mpsc { self.mpsc_message(msg, verify) } else { self.spsc_message(msg, verify) };
        if let Err(e) = outcome {
            summary.error(verify, e);
        }
    }

    pub fn producers(&self) -> usize {
        self.producers
    }

    /// The sequence number producer `id` is at (0 for one not seen yet, which
    /// is then counted: an error if it is one more than expected).
    fn expected(&mut self, id: u32) -> Result<u64, String> {
        let index = id as usize;
        if index >= self.next.len() {
            self.next.resize(index + 1, u64::MAX);
        }
        if self.next[index] == u64::MAX {
            self.next[index] = 0;
            self.producers += 1;
            if self.limit.is_some_and(|limit| self.producers > limit) {
                return Err(format!("a message from producer {id}, one more than the {} expected", self.producers - 1));
            }
        }
        Ok(self.next[index])
    }

    /// A message that names its producer: checks the order and every byte,
    /// then expects the message after it (resynchronising after an error).
    fn named(&mut self, id: u32, seq: u64, expected: u64, msg: &[u8], verify: bool) -> Result<(), String> {
        self.next[id as usize] = seq.wrapping_add(1);
        if !verify {
            Ok(())
        } else if seq != expected {
            Err(format!("producer {id}: expected message {expected}, got {seq}"))
        } else {
            payload::check(id, seq, msg)
        }
    }

    fn full_id(msg: &[u8]) -> Result<(u32, u64), String> {
        let (id, seq) = payload::identify(msg).ok_or("a message too short to name its producer")?;
        if id >= MAX_PRODUCER_ID {
            return Err(format!("producer id {id} is over {MAX_PRODUCER_ID}"));
        }
        Ok((id, seq))
    }

    fn mpsc_message(&mut self, msg: &[u8], verify: bool) -> Result<(), String> {
        match msg.split_first() {
            None => {
                Err("an empty message in an MPSC ring cannot name its producer (producers here never send one)".into())
            }
            Some((&tag, rest)) if msg.len() < FULL => {
                let id = u32::from(tag);
                let seq = self.expected(id)?;
                self.next[id as usize] = seq + 1;
                match verify {
                    true => payload::check(id, seq, rest)
                        .map_err(|e| format!("{e} (a {}-byte message tagged {id})", msg.len())),
                    false => Ok(()),
                }
            }
            Some(_) => {
                let (id, seq) = Self::full_id(msg)?;
                let expected = self.expected(id)?;
                self.named(id, seq, expected, msg, verify)
            }
        }
    }

    fn spsc_message(&mut self, msg: &[u8], verify: bool) -> Result<(), String> {
        if msg.len() >= FULL {
            let (id, seq) = Self::full_id(msg)?;
            let expected = match self.unnamed.take() {
                // This names the producer whose short messages came first.
                Some(unnamed) => {
                    let shown = id.to_le_bytes();
                    if let Some(i) = (0..4).find(|&i| unnamed.id_bytes[i].is_some_and(|b| b != shown[i])) {
                        return Err(format!("producer {id}: its earlier short messages showed another id (byte {i})"));
                    }
                    // Counted when its first short message came.
                    let seen = (id as usize) < self.next.len() && self.next[id as usize] != u64::MAX;
                    self.expected(id)?;
                    self.producers -= usize::from(!seen);
                    unnamed.next
                }
                None => self.expected(id)?,
            };
            self.current = Some(id);
            return self.named(id, seq, expected, msg, verify);
        }
        // Too short to name its producer: the next message of the producer
        // of the message before.
        if let Some(id) = self.current {
            let seq = self.next[id as usize];
            self.next[id as usize] = seq + 1;
            return match verify {
                true => payload::check(id, seq, msg)
                    .map_err(|e| format!("{e} (a short message, taken as producer {id}'s next)")),
                false => Ok(()),
            };
        }
        if self.unnamed.is_none() {
            self.producers += 1;
        }
        let unnamed = self.unnamed.get_or_insert_with(Unnamed::default);
        let seq = unnamed.next;
        unnamed.next += 1;
        let seq_bytes = msg.len().min(8);
        if verify && msg[..seq_bytes] != seq.to_le_bytes()[..seq_bytes] {
            return Err(format!("a {}-byte message is not message {seq} of the stream", msg.len()));
        }
        for (i, &b) in msg[seq_bytes..].iter().enumerate() {
            match unnamed.id_bytes[i] {
                Some(known) if verify && known != b => {
                    return Err(format!("a {}-byte message names another producer than the ones before", msg.len()));
                }
                _ => unnamed.id_bytes[i] = Some(b),
            }
        }
        Ok(())
    }
}

impl Summary {
    fn error(&mut self, counts: bool, what: String) {
        if counts {
            if self.errors < 10 {
                eprintln!("{}: {what}", self.role);
            }
            self.errors += 1;
        }
    }
}

pub fn run_producer(args: &ProducerArgs) -> Result<Summary, Box<dyn Error>> {
    let options = options(args.capacity, args.wait, args.mpsc);
    let mut sizes = Sizes::new(args.size, args.min_size, args.max_size, 0x5eed ^ u64::from(args.id));
    check_sizes(args.mpsc, args.id, sizes.min)?;
    let mut producer = args.ring.producer(args.create, &options, Duration::from_secs_f64(args.open_timeout))?;
    // A ring whose max message is under the sizes asked for clips them.
    check_sizes(args.mpsc, args.id, sizes.min.min(producer.max_message()))?;
    let count = args.count.unwrap_or(if args.seconds.is_some() { u64::MAX } else { 1_000_000 });
    let until = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut buf = vec![0u8; producer.max_message()];
    let mut summary = Summary { role: format!("producer {}", args.id), ..Summary::default() };
    let start = Instant::now();
    let mut seq = 0;
    if let Some(batch) = args.batch {
        let mut batch = vec![Vec::with_capacity(producer.max_message()); batch as usize];
        while seq < count && until.is_none_or(|u| Instant::now() < u) {
            let n = batch.len().min((count - seq) as usize);
            for (msg, seq) in batch[..n].iter_mut().zip(seq..) {
                msg.resize(sizes.next().min(producer.max_message()), 0);
                fill(args.mpsc, args.id, seq, msg);
                summary.bytes += msg.len() as u64;
            }
            let sent = producer.send_batch(&batch[..n])?;
            seq += sent as u64;
            if sent < n {
                return Err(format!("the ring became unusable after {seq} messages").into());
            }
        }
    }
    while args.batch.is_none() && seq < count {
        // Check the clock every 1024 messages: it costs more than a send.
        if seq % 1024 == 0 && until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let len = sizes.next().min(producer.max_message());
        if args.zero_copy {
            let mut grant = producer.reserve(len)?;
            fill(args.mpsc, args.id, seq, &mut grant);
            grant.commit();
        } else {
            fill(args.mpsc, args.id, seq, &mut buf[..len]);
            producer.send(&buf[..len])?;
        }
        summary.bytes += len as u64;
        seq += 1;
    }
    summary.messages = seq;
    summary.secs = start.elapsed().as_secs_f64();
    let stats = producer.stats();
    summary.futex_calls = stats.futex_waits + stats.futex_wakes;
    Ok(summary)
}

pub fn run_consumer(args: &ConsumerArgs) -> Result<Summary, Box<dyn Error>> {
    let options = options(args.capacity, args.wait, args.mpsc).defer_room_wakes(args.defer_room_wakes);
    let mut consumer = args.ring.consumer(args.create, &options, Duration::from_secs_f64(args.open_timeout))?;
    let idle = Duration::from_secs_f64(args.idle_timeout);
    let count = args.count.unwrap_or(u64::MAX);
    let mut summary = Summary { role: "consumer".into(), ..Summary::default() };
    let mut buf = Vec::with_capacity(consumer.max_message());
    let verifier = Verifier::new(args.mpsc);
    let mut verifier = if args.mpsc { verifier.producers_expected(args.producers) } else { verifier };
    let mut start = None;
    let mut last_message = Instant::now();
    while summary.messages < count {
        let outcome = if args.batch {
            let max = (count - summary.messages) as usize;
            consumer.drain_timeout(max, idle, |msg| verifier.observe(msg, args.verify, &mut summary)).map(drop)
        } else if args.zero_copy {
            consumer.read_timeout(idle).map(|msg| verifier.observe(&msg, args.verify, &mut summary))
        } else {
            consumer.recv_timeout(&mut buf, idle).map(|_| verifier.observe(&buf, args.verify, &mut summary))
        };
        match outcome {
            Ok(()) => {
                start.get_or_insert_with(Instant::now);
                last_message = Instant::now();
            }
            // Every producer attached so far has gone; a late one may still
            // come (until the idle timeout).
            Err(RecvTimeoutError::Disconnected)
                if verifier.producers() < args.producers && last_message.elapsed() < idle =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if summary.messages < count && verifier.producers() < args.producers {
        summary.error(
            true,
            format!(
                "{} of the {} producers (--producers) sent anything within the idle timeout ({} s)",
                verifier.producers(),
                args.producers,
                args.idle_timeout
            ),
        );
    }
    // Timed from the first message to the last, so waiting for the
    // producers to start does not count.
    summary.secs = start.map_or(0.0, |s| last_message.duration_since(s).as_secs_f64());
    let stats = consumer.stats();
    summary.futex_calls = stats.futex_waits + stats.futex_wakes;
    summary.torn = stats.torn_records;
    Ok(summary)
}

/// Runs `body`, prints its summary line, and exits non-zero on an error or
/// on any verification error.
pub fn report(body: impl FnOnce() -> Result<Summary, Box<dyn Error>>) -> ! {
    match body() {
        Ok(summary) => {
            println!("{summary}");
            std::process::exit(if summary.errors == 0 { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {}", chain(e.as_ref()));
            std::process::exit(2);
        }
    }
}

/// An error and its causes, each said once (shmring's errors return the
/// OS error as their `source()` rather than repeat it in their message).
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
