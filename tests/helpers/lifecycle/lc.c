/* lc: the lifecycle tests' helper, run inside isles (built with gcc -static).
 *
 *   lc seq N [USEC]  writes "out I\n" to stdout and "err I\n" to stderr for
 *                    I = 0 .. N-1, alternating, one write(2) per line, with
 *                    an optional pause of USEC microseconds after each pair
 *   lc hog MIB       allocates MIB MiB and touches every page, then exits 0
 *                    (an isle with a lower memory limit is OOM-killed)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "lc: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        buf += n;
        len -= (size_t)n;
    }
}

static long number(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "lc: '%s' is not a non-negative number\n", s);
        exit(2);
    }
    return v;
}

static int seq(long n, long pause)
{
    char line[64];
    for (long i = 0; i < n; i++) {
        int len = snprintf(line, sizeof line, "out %ld\n", i);
        write_all(1, line, (size_t)len);
        len = snprintf(line, sizeof line, "err %ld\n", i);
        write_all(2, line, (size_t)len);
        if (pause > 0)
            usleep((useconds_t)pause);
    }
    return 0;
}

static int hog(long mib)
{
    long page = sysconf(_SC_PAGESIZE);
    for (long m = 0; m < mib; m++) {
        char *p = malloc(1 << 20);
        if (!p)
            die("malloc");
        for (long off = 0; off < (1 << 20); off += page)
            p[off] = 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "seq") == 0)
        return seq(number(argv[2]), argc > 3 ? number(argv[3]) : 0);
    if (argc == 3 && strcmp(argv[1], "hog") == 0)
        return hog(number(argv[2]));
    fprintf(stderr, "usage: lc seq N [USEC] | lc hog MIB\n");
    return 2;
}
