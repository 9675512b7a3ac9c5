/* blocker MODE: a process in one particular state for attach to meet.
 *   read   prints "ready", then blocks in read(2) on stdin and prints
 *          "got: LINE" for each line (a read interrupted by the attach
 *          must be restarted, not fail with EINTR).
 *   sleep  loops: nanosleep(2) for 1500 ms, then prints "slept N ms"
 *          with the time measured around it, or "EINTR" if the sleep
 *          was cut short instead of restarted.
 *   spin   loops: a busy loop of about 300 ms without any system call,
 *          keeping its sum in a register, then prints "spin K ok" if the
 *          sum is right ("spin K BAD" if a register was disturbed).
 *   strict enters seccomp strict mode, then echoes stdin to stdout with
 *          read and write only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void say(const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(1, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    char buf[4096];
    if (argc != 2) {
        fprintf(stderr, "usage: blocker read|sleep|spin|strict\n");
        return 2;
    }
    if (strcmp(argv[1], "read") == 0) {
        say("ready\n");
        for (;;) {
            ssize_t n = read(0, buf, sizeof buf - 1);
            if (n < 0 && errno == EINTR) {
                say("EINTR\n");
                continue;
            }
            if (n <= 0)
                return 0;
            buf[n] = 0;
            char out[4200];
            snprintf(out, sizeof out, "got: %s", buf);
            say(out);
        }
    }
    if (strcmp(argv[1], "sleep") == 0) {
        say("ready\n");
        for (;;) {
            struct timespec ts = { 1, 500000000 };
            long long t0 = now_ms();
            if (nanosleep(&ts, NULL) != 0) {
                say(errno == EINTR ? "EINTR\n" : "nanosleep failed\n");
                continue;
            }
            char out[64];
            snprintf(out, sizeof out, "slept %lld ms\n", now_ms() - t0);
            say(out);
        }
    }
    if (strcmp(argv[1], "spin") == 0) {
        say("ready\n");
        /* Calibrate once, so each round lasts about 300 ms. */
        unsigned long long n = 1u << 20;
        for (;;) {
            long long t0 = now_ms();
            unsigned long long s = 0;
            for (unsigned long long i = 0; i < n; i++) {
                s += i;
                __asm__ volatile("" : "+r"(s));
            }
            if (now_ms() - t0 >= 300 || n >= (1ull << 40))
                break;
            n *= 2;
        }
        for (unsigned long long round = 1;; round++) {
            unsigned long long s = 0;
            for (unsigned long long i = 0; i < n; i++) {
                s += i;
                __asm__ volatile("" : "+r"(s));
            }
            char out[64];
            snprintf(out, sizeof out, "spin %llu %s\n", round, s == n * (n - 1) / 2 ? "ok" : "BAD");
            say(out);
        }
    }
    if (strcmp(argv[1], "strict") == 0) {
        say("ready\n");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) {
            perror("seccomp strict");
            return 2;
        }
        for (;;) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0)
                syscall(SYS_exit, 0);
            write(1, buf, (size_t)n);
        }
    }
    fprintf(stderr, "blocker: unknown mode %s\n", argv[1]);
    return 2;
}
