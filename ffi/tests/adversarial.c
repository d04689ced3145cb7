/*
 * Adversarial checks of the C API's promises, one per sub-command, so that
 * a crash or abort in one is reported as that check's failure. Run by
 * ffi/tests/adversarial.rs.
 *
 *   adversarial CHECK BASE
 *
 * BASE: a segment name prefix (BASE-0 .. BASE-9 are used and removed).
 * Prints "pass CHECK" and exits 0 if the promise holds; exits non-zero
 * (or dies) otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#define _GNU_SOURCE
#include <dlfcn.h>
#include <shmring.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *base;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, " [last error: %s]\n", shmring_last_error());                                  \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

#define RC(call, want)                                                                                       \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        CHECK(rc_ == (want), "%s returned %s, expected %s", #call, shmring_strerror(rc_),                  \
              shmring_strerror(want));                                                                       \
    } while (0)

static const char *seg(int n) {
    static char names[10][256];
    snprintf(names[n], sizeof names[n], "%s-%d", base, n);
    return names[n];
}

static void cleanup(void) {
    int n;
    for (n = 0; n < 10; n++) shmring_unlink(seg(n));
}

static shmring_options *small(void) {
    shmring_options *o = shmring_options_new();
    CHECK(o != NULL, "shmring_options_new");
    shmring_options_capacity(o, 4096);
    shmring_options_max_message(o, 256);
    shmring_options_liveness_interval_ns(o, 5000000);
    return o;
}

/* A consumer and a producer on segment n. */
static void pair(int n, shmring_options *o, shmring_consumer **c, shmring_producer **p) {
    RC(shmring_consumer_create(seg(n), o, c), SHMRING_OK);
    RC(shmring_producer_open(seg(n), o, p), SHMRING_OK);
}

/* ---- huge lengths and timeouts ---- */

/* A non-NULL data pointer with a length no buffer can have: TOO_LARGE, not
 * an abort (nor a slice longer than isize::MAX made from it). */
static void huge_send_len(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    char byte = 'x';
    pair(0, o, &c, &p);
    RC(shmring_try_send(p, &byte, (size_t)-1), SHMRING_E_TOO_LARGE);
    RC(shmring_send(p, &byte, (size_t)-1 / 2 + 1), SHMRING_E_TOO_LARGE);
    RC(shmring_send_timeout(p, &byte, (size_t)-1, 1000), SHMRING_E_TOO_LARGE);
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* A receive cap no buffer can have (over PTRDIFF_MAX, e.g. SIZE_MAX used as
 * "unbounded"): refused with SHMRING_E_INVALID, *len 0, the message kept;
 * never an abort (nor a Rust slice longer than isize::MAX made from it). */
static void huge_recv_cap(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    char buf[16];
    size_t len = 99;
    int rc;
    pair(0, o, &c, &p);
    RC(shmring_send(p, "hi", 2), SHMRING_OK);
    fflush(stdout);
    rc = shmring_try_recv(c, buf, (size_t)-1, &len);
    printf("try_recv with cap SIZE_MAX: %s len=%zu\n", shmring_strerror(rc), len);
    CHECK(rc == SHMRING_E_INVALID && len == 0, "rc %s len %zu", shmring_strerror(rc), len);
    RC(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0, "the message was kept");
    RC(shmring_send(p, "yo", 2), SHMRING_OK);
    rc = shmring_recv_timeout(c, buf, (size_t)-1 / 2 + 1, &len, 1000000);
    printf("recv_timeout with cap PTRDIFF_MAX+1: %s len=%zu\n", shmring_strerror(rc), len);
    CHECK(rc == SHMRING_E_INVALID, "rc %s", shmring_strerror(rc));
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

static void huge_send_with_len(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    pair(0, o, &c, &p);
    RC(shmring_try_send_with(p, (size_t)-1, (shmring_fill_fn)abort, NULL), SHMRING_E_TOO_LARGE);
    RC(shmring_send_with(p, ((size_t)1 << 32) + 3, (shmring_fill_fn)abort, NULL), SHMRING_E_TOO_LARGE);
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* UINT64_MAX timeouts: no panic, no overflow; they return as soon as there
 * is something to say. */
static void *send_later(void *arg) {
    shmring_producer *p = arg;
    usleep(50000);
    RC(shmring_send(p, "late", 4), SHMRING_OK);
    return NULL;
}

static void huge_timeouts(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    pthread_t t;
    char buf[300];
    size_t len = 0;
    int i, rc;
    shmring_options_ready_timeout_ns(o, UINT64_MAX);
    pair(0, o, &c, &p);
    RC(shmring_send_timeout(p, "a", 1, UINT64_MAX), SHMRING_OK);
    RC(shmring_recv_timeout(c, buf, sizeof buf, &len, UINT64_MAX), SHMRING_OK);
    CHECK(len == 1, "len %zu", len);
    /* A wait that must really block, then wake. */
    CHECK(pthread_create(&t, NULL, send_later, p) == 0, "pthread_create");
    RC(shmring_recv_timeout(c, buf, sizeof buf, &len, UINT64_MAX), SHMRING_OK);
    CHECK(len == 4, "len %zu", len);
    pthread_join(t, NULL);
    RC(shmring_recv_with_timeout(c, (shmring_read_fn)abort, NULL, 0), SHMRING_E_TIMEOUT);
    /* Full, then the consumer goes: an infinite send wait ends DISCONNECTED. */
    for (i = 0; (rc = shmring_try_send(p, buf, 200)) == SHMRING_OK; i++) CHECK(i < 100, "never full");
    RC(rc, SHMRING_E_FULL);
    shmring_consumer_free(c);
    RC(shmring_send_timeout(p, buf, 200, UINT64_MAX), SHMRING_E_DISCONNECTED);
    RC(shmring_send_with_timeout(p, 200, (shmring_fill_fn)abort, NULL, UINT64_MAX), SHMRING_E_DISCONNECTED);
    shmring_producer_free(p);
    shmring_options_free(o);
}

/* ---- options validated at create ---- */

static void expect_invalid_create(shmring_options *o, const char *what, const char *mentions) {
    shmring_producer *p = (shmring_producer *)1;
    int rc = shmring_producer_create(seg(1), o, &p);
    CHECK(rc == SHMRING_E_INVALID, "%s: create gave %s", what, shmring_strerror(rc));
    CHECK(p == NULL, "%s: *out not NULL", what);
    CHECK(strstr(shmring_last_error(), seg(1)) != NULL, "%s: the message names the segment", what);
    CHECK(strstr(shmring_last_error(), mentions) != NULL, "%s: the message mentions %s", what, mentions);
    shmring_options_free(o);
}

static void options_validated(void) {
    shmring_options *o;
    struct { uint64_t cap; } caps[] = {{0}, {1}, {4095}, {5000}, {8192 + 4096}, {(uint64_t)1 << 41}, {(uint64_t)1 << 63}, {UINT64_MAX}};
    size_t i;
    for (i = 0; i < sizeof caps / sizeof *caps; i++) {
        o = shmring_options_new();
        shmring_options_capacity(o, caps[i].cap);
        expect_invalid_create(o, "capacity", "capacity");
    }
    o = shmring_options_new();
    shmring_options_max_message(o, 0);
    expect_invalid_create(o, "max_message 0", "max message");
    o = shmring_options_new();
    shmring_options_capacity(o, 4096);
    shmring_options_max_message(o, 2041); /* over capacity/2 - 8 */
    expect_invalid_create(o, "max_message too big", "max message");
    o = shmring_options_new();
    shmring_options_max_message(o, UINT32_MAX);
    expect_invalid_create(o, "max_message UINT32_MAX", "max message");
    o = shmring_options_new();
    shmring_options_for_messages(o, UINT64_MAX, UINT32_MAX);
    expect_invalid_create(o, "for_messages overflow", "capacity");
    o = shmring_options_new();
    shmring_options_for_messages(o, (uint64_t)1 << 62, 8);
    expect_invalid_create(o, "for_messages huge", "capacity");
    o = shmring_options_new();
    RC(shmring_options_kind(o, SHMRING_KIND_MPSC), SHMRING_OK);
    shmring_options_max_producers(o, 0);
    expect_invalid_create(o, "0 producers", "producers");
    o = shmring_options_new();
    RC(shmring_options_kind(o, SHMRING_KIND_MPSC), SHMRING_OK);
    shmring_options_max_producers(o, 65);
    expect_invalid_create(o, "65 producers", "producers");
    o = shmring_options_new();
    shmring_options_mode(o, 0);
    expect_invalid_create(o, "mode 0", "mode");
    o = shmring_options_new();
    shmring_options_mode(o, 04600);
    expect_invalid_create(o, "setuid mode", "mode");
    o = shmring_options_new();
    shmring_options_mode(o, UINT32_MAX);
    expect_invalid_create(o, "mode ~0", "mode");
    o = shmring_options_new();
    shmring_options_liveness_interval_ns(o, 0);
    expect_invalid_create(o, "liveness 0", "liveness");
    o = shmring_options_new();
    shmring_options_liveness_interval_ns(o, UINT64_MAX);
    expect_invalid_create(o, "liveness ~0", "liveness");
    /* Setters that return a code leave the options unchanged on error. */
    o = shmring_options_new();
    CHECK(shmring_options_wait(o, -1) == SHMRING_E_INVALID, "wait -1");
    CHECK(shmring_options_kind(o, 2) == SHMRING_E_INVALID, "kind 2");
    CHECK(shmring_options_kind(NULL, SHMRING_KIND_SPSC) == SHMRING_E_INVALID, "kind on NULL");
    CHECK(shmring_options_wait(NULL, SHMRING_WAIT_BUSY) == SHMRING_E_INVALID, "wait on NULL");
    shmring_options_free(o);
}

/* ---- too large for the buffer: nothing consumed, in every mode ---- */

static void too_large_keeps(int mpsc, int untrusted) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    char msg[200], buf[300];
    size_t len = 0;
    memset(msg, 'm', sizeof msg);
    if (mpsc) RC(shmring_options_kind(o, SHMRING_KIND_MPSC), SHMRING_OK);
    if (untrusted) shmring_options_mode(o, 0666); /* others may write: no views in place */
    pair(2, o, &c, &p);
    RC(shmring_send(p, msg, 200), SHMRING_OK);
    RC(shmring_send(p, "b", 1), SHMRING_OK);
    RC(shmring_try_recv(c, buf, 100, &len), SHMRING_E_TOO_LARGE);
    CHECK(len == 200, "len %zu", len);
    RC(shmring_recv_timeout(c, buf, 199, &len, 1000), SHMRING_E_TOO_LARGE);
    RC(shmring_recv(c, NULL, 0, &len), SHMRING_E_TOO_LARGE);
    CHECK(len == 200, "len %zu", len);
    RC(shmring_recv(c, buf, 200, &len), SHMRING_OK);
    CHECK(len == 200 && memcmp(buf, msg, 200) == 0, "the message, whole");
    RC(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 1 && buf[0] == 'b', "then the next");
    RC(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_EMPTY);
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* ---- last error: thread-local ---- */

static void *fail_elsewhere(void *arg) {
    (void)arg;
    CHECK(strcmp(shmring_last_error(), "") == 0, "a new thread starts with no error: %s", shmring_last_error());
    RC(shmring_unlink(seg(9)), SHMRING_E_NOT_FOUND);
    CHECK(strstr(shmring_last_error(), seg(9)) != NULL, "names the segment");
    return NULL;
}

static void last_error_thread_local(void) {
    pthread_t t;
    const char *mine, *again;
    RC(shmring_send(NULL, "x", 1), SHMRING_E_INVALID);
    mine = shmring_last_error();
    CHECK(pthread_create(&t, NULL, fail_elsewhere, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    again = shmring_last_error();
    CHECK(again == mine && strstr(again, "NULL") != NULL, "this thread's message is unchanged: %s", again);
}

/* ---- fork ---- */

static void fork_free_in_child(void) {
    shmring_options *o = small();
    shmring_consumer *c, *c2 = NULL;
    shmring_producer *p;
    shmring_stats s;
    char buf[300];
    size_t len;
    pid_t child;
    int status = 0;
    pair(3, o, &c, &p);
    RC(shmring_send(p, "before", 6), SHMRING_OK);
    fflush(stdout);
    child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        RC(shmring_try_send(p, "x", 1), SHMRING_E_FORKED);
        RC(shmring_send_with(p, 1, (shmring_fill_fn)abort, NULL), SHMRING_E_FORKED);
        RC(shmring_recv_with(c, (shmring_read_fn)abort, NULL), SHMRING_E_FORKED);
        RC(shmring_producer_flush(p), SHMRING_E_FORKED);
        RC(shmring_consumer_flush(c), SHMRING_E_FORKED);
        /* Freeing the inherited creator must neither unlink the name nor
         * detach the parent's consumer. */
        shmring_producer_free(p);
        shmring_consumer_free(c);
        /* The child can attach afresh: the parent's consumer is live. */
        RC(shmring_consumer_open(seg(3), o, &c2), SHMRING_E_BUSY);
        _exit(0);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's checks");
    RC(shmring_consumer_open(seg(3), o, &c2), SHMRING_E_BUSY); /* still attached, name still there */
    RC(shmring_send(p, "after", 5), SHMRING_OK);
    RC(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 6 && memcmp(buf, "before", 6) == 0, "before");
    RC(shmring_recv(c, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0, "after");
    RC(shmring_consumer_stats(c, &s), SHMRING_OK);
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* Accessors in a forked child: the header says the child's copy fails with
 * SHMRING_E_FORKED; the stats and sizes must not claim otherwise. */
static void fork_accessors(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    pid_t child;
    int status = 0;
    pair(4, o, &c, &p);
    fflush(stdout);
    child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        shmring_stats s;
        int rc = shmring_producer_stats(p, &s);
        printf("child: producer_stats=%s max_message=%zu capacity=%llu\n", shmring_strerror(rc),
               shmring_producer_max_message(p), (unsigned long long)shmring_producer_capacity(p));
        rc = shmring_consumer_stats(c, &s);
        printf("child: consumer_stats=%s max_message=%zu capacity=%llu\n", shmring_strerror(rc),
               shmring_consumer_max_message(c), (unsigned long long)shmring_consumer_capacity(c));
        fflush(stdout);
        _exit(0);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child");
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* ---- callbacks that call back into their own handle ---- */

struct nested {
    shmring_producer *p;
    shmring_consumer *c;
    int rc;
};

static void fill_and_send(void *data, size_t len, void *ctx) {
    struct nested *n = ctx;
    memset(data, 'O', len);
    n->rc = shmring_try_send(n->p, "inner", 5);
}

/* A receive from inside the consumer's own callback: refused, and *len
 * (set to 77 here) is 0 after it. */
static void read_and_recv(const void *data, size_t len, void *ctx) {
    struct nested *n = ctx;
    char buf[300];
    size_t got = 77;
    (void)data;
    (void)len;
    n->rc = shmring_try_recv(n->c, buf, sizeof buf, &got);
    printf("nested try_recv=%s *len=%zu\n", shmring_strerror(n->rc), got);
    fflush(stdout);
    CHECK(got == 0, "nested (refused) receive left *len at %zu", got);
}

/* Forbidden by the header; what happens must at least not be silent
 * corruption: the nested call is refused (SHMRING_E_INVALID or similar). */
static void reentrant_send(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    struct nested n;
    char buf[300];
    size_t len = 0;
    int rc, i;
    pair(5, o, &c, &p);
    n.p = p;
    n.c = c;
    n.rc = 12345;
    rc = shmring_send_with(p, 8, fill_and_send, &n);
    printf("outer send_with=%s, nested try_send=%s\n", shmring_strerror(rc), shmring_strerror(n.rc));
    for (i = 0; i < 4; i++) {
        rc = shmring_try_recv(c, buf, sizeof buf, &len);
        printf("recv %d: %s len=%zu '%.*s'\n", i, shmring_strerror(rc), len, (int)(rc == 0 ? len : 0), buf);
        if (rc != SHMRING_OK) break;
    }
    fflush(stdout);
    CHECK(n.rc != SHMRING_OK, "the nested send on the same producer was accepted");
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

static void reentrant_recv(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    struct nested n;
    char buf[300];
    size_t len = 0;
    int rc, i;
    pair(6, o, &c, &p);
    RC(shmring_send(p, "one", 3), SHMRING_OK);
    RC(shmring_send(p, "two", 3), SHMRING_OK);
    RC(shmring_send(p, "three", 5), SHMRING_OK);
    n.p = p;
    n.c = c;
    n.rc = 12345;
    rc = shmring_recv_with(c, read_and_recv, &n);
    printf("outer recv_with=%s, nested try_recv=%s\n", shmring_strerror(rc), shmring_strerror(n.rc));
    for (i = 0; i < 4; i++) {
        rc = shmring_try_recv(c, buf, sizeof buf, &len);
        printf("recv %d: %s len=%zu '%.*s'\n", i, shmring_strerror(rc), len, (int)(rc == 0 ? len : 0), buf);
        if (rc != SHMRING_OK) break;
    }
    fflush(stdout);
    CHECK(n.rc != SHMRING_OK, "the nested recv on the same consumer was accepted");
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* *len on every error path of the copying receives: the size needed on
 * TOO_LARGE, 0 on every other error (ffi/src/recv.rs's doc of shmring_recv). */
static void len_on_every_error(void) {
    shmring_options *o = small();
    shmring_consumer *c;
    shmring_producer *p;
    struct nested n;
    char buf[300];
    size_t len;
    pair(7, o, &c, &p);
    len = 77; RC(shmring_try_recv(c, NULL, 5, &len), SHMRING_E_INVALID); CHECK(len == 0, "NULL buf: %zu", len);
    len = 77; RC(shmring_try_recv(c, buf, sizeof buf, &len), SHMRING_E_EMPTY); CHECK(len == 0, "empty: %zu", len);
    len = 77; RC(shmring_recv_timeout(c, buf, sizeof buf, &len, 1000), SHMRING_E_TIMEOUT); CHECK(len == 0, "timeout: %zu", len);
    RC(shmring_send(p, "twelve bytes", 12), SHMRING_OK);
    len = 77; RC(shmring_try_recv(c, buf, 3, &len), SHMRING_E_TOO_LARGE); CHECK(len == 12, "too large: %zu", len);
    len = 77; RC(shmring_recv(c, NULL, 0, &len), SHMRING_E_TOO_LARGE); CHECK(len == 12, "size query: %zu", len);
    n.p = p;
    n.c = c;
    n.rc = 12345;
    RC(shmring_recv_with(c, read_and_recv, &n), SHMRING_OK);
    CHECK(n.rc == SHMRING_E_INVALID, "nested");
    len = 77; RC(shmring_try_recv(NULL, buf, sizeof buf, &len), SHMRING_E_INVALID);
    printf("NULL consumer: *len=%zu\n", len);
    CHECK(len == 0, "NULL consumer left *len at %zu", len);
    shmring_producer_free(p);
    shmring_consumer_free(c);
    shmring_options_free(o);
}

/* The path of the libshmring_ffi.so this process loaded. */
static void which_library(void) {
    Dl_info info;
    /* A static string inside the library (an object, unlike a function). */
    CHECK(dladdr((const void *)shmring_strerror(0), &info) != 0 && info.dli_fname != NULL, "dladdr");
    printf("library %s\n", info.dli_fname);
}

int main(int argc, char **argv) {
    const char *check;
    CHECK(argc == 3, "usage: adversarial CHECK BASE");
    check = argv[1];
    base = argv[2];
    cleanup();
    if (strcmp(check, "huge_send_len") == 0) huge_send_len();
    else if (strcmp(check, "huge_send_with_len") == 0) huge_send_with_len();
    else if (strcmp(check, "huge_recv_cap") == 0) huge_recv_cap();
    else if (strcmp(check, "huge_timeouts") == 0) huge_timeouts();
    else if (strcmp(check, "options_validated") == 0) options_validated();
    else if (strcmp(check, "too_large_spsc") == 0) too_large_keeps(0, 0);
    else if (strcmp(check, "too_large_mpsc") == 0) too_large_keeps(1, 0);
    else if (strcmp(check, "too_large_spsc_copied") == 0) too_large_keeps(0, 1);
    else if (strcmp(check, "too_large_mpsc_copied") == 0) too_large_keeps(1, 1);
    else if (strcmp(check, "last_error_thread_local") == 0) last_error_thread_local();
    else if (strcmp(check, "fork_free_in_child") == 0) fork_free_in_child();
    else if (strcmp(check, "fork_accessors") == 0) fork_accessors();
    else if (strcmp(check, "reentrant_send") == 0) reentrant_send();
    else if (strcmp(check, "reentrant_recv") == 0) reentrant_recv();
    else if (strcmp(check, "which_library") == 0) which_library();
    else if (strcmp(check, "len_on_every_error") == 0) len_on_every_error();
    else CHECK(0, "unknown check %s", check);
    cleanup();
    printf("pass %s\n", check);
    return 0;
}
