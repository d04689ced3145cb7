/*
 * Receives messages from a shmring segment and verifies every byte and each
 * producer's order: the C twin of examples/consumer.rs, with the same flags,
 * so any pairing of C and Rust producers and consumers verifies.
 *
 *   consumer --name /demo [--create] [--verify] [--count N] [--capacity C]
 *            [--wait busy|spin|park] [--mpsc] [--producers P]
 *            [--idle-timeout T] [--open-timeout T] [--zero-copy]
 *
 * --zero-copy reads each message in place (shmring_recv_with_timeout)
 * instead of copying it out (shmring_recv_timeout).
 *
 * Prints one summary line; exits 1 on a verification error, 2 on another.
 */
#include "cli.h"
#include "payload.h"

#define FULL 12          /* payloads this long name their producer and sequence */
#define MAX_PRODUCER_ID 4096

static uint64_t next_seq[MAX_PRODUCER_ID]; /* next seq per producer, +1 (0: not seen) */
static unsigned long long producers_seen, errors;
static long current = -1;                  /* SPSC: the producer the last full message named */
static uint64_t unnamed_next;              /* SPSC: short messages before any full one */

static void error(const char *fmt, unsigned long long a, unsigned long long b, unsigned long long c) {
    if (errors < 10) {
        fprintf(stderr, "consumer: ");
        fprintf(stderr, fmt, a, b, c);
        fprintf(stderr, "\n");
    }
    errors++;
}

/* The seq producer id is at, counting it if it is new. */
static uint64_t expected(uint32_t id, unsigned long long limit) {
    if (next_seq[id] == 0) {
        next_seq[id] = 1;
        producers_seen++;
        if (limit && producers_seen > limit)
            error("a message from producer %llu, one more than the %llu expected", id, limit, 0);
    }
    return next_seq[id] - 1;
}

static void check(uint32_t id, uint64_t seq, const uint8_t *msg, size_t len, int verify) {
    uint8_t want = 0;
    long at;
    if (!verify) return;
    at = payload_check(id, seq, msg, len, &want);
    if (at >= 0)
        error("payload of stream %llu seq %llu: byte %llu is wrong", id, seq, (unsigned long long)at);
}

/* Counts and, if verify, checks one message (examples/common/mod.rs's
 * Verifier, for SPSC and MPSC). */
static void observe(const uint8_t *msg, size_t len, int mpsc, int verify, unsigned long long limit) {
    uint32_t id;
    uint64_t seq, want;
    if (len >= FULL) {
        payload_identify(msg, len, &id, &seq);
        if (id >= MAX_PRODUCER_ID) {
            error("producer id %llu is over %llu", id, MAX_PRODUCER_ID, 0);
            return;
        }
        if (!mpsc && current < 0 && unnamed_next > 0) {
            /* The producer whose short messages came first. */
            if (next_seq[id] == 0) next_seq[id] = 1;
            want = unnamed_next;
        } else {
            want = expected(id, mpsc ? limit : 0);
        }
        current = id;
        next_seq[id] = seq + 2;
        if (verify && seq != want) error("producer %llu: expected message %llu, got %llu", id, want, seq);
        else check(id, seq, msg, len, verify);
    } else if (mpsc) {
        if (len == 0) {
            error("an empty message in an MPSC ring cannot name its producer", 0, 0, 0);
            return;
        }
        id = msg[0];
        seq = expected(id, limit);
        next_seq[id] = seq + 2;
        check(id, seq, msg + 1, len - 1, verify);
    } else if (current >= 0) {
        /* Too short to name its producer: the next message of the last one. */
        seq = next_seq[current] - 1;
        next_seq[current] = seq + 2;
        check((uint32_t)current, seq, msg, len, verify);
    } else {
        size_t n = len < 8 ? len : 8;
        if (unnamed_next == 0) producers_seen++;
        seq = unnamed_next++;
        if (verify && payload_get(msg, n) != (n == 8 ? seq : seq & ((UINT64_C(1) << (8 * n)) - 1)))
            error("a %llu-byte message is not message %llu of the stream", len, seq, 0);
    }
}

struct read_ctx {
    int mpsc, verify;
    unsigned long long limit;
    size_t len;
};

/* Looks at a message in place (shmring_recv_with's callback). */
static void observe_in_place(const void *data, size_t len, void *ctx) {
    struct read_ctx *r = ctx;
    observe(data, len, r->mpsc, r->verify, r->limit);
    r->len = len;
}

int main(int argc, char **argv) {
    const char *name = NULL, *v;
    int create = 0, mpsc = 0, verify = 0, zero_copy = 0, wait = SHMRING_WAIT_SPIN, i, rc;
    unsigned long long capacity = 1 << 20, count = (unsigned long long)-1, producers = 1;
    unsigned long long messages = 0, bytes = 0;
    double idle = 30, open_timeout = 10, first = -1, last, deadline;
    shmring_options *options;
    shmring_consumer *consumer = NULL;
    shmring_stats stats;
    uint8_t *buf;
    size_t cap, len;

    for (i = 1; i < argc; i++) {
        if ((v = cli_value(argc, argv, &i, "--name"))) name = v;
        else if ((v = cli_value(argc, argv, &i, "--count"))) count = cli_number("--count", v);
        else if ((v = cli_value(argc, argv, &i, "--capacity"))) capacity = cli_number("--capacity", v);
        else if ((v = cli_value(argc, argv, &i, "--producers"))) producers = cli_number("--producers", v);
        else if ((v = cli_value(argc, argv, &i, "--wait"))) wait = cli_wait(v);
        else if ((v = cli_value(argc, argv, &i, "--idle-timeout"))) idle = cli_seconds("--idle-timeout", v);
        else if ((v = cli_value(argc, argv, &i, "--open-timeout"))) open_timeout = cli_seconds("--open-timeout", v);
        else if (strcmp(argv[i], "--create") == 0) create = 1;
        else if (strcmp(argv[i], "--mpsc") == 0) mpsc = 1;
        else if (strcmp(argv[i], "--verify") == 0) verify = 1;
        else if (strcmp(argv[i], "--zero-copy") == 0) zero_copy = 1;
        else {
            fprintf(stderr, "usage: %s --name /NAME [--create] [--verify] [--count N] [--capacity C] "
                            "[--wait busy|spin|park] [--mpsc] [--producers P] [--idle-timeout T] [--zero-copy]\n", argv[0]);
            return 2;
        }
    }
    if (name == NULL) {
        fprintf(stderr, "error: --name is needed\n");
        return 2;
    }
    options = cli_options(capacity, wait, mpsc);
    if (create) {
        rc = shmring_consumer_create(name, options, &consumer);
    } else {
        deadline = now_secs() + open_timeout;
        while ((rc = shmring_consumer_open(name, options, &consumer)) == SHMRING_E_NOT_FOUND && now_secs() < deadline)
            sleep_ms(10);
    }
    shmring_options_free(options);
    if (rc != SHMRING_OK) {
        fprintf(stderr, "error: %s\n", shmring_last_error());
        return 2;
    }
    /* A buffer of the segment's max message never gets SHMRING_E_TOO_LARGE. */
    cap = shmring_consumer_max_message(consumer);
    buf = malloc(cap ? cap : 1);
    if (buf == NULL) {
        fprintf(stderr, "error: out of memory\n");
        return 2;
    }
    last = now_secs();
    while (messages < count) {
        if (zero_copy) {
            struct read_ctx r;
            r.mpsc = mpsc;
            r.verify = verify;
            r.limit = mpsc ? producers : 0;
            r.len = 0;
            rc = shmring_recv_with_timeout(consumer, observe_in_place, &r, (uint64_t)(idle * 1e9));
            len = r.len;
        } else {
            rc = shmring_recv_timeout(consumer, buf, cap, &len, (uint64_t)(idle * 1e9));
            if (rc == SHMRING_OK) observe(buf, len, mpsc, verify, mpsc ? producers : 0);
        }
        if (rc == SHMRING_OK) {
            messages++;
            bytes += len;
            last = now_secs();
            if (first < 0) first = last;
        } else if (rc == SHMRING_E_DISCONNECTED && producers_seen < producers && now_secs() - last < idle) {
            /* Every producer attached so far has gone; a late one may come. */
            sleep_ms(1);
        } else if (rc == SHMRING_E_DISCONNECTED) {
            break;
        } else {
            fprintf(stderr, "error: %s\n", shmring_last_error());
            shmring_consumer_free(consumer); /* the creator removes the segment */
            return 2;
        }
    }
    if (messages < count && producers_seen < producers)
        error("%llu of the %llu producers (--producers) sent anything within the idle timeout", producers_seen,
              producers, 0);
    shmring_consumer_stats(consumer, &stats);
    cli_summary("consumer", messages, bytes, verify ? errors : 0, first < 0 ? 0 : last - first, &stats);
    shmring_consumer_free(consumer);
    free(buf);
    return verify && errors ? 1 : 0;
}
