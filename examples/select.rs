//! One thread serving many rings with `Select`, fed by other processes.
//!
//! ```text
//! cargo run --release --example select -- --rings 64
//! cargo run --release --example select -- --rings 64 --wait park
//! ```
//!
//! 1. Streaming: `--producers` processes feed the rings (each its share of
//!    them, `--count` messages a ring, sizes 12 to 200 bytes); one thread of
//!    this process waits on all the rings with one `Select` and verifies
//!    every byte.
//! 2. Latency among idle rings: all but one held by an idle producer
//!    process; a client process sends pings on the last ring, and one
//!    serving thread (one `Select` over every ring) answers each on a reply
//!    ring. The client measures round trips. Twice: rings that carried a
//!    few messages first (their heads at different offsets), then fresh
//!    rings (every head at offset 0: the words a sweep reads then share one
//!    set of the L1 cache, the worst case).
//! 3. The same round trips with one ring alone, served by a plain `recv`
//!    with the same wait strategy.
//!
//! It prints one line: `rings= messages= errors= threads=` (the threads of
//! this process that served the rings, counted while serving) `rtt_p50_ns=`
//! (phase 2, used rings) `single_ring_rtt_p50_ns=` (phase 3) `ratio=`
//! `fresh_rings_rtt_p50_ns=` `fresh_ratio=` `wait=` `futex_waits=`.
mod common;

use clap::{Parser, Subcommand};
use common::guards::{Running, Unlink};
use shmring::{payload, Consumer, Producer, RingOptions, Select, TryRecvError, WaitStrategy};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "One thread serving many rings with Select, fed by other processes")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Rings served by the one thread.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    rings: u32,
    /// Producer processes in the streaming phase.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    producers: u32,
    /// Messages per ring in the streaming phase.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Round trips measured in each latency phase (after 1,000 unmeasured).
    #[arg(long, default_value_t = 20_000)]
    pings: u64,
    /// Wait strategy of every side: busy, spin or park.
    #[arg(long, default_value = "spin")]
    wait: WaitStrategy,
}

#[derive(Subcommand)]
enum Role {
    /// Feeds rings `base-first` .. `base-(first+rings-1)`, taking turns.
    #[command(hide = true)]
    Produce {
        #[arg(long)]
        base: String,
        #[arg(long)]
        first: u32,
        #[arg(long)]
        rings: u32,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        wait: WaitStrategy,
    },
    /// Attaches as the producer of those rings, says so, and idles until
    /// its input closes.
    #[command(hide = true)]
    Idle {
        #[arg(long)]
        base: String,
        #[arg(long)]
        first: u32,
        #[arg(long)]
        rings: u32,
    },
    /// Sends pings on `request`, waits for each on `reply`, prints the p50.
    #[command(hide = true)]
    Ping {
        #[arg(long)]
        request: String,
        #[arg(long)]
        reply: String,
        #[arg(long)]
        pings: u64,
        #[arg(long)]
        wait: WaitStrategy,
    },
}

fn spawn(args: &[String]) -> Result<Running, Box<dyn Error>> {
    let child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(Running(child))
}

/// The next line a child prints (it says when it is ready, or its result).
fn line_of(child: &mut Running) -> Result<String, Box<dyn Error>> {
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line)?;
    if line.is_empty() {
        return Err(format!("a child ended early: {:?}", child.0.wait()?).into());
    }
    Ok(line.trim().to_owned())
}

fn ring_name(base: &str, i: u32) -> String {
    format!("{base}-{i}")
}

/// This process's threads, from /proc.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.role {
        Some(Role::Produce { ref base, first, rings, count, wait }) => produce(base, first, rings, count, wait),
        Some(Role::Idle { ref base, first, rings }) => idle(base, first, rings),
        Some(Role::Ping { ref request, ref reply, pings, wait }) => ping(request, reply, pings, wait),
        None => run(&cli),
    };
    if let Err(e) = result {
        eprintln!("select: {e}");
        std::process::exit(1);
    }
}

fn produce(base: &str, first: u32, rings: u32, count: u64, wait: WaitStrategy) -> Result<(), Box<dyn Error>> {
    let options = RingOptions::new().wait(wait);
    let mut producers =
        (first..first + rings).map(|i| Producer::open(&ring_name(base, i), &options)).collect::<Result<Vec<_>, _>>()?;
    let mut buf = [0u8; 200];
    for seq in 0..count {
        for (producer, ring) in producers.iter_mut().zip(first..) {
            let len = 12 + ((seq * 37 + u64::from(ring)) % 189) as usize;
            payload::fill(ring, seq, &mut buf[..len]);
            producer.send(&buf[..len])?;
        }
    }
    Ok(())
}

fn idle(base: &str, first: u32, rings: u32) -> Result<(), Box<dyn Error>> {
    let _producers = (first..first + rings)
        .map(|i| Producer::open(&ring_name(base, i), &RingOptions::new()))
        .collect::<Result<Vec<_>, _>>()?;
    println!("attached");
    // Until the parent closes our input (or kills us).
    std::io::stdin().read_line(&mut String::new())?;
    Ok(())
}

fn ping(request: &str, reply: &str, pings: u64, wait: WaitStrategy) -> Result<(), Box<dyn Error>> {
    let options = RingOptions::new().wait(wait);
    let mut requests = Producer::open(request, &options)?;
    let mut replies = Consumer::open(reply, &options)?;
    let mut rtts = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut pong = [0u8; 8];
    for seq in 0..1_000 + pings {
        let start = Instant::now();
        requests.send(&seq.to_le_bytes())?;
        replies.recv_into(&mut pong)?;
        let rtt = start.elapsed();
        if u64::from_le_bytes(pong) != seq {
            return Err(format!("ping {seq} answered with {}", u64::from_le_bytes(pong)).into());
        }
        if seq >= 1_000 {
            rtts.record(rtt.as_nanos() as u64)?;
        }
    }
    println!("rtt_p50_ns={}", rtts.value_at_quantile(0.5));
    Ok(())
}

/// What the serving thread found while streaming.
struct Streamed {
    messages: u64,
    errors: u64,
    threads: usize,
    futex_waits: u64,
}

fn run(cli: &Cli) -> Result<(), Box<dyn Error>> {
    let base = format!("/shmring-select-{}", std::process::id());
    let wait = cli.wait.to_string();
    let options = RingOptions::new().capacity(64 << 10).wait(cli.wait);

    // 1. Streaming through every ring.
    let stream_base = format!("{base}-s");
    let _unlink_stream = Unlink((0..cli.rings).map(|i| ring_name(&stream_base, i)).collect());
    let consumers = (0..cli.rings)
        .map(|i| Consumer::create(&ring_name(&stream_base, i), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let threads_before = threads();
    let strategy = cli.wait;
    let (count, rings) = (cli.count, cli.rings);
    let server = std::thread::spawn(move || serve_stream(consumers, strategy, count, threads_before));
    let per = rings.div_ceil(cli.producers);
    let mut feeders = Vec::new();
    for first in (0..rings).step_by(per as usize) {
        let args = ["produce", "--base", &stream_base, "--first", &first.to_string()];
        let args = [&args[..], &["--rings", &per.min(rings - first).to_string(), "--count", &count.to_string()]];
        let args: Vec<String> =
            [&args.concat()[..], &["--wait", &wait]].concat().iter().map(|s| s.to_string()).collect();
        feeders.push(spawn(&args)?);
    }
    let streamed = server.join().map_err(|_| "the serving thread panicked")??;
    for mut feeder in feeders {
        let status = feeder.0.wait()?;
        if !status.success() {
            return Err(format!("a producer process failed: {status}").into());
        }
    }

    // 2. One active ring among idle ones, one Select over all of them:
    // rings that have carried traffic (their heads at different offsets),
    // then fresh ones (every head at offset 0, so that the words a sweep
    // reads share one set of the L1 cache: the worst case).
    let (rtt, used_waits) = among_idle(&format!("{base}-u"), rings, true, cli, &options)?;
    let (fresh_rtt, fresh_waits) = among_idle(&format!("{base}-f"), rings, false, cli, &options)?;
    let select_waits = used_waits + fresh_waits;

    // 3. One ring alone, a plain recv.
    let single = format!("{base}-one");
    let single_reply = format!("{base}-one-reply");
    let _unlink_single = Unlink(vec![single.clone(), single_reply.clone()]);
    let consumer = Consumer::create(&single, &options)?;
    options.create(&single_reply)?;
    let answers = Producer::open(&single_reply, &options)?;
    let server = std::thread::spawn(move || serve_pings_alone(consumer, answers));
    let single_rtt = measure(&single, &single_reply, cli.pings, &wait)?;
    server.join().map_err(|_| "the serving thread panicked")??;

    println!(
        "rings={rings} messages={} errors={} threads={} rtt_p50_ns={rtt} single_ring_rtt_p50_ns={single_rtt} \
         ratio={:.2} fresh_rings_rtt_p50_ns={fresh_rtt} fresh_ratio={:.2} wait={wait} futex_waits={}",
        streamed.messages,
        streamed.errors,
        streamed.threads,
        rtt as f64 / single_rtt.max(1) as f64,
        fresh_rtt as f64 / single_rtt.max(1) as f64,
        streamed.futex_waits + select_waits,
    );
    if streamed.errors > 0 || streamed.messages != u64::from(rings) * count {
        return Err(format!("expected {} verified messages", u64::from(rings) * count).into());
    }
    Ok(())
}

/// The round-trip p50 of the last of `rings` rings named `base-i`, served
/// with the others idle (each with a producer attached) by one `Select`;
/// with `used`, each idle ring first carries a few messages, so that its
/// head sits at its own offset. Also the select's futex waits.
fn among_idle(
    base: &str,
    rings: u32,
    used: bool,
    cli: &Cli,
    options: &RingOptions,
) -> Result<(u64, u64), Box<dyn Error>> {
    let reply = format!("{base}-reply");
    let mut names: Vec<String> = (0..rings).map(|i| ring_name(base, i)).collect();
    names.push(reply.clone());
    let _unlink = Unlink(names);
    let mut consumers =
        (0..rings).map(|i| Consumer::create(&ring_name(base, i), options)).collect::<Result<Vec<_>, _>>()?;
    if used {
        let mut buf = Vec::new();
        // The idle rings only: the active one would end its server when
        // this producer leaves, before the client attaches.
        for (i, consumer) in (0..rings - 1).zip(&mut consumers) {
            let mut producer = Producer::open(&ring_name(base, i), options)?;
            for _ in 0..i % 61 + 1 {
                producer.send(&[0; 56])?;
                consumer.recv(&mut buf)?;
            }
        }
    }
    options.create(&reply)?;
    let idle_args = ["idle", "--base", base, "--first", "0", "--rings", &(rings - 1).to_string()];
    let mut idlers = spawn(&idle_args.map(String::from))?;
    if rings > 1 && line_of(&mut idlers)? != "attached" {
        return Err("the idle producers did not attach".into());
    }
    let answers = Producer::open(&reply, options)?;
    let active = rings - 1;
    let strategy = cli.wait;
    let server = std::thread::spawn(move || serve_pings_select(consumers, answers, active as usize, strategy));
    let rtt = measure(&ring_name(base, active), &reply, cli.pings, &cli.wait.to_string())?;
    let waits = server.join().map_err(|_| "the serving thread panicked")??;
    Ok((rtt, waits))
}

/// Receives and verifies every ring's stream until every producer is gone.
fn serve_stream(
    mut consumers: Vec<Consumer>,
    strategy: WaitStrategy,
    count: u64,
    threads_before: usize,
) -> Result<Streamed, String> {
    let mut select = Select::with_strategy(strategy);
    // Per open ring: its number and the next sequence number it owes.
    let mut open: Vec<(u32, u64)> = (0..consumers.len() as u32).map(|ring| (ring, 0)).collect();
    let (mut messages, mut errors) = (0, 0);
    let threads = threads().saturating_sub(threads_before);
    let mut buf = Vec::new();
    while !consumers.is_empty() {
        let ready = select.wait(&mut consumers).to_vec();
        // Highest first, so that `swap_remove` moves only rings served.
        for &i in ready.iter().rev() {
            let (ring, next) = &mut open[i];
            loop {
                match consumers[i].try_recv(&mut buf) {
                    Ok(_) => {
                        if payload::check(*ring, *next, &buf).is_err() {
                            errors += 1;
                        }
                        *next += 1;
                        messages += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if *next != count {
                            errors += 1;
                        }
                        // A ring whose producer is gone stays ready: drop it.
                        consumers.swap_remove(i);
                        open.swap_remove(i);
                        break;
                    }
                    Err(e) => return Err(format!("ring {ring}: {e}")),
                }
            }
        }
    }
    Ok(Streamed { messages, errors, threads, futex_waits: select.futex_waits() })
}

/// Answers pings on ring `active` with one Select over every ring, until
/// the client detaches; returns the Select's futex waits.
fn serve_pings_select(
    mut consumers: Vec<Consumer>,
    mut answers: Producer,
    active: usize,
    strategy: WaitStrategy,
) -> Result<u64, String> {
    let mut select = Select::with_strategy(strategy);
    let mut ping = [0u8; 8];
    loop {
        for &i in select.wait(&mut consumers) {
            match consumers[i].try_recv_into(&mut ping) {
                Ok(_) if i == active => answers.send(&ping).map_err(|e| e.to_string())?,
                Ok(_) => return Err(format!("a message on idle ring {i}")),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) if i == active => return Ok(select.futex_waits()),
                Err(e) => return Err(format!("ring {i}: {e}")),
            }
        }
    }
}

/// Answers pings on one ring with a plain `recv`, until the client detaches.
fn serve_pings_alone(mut consumer: Consumer, mut answers: Producer) -> Result<(), String> {
    let mut ping = [0u8; 8];
    loop {
        match consumer.recv_into(&mut ping) {
            Ok(_) => answers.send(&ping).map_err(|e| e.to_string())?,
            Err(shmring::RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Runs the ping client against `request`/`reply`; its p50 in ns.
fn measure(request: &str, reply: &str, pings: u64, wait: &str) -> Result<u64, Box<dyn Error>> {
    let args = ["ping", "--request", request, "--reply", reply, "--pings", &pings.to_string(), "--wait", wait];
    let mut client = spawn(&args.map(String::from))?;
    let line = line_of(&mut client)?;
    let status = client.0.wait()?;
    if !status.success() {
        return Err(format!("the ping client failed: {status}").into());
    }
    Ok(line.strip_prefix("rtt_p50_ns=").ok_or_else(|| format!("unexpected: {line}"))?.parse()?)
}
