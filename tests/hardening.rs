//! Permissions, resource limits and stale segments.

mod common;

use common::{spawn_child, wait_for_line, within, SegmentGuard};
use shmring::{Consumer, Error, Producer, RingOptions};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    match std::env::var("SHMRING_CHILD_ROLE").as_deref() {
        // Runs as another user: try every way in and print what each gave.
        Ok("open-as-other") => {
            common::child_watchdog();
            let name = std::env::var("SHMRING_NAME").expect("name");
            let strict = RingOptions::new();
            let lenient = RingOptions::new().allow_foreign_owner(true);
            let verdict = |r: Result<(), Error>| match r {
                Ok(()) => "ok".to_string(),
                Err(Error::PermissionDenied { detail, .. }) => format!("denied({detail})"),
                Err(e) => format!("other({e})"),
            };
            println!("consumer={}", verdict(Consumer::open(&name, &strict).map(drop)));
            println!("producer={}", verdict(Producer::open(&name, &strict).map(drop)));
            println!("lenient={}", verdict(Producer::open(&name, &lenient).map(drop)));
            println!("inspect={}", verdict(shmring::inspect::inspect(&name).map(drop)));
        }
        _ => common::child_main(),
    }
}

fn run_as_nobody(name: &str) -> Option<String> {
    let is_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv (util-linux) to run a child as another user, as CI has");
        return None;
    }
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("SHMRING_CHILD_ROLE", "open-as-other")
        .env("SHMRING_NAME", name);
    // Its opens fail or succeed at once; the child's own watchdog ends it
    // if not, and this deadline fails the test.
    let out = within(Duration::from_secs(700), "the child run as nobody", move || command.output()).expect("setpriv");
    assert!(out.status.success(), "child as nobody failed: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn another_user_is_refused_by_the_kernel_and_by_the_owner_check() {
    // Mode 0600: the kernel itself refuses another user.
    let private = SegmentGuard::new("perm-private");
    RingOptions::new().capacity(8192).create(private.name()).expect("create");
    let Some(out) = run_as_nobody(private.name()) else { return };
    assert!(out.contains("consumer=denied(shm_open"), "{out}");
    assert!(out.contains("producer=denied(shm_open"), "{out}");
    assert!(out.contains("lenient=denied(shm_open"), "{out}");
    assert!(out.contains("inspect=denied(shm_open"), "{out}");

    // Mode 0666: the kernel would let anyone in; shmring refuses a segment of
    // another user unless the caller opts in.
    let shared = SegmentGuard::new("perm-shared");
    RingOptions::new().capacity(8192).mode(0o666).create(shared.name()).expect("create");
    let out = run_as_nobody(shared.name()).expect("ran before");
    assert!(out.contains("consumer=denied(it belongs to uid 0"), "{out}");
    assert!(out.contains("producer=denied(it belongs to uid 0"), "{out}");
    assert!(out.contains("lenient=ok"), "{out}");
    assert!(out.contains("inspect=ok"), "{out}");
}

#[test]
fn a_capacity_beyond_dev_shm_fails_at_creation_not_with_sigbus_later() {
    let free = Command::new("df").args(["-B1", "--output=avail", "/dev/shm"]).output().expect("df");
    let free: u64 =
        String::from_utf8_lossy(&free.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output");
    let capacity = (free + 1).next_power_of_two();
    let segment = SegmentGuard::new("nospace");
    let start = Instant::now();
    match Producer::create(segment.name(), &RingOptions::new().capacity(capacity as usize)) {
        Err(e @ Error::NoSpace { .. }) => {
            assert!(e.to_string().contains(segment.name()) && e.to_string().contains("/dev/shm"), "{e}");
        }
        other => panic!("a {capacity}-byte ring with {free} bytes free: {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!std::path::Path::new(&segment.path()).exists(), "the failed segment is removed");
}

#[test]
fn remove_stale_removes_only_segments_whose_processes_all_died() {
    let options = RingOptions::new().capacity(8192).unlink_on_drop(false);
    let live = SegmentGuard::new("stale-live");
    let idle = SegmentGuard::new("stale-idle");
    let stale = SegmentGuard::new("stale-dead");
    let _consumer = Consumer::create(live.name(), &options).expect("live");
    options.create(idle.name()).expect("idle");
    options.create(stale.name()).expect("stale");
    let mut holder = spawn_child("hold-producer", &[("SHMRING_NAME", stale.0.clone())]);
    wait_for_line(&mut holder, "attached");
    assert!(shmring::inspect::inspect(stale.name()).expect("inspect").producers[0].alive);
    assert!(!shmring::inspect::inspect(stale.name()).unwrap().is_stale());
    holder.kill_alive("the producer holder");
    assert!(shmring::inspect::inspect(stale.name()).unwrap().is_stale());

    let removed = shmring::inspect::remove_stale().expect("remove_stale");
    assert!(removed.contains(&stale.0), "{removed:?}");
    assert!(!std::path::Path::new(&stale.path()).exists());
    for kept in [&live, &idle] {
        assert!(!removed.contains(&kept.0));
        assert!(std::path::Path::new(&kept.path()).exists(), "{} was removed", kept.0);
    }
}
