/*
 * Writes the payloads of examples/payload.h for a fixed list of (stream,
 * seq, len) to stdout, for ffi/tests/c_api.rs to compare byte for byte with
 * shmring::payload::fill; and checks that payload_check finds each payload
 * right and every flipped byte wrong (exits 1 otherwise).
 */
#include "../examples/payload.h"
#include <stdio.h>

int main(void) {
    static const uint32_t streams[] = {0, 1, 7, 4095, 0xFFFFFFFFu};
    static const uint64_t seqs[] = {0, 1, 41, 1234, (uint64_t)1 << 40, ~(uint64_t)0};
    static uint8_t buf[1100];
    size_t s, q, len, i;
    uint8_t want;
    for (s = 0; s < sizeof streams / sizeof *streams; s++) {
        for (q = 0; q < sizeof seqs / sizeof *seqs; q++) {
            for (len = 0; len <= 1030; len = len < 100 ? len + 1 : len + 31) {
                payload_fill(streams[s], seqs[q], buf, len);
                fwrite(buf, 1, len, stdout);
                if (payload_check(streams[s], seqs[q], buf, len, &want) != -1) {
                    fprintf(stderr, "payload_check refuses the payload of %u/%llu/%zu\n", streams[s],
                            (unsigned long long)seqs[q], len);
                    return 1;
                }
                for (i = 0; i < len; i++) {
                    buf[i] ^= 0x80;
                    if (payload_check(streams[s], seqs[q], buf, len, &want) != (long)i || (want ^ 0x80) != buf[i]) {
                        fprintf(stderr, "payload_check misses a flip of byte %zu of %u/%llu/%zu\n", i, streams[s],
                                (unsigned long long)seqs[q], len);
                        return 1;
                    }
                    buf[i] ^= 0x80;
                }
            }
        }
    }
    return 0;
}
