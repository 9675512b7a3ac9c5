/* alloc [-g] [-h] MIB: allocates MIB MiB and touches every page, printing
 * "alloc: N MiB" each 16 MiB, then "alloc: done". Run under a memory
 * limit below MIB it is what the kernel's OOM killer picks.
 */
#include <sys/mman.h>

#include "common.h"

#define MIB (1024UL * 1024UL)

int main(int argc, char **argv)
{
    int go, hold;
    int i = parse_flags(argc, argv, &go, &hold);
    if (i + 1 != argc) {
        fprintf(stderr, "usage: alloc [-g] [-h] MIB\n");
        return 2;
    }
    unsigned long long mib = parse_count("alloc", argv[i]);
    if (go) {
        say("alloc: ready");
        await_line();
    }
    long page = sysconf(_SC_PAGESIZE);
    for (unsigned long long k = 1; k <= mib; k++) {
        /* One mapping per MiB: nothing is ever freed, and there is no
         * single huge mapping that could fail up front. */
        char *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap");
        for (unsigned long off = 0; off < MIB; off += (unsigned long)page)
            p[off] = 1;
        if (k % 16 == 0)
            say("alloc: %llu MiB", k);
    }
    say("alloc: done");
    if (hold)
        await_line();
    return 0;
}
