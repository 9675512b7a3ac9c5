/* Run on the host by the attach tests.
 *   hostwrap noptrace CMD [ARG...]: runs CMD under a seccomp filter that
 *       makes ptrace(2) fail with EPERM, as some container runtimes do.
 *   hostwrap trace PID: becomes PID's tracer (PTRACE_SEIZE), prints
 *       "tracing", and keeps it until stdin closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "noptrace") == 0) {
        struct sock_filter prog[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ptrace, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog fprog = { .len = sizeof(prog) / sizeof(prog[0]), .filter = prog };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
            perror("seccomp");
            return 2;
        }
        execvp(argv[2], argv + 2);
        perror("execvp");
        return 127;
    }
    if (argc == 3 && strcmp(argv[1], "trace") == 0) {
        pid_t pid = (pid_t)atoi(argv[2]);
        if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0) {
            perror("PTRACE_SEIZE");
            return 2;
        }
        printf("tracing\n");
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0)
            ;
        return 0;
    }
    fprintf(stderr, "usage: hostwrap noptrace CMD [ARG...] | hostwrap trace PID\n");
    return 2;
}
