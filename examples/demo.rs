//! Two processes streaming through a shmring segment, then the same stream
//! through a pipe, measured in the same run.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --size 1024 --seconds 5 --wait busy
//! cargo run --release --example demo -- --producers 4   # an MPSC ring
//! cargo run --release --example demo -- --fork           # an anonymous ring the children inherit
//! cargo run --release --example demo -- --fork --huge-pages --capacity 67108864 --size 65536
//! cargo run --release --example demo -- --batch 64       # send_batch and drain
//! ```
//!
//! The demo creates a segment, starts a consumer and a producer as two
//! processes (this executable, re-run in a hidden role), lets them stream for
//! a few seconds with every byte verified, prints what each achieved and the
//! futex calls per message, removes the segment, and then runs the same
//! verified stream over a pipe (one `write` per message, a buffered reader)
//! for the ratio.
mod common;

use clap::{Parser, Subcommand};
use common::guards::{Running, Unlink};
use common::{ConsumerArgs, ProducerArgs, Summary};
use shmring::{payload, AnonymousRing, Kind, RingOptions, WaitStrategy};
use std::error::Error;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Stream between processes through shmring, then through a pipe, and compare")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// How long each stream runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Ring capacity in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: u64,
    /// Wait strategy of both sides: busy, spin or park.
    #[arg(long, default_value = "spin")]
    wait: WaitStrategy,
    /// Zero-copy on both sides (reserve/commit, borrowed reads).
    #[arg(long, conflicts_with = "batch")]
    zero_copy: bool,
    /// Batches: the producers send this many messages per `send_batch`,
    /// the consumer takes them with `drain`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
    /// Producer processes. More than one makes the segment an MPSC ring
    /// (`--mpsc` makes it one even with a single producer).
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Use an MPSC ring.
    #[arg(long)]
    mpsc: bool,
    /// Share an anonymous ring (a sealed memfd) with the child processes by
    /// inheritance, instead of a name in /dev/shm.
    #[arg(long)]
    fork: bool,
    /// Put that anonymous ring on 2 MiB huge pages
    /// (`RingOptions::huge_pages`; needs `--capacity` of 2 MiB or more and
    /// reserved huge pages: `sysctl vm.nr_hugepages`).
    #[arg(long, requires = "fork")]
    huge_pages: bool,
    /// The consumer wakes producers waiting for room once half the ring is
    /// free, not at every release (`RingOptions::defer_room_wakes`).
    #[arg(long)]
    defer_room_wakes: bool,
    /// Skip the pipe comparison.
    #[arg(long)]
    no_pipe: bool,
}

#[derive(Subcommand)]
enum Role {
    #[command(hide = true)]
    Producer(ProducerArgs),
    #[command(hide = true)]
    Consumer(ConsumerArgs),
    #[command(hide = true)]
    PipeProducer {
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        size: usize,
    },
    #[command(hide = true)]
    PipeConsumer,
}

fn spawn(args: &[String], stdin: Stdio) -> Result<Running, Box<dyn Error>> {
    let child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    Ok(Running(child))
}

/// Waits for a child and returns the summary line it printed (on stdout, or
/// on stderr for the pipe producer, whose stdout is the pipe).
fn finish(mut child: Running) -> Result<Summary, Box<dyn Error>> {
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let mut err = String::new();
    child.0.stderr.take().ok_or("no stderr")?.read_to_string(&mut err)?;
    out.push_str(&err);
    let status = child.0.wait()?;
    let summary = out.lines().find_map(Summary::parse).ok_or_else(|| format!("no summary from a child: {out}"))?;
    if !status.success() {
        return Err(format!("{} exited with {status}", summary.role).into());
    }
    Ok(summary)
}

fn strategy_name(w: WaitStrategy) -> &'static str {
    match w {
        WaitStrategy::BusySpin => "busy",
        WaitStrategy::SpinThenPark(_) => "spin",
        WaitStrategy::Park => "park",
    }
}

fn run_shmring(cli: &Cli) -> Result<Summary, Box<dyn Error>> {
    let name = format!("/shmring-demo-{}", std::process::id());
    let mpsc = cli.mpsc || cli.producers > 1;
    let options = RingOptions::new().capacity(cli.capacity as usize).huge_pages(cli.huge_pages);
    let options = if mpsc { options.kind(Kind::Mpsc).max_producers(cli.producers.max(1) as usize) } else { options };
    // The children find the ring by name, or inherit it: a duplicate of the
    // memfd, which (unlike the original) is not closed on exec.
    let (_keep, location): (Box<dyn std::any::Any>, [String; 2]) = if cli.fork {
        let ring = AnonymousRing::create("shmring-demo", &options)?;
        let inherited = rustix::io::dup(&ring)?;
        let fd = inherited.as_raw_fd().to_string();
        (Box::new((ring, inherited)), ["--fd".into(), fd])
    } else {
        options.create(&name)?;
        (Box::new(Unlink(vec![name.clone()])), ["--name".into(), name.clone()])
    };
    let wait = strategy_name(cli.wait).to_owned();
    let producers = cli.producers.max(1).to_string();
    let mut consumer_args: Vec<String> =
        ["consumer", &location[0], &location[1], "--verify", "--wait", &wait, "--producers", &producers]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let seconds = cli.seconds.to_string();
    let size = cli.size.to_string();
    let mut producer_args: Vec<String> =
        ["producer", &location[0], &location[1], "--seconds", &seconds, "--size", &size, "--wait", &wait]
            .iter()
            .map(|s| s.to_string())
            .collect();
    if cli.defer_room_wakes {
        consumer_args.push("--defer-room-wakes".into());
    }
    for args in [&mut consumer_args, &mut producer_args] {
        if cli.zero_copy {
            args.push("--zero-copy".into());
        }
        if mpsc {
            args.push("--mpsc".into());
        }
    }
    if let Some(batch) = cli.batch {
        consumer_args.push("--batch".into());
        producer_args.extend(["--batch".into(), batch.to_string()]);
    }
    let consumer = spawn(&consumer_args, Stdio::null())?;
    let producers = (0..cli.producers.max(1))
        .map(|id| spawn(&[&producer_args[..], &["--id".into(), id.to_string()]].concat(), Stdio::null()))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut sent, mut sent_bytes, mut futex) = (0, 0, 0);
    for producer in producers {
        let produced = finish(producer)?;
        println!("  {produced}");
        sent += produced.messages;
        sent_bytes += produced.bytes;
        futex += produced.futex_calls;
    }
    let consumed = finish(consumer)?;
    println!("  {consumed}");
    if consumed.messages != sent || consumed.bytes != sent_bytes {
        return Err(format!("sent {sent} messages but received {}", consumed.messages).into());
    }
    futex += consumed.futex_calls;
    println!(
        "  shmring{}: {:.2} M msgs/s, {:.3} GB/s, every byte and each producer's order verified; \
         futex calls per message (all sides): {:.6}",
        match cli.producers.max(1) {
            _ if !mpsc => String::new(),
            1 => " (MPSC, 1 producer)".to_owned(),
            n => format!(" (MPSC, {n} producers)"),
        },
        consumed.msgs_per_s() / 1e6,
        consumed.gb_per_s(),
        futex as f64 / consumed.messages.max(1) as f64
    );
    Ok(consumed)
}

fn run_pipe(cli: &Cli) -> Result<Summary, Box<dyn Error>> {
    let mut producer = spawn(
        &["pipe-producer".into(), "--seconds".into(), cli.seconds.to_string(), "--size".into(), cli.size.to_string()],
        Stdio::null(),
    )?;
    let pipe = producer.0.stdout.take().ok_or("no stdout")?;
    let consumer = spawn(&["pipe-consumer".into()], Stdio::from(pipe))?;
    let produced = finish(producer)?;
    let consumed = finish(consumer)?;
    println!("  {produced}");
    println!("  {consumed}");
    println!(
        "  pipe: {:.2} M msgs/s, {:.3} GB/s, every byte verified",
        consumed.msgs_per_s() / 1e6,
        consumed.gb_per_s()
    );
    Ok(consumed)
}

/// One `write` per message, as an application sending messages would.
fn pipe_producer(seconds: f64, size: usize) -> Result<Summary, Box<dyn Error>> {
    let mut out = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let mut frame = vec![0u8; 4 + size];
    frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut seq = 0;
    loop {
        if seq % 1024 == 0 && Instant::now() >= until {
            break;
        }
        payload::fill(0, seq, &mut frame[4..]);
        out.write_all(&frame)?;
        seq += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    // The summary goes to stderr: stdout is the pipe.
    let summary =
        Summary { role: "pipe-producer".into(), messages: seq, bytes: seq * size as u64, secs, ..Summary::default() };
    eprintln!("{summary}");
    Ok(summary)
}

fn pipe_consumer() -> Result<Summary, Box<dyn Error>> {
    let mut input = BufReader::with_capacity(64 << 10, File::from(std::io::stdin().as_fd().try_clone_to_owned()?));
    let mut summary = Summary { role: "pipe-consumer".into(), ..Summary::default() };
    let mut buf = Vec::new();
    let mut start = None;
    loop {
        let mut len = [0u8; 4];
        if input.fill_buf()?.is_empty() {
            break;
        }
        input.read_exact(&mut len)?;
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        input.read_exact(&mut buf)?;
        start.get_or_insert_with(Instant::now);
        if payload::check(0, summary.messages, &buf).is_err() {
            summary.errors += 1;
        }
        summary.messages += 1;
        summary.bytes += buf.len() as u64;
    }
    summary.secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(summary)
}

fn main() {
    let cli = Cli::parse();
    match &cli.role {
        Some(Role::Producer(args)) => common::report(|| common::run_producer(args)),
        Some(Role::Consumer(args)) => common::report(|| common::run_consumer(args)),
        Some(Role::PipeProducer { seconds, size }) => {
            // Prints its own summary, to stderr: stdout is the pipe.
            match pipe_producer(*seconds, *size) {
                Ok(_) => std::process::exit(0),
                Err(e) => {
                    eprintln!("error: {}", common::chain(&*e));
                    std::process::exit(2)
                }
            }
        }
        Some(Role::PipeConsumer) => common::report(pipe_consumer),
        None => {
            if let Err(e) = demo(&cli) {
                eprintln!("demo failed: {}", common::chain(&*e));
                std::process::exit(1);
            }
        }
    }
}

fn demo(cli: &Cli) -> Result<(), Box<dyn Error>> {
    let producers = cli.producers.max(1);
    println!(
        "shmring demo: {}-byte messages for {} s, {} producer process{} and a consumer, wait strategy {}{}",
        cli.size,
        cli.seconds,
        producers,
        if producers == 1 { "" } else { "es" },
        strategy_name(cli.wait),
        match (cli.zero_copy, cli.fork) {
            (true, true) => ", zero-copy, anonymous ring inherited by the children",
            (true, false) => ", zero-copy",
            (false, true) => ", anonymous ring inherited by the children",
            (false, false) => "",
        }
    );
    let ring = run_shmring(cli)?;
    if cli.no_pipe {
        return Ok(());
    }
    println!("the same verified stream through a pipe:");
    let pipe = run_pipe(cli)?;
    println!("shmring / pipe: {:.1}x messages per second", ring.msgs_per_s() / pipe.msgs_per_s().max(1e-9));
    Ok(())
}
