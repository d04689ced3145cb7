/*
 * Verifiable payloads, byte for byte those of shmring::payload (src/payload.rs),
 * so that C and Rust producers and consumers can be paired in any way.
 *
 * A payload of len bytes for stream `stream` and sequence number `seq`:
 * bytes 0..8 are seq (little-endian, cut short if len < 8), bytes 8..12 are
 * stream (little-endian), and the rest are little-endian words of a xorshift
 * generator seeded by both (the last word cut short).
 */
#ifndef SHMRING_EXAMPLES_PAYLOAD_H
#define SHMRING_EXAMPLES_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t payload_seed(uint32_t stream, uint64_t seq) {
    return ((seq ^ ((uint64_t)stream << 40)) * UINT64_C(0x9E3779B97F4A7C15)) | 1;
}

static inline uint64_t payload_next(uint64_t x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PAYLOAD_LITTLE_ENDIAN 1
#else
#define PAYLOAD_LITTLE_ENDIAN 0
#endif

/* The first n (at most 8) bytes of v, little-endian, at p. */
static inline void payload_put(uint8_t *p, uint64_t v, size_t n) {
    uint8_t le[8];
    size_t i;
    if (PAYLOAD_LITTLE_ENDIAN && n == 8) {
        memcpy(p, &v, 8); /* one store */
        return;
    }
    if (PAYLOAD_LITTLE_ENDIAN && n == 4) {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, 4);
        return;
    }
    for (i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
    memcpy(p, le, n);
}

/* n (at most 8) little-endian bytes at p. */
static inline uint64_t payload_get(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    size_t i;
    if (PAYLOAD_LITTLE_ENDIAN && n == 8) {
        memcpy(&v, p, 8); /* one load */
        return v;
    }
    if (PAYLOAD_LITTLE_ENDIAN && n == 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        return w;
    }
    for (i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The first 12 bytes of every payload: seq, then stream. */
static inline void payload_prefix(uint32_t stream, uint64_t seq, uint8_t prefix[12]) {
    payload_put(prefix, seq, 8);
    payload_put(prefix + 8, stream, 4);
}

/* Fills buf[0..len) with the payload of (stream, seq). */
static inline void payload_fill(uint32_t stream, uint64_t seq, uint8_t *buf, size_t len) {
    if (len >= 12) {
        payload_put(buf, seq, 8);
        payload_put(buf + 8, stream, 4);
    } else {
        uint8_t prefix[12];
        payload_prefix(stream, seq, prefix);
        memcpy(buf, prefix, len);
    }
    if (len > 12) {
        uint64_t state = payload_seed(stream, seq);
        size_t at = 12;
        for (; len - at >= 8; at += 8) {
            state = payload_next(state);
            payload_put(buf + at, state, 8);
        }
        payload_put(buf + at, payload_next(state), len - at);
    }
}

/* Checks that buf[0..len) is the payload of (stream, seq): -1 if it is,
 * otherwise the index of the first wrong byte (and *expected its value). */
static inline long payload_check(uint32_t stream, uint64_t seq, const uint8_t *buf, size_t len, uint8_t *expected) {
    uint8_t prefix[12];
    size_t n = len < 12 ? len : 12, i;
    /* The common case in two loads; the bytes are compared one by one only
     * to find the first wrong one. */
    if (len < 12 || payload_get(buf, 8) != seq || payload_get(buf + 8, 4) != stream) {
        payload_prefix(stream, seq, prefix);
        for (i = 0; i < n; i++) {
            if (buf[i] != prefix[i]) {
                *expected = prefix[i];
                return (long)i;
            }
        }
    }
    if (len > 12) {
        uint64_t state = payload_seed(stream, seq);
        size_t at = 12, take;
        for (;;) {
            state = payload_next(state);
            take = len - at < 8 ? len - at : 8;
            if (payload_get(buf + at, take) != (take == 8 ? state : state & ((UINT64_C(1) << (8 * take)) - 1))) {
                for (i = 0; i < take; i++) {
                    if (buf[at + i] != (uint8_t)(state >> (8 * i))) {
                        *expected = (uint8_t)(state >> (8 * i));
                        return (long)(at + i);
                    }
                }
            }
            at += take;
            if (take < 8 || at == len) break;
        }
    }
    return -1;
}

/* The (stream, seq) a payload of at least 12 bytes claims to be. */
static inline int payload_identify(const uint8_t *buf, size_t len, uint32_t *stream, uint64_t *seq) {
    if (len < 12) return 0;
    *seq = payload_get(buf, 8);
    *stream = (uint32_t)payload_get(buf + 8, 4);
    return 1;
}

#endif
