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

/// Fills `buf` with the payload of (`stream`, `seq`).
pub fn fill(stream: u32, seq: u64, buf: &mut [u8]) {
    let head = seq.to_le_bytes();
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&head[..n]);
    if buf.len() > 8 {
        let id = stream.to_le_bytes();
        let n = (buf.len() - 8).min(4);
        buf[8..8 + n].copy_from_slice(&id[..n]);
    }
    if buf.len() > 12 {
        let mut state = seed(stream, seq);
        for chunk in buf[12..].chunks_mut(8) {
            state = next(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Checks that `buf` is the payload of (`stream`, `seq`); the error names the
/// first wrong byte.
pub fn check(stream: u32, seq: u64, buf: &[u8]) -> Result<(), String> {
    let mut expected = [0u8; 256];
    let mut offset = 0;
    // Compare against the expected bytes in windows, without allocating.
    let mut state = seed(stream, seq);
    while offset < buf.len() {
        let window = (buf.len() - offset).min(expected.len());
        for (i, e) in expected[..window].iter_mut().enumerate() {
            let at = offset + i;
            *e = match at {
                0..=7 => seq.to_le_bytes()[at],
                8..=11 => stream.to_le_bytes()[at - 8],
                _ => {
                    if (at - 12) % 8 == 0 {
                        state = next(state);
                    }
                    state.to_le_bytes()[(at - 12) % 8]
                }
            };
        }
        if let Some(i) = (0..window).find(|&i| buf[offset + i] != expected[i]) {
            let at = offset + i;
            return Err(format!(
                "payload of stream {stream} seq {seq} ({} bytes): byte {at} is {:#04x}, expected {:#04x}",
                buf.len(),
                buf[at],
                expected[i]
            ));
        }
        offset += window;
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
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
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
