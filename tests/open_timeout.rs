//! `RingOptions::open_timeout`: opening a ring whose creator has not run
//! yet.

mod common;

use common::{spawn_child, SegmentGuard, TempDir};
use shmring::{Consumer, Error, Producer, RingOptions};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point"]
fn child() {
    common::child_main();
}

/// A consumer started before its producer waits for the segment, then gets
/// what a producer process, started 300 ms later, creates and sends.
#[test]
fn open_waits_for_a_creator_that_starts_later() {
    let segment = SegmentGuard::new("open-wait");
    let options = RingOptions::new().capacity(1 << 16).open_timeout(Duration::from_secs(30));
    let name = segment.name().to_owned();
    let started = Instant::now();
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut child = spawn_child("create-produce", &[("SHMRING_NAME", name), ("SHMRING_COUNT", "1000".into())]);
        child.wait_for_line("sent=1000");
        child
    });
    let mut consumer = Consumer::open(segment.name(), &options).expect("opened once created");
    assert!(started.elapsed() >= Duration::from_millis(250), "opened before the creator ran");
    assert_eq!(common::receive_stream(&mut consumer, 1000), 1000);
    drop(creator.join().expect("creator"));
}

/// Without a creator, `open` and `open_file` give up after the timeout
/// with `NotFound`, and the default (zero) gives up at once.
#[test]
fn open_without_a_creator_ends_with_not_found_after_the_timeout() {
    let segment = SegmentGuard::new("open-wait-none");
    let waits = RingOptions::new().open_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = Producer::open(segment.name(), &waits).expect_err("nobody creates it");
    let waited = started.elapsed();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!((Duration::from_millis(200)..Duration::from_secs(10)).contains(&waited), "waited {waited:?}");

    let dir = TempDir::new("open-wait-file");
    let started = Instant::now();
    let err = Consumer::open_file(dir.0.join("ring"), &waits).expect_err("nobody creates it");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    let started = Instant::now();
    let err = Consumer::open(segment.name(), &RingOptions::new()).expect_err("no wait");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(150), "the default waited {:?}", started.elapsed());
}

/// A file ring created while a consumer waits for it is opened.
#[test]
fn open_file_waits_for_the_file() {
    let dir = TempDir::new("open-wait-file2");
    let path = dir.0.join("ring");
    let options = RingOptions::new().capacity(1 << 16).open_timeout(Duration::from_secs(30));
    let (creator_path, creator_options) = (path.clone(), options.clone());
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut producer = Producer::create_file(&creator_path, &creator_options).expect("create file");
        producer.send(b"late").expect("send");
        producer
    });
    let mut consumer = Consumer::open_file(&path, &options).expect("opened once created");
    let mut buf = Vec::new();
    consumer.recv_timeout(&mut buf, Duration::from_secs(30)).expect("recv");
    assert_eq!(buf, b"late");
    drop(creator.join().expect("creator"));
}

/// A creator that fails removes the name it made. If that happens between
/// the opener's `shm_open` and its first look at the object, the object
/// must still count as removed: the open goes back to waiting for the name
/// (`NotFound` when `open_timeout` runs out), never `NotReady`, and never a
/// wait for ever with `ready_timeout(Duration::MAX)`.
#[test]
fn a_creator_that_gives_up_at_once_never_strands_an_opener() {
    use rustix::shm;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    let segment = SegmentGuard::new("open-wait-gives-up");
    let stop = Arc::new(AtomicBool::new(false));
    // Creators that get as far as `shm_open` and give up at once, over and over.
    let churn = std::thread::spawn({
        let (name, stop) = (segment.name().to_owned(), stop.clone());
        move || {
            let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
            let mut created = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if shm::open(name.as_str(), flags, rustix::fs::Mode::from_raw_mode(0o600)).is_ok() {
                    let _ = shm::unlink(name.as_str());
                    created += 1;
                }
            }
            created
        }
    });
    let (results, outcomes) = mpsc::channel();
    // Left running if an open never returns: the test fails and its process ends.
    std::thread::spawn({
        let (name, stop) = (segment.name().to_owned(), stop.clone());
        move || {
            // A finite ready_timeout long enough that only a stranded open
            // (not a creator preempted between its two calls) reaches it.
            for ready_timeout in [Duration::from_secs(10), Duration::MAX].into_iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let options = RingOptions::new().open_timeout(Duration::from_millis(50)).ready_timeout(ready_timeout);
                let outcome = Consumer::open(&name, &options).map(drop);
                if results.send(outcome).is_err() {
                    break;
                }
            }
        }
    });
    let started = Instant::now();
    let mut opens = 0;
    while started.elapsed() < Duration::from_secs(3) {
        match outcomes.recv_timeout(Duration::from_secs(30)) {
            Ok(Err(Error::NotFound { .. })) => opens += 1,
            Ok(other) => panic!("open {opens}: expected NotFound from a name that keeps disappearing, got {other:?}"),
            Err(_) => panic!("open {opens} (open_timeout 50 ms) has not returned for 30 s"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let created = churn.join().expect("churn");
    assert!(opens > 10 && created > 100, "the race was hardly tried: {opens} opens, {created} creations");
}
