/*
 * Provokes every error code of the C API from C, and checks each time that
 * shmring_last_error() says something and names the segment where there is
 * one. Run by ffi/tests/c_api.rs (also under valgrind).
 *
 *   errors BASE DIR
 *
 * BASE: a segment name prefix such as /shmring-ffi-errors-1234 (segments
 * BASE-0 .. BASE-9 are used, and removed); DIR: a directory for file rings.
 * Prints "ok CODE_NAME" for each code provoked; exits non-zero on the first
 * failed check.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <shmring.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *base;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

/* Checks that `rc` is `want` and that the last error is a message that
 * contains `names` (if not NULL); prints "ok NAME" once per code. */
static void expect(int rc, int want, const char *names, int line) {
    static int seen[32];
    const char *message = shmring_last_error();
    if (rc != want) {
        fprintf(stderr, "line %d: expected %s, got %s: %s\n", line, shmring_strerror(want), shmring_strerror(rc),
                message);
        exit(1);
    }
    if (message == NULL || message[0] == '\0') {
        fprintf(stderr, "line %d: %s with an empty shmring_last_error()\n", line, shmring_strerror(want));
        exit(1);
    }
    if (names != NULL && strstr(message, names) == NULL) {
        fprintf(stderr, "line %d: %s: the message does not name %s: %s\n", line, shmring_strerror(want), names,
                message);
        exit(1);
    }
    if (want < 0 && want > -32 && !seen[-want]) {
        seen[-want] = 1;
        printf("ok %s: %s\n", shmring_strerror(want), message);
    }
}
#define EXPECT(call, want, names) expect((call), (want), (names), __LINE__)

/* BASE-n, in a static buffer per n. */
static const char *seg(int n) {
    static char names[10][256];
    snprintf(names[n], sizeof names[n], "%s-%d", base, n);
    return names[n];
}

static shmring_options *small(void) {
    shmring_options *o = shmring_options_new();
    CHECK(o != NULL, "shmring_options_new");
    shmring_options_capacity(o, 4096);
    shmring_options_max_message(o, 256);
    shmring_options_liveness_interval_ns(o, 5000000); /* 5 ms: dead peers are seen soon */
    return o;
}

/* Writes `len` bytes at `offset` of segment `name` in /dev/shm. */
static void scribble(const char *name, long offset, const void *bytes, size_t len) {
    char path[300];
    int fd;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open %s", path);
    CHECK(pwrite(fd, bytes, len, offset) == (ssize_t)len, "pwrite %s", path);
    close(fd);
}

static uint64_t peek_u64(const char *name, long offset) {
    char path[300];
    uint64_t v = 0;
    int fd;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "open %s", path);
    CHECK(pread(fd, &v, sizeof v, offset) == (ssize_t)sizeof v, "pread %s", path);
    close(fd);
    return v;
}

/* Callbacks of the in-place calls: write "abc" / copy the message out. */
static void fill_abc(void *data, size_t len, void *ctx) {
    (void)ctx;
    memcpy(data, "abc", len < 3 ? len : 3);
}

struct seen {
    char bytes[300];
    size_t len;
    int calls;
};

static void copy_out(const void *data, size_t len, void *ctx) {
    struct seen *s = ctx;
    memcpy(s->bytes, data, len < sizeof s->bytes ? len : sizeof s->bytes);
    s->len = len;
    s->calls++;
}

int main(int argc, char **argv) {
    shmring_options *o;
    shmring_consumer *c = NULL, *c2 = (shmring_consumer *)1;
    shmring_producer *p = NULL, *p2 = NULL;
    char buf[512], msg[300], path[4096];
    size_t len = 12345;
    int rc, i;

    CHECK(argc == 3, "usage: errors BASE DIR");
    base = argv[1];
    CHECK(strcmp(shmring_last_error(), "") == 0, "no error yet: %s", shmring_last_error());
    memset(msg, 'x', sizeof msg);
    o = small();

    /* INVALID: NULL pointers, a name that is not UTF-8 or not a name, bad
     * options, unknown enumerations. Never a crash. */
    EXPECT(shmring_consumer_create(NULL, o, &c), SHMRING_E_INVALID, "NULL");
    EXPECT(shmring_consumer_create(seg(0), o, NULL), SHMRING_E_INVALID, "NULL");
    EXPECT(shmring_consumer_create("/\xff\xfe", o, &c2), SHMRING_E_INVALID, "UTF-8");
    CHECK(c2 == NULL, "*out is NULL after a failure");
    EXPECT(shmring_producer_open("no-slash", o, &p), SHMRING_E_INVALID, "no-slash");
    EXPECT(shmring_send(NULL, "x", 1), SHMRING_E_INVALID, "NULL");
    EXPECT(shmring_recv(NULL, buf, sizeof buf, &len), SHMRING_E_INVALID, "NULL");
    EXPECT(shmring_options_wait(o, 99), SHMRING_E_INVALID, "99");
    EXPECT(shmring_options_kind(o, -5), SHMRING_E_INVALID, "-5");
    EXPECT(shmring_unlink(NULL), SHMRING_E_INVALID, NULL);
    EXPECT(shmring_producer_stats(NULL, NULL), SHMRING_E_INVALID, NULL);
    shmring_options_capacity(NULL, 4096); /* ignored, but says so */
    CHECK(strstr(shmring_last_error(), "NULL") != NULL, "%s", shmring_last_error());
    {
        shmring_options *bad = shmring_options_new();
        shmring_options_capacity(bad, 5000); /* not a power of two */
        EXPECT(shmring_producer_create(seg(0), bad, &p), SHMRING_E_INVALID, seg(0));
        shmring_options_free(bad);
    }
    shmring_options_free(NULL);
    shmring_producer_free(NULL);
    shmring_consumer_free(NULL);

    /* NOT_FOUND, EXISTS, BUSY. */
    EXPECT(shmring_consumer_open(seg(1), o, &c), SHMRING_E_NOT_FOUND, seg(1));
    {
        /* Waiting for a creator that never comes ends with NOT_FOUND. */
        shmring_options *waits = shmring_options_new();
        shmring_options_open_timeout_ns(waits, 20 * 1000 * 1000);
        EXPECT(shmring_consumer_open(seg(1), waits, &c), SHMRING_E_NOT_FOUND, seg(1));
        shmring_options_free(waits);
    }
    EXPECT(shmring_unlink(seg(1)), SHMRING_E_NOT_FOUND, seg(1));
    EXPECT(shmring_consumer_create(seg(1), o, &c), SHMRING_OK, NULL);
    EXPECT(shmring_producer_create(seg(1), o, &p), SHMRING_E_EXISTS, seg(1));
    EXPECT(shmring_consumer_open(seg(1), o, &c2), SHMRING_E_BUSY, seg(1));
    EXPECT(shmring_producer_open(seg(1), o, &p), SHMRING_OK, NULL);
    EXPECT(shmring_producer_open(seg(1), o, &p2), SHMRING_E_BUSY, seg(1));

    /* EMPTY, TIMEOUT (receiving). */
    EXPECT(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_EMPTY, seg(1));
    CHECK(len == 0, "*len is 0 after an error, not %zu", len);
    EXPECT(shmring_recv_timeout(c, buf, sizeof buf, &len, 1000000), SHMRING_E_TIMEOUT, seg(1));

    /* TOO_LARGE: a message over the maximum is refused; one larger than the
     * buffer is left in the ring, its size in *len. */
    EXPECT(shmring_send(p, msg, 257), SHMRING_E_TOO_LARGE, seg(1));
    EXPECT(shmring_send(p, msg, 200), SHMRING_OK, NULL);
    EXPECT(shmring_send(p, "next", 4), SHMRING_OK, NULL);
    EXPECT(shmring_try_recv(c, buf, 10, &len), SHMRING_E_TOO_LARGE, seg(1));
    CHECK(len == 200, "*len says the size needed: %zu", len);
    EXPECT(shmring_recv(c, NULL, 0, &len), SHMRING_E_TOO_LARGE, seg(1));
    CHECK(len == 200, "*len says the size needed: %zu", len);
    EXPECT(shmring_recv_timeout(c, buf, 199, &len, 1000000), SHMRING_E_TOO_LARGE, seg(1));
    EXPECT(shmring_recv(c, buf, 200, &len), SHMRING_OK, NULL);
    CHECK(len == 200 && memcmp(buf, msg, 200) == 0, "the same message, whole, after TOO_LARGE");
    EXPECT(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK, NULL);
    CHECK(len == 4 && memcmp(buf, "next", 4) == 0, "then the next one");
    EXPECT(shmring_send(p, NULL, 0), SHMRING_OK, NULL);
    EXPECT(shmring_recv(c, NULL, 0, &len), SHMRING_OK, NULL);
    CHECK(len == 0, "an empty message");
    EXPECT(shmring_recv(c, NULL, 5, &len), SHMRING_E_INVALID, seg(1));
    EXPECT(shmring_recv(c, buf, sizeof buf, NULL), SHMRING_E_INVALID, seg(1));
    EXPECT(shmring_send(p, NULL, 5), SHMRING_E_INVALID, seg(1));

    /* In place: send_with / recv_with, and their errors. */
    {
        struct seen seen;
        memset(&seen, 0, sizeof seen);
        EXPECT(shmring_send_with(p, 3, NULL, NULL), SHMRING_E_INVALID, "callback");
        EXPECT(shmring_recv_with(c, NULL, NULL), SHMRING_E_INVALID, "callback");
        EXPECT(shmring_try_recv_with(c, copy_out, &seen), SHMRING_E_EMPTY, seg(1));
        EXPECT(shmring_recv_with_timeout(c, copy_out, &seen, 1000000), SHMRING_E_TIMEOUT, seg(1));
        CHECK(seen.calls == 0, "no callback on an error");
        EXPECT(shmring_send_with(p, 257, fill_abc, NULL), SHMRING_E_TOO_LARGE, seg(1));
        EXPECT(shmring_send_with(p, 3, fill_abc, NULL), SHMRING_OK, NULL);
        EXPECT(shmring_try_send_with(p, 2, fill_abc, NULL), SHMRING_OK, NULL);
        EXPECT(shmring_send_with_timeout(p, 0, fill_abc, NULL, 1000000), SHMRING_OK, NULL);
        EXPECT(shmring_recv_with(c, copy_out, &seen), SHMRING_OK, NULL);
        CHECK(seen.calls == 1 && seen.len == 3 && memcmp(seen.bytes, "abc", 3) == 0, "in place: abc");
        EXPECT(shmring_try_recv_with(c, copy_out, &seen), SHMRING_OK, NULL);
        CHECK(seen.calls == 2 && seen.len == 2 && memcmp(seen.bytes, "ab", 2) == 0, "in place: ab");
        EXPECT(shmring_recv_with_timeout(c, copy_out, &seen, 1000000), SHMRING_OK, NULL);
        CHECK(seen.calls == 3 && seen.len == 0, "in place: empty");
    }

    /* FULL, TIMEOUT (sending). */
    for (i = 0; (rc = shmring_try_send(p, msg, 200)) == SHMRING_OK; i++) CHECK(i < 100, "never full");
    EXPECT(rc, SHMRING_E_FULL, seg(1));
    EXPECT(shmring_send_timeout(p, msg, 200, 1000000), SHMRING_E_TIMEOUT, seg(1));
    EXPECT(shmring_try_send_with(p, 200, fill_abc, NULL), SHMRING_E_FULL, seg(1));
    EXPECT(shmring_send_with_timeout(p, 200, fill_abc, NULL, 1000000), SHMRING_E_TIMEOUT, seg(1));
    {
        shmring_stats s;
        EXPECT(shmring_producer_stats(p, &s), SHMRING_OK, NULL);
        CHECK(s.messages == (uint64_t)i + 6, "stats count the messages sent: %llu", (unsigned long long)s.messages);
    }

    /* FORKED: a handle inherited across fork fails in the child. */
    {
        pid_t child;
        int status = 0;
        fflush(stdout); /* or the child prints it again */
        child = fork();
        CHECK(child >= 0, "fork");
        if (child == 0) {
            EXPECT(shmring_try_send(p, "x", 1), SHMRING_E_FORKED, seg(1));
            EXPECT(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_FORKED, seg(1));
            /* Freeing the inherited handles here would do nothing to the
             * ring, but the library forgets (leaks) an inherited handle's
             * memory rather than drop it, which valgrind reports: exit with
             * them still referenced instead. */
            fflush(stdout);
            _exit(0);
        }
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the forked child's checks");
        printf("ok SHMRING_E_FORKED (in a child)\n");
    }

    /* DISCONNECTED: the ring full and the consumer gone; then drained with
     * no producer. */
    shmring_consumer_free(c); /* the creator: the name goes */
    EXPECT(shmring_try_send(p, msg, 200), SHMRING_E_DISCONNECTED, seg(1));
    EXPECT(shmring_send(p, msg, 200), SHMRING_E_DISCONNECTED, seg(1));
    shmring_producer_free(p);
    EXPECT(shmring_consumer_create(seg(2), o, &c), SHMRING_OK, NULL);
    EXPECT(shmring_producer_open(seg(2), o, &p), SHMRING_OK, NULL);
    EXPECT(shmring_send(p, "last", 4), SHMRING_OK, NULL);
    shmring_producer_free(p);
    EXPECT(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK, NULL);
    EXPECT(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_DISCONNECTED, seg(2));
    EXPECT(shmring_recv(c, buf, sizeof buf, &len), SHMRING_E_DISCONNECTED, seg(2));
    shmring_consumer_free(c);

    /* INCOMPATIBLE: an SPSC ring opened as MPSC. */
    EXPECT(shmring_consumer_create(seg(3), o, &c), SHMRING_OK, NULL);
    {
        shmring_options *mpsc = small();
        EXPECT(shmring_options_kind(mpsc, SHMRING_KIND_MPSC), SHMRING_OK, NULL);
        EXPECT(shmring_producer_open(seg(3), mpsc, &p), SHMRING_E_INCOMPATIBLE, seg(3));
        shmring_options_free(mpsc);
    }

    /* CORRUPTED: a scribbled record header at the consumer's position (the
     * data region starts where the identity's data_offset says), and a
     * scribbled identity (its checksum no longer matches). */
    {
        uint64_t data_offset = peek_u64(seg(3), 24), garbage = ~(uint64_t)0;
        unsigned char pid_byte;
        scribble(seg(3), (long)data_offset, &garbage, sizeof garbage);
        EXPECT(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_CORRUPTED, seg(3));
        EXPECT(shmring_recv(c, buf, sizeof buf, &len), SHMRING_E_CORRUPTED, seg(3));
        pid_byte = (unsigned char)(peek_u64(seg(3), 48) ^ 0x5a);
        scribble(seg(3), 48, &pid_byte, 1); /* creator_pid, covered by the checksum */
        EXPECT(shmring_producer_open(seg(3), o, &p), SHMRING_E_CORRUPTED, seg(3));
    }
    shmring_consumer_free(c);

    /* PERMISSION: a segment of another user (as root: chown it; otherwise
     * take the owner's permissions away). */
    {
        shmring_options *keep = small();
        char shm_path[300];
        shmring_options_unlink_on_free(keep, 0);
        EXPECT(shmring_consumer_create(seg(4), keep, &c), SHMRING_OK, NULL);
        shmring_consumer_free(c);
        snprintf(shm_path, sizeof shm_path, "/dev/shm%s", seg(4));
        if (geteuid() == 0) CHECK(chown(shm_path, 65534, 65534) == 0, "chown %s", shm_path);
        else CHECK(chmod(shm_path, 0) == 0, "chmod %s", shm_path);
        EXPECT(shmring_producer_open(seg(4), o, &p), SHMRING_E_PERMISSION, seg(4));
        EXPECT(shmring_unlink(seg(4)), SHMRING_OK, NULL);
        shmring_options_free(keep);
    }

    /* NO_SPACE: a 1 TiB ring in a /dev/shm that is smaller (tmpfs refuses
     * such an fallocate up front); skipped where /dev/shm has no limit. */
    {
        struct statvfs fs;
        if (statvfs("/dev/shm", &fs) == 0 && fs.f_blocks > 0 &&
            (double)fs.f_blocks * (double)fs.f_frsize < 1099511627776.0) {
            shmring_options *huge = shmring_options_new();
            shmring_options_capacity(huge, (uint64_t)1 << 40);
            EXPECT(shmring_producer_create(seg(5), huge, &p), SHMRING_E_NO_SPACE, seg(5));
            shmring_options_free(huge);
        } else {
            printf("skipped SHMRING_E_NO_SPACE: /dev/shm has no size limit under 1 TiB\n");
        }
    }

    /* IO: a file ring "opened" at a directory; flush works on a file ring. */
    EXPECT(shmring_producer_open_file(argv[2], o, &p), SHMRING_E_IO, argv[2]);
    snprintf(path, sizeof path, "%s/errors-%d.ring", argv[2], (int)getpid());
    EXPECT(shmring_producer_create_file(path, o, &p), SHMRING_OK, NULL);
    EXPECT(shmring_producer_create_file(path, o, &p2), SHMRING_E_EXISTS, path);
    EXPECT(shmring_send(p, "kept", 4), SHMRING_OK, NULL);
    EXPECT(shmring_producer_flush(p), SHMRING_OK, NULL);
    shmring_producer_free(p);
    EXPECT(shmring_consumer_open_file(path, o, &c), SHMRING_OK, NULL);
    EXPECT(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK, NULL);
    CHECK(len == 4 && memcmp(buf, "kept", 4) == 0, "the file ring's message");
    EXPECT(shmring_consumer_flush(c), SHMRING_OK, NULL);
    shmring_consumer_free(c);
    CHECK(unlink(path) == 0, "unlink %s", path);

    /* PANIC cannot be provoked through a correct library; its mapping is
     * tested in Rust (src/lib.rs unit tests). */
    CHECK(strcmp(shmring_strerror(SHMRING_E_PANIC), "SHMRING_E_PANIC") == 0, "strerror");
    CHECK(strcmp(shmring_strerror(12345), "SHMRING_E_UNKNOWN") == 0, "strerror");
    shmring_options_free(o);
    printf("all checks passed\n");
    return 0;
}
