//! Round trips between two processes with async handles on both sides,
//! against the sync wait strategies in the same run.
//!
//! ```text
//! cargo run --release --features tokio --example async_pingpong
//! ```
//!
//! 1. Round trips (`--pings` of them after 1,000 unmeasured): this process
//!    sends a ping on one ring and waits for the echo on another; a child
//!    process echoes. Four times: async on both sides (tokio, current-thread
//!    runtimes), then sync with `park`, `spin` (spin 50 µs, then park) and
//!    async with a 50 µs spin before registering.
//! 2. Streaming: `--stream` messages from a producer here to a consumer in
//!    the child, async on both sides (spinning 50 µs before registering, as
//!    the sync default spins 50 µs before parking) and then sync,
//!    counting every system call the waits made on both sides (the
//!    handles' futex calls and, async, the reactors' sleeps).
//!
//! One line: `async_rtt_p50_ns= park_rtt_p50_ns= spin_rtt_p50_ns=
//! async_spin_rtt_p50_ns= async_vs_park= async_spin_vs_spin= messages=
//! syscalls_per_msg= sync_syscalls_per_msg=`.
mod common;

use clap::{Parser, Subcommand};
use common::guards::{Running, Unlink};
use shmring::{AsyncConsumer, AsyncProducer, Consumer, Producer, RecvError, RingOptions, WaitStrategy};
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Async round trips between two processes, against the sync wait strategies")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Round trips measured per mode.
    #[arg(long, default_value_t = 20_000)]
    pings: u64,
    /// Messages in the streaming phase.
    #[arg(long, default_value_t = 2_000_000)]
    stream: u64,
}

#[derive(Subcommand)]
enum Role {
    /// Echoes every message from `ping` to `pong` until the pinger leaves.
    #[command(hide = true)]
    Echo {
        #[arg(long)]
        ping: String,
        #[arg(long)]
        pong: String,
        /// `async`, `async-spin`, or a sync wait strategy.
        #[arg(long)]
        mode: String,
    },
    /// Receives (and checks) `count` messages, asynchronously or not;
    /// prints its system calls.
    #[command(hide = true)]
    Sink {
        #[arg(long)]
        name: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        sync: bool,
    },
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().build()
}

fn spawn(args: &[&str]) -> Result<Running, Box<dyn Error>> {
    let child =
        Command::new(std::env::current_exe()?).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    Ok(Running(child))
}

/// The next line the child prints.
fn line_of(child: &mut Running) -> Result<String, Box<dyn Error>> {
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line)?;
    if line.is_empty() {
        return Err(format!("the child ended early: {:?}", child.0.wait()?).into());
    }
    Ok(line.trim().to_owned())
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.role {
        Some(Role::Echo { ping, pong, mode }) => echo(ping, pong, mode),
        Some(Role::Sink { name, count, sync }) => sink(name, *count, *sync),
        None => run(&cli),
    };
    if let Err(e) = result {
        eprintln!("async_pingpong: {e}");
        std::process::exit(1);
    }
}

/// The spin before registering of the `async-spin` mode.
const SPIN: Duration = Duration::from_micros(50);

fn echo(ping: &str, pong: &str, mode: &str) -> Result<(), Box<dyn Error>> {
    let mut buf = Vec::new();
    if mode.starts_with("async") {
        let spin = if mode == "async-spin" { SPIN } else { Duration::ZERO };
        let mut pings = AsyncConsumer::new(Consumer::open(ping, &RingOptions::new())?);
        let mut pongs = AsyncProducer::new(Producer::open(pong, &RingOptions::new())?);
        pings.set_spin(spin);
        pongs.set_spin(spin);
        println!("ready");
        std::io::stdout().flush()?;
        return runtime()?.block_on(async {
            loop {
                match pings.recv(&mut buf).await {
                    Ok(_) => pongs.send(&buf).await?,
                    Err(RecvError::Disconnected) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        });
    }
    let options = RingOptions::new().wait(mode.parse::<WaitStrategy>()?);
    let mut pings = Consumer::open(ping, &options)?;
    let mut pongs = Producer::open(pong, &options)?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        match pings.recv(&mut buf) {
            Ok(_) => pongs.send(&buf)?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn sink(name: &str, count: u64, sync: bool) -> Result<(), Box<dyn Error>> {
    let mut buf = Vec::new();
    if sync {
        let mut consumer = Consumer::open(name, &RingOptions::new())?;
        for seq in 0..count {
            consumer.recv(&mut buf)?;
            if buf[..8] != seq.to_le_bytes() {
                return Err(format!("message {seq} out of order").into());
            }
        }
        let stats = consumer.stats();
        println!("syscalls={}", stats.futex_waits + stats.futex_wakes);
        return Ok(());
    }
    let mut consumer = AsyncConsumer::new(Consumer::open(name, &RingOptions::new())?);
    consumer.set_spin(SPIN);
    runtime()?.block_on(async {
        for seq in 0..count {
            consumer.recv(&mut buf).await?;
            if buf[..8] != seq.to_le_bytes() {
                return Err(format!("message {seq} out of order").into());
            }
        }
        Ok::<(), Box<dyn Error>>(())
    })?;
    let stats = consumer.get_ref().stats();
    println!("syscalls={}", stats.futex_waits + stats.futex_wakes + shmring::reactor_syscalls());
    Ok(())
}

/// The p50 of `pings` round trips against an echo child in `mode`.
fn round_trips(base: &str, mode: &str, pings: u64) -> Result<u64, Box<dyn Error>> {
    let (ping, pong) = (format!("{base}-{mode}-ping"), format!("{base}-{mode}-pong"));
    let _unlink = Unlink(vec![ping.clone(), pong.clone()]);
    let async_side = mode.starts_with("async");
    let strategy = if async_side { WaitStrategy::default() } else { mode.parse()? };
    let options = RingOptions::new().wait(strategy);
    let producer = Producer::create(&ping, &options)?;
    let consumer = Consumer::create(&pong, &options)?;
    let mut child = spawn(&["echo", "--ping", &ping, "--pong", &pong, "--mode", mode])?;
    if line_of(&mut child)? != "ready" {
        return Err("the echo child did not start".into());
    }
    let mut rtts = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut buf = Vec::new();
    if async_side {
        let spin = if mode == "async-spin" { SPIN } else { Duration::ZERO };
        let mut producer = AsyncProducer::new(producer);
        let mut consumer = AsyncConsumer::new(consumer);
        producer.set_spin(spin);
        consumer.set_spin(spin);
        runtime()?.block_on(async {
            for seq in 0..1_000 + pings {
                let start = Instant::now();
                producer.send(&seq.to_le_bytes()).await?;
                consumer.recv(&mut buf).await?;
                if seq >= 1_000 {
                    rtts.record(start.elapsed().as_nanos() as u64)?;
                }
            }
            Ok::<(), Box<dyn Error>>(())
        })?;
    } else {
        let (mut producer, mut consumer) = (producer, consumer);
        for seq in 0..1_000 + pings {
            let start = Instant::now();
            producer.send(&seq.to_le_bytes())?;
            consumer.recv(&mut buf)?;
            if seq >= 1_000 {
                rtts.record(start.elapsed().as_nanos() as u64)?;
            }
        }
    }
    Ok(rtts.value_at_quantile(0.5))
}

fn run(cli: &Cli) -> Result<(), Box<dyn Error>> {
    let base = format!("/shmring-async-{}", std::process::id());
    let async_rtt = round_trips(&base, "async", cli.pings)?;
    let park_rtt = round_trips(&base, "park", cli.pings)?;
    let spin_rtt = round_trips(&base, "spin", cli.pings)?;
    let async_spin_rtt = round_trips(&base, "async-spin", cli.pings)?;

    let sync_syscalls = stream(&base, cli.stream, false)?;
    let async_syscalls = stream(&base, cli.stream, true)?;
    println!(
        "async_rtt_p50_ns={async_rtt} park_rtt_p50_ns={park_rtt} spin_rtt_p50_ns={spin_rtt} \
         async_spin_rtt_p50_ns={async_spin_rtt} async_vs_park={:.2} async_spin_vs_spin={:.2} messages={} \
         syscalls_per_msg={:.5} sync_syscalls_per_msg={:.5}",
        async_rtt as f64 / park_rtt.max(1) as f64,
        async_spin_rtt as f64 / spin_rtt.max(1) as f64,
        cli.stream,
        async_syscalls as f64 / cli.stream.max(1) as f64,
        sync_syscalls as f64 / cli.stream.max(1) as f64,
    );
    Ok(())
}

/// Streams `count` 64-byte messages to a child, async on both sides or
/// sync (the default strategy) on both; the system calls both sides' waits
/// made.
fn stream(base: &str, count: u64, asynchronous: bool) -> Result<u64, Box<dyn Error>> {
    let name = format!("{base}-stream-{asynchronous}");
    let _unlink = Unlink(vec![name.clone()]);
    let producer = Producer::create(&name, &RingOptions::new().capacity(1 << 20))?;
    let mut args = vec!["sink", "--name", &name];
    let count_arg = count.to_string();
    args.extend(["--count", &count_arg]);
    if !asynchronous {
        args.push("--sync");
    }
    let mut sink = spawn(&args)?;
    let mut msg = [0u8; 64];
    let ours = if asynchronous {
        let mut producer = AsyncProducer::new(producer);
        producer.set_spin(SPIN);
        let syscalls_before = shmring::reactor_syscalls();
        runtime()?.block_on(async {
            for seq in 0..count {
                msg[..8].copy_from_slice(&seq.to_le_bytes());
                producer.send(&msg).await?;
            }
            Ok::<(), Box<dyn Error>>(())
        })?;
        let stats = producer.get_ref().stats();
        stats.futex_waits + stats.futex_wakes + (shmring::reactor_syscalls() - syscalls_before)
    } else {
        let mut producer = producer;
        for seq in 0..count {
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            producer.send(&msg)?;
        }
        let stats = producer.stats();
        stats.futex_waits + stats.futex_wakes
    };
    let theirs: u64 = line_of(&mut sink)?.strip_prefix("syscalls=").ok_or("no syscalls= from the sink")?.parse()?;
    Ok(ours + theirs)
}
