/*
 * shmring.h: the C API of shmring, lock-free message rings between
 * processes over POSIX shared memory (libshmring_ffi.so / libshmring_ffi.a).
 *
 * Written by hand; ffi/tests/header.rs fails if a declaration here and the
 * Rust definition in ffi/src/ disagree. C99 and C++.
 *
 * Conventions:
 *  - Functions that can fail return SHMRING_OK (0) or a negative SHMRING_E_*
 *    code, and leave a message in shmring_last_error() (thread-local).
 *  - A NULL handle or required pointer, or a name that is not UTF-8, is
 *    SHMRING_E_INVALID, never a crash. Free functions accept NULL.
 *    Freeing a handle twice, or using it after freeing it, is undefined.
 *    Options may be NULL for the defaults.
 *  - No panic crosses the boundary: a caught one is SHMRING_E_PANIC.
 *  - Handles (shmring_options, shmring_producer, shmring_consumer) are NOT
 *    thread-safe: a handle may be moved to another thread, but must be used
 *    by one thread at a time. Different handles may be used concurrently.
 *  - A handle acts for the process that made it: after fork(), the child's
 *    copy fails with SHMRING_E_FORKED (free it, and attach again); its
 *    accessors (stats, max_message, capacity) return the values it had.
 *
 * Link with -lshmring_ffi (and, for the static library, -lpthread -ldl -lm).
 */
#ifndef SHMRING_H
#define SHMRING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define SHMRING_OK 0
/* The ring has no room for the message now (shmring_try_send). */
#define SHMRING_E_FULL (-1)
/* No message is waiting now (shmring_try_recv). */
#define SHMRING_E_EMPTY (-2)
/* The timeout passed, or a creator did not finish the header in time. */
#define SHMRING_E_TIMEOUT (-3)
/* The peer is gone: full and no consumer, or drained and no producer. */
#define SHMRING_E_DISCONNECTED (-4)
/* Send: over the segment's maximum. Receive: larger than the buffer;
 * nothing is consumed and *len is the size needed. */
#define SHMRING_E_TOO_LARGE (-5)
/* The shared memory broke the ring's invariants; the handle stays failed. */
#define SHMRING_E_CORRUPTED (-6)
/* NULL or invalid argument, bad name, options that cannot make a ring. */
#define SHMRING_E_INVALID (-7)
/* No segment (or file) of that name. */
#define SHMRING_E_NOT_FOUND (-8)
/* A segment (or file) of that name exists already. */
#define SHMRING_E_EXISTS (-9)
/* The kernel refused access, or the segment belongs to another user. */
#define SHMRING_E_PERMISSION (-10)
/* The handle was inherited across fork(): attach again in this process. */
#define SHMRING_E_FORKED (-11)
/* The role is taken (a live consumer / SPSC producer, or no free MPSC slot). */
#define SHMRING_E_BUSY (-12)
/* /dev/shm (or the file system) has no room for the segment. */
#define SHMRING_E_NO_SPACE (-13)
/* Not a shmring segment, another version or kind, or the wrong size. */
#define SHMRING_E_INCOMPATIBLE (-14)
/* Another system call failed (the message names it). */
#define SHMRING_E_IO (-15)
/* A panic inside the library was caught (a bug: report the message). */
#define SHMRING_E_PANIC (-16)

/* Wait strategies (shmring_options_wait). */
#define SHMRING_WAIT_BUSY 0 /* poll, never sleep */
#define SHMRING_WAIT_SPIN 1 /* spin 50 us, then sleep on the futex (default) */
#define SHMRING_WAIT_PARK 2 /* sleep on the futex at once */

/* Ring kinds (shmring_options_kind). */
#define SHMRING_KIND_SPSC 0 /* one producer, one consumer (default) */
#define SHMRING_KIND_MPSC 1 /* many producer processes, one consumer */

/* Opaque handles. */
typedef struct shmring_options shmring_options;
typedef struct shmring_producer shmring_producer;
typedef struct shmring_consumer shmring_consumer;

/* A handle's counters. */
typedef struct shmring_stats {
    uint64_t messages;     /* messages sent (producer) or received (consumer) */
    uint64_t bytes;        /* payload bytes sent or received */
    uint64_t futex_waits;  /* futex(FUTEX_WAIT) calls made by this handle */
    uint64_t futex_wakes;  /* futex(FUTEX_WAKE) calls made by this handle */
    uint64_t torn_records; /* MPSC consumer: records of producers that died */
} shmring_stats;

/* Callbacks of the in-place (zero-copy) calls. They must return normally (no
 * longjmp, no C++ exception). A call on the handle they were called for,
 * made from inside the callback, is refused with SHMRING_E_INVALID (freeing
 * that handle there is undefined); other handles may be used. */
/* Writes a message: len bytes at data (initial contents unspecified). */
typedef void (*shmring_fill_fn)(void *data, size_t len, void *ctx);
/* Reads a message: len bytes at data, valid only during the call. */
typedef void (*shmring_read_fn)(const void *data, size_t len, void *ctx);

/* ---- Errors ---- */

/* The message of the last failed call on this thread, naming the segment
 * where there is one; "" if none failed. Valid until the next shmring_* call
 * on this thread. Never NULL; do not free. */
const char *shmring_last_error(void);
/* The name of a code ("SHMRING_E_FULL"...). Static; never NULL. */
const char *shmring_strerror(int code);

/* ---- Options ---- */

/* Defaults: SPSC, 1 MiB capacity, max message capacity/4, mode 0600, unlink
 * on free, spin-then-park. NULL only on an internal error. */
shmring_options *shmring_options_new(void);
void shmring_options_free(shmring_options *options);
/* Data region of a new ring: a power of two, multiple of the page size,
 * 4 KiB to 1 TiB (checked at create: SHMRING_E_INVALID). */
void shmring_options_capacity(shmring_options *options, size_t bytes);
/* Largest message of a new ring (default capacity/4, at most capacity/2-8). */
void shmring_options_max_message(shmring_options *options, size_t bytes);
/* Sizes a new ring to always hold count messages of up to max_size bytes. */
void shmring_options_for_messages(shmring_options *options, size_t count, size_t max_size);
/* SHMRING_KIND_SPSC or SHMRING_KIND_MPSC; checked when opening. */
int shmring_options_kind(shmring_options *options, int kind);
/* Producer slots of a new MPSC ring, 1 to 64 (default 64). */
void shmring_options_max_producers(shmring_options *options, size_t producers);
/* SHMRING_WAIT_BUSY, SHMRING_WAIT_SPIN or SHMRING_WAIT_PARK. */
int shmring_options_wait(shmring_options *options, int strategy);
/* Permission bits of a new segment (default 0600). */
void shmring_options_mode(shmring_options *options, uint32_t mode);
/* Non-zero (default): the creating handle removes the name when freed. */
void shmring_options_unlink_on_free(shmring_options *options, int unlink);
/* How long opening waits for a segment that does not exist yet (default 0:
 * SHMRING_E_NOT_FOUND at once). */
void shmring_options_open_timeout_ns(shmring_options *options, uint64_t timeout_ns);
/* How long opening waits, once the segment exists, for its creator to finish
 * the header (default 1 s). */
void shmring_options_ready_timeout_ns(shmring_options *options, uint64_t timeout_ns);
/* How often a blocked side checks its peers are alive (default 50 ms). */
void shmring_options_liveness_interval_ns(shmring_options *options, uint64_t interval_ns);
/* Non-zero: open segments owned by another user (default: SHMRING_E_PERMISSION). */
void shmring_options_allow_foreign_owner(shmring_options *options, int allow);

/* ---- Handles ----
 * name: a POSIX shared-memory name such as "/jobs". options: NULL for the
 * defaults. *out: the handle, or NULL on failure. */

int shmring_consumer_create(const char *name, const shmring_options *options, shmring_consumer **out);
int shmring_consumer_open(const char *name, const shmring_options *options, shmring_consumer **out);
int shmring_producer_create(const char *name, const shmring_options *options, shmring_producer **out);
int shmring_producer_open(const char *name, const shmring_options *options, shmring_producer **out);
/* File-backed rings (persistent; the file is never removed by shmring). */
int shmring_consumer_create_file(const char *path, const shmring_options *options, shmring_consumer **out);
int shmring_consumer_open_file(const char *path, const shmring_options *options, shmring_consumer **out);
int shmring_producer_create_file(const char *path, const shmring_options *options, shmring_producer **out);
int shmring_producer_open_file(const char *path, const shmring_options *options, shmring_producer **out);
/* Detach and free (NULL: nothing). */
void shmring_consumer_free(shmring_consumer *consumer);
void shmring_producer_free(shmring_producer *producer);
/* Removes a segment's name (attached handles keep working). */
int shmring_unlink(const char *name);

/* ---- Sending ---- (data may be NULL when len is 0) */

/* Blocks while the ring is full. */
int shmring_send(shmring_producer *producer, const void *data, size_t len);
/* SHMRING_E_FULL if there is no room now. */
int shmring_try_send(shmring_producer *producer, const void *data, size_t len);
/* SHMRING_E_TIMEOUT after timeout_ns nanoseconds without room. */
int shmring_send_timeout(shmring_producer *producer, const void *data, size_t len, uint64_t timeout_ns);

/* Claims len bytes (blocking while full), calls fill(data, len, ctx) to write
 * them in place (the ring's own memory where every process that can write
 * the segment is this user's; else a buffer copied in), then publishes. */
int shmring_send_with(shmring_producer *producer, size_t len, shmring_fill_fn fill, void *ctx);
/* SHMRING_E_FULL (fill not called) if there is no room now. */
int shmring_try_send_with(shmring_producer *producer, size_t len, shmring_fill_fn fill, void *ctx);
/* SHMRING_E_TIMEOUT (fill not called) after timeout_ns nanoseconds without room. */
int shmring_send_with_timeout(shmring_producer *producer, size_t len, shmring_fill_fn fill, void *ctx,
                              uint64_t timeout_ns);

/* ---- Receiving ----
 * Copies the next message into buf (cap bytes) and sets *len to its length.
 * A message larger than cap: SHMRING_E_TOO_LARGE, nothing consumed, *len is
 * the size needed (shmring_consumer_max_message() bytes always suffice).
 * On any other error *len is 0. A cap over PTRDIFF_MAX: SHMRING_E_INVALID. */

/* Blocks while the ring is empty. */
int shmring_recv(shmring_consumer *consumer, void *buf, size_t cap, size_t *len);
/* SHMRING_E_EMPTY if no message is waiting. */
int shmring_try_recv(shmring_consumer *consumer, void *buf, size_t cap, size_t *len);
/* SHMRING_E_TIMEOUT after timeout_ns nanoseconds without a message. */
int shmring_recv_timeout(shmring_consumer *consumer, void *buf, size_t cap, size_t *len, uint64_t timeout_ns);

/* Calls read(data, len, ctx) with the next message in place (blocking while
 * empty), then frees it. Never SHMRING_E_TOO_LARGE. */
int shmring_recv_with(shmring_consumer *consumer, shmring_read_fn read, void *ctx);
/* SHMRING_E_EMPTY (read not called) if no message is waiting. */
int shmring_try_recv_with(shmring_consumer *consumer, shmring_read_fn read, void *ctx);
/* SHMRING_E_TIMEOUT (read not called) after timeout_ns nanoseconds without a message. */
int shmring_recv_with_timeout(shmring_consumer *consumer, shmring_read_fn read, void *ctx, uint64_t timeout_ns);

/* ---- Accessors ---- */

int shmring_producer_stats(const shmring_producer *producer, shmring_stats *out);
int shmring_consumer_stats(const shmring_consumer *consumer, shmring_stats *out);
/* The largest message the segment takes (0 for NULL). */
size_t shmring_producer_max_message(const shmring_producer *producer);
size_t shmring_consumer_max_message(const shmring_consumer *consumer);
/* Bytes in the data region (0 for NULL). */
size_t shmring_producer_capacity(const shmring_producer *producer);
size_t shmring_consumer_capacity(const shmring_consumer *consumer);
/* File-backed rings: msync(MS_SYNC) what is committed (producer) or the
 * consumer's position; in effect a no-op for shared memory. */
int shmring_producer_flush(shmring_producer *producer);
int shmring_consumer_flush(shmring_consumer *consumer);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHMRING_H */
