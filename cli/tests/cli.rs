//! The `shmring` binary, run as a user would run it.

mod common;

use common::{deadline, until, within, ChildGuard, SegmentGuard};
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one `shmring` command may take (`stat --watch --iterations 2`
/// takes a second).
const LIMIT: Duration = Duration::from_secs(60);

fn shmring(args: &[&str]) -> Output {
    shmring_with_input(args, b"")
}

/// Runs `shmring ARGS` with `input` on stdin; fails if it is still running
/// after [`LIMIT`] (it is killed then).
fn shmring_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmring");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmring {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Output { status, stdout: stdout.join().expect("stdout"), stderr: stderr.join().expect("stderr") }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with a message on stderr containing `needle`, and
/// nothing that looks like a panic.
fn fails_with(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got {o:?}");
    let err = stderr(o);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

fn ls_row(name: &str, args: &[&str]) -> Option<String> {
    let o = shmring(&[&["ls"], args].concat());
    assert!(o.status.success(), "{o:?}");
    stdout(&o).lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned)
}

#[test]
fn create_send_recv_stat_rm() {
    let segment = SegmentGuard::new("cli");
    let name = segment.name();
    assert!(shmring(&["create", name, "--capacity", "64K", "--max-message", "1K", "--mode", "640"]).status.success());
    let meta = std::fs::metadata(segment.path()).expect("created");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o640);

    let sent = shmring_with_input(&["send", name], b"first line\nsecond\r\n\nlast without newline");
    assert!(sent.status.success(), "{sent:?}");

    let stat = stdout(&shmring(&["stat", name]));
    assert!(stat.contains("4 messages pending"), "{stat}");
    assert!(stat.contains("4 sent, 0 read"), "{stat}");
    assert!(stat.contains("max message 1024 bytes"), "{stat}");

    let got = shmring(&["recv", name, "--count", "3"]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(stdout(&got), "first line\nsecond\n\n");
    let got = shmring(&["recv", name, "--timeout", "200ms", "--hex"]);
    assert!(got.status.success(), "a timeout is a clean end: {got:?}");
    assert_eq!(stdout(&got).trim(), "6c 61 73 74 20 77 69 74 68 6f 75 74 20 6e 65 77 6c 69 6e 65");

    let json: serde_json::Value = serde_json::from_slice(&shmring(&["stat", name, "--json"]).stdout).expect("json");
    assert_eq!(json["messages_sent"], 4);
    assert_eq!(json["messages_read"], 4);
    assert_eq!(json["pending_messages"], 0);
    assert_eq!(json["kind"], "spsc");
    assert_eq!(json["capacity"], 65536);
    assert_eq!(json["mode"], "0640");

    let generated = shmring(&["send", name, "--count", "100", "--size", "32"]);
    assert!(generated.status.success(), "{generated:?}");
    let got = shmring(&["recv", name, "--count", "100", "--hex"]);
    assert_eq!(stdout(&got).lines().count(), 100);
    assert!(stdout(&got).lines().all(|l| l.split(' ').count() == 32));

    assert!(shmring(&["rm", name]).status.success());
    assert!(!std::path::Path::new(&segment.path()).exists());
    fails_with(&shmring(&["stat", name]), "does not exist");
}

#[test]
fn ls_marks_a_segment_stale_once_its_processes_die_and_rm_stale_removes_only_it() {
    let stale = SegmentGuard::new("cli-stale");
    let idle = SegmentGuard::new("cli-idle");
    for s in [&stale, &idle] {
        assert!(shmring(&["create", s.name()]).status.success());
    }
    let mut reader = ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_shmring"))
            .args(["recv", stale.name()])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn recv"),
    );
    let end = deadline(30);
    while until(end, "the consumer showing up") {
        let row = ls_row(stale.name(), &[]).expect("listed");
        if row.ends_with("live") {
            assert!(row.contains("alive (pid"), "{row}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // `recv` with no count and no timeout waits until killed.
    reader.kill_alive("shmring recv");
    let row = ls_row(stale.name(), &[]).expect("listed");
    assert!(row.ends_with("STALE") && row.contains("DEAD"), "{row}");
    assert!(ls_row(idle.name(), &[]).expect("listed").ends_with("idle"));
    let json: serde_json::Value = serde_json::from_slice(&shmring(&["ls", "--json"]).stdout).expect("json");
    let entry = json.as_array().unwrap().iter().find(|e| e["name"] == stale.name()).expect("in json");
    assert_eq!(entry["stale"], true);
    assert_eq!(entry["consumer"]["alive"], false);

    let removed = shmring(&["rm", "--stale"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(stdout(&removed).contains(&format!("removed {}", stale.name())));
    assert!(!std::path::Path::new(&stale.path()).exists());
    assert!(std::path::Path::new(&idle.path()).exists(), "an idle segment is not stale");
}

#[test]
fn objects_that_are_not_segments_are_skipped_and_refused() {
    let other = SegmentGuard::new("cli-foreign-object");
    std::fs::write(other.path(), vec![7u8; 10_000]).expect("write");
    assert!(ls_row(other.name(), &[]).is_none(), "skipped without --all");
    assert!(ls_row(other.name(), &["--all"]).expect("listed with --all").ends_with("not shmring"));
    fails_with(&shmring(&["stat", other.name()]), "is not a shmring segment");
    fails_with(&shmring(&["recv", other.name(), "--timeout", "10ms"]), "is not a shmring segment");
    fails_with(&shmring(&["rm", other.name()]), "not removed");
    assert_eq!(std::fs::read(other.path()).expect("untouched"), vec![7u8; 10_000]);
}

#[test]
fn every_error_names_the_segment_and_leaves_others_alone() {
    let segment = SegmentGuard::new("cli-errors");
    let name = segment.name();
    assert!(shmring(&["create", name, "--capacity", "8K"]).status.success());
    let missing = SegmentGuard::new("cli-missing");

    fails_with(&shmring(&["create", name]), &format!("segment {name} already exists"));
    fails_with(&shmring(&["create", missing.name(), "--capacity", "12K"]), "power of two");
    fails_with(&shmring(&["create", missing.name(), "--capacity", "lots"]), "is not a size");
    fails_with(&shmring(&["create", "no-slash"]), "must start with '/'");
    fails_with(&shmring(&["create", missing.name(), "--mpsc", "--max-producers", "65"]), "max producers 65");
    fails_with(&shmring(&["stat", missing.name()]), &format!("segment {} does not exist", missing.name()));
    fails_with(&shmring(&["send", missing.name()]), "does not exist");
    fails_with(&shmring_with_input(&["send", name], &vec![b'x'; 3000]), "line 1: message of 3000 bytes");
    fails_with(&shmring(&["rm", missing.name()]), "does not exist");
    fails_with(&shmring(&["recv", name, "--timeout", "soon"]), "is not a duration");

    // The segment is still there and whole.
    let json: serde_json::Value = serde_json::from_slice(&shmring(&["stat", name, "--json"]).stdout).expect("json");
    assert_eq!(json["capacity"], 8192);
    assert_eq!(json["messages_sent"], 0);
}

#[test]
fn mpsc_segments_from_create_to_stat() {
    let segment = SegmentGuard::new("cli-mpsc");
    let name = segment.name();
    assert!(shmring(&["create", name, "--mpsc", "--max-producers", "4", "--capacity", "64K"]).status.success());
    // Two producers one after the other, then a third that stays attached.
    assert!(shmring_with_input(&["send", name], b"one\ntwo\n").status.success());
    assert!(shmring_with_input(&["send", name], b"three\n").status.success());
    let recv = shmring(&["recv", name, "--count", "3", "--timeout", "5s"]);
    assert!(recv.status.success(), "{recv:?}");
    assert_eq!(stdout(&recv), "one\ntwo\nthree\n");
    let stat = stdout(&shmring(&["stat", name]));
    assert!(stat.contains("kind        MPSC (layout version 5)"), "{stat}");
    assert!(stat.contains("messages    3 sent, 3 read"), "{stat}");
    assert!(stat.contains("torn        0 records skipped"), "{stat}");
    assert!(stat.contains("producer 0  detached"), "{stat}");
    let json: serde_json::Value = serde_json::from_slice(&shmring(&["stat", name, "--json"]).stdout).expect("json");
    assert_eq!(json["kind"], "mpsc");
    assert_eq!(json["max_producers"], 4);
    assert_eq!(json["torn_records"], 0);
    assert_eq!(json["producers"].as_array().map(Vec::len), Some(4));
    let sent: u64 = (0..4).map(|n| json["producers"][n]["messages"].as_u64().unwrap_or(0)).sum();
    assert_eq!(sent, 3);
    let row = ls_row(name, &[]).expect("listed");
    assert!(row.contains("MPSC"), "{row}");
}

#[test]
fn stat_reads_file_backed_rings() {
    let path = std::env::temp_dir().join(common::unique_name("cli-file").trim_start_matches('/'));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let mut producer = shmring::Producer::create_file(&path, &shmring::RingOptions::new()).expect("create");
    for _ in 0..10 {
        producer.try_send(b"persisted").expect("send");
    }
    producer.flush().expect("flush");
    let file = path.to_string_lossy().into_owned();
    let json: serde_json::Value =
        serde_json::from_slice(&shmring(&["stat", "--file", &file, "--json"]).stdout).expect("json");
    assert_eq!(json["messages_sent"], 10);
    assert_eq!(json["durable_tail"], 10 * 24);
    assert_eq!(json["lost_records"], 0);
    let text = stdout(&shmring(&["stat", "--file", &file]));
    assert!(text.contains("durable     up to 240 (0 bytes not yet flushed); 0 records lost to restarts"), "{text}");
    fails_with(&shmring(&["stat", "--file", "/nonexistent/ring"]), "does not exist");
}

#[test]
fn help_has_an_example_for_every_subcommand() {
    for sub in ["create", "ls", "stat", "send", "recv", "rm", "bench"] {
        let o = shmring(&[sub, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Example"), "{sub} --help: {}", stdout(&o));
    }
}

#[test]
fn stat_watch_reports_rates() {
    let segment = SegmentGuard::new("cli-watch");
    assert!(shmring(&["create", segment.name()]).status.success());
    let o = shmring(&["stat", segment.name(), "--watch", "--iterations", "2"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert_eq!(out.matches("segment     ").count(), 2, "{out}");
    assert!(out.contains("rate        0 msgs/s"), "{out}");
    assert!(!out.contains('\x1b'), "no terminal escapes in a pipe");
}

/// `bench` durations and sizes beyond what the clock or a message can hold
/// are refused with a message, never a panic (finding 1 of the adversarial
/// review, the rest of which is in the library's tests/review_small.rs).
#[test]
fn bench_refuses_durations_and_sizes_out_of_range_without_panicking() {
    for args in [["--seconds", "0"], ["--seconds", "1e19s"], ["--size", "268435456G"]] {
        let out = within(Duration::from_secs(10), "shmring bench", move || {
            Command::new(env!("CARGO_BIN_EXE_shmring")).arg("bench").args(args).output().expect("run shmring")
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.starts_with("shmring: "), "{args:?}: {stderr}");
    }
}

/// `recv` with several names: one thread waits on every ring, each line is
/// prefixed with its ring's name, and a ring with no producer left is
/// dropped from the wait while the others go on.
#[test]
fn recv_waits_on_several_rings() {
    let orders = SegmentGuard::new("cli-select-a");
    let fills = SegmentGuard::new("cli-select-b");
    for segment in [&orders, &fills] {
        assert!(shmring(&["create", segment.name(), "--capacity", "64K"]).status.success());
    }
    assert!(shmring_with_input(&["send", orders.name()], b"buy\nsell\n").status.success());
    assert!(shmring_with_input(&["send", fills.name()], b"filled\n").status.success());
    let got = shmring(&["recv", orders.name(), fills.name(), "--timeout", "300ms"]);
    assert!(got.status.success(), "{got:?}");
    let mut lines: Vec<String> = stdout(&got).lines().map(str::to_owned).collect();
    lines.sort();
    let mut expected = vec![
        format!("{}: buy", orders.name()),
        format!("{}: filled", fills.name()),
        format!("{}: sell", orders.name()),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    // Per ring, in order.
    let out = stdout(&got);
    assert!(out.find(": buy").expect("buy") < out.find(": sell").expect("sell"), "{out}");
    // --count stops across rings.
    assert!(shmring_with_input(&["send", fills.name()], b"a\nb\nc\n").status.success());
    let got = shmring(&["recv", orders.name(), fills.name(), "--count", "2", "--timeout", "5s"]);
    assert_eq!(stdout(&got).lines().count(), 2, "{got:?}");
    fails_with(&shmring(&["recv", orders.name(), "/shmring-cli-no-such-ring"]), "does not exist");
}
