/* loadgen_common.h -- what the two load generators share: echo/loadgen.c (the echo-server
 * benchmark) and chat/chatload.c (the chat fan-out benchmark).  Both are single-threaded
 * epoll clients on 127.0.0.1 that busy-poll while measuring, keep a log-linear latency
 * histogram and read the server's CPU time from /proc; the pieces here are those they had
 * copied from each other, kept in one place so that both measure the same way.
 *
 * Header-only (static inline), included as "../loadgen_common.h": each program is still
 * one .c file that its run.sh compiles alone, with no -I and no library.  Define LG_NAME
 * (the program's name, which prefixes its messages) before including it. */
#ifndef TW_LOADGEN_COMMON_H
#define TW_LOADGEN_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef LG_NAME
#error "define LG_NAME, the program's name for its messages, before including loadgen_common.h"
#endif

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A setup failure (errno says why): the run cannot go on. */
static inline void die(const char *msg)
{
    fprintf(stderr, LG_NAME ": %s: %s\n", msg, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------------ */
/* latency histogram: log-linear, 64 sub-buckets per power of two (ns)  */

#define HSUB_BITS 6
#define HSUB (1 << HSUB_BITS)
#define HBUCKETS ((64 - HSUB_BITS + 1) * HSUB)

/* About 30 KiB: keep it static, not on the stack.  Zeroed = empty. */
struct hist {
    uint64_t b[HBUCKETS];
    uint64_t n, max, sum;
};

static inline unsigned hidx(uint64_t v)
{
    if (v < 2 * HSUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    return (msb - HSUB_BITS + 1) * HSUB + (unsigned)((v >> (msb - HSUB_BITS)) & (HSUB - 1));
}

static inline void hbounds(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < 2 * HSUB) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned msb = i / HSUB + HSUB_BITS - 1;
    unsigned sub = i % HSUB;
    *lo = (uint64_t)(HSUB + sub) << (msb - HSUB_BITS);
    *width = 1ull << (msb - HSUB_BITS);
}

static inline void hist_add(struct hist *h, uint64_t v)
{
    h->b[hidx(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static inline void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

/* value (in microseconds) at quantile q: the middle of its bucket, at most the maximum */
static inline double hist_q(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    double exact = q * (double)h->n;
    uint64_t target = (uint64_t)exact;
    if ((double)target < exact)
        target++; /* ceil */
    if (target < 1)
        target = 1;
    uint64_t cum = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        cum += h->b[i];
        if (cum >= target) {
            uint64_t lo, w;
            hbounds(i, &lo, &w);
            double v = (double)lo + (double)(w - 1) / 2.0;
            if (v > (double)h->max)
                v = (double)h->max;
            return v / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static inline double hist_mean_us(const struct hist *h)
{
    return h->n ? (double)h->sum / (double)h->n / 1000.0 : 0;
}

static inline double hist_max_us(const struct hist *h)
{
    return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------------ */
/* CPU use: this process's, and the server's (--pid) from /proc        */

/* utime+stime of a process, in clock ticks, or -1 */
static inline long long proc_cpu_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    if (!p)
        return -1;
    p += 2; /* field 3 (state) */
    unsigned long long ut = 0, st = 0;
    /* skip fields 3..13, then read 14 (utime) and 15 (stime) */
    for (int field = 3; field < 14; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    if (sscanf(p, "%llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static inline double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* The measured window's CPU accounting: started when measuring starts, read once at its end. */
struct cpu_window {
    uint64_t t0;   /* now_ns() at the start; 0: the window never started */
    double cpu0;   /* self_cpu_s() then */
    int pid;       /* the server (--pid), or 0 */
    long long srv0; /* its proc_cpu_ticks() then, or -1 */
};

static inline void cpu_window_start(struct cpu_window *w, uint64_t t, int pid)
{
    w->t0 = t;
    w->cpu0 = self_cpu_s();
    w->pid = pid;
    w->srv0 = pid > 0 ? proc_cpu_ticks(pid) : -1;
}

/* The window up to now: its length in seconds (0 if it never started), the CPU seconds this
 * process used in it, and the server's CPU in % of one CPU (-1 when unknown). */
static inline void cpu_window_end(const struct cpu_window *w, double *wall, double *self_s,
                                  double *srv_pct)
{
    uint64_t t1 = now_ns();
    *wall = w->t0 ? (double)(t1 - w->t0) / 1e9 : 0;
    *self_s = self_cpu_s() - w->cpu0;
    *srv_pct = -1;
    if (w->pid > 0 && w->srv0 >= 0 && *wall > 0) {
        long long srv1 = proc_cpu_ticks(w->pid);
        if (srv1 >= 0)
            *srv_pct = 100.0 * (double)(srv1 - w->srv0) / (double)sysconf(_SC_CLK_TCK) / *wall;
    }
}

/* ------------------------------------------------------------------ */
/* sockets and epoll                                                    */

/* 127.0.0.1:port: both load generators talk to the loopback only. */
static inline struct sockaddr_in loopback_addr(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* Thousands of connections need as many descriptors: the soft limit goes up to the hard
 * one.  *rl is left with the limits in force (as getrlimit() filled it). */
static inline void raise_nofile(struct rlimit *rl)
{
    if (getrlimit(RLIMIT_NOFILE, rl) == 0 && rl->rlim_cur < rl->rlim_max) {
        rl->rlim_cur = rl->rlim_max;
        setrlimit(RLIMIT_NOFILE, rl);
    }
}

/* A nonblocking TCP socket, TCP_NODELAY when nodelay (small messages, measured one by
 * one), not yet connected; -1 with errno set when socket() fails. */
static inline int tcp_socket_nb(int nodelay)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* How a nonblocking connect() ended (0: connected), once the socket is writable. */
static inline int connect_result(int fd)
{
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
        e = errno;
    return e;
}

static inline int epoll_new(void)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    return epfd;
}

static inline void epoll_add(int epfd, int fd, uint32_t ev, void *ptr)
{
    struct epoll_event e = {.events = ev, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        die("epoll_ctl ADD");
}

/* Change fd's events to ev unless *cur (what it is registered for) already says so. */
static inline void epoll_set(int epfd, int fd, uint32_t *cur, uint32_t ev, void *ptr)
{
    if (*cur == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e) < 0)
        die("epoll_ctl MOD");
    *cur = ev;
}

/* epoll_wait(): the number of events (0 when interrupted by a signal).  While measuring,
 * the load generators poll with timeout 0 (a client sleeping in epoll_wait made results
 * bimodal in a VM, because of wakeup costs), so they are always at 100% CPU; what they
 * really spent is told by the time of the polls that found nothing, added to *idle_ns. */
static inline int epoll_poll(int epfd, struct epoll_event *evs, int max, int timeout_ms,
                             uint64_t *idle_ns)
{
    uint64_t t0 = timeout_ms == 0 ? now_ns() : 0;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        die("epoll_wait");
    }
    if (n == 0 && timeout_ms == 0)
        *idle_ns += now_ns() - t0;
    return n;
}

#endif
