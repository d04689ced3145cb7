/*
 * Sends verifiable messages into a shmring segment: the C twin of
 * examples/producer.rs, with the same flags and the same payloads, so any
 * pairing of C and Rust producers and consumers verifies.
 *
 *   producer --name /demo [--create] [--count N] [--size S]
 *            [--min-size A --max-size B] [--seconds T] [--capacity C]
 *            [--wait busy|spin|park] [--mpsc] [--id I] [--open-timeout T]
 *            [--zero-copy]
 *
 * --zero-copy writes each payload in place (shmring_send_with) instead of
 * copying it in (shmring_send).
 *
 * Prints one summary line; exits 2 on an error.
 */
#include "cli.h"
#include "payload.h"

#define FULL 12 /* payloads this long name their producer and sequence */

/* Payload sizes: fixed, or the Rust examples' reproducible random mix. */
static unsigned long long size_state;
static size_t size_min, size_max;

static size_t next_size(void) {
    if (size_min == size_max) return size_min;
    size_state ^= size_state << 13;
    size_state ^= size_state >> 7;
    size_state ^= size_state << 17;
    return size_min + (size_t)(size_state % (unsigned long long)(size_max - size_min + 1));
}

/* Message seq of producer id, as examples/common/mod.rs's `fill`. */
static void fill(int mpsc, uint32_t id, uint64_t seq, uint8_t *buf, size_t len) {
    if (mpsc && len >= 1 && len - 1 < FULL - 1) {
        buf[0] = (uint8_t)id;
        payload_fill(id, seq, buf + 1, len - 1);
    } else {
        payload_fill(id, seq, buf, len);
    }
}

struct fill_ctx {
    int mpsc;
    uint32_t id;
    uint64_t seq;
};

/* Writes the payload in place (shmring_send_with's callback). */
static void fill_in_place(void *data, size_t len, void *ctx) {
    const struct fill_ctx *f = ctx;
    fill(f->mpsc, f->id, f->seq, data, len);
}

static void die(const char *what) {
    fprintf(stderr, "error: %s\n", what);
    exit(2);
}

int main(int argc, char **argv) {
    const char *name = NULL, *v;
    int create = 0, mpsc = 0, wait = SHMRING_WAIT_SPIN, have_count = 0, have_min = 0, have_max = 0, zero_copy = 0, i, rc;
    unsigned long long capacity = 1 << 20, count = 1000000, size = 64, min = 0, max = 0, id = 0, seq;
    double seconds = -1, open_timeout = 10, start, deadline;
    shmring_options *options;
    shmring_producer *producer = NULL;
    shmring_stats stats;
    unsigned long long bytes = 0;
    uint8_t *buf;
    size_t max_message;
    char role[32];

    for (i = 1; i < argc; i++) {
        if ((v = cli_value(argc, argv, &i, "--name"))) name = v;
        else if ((v = cli_value(argc, argv, &i, "--count"))) count = cli_number("--count", v), have_count = 1;
        else if ((v = cli_value(argc, argv, &i, "--size"))) size = cli_number("--size", v);
        else if ((v = cli_value(argc, argv, &i, "--min-size"))) min = cli_number("--min-size", v), have_min = 1;
        else if ((v = cli_value(argc, argv, &i, "--max-size"))) max = cli_number("--max-size", v), have_max = 1;
        else if ((v = cli_value(argc, argv, &i, "--capacity"))) capacity = cli_number("--capacity", v);
        else if ((v = cli_value(argc, argv, &i, "--id"))) id = cli_number("--id", v);
        else if ((v = cli_value(argc, argv, &i, "--stream"))) id = cli_number("--stream", v);
        else if ((v = cli_value(argc, argv, &i, "--wait"))) wait = cli_wait(v);
        else if ((v = cli_value(argc, argv, &i, "--seconds"))) seconds = cli_seconds("--seconds", v);
        else if ((v = cli_value(argc, argv, &i, "--open-timeout"))) open_timeout = cli_seconds("--open-timeout", v);
        else if (strcmp(argv[i], "--create") == 0) create = 1;
        else if (strcmp(argv[i], "--mpsc") == 0) mpsc = 1;
        else if (strcmp(argv[i], "--zero-copy") == 0) zero_copy = 1;
        else {
            fprintf(stderr, "usage: %s --name /NAME [--create] [--count N] [--size S] [--min-size A --max-size B] "
                            "[--seconds T] [--capacity C] [--wait busy|spin|park] [--mpsc] [--id I] [--zero-copy]\n", argv[0]);
            return 2;
        }
    }
    if (name == NULL) die("--name is needed");
    if (have_min != have_max) die("--min-size and --max-size go together");
    size_min = have_min ? (min < max ? min : max) : size;
    size_max = have_min ? (min < max ? max : min) : size;
    size_state = (0x5eed ^ id) | 1;
    if (id >= 4096) die("producer id: the consumer tracks ids below 4096");
    if (mpsc && size_min == 0) die("an empty MPSC message cannot name its producer: use sizes of 1 byte and up");
    if (mpsc && size_min < FULL && id > 255) die("MPSC payloads under 12 bytes name their producer in one byte");
    if (!have_count && seconds >= 0) count = (unsigned long long)-1;

    options = cli_options(capacity, wait, mpsc);
    if (create) {
        rc = shmring_producer_create(name, options, &producer);
    } else {
        /* A producer started right after its consumer may look first. */
        deadline = now_secs() + open_timeout;
        while ((rc = shmring_producer_open(name, options, &producer)) == SHMRING_E_NOT_FOUND && now_secs() < deadline)
            sleep_ms(10);
    }
    shmring_options_free(options);
    if (rc != SHMRING_OK) die(shmring_last_error());
    max_message = shmring_producer_max_message(producer);
    /* A ring whose max message is under the sizes asked for clips them. */
    if (mpsc && size_min < FULL && max_message < size_min && (max_message == 0 || id > 255))
        die("the ring's max message clips payloads too short to name this producer");
    buf = malloc(max_message ? max_message : 1);
    if (buf == NULL) die("out of memory");

    start = now_secs();
    deadline = seconds >= 0 ? start + seconds : 0;
    for (seq = 0; seq < count; seq++) {
        size_t len;
        /* The clock costs more than a send: read it every 1024 messages. */
        if (seq % 1024 == 0 && seconds >= 0 && now_secs() >= deadline) break;
        len = next_size();
        if (len > max_message) len = max_message;
        if (zero_copy) {
            struct fill_ctx f;
            f.mpsc = mpsc;
            f.id = (uint32_t)id;
            f.seq = seq;
            rc = shmring_send_with(producer, len, fill_in_place, &f);
        } else {
            fill(mpsc, (uint32_t)id, seq, buf, len);
            rc = shmring_send(producer, buf, len);
        }
        if (rc != SHMRING_OK) {
            fprintf(stderr, "error: %s\n", shmring_last_error());
            shmring_producer_free(producer); /* the creator removes the segment */
            return 2;
        }
        bytes += len;
    }
    shmring_producer_stats(producer, &stats);
    snprintf(role, sizeof role, "producer-%llu", id);
    cli_summary(role, seq, bytes, 0, now_secs() - start, &stats);
    shmring_producer_free(producer);
    free(buf);
    return 0;
}
