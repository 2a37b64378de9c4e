/*
 * loadgen.c - single-threaded epoll load generator for echo servers.
 *
 * Modes (all traffic goes to 127.0.0.1 only):
 *   pingpong  --port P --conns N --size S --secs D [--warmup W]
 *             each connection sends S bytes, waits for the full S-byte echo,
 *             then sends the next message. Reports msgs/s and latency
 *             percentiles (log-linear histogram, ~1.5% resolution).
 *   stream    --port P --conns N --secs D [--bufsize B] [--window W]
 *             each connection writes continuously (at most W bytes
 *             outstanding) and reads the echo back. Reports MB/s echoed.
 *   connect   --port P --conns C --size S --secs D
 *             C concurrent slots; each one connects, sends S bytes, reads the
 *             echo, closes, and starts over. Reports connections/s.
 *   idle      --port P --conns N --secs H [--size S] [--pid PID]
 *             opens N connections (each verified with one S-byte echo when
 *             S > 0), holds them H seconds, checks they still echo, closes.
 *             With --pid, reports the server's VmRSS delta per connection.
 *   probe     --port P          exit 0 if the port accepts a connection
 *   freeport                    print a free TCP port on 127.0.0.1 (20000-31999)
 *   detect    --port P          print "echo" or "http" (what the server speaks)
 *   httpcheck --port P [--expect BODY]
 *             verify 200 + body on a keep-alive connection (sequential and
 *             pipelined requests).
 *
 * Every echoed byte is verified against the pattern that was sent.
 * The result is one line of key=value pairs on stdout.
 * Exit status: 0 ok, 1 usage/setup problem, 2 wrong bytes echoed,
 *              3 other server-side errors (resets, early EOF, refused, timeouts).
 *
 * Copied from the shared benchmark harness (shared/bench/loadgen.c, 2026-11-25) into
 * tests/bench/echo/ so that `make bench` does not depend on it; unchanged apart from this
 * note and the pieces it shares with tests/bench/chat/chatload.c, which moved as they were
 * into tests/bench/loadgen_common.h (clock, latency histogram, CPU accounting, socket and
 * epoll helpers).
 */
#define _GNU_SOURCE
#define LG_NAME "loadgen"
#include "../loadgen_common.h"

#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>

#define PATLEN (1u << 20) /* pattern period; buffer holds two periods */
#define MAXEV 1024

/* ------------------------------------------------------------------ */
/* options and global state                                            */

static struct {
    int port;
    int conns;
    int size;
    int bufsize;
    int window;
    int inflight;
    int pid;
    double secs;
    double warmup;
    double setup_timeout;
    double op_timeout;
    int close_rst;
    int busy_poll;
    double interval;
    const char *ready_file;
    const char *expect;
} o = {
    .port = 0, .conns = 1, .size = 64, .bufsize = 65536, .window = 512 * 1024,
    .inflight = 32, .pid = 0, .secs = 5, .warmup = 1, .setup_timeout = 60,
    .op_timeout = 5, .busy_poll = 1, .ready_file = NULL, .expect = "Hello, World!\n",
};

enum { M_PINGPONG, M_STREAM, M_CONNECT, M_IDLE };
static int g_mode;

static struct {
    uint64_t connfail; /* connect() refused / failed asynchronously        */
    uint64_t resets;   /* ECONNRESET / EPIPE                                 */
    uint64_t eofs;     /* server closed before the full echo (short read)   */
    uint64_t mismatch; /* wrong bytes echoed (or more bytes than sent)      */
    uint64_t timeouts; /* op did not complete within --op-timeout / setup   */
    uint64_t other;    /* any other errno, or unsolicited data               */
    uint64_t local;    /* client-side resource limits: EMFILE, EADDRNOTAVAIL */
} err;

static unsigned char *pat;
static unsigned char rbuf[1 << 18];
static int epfd = -1;
static int measuring;
static uint64_t m_ops, m_bytes;
static int mismatch_reported;

enum { ST_FREE, ST_CONNECTING, ST_PING, ST_READY, ST_PP, ST_STREAM, ST_CX, ST_DEAD };

struct conn {
    int fd;
    int state;
    uint32_t id;
    uint32_t events;
    uint64_t seq;
    uint32_t off, sent, rcvd;
    uint64_t t0;
    uint64_t wpos, rpos, salt;
    uint64_t restart_at;
};

/* number of connections per state group */
static int n_pending, n_ready, n_active;

static struct hist lat; /* latency (pingpong: per message; connect: per connection) */

/* ------------------------------------------------------------------ */
/* server process statistics (via --pid)                               */

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* ------------------------------------------------------------------ */
/* connection plumbing                                                 */

static void set_state(struct conn *c, int st)
{
    int old = c->state;
    if (old == st)
        return;
    if (old == ST_CONNECTING || old == ST_PING)
        n_pending--;
    else if (old == ST_READY)
        n_ready--;
    else if (old == ST_PP || old == ST_STREAM || old == ST_CX)
        n_active--;
    if (st == ST_CONNECTING || st == ST_PING)
        n_pending++;
    else if (st == ST_READY)
        n_ready++;
    else if (st == ST_PP || st == ST_STREAM || st == ST_CX)
        n_active++;
    c->state = st;
}

static void set_events(struct conn *c, uint32_t ev)
{
    epoll_set(epfd, c->fd, &c->events, ev, c);
}

static void conn_close(struct conn *c, int newstate)
{
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    set_state(c, newstate);
}

static void count_errno(int e, int connecting)
{
    switch (e) {
    case ECONNRESET:
    case EPIPE:
        if (connecting)
            err.connfail++;
        else
            err.resets++;
        break;
    case ECONNREFUSED:
    case ENETUNREACH:
    case EHOSTUNREACH:
        err.connfail++;
        break;
    case ETIMEDOUT:
        err.timeouts++;
        break;
    case EMFILE:
    case ENFILE:
    case EADDRNOTAVAIL:
    case ENOBUFS:
    case ENOMEM:
        err.local++;
        break;
    default:
        if (connecting)
            err.connfail++;
        else
            err.other++;
    }
}

/* the failed connection goes to ST_DEAD (setup/pingpong/stream) or
 * ST_FREE (connect mode, where the slot restarts) */
static void conn_fail(struct conn *c, int e)
{
    count_errno(e, c->state == ST_CONNECTING);
    conn_close(c, g_mode == M_CONNECT ? ST_FREE : ST_DEAD);
    c->restart_at = now_ns() + 1000000ull; /* connect mode: back off 1 ms */
}

static void report_mismatch(struct conn *c, const unsigned char *got, const unsigned char *want, size_t n)
{
    err.mismatch++;
    if (mismatch_reported++ < 5) {
        size_t i = 0;
        while (i < n && got[i] == want[i])
            i++;
        fprintf(stderr,
                "loadgen: WRONG BYTES echoed on conn %u (seq %llu): byte %zu of chunk: got 0x%02x want 0x%02x\n",
                c->id, (unsigned long long)c->seq, i, i < n ? got[i] : 0, i < n ? want[i] : 0);
    }
}

static void on_connected(struct conn *c);

static struct sockaddr_in g_addr;

/* Returns 0 if a connect is in progress (or done), -1 on immediate failure.
 * In connect mode the request is written right after connect(): on loopback
 * the handshake normally completes inside connect(), so this saves a wakeup
 * and two syscalls per connection; if the socket is not connected yet the
 * write fails with EAGAIN and we wait for EPOLLOUT as usual. */
static int start_connect(struct conn *c)
{
    c->events = 0;
    c->sent = c->rcvd = 0;
    int fd = tcp_socket_nb(g_mode != M_CONNECT);
    if (fd < 0) {
        count_errno(errno, 1);
        return -1;
    }
    c->fd = fd;
    c->t0 = now_ns();
    int r = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr);
    if (r < 0 && errno != EINPROGRESS) {
        count_errno(errno, 1);
        close(fd);
        c->fd = -1;
        return -1;
    }
    uint32_t ev = EPOLLOUT;
    int st = ST_CONNECTING;
    if (g_mode == M_CONNECT) {
        c->seq++;
        c->off = (uint32_t)((c->id * 7919ull + c->seq * 104729ull) % PATLEN);
        ssize_t n = write(fd, pat + c->off, (size_t)o.size);
        if (n > 0) {
            c->sent = (uint32_t)n;
            st = ST_CX;
            ev = n == o.size ? EPOLLIN : (EPOLLIN | EPOLLOUT);
        } else if (n < 0 && errno != EAGAIN) {
            count_errno(errno, 1);
            close(fd);
            c->fd = -1;
            return -1;
        }
    }
    epoll_add(epfd, fd, ev, c);
    c->events = ev;
    set_state(c, st);
    if (r == 0 && st == ST_CONNECTING)
        on_connected(c);
    return 0;
}

/* start message c->seq on connection c; returns -1 if the conn failed */
static int msg_send(struct conn *c)
{
    uint32_t size = (uint32_t)o.size;
    while (c->sent < size) {
        ssize_t n = write(c->fd, pat + c->off + c->sent, size - c->sent);
        if (n > 0) {
            c->sent += (uint32_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EAGAIN) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return 0;
            }
            continue;
        }
        conn_fail(c, n < 0 ? errno : EPIPE);
        return -1;
    }
    set_events(c, EPOLLIN);
    return 0;
}

static int msg_begin(struct conn *c)
{
    c->off = (uint32_t)((c->id * 7919ull + c->seq * 104729ull) % PATLEN);
    c->sent = c->rcvd = 0;
    return msg_send(c);
}

/* returns 1 when the whole echo arrived, 0 if more is needed, -1 on error */
static int msg_recv(struct conn *c)
{
    uint32_t size = (uint32_t)o.size;
    ssize_t n = read(c->fd, rbuf, size - c->rcvd);
    if (n > 0) {
        if (c->rcvd + (uint32_t)n > c->sent) {
            /* the server sent bytes we have not sent yet */
            report_mismatch(c, rbuf, pat + c->off + c->rcvd, 0);
            conn_close(c, g_mode == M_CONNECT ? ST_FREE : ST_DEAD);
            return -1;
        }
        if (memcmp(rbuf, pat + c->off + c->rcvd, (size_t)n) != 0) {
            report_mismatch(c, rbuf, pat + c->off + c->rcvd, (size_t)n);
            conn_close(c, g_mode == M_CONNECT ? ST_FREE : ST_DEAD);
            return -1;
        }
        c->rcvd += (uint32_t)n;
        return c->rcvd == size;
    }
    if (n == 0) {
        err.eofs++;
        conn_close(c, g_mode == M_CONNECT ? ST_FREE : ST_DEAD);
        return -1;
    }
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    conn_fail(c, errno);
    return -1;
}

static void stream_write(struct conn *c)
{
    int want_out = 0;
    for (;;) {
        uint64_t inflight = c->wpos - c->rpos;
        if (inflight >= (uint64_t)o.window)
            break;
        size_t len = (size_t)o.bufsize;
        if ((uint64_t)len > (uint64_t)o.window - inflight)
            len = (size_t)((uint64_t)o.window - inflight);
        const unsigned char *p = pat + ((c->wpos + c->salt) % PATLEN);
        ssize_t n = write(c->fd, p, len);
        if (n > 0) {
            c->wpos += (uint64_t)n;
            if ((size_t)n < len) {
                want_out = 1;
                break;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            want_out = 1;
            break;
        }
        conn_fail(c, n < 0 ? errno : EPIPE);
        return;
    }
    set_events(c, EPOLLIN | (want_out ? EPOLLOUT : 0));
}

static int stream_read(struct conn *c)
{
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n > 0) {
        const unsigned char *want = pat + ((c->rpos + c->salt) % PATLEN);
        if (c->rpos + (uint64_t)n > c->wpos) {
            report_mismatch(c, rbuf, want, 0);
            conn_close(c, ST_DEAD);
            return -1;
        }
        if (memcmp(rbuf, want, (size_t)n) != 0) {
            report_mismatch(c, rbuf, want, (size_t)n);
            conn_close(c, ST_DEAD);
            return -1;
        }
        c->rpos += (uint64_t)n;
        c->t0 = now_ns(); /* last progress, for the stall check */
        if (measuring)
            m_bytes += (uint64_t)n;
        return 0;
    }
    if (n == 0) {
        err.eofs++;
        conn_close(c, ST_DEAD);
        return -1;
    }
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    conn_fail(c, errno);
    return -1;
}

static void on_connected(struct conn *c)
{
    if (g_mode == M_CONNECT) {
        set_state(c, ST_CX);
        c->seq++;
        msg_begin(c);
        return;
    }
    if (o.size > 0) {
        set_state(c, ST_PING);
        c->seq = 0;
        msg_begin(c);
    } else {
        set_state(c, ST_READY);
        set_events(c, EPOLLIN);
    }
}

static void handle(struct conn *c, uint32_t ev)
{
    switch (c->state) {
    case ST_CONNECTING: {
        int e = connect_result(c->fd);
        if (e) {
            conn_fail(c, e);
            return;
        }
        if (ev & (EPOLLOUT | EPOLLIN))
            on_connected(c);
        else if (ev & (EPOLLERR | EPOLLHUP))
            conn_fail(c, ECONNREFUSED);
        return;
    }
    case ST_PING:
        if ((ev & EPOLLOUT) && msg_send(c) < 0)
            return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (msg_recv(c) == 1)
                set_state(c, ST_READY); /* stays registered for EPOLLIN */
        }
        return;
    case ST_READY: {
        /* an idle connection must stay silent */
        ssize_t n = read(c->fd, rbuf, sizeof rbuf);
        if (n > 0) {
            err.other++;
            fprintf(stderr, "loadgen: unsolicited data on idle conn %u\n", c->id);
            conn_close(c, ST_DEAD);
        } else if (n == 0) {
            err.eofs++;
            conn_close(c, ST_DEAD);
        } else if (errno != EAGAIN && errno != EINTR) {
            conn_fail(c, errno);
        }
        return;
    }
    case ST_PP:
        if ((ev & EPOLLOUT) && msg_send(c) < 0)
            return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (msg_recv(c) == 1) {
                uint64_t t = now_ns();
                if (measuring) {
                    hist_add(&lat, t - c->t0);
                    m_ops++;
                }
                c->seq++;
                c->t0 = t;
                msg_begin(c);
            }
        }
        return;
    case ST_STREAM:
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (stream_read(c) < 0)
                return;
        }
        stream_write(c);
        return;
    case ST_CX:
        if ((ev & EPOLLOUT) && msg_send(c) < 0)
            return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (msg_recv(c) == 1) {
                uint64_t t = now_ns();
                if (measuring) {
                    hist_add(&lat, t - c->t0);
                    m_ops++;
                }
                if (o.close_rst) {
                    /* abortive close: RST instead of FIN, so the client keeps
                     * no TIME_WAIT socket (see --close) */
                    struct linger lg = {.l_onoff = 1, .l_linger = 0};
                    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                conn_close(c, ST_FREE);
                c->restart_at = 0;
                if (start_connect(c) < 0) {
                    c->restart_at = now_ns() + 1000000ull;
                    set_state(c, ST_FREE);
                }
            }
        }
        return;
    default:
        return;
    }
}

static struct epoll_event evs[MAXEV];
static uint64_t idle_poll_ns; /* time spent in busy polls that found nothing */

static void run_events(int timeout_ms)
{
    int n = epoll_poll(epfd, evs, MAXEV, timeout_ms, &idle_poll_ns);
    for (int i = 0; i < n; i++)
        handle((struct conn *)evs[i].data.ptr, evs[i].events);
}

/* Open n connections, at most o.inflight in setup at a time (so servers
 * with a small listen backlog are not overrun). Each one is verified with
 * one echo when o.size > 0. Returns the number established. */
static int setup_conns(struct conn *cs, int n)
{
    uint64_t deadline = now_ns() + (uint64_t)(o.setup_timeout * 1e9);
    int next = 0;
    for (;;) {
        while (n_pending < o.inflight && next < n) {
            struct conn *c = &cs[next];
            c->id = (uint32_t)next;
            next++;
            if (start_connect(c) < 0) {
                c->state = ST_DEAD;
                if (err.local > 0 && (errno == EMFILE || errno == ENFILE)) {
                    fprintf(stderr, "loadgen: out of file descriptors after %d connections (ulimit -n?)\n",
                            next - 1);
                    next = n; /* stop opening more */
                }
            }
        }
        if (n_pending == 0 && next >= n)
            break;
        if (now_ns() > deadline) {
            fprintf(stderr, "loadgen: setup timed out with %d connections pending\n", n_pending);
            for (int i = 0; i < n; i++)
                if (cs[i].state == ST_CONNECTING || cs[i].state == ST_PING) {
                    err.timeouts++;
                    conn_close(&cs[i], ST_DEAD);
                }
            break;
        }
        run_events(100);
    }
    return n_ready;
}

static void write_ready_file(int established)
{
    if (!o.ready_file)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", o.ready_file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "established=%d\n", established);
    fclose(f);
    rename(tmp, o.ready_file);
}

/* ------------------------------------------------------------------ */
/* workloads                                                           */

static void print_errors(void)
{
    printf(" errors=%llu mismatch=%llu resets=%llu eofs=%llu connfail=%llu timeouts=%llu other=%llu local=%llu",
           (unsigned long long)(err.mismatch + err.resets + err.eofs + err.connfail + err.timeouts + err.other),
           (unsigned long long)err.mismatch, (unsigned long long)err.resets, (unsigned long long)err.eofs,
           (unsigned long long)err.connfail, (unsigned long long)err.timeouts, (unsigned long long)err.other,
           (unsigned long long)err.local);
}

static int exit_code(uint64_t ops)
{
    if (err.mismatch)
        return 2;
    if (err.resets || err.eofs || err.connfail || err.timeouts || err.other)
        return 3;
    if (ops == 0)
        return 3;
    return 0;
}

/* run the measured loop shared by pingpong, stream and connect */
struct window {
    double wall, lg_cpu, srv_cpu;
};

static void run_timed(struct conn *slots, int nslots, struct window *w)
{
    uint64_t t_start = now_ns();
    uint64_t t_meas = t_start + (uint64_t)(o.warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(o.secs * 1e9);
    uint64_t last_scan = 0;
    uint64_t iv = o.interval > 0 ? (uint64_t)(o.interval * 1e9) : 0, t_iv = 0, iv_ops = 0, iv_bytes = 0;
    struct cpu_window win = {0};
    measuring = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_meas) {
            measuring = 1;
            m_ops = m_bytes = 0;
            hist_reset(&lat);
            cpu_window_start(&win, t, o.pid);
            idle_poll_ns = 0;
            t_iv = t;
            iv_ops = iv_bytes = 0;
        }
        if (iv && measuring && t - t_iv >= iv) {
            /* --interval: progress line on stderr */
            double dt = (double)(t - t_iv) / 1e9;
            fprintf(stderr, "loadgen: t=%.1fs ops/s=%.0f MB/s=%.1f\n", (double)(t - win.t0) / 1e9,
                    (double)(m_ops - iv_ops) / dt, (double)(m_bytes - iv_bytes) / dt / 1e6);
            t_iv = t;
            iv_ops = m_ops;
            iv_bytes = m_bytes;
        }
        if (t >= t_end)
            break;
        if (g_mode != M_CONNECT && n_active == 0)
            break;
        int free_waiting = 0;
        if (g_mode != M_CONNECT && t - last_scan >= 100000000ull) {
            /* a connection whose echo is overdue by --op-timeout is an error */
            last_scan = t;
            uint64_t op_to = (uint64_t)(o.op_timeout * 1e9);
            for (int i = 0; i < nslots; i++) {
                struct conn *c = &slots[i];
                int waiting = (c->state == ST_PP) || (c->state == ST_STREAM && c->wpos > c->rpos);
                if (waiting && t - c->t0 > op_to) {
                    fprintf(stderr, "loadgen: conn %u: no echo for %.1fs\n", c->id, (double)(t - c->t0) / 1e9);
                    err.timeouts++;
                    conn_close(c, ST_DEAD);
                }
            }
        }
        if (g_mode == M_CONNECT && t - last_scan >= 1000000ull) {
            /* restart free slots; time out stuck ones */
            last_scan = t;
            uint64_t op_to = (uint64_t)(o.op_timeout * 1e9);
            for (int i = 0; i < nslots; i++) {
                struct conn *c = &slots[i];
                if ((c->state == ST_CONNECTING || c->state == ST_CX) && t - c->t0 > op_to) {
                    err.timeouts++;
                    conn_close(c, ST_FREE);
                    c->restart_at = t;
                }
                if (c->state == ST_FREE || c->state == ST_DEAD) {
                    if (c->restart_at <= t) {
                        if (start_connect(c) < 0) {
                            c->state = ST_FREE;
                            c->restart_at = t + 1000000ull;
                            free_waiting = 1;
                        }
                    } else {
                        free_waiting = 1;
                    }
                }
            }
        }
        uint64_t next = measuring ? t_end : t_meas;
        int to = (int)((next - t) / 1000000ull) + 1;
        if (to > 100)
            to = 100;
        if (free_waiting && to > 1)
            to = 1;
        run_events(o.busy_poll ? 0 : to);
    }
    double self_s;
    cpu_window_end(&win, &w->wall, &self_s, &w->srv_cpu);
    /* loadgen CPU use; with busy polling, the time spent in polls that found
     * nothing is spare capacity and is not counted */
    w->lg_cpu = w->wall > 0 ? 100.0 * (self_s - (double)idle_poll_ns / 1e9) / w->wall : 0;
    if (w->lg_cpu < 0)
        w->lg_cpu = 0;
    measuring = 0;
}

static void print_window(const struct window *w)
{
    printf(" wall_s=%.2f lg_cpu=%.0f", w->wall, w->lg_cpu);
    if (w->srv_cpu >= 0)
        printf(" srv_cpu=%.0f", w->srv_cpu);
}

static struct conn *alloc_conns(int n)
{
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs)
        die("calloc");
    for (int i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].state = ST_FREE;
        cs[i].id = (uint32_t)i;
        cs[i].salt = ((uint64_t)i * 7919ull * 13ull) % PATLEN;
    }
    return cs;
}

static void close_all(struct conn *cs, int n)
{
    for (int i = 0; i < n; i++)
        if (cs[i].fd >= 0)
            conn_close(&cs[i], ST_DEAD);
}

static int do_pingpong(void)
{
    if (o.size <= 0) {
        fprintf(stderr, "loadgen: pingpong needs --size > 0\n");
        return 1;
    }
    struct conn *cs = alloc_conns(o.conns);
    int est = setup_conns(cs, o.conns);
    uint64_t t = now_ns();
    for (int i = 0; i < o.conns; i++) {
        struct conn *c = &cs[i];
        if (c->state != ST_READY)
            continue;
        set_state(c, ST_PP);
        c->seq = 1;
        c->t0 = t;
        msg_begin(c);
    }
    struct window w;
    run_timed(cs, o.conns, &w);
    close_all(cs, o.conns);
    double rate = w.wall > 0 ? (double)m_ops / w.wall : 0;
    printf("mode=pingpong conns=%d established=%d size=%d msgs=%llu msgs_per_s=%.0f mean_us=%.1f p50_us=%.1f "
           "p99_us=%.1f p999_us=%.1f max_us=%.1f",
           o.conns, est, o.size, (unsigned long long)m_ops, rate, hist_mean_us(&lat), hist_q(&lat, 0.50),
           hist_q(&lat, 0.99), hist_q(&lat, 0.999), hist_max_us(&lat));
    print_window(&w);
    print_errors();
    printf("\n");
    return exit_code(m_ops);
}

static int do_stream(void)
{
    if (o.bufsize <= 0 || (unsigned)o.bufsize > PATLEN || o.window < o.bufsize) {
        fprintf(stderr, "loadgen: need 0 < --bufsize <= %u and --window >= --bufsize\n", PATLEN);
        return 1;
    }
    struct conn *cs = alloc_conns(o.conns);
    int est = setup_conns(cs, o.conns);
    for (int i = 0; i < o.conns; i++) {
        struct conn *c = &cs[i];
        if (c->state != ST_READY)
            continue;
        set_state(c, ST_STREAM);
        c->wpos = c->rpos = 0;
        c->t0 = now_ns();
        stream_write(c);
    }
    struct window w;
    run_timed(cs, o.conns, &w);
    close_all(cs, o.conns);
    double mbps = w.wall > 0 ? (double)m_bytes / w.wall / 1e6 : 0;
    printf("mode=stream conns=%d established=%d bufsize=%d window=%d bytes=%llu mb_per_s=%.1f", o.conns, est,
           o.bufsize, o.window, (unsigned long long)m_bytes, mbps);
    print_window(&w);
    print_errors();
    printf("\n");
    return exit_code(m_bytes);
}

static int do_connect(void)
{
    if (o.size <= 0) {
        fprintf(stderr, "loadgen: connect needs --size > 0\n");
        return 1;
    }
    struct conn *cs = alloc_conns(o.conns);
    for (int i = 0; i < o.conns; i++) {
        cs[i].seq = (uint64_t)i * 1000003ull;
        if (start_connect(&cs[i]) < 0) {
            cs[i].state = ST_FREE;
            cs[i].restart_at = now_ns() + 1000000ull;
        }
    }
    struct window w;
    run_timed(cs, o.conns, &w);
    close_all(cs, o.conns);
    double rate = w.wall > 0 ? (double)m_ops / w.wall : 0;
    printf("mode=connect conc=%d size=%d close=%s conns=%llu conns_per_s=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f",
           o.conns, o.size, o.close_rst ? "rst" : "fin", (unsigned long long)m_ops, rate, hist_q(&lat, 0.50),
           hist_q(&lat, 0.90), hist_q(&lat, 0.99), hist_max_us(&lat));
    print_window(&w);
    print_errors();
    printf("\n");
    return exit_code(m_ops);
}

static int do_idle(void)
{
    long rss0 = o.pid > 0 ? proc_rss_kb(o.pid) : -1;
    struct conn *cs = alloc_conns(o.conns);
    uint64_t t0 = now_ns();
    int est = setup_conns(cs, o.conns);
    double setup_s = (double)(now_ns() - t0) / 1e9;
    fprintf(stderr, "loadgen: idle: %d/%d connections established in %.2fs, holding %.1fs\n", est, o.conns,
            setup_s, o.secs);
    write_ready_file(est);
    /* hold: connections must stay open and silent */
    uint64_t t_end = now_ns() + (uint64_t)(o.secs * 1e9);
    long rss_max = -1;
    uint64_t last_sample = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= t_end)
            break;
        if (o.pid > 0 && t - last_sample > 250000000ull) {
            long r = proc_rss_kb(o.pid);
            if (r > rss_max)
                rss_max = r;
            last_sample = t;
        }
        int to = (int)((t_end - t) / 1000000ull) + 1;
        run_events(to > 100 ? 100 : to);
    }
    long rss1 = o.pid > 0 ? proc_rss_kb(o.pid) : -1;
    if (rss1 > rss_max)
        rss_max = rss1;
    int held = n_ready;
    /* check they all still echo */
    int alive = held;
    if (o.size > 0) {
        for (int i = 0; i < o.conns; i++) {
            struct conn *c = &cs[i];
            if (c->state != ST_READY)
                continue;
            set_state(c, ST_PING);
            c->seq = 1;
            msg_begin(c);
        }
        uint64_t dl = now_ns() + (uint64_t)(o.setup_timeout * 1e9);
        while (n_pending > 0 && now_ns() < dl)
            run_events(100);
        for (int i = 0; i < o.conns; i++)
            if (cs[i].state == ST_PING) {
                err.timeouts++;
                conn_close(&cs[i], ST_DEAD);
            }
        alive = n_ready;
    }
    close_all(cs, o.conns);
    printf("mode=idle conns=%d established=%d held=%d alive_after=%d setup_s=%.2f hold_s=%.1f", o.conns, est, held,
           alive, setup_s, o.secs);
    if (o.pid > 0 && rss0 >= 0 && rss1 >= 0 && held > 0) {
        printf(" rss_before_kb=%ld rss_hold_kb=%ld rss_max_kb=%ld rss_per_conn_b=%.0f", rss0, rss1, rss_max,
               (double)(rss1 - rss0) * 1024.0 / held);
    }
    print_errors();
    printf("\n");
    return exit_code((uint64_t)alive);
}

/* ------------------------------------------------------------------ */
/* helper modes (blocking sockets with timeouts)                       */

static int blocking_connect(int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int r = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, timeout_ms) != 1) {
            close(fd);
            return -1;
        }
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            close(fd);
            return -1;
        }
    } else if (r < 0) {
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int do_probe(void)
{
    int fd = blocking_connect(300);
    if (fd < 0)
        return 1;
    close(fd);
    return 0;
}

static int do_freeport(void)
{
    srand((unsigned)(getpid() ^ (unsigned)now_ns()));
    for (int tries = 0; tries < 500; tries++) {
        int port = 20000 + rand() % 12000;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) {
            printf("%d\n", port);
            return 0;
        }
    }
    fprintf(stderr, "loadgen: no free port found\n");
    return 1;
}

static const char HTTP_REQ[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadgen\r\n\r\n";

static int do_detect(void)
{
    int fd = blocking_connect(1000);
    if (fd < 0) {
        printf("unknown\n");
        return 1;
    }
    size_t reqlen = sizeof HTTP_REQ - 1;
    if (write(fd, HTTP_REQ, reqlen) != (ssize_t)reqlen) {
        close(fd);
        printf("unknown\n");
        return 1;
    }
    char buf[4096];
    size_t have = 0;
    uint64_t dl = now_ns() + 2000000000ull;
    while (have < reqlen && now_ns() < dl) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (have >= 5 && memcmp(buf, "HTTP/", 5) == 0)
            break;
    }
    close(fd);
    if (have >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        printf("http\n");
        return 0;
    }
    if (have == reqlen && memcmp(buf, HTTP_REQ, reqlen) == 0) {
        printf("echo\n");
        return 0;
    }
    printf("unknown\n");
    return 1;
}

static char hbuf[1 << 16];
static size_t hlen;

/* read one HTTP response from fd (buffered in hbuf); check status 200 and
 * body == expect. Returns 0 if ok. */
static int http_read_response(int fd, const char *expect, char *why, size_t whylen)
{
    char *hdr_end = NULL;
    for (;;) {
        hdr_end = memmem(hbuf, hlen, "\r\n\r\n", 4);
        if (hdr_end)
            break;
        if (hlen == sizeof hbuf) {
            snprintf(why, whylen, "headers too large");
            return -1;
        }
        ssize_t n = read(fd, hbuf + hlen, sizeof hbuf - hlen);
        if (n <= 0) {
            snprintf(why, whylen, "connection closed or timed out while reading headers (%zu bytes)", hlen);
            return -1;
        }
        hlen += (size_t)n;
    }
    size_t hsize = (size_t)(hdr_end - hbuf) + 4;
    if (hlen < 12 || memcmp(hbuf, "HTTP/1.", 7) != 0 || memcmp(hbuf + 8, " 200", 4) != 0) {
        snprintf(why, whylen, "bad status line: %.40s", hbuf);
        return -1;
    }
    long clen = -1;
    for (char *p = hbuf; p < hdr_end;) {
        char *eol = memmem(p, (size_t)(hdr_end + 2 - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        if ((size_t)(eol - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
            snprintf(why, whylen, "chunked/transfer-encoding response not supported by httpcheck");
            return -1;
        }
        p = eol + 2;
    }
    if (clen < 0) {
        snprintf(why, whylen, "no Content-Length header");
        return -1;
    }
    if (hsize + (size_t)clen > sizeof hbuf) {
        snprintf(why, whylen, "body too large");
        return -1;
    }
    while (hlen < hsize + (size_t)clen) {
        ssize_t n = read(fd, hbuf + hlen, sizeof hbuf - hlen);
        if (n <= 0) {
            snprintf(why, whylen, "connection closed or timed out while reading body");
            return -1;
        }
        hlen += (size_t)n;
    }
    size_t elen = strlen(expect);
    if ((size_t)clen != elen || memcmp(hbuf + hsize, expect, elen) != 0) {
        snprintf(why, whylen, "unexpected body (%ld bytes): %.40s", clen, hbuf + hsize);
        return -1;
    }
    size_t used = hsize + (size_t)clen;
    memmove(hbuf, hbuf + used, hlen - used);
    hlen -= used;
    return 0;
}

static char *unescape(const char *s)
{
    char *out = malloc(strlen(s) + 1), *d = out;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *d++ = *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s == 't' ? '\t' : *s;
        } else {
            *d++ = *s;
        }
    }
    *d = 0;
    return out;
}

static int do_httpcheck(void)
{
    char why[256] = "";
    const char *expect = unescape(o.expect);
    int fd = blocking_connect(1000);
    if (fd < 0) {
        printf("httpcheck=FAIL reason=connect\n");
        return 3;
    }
    size_t reqlen = sizeof HTTP_REQ - 1;
    int ok = 1, done = 0;
    /* three sequential requests on one keep-alive connection */
    for (int i = 0; i < 3 && ok; i++) {
        if (write(fd, HTTP_REQ, reqlen) != (ssize_t)reqlen) {
            snprintf(why, sizeof why, "write failed on request %d", i + 1);
            ok = 0;
            break;
        }
        if (http_read_response(fd, expect, why, sizeof why) < 0)
            ok = 0;
        else
            done++;
    }
    /* two pipelined requests in one write */
    if (ok) {
        char two[sizeof HTTP_REQ * 2];
        memcpy(two, HTTP_REQ, reqlen);
        memcpy(two + reqlen, HTTP_REQ, reqlen);
        if (write(fd, two, 2 * reqlen) != (ssize_t)(2 * reqlen)) {
            snprintf(why, sizeof why, "pipelined write failed");
            ok = 0;
        }
        for (int i = 0; i < 2 && ok; i++) {
            if (http_read_response(fd, expect, why, sizeof why) < 0)
                ok = 0;
            else
                done++;
        }
    }
    close(fd);
    if (ok) {
        printf("httpcheck=ok responses=%d\n", done);
        return 0;
    }
    for (char *p = why; *p; p++)
        if (*p == ' ' || *p == '\r' || *p == '\n')
            *p = '_';
    printf("httpcheck=FAIL responses=%d reason=%s\n", done, why);
    return 3;
}

/* ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen MODE --port P [options]\n"
            "  MODE: pingpong | stream | connect | idle | probe | freeport | detect | httpcheck\n"
            "  --conns N        connections (connect mode: concurrent slots)   [1]\n"
            "  --size S         message size in bytes (idle: ping size, 0=none) [64]\n"
            "  --secs D         measured seconds (idle: hold seconds)           [5]\n"
            "  --warmup W       warm-up seconds before measuring                [1]\n"
            "  --bufsize B      stream write size                               [65536]\n"
            "  --window W       stream max outstanding bytes per connection     [524288]\n"
            "  --inflight K     max connections being set up at once            [32]\n"
            "  --setup-timeout T  seconds allowed for connection setup          [60]\n"
            "  --op-timeout T   seconds an echo may be overdue before it counts\n"
            "                   as a timeout error (connect: op abandoned)     [5]\n"
            "  --close fin|rst  connect mode: close with FIN (client keeps TIME_WAIT)\n"
            "                   or with RST (SO_LINGER 0, no TIME_WAIT)          [fin]\n"
            "  --pid PID        server pid: report its CPU%% and (idle) VmRSS\n"
            "  --interval I     print throughput every I seconds on stderr\n"
            "  --no-busy-poll   sleep in epoll_wait while measuring (default: poll\n"
            "                   with timeout 0; a sleeping client made results\n"
            "                   bimodal in a VM because of wakeup costs)\n"
            "  --ready-file F   idle: create F once all connections are open\n"
            "  --expect BODY    httpcheck: expected body (\\n escapes)  [Hello, World!\\n]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    static const struct option lo[] = {
        {"port", required_argument, 0, 'p'},     {"conns", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},     {"secs", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},   {"bufsize", required_argument, 0, 'b'},
        {"window", required_argument, 0, 'W'},   {"inflight", required_argument, 0, 'k'},
        {"setup-timeout", required_argument, 0, 'S'}, {"op-timeout", required_argument, 0, 'O'},
        {"pid", required_argument, 0, 'P'},      {"ready-file", required_argument, 0, 'r'},
        {"expect", required_argument, 0, 'e'},   {"close", required_argument, 0, 'C'},
        {"interval", required_argument, 0, 'i'}, {"no-busy-poll", no_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': o.port = atoi(optarg); break;
        case 'c': o.conns = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 'd': o.secs = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'b': o.bufsize = atoi(optarg); break;
        case 'W': o.window = atoi(optarg); break;
        case 'k': o.inflight = atoi(optarg); break;
        case 'S': o.setup_timeout = atof(optarg); break;
        case 'O': o.op_timeout = atof(optarg); break;
        case 'P': o.pid = atoi(optarg); break;
        case 'r': o.ready_file = optarg; break;
        case 'e': o.expect = optarg; break;
        case 'i': o.interval = atof(optarg); break;
        case 'B': o.busy_poll = 0; break;
        case 'C':
            if (strcmp(optarg, "rst") == 0)
                o.close_rst = 1;
            else if (strcmp(optarg, "fin") == 0)
                o.close_rst = 0;
            else
                usage();
            break;
        default: usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);

    /* raise the fd limit to the hard limit */
    struct rlimit rl;
    raise_nofile(&rl);

    if (strcmp(mode, "freeport") == 0)
        return do_freeport();

    if (o.port <= 0 || o.port > 65535) {
        fprintf(stderr, "loadgen: --port is required\n");
        usage();
    }
    g_addr = loopback_addr(o.port); /* 127.0.0.1 only */

    if (strcmp(mode, "probe") == 0)
        return do_probe();
    if (strcmp(mode, "detect") == 0)
        return do_detect();
    if (strcmp(mode, "httpcheck") == 0)
        return do_httpcheck();

    if (o.conns <= 0 || o.secs < 0 || o.warmup < 0 || o.size < 0 || (unsigned)o.size > PATLEN || o.inflight <= 0) {
        fprintf(stderr, "loadgen: bad --conns/--secs/--warmup/--size/--inflight\n");
        return 1;
    }
    if ((rlim_t)o.conns + 16 > rl.rlim_cur)
        fprintf(stderr, "loadgen: warning: --conns %d is close to RLIMIT_NOFILE %llu\n", o.conns,
                (unsigned long long)rl.rlim_cur);

    /* pseudo-random pattern, two periods back to back */
    pat = malloc(2 * PATLEN);
    if (!pat)
        die("malloc");
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < PATLEN; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(pat + i, &x, 8);
    }
    memcpy(pat + PATLEN, pat, PATLEN);

    epfd = epoll_new();

    if (strcmp(mode, "pingpong") == 0) {
        g_mode = M_PINGPONG;
        return do_pingpong();
    }
    if (strcmp(mode, "stream") == 0) {
        g_mode = M_STREAM;
        o.size = 64; /* setup ping size */
        return do_stream();
    }
    if (strcmp(mode, "connect") == 0) {
        g_mode = M_CONNECT;
        return do_connect();
    }
    if (strcmp(mode, "idle") == 0) {
        g_mode = M_IDLE;
        return do_idle();
    }
    usage();
    return 1;
}
