//! The examples' payloads and verifier (`examples/common`): every payload
//! size from 0 bytes up is produced and verified, in SPSC and MPSC streams,
//! and a wrong byte, a lost or repeated message, or a stray producer is an
//! error at any size. `tests/readme.rs` runs the examples themselves.

#[path = "../examples/common/mod.rs"]
mod example;

use example::{check_sizes, fill, Sizes, Summary, Verifier, FULL};

fn summary() -> Summary {
    Summary { role: "test".into(), ..Summary::default() }
}

/// Message `seq` of producer `id`, `len` bytes, as the example producer makes it.
fn message(mpsc: bool, id: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill(mpsc, id, seq, &mut buf);
    buf
}

/// Feeds `messages` to a fresh verifier (MPSC: of two producers); returns
/// the errors it counted.
fn errors(mpsc: bool, messages: &[Vec<u8>]) -> u64 {
    let mut verifier = if mpsc { Verifier::new(true).producers_expected(2) } else { Verifier::new(false) };
    let mut s = summary();
    for m in messages {
        verifier.observe(m, true, &mut s);
    }
    assert_eq!(s.messages, messages.len() as u64);
    s.errors
}

#[test]
fn spsc_streams_of_every_size_from_zero_verify_clean() {
    for first in [0usize, 5, 11, 12, 200] {
        // Sizes cycle through 0..=600 from `first`, so some streams start
        // with messages too short to name their producer.
        let stream: Vec<Vec<u8>> =
            (0..3000u64).map(|seq| message(false, 7, seq, (first + seq as usize) % 601)).collect();
        let mut verifier = Verifier::new(false);
        let mut s = summary();
        for m in &stream {
            verifier.observe(m, true, &mut s);
        }
        assert_eq!(s.errors, 0, "stream starting at size {first}");
        assert_eq!(verifier.producers(), 1);
    }
}

#[test]
fn the_readme_spsc_stream_verifies_clean() {
    // `producer --count .. --min-size 1 --max-size 512`, as the README runs it
    // (the sizes of its first 200,000 messages; 2% are under 12 bytes).
    let mut sizes = Sizes::new(64, Some(1), Some(512), 0x5eed);
    let mut verifier = Verifier::new(false);
    let mut s = summary();
    let mut short = 0;
    for seq in 0..200_000u64 {
        let len = sizes.next();
        short += u64::from(len < FULL);
        verifier.observe(&message(false, 0, seq, len), true, &mut s);
    }
    assert!(short > 1000, "{short} short messages");
    assert_eq!(s.errors, 0);
}

#[test]
fn spsc_errors_are_found_at_every_size() {
    for len in 0..40usize {
        let stream: Vec<Vec<u8>> =
            (0..6u64).map(|seq| message(false, 3, seq, if seq == 0 { 20 } else { len })).collect();
        assert_eq!(errors(false, &stream), 0, "len {len}");
        // Every byte of every message is checked.
        for victim in 1..6 {
            for at in 0..len {
                let mut bad = stream.clone();
                bad[victim][at] ^= 0x40;
                assert!(errors(false, &bad) > 0, "len {len}: byte {at} of message {victim} flipped");
            }
        }
        // A lost message, then a message of this size.
        let mut lost = stream.clone();
        lost.remove(2);
        lost.push(message(false, 3, 6, 20));
        assert!(errors(false, &lost) > 0, "len {len}: message 2 lost");
        // A repeated one.
        let mut repeated = stream.clone();
        repeated.insert(3, stream[2].clone());
        repeated.push(message(false, 3, 6, 20));
        assert!(errors(false, &repeated) > 0, "len {len}: message 2 twice");
    }
}

#[test]
fn spsc_short_messages_before_the_first_named_one_are_checked_too() {
    let stream: Vec<Vec<u8>> = (0..12u64).map(|seq| message(false, 0x0102_0304, seq, seq as usize)).collect();
    assert_eq!(errors(false, &stream), 0);
    let mut other_id = stream.clone();
    other_id[10][9] ^= 1; // the id's second byte, in a 10-byte message
    assert!(errors(false, &other_id) > 0);
    let mut named_wrong = stream.clone();
    named_wrong.push(message(false, 0x0102_0305, 12, 12)); // its first byte differs from what 9..11-byte ones showed
    assert!(errors(false, &named_wrong) > 0);
}

#[test]
fn mpsc_streams_of_every_size_from_one_verify_clean() {
    // Three producers interleaved, each with sizes 1..=600.
    let mut stream = Vec::new();
    for seq in 0..1500u64 {
        for id in [0u32, 1, 255] {
            stream.push(message(true, id, seq, 1 + (seq as usize * 7 + id as usize) % 600));
        }
    }
    let mut verifier = Verifier::new(true).producers_expected(3);
    let mut s = summary();
    for m in &stream {
        verifier.observe(m, true, &mut s);
    }
    assert_eq!(s.errors, 0);
    assert_eq!(verifier.producers(), 3);
}

#[test]
fn mpsc_errors_are_found_at_every_size() {
    for len in 1..40usize {
        let stream: Vec<Vec<u8>> = (0..8u64).map(|i| message(true, (i % 2) as u32, i / 2, len)).collect();
        assert_eq!(errors(true, &stream), 0, "len {len}");
        for victim in 0..8 {
            for at in 0..len {
                let mut bad = stream.clone();
                bad[victim][at] ^= 0x40;
                // Every byte present is checked (a 1-byte payload's tag
                // through the number of producers).
                assert!(errors(true, &bad) > 0, "len {len}: byte {at} of message {victim} flipped");
            }
        }
        if len > 1 {
            let mut lost = stream.clone();
            lost.remove(2); // producer 0's second message
            assert!(errors(true, &lost) > 0, "len {len}: a lost message");
        }
    }
    assert!(errors(true, &[Vec::new()]) > 0, "an empty MPSC message names no producer");
}

#[test]
fn sizes_that_cannot_be_verified_are_refused_before_sending() {
    assert_eq!(check_sizes(false, 0, 0), Ok(()));
    assert_eq!(check_sizes(true, 0, 1), Ok(()));
    assert_eq!(check_sizes(true, 300, FULL), Ok(()));
    let empty = check_sizes(true, 0, 0).unwrap_err();
    assert!(empty.contains("empty MPSC message cannot name its producer"), "{empty}");
    let wide = check_sizes(true, 300, 5).unwrap_err();
    assert!(wide.contains("--id 300"), "{wide}");
    assert!(check_sizes(false, 5000, 64).is_err());
}
