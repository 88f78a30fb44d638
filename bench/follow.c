/* Followers for the fan-out figure: opens N connections to the control
 * socket at argv[1], subscribes each, then reads every stream with poll
 * and discards it as fast as it comes, so the daemon never waits on a
 * slow reader. On SIGTERM prints "<events> <dropped>" per connection:
 * event lines read, and whether a `dropped` line came (the daemon found
 * the reader too slow, which would void the figure). One process with
 * poll does nothing but read(2); the bench runs it at real-time priority
 * during the ingest so that other processes on the shared cores cannot
 * hold it back (see Followers in bench.py). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXN 256

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

/* Counts lines, and notes a `{"v":1,"dropped"` line, without parsing:
 * the daemon writes one JSON object per line. memchr, not a byte loop:
 * 10 streams of a 100,000-event run are 400 MB, and a byte loop made
 * this reader the slowest process in the run. */
struct reader {
    int fd;
    long lines;
    int dropped;
    int open;
    char head[32];
    size_t head_len; /* bytes of the current line kept, up to sizeof head */
};

static void keep_head(struct reader *r, const char *b, size_t n) {
    size_t room = sizeof r->head - r->head_len;
    if (n > room) n = room;
    memcpy(r->head + r->head_len, b, n);
    r->head_len += n;
}

static void feed(struct reader *r, const char *b, ssize_t len) {
    const char *p = b, *end = b + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            keep_head(r, p, (size_t)(end - p));
            return;
        }
        keep_head(r, p, (size_t)(nl - p));
        if (memmem(r->head, r->head_len, "\"dropped\"", 9)) r->dropped = 1;
        else r->lines++;
        r->head_len = 0;
        p = nl + 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    if (n < 1 || n > MAXN) return 2;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof a.sun_path) return 2;
    strcpy(a.sun_path, argv[1]);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    struct reader rs[MAXN];
    struct pollfd pf[MAXN];
    static const char sub[] = "{\"command\":\"subscribe\"}\n";
    for (int i = 0; i < n; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        rs[i].fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (rs[i].fd < 0 || connect(rs[i].fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            write(rs[i].fd, sub, sizeof sub - 1) != (ssize_t)(sizeof sub - 1)) {
            perror(argv[1]);
            return 1;
        }
        rs[i].open = 1;
        /* the first line is the reply to subscribe, not an event */
        rs[i].lines = -1;
        pf[i].fd = rs[i].fd;
        pf[i].events = POLLIN;
    }
    static char buf[1 << 18];
    /* "ready" once every subscription is acknowledged, so the caller
     * knows each event from then on reaches all N */
    int ready = 0;
    while (!stop) {
        if (!ready) {
            int all = 1;
            for (int i = 0; i < n; i++) all &= rs[i].lines >= 0 || !rs[i].open;
            if (all) {
                printf("ready\n");
                fflush(stdout);
                ready = 1;
            }
        }
        int k = poll(pf, (nfds_t)n, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t got = read(rs[i].fd, buf, sizeof buf);
            if (got > 0) {
                feed(&rs[i], buf, got);
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                rs[i].open = 0;
                pf[i].fd = -1;
            }
        }
    }
    /* what the daemon wrote before SIGTERM is still counted */
    for (int i = 0; i < n; i++) {
        if (!rs[i].open) continue;
        fcntl(rs[i].fd, F_SETFL, fcntl(rs[i].fd, F_GETFL) | O_NONBLOCK);
        ssize_t got;
        while ((got = read(rs[i].fd, buf, sizeof buf)) > 0) feed(&rs[i], buf, got);
    }
    for (int i = 0; i < n; i++) printf("%ld %d\n", rs[i].lines, rs[i].dropped);
    return 0;
}
