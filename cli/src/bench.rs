//! `bench` and its hidden peer, `bench-peer`: throughput and round trips
//! between this process and a child running the same binary.

use crate::Result;
use shmring::{Consumer, Producer, RecvTimeoutError, RingOptions, WaitStrategy};
use std::io::IsTerminal;
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

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
        .args(["--seconds", &format!("{}s", seconds.as_secs_f64()), "--wait", &wait.to_string()])
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

pub fn bench(size: u64, seconds: Duration, wait: WaitStrategy) -> Result<ExitCode> {
    check_bench_seconds(seconds)?;
    let max_message =
        u32::try_from(size.max(8)).map_err(|_| format!("--size {size} is too large: at most {} bytes", u32::MAX))?;
    let len = usize::try_from(size)?;
    // At most 2^32 * 64: no overflow.
    let capacity = (size * 64).next_power_of_two().max(1 << 20);
    let options = RingOptions::new().capacity(capacity as usize).max_message(max_message as usize).wait(wait);
    let id = std::process::id();
    let (data, ping, pong) =
        (format!("/shmring-bench-{id}"), format!("/shmring-bench-{id}-ping"), format!("/shmring-bench-{id}-pong"));
    let _scratch = Scratch(vec![data.clone(), ping.clone(), pong.clone()]);
    let progress = std::io::stderr().is_terminal();
    println!("shmring bench: {size}-byte messages, wait strategy {wait}, {seconds:?} per measurement");

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

pub fn bench_peer(
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
