/*
 * chatload.c -- load generator for the chat fan-out benchmark (tests/bench/chat/run.sh).
 *
 *   chatload --port P [--impl NAME] [--clients C] [--senders S] [--rate R]
 *            [--inflight K] [--size B] [--secs D] [--warmup W] [--timeout T] [--pid PID]
 *   chatload probe --port P     exit 0 if the port accepts a connection
 *
 * Speaks the chat of examples/chat-server (doc/chat.md) and of chat_twisted.py
 * to 127.0.0.1:P over C nonblocking sockets driven by one raw epoll loop:
 *
 *  1. Setup.  Clients connect and choose the nicknames u0, u1, ... one after
 *     the other (each waits for its "* Hello" and "* N users online" lines
 *     before the next connects), so client i must then see exactly C-1-i
 *     "* ... has joined" notices; setup ends when all have arrived.
 *  2. Load.  S of the clients (u0 .. u(S-1)) send lines "ID SEQ T xxx..."
 *     (sender id, per-sender sequence from 1, send time in CLOCK_MONOTONIC ns,
 *     padded with x to B bytes of text).  A line is *in flight* until every
 *     other client has received it; each sender has at most K in flight, so
 *     what the server owes any client stays below S*K lines (100 * 8 * 80
 *     bytes = 64 KiB by default, under the 256 KiB at which twine's chat drops
 *     a client).  With --rate 0 (the default) every sender keeps K in flight
 *     (as fast as the server goes); with --rate R the senders take turns to
 *     send R lines per second in total, and a line due while its sender has K
 *     in flight is skipped (counted as deferred).
 *  3. Every client reads everything as it arrives and checks each line: from
 *     a named client other than itself, the id in the text matching the
 *     nickname, sequences from each sender consecutive (in order, no gaps, no
 *     duplicates).  Latency = time of the read() that returned the line -
 *     the send time in its text (both clocks are this process's).
 *  4. After W seconds of warm-up, D seconds are measured: lines sent and
 *     lines delivered (one line received by one client) in the window, and
 *     the latency of the deliveries received in it.  Then sending stops and
 *     the loop drains: every line ever sent must reach every other client
 *     exactly once (checked against each sender's count), and nothing more
 *     may arrive during a 100 ms quiet period.
 *
 * Output: one line on stdout,
 *   RESULT bench=chat impl=NAME mode=max|rate clients=C senders=S ... lines_sent=N
 *   delivered=N delivered_per_s=X p50_us=X p99_us=X ... errors=N ok=1|0
 * Exit status 0 when every check passed, 1 usage or setup problem (no server,
 * a client refused), 2 a wrong, lost, duplicated or reordered line, 3 other
 * errors (disconnects, the --timeout or a 5 s stall).  Diagnostics on stderr.
 *
 * The structure (one epoll loop, busy polling while measuring, log-linear
 * latency histogram, the server's CPU from /proc) follows tests/bench/echo/loadgen.c;
 * those pieces are shared with it in tests/bench/loadgen_common.h.
 */
#define _GNU_SOURCE
#define LG_NAME "chatload"
#include "../loadgen_common.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>

#define MAXEV 1024
#define CARRY 1024       /* longest partial line kept between reads */
#define MAX_SIZE 400     /* longest --size: the line must stay under the servers' 512 */
#define STALL_NS 5000000000ull

static struct {
    int port;
    const char *impl;
    int clients;
    int senders;
    double rate;
    int inflight;
    int size;
    double secs;
    double warmup;
    double timeout;
    int pid;
    int busy_poll;
} o = {
    .impl = "unknown", .clients = 100, .senders = -1, .rate = 0, .inflight = 8, .size = 64,
    .secs = 5, .warmup = 1, .timeout = 60, .busy_poll = 1,
};

enum { P_FREE, P_CONNECTING, P_NAMING, P_NAMED, P_DEAD };

struct client {
    int fd;
    int phase;
    uint32_t events;
    int id;
    int hello, users;     /* setup: saw "* Hello", "* N users online" */
    int joins;            /* "* ... has joined" notices seen */
    size_t carry_len;
    char carry[CARRY];
    /* output: lines (and the nickname) not yet written */
    char *out;
    size_t out_len, out_cap;
    /* as a sender */
    uint64_t sent;        /* lines sent: sequences 1..sent */
    uint64_t acked;       /* lines every other client has received */
    uint32_t *owed;       /* ring of K: deliveries still due per line in flight */
    int queued;           /* on the refill list */
};

static struct client *cl;
static uint64_t *last;    /* last[r * C + s]: last sequence client r received from sender s */
static int epfd = -1;
static int n_named;
static int *refill;       /* senders whose acked moved (fast mode) */
static int n_refill;
static int *dirty;        /* clients with output to flush */
static int n_dirty;
static int sending;       /* senders may send */
static int measuring;

static struct {
    uint64_t wrong;       /* malformed line, wrong id, echo to the sender */
    uint64_t order;       /* a gap, duplicate or reordering */
    uint64_t lost;        /* a line not delivered to someone by the end */
    uint64_t extra;       /* a server line that should not come ("* x has left", "! ...") */
    uint64_t eofs;        /* the server closed a client */
    uint64_t resets;      /* other socket errors */
    uint64_t timeouts;    /* --timeout, a stall, setup not finishing */
} err;
static int reported;

static uint64_t m_sent, m_delivered;          /* in the window */
static uint64_t all_sent, all_delivered;      /* since the load started */
static uint64_t deferred;                     /* --rate: lines skipped, sender had K in flight */
static uint64_t last_progress;

static unsigned char rbuf[1 << 18];
static struct hist lat;   /* delivery latency in the measured window */

static void complain(const char *fmt, ...)
{
    if (reported++ >= 10)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("chatload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* sockets                                                              */

static struct sockaddr_in g_addr;

static void set_events(struct client *c, uint32_t ev)
{
    epoll_set(epfd, c->fd, &c->events, ev, c);
}

static void client_dead(struct client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->phase == P_NAMED)
        n_named--;
    c->phase = P_DEAD;
}

static void sock_error(struct client *c, int e, const char *what)
{
    if (e == 0) {
        err.eofs++;
        complain("u%d: the server closed the connection (%s)", c->id, what);
    } else {
        err.resets++;
        complain("u%d: %s: %s", c->id, what, strerror(e));
    }
    client_dead(c);
}

static void out_append(struct client *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out)
            die("realloc");
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void flush(struct client *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = write(c->fd, c->out + off, c->out_len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        sock_error(c, n < 0 ? errno : EPIPE, "write");
        return;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    set_events(c, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
}

static void mark_dirty(struct client *c)
{
    if (c->out_len == 0) /* first bytes since the last flush */
        dirty[n_dirty++] = c->id;
}

static void flush_dirty(void)
{
    for (int i = 0; i < n_dirty; i++) {
        struct client *c = &cl[dirty[i]];
        if (c->phase != P_DEAD && c->out_len && !(c->events & EPOLLOUT))
            flush(c);
    }
    n_dirty = 0;
}

static void start_connect(struct client *c)
{
    int fd = tcp_socket_nb(1);
    if (fd < 0)
        die("socket");
    c->fd = fd;
    c->phase = P_CONNECTING;
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0 && errno != EINPROGRESS) {
        fprintf(stderr, "chatload: connect to port %d: %s\n", o.port, strerror(errno));
        exit(1);
    }
    epoll_add(epfd, fd, EPOLLIN | EPOLLOUT, c);
    c->events = EPOLLIN | EPOLLOUT;
}

/* ------------------------------------------------------------------ */
/* sending                                                              */

static inline uint64_t in_flight(const struct client *c)
{
    return c->sent - c->acked;
}

/* Queue line number sent+1 of sender c, stamped t. */
static void send_line(struct client *c, uint64_t t)
{
    char line[MAX_SIZE + 64];
    uint64_t seq = ++c->sent;
    int n = snprintf(line, sizeof line, "%d %" PRIu64 " %" PRIu64 " ", c->id, seq, t);
    if (n < o.size) {
        memset(line + n, 'x', (size_t)(o.size - n));
        n = o.size;
    }
    line[n++] = '\n';
    c->owed[seq % (uint64_t)o.inflight] = (uint32_t)(o.clients - 1);
    mark_dirty(c);
    out_append(c, line, (size_t)n);
    all_sent++;
    if (measuring)
        m_sent++;
}

/* As fast as possible: top every sender whose lines were delivered up to K. */
static void refill_senders(uint64_t t)
{
    for (int i = 0; i < n_refill; i++) {
        struct client *c = &cl[refill[i]];
        c->queued = 0;
        if (c->phase != P_NAMED)
            continue;
        while (in_flight(c) < (uint64_t)o.inflight)
            send_line(c, t);
    }
    n_refill = 0;
}

/* --rate: the lines due by t, round-robin over the senders. */
static uint64_t rate_t0, rate_due;
static int rate_next;

static void send_due(uint64_t t)
{
    uint64_t due = (uint64_t)((double)(t - rate_t0) * o.rate / 1e9);
    for (; rate_due < due; rate_due++) {
        int tries;
        for (tries = 0; tries < o.senders; tries++) {
            struct client *c = &cl[rate_next];
            rate_next = (rate_next + 1) % o.senders;
            if (c->phase == P_NAMED && in_flight(c) < (uint64_t)o.inflight) {
                send_line(c, t);
                break;
            }
        }
        if (tries == o.senders)
            deferred++;
    }
}

/* ------------------------------------------------------------------ */
/* receiving                                                            */

static const char *parse_u64(const char *p, const char *end, uint64_t *v)
{
    uint64_t x = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    if (p == s || p - s > 19)
        return NULL;
    *v = x;
    return p;
}

static int has(const char *line, size_t len, const char *what)
{
    return memmem(line, len, what, strlen(what)) != NULL;
}

/* One line from the server to client r (without its CR LF), read at time t. */
static void on_line(struct client *r, const char *line, size_t len, uint64_t t)
{
    const char *end = line + len, *p;
    if (len && line[0] == '<') {
        /* "<uS> S SEQ T xxx" */
        uint64_t s, s2, seq, ts;
        if (r->phase != P_NAMED || len < 4 || line[1] != 'u' || !(p = parse_u64(line + 2, end, &s)) ||
            p + 2 > end || p[0] != '>' || p[1] != ' ' || !(p = parse_u64(p + 2, end, &s2)) || p >= end ||
            *p != ' ' || !(p = parse_u64(p + 1, end, &seq)) || p >= end || *p != ' ' ||
            !(p = parse_u64(p + 1, end, &ts)) || s != s2 || s >= (uint64_t)o.senders) {
            err.wrong++;
            complain("u%d: unexpected line \"%.*s\"", r->id, (int)(len > 80 ? 80 : len), line);
            return;
        }
        struct client *sc = &cl[s];
        if (sc == r) {
            err.wrong++;
            complain("u%d: its own line %" PRIu64 " was echoed back to it", r->id, seq);
            return;
        }
        uint64_t *lp = &last[(size_t)r->id * (size_t)o.clients + s];
        if (seq != *lp + 1 || seq > sc->sent) {
            err.order++;
            complain("u%d: from u%" PRIu64 ": line %" PRIu64 " after %" PRIu64 " (%" PRIu64 " sent)",
                     r->id, s, seq, *lp, sc->sent);
            if (seq <= *lp || seq > sc->sent)
                return; /* duplicate, reordered or invented: nothing to count */
        }
        *lp = seq;
        all_delivered++;
        last_progress = t;
        if (measuring) {
            m_delivered++;
            hist_add(&lat, t > ts ? t - ts : 0);
        }
        uint32_t *owed = &sc->owed[seq % (uint64_t)o.inflight];
        if (--*owed == 0 && seq == sc->acked + 1) {
            while (sc->acked < sc->sent && sc->owed[(sc->acked + 1) % (uint64_t)o.inflight] == 0)
                sc->acked++;
            if (!sc->queued && sending && o.rate <= 0) {
                sc->queued = 1;
                refill[n_refill++] = (int)s;
            }
        }
        return;
    }
    if (len >= 2 && line[0] == '*' && line[1] == ' ') {
        if (r->phase == P_NAMING && len >= 9 && memcmp(line, "* Welcome", 9) == 0) {
            char nick[32];
            int n = snprintf(nick, sizeof nick, "u%d\n", r->id);
            mark_dirty(r);
            out_append(r, nick, (size_t)n);
            return;
        }
        if (r->phase == P_NAMING && ((len >= 8 && memcmp(line, "* Hello ", 8) == 0) ||
                                     has(line, len, " online"))) {
            if (line[2] == 'H')
                r->hello = 1;
            else
                r->users = 1;
            if (r->hello && r->users) {
                r->phase = P_NAMED;
                n_named++;
            }
            return;
        }
        if (r->phase == P_NAMED && has(line, len, " has joined") && !sending) {
            r->joins++;
            return;
        }
    }
    err.extra++;
    complain("u%d: unexpected line \"%.*s\"", r->id, (int)(len > 80 ? 80 : len), line);
}

static void on_readable(struct client *c)
{
    for (;;) {
        size_t want = sizeof rbuf - c->carry_len;
        memcpy(rbuf, c->carry, c->carry_len);
        ssize_t n = read(c->fd, rbuf + c->carry_len, want);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return;
            sock_error(c, n < 0 ? errno : 0, "read");
            return;
        }
        uint64_t t = now_ns();
        size_t have = c->carry_len + (size_t)n, start = 0;
        for (;;) {
            unsigned char *nl = memchr(rbuf + start, '\n', have - start);
            if (!nl)
                break;
            size_t e = (size_t)(nl - rbuf);
            size_t len = e - start;
            if (len && rbuf[start + len - 1] == '\r')
                len--;
            on_line(c, (const char *)rbuf + start, len, t);
            if (c->phase == P_DEAD)
                return;
            start = e + 1;
        }
        c->carry_len = have - start;
        if (c->carry_len > CARRY) {
            err.wrong++;
            complain("u%d: a line longer than %d bytes", c->id, CARRY);
            client_dead(c);
            return;
        }
        memcpy(c->carry, rbuf + start, c->carry_len);
        if ((size_t)n < want) /* the socket had no more */
            return;
    }
}

static void handle(struct client *c, uint32_t ev)
{
    if (c->phase == P_CONNECTING) {
        int e = connect_result(c->fd);
        if (e) {
            fprintf(stderr, "chatload: connect to port %d: %s\n", o.port, strerror(e));
            exit(1);
        }
        c->phase = P_NAMING;
        set_events(c, EPOLLIN);
    }
    if ((ev & EPOLLOUT) && c->out_len) {
        flush(c);
        if (c->phase == P_DEAD)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
}

static struct epoll_event evs[MAXEV];
static uint64_t idle_poll_ns;

static void run_events(int timeout_ms)
{
    int n = epoll_poll(epfd, evs, MAXEV, timeout_ms, &idle_poll_ns);
    for (int i = 0; i < n; i++)
        handle(evs[i].data.ptr, evs[i].events);
}

/* Run the loop until done() or the deadline; 0 when done. */
static int loop_until(int (*done)(void), uint64_t deadline, int busy)
{
    while (!done()) {
        uint64_t t = now_ns();
        if (t >= deadline)
            return -1;
        run_events(busy ? 0 : 10);
        flush_dirty();
    }
    return 0;
}

static int g_naming; /* the client being named in setup */

static int named_done(void)
{
    return cl[g_naming].phase != P_NAMING && cl[g_naming].phase != P_CONNECTING;
}

static int joins_done(void)
{
    for (int i = 0; i < o.clients; i++)
        if (cl[i].phase != P_NAMED || cl[i].joins < o.clients - 1 - i)
            return cl[i].phase == P_DEAD; /* a dead client: give up */
    return 1;
}

static int drained(void)
{
    for (int i = 0; i < o.senders; i++)
        if (cl[i].phase == P_NAMED && cl[i].acked < cl[i].sent)
            return 0;
    return 1;
}

static int never(void)
{
    return 0;
}

/* ------------------------------------------------------------------ */

static int do_probe(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    int ok = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) == 0;
    close(fd);
    return !ok;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: chatload [probe] --port P [options]\n"
            "  --impl NAME     label for the RESULT line                          [unknown]\n"
            "  --clients C     connected, named clients                           [100]\n"
            "  --senders S     how many of them send (u0 .. u(S-1))               [all]\n"
            "  --rate R        total lines per second; 0: as fast as the server   [0]\n"
            "  --inflight K    lines a sender may have not yet delivered to all   [8]\n"
            "  --size B        bytes of text per line (max %d)                   [64]\n"
            "  --secs D        measured seconds                                   [5]\n"
            "  --warmup W      seconds of load before measuring                   [1]\n"
            "  --timeout T     give up (an error) after T seconds in all          [60]\n"
            "  --pid PID       the server's pid: report its CPU use\n"
            "  --no-busy-poll  sleep in epoll_wait while loaded (default: poll with\n"
            "                  timeout 0, as tests/bench/echo/loadgen does)\n",
            MAX_SIZE);
    exit(1);
}

int main(int argc, char **argv)
{
    int probe = argc > 1 && strcmp(argv[1], "probe") == 0;
    static const struct option lo[] = {
        {"port", required_argument, 0, 'p'},    {"impl", required_argument, 0, 'I'},
        {"clients", required_argument, 0, 'c'}, {"senders", required_argument, 0, 'S'},
        {"rate", required_argument, 0, 'r'},    {"inflight", required_argument, 0, 'k'},
        {"size", required_argument, 0, 's'},    {"secs", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},  {"timeout", required_argument, 0, 'T'},
        {"pid", required_argument, 0, 'P'},     {"no-busy-poll", no_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    optind = probe ? 2 : 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': o.port = atoi(optarg); break;
        case 'I': o.impl = optarg; break;
        case 'c': o.clients = atoi(optarg); break;
        case 'S': o.senders = atoi(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'k': o.inflight = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 'd': o.secs = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'T': o.timeout = atof(optarg); break;
        case 'P': o.pid = atoi(optarg); break;
        case 'B': o.busy_poll = 0; break;
        default: usage();
        }
    }
    if (optind != argc || o.port <= 0 || o.port > 65535)
        usage();
    signal(SIGPIPE, SIG_IGN);
    g_addr = loopback_addr(o.port);
    if (probe)
        return do_probe();

    if (o.senders < 0)
        o.senders = o.clients;
    if (o.clients < 2 || o.senders < 1 || o.senders > o.clients || o.inflight < 1 || o.size < 1 ||
        o.size > MAX_SIZE || o.secs <= 0 || o.warmup < 0 || o.timeout <= 0 || o.rate < 0) {
        fprintf(stderr, "chatload: need --clients >= 2, 1 <= --senders <= clients, --inflight >= 1, "
                        "1 <= --size <= %d, --secs > 0\n", MAX_SIZE);
        return 1;
    }
    struct rlimit rl;
    raise_nofile(&rl);

    uint64_t t_begin = now_ns();
    uint64_t t_limit = t_begin + (uint64_t)(o.timeout * 1e9);
    epfd = epoll_new();
    cl = calloc((size_t)o.clients, sizeof *cl);
    last = calloc((size_t)o.clients * (size_t)o.clients, sizeof *last);
    refill = calloc((size_t)o.clients, sizeof *refill);
    dirty = calloc((size_t)o.clients, sizeof *dirty);
    if (!cl || !last || !refill || !dirty)
        die("calloc");
    for (int i = 0; i < o.clients; i++) {
        cl[i].fd = -1;
        cl[i].id = i;
        cl[i].owed = calloc((size_t)o.inflight, sizeof *cl[i].owed);
        if (!cl[i].owed)
            die("calloc");
    }

    /* 1. setup: one client named at a time, then every join notice */
    for (g_naming = 0; g_naming < o.clients; g_naming++) {
        start_connect(&cl[g_naming]);
        if (loop_until(named_done, t_limit, 0) < 0 || cl[g_naming].phase != P_NAMED) {
            fprintf(stderr, "chatload: u%d was not welcomed and named (%s)\n", g_naming,
                    cl[g_naming].phase == P_DEAD ? "disconnected" : "timed out");
            return 1;
        }
    }
    if (loop_until(joins_done, t_limit, 0) < 0 || n_named != o.clients) {
        fprintf(stderr, "chatload: not every join notice arrived (%d of %d clients named)\n", n_named,
                o.clients);
        return 1;
    }
    double setup_s = (double)(now_ns() - t_begin) / 1e9;

    /* 2. load: warm-up, then the measured window */
    uint64_t t0 = now_ns();
    uint64_t t_meas = t0 + (uint64_t)(o.warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(o.secs * 1e9);
    if (t_end > t_limit)
        t_end = t_limit;
    sending = 1;
    last_progress = t0;
    rate_t0 = t0;
    if (o.rate <= 0) {
        for (int i = 0; i < o.senders; i++) {
            cl[i].queued = 1;
            refill[n_refill++] = i;
        }
    }
    struct cpu_window win = {0};
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_meas) {
            measuring = 1;
            cpu_window_start(&win, t, o.pid);
            idle_poll_ns = 0;
        }
        if (t >= t_end)
            break;
        if (t - last_progress > STALL_NS && all_delivered < all_sent * (uint64_t)(o.clients - 1)) {
            err.timeouts++;
            complain("nothing delivered for %.1f s", (double)(t - last_progress) / 1e9);
            break;
        }
        if (n_named < o.clients)
            break; /* a client was disconnected: reported */
        if (o.rate > 0)
            send_due(t);
        else
            refill_senders(t);
        flush_dirty();
        run_events(o.busy_poll ? 0 : 1);
    }
    double wall, self_s, srv_cpu;
    cpu_window_end(&win, &wall, &self_s, &srv_cpu);
    /* busy polling keeps this process at 100% CPU: what it spent on work is
     * the time outside the polls that found nothing (preemption by other
     * processes counts as idle, so this is a lower bound on a loaded machine) */
    double lg_busy = wall > 0 ? 100.0 * (wall - (double)idle_poll_ns / 1e9) / wall : 0;
    double lg_cpu = wall > 0 ? 100.0 * self_s / wall : 0;
    measuring = 0;
    if (!win.t0) {
        err.timeouts++;
        complain("--timeout %.0f s reached before the measured window", o.timeout);
    }

    /* 3. drain: every line to every other client, then nothing more */
    sending = 0;
    n_refill = 0;
    uint64_t t_drain = now_ns() + STALL_NS;
    if (t_drain > t_limit + STALL_NS)
        t_drain = t_limit + STALL_NS;
    if (n_named == o.clients && loop_until(drained, t_drain, 0) < 0) {
        err.timeouts++;
        complain("lines still undelivered %.1f s after sending stopped", (double)STALL_NS / 1e9);
    }
    if (n_named == o.clients)
        loop_until(never, now_ns() + 100000000ull, 0);
    for (int r = 0; r < o.clients; r++) {
        for (int s = 0; s < o.senders; s++) {
            uint64_t got = last[(size_t)r * (size_t)o.clients + (size_t)s];
            if (s != r && got != cl[s].sent) {
                err.lost += cl[s].sent - got;
                complain("u%d received %" PRIu64 " of the %" PRIu64 " lines u%d sent", r, got, cl[s].sent, s);
            }
        }
    }
    for (int i = 0; i < o.clients; i++)
        if (cl[i].fd >= 0)
            close(cl[i].fd);

    uint64_t errors = err.wrong + err.order + err.lost + err.extra + err.eofs + err.resets + err.timeouts;
    int ok = errors == 0 && m_delivered > 0;
    printf("RESULT bench=chat impl=%s mode=%s clients=%d senders=%d inflight=%d size=%d rate=%.0f "
           "setup_s=%.2f wall_s=%.2f lines_sent=%" PRIu64 " delivered=%" PRIu64 " sent_per_s=%.0f "
           "delivered_per_s=%.0f mean_us=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "total_sent=%" PRIu64 " total_delivered=%" PRIu64 " deferred=%" PRIu64 " lg_cpu=%.0f lg_busy=%.0f",
           o.impl, o.rate > 0 ? "rate" : "max", o.clients, o.senders, o.inflight, o.size, o.rate, setup_s,
           wall, m_sent, m_delivered, wall > 0 ? (double)m_sent / wall : 0,
           wall > 0 ? (double)m_delivered / wall : 0, hist_mean_us(&lat), hist_q(&lat, 0.50),
           hist_q(&lat, 0.99), hist_q(&lat, 0.999), hist_max_us(&lat), all_sent, all_delivered, deferred, lg_cpu,
           o.busy_poll ? (lg_busy < 0 ? 0 : lg_busy) : lg_cpu);
    if (srv_cpu >= 0)
        printf(" srv_cpu=%.0f", srv_cpu);
    printf(" errors=%" PRIu64 " wrong=%" PRIu64 " order=%" PRIu64 " lost=%" PRIu64 " extra=%" PRIu64
           " eofs=%" PRIu64 " resets=%" PRIu64 " timeouts=%" PRIu64 " ok=%d\n",
           errors, err.wrong, err.order, err.lost, err.extra, err.eofs, err.resets, err.timeouts, ok);
    if (err.wrong || err.order || err.lost)
        return 2;
    return ok ? 0 : 3;
}
