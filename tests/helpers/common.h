/* Shared by the helper programs the metrics tests run inside isles.
 *
 * Each helper is compiled with `gcc -static` at test time, so it runs in
 * the busybox rootfs without a libc of its own. They talk to the test on
 * stdout (one line per event) and wait for it on stdin: `-g` waits for a
 * line before the work starts (so two isles can start together), `-h`
 * holds after the work until a line or EOF arrives (so the isle is still
 * running, and its counters still served, when the test scrapes).
 *
 * Waiting uses read(2) one byte at a time: stdio would read ahead and eat
 * the next line, which belongs to the next wait.
 */
#ifndef HELPERS_COMMON_H
#define HELPERS_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(2);
}

/* Blocks until a newline or EOF on stdin. */
static inline void await_line(void)
{
    char c;
    for (;;) {
        ssize_t n = read(0, &c, 1);
        if (n == 1 && c != '\n')
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

/* Parses -g and -h; returns the index of the first operand. */
static inline int parse_flags(int argc, char **argv, int *go, int *hold)
{
    int i = 1;
    *go = 0;
    *hold = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "-g") == 0)
            *go = 1;
        else if (strcmp(argv[i], "-h") == 0)
            *hold = 1;
        else {
            fprintf(stderr, "%s: unknown flag %s (use -g, -h)\n", argv[0], argv[i]);
            exit(2);
        }
    }
    return i;
}

/* A line on stdout, flushed at once: the test reads it through a pipe. */
#define say(...)                         \
    do {                                 \
        printf(__VA_ARGS__);             \
        putchar('\n');                   \
        fflush(stdout);                  \
    } while (0)

static inline unsigned long long parse_count(const char *prog, const char *text)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno || *end || end == text) {
        fprintf(stderr, "%s: '%s' is not a count\n", prog, text);
        exit(2);
    }
    return n;
}

#endif
