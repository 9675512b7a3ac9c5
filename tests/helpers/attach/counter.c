/* counter [-i MS] [-e] [-k]: prints "count N" on stdout every MS ms
 * (default 100), and "echo: LINE" for each line read from stdin. With -e,
 * every fifth count also goes to stderr as "err N". With -k it first
 * installs a seccomp filter that kills the process on socketpair(2), a
 * call it never makes itself (attach must refuse to inject it).
 *
 * It waits in poll(2) on stdin with the time left until the next count,
 * so an attach usually finds it blocked in a system call. All output goes
 * through write(2), one line a call, so nothing waits in a buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}

static void kill_on_socketpair(void)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = { .len = sizeof(prog) / sizeof(prog[0]), .filter = prog };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
        perror("seccomp");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    long interval = 100;
    int to_stderr = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-i") == 0 && i + 1 < argc)
            interval = atol(argv[++i]);
        else if (strcmp(argv[i], "-e") == 0)
            to_stderr = 1;
        else if (strcmp(argv[i], "-k") == 0)
            kill_on_socketpair();
        else {
            fprintf(stderr, "usage: counter [-i MS] [-e] [-k]\n");
            return 2;
        }
    }
    char line[4096];
    size_t have = 0;
    int stdin_open = 1;
    long long next = now_ms();
    for (unsigned long long count = 1;; ) {
        long long left = next - now_ms();
        if (left <= 0) {
            char out[64];
            int n = snprintf(out, sizeof out, "count %llu\n", count);
            say(1, out, (size_t)n);
            if (to_stderr && count % 5 == 0) {
                n = snprintf(out, sizeof out, "err %llu\n", count);
                say(2, out, (size_t)n);
            }
            count++;
            next += interval;
            continue;
        }
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int r = poll(&p, stdin_open ? 1 : 0, (int)left);
        if (r <= 0)
            continue;
        ssize_t n = read(0, line + have, sizeof line - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            stdin_open = 0;
            continue;
        }
        have += (size_t)n;
        char *nl;
        while ((nl = memchr(line, '\n', have)) != NULL) {
            size_t len = (size_t)(nl - line) + 1;
            char out[4200];
            size_t k = (size_t)snprintf(out, sizeof out, "echo: ");
            memcpy(out + k, line, len);
            say(1, out, k + len);
            memmove(line, line + len, have - len);
            have -= len;
        }
        if (have == sizeof line - 1)
            have = 0;
    }
}
