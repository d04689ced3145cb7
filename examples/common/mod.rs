//! The producer and consumer loops shared by the `producer`, `consumer` and
//! `demo` examples. Payloads come from `shmring::payload`, so a consumer can
//! verify every byte and the order of every message.
#![allow(dead_code)] // each example uses part of this module

use clap::Args;
use shmring::{payload, Consumer, Producer, RecvTimeoutError, RingOptions, WaitStrategy};
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

/// Options of a producer process.
#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    /// Segment name, e.g. /demo.
    #[arg(long)]
    pub name: String,
    /// Create the segment (otherwise open an existing one).
    #[arg(long)]
    pub create: bool,
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
    /// Stream id written into every payload.
    #[arg(long, default_value_t = 0)]
    pub stream: u32,
}

/// Options of a consumer process.
#[derive(Args, Debug, Clone)]
pub struct ConsumerArgs {
    /// Segment name, e.g. /demo.
    #[arg(long)]
    pub name: String,
    /// Create the segment (otherwise open an existing one).
    #[arg(long)]
    pub create: bool,
    /// Data region size in bytes, when creating.
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: u64,
    /// Stop after this many messages (default: when the producer is gone).
    #[arg(long)]
    pub count: Option<u64>,
    /// Check every byte and the order of every message.
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
    /// Stream id the payloads carry.
    #[arg(long, default_value_t = 0)]
    pub stream: u32,
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
            "{}: messages={} bytes={} errors={} secs={:.3} msgs_per_s={:.0} gb_per_s={:.3} futex_calls={} futex_per_msg={:.6}",
            self.role,
            self.messages,
            self.bytes,
            self.errors,
            self.secs,
            self.msgs_per_s(),
            self.gb_per_s(),
            self.futex_calls,
            self.futex_calls as f64 / self.messages.max(1) as f64
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

fn options(capacity: u64, wait: WaitStrategy) -> RingOptions {
    RingOptions::new().capacity(capacity).wait(wait)
}

pub fn run_producer(args: &ProducerArgs) -> Result<Summary, Box<dyn Error>> {
    let options = options(args.capacity, args.wait);
    let mut producer =
        if args.create { Producer::create(&args.name, &options)? } else { Producer::open(&args.name, &options)? };
    let count = args.count.unwrap_or(if args.seconds.is_some() { u64::MAX } else { 1_000_000 });
    let until = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut sizes = Sizes::new(args.size, args.min_size, args.max_size, 0x5eed ^ u64::from(args.stream));
    let mut buf = vec![0u8; producer.max_message()];
    let mut summary = Summary { role: "producer".into(), ..Summary::default() };
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
            payload::fill(args.stream, seq, &mut grant);
            grant.commit();
        } else {
            payload::fill(args.stream, seq, &mut buf[..len]);
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
    let options = options(args.capacity, args.wait);
    let mut consumer =
        if args.create { Consumer::create(&args.name, &options)? } else { Consumer::open(&args.name, &options)? };
    let idle = Duration::from_secs_f64(args.idle_timeout);
    let count = args.count.unwrap_or(u64::MAX);
    let mut summary = Summary { role: "consumer".into(), ..Summary::default() };
    let mut buf = Vec::with_capacity(consumer.max_message());
    let mut start = None;
    let check = |seq: u64, msg: &[u8], summary: &mut Summary| {
        summary.bytes += msg.len() as u64;
        if args.verify {
            if let Err(e) = payload::check(args.stream, seq, msg) {
                if summary.errors < 10 {
                    eprintln!("consumer: {e}");
                }
                summary.errors += 1;
            }
        }
    };
    while summary.messages < count {
        let outcome = if args.zero_copy {
            consumer.read_timeout(idle).map(|msg| check(summary.messages, &msg, &mut summary))
        } else {
            consumer.recv_timeout(&mut buf, idle).map(|_| check(summary.messages, &buf, &mut summary))
        };
        match outcome {
            Ok(()) => {
                summary.messages += 1;
                start.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Timed from the first message, so waiting for the producer to start
    // does not count.
    summary.secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let stats = consumer.stats();
    summary.futex_calls = stats.futex_waits + stats.futex_wakes;
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
