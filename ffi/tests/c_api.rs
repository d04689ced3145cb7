//! The C API from C: the examples and test programs in `examples/` and
//! `tests/` are compiled with `cc` against the `libshmring_ffi.so` that this
//! test run built, and run as processes against Rust peers, each other, and
//! valgrind.
//!
//! Every segment a test uses has a name with the test's pid and is unlinked
//! by a guard, and every child process is killed and reaped by a guard, so a
//! failing test leaves neither behind.

mod common;

use common::{ffi_dir, lib_dir};
use shmring::{payload, Consumer, Producer, RecvTimeoutError, RingOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Messages each way in the cross-language streaming tests.
const STREAM: u64 = 1_000_000;

/// The library the C programs link is the one cargo built for this run:
/// `deps/libshmring_ffi.so`. The copy one directory up is refreshed only when
/// the library itself is a target of the command (`cargo build`), so after a
/// change to `src/`, `cargo test` alone would test the old library there.
#[test]
fn c_programs_link_the_library_built_for_this_run() {
    let exe = std::env::current_exe().expect("current_exe");
    let built = exe.parent().unwrap().join("libshmring_ffi.so");
    if built.exists() {
        let linked = lib_dir().join("libshmring_ffi.so");
        assert!(
            std::fs::read(&linked).unwrap() == std::fs::read(&built).unwrap(),
            "the C tests link {}, which is not the library built for this run ({})",
            linked.display(),
            built.display()
        );
    }
}

fn compile(name: &str, sources: &[&str]) -> PathBuf {
    common::compile(name, sources, &[])
}

/// Segment names `/shmring-ffi-TAG-PID` (and `...-0` to `...-9`), unlinked
/// when the guard drops.
struct Segment(String);

impl Segment {
    fn new(tag: &str) -> Segment {
        let name = format!("/shmring-ffi-{tag}-{}", std::process::id());
        Segment::remove(&name);
        Segment(name)
    }

    fn remove(name: &str) {
        let _ = shmring::unlink(name);
        for n in 0..10 {
            let _ = shmring::unlink(&format!("{name}-{n}"));
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        Segment::remove(&self.0);
    }
}

/// A child process, killed and reaped when the guard drops.
struct Kid(Option<Child>);

impl Kid {
    fn spawn(command: &mut Command) -> Kid {
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning a child");
        Kid(Some(child))
    }

    /// Waits (at most `limit`) for the child; its output. Panics (the guard
    /// kills it) if it takes longer.
    fn finish(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut().unwrap();
        while child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "a child ran over {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.0.take().unwrap().wait_with_output().expect("the child's output")
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A size from 0 to 300 bytes for message `seq`: every short length (which
/// cuts the payload's prefix short) and longer ones, in a mix.
fn size_of(seq: u64) -> usize {
    ((seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 301) as usize
}

#[test]
fn c_payloads_match_rust_byte_for_byte() {
    let program = compile("payload_dump", &["tests/payload_dump.c"]);
    let output = Command::new(&program).output().expect("running payload_dump");
    assert!(output.status.success(), "{}", text(&output));
    let mut expected = Vec::new();
    for stream in [0u32, 1, 7, 4095, u32::MAX] {
        for seq in [0u64, 1, 41, 1234, 1 << 40, u64::MAX] {
            let mut len = 0;
            while len <= 1030 {
                let mut buf = vec![0; len];
                payload::fill(stream, seq, &mut buf);
                expected.extend_from_slice(&buf);
                len = if len < 100 { len + 1 } else { len + 31 };
            }
        }
    }
    assert_eq!(output.stdout.len(), expected.len());
    let first = output.stdout.iter().zip(&expected).position(|(c, r)| c != r);
    assert_eq!(first, None, "C and Rust payloads differ at byte {first:?} of the dump");
}

#[test]
fn c_producer_to_rust_consumer_1m() {
    let program = compile("producer", &["examples/producer.c"]);
    let segment = Segment::new("c2rust");
    let options = RingOptions::new().capacity(1 << 20);
    let mut consumer = Consumer::create(&segment.0, &options).expect("create");
    let producer = Kid::spawn(Command::new(&program).args([
        "--name",
        &segment.0,
        "--count",
        &STREAM.to_string(),
        "--min-size",
        "0",
        "--max-size",
        "300",
    ]));
    let mut buf = Vec::new();
    let mut bytes = 0;
    for seq in 0..STREAM {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(len) => bytes += len as u64,
            Err(e) => panic!("message {seq}: {e}"),
        }
        // The producer's payloads in order, every byte (a payload shorter
        // than 12 bytes is the prefix of its sequence number).
        if let Err(e) = payload::check(0, seq, &buf) {
            panic!("message {seq}: {e}");
        }
    }
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(30)), Err(RecvTimeoutError::Disconnected));
    let output = producer.finish(Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains(&format!("messages={STREAM} bytes={bytes} errors=0")), "{out}");
}

#[test]
fn rust_producer_to_c_consumer_1m() {
    let program = compile("consumer", &["examples/consumer.c"]);
    let segment = Segment::new("rust2c");
    let consumer = Kid::spawn(
        Command::new(&program).args(["--name", &segment.0, "--create", "--verify"]).args(["--idle-timeout", "30"]),
    );
    let options = RingOptions::new().capacity(1 << 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut producer = loop {
        match Producer::open(&segment.0, &options) {
            Ok(producer) => break producer,
            Err(shmring::Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    let mut buf = vec![0; 300];
    let mut bytes = 0;
    for seq in 0..STREAM {
        let len = size_of(seq);
        payload::fill(0, seq, &mut buf[..len]);
        producer.send(&buf[..len]).expect("send");
        bytes += len as u64;
    }
    drop(producer);
    let output = consumer.finish(Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains(&format!("consumer: messages={STREAM} bytes={bytes} errors=0")), "{out}");
}

/// The C consumer's verification catches a wrong byte (so the streaming
/// tests would fail if the payloads were not checked).
#[test]
fn c_consumer_catches_a_wrong_byte() {
    let program = compile("consumer-wrong", &["examples/consumer.c"]);
    let segment = Segment::new("wrongbyte");
    // Left for the consumer when the producer goes (the guard removes it).
    let options = RingOptions::new().capacity(1 << 16).unlink_on_drop(false);
    let mut producer = Producer::create(&segment.0, &options).expect("create");
    let mut buf = vec![0; 100];
    for seq in 0..10 {
        payload::fill(0, seq, &mut buf);
        if seq == 7 {
            buf[50] ^= 1;
        }
        producer.send(&buf).expect("send");
    }
    drop(producer);
    let consumer = Kid::spawn(Command::new(&program).args(["--name", &segment.0, "--verify", "--idle-timeout", "30"]));
    let output = consumer.finish(Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("messages=10 bytes=1000 errors=1"), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("seq 7: byte 50 is wrong"), "{}", text(&output));
}

/// Two C producers into an MPSC ring, a C consumer verifying each one's
/// order and bytes.
#[test]
fn c_mpsc_producers_to_c_consumer() {
    let producer = compile("producer-mpsc", &["examples/producer.c"]);
    let consumer = compile("consumer-mpsc", &["examples/consumer.c"]);
    let segment = Segment::new("cmpsc");
    let consumer = Kid::spawn(
        Command::new(&consumer)
            .args(["--name", &segment.0, "--create", "--verify", "--mpsc"])
            .args(["--producers", "2"]),
    );
    let producers: Vec<Kid> = (0..2)
        .map(|id| {
            Kid::spawn(Command::new(&producer).args(["--name", &segment.0, "--mpsc", "--id", &id.to_string()]).args([
                "--count",
                "200000",
                "--min-size",
                "1",
                "--max-size",
                "200",
            ]))
        })
        .collect();
    for producer in producers {
        let output = producer.finish(Duration::from_secs(60));
        assert!(output.status.success(), "{}", text(&output));
    }
    let output = consumer.finish(Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("consumer: messages=400000 "), "{}", text(&output));
}

/// Both C examples in place (`shmring_send_with`, `shmring_recv_with_timeout`),
/// 1,000,000 messages of 0 to 300 bytes verified.
#[test]
fn c_zero_copy_producer_to_c_zero_copy_consumer_1m() {
    let producer = compile("producer-zc", &["examples/producer.c"]);
    let consumer = compile("consumer-zc", &["examples/consumer.c"]);
    let segment = Segment::new("czerocopy");
    let consumer =
        Kid::spawn(Command::new(&consumer).args(["--name", &segment.0, "--create", "--verify", "--zero-copy"]));
    let count = STREAM.to_string();
    let producer =
        Kid::spawn(Command::new(&producer).args(["--name", &segment.0, "--zero-copy", "--count", &count]).args([
            "--min-size",
            "0",
            "--max-size",
            "300",
        ]));
    let output = producer.finish(Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    let output = consumer.finish(Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains(&format!("consumer: messages={STREAM} ")) && out.contains("errors=0"), "{out}");
}

/// Every error code, provoked from C, with a message that names the segment.
fn errors_run(runner: &[&str], tag: &str) {
    let program = compile(&format!("errors-{tag}"), &["tests/errors.c"]);
    let segment = Segment::new(tag);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("file-rings-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(runner.first().copied().unwrap_or(program.to_str().unwrap()));
    if !runner.is_empty() {
        command.args(&runner[1..]).arg(&program);
    }
    let output = Kid::spawn(command.arg(&segment.0).arg(&dir)).finish(Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "{}", text(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    for code in [
        "FULL",
        "EMPTY",
        "TIMEOUT",
        "DISCONNECTED",
        "TOO_LARGE",
        "CORRUPTED",
        "INVALID",
        "NOT_FOUND",
        "EXISTS",
        "PERMISSION",
        "FORKED",
        "BUSY",
        "INCOMPATIBLE",
        "IO",
    ] {
        assert!(out.contains(&format!("ok SHMRING_E_{code}")), "SHMRING_E_{code} not provoked:\n{out}");
    }
    assert!(out.contains("ok SHMRING_E_NO_SPACE") || out.contains("skipped SHMRING_E_NO_SPACE"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_provokes_every_error_code() {
    errors_run(&[], "errors");
}

fn valgrind() -> Option<&'static [&'static str]> {
    const VALGRIND: &[&str] = &["valgrind", "--error-exitcode=9", "--leak-check=full", "--quiet"];
    match Command::new("valgrind").arg("--version").output() {
        Ok(output) if output.status.success() => Some(VALGRIND),
        _ => {
            // CI installs valgrind and sets this, so that there a missing
            // valgrind fails rather than skips.
            assert!(std::env::var_os("SHMRING_FFI_REQUIRE_VALGRIND").is_none(), "valgrind is not installed");
            eprintln!("valgrind is not installed: skipped");
            None
        }
    }
}

#[test]
fn c_errors_under_valgrind() {
    if let Some(valgrind) = valgrind() {
        errors_run(valgrind, "errors-vg");
    }
}

/// A C producer (writing in place) and a C consumer (copying out), both
/// under valgrind memcheck.
#[test]
fn c_stream_under_valgrind() {
    let Some(valgrind) = valgrind() else { return };
    let producer = compile("producer-vg", &["examples/producer.c"]);
    let consumer = compile("consumer-vg", &["examples/consumer.c"]);
    let segment = Segment::new("vgstream");
    let consumer = Kid::spawn(Command::new(valgrind[0]).args(&valgrind[1..]).arg(&consumer).args([
        "--name",
        &segment.0,
        "--create",
        "--verify",
        "--idle-timeout",
        "60",
    ]));
    let producer = Kid::spawn(Command::new(valgrind[0]).args(&valgrind[1..]).arg(&producer).args([
        "--name",
        &segment.0,
        "--count",
        "20000",
        "--min-size",
        "0",
        "--max-size",
        "300",
        "--open-timeout",
        "60",
        "--zero-copy",
    ]));
    let output = producer.finish(Duration::from_secs(120));
    assert!(output.status.success(), "{}", text(&output));
    let output = consumer.finish(Duration::from_secs(120));
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("consumer: messages=20000 "), "{}", text(&output));
}

/// The README's "From C" example is `examples/hello.c`, verbatim, and it
/// compiles and runs.
#[test]
fn readme_c_example_is_hello_c_and_runs() {
    let readme = std::fs::read_to_string(ffi_dir().join("../README.md")).unwrap();
    let section = readme.split("\n## From C\n").nth(1).expect("a \"From C\" section in README.md");
    let section = section.split("\n## ").next().unwrap();
    let lines = 1 + section.trim_end().lines().count();
    assert!(lines <= 25, "the section is {lines} lines, over 25");
    let code = section.split("```c\n").nth(1).expect("a C code block").split("```").next().unwrap();
    let hello = std::fs::read_to_string(ffi_dir().join("examples/hello.c")).unwrap();
    assert_eq!(code, hello, "README.md's example and ffi/examples/hello.c differ");
    let program = compile("hello", &["examples/hello.c"]);
    let segment = Segment::new("hello");
    let output = Kid::spawn(Command::new(&program).arg(&segment.0)).finish(Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from C\n");
    assert!(shmring::unlink(&segment.0).is_err(), "hello left its segment behind");
}

/// The static library links as the header says (`-lpthread -ldl -lm`).
#[test]
fn hello_links_statically() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hello-static-{}", std::process::id()));
    let output = Command::new("cc")
        .args(["-std=c99", "-O2", "-I"])
        .arg(ffi_dir().join("include"))
        .arg(ffi_dir().join("examples/hello.c"))
        .arg(lib_dir().join("libshmring_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .output()
        .expect("running cc");
    assert!(output.status.success(), "{}", text(&output));
    let segment = Segment::new("hello-static");
    let output = Kid::spawn(Command::new(&out).arg(&segment.0)).finish(Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from C\n");
}
