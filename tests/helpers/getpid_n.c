/* getpid_n [-g] [-h] N: makes exactly N getpid system calls.
 *
 * syscall(SYS_getpid) rather than getpid(), so no libc caching can ever
 * turn a call into no system call. Prints "getpid_n: done N" afterwards.
 */
#include <sys/syscall.h>

#include "common.h"

int main(int argc, char **argv)
{
    int go, hold;
    int i = parse_flags(argc, argv, &go, &hold);
    if (i + 1 != argc) {
        fprintf(stderr, "usage: getpid_n [-g] [-h] N\n");
        return 2;
    }
    unsigned long long n = parse_count("getpid_n", argv[i]);
    if (go) {
        say("getpid_n: ready");
        await_line();
    }
    for (unsigned long long k = 0; k < n; k++)
        syscall(SYS_getpid);
    say("getpid_n: done %llu", n);
    if (hold)
        await_line();
    return 0;
}
