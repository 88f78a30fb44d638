/* The query floor: a trivial echo over a Unix stream socket. Listens on
 * argv[1], serves one connection at a time and writes back every byte it
 * reads, so a request line comes back as its own reply. The bench times
 * the same Python client against this and against netevd's `status`,
 * which cancels the client's own overhead. Exits on SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof a.sun_path) return 2;
    strcpy(a.sun_path, argv[1]);
    unlink(argv[1]);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0) {
        perror(argv[1]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(c, buf + off, (size_t)(n - off));
                if (w <= 0) break;
                off += w;
            }
            if (off < n) break;
        }
        close(c);
    }
}
