//! Adversarial checks of the C API's promises (`tests/adversarial.c`), one
//! process per check so that an abort or a crash fails only that check.
//! Compiled and linked as `tests/c_api.rs` does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `tests/adversarial.c`, compiled once per test run.
fn program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| common::compile("adversarial", &["tests/adversarial.c"], &["-lpthread", "-ldl"]))
}

/// Runs one check of `adversarial.c` (segments `/shmring-adv-CHECK-PID-n`,
/// which the program removes); panics with its output unless it passes.
fn check(name: &str) -> String {
    let base = format!("/shmring-adv-{}-{}", name.replace('_', ""), std::process::id());
    let mut child = Command::new(program())
        .args([name, &base])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the check");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("the check's output");
    for n in 0..10 {
        let _ = shmring::unlink(&format!("{base}-{n}"));
    }
    let text = format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && text.contains(&format!("pass {name}")), "{text}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Held: `shmring_send_with` with a `len` over 4 GiB or `SIZE_MAX` is
/// `SHMRING_E_TOO_LARGE` (no truncation to 32 bits).
#[test]
fn huge_send_with_len_is_too_large() {
    let _ = check("huge_send_with_len");
}

/// Found by the review of recv_into: `shmring_try_recv(c, buf, SIZE_MAX,
/// &len)` made a slice longer than `isize::MAX` (undefined behaviour; with
/// debug assertions a non-unwinding panic, so the process aborted). Now
/// `SHMRING_E_INVALID`, `*len` 0 and the message kept, as the send side
/// refuses such a length.
#[test]
fn huge_recv_cap_is_not_an_abort() {
    let out = check("huge_recv_cap");
    println!("{out}");
}

/// `*len` on every error path: the size needed on TOO_LARGE, 0 otherwise,
/// a refused call's (NULL or re-entered handle) too (found by the review of
/// recv_into: it was left unchanged there).
#[test]
fn len_is_set_on_every_error() {
    let out = check("len_on_every_error");
    println!("{out}");
}

/// Held: `UINT64_MAX` timeouts (send, receive, ready) neither panic nor
/// overflow, wait, and end on a message or a disconnection.
#[test]
fn uint64_max_timeouts_are_unlimited_waits() {
    let _ = check("huge_timeouts");
}

/// Held: every bad option is `SHMRING_E_INVALID` at create, naming the
/// segment and the option.
#[test]
fn bad_options_are_invalid_at_create() {
    let _ = check("options_validated");
}

/// Held: a message larger than the buffer is left in the ring, its size in
/// `*len`, for SPSC and MPSC, in place and copied (mode 0666: no views).
#[test]
fn too_large_consumes_nothing_spsc() {
    let _ = check("too_large_spsc");
}

#[test]
fn too_large_consumes_nothing_mpsc() {
    let _ = check("too_large_mpsc");
}

#[test]
fn too_large_consumes_nothing_spsc_copied() {
    let _ = check("too_large_spsc_copied");
}

#[test]
fn too_large_consumes_nothing_mpsc_copied() {
    let _ = check("too_large_mpsc_copied");
}

/// Held: a failure on another thread leaves this thread's message (and its
/// pointer) alone; a new thread starts with "".
#[test]
fn last_error_is_thread_local() {
    let _ = check("last_error_thread_local");
}

/// Held: a forked child's handles fail with `SHMRING_E_FORKED` (also the
/// in-place calls and flush), and freeing them there neither unlinks the
/// name nor detaches the parent.
#[test]
fn fork_child_frees_inherited_handles_safely() {
    let _ = check("fork_free_in_child");
}

/// Held: the accessors do not crash in a forked child (they report the
/// handle's process-local values and `SHMRING_OK`, not `SHMRING_E_FORKED`).
#[test]
fn fork_child_accessors_do_not_crash() {
    let _ = check("fork_accessors");
}

/// Held: the header says a handle may be moved to another thread, so the
/// types behind the handles must be `Send`.
#[test]
fn handles_may_move_between_threads() {
    fn send<T: Send>() {}
    send::<shmring_ffi::shmring_producer>();
    send::<shmring_ffi::shmring_consumer>();
    send::<shmring_ffi::shmring_options>();
}

/// FINDING: `shmring_send(p, data, len)` with a non-NULL `data` and a `len`
/// over `isize::MAX` makes a slice no Rust value may be (undefined
/// behaviour; with debug assertions, a non-unwinding panic: the process
/// aborts). It should be `SHMRING_E_TOO_LARGE`, as any `len` over the
/// segment's maximum is.
#[test]
fn huge_send_len_is_too_large_not_an_abort() {
    let _ = check("huge_send_len");
}

/// FINDING: a `shmring_send_with` fill callback that sends on its own
/// producer (forbidden by the header, but not detected): the nested send
/// discards the outer claim, and the outer call then returns `SHMRING_OK`
/// for a message that is never published (silently lost). It is also
/// undefined behaviour in Rust (two `&mut` to one handle). The nested call
/// should be refused.
#[test]
fn reentrant_send_with_is_refused() {
    let _ = check("reentrant_send");
}

/// FINDING: a `shmring_recv_with` read callback that receives on its own
/// consumer gets the same message again (delivered twice), and the handle is
/// aliased mutably (undefined behaviour). The nested call should be refused.
#[test]
fn reentrant_recv_with_is_refused() {
    let _ = check("reentrant_recv");
}

/// FINDING: the C programs load the library cargo built for this run. Cargo
/// runs tests with `LD_LIBRARY_PATH` starting with the profile directory
/// (`target/debug`), whose `libshmring_ffi.so` is refreshed only by `cargo
/// build`; it beats the programs' RUNPATH, so `cargo test` after a change to
/// `src/` ran the C tests (also `c_api.rs`'s) against the old library.
#[test]
fn c_programs_load_the_library_built_for_this_run() {
    let out = check("which_library");
    let loaded = out.lines().find_map(|l| l.strip_prefix("library ")).expect("the library's path");
    let built = std::env::current_exe().unwrap().parent().unwrap().join("libshmring_ffi.so");
    assert!(
        std::fs::read(loaded).unwrap() == std::fs::read(&built).unwrap(),
        "the C program loaded {loaded}, not the library built for this run ({})",
        built.display()
    );
}
