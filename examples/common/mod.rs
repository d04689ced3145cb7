//! The producer and consumer loops shared by the `producer`, `consumer` and
//! `demo` examples. Payloads come from `shmring::payload` and carry their
//! producer's id and sequence number, so a consumer can verify every byte and
//! each producer's order (SPSC: one producer; MPSC: several).
#![allow(dead_code)] // each example uses part of this module

use clap::Args;
use shmring::{payload, AnonymousRing, Consumer, Kind, Producer, RecvTimeoutError, RingOptions, WaitStrategy};
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

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
    fn producer(&self, create: bool, options: &RingOptions) -> Result<Producer, Box<dyn Error>> {
        Ok(match (&self.name, &self.file, self.fd) {
            (Some(name), _, _) if create => Producer::create(name, options)?,
            (Some(name), _, _) => Producer::open(name, options)?,
            (_, Some(path), _) if create => Producer::create_file(path, options)?,
            (_, Some(path), _) => Producer::open_file(path, options)?,
            (_, _, Some(fd)) => AnonymousRing::open_inherited(fd, options)?.producer(options)?,
            _ => return Err("--name, --file or --fd is needed".into()),
        })
    }

    fn consumer(&self, create: bool, options: &RingOptions) -> Result<Consumer, Box<dyn Error>> {
        Ok(match (&self.name, &self.file, self.fd) {
            (Some(name), _, _) if create => Consumer::create(name, options)?,
            (Some(name), _, _) => Consumer::open(name, options)?,
            (_, Some(path), _) if create => Consumer::create_file(path, options)?,
            (_, Some(path), _) => Consumer::open_file(path, options)?,
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
    #[arg(long)]
    pub zero_copy: bool,
    /// This producer's id, written into every payload (so the consumer can
    /// check each producer's order).
    #[arg(long, visible_alias = "stream", default_value_t = 0)]
    pub id: u32,
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
    /// starts late is not mistaken for the end of the stream).
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
    /// Give up after this many seconds without a message.
    #[arg(long, default_value_t = 30.0)]
    pub idle_timeout: f64,
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
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.min + (self.state % (self.max - self.min + 1) as u64) as usize
    }
}

fn options(capacity: u64, wait: WaitStrategy, mpsc: bool) -> RingOptions {
    let options = RingOptions::new().capacity(capacity).wait(wait);
    if mpsc {
        options.kind(Kind::Mpsc)
    } else {
        options
    }
}

/// Counts each producer's messages and, when verifying, checks each message
/// against the next sequence number of the producer it names.
#[derive(Default)]
struct Verifier {
    /// Next sequence number per producer id (`u64::MAX`: not seen yet).
    /// Indexed by id: a hash lookup per message would cost more than the
    /// ring does.
    next: Vec<u64>,
    producers: usize,
}

/// Producer ids the verifier tracks.
const MAX_PRODUCER_ID: u32 = 4096;

impl Verifier {
    fn observe(&mut self, msg: &[u8], verify: bool, summary: &mut Summary) {
        summary.messages += 1;
        summary.bytes += msg.len() as u64;
        let Some((id, seq)) = payload::identify(msg) else {
            return summary.error(verify, format!("a {}-byte message is too short to name its producer", msg.len()));
        };
        if id >= MAX_PRODUCER_ID {
            return summary.error(verify, format!("producer id {id} is over {MAX_PRODUCER_ID}"));
        }
        let index = id as usize;
        if index >= self.next.len() {
            self.next.resize(index + 1, u64::MAX);
        }
        let expected = &mut self.next[index];
        if *expected == u64::MAX {
            *expected = 0;
            self.producers += 1;
        }
        let outcome = if !verify {
            Ok(())
        } else if seq != *expected {
            Err(format!("producer {id}: expected message {expected}, got {seq}"))
        } else {
            payload::check(id, seq, msg)
        };
        *expected = seq + 1;
        if let Err(e) = outcome {
            summary.error(verify, e);
        }
    }

    fn producers(&self) -> usize {
        self.producers
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
    let mut producer = args.ring.producer(args.create, &options)?;
    let count = args.count.unwrap_or(if args.seconds.is_some() { u64::MAX } else { 1_000_000 });
    let until = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut sizes = Sizes::new(args.size, args.min_size, args.max_size, 0x5eed ^ u64::from(args.id));
    let mut buf = vec![0u8; producer.max_message()];
    let mut summary = Summary { role: format!("producer {}", args.id), ..Summary::default() };
    let start = Instant::now();
    let mut seq = 0;
    while seq < count {
        // Check the clock every 1024 messages: it costs more than a send.
        if seq % 1024 == 0 && until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let len = sizes.next().min(producer.max_message());
        if args.zero_copy {
            let mut grant = producer.reserve(len)?;
            payload::fill(args.id, seq, &mut grant);
            grant.commit();
        } else {
            payload::fill(args.id, seq, &mut buf[..len]);
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
    let options = options(args.capacity, args.wait, args.mpsc);
    let mut consumer = args.ring.consumer(args.create, &options)?;
    let idle = Duration::from_secs_f64(args.idle_timeout);
    let count = args.count.unwrap_or(u64::MAX);
    let mut summary = Summary { role: "consumer".into(), ..Summary::default() };
    let mut buf = Vec::with_capacity(consumer.max_message());
    let mut verifier = Verifier::default();
    let mut start = None;
    let mut last_message = Instant::now();
    while summary.messages < count {
        let outcome = if args.zero_copy {
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
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
