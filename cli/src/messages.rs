//! `send` and `recv`: feeding a segment lines (or generated messages) and
//! printing what it holds.

use crate::{report, Result};
use shmring::{inspect, payload, Consumer, Producer, RingOptions, Select, TryRecvError};
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

/// Prints what arrives on `names` (one ring: as it is; several: each line
/// prefixed with its ring's name), waiting on all of them with one `Select`.
pub fn recv(names: &[String], count: Option<u64>, timeout: Option<Duration>, hex: bool) -> Result<ExitCode> {
    let mut consumers = Vec::with_capacity(names.len());
    for name in names {
        consumers.push(Consumer::open(name, &options_for(name)?)?);
    }
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    let prefixed = names.len() > 1;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // No timeout: wait as long as it takes (in slices, so the loop stays simple).
    let slice = timeout.unwrap_or(Duration::from_secs(3600));
    let mut select = Select::new();
    let mut received = 0;
    'rings: while count.is_none_or(|c| received < c) && !consumers.is_empty() {
        let ready = select.wait_timeout(&mut consumers, slice).to_vec();
        if ready.is_empty() && timeout.is_some() {
            break;
        }
        // Highest first, so that removing a finished ring moves only rings
        // already served.
        for &i in ready.iter().rev() {
            let finished = match consumers[i].try_read() {
                Ok(msg) => {
                    if prefixed {
                        write!(out, "{}: ", names[i])?;
                    }
                    print_message(&mut out, &msg, hex)?;
                    received += 1;
                    false
                }
                Err(TryRecvError::Empty) => false,
                Err(TryRecvError::Disconnected) => true,
                Err(e) => return Err(e.into()),
            };
            if finished {
                drop(consumers.swap_remove(i));
                names.swap_remove(i);
            }
            // Flush as messages come when someone is watching.
            if count.is_none() {
                out.flush()?;
            }
            if count.is_some_and(|c| received >= c) {
                break 'rings;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One message as a line: as it is, or as hex bytes.
fn print_message(out: &mut impl Write, msg: &[u8], hex: bool) -> std::io::Result<()> {
    if hex {
        let text: Vec<String> = msg.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{}", text.join(" "))
    } else {
        out.write_all(msg)?;
        out.write_all(b"\n")
    }
}
