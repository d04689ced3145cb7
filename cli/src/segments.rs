//! `create`, `ls` and `rm`: making, listing and removing segments.

use crate::show::{info_json, slot_text, state_text};
use crate::{report, Result};
use serde_json::{json, Value};
use shmring::{inspect, Error, Kind, RingOptions};
use std::io::Write;
use std::process::ExitCode;

/// Creates segment `name` and leaves it.
pub fn create(
    name: &str,
    capacity: u64,
    max_message: Option<u64>,
    mpsc: bool,
    max_producers: Option<u32>,
    mode: u32,
) -> Result<ExitCode> {
    let mut options = RingOptions::new().capacity(usize::try_from(capacity)?).mode(mode);
    if mpsc {
        options = options.kind(Kind::Mpsc);
    }
    if let Some(max) = max_producers {
        options = options.max_producers(max as usize);
    }
    if let Some(max) = max_message {
        options = options.max_message(usize::try_from(max)?);
    }
    options.create(name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn ls(all: bool, json_out: bool) -> Result<ExitCode> {
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

pub fn rm(names: Vec<String>, stale: bool) -> Result<ExitCode> {
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
