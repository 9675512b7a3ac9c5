/* writer [-g] [-h] FILE DIRECT_MIB BUFFERED_MIB: writes DIRECT_MIB MiB to
 * FILE with O_DIRECT, then BUFFERED_MIB MiB more through the page cache,
 * then fsyncs, so every byte has reached the disk when it says
 * "writer: done direct=D buffered=B" (in bytes).
 */
#define _GNU_SOURCE
#include <fcntl.h>

#include "common.h"

#define CHUNK (1024 * 1024)

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

int main(int argc, char **argv)
{
    int go, hold;
    int i = parse_flags(argc, argv, &go, &hold);
    if (i + 3 != argc) {
        fprintf(stderr, "usage: writer [-g] [-h] FILE DIRECT_MIB BUFFERED_MIB\n");
        return 2;
    }
    const char *path = argv[i];
    unsigned long long direct = parse_count("writer", argv[i + 1]);
    unsigned long long buffered = parse_count("writer", argv[i + 2]);

    /* O_DIRECT wants a buffer aligned to the logical block size; a page
     * is a multiple of any block size in use. */
    char *buf;
    if (posix_memalign((void **)&buf, 4096, CHUNK) != 0)
        die("posix_memalign");
    /* Not zeros, so that no layer can recognise and skip the data. */
    for (size_t k = 0; k < CHUNK; k++)
        buf[k] = (char)(k * 131 + 7);

    if (go) {
        say("writer: ready");
        await_line();
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0)
        die("open O_DIRECT");
    for (unsigned long long k = 0; k < direct; k++)
        write_all(fd, buf, CHUNK);
    /* Drop O_DIRECT on the same file: the rest goes through the cache. */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_DIRECT) < 0)
        die("fcntl");
    for (unsigned long long k = 0; k < buffered; k++)
        write_all(fd, buf, CHUNK);
    if (fsync(fd) < 0)
        die("fsync");
    if (close(fd) < 0)
        die("close");
    say("writer: done direct=%llu buffered=%llu", direct * CHUNK, buffered * CHUNK);
    if (hold)
        await_line();
    return 0;
}
