//! `send` and `recv`: feeding a segment lines (or generated messages) and
//! printing what it holds.

use crate::{report, Result};
use shmring::{inspect, payload, Consumer, Producer, RecvTimeoutError, RingOptions};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

pub fn send(
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

pub fn recv(name: &str, count: Option<u64>, timeout: Option<Duration>, hex: bool) -> Result<ExitCode> {
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
