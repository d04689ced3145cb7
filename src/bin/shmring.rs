//! `shmring`: create, list, inspect, feed, drain, remove and benchmark
//! shmring segments.
#![deny(unsafe_code)]

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use shmring::inspect::{self, ParticipantInfo, SegmentInfo, SlotState, WakeInfo};
use shmring::{payload, Consumer, Error, Kind, Producer, RecvTimeoutError, RingOptions, WaitStrategy};
use std::io::{BufRead, IsTerminal, Write};
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

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
    /// Print messages, one per line, until --count or --timeout.
    #[command(after_help = "Example:\n  shmring recv /orders --count 10 --timeout 5s --hex")]
    Recv {
        /// Segment name.
        name: String,
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
            let mut options = RingOptions::new().capacity(capacity).mode(mode);
            if mpsc {
                options = options.kind(Kind::Mpsc);
            }
            if let Some(max) = max_producers {
                options = options.max_producers(max);
            }
            if let Some(max) = max_message {
                options =
                    options.max_message(u32::try_from(max).map_err(|_| format!("--max-message {max} is too large"))?);
            }
            options.create(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { all, json } => ls(all, json),
        Command::Stat { name, file, json, watch: false, .. } => {
            let info = read_info(name.as_deref(), file.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
            } else {
                print!("{}", describe(&info, None));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stat { name, file, json, watch: true, iterations } => {
            watch(name.as_deref(), file.as_deref(), json, iterations)
        }
        Command::Send { name, file, count, size, timeout } => send(&name, file, count.zip(size), timeout),
        Command::Recv { name, count, timeout, hex } => recv(&name, count, timeout, hex),
        Command::Rm { names, stale } => rm(names, stale),
        Command::Bench { size, seconds, wait } => bench(size, seconds, wait),
        Command::BenchPeer { role, name, reply, size, seconds, wait } => {
            bench_peer(&role, &name, reply.as_deref(), size, seconds, wait)
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

fn slot_text(p: &ParticipantInfo) -> String {
    let state = match p.state {
        SlotState::Empty => return "none".into(),
        SlotState::Attached if p.alive => "alive",
        SlotState::Attached => "DEAD",
        SlotState::Detached if p.alive => "attaching",
        SlotState::Detached => "detached",
        SlotState::Unknown(v) => return format!("garbage state {v}"),
    };
    format!("{state} (pid {})", p.pid)
}

fn state_text(info: &SegmentInfo) -> &'static str {
    let alive = info.consumer.alive || info.producers.iter().any(|p| p.alive);
    if info.is_stale() {
        "STALE"
    } else if alive {
        "live"
    } else {
        "idle"
    }
}

fn slot_json(p: &ParticipantInfo) -> Value {
    let state = match p.state {
        SlotState::Empty => "empty".to_string(),
        SlotState::Attached => "attached".to_string(),
        SlotState::Detached => "detached".to_string(),
        SlotState::Unknown(v) => format!("unknown({v})"),
    };
    json!({ "state": state, "alive": p.alive, "pid": p.pid, "attachments": p.attachments, "messages": p.messages })
}

fn wake_json(w: &WakeInfo) -> Value {
    json!({ "seq": w.seq, "sleepers": w.sleepers, "parks": w.parks })
}

fn info_json(info: &SegmentInfo) -> Value {
    json!({
        "name": info.name,
        "kind": info.kind.to_string().to_lowercase(),
        "version": info.version,
        "capacity": info.capacity,
        "max_message": info.max_message,
        "max_producers": info.max_producers,
        "creator_pid": info.creator_pid,
        "creator_uid": info.creator_uid,
        "owner_uid": info.owner_uid,
        "mode": format!("{:04o}", info.mode),
        "size": info.size,
        "head": info.head,
        "tail": info.tail,
        "used_bytes": info.used_bytes(),
        "messages_sent": info.messages_sent,
        "messages_read": info.messages_read,
        "torn_records": info.torn_records,
        "durable_tail": info.durable_tail,
        "lost_records": info.lost_records,
        "pending_messages": info.pending_messages(),
        "consumer_wake": wake_json(&info.consumer_wake),
        "producer_wake": wake_json(&info.producer_wake),
        "consumer": slot_json(&info.consumer),
        "producers": info.producers.iter().map(slot_json).collect::<Vec<_>>(),
        "state": state_text(info).to_lowercase(),
        "stale": info.is_stale(),
    })
}

fn ls(all: bool, json_out: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for listing in inspect::list()? {
        match &listing.info {
            Ok(info) => {
                values.push(info_json(info));
                let alive = info.producers.iter().filter(|p| p.alive).count();
                let dead = info.producers.iter().filter(|p| p.is_dead()).count();
                let producers = if dead > 0 {
                    format!("{alive}/{} ({dead} dead)", info.max_producers)
                } else {
                    format!("{alive}/{}", info.max_producers)
                };
                rows.push([
                    info.name.clone(),
                    info.kind.to_string(),
                    info.capacity.to_string(),
                    info.used_bytes().to_string(),
                    info.pending_messages().to_string(),
                    producers,
                    slot_text(&info.consumer),
                    info.owner_uid.to_string(),
                    format!("{:04o}", info.mode),
                    state_text(info).to_string(),
                ]);
            }
            Err(e) => {
                let not_ours =
                    matches!(e, Error::NotShmring { .. } | Error::NotReady { .. } | Error::SizeMismatch { .. });
                if all || !not_ours {
                    values.push(json!({ "name": listing.name, "error": report(e) }));
                    let state = if not_ours { "not shmring".to_string() } else { format!("error: {}", report(e)) };
                    let dash = || "-".to_string();
                    rows.push([
                        listing.name.clone(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        state,
                    ]);
                }
            }
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&Value::Array(values))?);
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["NAME", "KIND", "CAPACITY", "USED", "PENDING", "PRODUCERS", "CONSUMER", "OWNER", "MODE", "STATE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The header in full; with `previous` (and the seconds since), rates too.
fn describe(info: &SegmentInfo, previous: Option<(&SegmentInfo, f64)>) -> String {
    let mut s = String::new();
    let percent = info.used_bytes() as f64 * 100.0 / info.capacity as f64;
    s += &format!("segment     {}\n", info.name);
    s += &format!("kind        {} (layout version {})\n", info.kind, info.version);
    s += &format!("capacity    {} bytes, max message {} bytes\n", info.capacity, info.max_message);
    s += &format!(
        "owner       uid {}, mode {:04o}, {} bytes; created by pid {} (uid {})\n",
        info.owner_uid, info.mode, info.size, info.creator_pid, info.creator_uid
    );
    s += &format!("state       {}\n", state_text(info));
    s += &format!("head        {}\n", info.head);
    s += &format!("tail        {}\n", info.tail);
    s += &format!(
        "used        {} bytes ({percent:.1}%), {} messages pending\n",
        info.used_bytes(),
        info.pending_messages()
    );
    s += &format!("messages    {} sent, {} read\n", info.messages_sent, info.messages_read);
    if info.durable_tail > 0 || info.lost_records > 0 {
        s += &format!(
            "durable     up to {} ({} bytes not yet flushed); {} records lost to restarts\n",
            info.durable_tail,
            info.tail.saturating_sub(info.durable_tail.max(info.head)),
            info.lost_records
        );
    }
    if info.kind == Kind::Mpsc {
        s += &format!("torn        {} records skipped (their producer died before committing)\n", info.torn_records);
    }
    if let Some((before, secs)) = previous {
        let msgs = info.messages_read.saturating_sub(before.messages_read) as f64 / secs;
        let bytes = info.head.saturating_sub(before.head) as f64 / secs;
        s += &format!("rate        {msgs:.0} msgs/s, {bytes:.0} bytes/s (consumed)\n");
    }
    s += &format!(
        "consumer    {}, {} attachments; wake word {}, {} sleeping, {} parks\n",
        slot_text(&info.consumer),
        info.consumer.attachments,
        info.consumer_wake.seq,
        info.consumer_wake.sleepers,
        info.consumer_wake.parks
    );
    for (n, p) in info.producers.iter().enumerate() {
        // An MPSC segment has up to 64 slots: show the ones ever used.
        if info.kind == Kind::Mpsc && p.state == SlotState::Empty {
            continue;
        }
        s += &format!("producer {n:<2} {}, {} attachments, {} sent\n", slot_text(p), p.attachments, p.messages);
    }
    s += &format!(
        "producers   wake word {}, {} sleeping, {} parks\n",
        info.producer_wake.seq, info.producer_wake.sleepers, info.producer_wake.parks
    );
    s
}

/// The header of segment `name`, or of the file segment at `file`.
fn read_info(name: Option<&str>, file: Option<&std::path::Path>) -> Result<SegmentInfo> {
    Ok(match (name, file) {
        (_, Some(path)) => inspect::inspect_file(path)?,
        (Some(name), None) => inspect::inspect(name)?,
        (None, None) => return Err("a segment name or --file is needed".into()),
    })
}

fn watch(
    name: Option<&str>,
    file: Option<&std::path::Path>,
    json_out: bool,
    iterations: Option<u64>,
) -> Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(SegmentInfo, Instant)> = None;
    let mut shown = 0;
    loop {
        let info = read_info(name, file)?;
        let now = Instant::now();
        let rates = previous.as_ref().map(|(p, at)| (p, now.duration_since(*at).as_secs_f64()));
        if json_out {
            let mut value = info_json(&info);
            if let Some((before, secs)) = rates {
                value["msgs_per_s"] = json!(info.messages_read.saturating_sub(before.messages_read) as f64 / secs);
                value["bytes_per_s"] = json!(info.head.saturating_sub(before.head) as f64 / secs);
            }
            println!("{}", serde_json::to_string(&value)?);
        } else {
            // Redraw in place on a terminal; one block after another in a pipe.
            let clear = if terminal {
                "\x1b[2J\x1b[H"
            } else if shown > 0 {
                "\n"
            } else {
                ""
            };
            print!("{clear}{}", describe(&info, rates));
        }
        std::io::stdout().flush()?;
        shown += 1;
        if iterations.is_some_and(|n| shown >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        previous = Some((info, now));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn send(
    name: &str,
    file: Option<std::path::PathBuf>,
    generated: Option<(u64, u64)>,
    timeout: Option<Duration>,
) -> Result<ExitCode> {
    let mut producer = Producer::open(name, &options_for(name)?)?;
    let mut send_one = |msg: &[u8], what: &dyn Fn() -> String| -> Result<()> {
        match timeout {
            Some(t) => producer.send_timeout(msg, t).map_err(|e| format!("{name}: {}: {}", what(), report(&e)))?,
            None => producer.send(msg).map_err(|e| format!("{name}: {}: {}", what(), report(&e)))?,
        }
        Ok(())
    };
    if let Some((count, size)) = generated {
        let mut buf = vec![0u8; usize::try_from(size)?];
        for seq in 0..count {
            payload::fill(0, seq, &mut buf);
            send_one(&buf, &|| format!("message {seq}"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let input: Box<dyn BufRead> = match file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        send_one(line, &|| format!("line {}", n + 1))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Options that open `name` as whatever kind of ring it is.
fn options_for(name: &str) -> Result<RingOptions> {
    Ok(RingOptions::new().kind(inspect::inspect(name)?.kind))
}

fn recv(name: &str, count: Option<u64>, timeout: Option<Duration>, hex: bool) -> Result<ExitCode> {
    let mut consumer = Consumer::open(name, &options_for(name)?)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // No timeout: wait as long as it takes (in slices, so the loop stays simple).
    let slice = timeout.unwrap_or(Duration::from_secs(3600));
    let mut received = 0;
    while count.is_none_or(|c| received < c) {
        let msg = match consumer.read_timeout(slice) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) if timeout.is_none() => continue,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        };
        if hex {
            let text: Vec<String> = msg.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(out, "{}", text.join(" "))?;
        } else {
            out.write_all(&msg)?;
            out.write_all(b"\n")?;
        }
        drop(msg);
        received += 1;
        // Flush as messages come when someone is watching.
        if count.is_none() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn rm(names: Vec<String>, stale: bool) -> Result<ExitCode> {
    if stale {
        for name in inspect::remove_stale()? {
            println!("removed {name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for name in names {
        // Only shmring segments: other programs' objects are not ours to remove.
        let outcome = match inspect::inspect(&name) {
            Ok(_) | Err(Error::Corrupted(_) | Error::ChecksumMismatch { .. } | Error::VersionMismatch { .. }) => {
                shmring::unlink(&name).map_err(|e| report(&e))
            }
            Err(Error::NotShmring { .. }) => Err(format!("{name} is not a shmring segment; not removed")),
            Err(e) => Err(report(&e)),
        };
        if let Err(e) = outcome {
            eprintln!("shmring: {e}");
            failed = true;
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn wait_name(w: WaitStrategy) -> &'static str {
    match w {
        WaitStrategy::BusySpin => "busy",
        WaitStrategy::SpinThenPark(_) => "spin",
        WaitStrategy::Park => "park",
    }
}

/// A child process that is killed if the bench ends early.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_peer(
    role: &str,
    name: &str,
    reply: Option<&str>,
    size: u64,
    seconds: Duration,
    wait: WaitStrategy,
) -> Result<Peer> {
    let mut cmd = Process::new(std::env::current_exe()?);
    cmd.args(["bench-peer", "--role", role, "--name", name, "--size", &size.to_string()])
        .args(["--seconds", &format!("{}s", seconds.as_secs_f64()), "--wait", wait_name(wait)])
        .stdout(Stdio::null());
    if let Some(reply) = reply {
        cmd.args(["--reply", reply]);
    }
    Ok(Peer(cmd.spawn()?))
}

/// Removes the bench's segments however it ends.
struct Scratch(Vec<String>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmring::unlink(name);
        }
    }
}

/// Checks a bench duration: more than zero, and short enough that the
/// clock can count to its end (and the peers' 10 s of grace after it).
fn check_bench_seconds(seconds: Duration) -> Result<()> {
    let grace = seconds.checked_add(Duration::from_secs(10));
    if seconds.is_zero() || grace.and_then(|g| Instant::now().checked_add(g)).is_none() {
        return Err(
            format!("--seconds {seconds:?} is out of range: it must be more than 0, and short enough for the clock to count to its end").into()
        );
    }
    Ok(())
}

/// `seconds` from now.
fn deadline(seconds: Duration) -> Result<Instant> {
    Ok(Instant::now().checked_add(seconds).ok_or_else(|| format!("--seconds {seconds:?} is out of range"))?)
}

fn bench(size: u64, seconds: Duration, wait: WaitStrategy) -> Result<ExitCode> {
    check_bench_seconds(seconds)?;
    let max_message =
        u32::try_from(size.max(8)).map_err(|_| format!("--size {size} is too large: at most {} bytes", u32::MAX))?;
    let len = usize::try_from(size)?;
    // At most 2^32 * 64: no overflow.
    let capacity = (size * 64).next_power_of_two().max(1 << 20);
    let options = RingOptions::new().capacity(capacity).max_message(max_message).wait(wait);
    let id = std::process::id();
    let (data, ping, pong) =
        (format!("/shmring-bench-{id}"), format!("/shmring-bench-{id}-ping"), format!("/shmring-bench-{id}-pong"));
    let _scratch = Scratch(vec![data.clone(), ping.clone(), pong.clone()]);
    let progress = std::io::stderr().is_terminal();
    println!("shmring bench: {size}-byte messages, wait strategy {}, {:?} per measurement", wait_name(wait), seconds);

    if progress {
        eprint!("measuring throughput...\r");
    }
    options.create(&data)?;
    let mut consumer = Consumer::open(&data, &options)?;
    let _producer = spawn_peer("producer", &data, None, size, seconds, wait)?;
    let mut received: u64 = 0;
    let mut start = None;
    loop {
        match consumer.read_timeout(Duration::from_secs(10)) {
            Ok(msg) => {
                debug_assert_eq!(msg.len(), len);
                received += 1;
                start.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9);
    let stats = consumer.stats();
    println!(
        "throughput  {:.2} M msgs/s, {:.3} GB/s ({received} messages, {} futex calls on the consumer side)",
        received as f64 / secs / 1e6,
        received as f64 * size as f64 / secs / 1e9,
        stats.futex_waits + stats.futex_wakes
    );

    if progress {
        eprint!("measuring round trips...\r");
    }
    options.create(&ping)?;
    options.create(&pong)?;
    let mut requests = Producer::open(&ping, &options)?;
    let mut replies = Consumer::open(&pong, &options)?;
    let _echo = spawn_peer("echo", &ping, Some(&pong), size, seconds, wait)?;
    let message = vec![0x5Au8; len];
    let mut rtts = Vec::new();
    let until = deadline(seconds)?;
    while Instant::now() < until {
        let sent = Instant::now();
        requests.send(&message)?;
        drop(replies.read_timeout(Duration::from_secs(10))?);
        rtts.push(sent.elapsed().as_nanos() as u64);
    }
    if rtts.is_empty() {
        return Err(format!("no round trip completed within {seconds:?}").into());
    }
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    if progress {
        eprint!("                         \r");
    }
    println!(
        "round trip  p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us ({} round trips)",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
        rtts.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_peer(
    role: &str,
    name: &str,
    reply: Option<&str>,
    size: u64,
    seconds: Duration,
    wait: WaitStrategy,
) -> Result<ExitCode> {
    check_bench_seconds(seconds)?;
    let options = RingOptions::new().wait(wait);
    match (role, reply) {
        ("producer", _) => {
            let mut producer = Producer::open(name, &options)?;
            let len = usize::try_from(size)?;
            let until = deadline(seconds)?;
            let mut n: u64 = 0;
            while n % 1024 != 0 || Instant::now() < until {
                let mut grant = producer.reserve(len)?;
                grant[..len.min(8)].copy_from_slice(&n.to_le_bytes()[..len.min(8)]);
                grant.commit();
                n += 1;
            }
        }
        ("echo", Some(reply)) => {
            let mut requests = Consumer::open(name, &options)?;
            let mut replies = Producer::open(reply, &options)?;
            let mut buf = Vec::new();
            while requests.recv_timeout(&mut buf, seconds.saturating_add(Duration::from_secs(10))).is_ok() {
                replies.send(&buf)?;
            }
        }
        _ => return Err(format!("unknown bench role {role}").into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
