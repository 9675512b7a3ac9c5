/* netsend [-g] [-h] BYTES: sends BYTES through a TCP connection on
 * 127.0.0.1, to a listener it opens itself (on a free port), so the whole
 * exchange stays in the isle's network namespace. A child process sends;
 * the parent receives and counts. Prints
 * "netsend: done sent=S received=R" once the child has exited and the
 * parent has read to EOF.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "common.h"

int main(int argc, char **argv)
{
    int go, hold;
    int i = parse_flags(argc, argv, &go, &hold);
    if (i + 1 != argc) {
        fprintf(stderr, "usage: netsend [-g] [-h] BYTES\n");
        return 2;
    }
    unsigned long long total = parse_count("netsend", argv[i]);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0)
        die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind 127.0.0.1:0");
    if (listen(lfd, 1) < 0)
        die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(lfd, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");

    if (go) {
        say("netsend: ready");
        await_line();
    }
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(lfd);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        static char buf[65536];
        memset(buf, 'x', sizeof buf);
        unsigned long long left = total;
        while (left > 0) {
            size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
            ssize_t n = send(fd, buf, want, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                die("send");
            }
            left -= (unsigned long long)n;
        }
        close(fd);
        _exit(0);
    }

    int cfd = accept(lfd, NULL, NULL);
    if (cfd < 0)
        die("accept");
    unsigned long long received = 0;
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(cfd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("recv");
        }
        if (n == 0)
            break;
        received += (unsigned long long)n;
    }
    int status;
    if (waitpid(child, &status, 0) < 0)
        die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "netsend: the sender failed (status %d)\n", status);
        return 1;
    }
    close(cfd);
    close(lfd);
    say("netsend: done sent=%llu received=%llu", total, received);
    if (hold)
        await_line();
    return received == total ? 0 : 1;
}
