/*
 * Command-line and clock helpers shared by the C producer and consumer
 * examples: the same flags as the Rust examples (--name /x or --name=/x).
 */
#ifndef SHMRING_EXAMPLES_CLI_H
#define SHMRING_EXAMPLES_CLI_H

#define _POSIX_C_SOURCE 200809L
#include <shmring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The value of flag `name` at argv[*i] ("--name value" or "--name=value"),
 * advancing *i past it; NULL if argv[*i] is not that flag. Exits on a
 * missing value. */
static const char *cli_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", name);
        exit(2);
    }
    *i += 1;
    return argv[*i];
}

static unsigned long long cli_number(const char *flag, const char *text) {
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 0);
    if (end == text || *end != '\0') {
        fprintf(stderr, "error: %s: %s is not a number\n", flag, text);
        exit(2);
    }
    return v;
}

static double cli_seconds(const char *flag, const char *text) {
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || v < 0) {
        fprintf(stderr, "error: %s: %s is not a number of seconds\n", flag, text);
        exit(2);
    }
    return v;
}

static int cli_wait(const char *text) {
    if (strcmp(text, "busy") == 0) return SHMRING_WAIT_BUSY;
    if (strcmp(text, "spin") == 0) return SHMRING_WAIT_SPIN;
    if (strcmp(text, "park") == 0) return SHMRING_WAIT_PARK;
    fprintf(stderr, "error: unknown wait strategy \"%s\": expected busy, spin or park\n", text);
    exit(2);
}

static double now_secs(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

/* Options as the Rust examples make them: capacity, wait, kind. */
static shmring_options *cli_options(unsigned long long capacity, int wait, int mpsc) {
    shmring_options *options = shmring_options_new();
    if (options == NULL) {
        fprintf(stderr, "error: %s\n", shmring_last_error());
        exit(2);
    }
    shmring_options_capacity(options, capacity);
    shmring_options_wait(options, wait);
    shmring_options_kind(options, mpsc ? SHMRING_KIND_MPSC : SHMRING_KIND_SPSC);
    return options;
}

/* One summary line, in the Rust examples' format. */
static void cli_summary(const char *role, unsigned long long messages, unsigned long long bytes,
                        unsigned long long errors, double secs, const shmring_stats *stats) {
    double s = secs > 1e-9 ? secs : 1e-9;
    unsigned long long futex = stats->futex_waits + stats->futex_wakes;
    printf("%s: messages=%llu bytes=%llu errors=%llu secs=%.3f msgs_per_s=%.0f gb_per_s=%.3f futex_calls=%llu "
           "futex_per_msg=%.6f torn_records=%llu\n",
           role, messages, bytes, errors, secs, (double)messages / s, (double)bytes / s / 1e9, futex,
           (double)futex / (double)(messages ? messages : 1), (unsigned long long)stats->torn_records);
}

#endif
