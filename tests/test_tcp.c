/* test_tcp.c -- TCP transports end to end on loopback: bulk echo with flow
 * control, a thousand connections, half-close, abort, lose, refused and
 * timed-out connects, peers that do not read, resets, running out of
 * descriptors, IPv6, addresses and options, factory start/stop, pausing, and
 * the lifetime rules of tw_transport.h and tw_tcp.h on every one of those
 * paths (every protocol is checked: connection_lost once and last, destroy
 * right after it, nothing inside another callback). */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

static bool backend_is(const char *name)
{
    return strcmp(tw_reactor_backend_name(), name) == 0;
}

/* Iterate until *counter >= want (the bound is a guard, never a decision). */
static uint64_t xs64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_random(unsigned char *buf, size_t n, uint64_t *s)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = xs64(s);
        memcpy(buf + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = xs64(s);
        memcpy(buf + i, &v, n - i);
    }
}

/* The byte at offset i of the streams the servers below send. */
static unsigned char pat(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 11) * 13);
}

static void fill_pat(unsigned char *buf, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(off + i);
}

static socklen_t loopback(int family, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons((uint16_t)port);
        return sizeof *in6;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons((uint16_t)port);
    return sizeof *in;
}

static int addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void set_bufsize(int fd, int opt, int size)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size), 0);
}

/* A plain socket connected to the loopback port (the kernel completes the
 * handshake from its backlog), then made non-blocking.  rcvbuf 0: default. */
static int raw_connect(int family, int port, int rcvbuf)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        set_bufsize(fd, SO_RCVBUF, rcvbuf);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    set_nonblock(fd);
    return fd;
}

/* Poll fd alone until it shows one of `ev` (or an error / hang-up); the
 * 10 s bound is a guard against a hang. */
static short wait_fd(int fd, short ev)
{
    struct pollfd pf = { fd, ev, 0 };
    for (int i = 0; i < 1000; i++)
        if (poll(&pf, 1, 10) > 0 && (pf.revents & (ev | POLLERR | POLLHUP)))
            return pf.revents;
    fail_msg("fd %d: still not ready after 10 s", fd);
    return 0;
}

/* Iterate the reactor until the plain socket `fd` is readable (or errs). */
static void run_until_readable(tw_reactor_t *r, int fd)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_time_now() < give_up) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, 0) > 0)
            return;
        assert_true(tw_reactor_iterate(r, TW_MSEC(5)) >= 0);
    }
    fail_msg("fd %d never became readable", fd);
}

typedef struct sink {
    size_t got;
    size_t bad; /* bytes that differ from pat() */
} sink_t;

/* Read the plain socket `fd` until EOF or an error, iterating the reactor in
 * between.  Returns 0 at EOF or -errno. */
static int drain_peer(tw_reactor_t *r, int fd, sink_t *k)
{
    static unsigned char buf[65536];
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_time_now() < give_up) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                k->bad += buf[i] != pat(k->got + (size_t)i);
            k->got += (size_t)n;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        assert_true(tw_reactor_iterate(r, TW_MSEC(1)) >= 0);
    }
    fail_msg("drain_peer: no EOF after 30 s (%zu bytes read)", k->got);
    return -ETIMEDOUT;
}

/* A peer's view of the end: 0 for EOF, -ECONNRESET for a reset. */
static int peer_end(tw_reactor_t *r, int fd)
{
    char buf[4096];
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_time_now() < give_up) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (n < 0)
            assert_true(tw_reactor_iterate(r, TW_MSEC(1)) >= 0);
    }
    fail_msg("peer_end: nothing after 30 s");
    return 0;
}

/* ---- a protocol that records its life ------------------------------------ */

typedef struct life {
    tw_transport_t *t;  /* from connection_made until connection_lost */
    int index;          /* place in the factory's array, in build order */
    int made, data, eofs, lost, destroyed;
    int depth;          /* > 0 while one of its callbacks runs */
    int bad;            /* lifetime rules broken */
    char why[128];      /* the first one */
    int made_at, last_data_at, eof_at, lost_at, destroy_at;
    bool lost_clean;
    int lost_code;
    const char *lost_domain;
    size_t bytes;       /* received */
    uint64_t hash;      /* of what was received */
    int write_errors;
} life_t;

typedef struct tproto tproto_t;
typedef struct tfactory tfactory_t;

struct tfactory {
    tw_factory_t base;
    bool echo;        /* write back what arrives */
    bool throttle;    /* register the transport as its own streaming producer */
    bool eof_handler; /* protocols have an eof_received (else: lose on EOF) */
    bool refuse;      /* build_protocol returns NULL */
    void (*on_made)(tproto_t *p, tw_transport_t *t);
    void (*on_data)(tproto_t *p, const void *d, size_t n);
    void (*on_eof)(tproto_t *p);
    void (*on_lost)(tproto_t *p, const tw_failure_t *why);
    void (*on_failed)(tfactory_t *tf, tw_connector_t *c, const tw_failure_t *why);
    void (*on_conn_lost)(tfactory_t *tf, tw_connector_t *c, const tw_failure_t *why);
    void *user;
    life_t *lives;
    int nlives, maxlives, overflow;
    int seq;          /* orders every event of the factory and its protocols */
    int builds, made, lost, destroyed, live, peak;
    int starts, stops, started_connecting, failed, conn_lost, conn_lost_at;
    int fail_code;
    const char *fail_domain;
    bool conn_lost_clean;
    int conn_lost_code;
    bool in_call;     /* the test is inside tw_tcp_connect & co */
    int inside_call;  /* connection_failed/_lost that came inside such a call */
};

struct tproto {
    tw_protocol_t base;
    tfactory_t *tf;
    life_t *life;
};

static void life_bad(life_t *l, const char *what)
{
    if (l->bad++ == 0)
        snprintf(l->why, sizeof l->why, "protocol %d: %s", l->index, what);
}

static void tp_made(tw_protocol_t *bp, tw_transport_t *t)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    tfactory_t *tf = p->tf;
    if (l->made || l->lost || l->destroyed)
        life_bad(l, "connection_made twice or after the end");
    if (bp->transport != t || bp->factory != &tf->base)
        life_bad(l, "connection_made: transport or factory not set");
    l->made++;
    l->made_at = ++tf->seq;
    l->t = t;
    tf->made++;
    if (++tf->live > tf->peak)
        tf->peak = tf->live;
    l->depth++;
    if (tf->throttle && tw_transport_register_producer(t, &t->as_producer, true) != 0)
        life_bad(l, "register_producer(as_producer) failed");
    if (tf->on_made)
        tf->on_made(p, t);
    l->depth--;
}

static void tp_data(tw_protocol_t *bp, const void *d, size_t n)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost || l->eofs)
        life_bad(l, "data_received before connection_made or after eof/lost");
    if (l->depth)
        life_bad(l, "data_received inside another callback");
    if (n == 0)
        life_bad(l, "data_received with no bytes");
    l->data++;
    l->last_data_at = ++p->tf->seq;
    l->bytes += n;
    l->hash = tw_test_fnv(l->hash, d, n);
    l->depth++;
    if (p->tf->echo && tw_transport_write(bp->transport, d, n) != 0)
        l->write_errors++;
    if (p->tf->on_data)
        p->tf->on_data(p, d, n);
    l->depth--;
}

static void tp_eof(tw_protocol_t *bp)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost || l->eofs)
        life_bad(l, "eof_received twice or out of order");
    if (l->depth)
        life_bad(l, "eof_received inside another callback");
    l->eofs++;
    l->eof_at = ++p->tf->seq;
    l->depth++;
    if (p->tf->on_eof)
        p->tf->on_eof(p);
    l->depth--;
}

static void tp_lost(tw_protocol_t *bp, const tw_failure_t *why)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost)
        life_bad(l, "connection_lost twice or without connection_made");
    if (l->depth)
        life_bad(l, "connection_lost inside another callback");
    l->lost++;
    l->lost_at = ++p->tf->seq;
    l->lost_clean = why == NULL;
    l->lost_code = why ? why->code : 0;
    l->lost_domain = why ? why->domain : NULL;
    p->tf->lost++;
    p->tf->live--;
    l->depth++;
    if (p->tf->on_lost)
        p->tf->on_lost(p, why);
    if (tw_transport_write(bp->transport, "x", 1) != -EPIPE)
        life_bad(l, "a write inside connection_lost was not refused with -EPIPE");
    l->depth--;
    l->t = NULL;
}

static void tp_destroy(tw_protocol_t *bp)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (l->destroyed)
        life_bad(l, "destroyed twice");
    if (l->depth)
        life_bad(l, "destroy inside another callback");
    if (l->made && !l->lost)
        life_bad(l, "destroy before connection_lost");
    l->destroyed++;
    l->destroy_at = ++p->tf->seq;
    p->tf->destroyed++;
    free(p);
}

static const tw_protocol_ops_t tp_ops = {
    .connection_made = tp_made,
    .data_received = tp_data,
    .connection_lost = tp_lost,
    .destroy = tp_destroy,
};

static const tw_protocol_ops_t tp_ops_eof = {
    .connection_made = tp_made,
    .data_received = tp_data,
    .eof_received = tp_eof,
    .connection_lost = tp_lost,
    .destroy = tp_destroy,
};

static tw_protocol_t *tf_build(tw_factory_t *f, const struct sockaddr *addr, socklen_t len)
{
    tfactory_t *tf = (tfactory_t *)f;
    tf->builds++;
    if (!addr || len < (socklen_t)sizeof(sa_family_t) ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        tf->overflow++;
    if (tf->refuse)
        return NULL;
    if (tf->nlives == tf->maxlives) {
        tf->overflow++;
        return NULL;
    }
    tproto_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base.ops = tf->eof_handler ? &tp_ops_eof : &tp_ops;
    p->tf = tf;
    p->life = &tf->lives[tf->nlives];
    p->life->index = tf->nlives++;
    p->life->hash = TW_TEST_FNV_INIT;
    return &p->base;
}

static void tf_start(tw_factory_t *f)
{
    ((tfactory_t *)f)->starts++;
}

static void tf_stop(tw_factory_t *f)
{
    ((tfactory_t *)f)->stops++;
}

static void tf_started(tw_factory_t *f, tw_connector_t *c)
{
    (void)c;
    ((tfactory_t *)f)->started_connecting++;
}

static void tf_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    tfactory_t *tf = (tfactory_t *)f;
    tf->failed++;
    tf->inside_call += tf->in_call;
    tf->fail_code = why ? why->code : 0;
    tf->fail_domain = why ? why->domain : NULL;
    if (tf->on_failed)
        tf->on_failed(tf, c, why);
}

static void tf_conn_lost(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    tfactory_t *tf = (tfactory_t *)f;
    tf->conn_lost++;
    tf->inside_call += tf->in_call;
    tf->conn_lost_at = ++tf->seq;
    tf->conn_lost_clean = why == NULL;
    tf->conn_lost_code = why ? why->code : 0;
    if (tf->on_conn_lost)
        tf->on_conn_lost(tf, c, why);
}

static const tw_factory_ops_t tf_ops = {
    .build_protocol = tf_build,
    .start = tf_start,
    .stop = tf_stop,
    .started_connecting = tf_started,
    .connection_failed = tf_failed,
    .connection_lost = tf_conn_lost,
};

static void tf_init(tfactory_t *tf, int maxlives)
{
    memset(tf, 0, sizeof *tf);
    tf->base.ops = &tf_ops;
    tf->maxlives = maxlives;
    tf->lives = calloc((size_t)maxlives, sizeof *tf->lives);
    assert_non_null(tf->lives);
}

static void tf_fini(tfactory_t *tf)
{
    free(tf->lives);
    tf->lives = NULL;
}

/* Every rule of tw_transport.h's lifetime section, for one protocol. */
static void life_check(const life_t *l)
{
    if (l->bad)
        fail_msg("%s", l->why);
    assert_int_equal(l->made, 1);
    assert_int_equal(l->lost, 1);
    assert_int_equal(l->destroyed, 1);
    assert_int_equal(l->depth, 0);
    assert_null(l->t);
    assert_true(l->lost_at > l->made_at);
    assert_true(l->lost_at > l->last_data_at);
    assert_true(l->lost_at > l->eof_at);
    assert_int_equal(l->destroy_at, l->lost_at + 1);
    if (!l->lost_clean)
        assert_non_null(l->lost_domain);
}

/* ... and for every protocol the factory built, all of which are gone. */
static void tf_check_all(const tfactory_t *tf)
{
    assert_int_equal(tf->overflow, 0);
    assert_int_equal(tf->inside_call, 0);
    assert_int_equal(tf->destroyed, tf->nlives);
    assert_int_equal(tf->live, 0);
    for (int i = 0; i < tf->nlives; i++)
        life_check(&tf->lives[i]);
}

static void assert_failure(const life_t *l, const char *domain, int code)
{
    assert_false(l->lost_clean);
    assert_non_null(l->lost_domain);
    assert_string_equal(l->lost_domain, domain);
    assert_int_equal(l->lost_code, code);
}

static tw_listener_t *listen_on(tw_reactor_t *r, tfactory_t *tf, const char *iface, int backlog)
{
    tw_tcp_listen_opts_t o = { .interface = iface, .port = 0, .backlog = backlog };
    tw_listener_t *l = NULL;
    assert_int_equal(tw_tcp_listen(r, &tf->base, &o, &l), 0);
    assert_non_null(l);
    assert_true(tw_listener_port(l) > 0);
    return l;
}

static tw_connector_t *connect_to(tw_reactor_t *r, tfactory_t *tf, const char *host, int port,
                                  tw_time_t timeout)
{
    tw_tcp_connect_opts_t o = { .host = host, .port = port, .timeout = timeout };
    tw_connector_t *c = NULL;
    tf->in_call = true;
    int rc = tw_tcp_connect(r, &tf->base, &o, &c);
    tf->in_call = false;
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

/* ---- bulk echo through a throttled echo server ---------------------------- */

static size_t tail_queued; /* push_echo: bytes queued when the client half-closed */

#define PIECE_MAX  65536
#define PUSH_LIMIT (256 * 1024)

/* The client side: a push producer that writes random pieces of 1..64 KiB
 * while the transport has less than 256 KiB queued, then the last `tail`
 * bytes in one write, then half-closes. */
typedef struct pusher {
    tw_producer_t prod;
    tw_transport_t *t;
    size_t total, tail, sent, max_queued, queued_at_shut;
    int sndbuf; /* SO_SNDBUF for the client's socket, or 0 */
    uint64_t rng, hash;
    bool paused, stopped, finished;
    int pauses, resumes, stops, errors;
    unsigned char *buf;
} pusher_t;

static void pusher_pump(pusher_t *ps)
{
    while (!ps->paused && !ps->stopped && ps->sent < ps->total &&
           tw_transport_queued(ps->t) < PUSH_LIMIT) {
        size_t n = 1 + (size_t)(xs64(&ps->rng) % PIECE_MAX);
        if (ps->sent + n > ps->total - ps->tail)
            n = ps->total - ps->tail - ps->sent;
        if (n == 0) /* only the tail is left */
            n = ps->tail;
        fill_random(ps->buf, n, &ps->rng);
        ps->hash = tw_test_fnv(ps->hash, ps->buf, n);
        size_t cut = (size_t)(xs64(&ps->rng) % (n + 1));
        struct iovec iov[2] = { { ps->buf, cut }, { ps->buf + cut, n - cut } };
        if (tw_transport_writev(ps->t, iov, 2) != 0) {
            ps->errors++;
            return;
        }
        ps->sent += n;
        if (tw_transport_queued(ps->t) > ps->max_queued)
            ps->max_queued = tw_transport_queued(ps->t);
    }
    if (ps->sent == ps->total && !ps->finished) {
        ps->finished = true;
        ps->queued_at_shut = tw_transport_queued(ps->t);
        if (tw_transport_lose_write_connection(ps->t) != 0)
            ps->errors++;
        /* Half-closed: writing is refused from now on. */
        if (tw_transport_write(ps->t, "x", 1) != -EPIPE)
            ps->errors++;
    }
}

static void pusher_pause(tw_producer_t *p)
{
    pusher_t *ps = (pusher_t *)p;
    ps->pauses++;
    ps->paused = true;
}

static void pusher_resume(tw_producer_t *p)
{
    pusher_t *ps = (pusher_t *)p;
    ps->resumes++;
    ps->paused = false;
    pusher_pump(ps);
}

static void pusher_stop(tw_producer_t *p)
{
    pusher_t *ps = (pusher_t *)p;
    ps->stops++;
    ps->stopped = true;
}

static const tw_producer_ops_t pusher_ops = { pusher_pause, pusher_resume, pusher_stop };

static void pusher_made(tproto_t *p, tw_transport_t *t)
{
    pusher_t *ps = p->tf->user;
    ps->t = t;
    if (ps->sndbuf)
        set_bufsize(tw_transport_fileno(t), SO_SNDBUF, ps->sndbuf);
    tw_transport_set_limits(t, 64 * 1024, PUSH_LIMIT, 0, TW_CAP_PAUSE);
    if (tw_transport_register_producer(t, &ps->prod, true) != 0)
        ps->errors++;
    if (tw_transport_register_producer(t, &ps->prod, true) != -EBUSY)
        ps->errors++;
    pusher_pump(ps);
}

/* Echo `total` bytes through a server on `host`, the last `tail` of them in
 * one write from a client whose socket takes `sndbuf` bytes (0: default);
 * returns false (nothing checked) if the server cannot listen there. */
static bool push_echo(const char *host, size_t total, size_t tail, int sndbuf, uint64_t seed)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, cli;
    tf_init(&srv, 1);
    tf_init(&cli, 1);
    srv.echo = srv.throttle = true;
    cli.eof_handler = true;
    pusher_t ps = { .prod.ops = &pusher_ops, .total = total, .tail = tail, .sndbuf = sndbuf,
                    .rng = seed, .hash = TW_TEST_FNV_INIT };
    ps.buf = malloc(tail > PIECE_MAX ? tail : PIECE_MAX);
    assert_non_null(ps.buf);
    cli.on_made = pusher_made;
    cli.user = &ps;

    tw_tcp_listen_opts_t o = { .interface = host };
    tw_listener_t *l = NULL;
    int rc = tw_tcp_listen(r, &srv.base, &o, &l);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        free(ps.buf);
        tf_fini(&srv);
        tf_fini(&cli);
        tw_reactor_free(r);
        return false;
    }
    assert_int_equal(rc, 0);
    tw_connector_t *c = connect_to(r, &cli, host, tw_listener_port(l), 0);
    assert_int_equal(cli.started_connecting, 1);

    tw_test_run_until(r, &cli.destroyed, 1);
    tw_test_run_until(r, &srv.destroyed, 1);
    tw_test_run_until(r, &cli.conn_lost, 1);
    tf_check_all(&srv);
    tf_check_all(&cli);

    assert_int_equal(ps.errors, 0);
    assert_int_equal(ps.sent, total);
    assert_true(ps.max_queued < PUSH_LIMIT + (tail > PIECE_MAX ? tail : PIECE_MAX));
    assert_int_equal(ps.stops, 1); /* told to stop when the connection went */
    const life_t *sl = &srv.lives[0], *cl = &cli.lives[0];
    /* The server got every byte, the client got every byte back. */
    assert_int_equal(sl->bytes, total);
    assert_true(sl->hash == ps.hash);
    assert_int_equal(sl->write_errors, 0);
    assert_int_equal(cl->bytes, total);
    assert_true(cl->hash == ps.hash);
    /* All the data, then EOF, then a clean connection_lost, then destroy,
     * then the factory hears of it. */
    assert_int_equal(cl->eofs, 1);
    assert_true(cl->eof_at > cl->last_data_at);
    assert_true(cl->lost_at > cl->eof_at);
    assert_true(cl->lost_clean);
    assert_true(sl->lost_clean);
    assert_true(cli.conn_lost_at > cl->destroy_at);
    assert_true(cli.conn_lost_clean);
    assert_null(tw_connector_transport(c));
    tail_queued = ps.queued_at_shut;

    tw_connector_free(c);
    tw_listener_close(l);
    assert_int_equal(srv.starts, 1);
    assert_int_equal(srv.stops, 1);
    assert_int_equal(cli.starts, 1);
    assert_int_equal(cli.stops, 1);
    free(ps.buf);
    tf_fini(&srv);
    tf_fini(&cli);
    tw_reactor_free(r);
    return true;
}

static void echo_64mib_in_random_pieces_matches_hash_on_both_sides(void **state)
{
    (void)state;
    assert_true(push_echo("127.0.0.1", (size_t)64 << 20, 0, 0, 0x9e3779b97f4a7c15ull));
}

static void half_close_gets_every_byte_back_then_eof_then_clean_lost(void **state)
{
    (void)state;
    /* push_echo calls lose_write_connection right after the last write and
     * asserts the order of what comes back.  The last write is 256 KiB into
     * a 32 KiB socket buffer: the FIN must wait for the queue to drain. */
    tail_queued = 0;
    assert_true(push_echo("127.0.0.1", (size_t)8 << 20, 256 * 1024, 32768, 0x12345678ull));
    assert_true(tail_queued > 0);
}

static void ipv6_loopback_echo(void **state)
{
    (void)state;
    if (!push_echo("::1", (size_t)1 << 20, 0, 0, 42)) {
        print_message("IPv6 loopback (::1) is not available: skipped\n");
        skip();
    }
}

/* ---- a thousand connections ------------------------------------------------ */

#define MSG_LEN 32

typedef struct many {
    int done, mismatches;
} many_t;

static void many_msg(char *buf, int index)
{
    char tmp[MSG_LEN + 1];
    snprintf(tmp, sizeof tmp, "twine connection %06d.........", index);
    memcpy(buf, tmp, MSG_LEN);
}

static void many_made(tproto_t *p, tw_transport_t *t)
{
    char msg[MSG_LEN];
    many_msg(msg, p->life->index);
    if (tw_transport_write(t, msg, MSG_LEN) != 0)
        p->life->write_errors++;
}

static void many_data(tproto_t *p, const void *d, size_t n)
{
    (void)d;
    (void)n;
    many_t *m = p->tf->user;
    if (p->life->bytes < MSG_LEN)
        return;
    char msg[MSG_LEN];
    many_msg(msg, p->life->index);
    if (p->life->bytes != MSG_LEN || p->life->hash != tw_test_fnv(TW_TEST_FNV_INIT, msg, MSG_LEN))
        m->mismatches++;
    m->done++;
}

static void thousand_concurrent_connections_each_echo_a_message(void **state)
{
    (void)state;
    enum { N = 1000, RAMP = 64 };
    if (backend_is("select")) {
        print_message("select cannot watch %d connections (FD_SETSIZE is %d): skipped\n",
                      2 * N, FD_SETSIZE);
        skip();
    }
    long lim = tw_test_raise_nofile(2 * N + 256);
    if (lim < 2 * N + 256) {
        print_message("RLIMIT_NOFILE hard limit %ld is below %d: skipped\n", lim, 2 * N + 256);
        skip();
    }
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, cli;
    tf_init(&srv, N);
    tf_init(&cli, N);
    srv.echo = true;
    many_t m = { 0, 0 };
    cli.on_made = many_made;
    cli.on_data = many_data;
    cli.user = &m;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 1024);
    int port = tw_listener_port(l);
    tw_connector_t **cs = calloc(N, sizeof *cs);
    assert_non_null(cs);

    /* At most RAMP attempts wait for the accept at any time (so that no SYN
     * is dropped by a full backlog), but no connection closes before all
     * N have echoed: all are open at once. */
    int started = 0;
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (m.done < N && tw_time_now() < give_up) {
        while (started < N && started - srv.made < RAMP)
            cs[started++] = connect_to(r, &cli, "127.0.0.1", port, 0);
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    }
    assert_int_equal(m.done, N);
    assert_int_equal(m.mismatches, 0);
    assert_int_equal(srv.live, N);
    assert_int_equal(cli.live, N);
    assert_int_equal(srv.peak, N);
    assert_int_equal(cli.started_connecting, N);
    assert_int_equal(cli.failed, 0);

    for (int i = 0; i < N; i++)
        tw_transport_lose_connection(cli.lives[i].t);
    tw_test_run_until(r, &cli.conn_lost, N);
    tw_test_run_until(r, &srv.destroyed, N);
    tf_check_all(&srv);
    tf_check_all(&cli);
    for (int i = 0; i < N; i++) {
        assert_true(srv.lives[i].lost_clean);
        assert_true(cli.lives[i].lost_clean);
        assert_int_equal(srv.lives[i].write_errors, 0);
        assert_int_equal(cli.lives[i].write_errors, 0);
    }
    for (int i = 0; i < N; i++)
        tw_connector_free(cs[i]);
    assert_int_equal(cli.starts, 1);
    assert_int_equal(cli.stops, 1);
    tw_listener_close(l);
    assert_int_equal(srv.stops, 1);
    free(cs);
    tf_fini(&srv);
    tf_fini(&cli);
    tw_reactor_free(r);
}

/* ---- abort ------------------------------------------------------------------- */

typedef struct abort_ctx {
    int rc_write, rc_lose_write, rc_register;
    int lost_inside; /* connection_lost seen while data_received ran */
} abort_ctx_t;

static void abort_in_data(tproto_t *p, const void *d, size_t n)
{
    (void)d;
    (void)n;
    abort_ctx_t *a = p->tf->user;
    tw_transport_t *t = p->base.transport;
    tw_transport_abort_connection(t);
    tw_transport_abort_connection(t); /* again: harmless */
    tw_transport_lose_connection(t);  /* and a lose after it too */
    a->rc_write = tw_transport_write(t, "late", 4);
    a->rc_lose_write = tw_transport_lose_write_connection(t);
    a->rc_register = tw_transport_register_producer(t, &t->as_producer, true);
    a->lost_inside += p->life->lost;
}

static void abort_inside_data_received_loses_once_after_it_returns(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 1);
    abort_ctx_t a = { 0, 0, 0, 0 };
    srv.on_data = abort_in_data;
    srv.user = &a;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 0);
    assert_int_equal(write(peer, "hello", 5), 5);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    const life_t *sl = &srv.lives[0];
    assert_int_equal(sl->data, 1);
    assert_int_equal(a.lost_inside, 0);
    assert_failure(sl, "tcp", -ECONNABORTED);
    assert_int_equal(a.rc_write, -EPIPE);
    assert_int_equal(a.rc_lose_write, -EPIPE);
    assert_int_equal(a.rc_register, -EPIPE);
    int end = peer_end(r, peer);
    assert_true(end == -ECONNRESET || end == 0);
    close(peer);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

/* ---- lose_connection and writes after it ----------------------------------- */

#define LOSE_BYTES ((size_t)3 << 20)

typedef struct lose_ctx {
    size_t queued_before, queued_after;
    int rc_write, rc_writev, rc_lose_write, rc_register, rc_first;
} lose_ctx_t;

static void lose_made(tproto_t *p, tw_transport_t *t)
{
    lose_ctx_t *c = p->tf->user;
    set_bufsize(tw_transport_fileno(t), SO_SNDBUF, 32768);
    unsigned char *buf = malloc(LOSE_BYTES);
    if (!buf) {
        c->rc_first = -ENOMEM;
        return;
    }
    fill_pat(buf, 0, LOSE_BYTES);
    c->rc_first = tw_transport_write(t, buf, LOSE_BYTES);
    free(buf); /* the transport copied what it could not send */
    c->queued_before = tw_transport_queued(t);
    tw_transport_lose_connection(t);
    tw_transport_lose_connection(t); /* again: harmless */
    c->rc_write = tw_transport_write(t, "more", 4);
    struct iovec iov[2] = { { (void *)"a", 1 }, { (void *)"b", 1 } };
    c->rc_writev = tw_transport_writev(t, iov, 2);
    c->rc_lose_write = tw_transport_lose_write_connection(t);
    c->rc_register = tw_transport_register_producer(t, &t->as_producer, true);
    c->queued_after = tw_transport_queued(t);
}

static void write_after_lose_is_refused_and_lose_flushes_first(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 1);
    lose_ctx_t c = { 0 };
    srv.on_made = lose_made;
    srv.user = &c;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 16384);
    tw_test_run_until(r, &srv.made, 1);
    assert_int_equal(c.rc_first, 0);
    assert_true(c.queued_before > 0); /* something was left to flush */
    assert_int_equal(c.rc_write, -EPIPE);
    assert_int_equal(c.rc_writev, -EPIPE);
    assert_int_equal(c.rc_lose_write, -EPIPE);
    assert_int_equal(c.rc_register, -EPIPE);
    assert_int_equal(c.queued_after, c.queued_before); /* nothing more queued */
    sink_t k = { 0, 0 };
    assert_int_equal(drain_peer(r, peer, &k), 0); /* every byte, then EOF */
    assert_int_equal(k.got, LOSE_BYTES);
    assert_int_equal(k.bad, 0);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    assert_true(srv.lives[0].lost_clean);
    close(peer);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

/* ---- connecting: refused, timed out, cancelled --------------------------------- */

/* A port with a socket bound to it that does not listen: SYNs get a reset. */
static int closed_port(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, 0, &ss);
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    len = sizeof ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    *fd_out = fd;
    return addr_port(&ss);
}

static void free_on_failed(tfactory_t *tf, tw_connector_t *c, const tw_failure_t *why)
{
    (void)tf;
    (void)why;
    tw_connector_free(c);
}

static void connection_refused_reaches_connection_failed_later(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int holder;
    int port = closed_port(&holder);
    tfactory_t cli;
    tf_init(&cli, 1);
    cli.on_failed = free_on_failed; /* the connector is freed from the callback */
    connect_to(r, &cli, "127.0.0.1", port, 0);
    assert_int_equal(cli.failed, 0); /* not inside tw_tcp_connect */
    assert_int_equal(cli.started_connecting, 1);
    assert_int_equal(cli.starts, 1);
    tw_test_run_until(r, &cli.failed, 1);
    assert_int_equal(cli.inside_call, 0);
    assert_non_null(cli.fail_domain);
    assert_string_equal(cli.fail_domain, "tcp");
    assert_int_equal(cli.fail_code, -ECONNREFUSED);
    assert_int_equal(cli.builds, 0);
    assert_int_equal(cli.stops, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(cli.failed, 1);

    /* An error found at once (binding to a port that is taken) is also
     * reported from the loop, never from inside tw_tcp_connect. */
    tw_tcp_connect_opts_t o = { .host = "127.0.0.1", .port = port,
                                .bind_address = "127.0.0.1", .bind_port = port };
    tw_connector_t *c = NULL;
    cli.in_call = true;
    assert_int_equal(tw_tcp_connect(r, &cli.base, &o, &c), 0);
    cli.in_call = false;
    assert_int_equal(cli.failed, 1);
    tw_test_run_until(r, &cli.failed, 2);
    assert_int_equal(cli.inside_call, 0);
    assert_string_equal(cli.fail_domain, "tcp");
    assert_int_equal(cli.fail_code, -EADDRINUSE);
    assert_int_equal(cli.stops, 2);
    close(holder);
    tf_fini(&cli);
    tw_reactor_free(r);
}

static void reconnect_on_failed(tfactory_t *tf, tw_connector_t *c, const tw_failure_t *why)
{
    (void)why;
    if (tf->failed < 3) {
        if (tw_connector_connect(c) != 0)
            tf->overflow++;
    } else {
        tw_connector_free(c);
    }
}

static void connector_connect_from_connection_failed_tries_again(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int holder;
    int port = closed_port(&holder);
    tfactory_t cli;
    tf_init(&cli, 1);
    cli.on_failed = reconnect_on_failed;
    tw_connector_t *c = connect_to(r, &cli, "127.0.0.1", port, 0);
    assert_int_equal(tw_connector_connect(c), -EBUSY);
    tw_test_run_until(r, &cli.failed, 3);
    assert_int_equal(cli.started_connecting, 3);
    assert_int_equal(cli.fail_code, -ECONNREFUSED);
    assert_int_equal(cli.overflow, 0);
    assert_int_equal(cli.inside_call, 0);
    assert_int_equal(cli.stops, 1);
    close(holder);
    tf_fini(&cli);
    tw_reactor_free(r);
}

#ifdef __linux__
/* Linux reports a listening socket's accept queue in TCP_INFO: its length in
 * tcpi_unacked, its limit in tcpi_sacked; the queue is full (new SYNs are
 * dropped) when the length exceeds the limit. */
static unsigned acceptq_len(int lfd, unsigned *limit)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    assert_int_equal(getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    *limit = ti.tcpi_sacked;
    return ti.tcpi_unacked;
}

/* A listener that never accepts, its accept queue filled by plain sockets:
 * a further connection attempt cannot complete (its SYNs are dropped). */
static int full_listener(int *port, int fillers[], int max, int *nfill)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, 0, &ss);
    assert_int_equal(bind(lfd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(lfd, 0), 0);
    len = sizeof ss;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
    *port = addr_port(&ss);
    unsigned limit, n = acceptq_len(lfd, &limit);
    *nfill = 0;
    while (n <= limit) {
        assert_true(*nfill < max);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        fillers[(*nfill)++] = fd;
        int rc = connect(fd, (struct sockaddr *)&ss, len);
        assert_true(rc == 0 || errno == EINPROGRESS);
        wait_fd(fd, POLLOUT);
        int err = 0;
        socklen_t elen = sizeof err;
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
        assert_int_equal(err, 0);
        /* Wait for the server side to queue it (the last ACK may still be in
         * flight when the client sees the connection up). */
        unsigned want = n + 1;
        for (int i = 0; i < 10000 && (n = acceptq_len(lfd, &limit)) < want; i++)
            usleep(1000);
        assert_true(n >= want);
    }
    return lfd;
}
#endif

static void connect_times_out_on_a_full_backlog_and_can_be_cancelled(void **state)
{
    (void)state;
#ifdef __linux__
    tw_reactor_t *r = tw_test_reactor_new();
    int port, fillers[8], nfill;
    int lfd = full_listener(&port, fillers, 8, &nfill);
    tfactory_t cli;
    tf_init(&cli, 1);
    tw_connector_t *c = connect_to(r, &cli, "127.0.0.1", port, TW_MSEC(50));
    tw_test_run_until(r, &cli.failed, 1);
    assert_int_equal(cli.inside_call, 0);
    assert_string_equal(cli.fail_domain, "tcp");
    assert_int_equal(cli.fail_code, -ETIMEDOUT);
    assert_int_equal(cli.builds, 0);
    assert_null(tw_connector_transport(c));

    /* Again, cancelled this time (the attempt cannot complete either). */
    assert_int_equal(tw_connector_connect(c), 0);
    assert_int_equal(cli.started_connecting, 2);
    assert_int_equal(tw_connector_connect(c), -EBUSY);
    tw_connector_stop_connecting(c);
    assert_int_equal(cli.failed, 2);
    assert_string_equal(cli.fail_domain, "tcp");
    assert_int_equal(cli.fail_code, -ECANCELED);
    tw_connector_stop_connecting(c); /* nothing in progress: nothing happens */
    for (int i = 0; i < 3; i++)
        tw_reactor_iterate(r, 0);
    assert_int_equal(cli.failed, 2);
    tw_connector_free(c);
    assert_int_equal(cli.stops, 1);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    close(lfd);
    tf_fini(&cli);
    tw_reactor_free(r);
#else
    print_message("needs Linux's TCP_INFO on listening sockets to fill a backlog: skipped\n");
    skip();
#endif
}

/* ---- a peer that never reads -------------------------------------------------- */

#define FEED_CHUNK 8192          /* a push producer's pieces */
#define PULL_CHUNK (128 * 1024)  /* a pull producer's: more than the socket takes at once */
#define FEED_LOW   (16 * 1024)
#define FEED_HIGH  (64 * 1024)
#define FEED_CAP   (1024 * 1024)

typedef struct feeder {
    tw_producer_t prod;
    tw_transport_t *t;
    bool streaming, paused, done;
    size_t chunk, total, sent, max_queued;
    int pauses, resumes, stops, errors, backlogged;
} feeder_t;

static bool feeder_write_one(feeder_t *f)
{
    static unsigned char buf[PULL_CHUNK];
    size_t n = f->total - f->sent < f->chunk ? f->total - f->sent : f->chunk;
    fill_pat(buf, f->sent, n);
    if (tw_transport_write(f->t, buf, n) != 0) {
        f->errors++;
        return false;
    }
    f->sent += n;
    size_t q = tw_transport_queued(f->t);
    if (q > f->max_queued)
        f->max_queued = q;
    if (q > 0)
        f->backlogged = 1;
    return true;
}

static void feeder_finish(feeder_t *f)
{
    if (f->sent == f->total && !f->done) {
        f->done = true;
        tw_transport_unregister_producer(f->t);
        tw_transport_lose_connection(f->t);
    }
}

static void feeder_pump(feeder_t *f)
{
    if (f->streaming)
        while (!f->paused && f->sent < f->total && feeder_write_one(f))
            ;
    else if (f->sent < f->total)
        feeder_write_one(f);
    feeder_finish(f);
}

static void feeder_pause(tw_producer_t *p)
{
    feeder_t *f = (feeder_t *)p;
    if (!f->streaming || f->paused)
        f->errors++; /* a pull producer is never paused; no pause twice */
    f->pauses++;
    f->paused = true;
}

static void feeder_resume(tw_producer_t *p)
{
    feeder_t *f = (feeder_t *)p;
    if (f->streaming && !f->paused)
        f->errors++;
    f->resumes++;
    f->paused = false;
    if (tw_transport_queued(f->t) > FEED_LOW)
        f->errors++; /* resumed above the low water mark */
    feeder_pump(f);
}

static void feeder_stop(tw_producer_t *p)
{
    ((feeder_t *)p)->stops++;
}

static const tw_producer_ops_t feeder_ops = { feeder_pause, feeder_resume, feeder_stop };

static void feeder_made(tproto_t *p, tw_transport_t *t)
{
    feeder_t *f = p->tf->user;
    f->t = t;
    set_bufsize(tw_transport_fileno(t), SO_SNDBUF, 32768);
    tw_transport_set_limits(t, FEED_LOW, FEED_HIGH, FEED_CAP, TW_CAP_PAUSE);
    if (tw_transport_register_producer(t, &f->prod, f->streaming) != 0)
        f->errors++;
    if (f->streaming)
        feeder_pump(f); /* a pull producer was asked for its first chunk */
}

static void peer_that_never_reads(bool streaming)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 1);
    feeder_t f = { .prod.ops = &feeder_ops, .streaming = streaming, .total = (size_t)4 << 20,
                   .chunk = streaming ? FEED_CHUNK : PULL_CHUNK };
    srv.on_made = feeder_made;
    srv.user = &f;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 16384);

    /* The peer reads nothing: the socket fills and the queue grows, the
     * producer is held back (a push producer is paused above the high water
     * mark, a pull producer is asked for more only below the low one), and
     * the queue stays under the cap. */
    if (streaming)
        tw_test_run_until(r, &f.pauses, 1);
    else
        tw_test_run_until(r, &f.backlogged, 1);
    for (int i = 0; i < 20; i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(1)) >= 0);
    assert_int_equal(f.errors, 0);
    assert_true(f.sent < f.total);
    size_t q = tw_transport_queued(srv.lives[0].t);
    assert_true(q > 0);
    assert_true(q <= FEED_CAP);
    if (streaming) {
        assert_true(f.paused);
        assert_true(f.max_queued <= FEED_HIGH + FEED_CHUNK);
    } else {
        assert_true(f.max_queued <= FEED_LOW + PULL_CHUNK);
    }

    /* Now the peer reads everything: the producer resumes and finishes. */
    sink_t k = { 0, 0 };
    assert_int_equal(drain_peer(r, peer, &k), 0);
    assert_int_equal(k.got, f.total);
    assert_int_equal(k.bad, 0);
    assert_true(f.done);
    assert_true(f.resumes >= 1);
    assert_int_equal(f.errors, 0);
    assert_int_equal(f.stops, 0); /* unregistered before the lose */
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    assert_true(srv.lives[0].lost_clean);
    close(peer);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

static void push_producer_pauses_for_a_peer_that_never_reads_then_completes(void **state)
{
    (void)state;
    peer_that_never_reads(true);
}

static void pull_producer_waits_for_a_peer_that_never_reads_then_completes(void **state)
{
    (void)state;
    peer_that_never_reads(false);
}

#define CAP_BYTES (256 * 1024)
#define CAP_CHUNK (16 * 1024)

typedef struct cap_ctx {
    tw_cap_policy_t policy;
    size_t ok_bytes, queued_before, queued_after, rest;
    int rc, rc_next, writes;
} cap_ctx_t;

static void cap_made(tproto_t *p, tw_transport_t *t)
{
    cap_ctx_t *c = p->tf->user;
    unsigned char buf[CAP_CHUNK];
    set_bufsize(tw_transport_fileno(t), SO_SNDBUF, 32768);
    tw_transport_set_limits(t, 0, 0, CAP_BYTES, c->policy);
    /* Far more than the socket buffers hold: the cap must be reached. */
    for (c->writes = 0; c->writes < 1024; c->writes++) {
        fill_pat(buf, c->ok_bytes, CAP_CHUNK);
        c->queued_before = tw_transport_queued(t);
        c->rc = tw_transport_write(t, buf, CAP_CHUNK);
        c->queued_after = tw_transport_queued(t);
        if (c->rc != 0)
            break;
        c->ok_bytes += CAP_CHUNK;
    }
    if (c->policy == TW_CAP_FAIL) {
        /* Up to the cap exactly is still accepted (buf holds what comes next). */
        c->rest = c->queued_after < CAP_BYTES ? CAP_BYTES - c->queued_after : 0;
        c->rc_next = tw_transport_write(t, buf, c->rest);
        tw_transport_lose_connection(t);
    } else {
        c->rc_next = tw_transport_write(t, buf, 1);
    }
}

static void cap_policy(tw_cap_policy_t policy)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 1);
    cap_ctx_t c = { .policy = policy };
    srv.on_made = cap_made;
    srv.user = &c;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 16384);
    tw_test_run_until(r, &srv.made, 1);
    assert_true(c.writes < 1024);
    assert_int_equal(c.rc, -ENOBUFS);
    assert_true(c.queued_before + CAP_CHUNK > CAP_BYTES);
    assert_true(c.queued_before <= CAP_BYTES);
    sink_t k = { 0, 0 };
    int end = drain_peer(r, peer, &k);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    if (policy == TW_CAP_FAIL) {
        /* Refused and nothing queued; the connection goes on. */
        assert_int_equal(c.queued_after, c.queued_before);
        assert_int_equal(c.rc_next, 0);
        assert_int_equal(end, 0);
        assert_int_equal(k.got, c.ok_bytes + c.rest);
        assert_int_equal(k.bad, 0);
        assert_true(srv.lives[0].lost_clean);
    } else {
        assert_int_equal(c.rc_next, -EPIPE);
        assert_true(end == 0 || end == -ECONNRESET);
        assert_true(k.got <= c.ok_bytes);
        assert_failure(&srv.lives[0], "tcp", -ENOBUFS);
    }
    close(peer);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

static void cap_fail_refuses_the_write_with_enobufs(void **state)
{
    (void)state;
    cap_policy(TW_CAP_FAIL);
}

static void cap_abort_aborts_with_enobufs(void **state)
{
    (void)state;
    cap_policy(TW_CAP_ABORT);
}

/* ---- a reset while the server writes ------------------------------------------ */

#define RST_BYTES ((size_t)2 << 20)

typedef struct rst_ctx {
    size_t queued;
    int rc;
} rst_ctx_t;

static void rst_made(tproto_t *p, tw_transport_t *t)
{
    rst_ctx_t *c = p->tf->user;
    set_bufsize(tw_transport_fileno(t), SO_SNDBUF, 32768);
    /* Not reading: only the write path can meet the reset. */
    tw_transport_pause_reading(t);
    unsigned char *buf = malloc(RST_BYTES);
    if (!buf) {
        c->rc = -ENOMEM;
        return;
    }
    fill_pat(buf, 0, RST_BYTES);
    tw_transport_set_limits(t, 0, 0, RST_BYTES, TW_CAP_PAUSE);
    c->rc = tw_transport_write(t, buf, RST_BYTES);
    free(buf);
    c->queued = tw_transport_queued(t);
}

static void reset_while_writing_fails_the_connection_without_sigpipe(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    /* tw_reactor_new ignored SIGPIPE; put the default back, so that only
     * MSG_NOSIGNAL on the write path keeps the process alive. */
    struct sigaction dfl = { .sa_handler = SIG_DFL }, old;
    sigemptyset(&dfl.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &dfl, &old), 0);
    tfactory_t srv;
    tf_init(&srv, 1);
    rst_ctx_t c = { 0, 0 };
    srv.on_made = rst_made;
    srv.user = &c;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 16384);
    tw_test_run_until(r, &srv.made, 1);
    assert_int_equal(c.rc, 0);
    assert_true(c.queued > 0);
    struct linger lg = { 1, 0 };
    assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(peer);
    /* Wait (outside the reactor) for the reset to land on the server's
     * socket, then consume the pending error: the next send then fails with
     * EPIPE, which raises SIGPIPE unless MSG_NOSIGNAL is used. */
    int sfd = tw_transport_fileno(srv.lives[0].t);
    short ev = wait_fd(sfd, 0);
    assert_true(ev & (POLLERR | POLLHUP));
    int err = 0;
    socklen_t elen = sizeof err;
    assert_int_equal(getsockopt(sfd, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    const life_t *sl = &srv.lives[0];
    assert_false(sl->lost_clean);
    assert_string_equal(sl->lost_domain, "tcp");
    assert_true(sl->lost_code == -EPIPE || sl->lost_code == -ECONNRESET);
    assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

/* ---- out of descriptors ----------------------------------------------------- */

static int shed_warnings, shed_recovered;

static void count_sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    (void)arg;
    if (strcmp(domain, "tcp") != 0)
        return;
    if (level == TW_LOG_WARN && strstr(msg, "out of descriptors"))
        shed_warnings++;
    if (level == TW_LOG_INFO && strstr(msg, "free again"))
        shed_recovered++;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int count_ended(const int *fds, int n)
{
    int ended = 0;
    for (int i = 0; i < n; i++) {
        struct pollfd pf = { fds[i], POLLIN, 0 };
        ended += poll(&pf, 1, 0) > 0;
    }
    return ended;
}

static void ping_made(tproto_t *p, tw_transport_t *t)
{
    (void)p;
    tw_transport_write(t, "ping", 4);
}

static void ping_data(tproto_t *p, const void *d, size_t n)
{
    (void)d;
    (void)n;
    if (p->life->bytes == 4)
        tw_transport_lose_connection(p->base.transport);
}

static void out_of_descriptors_sheds_connections_without_spinning(void **state)
{
    (void)state;
    enum { N = 200, MAXHOLES = 4096 };
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, cli;
    tf_init(&srv, 1);
    tf_init(&cli, 1);
    srv.echo = true;
    cli.on_made = ping_made;
    cli.on_data = ping_data;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 512);
    int port = tw_listener_port(l);
    int peers[N];
    for (int i = 0; i < N; i++) {
        peers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(peers[i] >= 0);
    }
    /* Every descriptor number below the new limit is taken (holes filled
     * with /dev/null), so no new one can be had; the listener's spare is
     * among them. */
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int maxfd = 0;
    for (int fd = 0; fd < (int)saved.rlim_cur && fd < 65536; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            maxfd = fd;
    int *holes = malloc(MAXHOLES * sizeof *holes), nholes = 0, limit;
    assert_non_null(holes);
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        if (fd > maxfd || nholes == MAXHOLES) {
            close(fd);
            limit = fd;
            break;
        }
        holes[nholes++] = fd;
    }
    assert_true(limit > maxfd);
    tw_log_level_t old_level = tw_log_get_level();
    tw_log_set_level(TW_LOG_INFO);
    tw_log_set_sink(count_sink, NULL);
    shed_warnings = shed_recovered = 0;

    low = saved;
    low.rlim_cur = (rlim_t)limit;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* From here until the limit is restored: record, do not assert. */
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC), probe_errno = errno;
    double cpu0 = cpu_seconds();
    int connect_errors = 0;
    for (int i = 0; i < N; i++) {
        struct sockaddr_storage ss;
        socklen_t len = loopback(AF_INET, port, &ss);
        if (connect(peers[i], (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
            connect_errors++;
    }
    int ended = 0, iters = 0;
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (ended < N && iters < 3000 && tw_time_now() < give_up) {
        tw_reactor_iterate(r, TW_MSEC(10));
        iters++;
        ended = count_ended(peers, N);
    }
    /* Shed: nothing is left to do, the loop is idle (it does not spin). */
    int idle[3];
    for (int i = 0; i < 3; i++)
        idle[i] = tw_reactor_iterate(r, 0);
    double cpu = cpu_seconds() - cpu0;
    int builds = srv.builds;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);

    if (probe >= 0)
        close(probe);
    assert_true(probe < 0 && probe_errno == EMFILE);
    assert_int_equal(connect_errors, 0);
    assert_int_equal(ended, N);
    for (int i = 0; i < 3; i++)
        assert_int_equal(idle[i], 0);
    assert_int_equal(builds, 0);
    assert_int_equal(shed_warnings, 1); /* one line per episode */
    if (cpu >= 1.0)
        fail_msg("shedding %d connections took %.2f s of CPU: the loop spins", N, cpu);
    int resets = 0, eofs = 0;
    for (int i = 0; i < N; i++) {
        int end = peer_end(r, peers[i]);
        eofs += end == 0;
        resets += end == -ECONNRESET;
        close(peers[i]);
    }
    assert_int_equal(eofs + resets, N);
    for (int i = 0; i < nholes; i++)
        close(holes[i]);
    free(holes);

    /* Descriptors again: a new connection is served. */
    tw_connector_t *c = connect_to(r, &cli, "127.0.0.1", port, 0);
    tw_test_run_until(r, &cli.destroyed, 1);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    tf_check_all(&cli);
    assert_int_equal(cli.lives[0].bytes, 4);
    assert_int_equal(srv.lives[0].bytes, 4);
    assert_int_equal(shed_recovered, 1);
    tw_log_set_sink(NULL, NULL);
    tw_log_set_level(old_level);
    tw_connector_free(c);
    tw_listener_close(l);
    tf_fini(&srv);
    tf_fini(&cli);
    tw_reactor_free(r);
}

/* ---- addresses and options ---------------------------------------------------- */

static int sockopt_int(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, opt, &v, &len), 0);
    return v;
}

static void addresses_port_nodelay_and_keepalive(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, cli;
    tf_init(&srv, 1);
    tf_init(&cli, 1);
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int port = tw_listener_port(l);
    struct sockaddr_storage la;
    socklen_t llen;
    assert_int_equal(tw_listener_address(l, &la, &llen), 0);
    assert_int_equal(la.ss_family, AF_INET);
    assert_int_equal(llen, sizeof(struct sockaddr_in));
    assert_int_equal(addr_port(&la), port);
    assert_true(((struct sockaddr_in *)&la)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));

    /* Port in use, a bad address, a host name: refused at once. */
    tw_tcp_listen_opts_t again = { .interface = "127.0.0.1", .port = port };
    tw_listener_t *l2 = NULL;
    assert_int_equal(tw_tcp_listen(r, &srv.base, &again, &l2), -EADDRINUSE);
    tw_tcp_listen_opts_t bad = { .interface = "not-an-address" };
    assert_int_equal(tw_tcp_listen(r, &srv.base, &bad, &l2), -EINVAL);
    tw_tcp_connect_opts_t name = { .host = "localhost", .port = port };
    tw_connector_t *c = NULL;
    assert_int_equal(tw_tcp_connect(r, &cli.base, &name, &c), -EINVAL);
    tw_tcp_connect_opts_t noport = { .host = "127.0.0.1", .port = 0 };
    assert_int_equal(tw_tcp_connect(r, &cli.base, &noport, &c), -EINVAL);
    assert_int_equal(cli.starts, 0);
    assert_int_equal(cli.started_connecting, 0);
    assert_int_equal(srv.starts, 1);

    c = connect_to(r, &cli, "127.0.0.1", port, 0);
    tw_test_run_until(r, &srv.made, 1);
    tw_test_run_until(r, &cli.made, 1);
    tw_transport_t *st = srv.lives[0].t, *ct = cli.lives[0].t;
    assert_ptr_equal(tw_connector_transport(c), ct);
    assert_int_equal(tw_connector_connect(c), -EBUSY);
    struct sockaddr_storage a, b;
    socklen_t alen, blen;
    assert_int_equal(tw_transport_host_address(st, &a, &alen), 0);
    assert_int_equal(addr_port(&a), port);
    assert_int_equal(tw_transport_peer_address(ct, &b, &blen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(&a, &b, alen);
    assert_int_equal(tw_transport_peer_address(st, &a, &alen), 0);
    assert_int_equal(tw_transport_host_address(ct, &b, &blen), 0);
    assert_int_equal(a.ss_family, AF_INET);
    assert_int_equal(alen, blen);
    assert_memory_equal(&a, &b, alen);
    assert_int_equal(tw_transport_queued(st), 0);

    tw_transport_t *ts[2] = { st, ct };
    for (int i = 0; i < 2; i++) {
        int fd = tw_transport_fileno(ts[i]);
        assert_true(fd >= 0);
        assert_int_not_equal(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
        assert_int_equal(tw_transport_set_nodelay(ts[i], false), 0);
        assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
        assert_int_equal(tw_transport_set_nodelay(ts[i], true), 0);
        assert_int_not_equal(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
        assert_int_equal(tw_transport_set_keepalive(ts[i], true), 0);
        assert_int_not_equal(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
        assert_int_equal(tw_transport_set_keepalive(ts[i], false), 0);
        assert_int_equal(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    }
    tw_transport_lose_connection(ct);
    tw_test_run_until(r, &cli.conn_lost, 1);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    tf_check_all(&cli);
    assert_true(srv.lives[0].lost_clean);
    assert_true(cli.lives[0].lost_clean);
    assert_null(tw_connector_transport(c));
    tw_connector_free(c);
    tw_listener_close(l);
    tf_fini(&srv);
    tf_fini(&cli);
    tw_reactor_free(r);
}

/* ---- factories ---------------------------------------------------------------- */

static void factory_start_and_stop_once_for_first_and_last_user(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t f;
    tf_init(&f, 4); /* builds the protocols of both sides */
    tw_listener_t *l1 = listen_on(r, &f, "127.0.0.1", 0);
    assert_int_equal(f.starts, 1);
    tw_listener_t *l2 = listen_on(r, &f, "127.0.0.1", 0);
    tw_connector_t *c1 = connect_to(r, &f, "127.0.0.1", tw_listener_port(l1), 0);
    tw_connector_t *c2 = connect_to(r, &f, "127.0.0.1", tw_listener_port(l2), 0);
    assert_int_equal(f.starts, 1);
    tw_test_run_until(r, &f.made, 4);
    tw_listener_close(l1);
    tw_listener_close(l2);
    tw_listener_close(NULL);
    assert_int_equal(f.stops, 0);
    /* Freeing a connector aborts its connection: its protocol still gets
     * connection_lost, the factory's connection_lost does not come. */
    tw_transport_t *t1 = tw_connector_transport(c1);
    assert_non_null(t1);
    tw_connector_free(c1);
    assert_int_equal(f.stops, 0);
    tw_test_run_until(r, &f.destroyed, 2); /* c1's two ends */
    assert_int_equal(f.conn_lost, 0);
    tw_transport_lose_connection(tw_connector_transport(c2));
    tw_test_run_until(r, &f.destroyed, 4);
    tw_test_run_until(r, &f.conn_lost, 1);
    assert_int_equal(f.stops, 0);
    tw_connector_free(c2);
    tw_connector_free(NULL);
    assert_int_equal(f.starts, 1);
    assert_int_equal(f.stops, 1);
    tf_check_all(&f);
    int aborted = 0;
    for (int i = 0; i < 4; i++)
        aborted += !f.lives[i].lost_clean && f.lives[i].lost_code == -ECONNABORTED;
    assert_int_equal(aborted, 1); /* c1's own protocol */

    /* A new first user starts it again. */
    tw_listener_t *l3 = listen_on(r, &f, "127.0.0.1", 0);
    assert_int_equal(f.starts, 2);
    tw_listener_close(l3);
    assert_int_equal(f.stops, 2);
    tf_fini(&f);
    tw_reactor_free(r);
}

static void build_protocol_returning_null_refuses_the_connection(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, ok, cli, picky;
    tf_init(&srv, 1);
    tf_init(&ok, 1);
    tf_init(&cli, 1);
    tf_init(&picky, 1);
    srv.refuse = true;
    picky.refuse = true;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int port = tw_listener_port(l);

    /* A plain peer sees the connection closed. */
    int peer = raw_connect(AF_INET, port, 0);
    run_until_readable(r, peer);
    assert_int_equal(peer_end(r, peer), 0);
    close(peer);
    assert_int_equal(srv.builds, 1);
    assert_int_equal(srv.made, 0);

    /* A twine client sees EOF and a clean close. */
    tw_connector_t *c = connect_to(r, &cli, "127.0.0.1", port, 0);
    tw_test_run_until(r, &cli.conn_lost, 1);
    tf_check_all(&cli);
    assert_true(cli.lives[0].lost_clean);
    assert_int_equal(srv.builds, 2);
    tw_connector_free(c);

    /* A client factory that refuses: connection_failed, ECONNREFUSED; the
     * server side sees the connection end. */
    tw_listener_t *l2 = listen_on(r, &ok, "127.0.0.1", 0);
    c = connect_to(r, &picky, "127.0.0.1", tw_listener_port(l2), 0);
    tw_test_run_until(r, &picky.failed, 1);
    assert_int_equal(picky.fail_code, -ECONNREFUSED);
    assert_string_equal(picky.fail_domain, "tcp");
    assert_int_equal(picky.builds, 1);
    assert_int_equal(picky.made, 0);
    tw_test_run_until(r, &ok.destroyed, 1);
    tf_check_all(&ok);
    tf_check_all(&picky);
    tw_connector_free(c);
    tw_listener_close(l);
    tw_listener_close(l2);
    tf_fini(&srv);
    tf_fini(&ok);
    tf_fini(&cli);
    tf_fini(&picky);
    tw_reactor_free(r);
}

/* ---- pausing ------------------------------------------------------------------- */

typedef struct pause_ctx {
    bool pause_in_data;
} pause_ctx_t;

static void pause_made(tproto_t *p, tw_transport_t *t)
{
    (void)p;
    tw_transport_pause_reading(t);
    tw_transport_pause_reading(t); /* not counted */
}

static void pause_data(tproto_t *p, const void *d, size_t n)
{
    (void)d;
    (void)n;
    pause_ctx_t *c = p->tf->user;
    if (c->pause_in_data)
        tw_transport_pause_reading(p->base.transport);
}

/* The server's socket has bytes waiting, yet iterating delivers none. */
static void assert_nothing_delivered(tw_reactor_t *r, const life_t *sl, int peer, const char *s)
{
    int before = sl->data;
    assert_int_equal(write(peer, s, strlen(s)), (ssize_t)strlen(s));
    wait_fd(tw_transport_fileno(sl->t), POLLIN);
    for (int i = 0; i < 5; i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(1)) >= 0);
    assert_int_equal(sl->data, before);
}

static void paused_transport_delivers_no_data_until_resumed(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 1);
    pause_ctx_t c = { false };
    srv.on_made = pause_made;
    srv.on_data = pause_data;
    srv.user = &c;
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    int peer = raw_connect(AF_INET, tw_listener_port(l), 0);
    tw_test_run_until(r, &srv.made, 1);
    life_t *sl = &srv.lives[0];
    assert_nothing_delivered(r, sl, peer, "abc");
    tw_transport_resume_reading(sl->t);
    tw_test_run_until(r, &sl->data, 1);
    assert_int_equal(sl->bytes, 3);

    /* Paused from inside data_received. */
    c.pause_in_data = true;
    assert_int_equal(write(peer, "def", 3), 3);
    tw_test_run_until(r, &sl->data, 2);
    assert_nothing_delivered(r, sl, peer, "ghi");
    c.pause_in_data = false;
    tw_transport_resume_reading(sl->t);
    tw_transport_resume_reading(sl->t);
    tw_test_run_until(r, &sl->data, 3);
    assert_int_equal(sl->bytes, 9);
    assert_true(sl->hash == tw_test_fnv(TW_TEST_FNV_INIT, "abcdefghi", 9));
    close(peer);
    tw_test_run_until(r, &srv.destroyed, 1);
    tf_check_all(&srv);
    assert_true(sl->lost_clean);
    tw_listener_close(l);
    tf_fini(&srv);
    tw_reactor_free(r);
}

/* ---- lifetime: connectors and listeners closed from callbacks ------------------ */

static void lose_in_made(tproto_t *p, tw_transport_t *t)
{
    (void)p;
    tw_transport_lose_connection(t);
}

static void free_connector_in_made(tproto_t *p, tw_transport_t *t)
{
    (void)t;
    tw_connector_free(*(tw_connector_t **)p->tf->user);
}

static void free_connector_in_lost(tproto_t *p, const tw_failure_t *why)
{
    (void)why;
    tw_connector_free(*(tw_connector_t **)p->tf->user);
}

static void free_on_conn_lost(tfactory_t *tf, tw_connector_t *c, const tw_failure_t *why)
{
    (void)tf;
    (void)why;
    tw_connector_free(c);
}

/* One connection whose client is set up by `setup`; runs until both ends
 * are destroyed and checks both lives. */
static void one_connection(void (*setup)(tfactory_t *cli), int want_conn_lost,
                           bool want_clean, bool freed_inside)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv, cli;
    tf_init(&srv, 1);
    tf_init(&cli, 1);
    tw_connector_t *c = NULL;
    cli.user = &c;
    setup(&cli);
    tw_listener_t *l = listen_on(r, &srv, "127.0.0.1", 0);
    c = connect_to(r, &cli, "127.0.0.1", tw_listener_port(l), 0);
    tw_test_run_until(r, &cli.destroyed, 1);
    tw_test_run_until(r, &srv.destroyed, 1);
    for (int i = 0; i < 3; i++)
        tw_reactor_iterate(r, 0);
    tf_check_all(&srv);
    tf_check_all(&cli);
    assert_int_equal(cli.conn_lost, want_conn_lost);
    assert_true(cli.lives[0].lost_clean == want_clean);
    if (!want_clean)
        assert_failure(&cli.lives[0], "tcp", -ECONNABORTED);
    assert_int_equal(cli.stops, freed_inside);
    if (!freed_inside)
        tw_connector_free(c);
    assert_int_equal(cli.stops, 1);
    tw_listener_close(l);
    tf_fini(&srv);
    tf_fini(&cli);
    tw_reactor_free(r);
}

static void setup_lose_in_made(tfactory_t *cli)
{
    cli->on_made = lose_in_made;
}

static void setup_free_in_made(tfactory_t *cli)
{
    cli->on_made = free_connector_in_made;
}

static void setup_free_in_lost(tfactory_t *cli)
{
    cli->on_made = lose_in_made;
    cli->on_lost = free_connector_in_lost;
}

static void setup_free_on_conn_lost(tfactory_t *cli)
{
    cli->on_made = lose_in_made;
    cli->on_conn_lost = free_on_conn_lost;
}

static void lose_inside_connection_made_closes_cleanly(void **state)
{
    (void)state;
    one_connection(setup_lose_in_made, 1, true, false);
}

static void connector_freed_inside_connection_made_aborts_it(void **state)
{
    (void)state;
    one_connection(setup_free_in_made, 0, false, true);
}

static void connector_freed_inside_protocol_connection_lost(void **state)
{
    (void)state;
    /* The connector goes before the stream tells it of the end: the
     * factory's connection_lost must not come (nor touch freed memory). */
    one_connection(setup_free_in_lost, 0, true, true);
}

static void connector_freed_inside_factory_connection_lost(void **state)
{
    (void)state;
    one_connection(setup_free_on_conn_lost, 1, true, true);
}

static void connector_freed_while_connecting_makes_no_callback(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int holder;
    int port = closed_port(&holder);
    tfactory_t cli;
    tf_init(&cli, 1);
    tw_connector_t *c = connect_to(r, &cli, "127.0.0.1", port, 0);
    tw_connector_free(c);
    assert_int_equal(cli.stops, 1);
    for (int i = 0; i < 5; i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
    assert_int_equal(cli.failed, 0);
    assert_int_equal(cli.builds, 0);
    close(holder);
    tf_fini(&cli);
    tw_reactor_free(r);
}

typedef struct close_ctx {
    tw_listener_t *l;
    int closes;
} close_ctx_t;

static void close_listener_in_made(tproto_t *p, tw_transport_t *t)
{
    (void)t;
    close_ctx_t *cc = p->tf->user;
    if (cc->l) {
        tw_listener_close(cc->l);
        cc->l = NULL;
        cc->closes++;
    }
}

static void listener_closed_inside_an_accepted_connection_made(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tfactory_t srv;
    tf_init(&srv, 4);
    close_ctx_t cc = { NULL, 0 };
    srv.on_made = close_listener_in_made;
    srv.user = &cc;
    srv.echo = true;
    cc.l = listen_on(r, &srv, "127.0.0.1", 0);
    int port = tw_listener_port(cc.l);
    /* Several pending at once: the accept loop is running when it closes. */
    int peers[3];
    for (int i = 0; i < 3; i++)
        peers[i] = raw_connect(AF_INET, port, 0);
    tw_test_run_until(r, &cc.closes, 1);
    assert_int_equal(srv.stops, 1);
    assert_int_equal(srv.made, 1);
    /* The accepted connection lives on. */
    assert_int_equal(write(peers[0], "x", 1), 1);
    int made = srv.made;
    for (int i = 0; i < 3; i++)
        close(peers[i]);
    tw_test_run_until(r, &srv.destroyed, made);
    tf_check_all(&srv);
    tf_fini(&srv);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_64mib_in_random_pieces_matches_hash_on_both_sides),
        cmocka_unit_test(half_close_gets_every_byte_back_then_eof_then_clean_lost),
        cmocka_unit_test(ipv6_loopback_echo),
        cmocka_unit_test(thousand_concurrent_connections_each_echo_a_message),
        cmocka_unit_test(abort_inside_data_received_loses_once_after_it_returns),
        cmocka_unit_test(write_after_lose_is_refused_and_lose_flushes_first),
        cmocka_unit_test(connection_refused_reaches_connection_failed_later),
        cmocka_unit_test(connector_connect_from_connection_failed_tries_again),
        cmocka_unit_test(connect_times_out_on_a_full_backlog_and_can_be_cancelled),
        cmocka_unit_test(push_producer_pauses_for_a_peer_that_never_reads_then_completes),
        cmocka_unit_test(pull_producer_waits_for_a_peer_that_never_reads_then_completes),
        cmocka_unit_test(cap_fail_refuses_the_write_with_enobufs),
        cmocka_unit_test(cap_abort_aborts_with_enobufs),
        cmocka_unit_test(reset_while_writing_fails_the_connection_without_sigpipe),
        cmocka_unit_test(out_of_descriptors_sheds_connections_without_spinning),
        cmocka_unit_test(addresses_port_nodelay_and_keepalive),
        cmocka_unit_test(factory_start_and_stop_once_for_first_and_last_user),
        cmocka_unit_test(build_protocol_returning_null_refuses_the_connection),
        cmocka_unit_test(paused_transport_delivers_no_data_until_resumed),
        cmocka_unit_test(lose_inside_connection_made_closes_cleanly),
        cmocka_unit_test(connector_freed_inside_connection_made_aborts_it),
        cmocka_unit_test(connector_freed_inside_protocol_connection_lost),
        cmocka_unit_test(connector_freed_inside_factory_connection_lost),
        cmocka_unit_test(connector_freed_while_connecting_makes_no_callback),
        cmocka_unit_test(listener_closed_inside_an_accepted_connection_made),
    };
    TW_TEST_MAIN(tests);
}
