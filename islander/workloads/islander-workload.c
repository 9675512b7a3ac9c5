/* islander-workload: the calibrated loads `islander verify` runs inside an
 * isle to push each limit. islander/build.rs compiles it with
 * `gcc -static`, so it needs nothing from the image it runs in.
 *
 *   islander-workload idle
 *   islander-workload cpu THREADS SECONDS
 *   islander-workload memory TARGET_BYTES STEP_BYTES STEP_MS
 *   islander-workload write-direct FILE SECONDS MAX_BYTES BLOCK
 *   islander-workload read-direct FILE SECONDS MAX_BYTES BLOCK
 *   islander-workload write-buffered FILE SECONDS MAX_BYTES BLOCK SYNC_EVERY
 *
 * Each load talks on stdout, one line per event, flushed at once, for
 * verify to time its measurement windows by:
 *   start                  the measured part begins now
 *   progress F             F (0..1) of the measured part is done
 *   done KEY=VALUE...      it ended normally (what it did, in bytes/seconds)
 * Errors go to stderr, with exit status 2; a bad command line exits 64.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 64
#define EXIT_FAIL 2

/* Progress lines per second of a timed load: enough for a smooth bar,
 * few enough to cost nothing. */
#define PROGRESS_HZ 4

static void fail(const char *what)
{
    fprintf(stderr, "islander-workload: %s: %s\n", what, strerror(errno));
    exit(EXIT_FAIL);
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long number(const char *name, const char *text)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "islander-workload: %s '%s' is not a non-negative integer\n", name, text);
        exit(EXIT_USAGE);
    }
    return v;
}

/* Reports progress at most PROGRESS_HZ times a second. */
struct ticker {
    double start, next;
};

static void tick(struct ticker *t, double fraction)
{
    double at = now();
    if (at < t->next)
        return;
    t->next = at + 1.0 / PROGRESS_HZ;
    if (fraction > 1.0)
        fraction = 1.0;
    say("progress %.3f", fraction);
}

/* ---- idle: the isle's PID 1 while the loads run through exec ---- */

static void on_signal(int sig)
{
    (void)sig;
}

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static void __attribute__((noreturn)) idle(void)
{
    /* PID 1 ignores signals it has no handler for; these make SIGTERM end
     * it and SIGCHLD wake it to reap orphans the loads leave. */
    signal(SIGTERM, on_term);
    signal(SIGCHLD, on_signal);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        pause();
    }
}

/* ---- cpu: THREADS busy loops for SECONDS ---- */

static volatile double cpu_until;

static void *spin(void *arg)
{
    volatile uint64_t *count = arg;
    while (now() < cpu_until)
        for (int i = 0; i < 100000; i++)
            (*count)++;
    return NULL;
}

static int cpu(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: islander-workload cpu THREADS SECONDS\n");
        return EXIT_USAGE;
    }
    unsigned long long threads = number("THREADS", argv[0]);
    double seconds = (double)number("SECONDS", argv[1]);
    if (threads == 0 || threads > 4096) {
        fprintf(stderr, "islander-workload: THREADS must be 1..4096\n");
        return EXIT_USAGE;
    }
    pthread_t *ids = calloc(threads, sizeof *ids);
    uint64_t *counts = calloc(threads, 64); /* one cache line each */
    if (!ids || !counts)
        fail("calloc");
    struct ticker t = { now(), 0 };
    cpu_until = t.start + seconds;
    say("start");
    for (unsigned long long i = 0; i < threads; i++)
        if ((errno = pthread_create(&ids[i], NULL, spin, &counts[i * 8])) != 0)
            fail("pthread_create");
    while (now() < cpu_until) {
        tick(&t, (now() - t.start) / seconds);
        usleep(50000);
    }
    for (unsigned long long i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    say("done threads=%llu seconds=%.3f", threads, now() - t.start);
    return 0;
}

/* ---- memory: climb in steps to TARGET_BYTES, touching every page ---- */

static int memory(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: islander-workload memory TARGET_BYTES STEP_BYTES STEP_MS\n");
        return EXIT_USAGE;
    }
    unsigned long long target = number("TARGET_BYTES", argv[0]);
    unsigned long long step = number("STEP_BYTES", argv[1]);
    unsigned long long pause_ms = number("STEP_MS", argv[2]);
    long page = sysconf(_SC_PAGESIZE);
    if (step < (unsigned long long)page) {
        fprintf(stderr, "islander-workload: STEP_BYTES must be at least a page\n");
        return EXIT_USAGE;
    }
    struct ticker t = { now(), 0 };
    say("start");
    unsigned long long held = 0;
    while (held < target) {
        size_t len = step;
        if (target - held < len)
            len = target - held;
        /* A mapping per step, never freed: usage only climbs, and no single
         * huge mapping can be refused up front. */
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap");
        /* Writing a byte per page is what makes the kernel charge it. */
        for (size_t off = 0; off < len; off += (size_t)page)
            p[off] = (char)off;
        held += len;
        say("progress %.3f held=%llu", (double)held / (double)target, held);
        usleep((useconds_t)(pause_ms * 1000));
    }
    say("done held=%llu seconds=%.3f", held, now() - t.start);
    return 0;
}

/* ---- block IO ---- */

static void *aligned_block(size_t block)
{
    void *buf;
    /* O_DIRECT wants memory aligned to the device's logical block size;
     * a page is a multiple of every size in use. */
    if (posix_memalign(&buf, 4096, block) != 0)
        fail("posix_memalign");
    /* Not zeros: nothing along the way may treat the data as a hole. */
    for (size_t i = 0; i < block; i++)
        ((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);
    return buf;
}

static void full_write(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("write");
        }
        buf += n;
        len -= (size_t)n;
    }
}

struct io_args {
    const char *file;
    double seconds;
    unsigned long long max_bytes;
    size_t block;
};

static int io_args(int argc, char **argv, int want, const char *usage, struct io_args *a)
{
    if (argc != want) {
        fprintf(stderr, "usage: islander-workload %s\n", usage);
        return EXIT_USAGE;
    }
    a->file = argv[0];
    a->seconds = (double)number("SECONDS", argv[1]);
    a->max_bytes = number("MAX_BYTES", argv[2]);
    a->block = number("BLOCK", argv[3]);
    if (a->block == 0 || a->block % 4096 != 0 || a->block > (64u << 20)) {
        fprintf(stderr, "islander-workload: BLOCK must be a multiple of 4096 up to 64 MiB\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* write-direct: BLOCK-sized O_DIRECT writes until SECONDS pass or
 * MAX_BYTES are written. */
static int direct_writer(int argc, char **argv)
{
    struct io_args a;
    int bad = io_args(argc, argv, 4, "write-direct FILE SECONDS MAX_BYTES BLOCK", &a);
    if (bad)
        return bad;
    char *buf = aligned_block(a.block);
    int fd = open(a.file, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd < 0)
        fail("open O_DIRECT for writing");
    struct ticker t = { now(), 0 };
    say("start");
    unsigned long long written = 0;
    double end = t.start + a.seconds;
    while (written < a.max_bytes && now() < end) {
        full_write(fd, buf, a.block);
        written += a.block;
        tick(&t, (now() - t.start) / a.seconds);
    }
    double took = now() - t.start;
    if (close(fd) < 0)
        fail("close");
    say("done bytes=%llu seconds=%.3f", written, took);
    return 0;
}

/* write-buffered: writes through the page cache and fsyncs after every
 * SYNC_EVERY bytes, and once more at the end, inside the measured time:
 * when it says done, every byte has reached the disk. */
static int buffered_writer(int argc, char **argv)
{
    const char *usage = "write-buffered FILE SECONDS MAX_BYTES BLOCK SYNC_EVERY";
    if (argc != 5) {
        fprintf(stderr, "usage: islander-workload %s\n", usage);
        return EXIT_USAGE;
    }
    struct io_args a;
    int bad = io_args(4, argv, 4, usage, &a);
    if (bad)
        return bad;
    unsigned long long sync_every = number("SYNC_EVERY", argv[4]);
    if (sync_every < a.block) {
        fprintf(stderr, "islander-workload: SYNC_EVERY must be at least BLOCK\n");
        return EXIT_USAGE;
    }
    char *buf = aligned_block(a.block);
    int fd = open(a.file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        fail("open for writing");
    struct ticker t = { now(), 0 };
    say("start");
    unsigned long long written = 0, unsynced = 0;
    double end = t.start + a.seconds;
    while (written < a.max_bytes && now() < end) {
        full_write(fd, buf, a.block);
        written += a.block;
        unsynced += a.block;
        if (unsynced >= sync_every) {
            if (fsync(fd) < 0)
                fail("fsync");
            unsynced = 0;
        }
        tick(&t, (now() - t.start) / a.seconds);
    }
    if (fsync(fd) < 0)
        fail("fsync");
    double took = now() - t.start;
    if (close(fd) < 0)
        fail("close");
    say("done bytes=%llu seconds=%.3f", written, took);
    return 0;
}

/* Reads FILE in BLOCK pieces with O_DIRECT, round and round (each pass
 * reads the device again: O_DIRECT bypasses the page cache), until SECONDS
 * pass or MAX_BYTES are read. */
static int reader(int argc, char **argv)
{
    struct io_args a;
    int bad = io_args(argc, argv, 4, "read-direct FILE SECONDS MAX_BYTES BLOCK", &a);
    if (bad)
        return bad;
    char *buf = aligned_block(a.block);
    int fd = open(a.file, O_RDONLY | O_DIRECT);
    if (fd < 0)
        fail("open O_DIRECT for reading");
    struct ticker t = { now(), 0 };
    say("start");
    unsigned long long got = 0, offset = 0;
    double end = t.start + a.seconds;
    while (got < a.max_bytes && now() < end) {
        ssize_t n = pread(fd, buf, a.block, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("read");
        }
        if (n == 0) {
            if (offset == 0) {
                fprintf(stderr, "islander-workload: %s is empty\n", a.file);
                return EXIT_FAIL;
            }
            offset = 0;
            continue;
        }
        offset += (unsigned long long)n;
        got += (unsigned long long)n;
        tick(&t, (now() - t.start) / a.seconds);
    }
    say("done bytes=%llu seconds=%.3f", got, now() - t.start);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: islander-workload idle|cpu|memory|write-direct|read-direct|write-buffered ARGS...\n");
        return EXIT_USAGE;
    }
    const char *load = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(load, "idle") == 0)
        idle();
    if (strcmp(load, "cpu") == 0)
        return cpu(argc, argv);
    if (strcmp(load, "memory") == 0)
        return memory(argc, argv);
    if (strcmp(load, "write-direct") == 0)
        return direct_writer(argc, argv);
    if (strcmp(load, "write-buffered") == 0)
        return buffered_writer(argc, argv);
    if (strcmp(load, "read-direct") == 0)
        return reader(argc, argv);
    fprintf(stderr, "islander-workload: unknown load '%s'\n", load);
    return EXIT_USAGE;
}
