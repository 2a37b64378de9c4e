/*
 * echo_epoll.c - minimal single-threaded level-triggered epoll echo server.
 * The "physical limit" reference: read into one shared buffer, write it
 * straight back; only a partial write allocates per-connection memory
 * (the unsent tail), and then the connection waits for EPOLLOUT and stops
 * reading until the tail is flushed (backpressure).
 *
 * usage: echo_epoll PORT      (listens on 127.0.0.1:PORT, runs until killed)
 *
 * Copied from the shared benchmark harness (shared/bench/echo_epoll.c, 2026-11-25) into
 * tests/bench/echo/ so that `make bench` does not depend on it; unchanged apart from this note.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct pending {
    size_t len, off;
    char data[];
};

static struct pending **pend; /* indexed by fd */
static int maxfd;
static int epfd;
static char buf[65536];

static void ctl(int op, int fd, uint32_t events)
{
    struct epoll_event e = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &e) < 0 && op != EPOLL_CTL_DEL) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void drop(int fd)
{
    free(pend[fd]);
    pend[fd] = NULL;
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    maxfd = (int)rl.rlim_cur;
    pend = calloc((size_t)maxfd, sizeof *pend);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    ctl(EPOLL_CTL_ADD, lfd, EPOLLIN);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(epfd, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break; /* EAGAIN, or EMFILE: retried on the next wakeup */
                    if (c >= maxfd) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    ctl(EPOLL_CTL_ADD, c, EPOLLIN);
                }
                continue;
            }
            struct pending *p = pend[fd];
            if (p) { /* waiting for EPOLLOUT to flush the unsent tail */
                ssize_t w = write(fd, p->data + p->off, p->len - p->off);
                if (w < 0) {
                    if (errno != EAGAIN && errno != EINTR)
                        drop(fd);
                    continue;
                }
                p->off += (size_t)w;
                if (p->off == p->len) {
                    free(p);
                    pend[fd] = NULL;
                    ctl(EPOLL_CTL_MOD, fd, EPOLLIN);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) {
                ssize_t w = write(fd, buf, (size_t)r);
                if (w == r)
                    continue;
                if (w < 0) {
                    if (errno != EAGAIN && errno != EINTR) {
                        drop(fd);
                        continue;
                    }
                    w = 0;
                }
                p = malloc(sizeof *p + (size_t)(r - w));
                p->len = (size_t)(r - w);
                p->off = 0;
                memcpy(p->data, buf + w, p->len);
                pend[fd] = p;
                ctl(EPOLL_CTL_MOD, fd, EPOLLOUT);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                drop(fd);
            }
        }
    }
}
