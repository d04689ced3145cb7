//! A request/response service on tokio: one pair of rings per client, one
//! task per client, several client processes.
//!
//! ```text
//! cargo run --release --features tokio --example async_service
//! cargo run --release --features tokio --example async_service -- --clients 8 --requests 5000
//! ```
//!
//! The service creates, for each client `k`, a request ring it consumes
//! and a reply ring it produces (`/…-k-req`, `/…-k-rep`), starts the
//! client processes, and serves every client from its own task on a
//! two-thread tokio runtime. A request is a number; the reply is its square
//! and the request's number back. Each client sends its requests one at a
//! time, checks each reply, and prints its round-trip median. Copy the
//! `serve` function to build a service of your own.
//!
//! One line: `clients= requests= errors= rtt_p50_ns=` (the median of the
//! clients' medians) `runtime_threads=`.
mod common;

use clap::{Parser, Subcommand};
use common::guards::{Running, Unlink};
use shmring::{AsyncConsumer, AsyncProducer, Consumer, Producer, RecvError, RingOptions};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "A request/response service over shmring on tokio, with client processes")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Client processes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    clients: u32,
    /// Requests per client.
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
}

#[derive(Subcommand)]
enum Role {
    /// A client: sends `requests` requests on `base-k-req`, checks each
    /// reply on `base-k-rep`.
    #[command(hide = true)]
    Client {
        #[arg(long)]
        base: String,
        #[arg(long)]
        k: u32,
        #[arg(long)]
        requests: u64,
    },
}

fn request_ring(base: &str, k: u32) -> String {
    format!("{base}-{k}-req")
}

fn reply_ring(base: &str, k: u32) -> String {
    format!("{base}-{k}-rep")
}

/// The reply to request `n`: its square, then `n`.
fn answer(n: u64) -> [u8; 16] {
    let mut reply = [0u8; 16];
    reply[..8].copy_from_slice(&n.wrapping_mul(n).to_le_bytes());
    reply[8..].copy_from_slice(&n.to_le_bytes());
    reply
}

/// Serves one client until it leaves: the whole service logic.
async fn serve(mut requests: AsyncConsumer, mut replies: AsyncProducer) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let mut buf = Vec::new();
    let mut served = 0;
    loop {
        match requests.recv(&mut buf).await {
            Ok(_) => {
                let n = u64::from_le_bytes(buf.as_slice().try_into()?);
                replies.send(&answer(n)).await?;
                served += 1;
            }
            // The client detached: done.
            Err(RecvError::Disconnected) => return Ok(served),
            Err(e) => return Err(e.into()),
        }
    }
}

fn client(base: &str, k: u32, requests: u64) -> Result<(), Box<dyn Error>> {
    let options = RingOptions::new();
    let mut producer = Producer::open(&request_ring(base, k), &options)?;
    let mut consumer = Consumer::open(&reply_ring(base, k), &options)?;
    let mut rtts = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut reply = [0u8; 16];
    let mut errors = 0;
    for i in 0..requests {
        let n = u64::from(k) << 32 | i;
        let start = Instant::now();
        producer.send(&n.to_le_bytes())?;
        consumer.recv_into(&mut reply)?;
        rtts.record(start.elapsed().as_nanos() as u64)?;
        if reply != answer(n) {
            errors += 1;
        }
    }
    println!("errors={errors} rtt_p50_ns={}", rtts.value_at_quantile(0.5));
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.role {
        Some(Role::Client { base, k, requests }) => client(base, *k, *requests),
        None => run(&cli),
    };
    if let Err(e) = result {
        eprintln!("async_service: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn Error>> {
    let base = format!("/shmring-service-{}", std::process::id());
    let mut names = Vec::new();
    for k in 0..cli.clients {
        names.extend([request_ring(&base, k), reply_ring(&base, k)]);
    }
    let _unlink = Unlink(names);
    let options = RingOptions::new().capacity(64 << 10);
    let mut pairs = Vec::new();
    for k in 0..cli.clients {
        let requests = AsyncConsumer::new(Consumer::create(&request_ring(&base, k), &options)?);
        // The reply ring's segment, then this side's producer on it.
        options.create(&reply_ring(&base, k))?;
        let replies = AsyncProducer::new(Producer::open(&reply_ring(&base, k), &options)?);
        pairs.push((requests, replies));
    }
    let mut clients: Vec<Running> = Vec::new();
    for k in 0..cli.clients {
        let child = Command::new(std::env::current_exe()?)
            .args(["client", "--base", &base, "--k", &k.to_string(), "--requests", &cli.requests.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        clients.push(Running(child));
    }
    let threads = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).build()?;
    let served: u64 = runtime
        .block_on(async {
            let tasks: Vec<_> =
                pairs.into_iter().map(|(requests, replies)| tokio::spawn(serve(requests, replies))).collect();
            let mut served = 0;
            for task in tasks {
                served += task.await??;
            }
            Ok::<u64, Box<dyn Error + Send + Sync>>(served)
        })
        .map_err(|e| e.to_string())?;
    let (mut errors, mut medians) = (0, Vec::new());
    for Running(child) in &mut clients {
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a client failed: {status}").into());
        }
        for field in line.split_whitespace() {
            match field.split_once('=') {
                Some(("errors", v)) => errors += v.parse::<u64>()?,
                Some(("rtt_p50_ns", v)) => medians.push(v.parse::<u64>()?),
                _ => {}
            }
        }
    }
    medians.sort_unstable();
    let median = medians.get(medians.len() / 2).copied().unwrap_or(0);
    println!("clients={} requests={served} errors={errors} rtt_p50_ns={median} runtime_threads={threads}", cli.clients);
    if served != u64::from(cli.clients) * cli.requests || errors > 0 {
        return Err(format!("expected {} answered requests", u64::from(cli.clients) * cli.requests).into());
    }
    Ok(())
}
