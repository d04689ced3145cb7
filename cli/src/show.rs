//! `stat` (once or `--watch`) and the text and JSON forms of a segment's
//! header, which `ls` shares.

use crate::Result;
use serde_json::{json, Value};
use shmring::inspect::{self, ParticipantInfo, SegmentInfo, SlotState, WakeInfo};
use shmring::Kind;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Prints the header of segment `name` (or of the file segment at `file`)
/// once.
pub fn stat(name: Option<&str>, file: Option<&Path>, json_out: bool) -> Result<ExitCode> {
    let info = read_info(name, file)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
    } else {
        print!("{}", describe(&info, None));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn slot_text(p: &ParticipantInfo) -> String {
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

pub fn state_text(info: &SegmentInfo) -> &'static str {
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
    json!({ "seq": w.seq, "sleepers": w.sleepers, "parks": w.parks, "waiting_for": w.waiting_for })
}

pub fn info_json(info: &SegmentInfo) -> Value {
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
        "consumer    {}, {} attachments; wake word {}, {} sleeping, {} parks{}\n",
        slot_text(&info.consumer),
        info.consumer.attachments,
        info.consumer_wake.seq,
        info.consumer_wake.sleepers,
        info.consumer_wake.parks,
        match info.consumer_wake.waiting_for {
            Some(position) if info.consumer_wake.sleepers > 0 => format!(", for the record at {position}"),
            _ => String::new(),
        }
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
fn read_info(name: Option<&str>, file: Option<&Path>) -> Result<SegmentInfo> {
    Ok(match (name, file) {
        (_, Some(path)) => inspect::inspect_file(path)?,
        (Some(name), None) => inspect::inspect(name)?,
        (None, None) => return Err("a segment name or --file is needed".into()),
    })
}

pub fn watch(name: Option<&str>, file: Option<&Path>, json_out: bool, iterations: Option<u64>) -> Result<ExitCode> {
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
