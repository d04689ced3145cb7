//! Deterministic, verifiable payloads, used by the examples, the tests and
//! the benches so that a receiver can check every byte it gets.
//!
//! A payload of `len` bytes for stream `stream` and sequence number `seq`:
//! bytes 0..8 are `seq` (little-endian, cut short if `len < 8`), bytes 8..12
//! are `stream`, and the rest come from a xorshift generator seeded by both.
//!
//! ```
//! let mut buf = vec![0; 100];
//! shmring::payload::fill(3, 41, &mut buf);
//! assert_eq!(shmring::payload::check(3, 41, &buf), Ok(()));
//! buf[60] ^= 1;
//! assert!(shmring::payload::check(3, 41, &buf).is_err());
//! ```

/// The first 12 bytes of every payload: `seq`, then `stream`.
fn prefix(stream: u32, seq: u64) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p[8..].copy_from_slice(&stream.to_le_bytes());
    p
}

/// Fills `buf` with the payload of (`stream`, `seq`).
pub fn fill(stream: u32, seq: u64, buf: &mut [u8]) {
    let n = buf.len().min(12);
    buf[..n].copy_from_slice(&prefix(stream, seq)[..n]);
    if buf.len() > 12 {
        let mut state = seed(stream, seq);
        let mut words = buf[12..].chunks_exact_mut(8);
        for word in &mut words {
            state = next(state);
            word.copy_from_slice(&state.to_le_bytes());
        }
        let rest = words.into_remainder();
        let n = rest.len();
        rest.copy_from_slice(&next(state).to_le_bytes()[..n]);
    }
}

/// Checks that `buf` is the payload of (`stream`, `seq`); the error names the
/// first wrong byte. Compares a word at a time: fast enough to verify every
/// message of a multi-million-message stream.
pub fn check(stream: u32, seq: u64, buf: &[u8]) -> Result<(), String> {
    let mismatch = |at: usize, expected: u8| {
        Err(format!(
            "payload of stream {stream} seq {seq} ({} bytes): byte {at} is {:#04x}, expected {expected:#04x}",
            buf.len(),
            buf[at]
        ))
    };
    let expect_bytes = |offset: usize, got: &[u8], want: &[u8]| -> Result<(), String> {
        match got.iter().zip(want).position(|(g, w)| g != w) {
            Some(i) => mismatch(offset + i, want[i]),
            None => Ok(()),
        }
    };
    let n = buf.len().min(12);
    expect_bytes(0, &buf[..n], &prefix(stream, seq)[..n])?;
    if buf.len() > 12 {
        let mut state = seed(stream, seq);
        let mut words = buf[12..].chunks_exact(8);
        let mut offset = 12;
        for word in &mut words {
            state = next(state);
            if u64::from_le_bytes(word.try_into().unwrap_or_default()) != state {
                return expect_bytes(offset, word, &state.to_le_bytes());
            }
            offset += 8;
        }
        let rest = words.remainder();
        expect_bytes(offset, rest, &next(state).to_le_bytes()[..rest.len()])?;
    }
    Ok(())
}

/// The (`stream`, `seq`) a payload claims to be, if it is long enough to say
/// (12 bytes).
pub fn identify(buf: &[u8]) -> Option<(u32, u64)> {
    let seq = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let stream = u32::from_le_bytes(buf.get(8..12)?.try_into().ok()?);
    Some((stream, seq))
}

fn seed(stream: u32, seq: u64) -> u64 {
    (seq ^ (u64::from(stream) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

fn next(mut x: u64) -> u64 {
    xorshift(&mut x)
}

/// Advances the xorshift64 generator `state` (never zero) and returns its
/// new value: the one small, reproducible generator of the payloads, the
/// tests and the examples.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips_and_every_byte_is_checked() {
        for len in 0..300 {
            let mut buf = vec![0; len];
            fill(7, 1234, &mut buf);
            assert_eq!(check(7, 1234, &buf), Ok(()), "len {len}");
            for i in 0..len {
                buf[i] ^= 0x80;
                assert!(check(7, 1234, &buf).is_err(), "len {len}, flipped byte {i}");
                buf[i] ^= 0x80;
            }
        }
    }

    #[test]
    fn streams_and_sequences_differ() {
        let mut a = vec![0; 64];
        fill(1, 5, &mut a);
        assert!(check(2, 5, &a).is_err());
        assert!(check(1, 6, &a).is_err());
        assert_eq!(identify(&a), Some((1, 5)));
        assert_eq!(identify(&a[..11]), None);
    }
}
