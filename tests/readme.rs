//! Every shell command the README shows, run as shown.
//!
//! The commands are taken from the README itself: every line of a ```sh,
//! ```bash, ```shell or ```console block, every `$ ` line of a ```text
//! transcript, and the `cargo run --release --example ...` commands quoted
//! inline. Each runs exactly as written, with these exceptions, each listed in
//! [`PLANS`] with its reason (a plan for a command the README no longer shows
//! fails the test, so the list cannot go stale):
//!
//! * `cargo test` is what runs this test: it is checked to build every target
//!   (`--no-run`) instead of recursing;
//! * commands that run for minutes or until interrupted run a bounded form of
//!   themselves (`--quick`, criterion's `--test`, `--iterations 2`);
//! * `bash .ci/loom` (several minutes; `.ci/run` runs it in full) and the
//!   iceoryx2 comparison (needs libclang-dev and an iceoryx2 build) run only
//!   with `SHMRING_README_FULL=1`; otherwise the loom line runs the script's
//!   own list check and the iceoryx2 line is reported as not run.
//!
//! A block is one shell session: a command ending in `&` runs in the
//! background until the end of its block, when it must have exited within a
//! deadline. Every command has a deadline, runs in its own process group, and
//! is killed with its group when the block ends. Each block runs in a private
//! mount namespace with its own `/dev/shm` (when `unshare` is allowed, as for
//! root), so the README's segment names (`/demo`, `/jobs`, `/live`) collide
//! with nothing and `shmring rm --stale` sees only the block's own segments;
//! otherwise the block runs in the real one and its names are unlinked after.
//!
//! The test fails if a command exits non-zero or times out, if any output
//! reports `errors=N` with N > 0, if a `--verify` consumer printed no summary,
//! or if a transcript's shown output has a line whose first word is in no line
//! of the real output.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A command as the README shows it.
#[derive(Debug, Clone)]
struct Shown {
    /// README line number (1-based).
    line: usize,
    /// The command, `$ ` and a trailing `&` removed, comment kept.
    command: String,
    background: bool,
    /// The output a transcript shows after the command.
    output: Vec<String>,
}

/// The commands of one block (or one inline quote), in order.
#[derive(Debug)]
struct Block {
    line: usize,
    commands: Vec<Shown>,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("read README.md")
}

/// The command without its trailing comment, whitespace collapsed: the key
/// [`PLANS`] uses.
fn normalise(command: &str) -> String {
    let code = match command.find(" #") {
        Some(at) => &command[..at],
        None => command,
    };
    code.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn extract(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut fence: Option<(String, Block)> = None;
    for (i, raw) in readme.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            match fence.take() {
                Some((_, block)) => {
                    if !block.commands.is_empty() {
                        blocks.push(block);
                    }
                }
                None => fence = Some((info.trim().to_owned(), Block { line, commands: Vec::new() })),
            }
            continue;
        }
        match &mut fence {
            Some((info, block)) => {
                let shell = matches!(info.as_str(), "sh" | "bash" | "shell" | "console");
                let command = if let Some(c) = trimmed.strip_prefix("$ ") {
                    Some(c)
                } else if shell && !trimmed.is_empty() && !trimmed.starts_with('#') {
                    Some(trimmed)
                } else {
                    None
                };
                if info == "text" || shell {
                    match command {
                        Some(c) => {
                            let code = normalise(c);
                            let background = code.ends_with('&') && !code.ends_with("&&");
                            let command = if background {
                                // Drop the `&` (and the comment after it, if any).
                                code.trim_end_matches('&').trim_end().to_owned()
                            } else {
                                c.to_owned()
                            };
                            block.commands.push(Shown { line, command, background, output: Vec::new() });
                        }
                        None if info == "text" && !trimmed.is_empty() => {
                            if let Some(last) = block.commands.last_mut() {
                                last.output.push(trimmed.to_owned());
                            }
                        }
                        None => {}
                    }
                }
            }
            None => {
                // Inline quotes of example commands, e.g. `cargo run --release
                // --example demo -- --fork`.
                for (n, quoted) in raw.split('`').enumerate() {
                    if n % 2 == 1 && quoted.starts_with("cargo run --release --example ") && !quoted.contains("...") {
                        let command = Shown { line, command: quoted.to_owned(), background: false, output: Vec::new() };
                        blocks.push(Block { line, commands: vec![command] });
                    }
                }
            }
        }
    }
    assert!(fence.is_none(), "README.md ends inside a code block");
    blocks
}

/// How a README command is run, when not exactly as shown.
struct Plan {
    /// The README command (normalised: no comment, single spaces).
    shown: &'static str,
    /// What runs instead.
    instead: &'static str,
    /// With `SHMRING_README_FULL=1`, what runs then (`None`: the command as
    /// shown).
    full: Option<&'static str>,
    why: &'static str,
}

/// `instead` of "": not run (reported as such).
const PLANS: &[Plan] = &[
    Plan {
        shown: "cargo test --features tokio",
        instead: "cargo test --features tokio --no-run",
        full: Some("cargo test --features tokio --no-run"),
        why:
            "this test runs inside `cargo test`; running it again would recurse, so it checks that every target builds",
    },
    Plan {
        shown: "cargo bench --bench ipc",
        instead: "cargo bench --bench ipc -- --quick --only ideal-ring",
        full: Some("cargo bench --bench ipc -- --quick"),
        why: "the full run takes minutes, and .ci/run runs every row with --quick: here one row of it",
    },
    Plan {
        shown: "cargo bench --bench ipc -- --quick",
        instead: "cargo bench --bench ipc -- --quick --only shmring-select",
        full: None,
        why: ".ci/run runs this very command after the tests: here the same run of a few rows",
    },
    Plan {
        shown: "cargo bench --features compare-iceoryx2 --bench ipc",
        instead: "",
        full: Some("cargo bench --features compare-iceoryx2 --bench ipc -- --quick"),
        why: "needs libclang-dev and an iceoryx2 build: run with SHMRING_README_FULL=1",
    },
    Plan {
        shown: "cargo bench --features compare-shmem-ipc --bench ipc",
        instead: "cargo bench --features compare-shmem-ipc --bench ipc -- --quick --only shmem",
        full: Some("cargo bench --features compare-shmem-ipc --bench ipc -- --quick"),
        why: "the full run takes minutes: the shmem-ipc rows with --quick",
    },
    Plan {
        shown: "cargo bench --bench ring",
        instead: "cargo bench --bench ring -- --test",
        full: None,
        why: "criterion's --test runs every benchmark once",
    },
    Plan {
        shown: "cargo bench --bench pages",
        instead: "cargo bench --bench pages -- --quick",
        full: None,
        why: "one repetition of four laps instead of nine of sixteen (its huge-page rows say so where none are free)",
    },
    Plan {
        shown: "bash .ci/loom",
        instead: "bash .ci/loom --check-lists",
        full: None,
        why: "the models and mutants take several minutes and .ci/run runs them; here only the script's list check \
              (SHMRING_README_FULL=1 runs it all)",
    },
];

fn full() -> bool {
    std::env::var_os("SHMRING_README_FULL").is_some_and(|v| v != "0")
}

/// What to run for `shown`, and why it differs (if it does).
fn plan(shown: &str) -> (Option<String>, Option<&'static str>) {
    let key = normalise(shown);
    match PLANS.iter().find(|p| p.shown == key) {
        None => (Some(shown.to_owned()), None),
        Some(p) if full() => (Some(p.full.unwrap_or(shown).to_owned()), p.full.map(|_| p.why)),
        Some(p) if p.instead.is_empty() => (None, Some(p.why)),
        Some(p) => (Some(p.instead.to_owned()), Some(p.why)),
    }
}

/// A private mount namespace with its own tmpfs on `/dev/shm`, held open by
/// a sleeping process that commands join with `nsenter`.
struct Namespace(Child);

impl Namespace {
    fn new() -> Option<Namespace> {
        let script = "mount -t tmpfs -o mode=1777 shmring-readme /dev/shm && echo ready && exec sleep 3600";
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut first = String::new();
        let stdout = holder.stdout.take()?;
        // `ready` or EOF comes at once; the holder only sleeps after it.
        let _ = BufReader::new(stdout).read_line(&mut first);
        if first.trim() == "ready" {
            Some(Namespace(holder))
        } else {
            let _ = holder.kill();
            let _ = holder.wait();
            None
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command running in its own process group, its output collected.
struct Running {
    what: String,
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

/// The directory holding the `shmring` binary of this build. It belongs to
/// another package (shmring-cli, in cli/), so Cargo does not hand it to this
/// test: it is looked for where Cargo puts it, in the target directory of this
/// test executable (`target/<profile>/deps/readme-...` next to
/// `target/<profile>/shmring`). `cargo test` at the root builds it (cli is a
/// default member) before it runs any test.
fn shmring_bin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test executable's directory");
    let dir = if deps.ends_with("deps") { deps.parent().expect("target/<profile>") } else { deps };
    let bin = dir.join("shmring");
    assert!(
        bin.is_file(),
        "the README's commands need the shmring binary, and {} does not exist: build it with cargo build -p shmring-cli \
         (cargo test at the workspace root does)",
        bin.display()
    );
    dir.to_owned()
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn start(what: &str, run: &str, namespace: Option<&Namespace>) -> Running {
        let dir = env!("CARGO_MANIFEST_DIR");
        let script = format!("cd '{dir}' && {run}");
        let mut cmd = match namespace {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.args(["--target", &ns.0.id().to_string(), "--mount", "--", "bash", "-c", &script]);
                c
            }
            None => {
                let mut c = Command::new("bash");
                c.args(["-c", &script]);
                c
            }
        };
        // `shmring` as installed: the binary built next to this test.
        let bin = shmring_bin_dir();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).expect("PATH");
        cmd.env("PATH", path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let out = Some(collect(child.stdout.take().expect("stdout")));
        let err = Some(collect(child.stderr.take().expect("stderr")));
        Running { what: what.to_owned(), child, out, err, status: None }
    }

    fn kill_group(&mut self) {
        if let Some(pgid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }

    /// Waits for the command to exit (at most until `deadline`: then its
    /// group is killed), and returns its status and output.
    fn finish(&mut self, deadline: Instant) -> Result<(ExitStatus, String, String), String> {
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| format!("{}: wait: {e}", self.what))? {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill_group();
                let status = self.child.wait().map_err(|e| e.to_string())?;
                let (out, err) = self.output(Instant::now() + Duration::from_secs(10));
                return Err(format!(
                    "{}: still running at its deadline, killed ({status})\n--- stdout\n{}\n--- stderr\n{}",
                    self.what,
                    tail(&out),
                    tail(&err)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.status = Some(status);
        // Whatever it left running in its group would hold the pipes open.
        let (out, err) = self.output(Instant::now() + Duration::from_secs(30));
        Ok((status, out, err))
    }

    /// The collected output; kills the group if the pipes are still open at
    /// `deadline`.
    fn output(&mut self, deadline: Instant) -> (String, String) {
        while !self.out.as_ref().is_none_or(JoinHandle::is_finished)
            || !self.err.as_ref().is_none_or(JoinHandle::is_finished)
        {
            if Instant::now() >= deadline {
                self.kill_group();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let join = |h: Option<JoinHandle<String>>| h.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (join(self.out.take()), join(self.err.take()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Leftovers of the command (and of anything it started) go with it.
        self.kill_group();
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// How long a command may take: builds happen inside cargo commands.
fn limit(run: &str) -> Duration {
    if run.starts_with("cargo ") || run.starts_with("bash ") {
        Duration::from_secs(900)
    } else {
        Duration::from_secs(120)
    }
}

/// What a finished command must have shown; returns the problems.
fn check(shown: &Shown, run: &str, status: ExitStatus, out: &str, err: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let at = format!("README line {}: `{run}`", shown.line);
    if !status.success() {
        problems.push(format!(
            "{at} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            status
                .code()
                .map_or_else(|| format!("signal {}", status.signal().unwrap_or(0)), |c| format!("exit code {c}")),
            tail(out),
            tail(err)
        ));
    }
    for text in [out, err] {
        for line in text.lines() {
            let errors =
                line.split_whitespace().find_map(|w| w.strip_prefix("errors=")).and_then(|n| n.parse::<u64>().ok());
            if errors.is_some_and(|n| n > 0) {
                problems.push(format!("{at} reported errors: {line}\n--- stderr (the first errors)\n{}", tail(err)));
            }
        }
    }
    if run.contains("--verify") && !out.lines().any(|l| l.contains("errors=0")) {
        problems
            .push(format!("{at}: the verifying consumer printed no summary with errors=0\n--- stdout\n{}", tail(out)));
    }
    for expected in &shown.output {
        let word = expected.split_whitespace().next().unwrap_or_default();
        if !out.lines().any(|l| l.split_whitespace().next() == Some(word)) {
            problems.push(format!(
                "{at}: the README shows a line starting {word:?} ({expected:?}); the output has none\n--- stdout\n{}",
                tail(out)
            ));
        }
    }
    problems
}

/// The participants the block's background example processes have made
/// attach so far, per segment name: (consumer, producers).
#[derive(Default)]
struct Attached(Vec<(String, bool, usize)>);

/// `shmring stat NAME --json` in the block's namespace.
fn stat_json(name: &str, namespace: Option<&Namespace>) -> Option<serde_json::Value> {
    let mut stat = Running::start("stat", &format!("shmring stat {name} --json"), namespace);
    let (status, out, _) = stat.finish(Instant::now() + Duration::from_secs(30)).ok()?;
    status.success().then(|| serde_json::from_str(&out).ok()).flatten()
}

/// After starting a background example consumer or producer on `--name X`:
/// waits until it has attached to X (the segment's slots say so), or has
/// exited, or the deadline passes. The next command then finds the segment
/// it made and the participants a transcript shows.
fn wait_attached(
    run: &str,
    attached: &mut Attached,
    namespace: Option<&Namespace>,
    running: &mut Running,
) -> Result<(), String> {
    let words: Vec<&str> = run.split_whitespace().collect();
    let example = words.windows(2).find(|w| w[0] == "--example").map(|w| w[1]);
    let name = words.windows(2).find(|w| w[0] == "--name").map(|w| w[1]);
    let (Some(example), Some(name)) = (example, name) else { return Ok(()) };
    let at = match attached.0.iter().position(|(n, _, _)| n == name) {
        Some(at) => at,
        None => {
            attached.0.push((name.to_owned(), false, 0));
            attached.0.len() - 1
        }
    };
    match example {
        "consumer" => attached.0[at].1 = true,
        "producer" => attached.0[at].2 += 1,
        _ => return Ok(()),
    }
    let (_, consumer, producers) = attached.0[at];
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if running.child.try_wait().ok().flatten().is_some() {
            return Ok(()); // ended already: its status is checked with the block's
        }
        if let Some(json) = stat_json(name, namespace) {
            let used = |slot: &serde_json::Value| slot["state"].as_str().is_some_and(|s| s != "empty");
            let producers_seen = json["producers"].as_array().map_or(0, |p| p.iter().filter(|s| used(s)).count());
            if (!consumer || used(&json["consumer"])) && producers_seen >= producers {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{}: never attached to {name} within 600 s", running.what));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one block as a shell session; returns what went wrong and what was
/// not run as shown.
fn run_block(block: &Block, done: &mut Vec<(String, String)>, report: &mut Vec<String>) -> Vec<String> {
    let namespace = Namespace::new();
    if namespace.is_none() {
        report
            .push(format!("block at line {}: no private /dev/shm (unshare refused); ran in the real one", block.line));
    }
    let mut problems = Vec::new();
    let mut background: Vec<(Shown, String, Running)> = Vec::new();
    let mut attached = Attached::default();
    for shown in &block.commands {
        let (run, why) = plan(&shown.command);
        let Some(run) = run else {
            report.push(format!("line {}: `{}` NOT RUN: {}", shown.line, shown.command, why.unwrap_or_default()));
            continue;
        };
        if let Some(why) = why {
            report.push(format!("line {}: `{}` ran as `{run}`: {why}", shown.line, normalise(&shown.command)));
        }
        // Self-contained cargo commands shown twice run once; the second
        // showing's output is checked against the first run's.
        let key = normalise(&run);
        if let Some((_, out)) = done.iter().find(|(k, _)| key.starts_with("cargo ") && !shown.background && *k == key) {
            report.push(format!("line {}: `{key}` ran already; its output checked against that run", shown.line));
            problems.extend(check(shown, &run, ExitStatus::from_raw(0), out, ""));
            continue;
        }
        let what = format!("README line {}: `{run}`", shown.line);
        eprintln!("readme: {what}{}", if shown.background { " &" } else { "" });
        let mut running = Running::start(&what, &run, namespace.as_ref());
        if shown.background {
            // As a person typing the next line would: once this one is up.
            if let Err(e) = wait_attached(&run, &mut attached, namespace.as_ref(), &mut running) {
                problems.push(e);
            }
            background.push((shown.clone(), run, running));
            continue;
        }
        match running.finish(Instant::now() + limit(&run)) {
            Ok((status, out, err)) => {
                problems.extend(check(shown, &run, status, &out, &err));
                done.push((key, out));
            }
            Err(e) => problems.push(e),
        }
    }
    // The background processes of the session must end on their own.
    let deadline = Instant::now() + Duration::from_secs(300);
    for (shown, run, mut running) in background {
        match running.finish(deadline) {
            Ok((status, out, err)) => problems.extend(check(&shown, &run, status, &out, &err)),
            Err(e) => problems.push(e),
        }
    }
    if namespace.is_none() {
        // The names the block used, in the real /dev/shm.
        for shown in &block.commands {
            for word in shown.command.split_whitespace() {
                if word.len() > 1 && word.starts_with('/') && !word[1..].contains('/') {
                    let _ = shmring::unlink(word);
                }
            }
        }
    }
    problems
}

/// The extraction finds the README's commands, and every plan names one of
/// them (a plan for a command the README no longer shows is stale).
#[test]
fn the_readme_commands_are_found_and_every_plan_is_used() {
    let blocks = extract(&readme());
    let commands: Vec<String> = blocks.iter().flat_map(|b| b.commands.iter().map(|c| normalise(&c.command))).collect();
    for must in [
        "cargo run --release --example demo",
        "cargo run --release --example producer -- --name /demo --count 10000000 --min-size 1 --max-size 512",
        "shmring rm --stale",
    ] {
        assert!(commands.iter().any(|c| c == must), "`{must}` not extracted from {commands:#?}");
    }
    for plan in PLANS {
        assert!(
            commands.iter().any(|c| c == plan.shown),
            "a plan for `{}`, which the README does not show",
            plan.shown
        );
    }
    let background = blocks.iter().flat_map(|b| &b.commands).filter(|c| c.background).count();
    assert!(background >= 3, "background commands (ending in &): {background}");
}

#[test]
fn every_readme_command_runs_and_verifies() {
    let blocks = extract(&readme());
    let (mut done, mut report, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    for block in &blocks {
        problems.extend(run_block(block, &mut done, &mut report));
    }
    eprintln!("readme: {} blocks, {} commands, {:.0?}", blocks.len(), done.len(), start.elapsed());
    for line in &report {
        eprintln!("readme: {line}");
    }
    assert!(problems.is_empty(), "{} README command problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}

/// README.md and every `docs/*.md`, with their paths.
fn documents() -> Vec<(std::path::PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).expect("read a document"))).collect()
}

/// The document without its fenced code blocks (each line of one blanked).
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The `fn` names a Rust file defines (tests, proptest cases, loom models).
fn fn_names(file: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut names = Vec::new();
    for (at, _) in text.match_indices("fn ") {
        if at > 0 && text.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[at + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    Some(names)
}

/// Whether `name` matches `pattern`, in which one `*` stands for any text.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post),
        None => pattern == name,
    }
}

/// The test references of a document: (file relative to the crate root,
/// fn pattern). Three forms: `tests/NAME.rs::fn` (also under `ffi/` and
/// `loom-tests/`) anywhere; `NAME::fn` in backticks, both snake_case, for
/// `tests/NAME.rs` (and `a::b::tests::fn` when `src/a/b.rs` exists); and the models
/// listed in backticks after the word "loom" (found in `loom-tests/tests/`).
fn test_references(text: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = prose(text);
    let mut refs = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || "_/.:*-".contains(c);
    for token in text.split(|c: char| !word(c)) {
        if let Some((path, rest)) = token.split_once(".rs::") {
            if path.starts_with("tests/")
                || path.starts_with("ffi/tests/")
                || path.starts_with("cli/tests/")
                || path.starts_with("loom-tests/tests/")
            {
                let pattern: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || "_*".contains(*c)).collect();
                refs.push((format!("{path}.rs"), pattern));
            }
        }
    }
    for line in text.lines() {
        for (n, span) in line.split('`').enumerate() {
            if n % 2 == 0 || !span.chars().all(|c| c.is_ascii_alphanumeric() || "_:*".contains(c)) {
                continue;
            }
            let parts: Vec<&str> = span.split("::").collect();
            // Two snake_case parts name a test in tests/ (or cli/tests/,
            // ffi/tests/; crate paths
            // such as `shmring::payload` aside): a file that is not there
            // fails too.
            let snake = |p: &str| p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_*".contains(c));
            if parts.len() == 2
                && parts.iter().all(|p| snake(p))
                && !["shmring", "std", "core", "alloc", "crate", "libc", "rustix", "mem", "ptr"].contains(&parts[0])
            {
                // In the library's tests/, or another package's.
                let file = ["tests", "cli/tests", "ffi/tests"]
                    .iter()
                    .map(|dir| format!("{dir}/{}.rs", parts[0]))
                    .find(|file| root.join(file).is_file())
                    .unwrap_or_else(|| format!("tests/{}.rs", parts[0]));
                refs.push((file, parts[1].to_owned()));
            } else if parts.len() >= 4 && parts[parts.len() - 2] == "tests" {
                let file = format!("src/{}.rs", parts[..parts.len() - 2].join("/"));
                if root.join(&file).is_file() {
                    refs.push((file, parts[parts.len() - 1].to_owned()));
                }
            }
        }
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (at, _) in flat.match_indices("loom `") {
        let mut rest = &flat[at + "loom ".len()..];
        while let Some(after) = rest.strip_prefix('`') {
            let Some((name, tail)) = after.split_once('`') else { break };
            refs.push(("loom-tests/tests/*.rs".to_owned(), name.to_owned()));
            rest = tail.trim_start_matches([',', ' ']);
            rest = rest.strip_prefix("and ").unwrap_or(rest);
        }
    }
    refs
}

/// Every test the README and docs/*.md name exists: a reference to a file
/// that is not there, or to a `fn` the file does not define, fails.
#[test]
fn every_test_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loom: Vec<String> = std::fs::read_dir(root.join("loom-tests/tests"))
        .expect("read loom-tests/tests")
        .filter_map(|e| fn_names(&e.ok()?.path()))
        .flatten()
        .collect();
    let (mut checked, mut problems) = (0, Vec::new());
    for (doc, text) in documents() {
        for (file, pattern) in test_references(&text) {
            checked += 1;
            let names = if file == "loom-tests/tests/*.rs" { Some(loom.clone()) } else { fn_names(&root.join(&file)) };
            match names {
                None => problems.push(format!("{}: `{file}::{pattern}`: no such file", doc.display())),
                Some(names) if !names.iter().any(|n| matches(&pattern, n)) => {
                    problems.push(format!("{}: `{file}::{pattern}`: no such fn in {file}", doc.display()))
                }
                Some(_) => {}
            }
        }
    }
    eprintln!("docs: {checked} test references checked");
    assert!(checked >= 50, "only {checked} test references found: is the extraction broken?");
    assert!(problems.is_empty(), "{} test reference(s) name nothing:\n{}", problems.len(), problems.join("\n"));
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and
/// `_` dropped, spaces made `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every relative link of the README and docs/*.md names an existing file,
/// and its `#anchor` a heading of that file.
#[test]
fn every_relative_link_in_the_docs_resolves() {
    let (mut checked, mut problems) = (0, Vec::new());
    for (doc, text) in documents() {
        let dir = doc.parent().expect("a document's directory");
        let text = prose(&text);
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() { doc.clone() } else { dir.join(file) };
            if !path.exists() {
                problems.push(format!("{}: link `{target}`: no such file", doc.display()));
                continue;
            }
            if !fragment.is_empty() {
                let linked = std::fs::read_to_string(&path).unwrap_or_default();
                let anchors: Vec<String> = prose(&linked)
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|h| anchor(h.trim_start_matches('#')))
                    .collect();
                if !anchors.iter().any(|a| a == fragment) {
                    problems.push(format!("{}: link `{target}`: no heading with that anchor", doc.display()));
                }
            }
        }
    }
    eprintln!("docs: {checked} relative links checked");
    assert!(checked >= 10, "only {checked} relative links found");
    assert!(problems.is_empty(), "{} broken link(s):\n{}", problems.len(), problems.join("\n"));
}
