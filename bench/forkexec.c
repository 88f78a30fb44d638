/* The fork/exec floor: starts the stamp hook N times from a C parent with
 * posix_spawn, printing "<t0> <i>" before each start; the hook stamps its
 * own start, so the difference is what one fork/exec costs. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        char dst[64], id[32];
        snprintf(dst, sizeof dst, "ROUTE_DST=fe%d", i);
        snprintf(id, sizeof id, "EVENT_ID=%d", i);
        char *env[] = {id, dst, "PATH=/usr/bin:/bin", NULL};
        char *args[] = {argv[1], NULL};
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("%ld.%09ld fe%d\n", (long)ts.tv_sec, ts.tv_nsec, i);
        pid_t pid;
        if (posix_spawn(&pid, argv[1], NULL, NULL, args, env) != 0) return 1;
        waitpid(pid, NULL, 0);
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}
