//! The test helpers' own promise: a test that gives up on a hung thread
//! (`common::within`) leaves no segment, directory or process behind once
//! its process has exited, although the thread's guards never drop.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

#[test]
#[ignore = "run as a child process by the tests"]
fn child() {
    common::child_main();
}

/// Whether process `pid` is gone (a zombie not yet reaped by whoever
/// inherited it counts as gone: it runs no more).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_thread_given_up_on_leaves_nothing_behind_at_exit() {
    let child =
        common::spawn_child("hang-holding-guards", &[("SHMRING_NAME", String::new()), ("RUST_BACKTRACE", "0".into())]);
    let (ok, out) = child.finish(Duration::from_secs(120));
    assert!(!ok, "the child's test should have failed: its thread hung past `within`'s limit\n{out}");
    let held =
        out.lines().find_map(|l| l.strip_prefix("holding ")).unwrap_or_else(|| panic!("no holding line:\n{out}"));
    let [segment, dir, grandchild]: [&str; 3] =
        held.split(' ').collect::<Vec<_>>().try_into().unwrap_or_else(|_| panic!("holding line {held:?}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = [
        (!gone(grandchild)).then(|| format!("process {grandchild}")),
        Path::new(&format!("/dev/shm{segment}")).exists().then(|| format!("segment {segment}")),
        Path::new(dir).exists().then(|| format!("directory {dir}")),
    ];
    // Failing, this test cleans up after the child itself.
    // (Only a process still there: a pid that is gone may be reused.)
    if let Some(pid) = grandchild.parse::<libc::pid_t>().ok().filter(|_| !gone(grandchild)) {
        // SAFETY: a plain system call.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = shmring::unlink(segment);
    let _ = std::fs::remove_dir_all(dir);
    let left: Vec<String> = left.into_iter().flatten().collect();
    assert!(left.is_empty(), "left behind after the child exited: {}", left.join(", "));
}

#[test]
fn only_names_of_this_process_are_removed() {
    let me = std::process::id();
    let mine = common::unique_name("mine");
    assert!(common::leftovers::named_by(&mine, me));
    assert!(common::leftovers::named_by(&format!("{mine}-3"), me), "a name made from it by appending");
    assert!(common::leftovers::named_by(&format!("{mine}-busy"), me));
    assert!(!common::leftovers::named_by(&mine, me + 1));
    // Another process's name whose counter or tag holds our pid.
    assert!(!common::leftovers::named_by(&format!("/shmring-test-x-p{}-{me}-1", me + 1), me));
    assert!(!common::leftovers::named_by(&format!("/shmring-test-{me}-p{}-0-1-{me}", me + 1), me));
    assert!(!common::leftovers::named_by(&format!("/other-p{me}-0-1"), me));
}
