//! `shmring`: create, list, inspect, feed, drain, remove and benchmark
//! shmring segments.
//!
//! This file parses the arguments and dispatches; each group of subcommands
//! has its module.

mod bench;
mod messages;
mod segments;
mod show;

use clap::{Parser, Subcommand};
use shmring::WaitStrategy;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  shmring create /orders --capacity 16M --max-message 64K
  printf 'one\\ntwo\\n' | shmring send /orders
  shmring recv /orders --count 2
  shmring ls
  shmring stat /orders --watch
  shmring rm /orders";

#[derive(Parser)]
#[command(name = "shmring", version, about = "Create, inspect, feed, drain and remove shmring segments")]
#[command(after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a segment and leave it (it is not removed when this exits).
    #[command(after_help = "Example:\n  shmring create /orders --capacity 16M --max-message 64K --mode 640")]
    Create {
        /// Segment name: a '/' and up to 255 more bytes, no other '/'.
        name: String,
        /// Data region size: a power of two, a multiple of the page size (suffixes K, M, G).
        #[arg(long, default_value = "1M", value_parser = parse_size)]
        capacity: u64,
        /// Largest message (default: capacity / 4; at most capacity / 2 - 8).
        #[arg(long, value_parser = parse_size)]
        max_message: Option<u64>,
        /// Many producers, one consumer.
        #[arg(long)]
        mpsc: bool,
        /// Producer slots of an MPSC segment (1 to 64; default 64).
        #[arg(long, requires = "mpsc")]
        max_producers: Option<u32>,
        /// Permission bits, in octal.
        #[arg(long, default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// List the shmring segments in /dev/shm.
    #[command(after_help = "Example:\n  shmring ls --json | jq '.[] | select(.stale)'")]
    Ls {
        /// Also list shared-memory objects that are not shmring segments.
        #[arg(long)]
        all: bool,
        /// One JSON array (see README, \"Command line\").
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's header in full.
    #[command(
        after_help = "Examples:\n  shmring stat /orders --watch\n  shmring stat --file /var/lib/app/journal.ring --json"
    )]
    Stat {
        /// Segment name.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        name: Option<String>,
        /// A file-backed segment instead (read-only: no recovery is made).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// One JSON object (see README, \"Command line\").
        #[arg(long)]
        json: bool,
        /// Refresh every second, with rates, until interrupted.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many refreshes.
        #[arg(long, requires = "watch")]
        iterations: Option<u64>,
    },
    /// Send each line of stdin (or of --file) as one message.
    #[command(
        after_help = "Examples:\n  tail -f app.log | shmring send /logs\n  shmring send /bench --count 1000000 --size 64"
    )]
    Send {
        /// Segment name.
        name: String,
        /// Read lines from this file instead of stdin.
        #[arg(long, conflicts_with = "count")]
        file: Option<std::path::PathBuf>,
        /// Send this many generated, verifiable messages instead (see --size).
        #[arg(long, requires = "size")]
        count: Option<u64>,
        /// Size of generated messages (suffixes K, M).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Give up when the ring stays full this long (e.g. 500ms, 10s).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Print messages, one per line, until --count or --timeout. With
    /// several segments, one thread waits on all of them and prefixes each
    /// line with its segment's name.
    #[command(
        after_help = "Examples:\n  shmring recv /orders --count 10 --timeout 5s --hex\n  shmring recv /orders /fills"
    )]
    Recv {
        /// Segment names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop when no message comes for this long (e.g. 500ms, 10s).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print each message as hex bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Remove segments by name, or every stale one.
    #[command(after_help = "Examples:\n  shmring rm /orders /fills\n  shmring rm --stale")]
    Rm {
        /// Segment names.
        #[arg(required_unless_present = "stale", conflicts_with = "stale")]
        names: Vec<String>,
        /// Remove every segment whose processes all died.
        #[arg(long)]
        stale: bool,
    },
    /// Measure throughput and round-trip latency between two processes here.
    #[command(after_help = "Example:\n  shmring bench --size 1K --seconds 5 --wait busy")]
    Bench {
        /// Message size (suffixes K, M).
        #[arg(long, default_value = "64", value_parser = parse_size)]
        size: u64,
        /// Seconds for each of the two measurements.
        #[arg(long, default_value = "3", value_parser = parse_duration)]
        seconds: Duration,
        /// Wait strategy of both sides: busy, spin or park.
        #[arg(long, default_value = "spin")]
        wait: WaitStrategy,
    },
    /// The other process of `bench`.
    #[command(hide = true)]
    BenchPeer {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        reply: Option<String>,
        #[arg(long)]
        size: u64,
        #[arg(long, value_parser = parse_duration)]
        seconds: Duration,
        #[arg(long)]
        wait: WaitStrategy,
    },
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmring: {}", report(&*e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its sources, joined by ": ". An error does not repeat its source
/// in its own message, so this is how the whole cause is shown.
fn report(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Create { name, capacity, max_message, mpsc, max_producers, mode } => {
            segments::create(&name, capacity, max_message, mpsc, max_producers, mode)
        }
        Command::Ls { all, json } => segments::ls(all, json),
        Command::Stat { name, file, json, watch: false, .. } => show::stat(name.as_deref(), file.as_deref(), json),
        Command::Stat { name, file, json, watch: true, iterations } => {
            show::watch(name.as_deref(), file.as_deref(), json, iterations)
        }
        Command::Send { name, file, count, size, timeout } => messages::send(&name, file, count.zip(size), timeout),
        Command::Recv { names, count, timeout, hex } => messages::recv(&names, count, timeout, hex),
        Command::Rm { names, stale } => segments::rm(names, stale),
        Command::Bench { size, seconds, wait } => bench::bench(size, seconds, wait),
        Command::BenchPeer { role, name, reply, size, seconds, wait } => {
            bench::bench_peer(&role, &name, reply.as_deref(), size, seconds, wait)
        }
    }
}

/// `64`, `64K`, `16M`, `1G` (powers of 1024).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?} is not a size: use bytes or a K, M, G suffix")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size: use bytes or a K, M, G suffix"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s} is too large"))
}

/// `250ms`, `10s`, `2m`, or plain seconds (`1.5`).
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: use e.g. 250ms, 10s, 2m");
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| format!("{s:?} is not an octal mode such as 600"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmring::Error;

    #[test]
    fn reports_show_the_cause_once() {
        let e = Error::Io { segment: "/x".into(), op: "mmap", source: std::io::Error::other("no device") };
        assert_eq!(report(&e), "mmap failed on segment /x: no device");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("K").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_mode("640"), Ok(0o640));
        assert!(parse_mode("9").is_err());
    }
}
