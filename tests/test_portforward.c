/* test_portforward.c -- the port forwarder over real TCP on 127.0.0.1: a
 * twine service behind a forwarder, a twine client in front.  Every wait is
 * for a condition, with a generous guard; sizes and back-pressure are
 * checked as invariants at every step, never timed. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tw_endpoint.h"
#include "tw_factory.h"
#include "tw_policies.h"
#include "tw_portforward.h"
#include "tw_string_transport.h"
#include "tw_tcp.h"
#include "tw_wire.h"

#define CHUNK 65536
#define MIB   (1024 * 1024)
/* A stalled side holds at most its high water mark plus one read. */
#define BOUND (65536 + TW_READ_BUFFER_SIZE)

/* The byte at offset i of what the client sends. */
static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131u + (i >> 11) + (i >> 19) * 7u);
}

/* ---- a test peer: sends a pattern (a pull producer), hashes what it gets --- */

typedef struct peer {
    tw_protocol_t base;
    tw_producer_t prod;
    size_t to_send, sent, received;
    bool produce;         /* register the pull producer at connection_made */
    bool stop;            /* write nothing more, and do not half-close */
    bool half_closed;
    bool pause_at_made;   /* never read (until resumed) */
    bool lose_on_eof;     /* else keep the connection half-open */
    size_t lose_after;    /* lose once this much has arrived (0: never) */
    const char *greeting; /* written at connection_made */
    int sockbuf;          /* SO_SNDBUF / SO_RCVBUF at connection_made (0: leave) */
    uint64_t out_hash, in_hash;
    char head[64];        /* the first bytes received */
    int made, eofs, lost, lost_code;
} peer_t;

static void peer_resume(tw_producer_t *pp)
{
    peer_t *p = TW_CONTAINER_OF(pp, peer_t, prod);
    tw_transport_t *t = p->base.transport;
    if (p->stop || p->lost)
        return;
    if (p->sent >= p->to_send) {
        if (!p->half_closed) {
            p->half_closed = true;
            tw_transport_unregister_producer(t);
            tw_transport_lose_write_connection(t);
        }
        return;
    }
    static unsigned char buf[CHUNK];
    size_t n = p->to_send - p->sent < CHUNK ? p->to_send - p->sent : CHUNK;
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(p->sent + i);
    p->out_hash = tw_test_fnv(p->out_hash, buf, n);
    p->sent += n;
    assert_int_equal(tw_transport_write(t, buf, n), 0);
}

static void peer_pause(tw_producer_t *pp)
{
}

static const tw_producer_ops_t peer_producer_ops = { peer_pause, peer_resume, NULL };

static void set_bufs(int fd, int size)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
}

static void peer_made(tw_protocol_t *bp, tw_transport_t *t)
{
    peer_t *p = (peer_t *)bp;
    p->made++;
    if (p->sockbuf)
        set_bufs(tw_transport_fileno(t), p->sockbuf);
    if (p->pause_at_made)
        tw_transport_pause_reading(t);
    if (p->greeting)
        tw_transport_write(t, p->greeting, strlen(p->greeting));
    if (p->produce)
        assert_int_equal(tw_transport_register_producer(t, &p->prod, false), 0);
}

static void peer_data(tw_protocol_t *bp, const void *data, size_t len)
{
    peer_t *p = (peer_t *)bp;
    if (p->received < sizeof p->head - 1) {
        size_t k = sizeof p->head - 1 - p->received;
        memcpy(p->head + p->received, data, len < k ? len : k);
    }
    p->in_hash = tw_test_fnv(p->in_hash, data, len);
    p->received += len;
    if (p->lose_after && p->received >= p->lose_after)
        tw_transport_lose_connection(bp->transport);
}

static void peer_eof(tw_protocol_t *bp)
{
    peer_t *p = (peer_t *)bp;
    p->eofs++;
    if (p->lose_on_eof)
        tw_transport_lose_connection(bp->transport);
}

static void peer_lost(tw_protocol_t *bp, const tw_failure_t *reason)
{
    peer_t *p = (peer_t *)bp;
    p->lost++;
    p->lost_code = reason ? reason->code : 0;
    if (p->produce && !p->half_closed)
        tw_transport_unregister_producer(bp->transport);
}

/* Static peers: destroy frees nothing. */
static const tw_protocol_ops_t peer_ops = {
    .connection_made = peer_made,
    .data_received = peer_data,
    .eof_received = peer_eof,
    .connection_lost = peer_lost,
};

/* Without eof_received: the transport loses the connection at EOF. */
static const tw_protocol_ops_t peer_noeof_ops = {
    .connection_made = peer_made,
    .data_received = peer_data,
    .connection_lost = peer_lost,
};

static void peer_init(peer_t *p, bool with_eof)
{
    memset(p, 0, sizeof *p);
    p->base.ops = with_eof ? &peer_ops : &peer_noeof_ops;
    p->prod.ops = &peer_producer_ops;
    p->out_hash = p->in_hash = TW_TEST_FNV_INIT;
    p->lose_on_eof = true;
}

static tw_protocol_t *peer_build(void *arg)
{
    peer_t *p = arg;
    assert_int_equal(p->made, 0); /* one connection per peer */
    return &p->base;
}

/* ---- the setting: service <- forwarder <- client ------------------------- */

typedef struct rig {
    tw_reactor_t *r;
    tw_factory_t *service;  /* behind the forwarder */
    tw_listener_t *service_l, *fwd_l;
    tw_proxy_server_factory_t fwd;
    tw_client_factory_t cf; /* the client's */
    tw_connector_t *conn;
    tw_transport_t *in, *out; /* the forwarder's pair, once joined */
    int joined;
    int sockbuf;
} rig_t;

static void rig_connected(tw_transport_t *in, tw_transport_t *out, void *arg)
{
    rig_t *g = arg;
    g->in = in;
    g->out = out;
    g->joined++;
    if (g->sockbuf) {
        set_bufs(tw_transport_fileno(in), g->sockbuf);
        set_bufs(tw_transport_fileno(out), g->sockbuf);
    }
}

static int listen_local(tw_reactor_t *r, tw_factory_t *f, tw_listener_t **l)
{
    tw_tcp_listen_opts_t o = { .interface = "127.0.0.1" };
    assert_int_equal(tw_tcp_listen(r, f, &o, l), 0);
    return tw_listener_port(*l);
}

/* A forwarder in front of `service` (NULL: a port nobody listens on). */
static void rig_start(rig_t *g, tw_factory_t *service)
{
    memset(g, 0, sizeof *g);
    g->r = tw_test_reactor_new();
    g->service = service;
    int port;
    if (service) {
        port = listen_local(g->r, service, &g->service_l);
    } else {
        tw_wire_factory_t dummy;
        tw_wire_discard_factory_init(&dummy);
        tw_listener_t *l;
        port = listen_local(g->r, &dummy.base, &l);
        tw_listener_close(l); /* the port is free again: connecting is refused */
    }
    char ep[128];
    snprintf(ep, sizeof ep, "tcp:host=127.0.0.1:port=%d:timeout=10", port);
    assert_int_equal(tw_proxy_server_factory_init(&g->fwd, g->r, ep), 0);
    g->fwd.connected = rig_connected;
    g->fwd.arg = g;
    listen_local(g->r, &g->fwd.base, &g->fwd_l);
}

static void rig_connect(rig_t *g, peer_t *client)
{
    tw_client_hooks_t h = { .build = peer_build, .arg = client };
    assert_int_equal(tw_client_factory_init(&g->cf, &h), 0);
    tw_tcp_connect_opts_t o = { .host = "127.0.0.1", .port = tw_listener_port(g->fwd_l) };
    assert_int_equal(tw_tcp_connect(g->r, &g->cf.base, &o, &g->conn), 0);
}

/* Iterate until every connection of the forwarder and the service is gone. */
static void rig_drain(rig_t *g)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_factory_connection_count(&g->fwd.base) > 0 ||
           (g->service && tw_factory_connection_count(g->service) > 0) ||
           tw_factory_connection_count(&g->cf.base) > 0) {
        if (tw_time_now() > give_up)
            fail_msg("connections left: forwarder %d, service %d, client %d",
                     tw_factory_connection_count(&g->fwd.base),
                     g->service ? tw_factory_connection_count(g->service) : 0,
                     tw_factory_connection_count(&g->cf.base));
        assert_true(tw_reactor_iterate(g->r, TW_MSEC(50)) >= 0);
    }
}

static void rig_stop(rig_t *g)
{
    rig_drain(g);
    tw_connector_free(g->conn);
    tw_listener_close(g->fwd_l);
    tw_listener_close(g->service_l);
    /* a soon call or two may finish what the last close began */
    for (int i = 0; i < 5; i++)
        tw_reactor_iterate(g->r, 0);
    char what[256];
    if (tw_reactor_check_clean(g->r, what, sizeof what) != 0)
        fail_msg("%s", what);
    tw_reactor_free(g->r);
}

/* ---- tests --------------------------------------------------------------- */

static void forwards_16_mib_both_ways_intact(void **state)
{
    tw_wire_factory_t echo;
    tw_wire_echo_factory_init(&echo);
    rig_t g;
    rig_start(&g, &echo.base);
    peer_t client;
    peer_init(&client, true);
    client.produce = true;
    client.to_send = 16 * MIB;
    rig_connect(&g, &client);
    tw_test_run_until(g.r, &client.lost, 1);
    assert_int_equal(client.sent, 16 * MIB);
    assert_int_equal(client.received, 16 * MIB);
    assert_true(client.in_hash == client.out_hash);
    assert_int_equal(client.eofs, 1); /* the echo's end came as EOF, after every byte */
    assert_int_equal(client.lost_code, 0);
    assert_int_equal(g.joined, 1);
    assert_int_equal(g.fwd.failures, 0);
    rig_stop(&g);
}

/* The service behind the forwarder: a peer of its own, served once. */
typedef struct one_factory {
    tw_factory_t base;
    peer_t *p;
} one_factory_t;

static tw_protocol_t *one_build(tw_factory_t *f, const struct sockaddr *a, socklen_t n)
{
    return peer_build(((one_factory_t *)f)->p);
}

static const tw_factory_ops_t one_ops = { .build_protocol = one_build };

static void a_backend_that_stops_reading_stops_the_client_being_read(void **state)
{
    peer_t backend;
    peer_init(&backend, false); /* EOF: lose, after flushing */
    backend.pause_at_made = true;
    backend.sockbuf = 16384;
    one_factory_t bf = { .base = { .ops = &one_ops }, .p = &backend };
    rig_t g;
    rig_start(&g, &bf.base);
    g.sockbuf = 16384;
    peer_t client;
    peer_init(&client, true);
    client.produce = true;
    client.to_send = 256 * MIB; /* a guard: the stall comes long before */
    client.sockbuf = 16384;
    rig_connect(&g, &client);

    /* Until the forwarder stops reading the client: its outgoing queue is
     * past the high water mark and stays there. */
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    for (;;) {
        if (g.in) {
            assert_true(tw_transport_queued(g.out) <= BOUND);
            assert_int_equal(tw_transport_queued(g.in), 0);
            if (tw_transport_queued(g.out) > 65536 &&
                !tw_reactor_is_reading(g.r, tw_transport_fileno(g.in)))
                break;
        }
        assert_true(client.sent < client.to_send);
        if (tw_time_now() > give_up)
            fail_msg("no stall: client sent %zu", client.sent);
        assert_true(tw_reactor_iterate(g.r, TW_MSEC(50)) >= 0);
    }
    /* Stalled, and it stays so: nothing more is read, memory stays bounded. */
    for (int i = 0; i < 20; i++) {
        assert_true(tw_reactor_iterate(g.r, TW_MSEC(5)) >= 0);
        size_t q = tw_transport_queued(g.out);
        assert_true(q <= BOUND);
        if (q > 65536) /* past the high water mark: the client is not read */
            assert_false(tw_reactor_is_reading(g.r, tw_transport_fileno(g.in)));
        assert_int_equal(tw_transport_queued(g.in), 0);
        assert_int_equal(backend.received, 0);
    }
    assert_true(client.sent < 16 * MIB); /* kernel buffers are small: the client is held */

    /* The backend reads again: everything arrives, then the ends propagate. */
    client.to_send = client.sent; /* the next ask half-closes */
    tw_transport_resume_reading(backend.base.transport);
    tw_test_run_until(g.r, &backend.lost, 1);
    assert_int_equal(backend.received, client.sent);
    assert_true(backend.in_hash == client.out_hash);
    assert_int_equal(backend.lost_code, 0);
    tw_test_run_until(g.r, &client.lost, 1);
    assert_int_equal(client.eofs, 1);
    assert_int_equal(client.lost_code, 0);
    rig_stop(&g);
}

static void a_client_that_stops_reading_stops_the_backend_being_read(void **state)
{
    tw_wire_factory_t chargen;
    tw_wire_chargen_factory_init(&chargen);
    rig_t g;
    rig_start(&g, &chargen.base);
    g.sockbuf = 16384;
    peer_t client;
    peer_init(&client, true);
    client.pause_at_made = true;
    client.sockbuf = 16384;
    rig_connect(&g, &client);

    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    for (;;) {
        if (g.in) {
            assert_true(tw_transport_queued(g.in) <= BOUND);
            assert_int_equal(tw_transport_queued(g.out), 0);
            if (tw_transport_queued(g.in) > 65536 &&
                !tw_reactor_is_reading(g.r, tw_transport_fileno(g.out)))
                break;
        }
        if (tw_time_now() > give_up)
            fail_msg("no stall");
        assert_true(tw_reactor_iterate(g.r, TW_MSEC(50)) >= 0);
    }
    for (int i = 0; i < 20; i++) {
        assert_true(tw_reactor_iterate(g.r, TW_MSEC(5)) >= 0);
        size_t q = tw_transport_queued(g.in);
        assert_true(q <= BOUND);
        if (q > 65536)
            assert_false(tw_reactor_is_reading(g.r, tw_transport_fileno(g.out)));
        assert_int_equal(tw_transport_queued(g.out), 0);
    }
    /* The client goes away with a reset: the service's connection follows. */
    tw_transport_abort_connection(client.base.transport);
    tw_test_run_until(g.r, &client.lost, 1);
    rig_stop(&g); /* waits for the forwarder's pair and the chargen connection to end */
}

static void a_client_closing_closes_the_backend_connection(void **state)
{
    peer_t backend;
    peer_init(&backend, true); /* keeps a half-open connection, loses on EOF */
    one_factory_t bf = { .base = { .ops = &one_ops }, .p = &backend };
    rig_t g;
    rig_start(&g, &bf.base);
    peer_t client;
    peer_init(&client, true);
    client.greeting = "ping";
    rig_connect(&g, &client);
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (backend.received < 4 && tw_time_now() < give_up)
        tw_reactor_iterate(g.r, TW_MSEC(50));
    assert_string_equal(backend.head, "ping");
    /* The client closes: the backend sees EOF then loses (lose_on_eof). */
    tw_transport_lose_connection(client.base.transport);
    tw_test_run_until(g.r, &backend.lost, 1);
    assert_int_equal(backend.eofs, 1);
    assert_int_equal(backend.lost_code, 0);
    tw_test_run_until(g.r, &client.lost, 1);
    rig_stop(&g);
}

static void a_backend_closing_closes_the_client_connection(void **state)
{
    tw_wire_factory_t qotd;
    assert_int_equal(tw_wire_qotd_factory_init(&qotd, "hello\r\n"), 0);
    rig_t g;
    rig_start(&g, &qotd.base);
    peer_t client;
    peer_init(&client, true);
    rig_connect(&g, &client);
    tw_test_run_until(g.r, &client.lost, 1);
    assert_string_equal(client.head, "hello\r\n");
    assert_int_equal(client.eofs, 1);
    assert_int_equal(client.lost_code, 0);
    rig_stop(&g);

    /* A backend that half-closes first: answers still flow the other way. */
    peer_t backend;
    peer_init(&backend, true);
    backend.lose_on_eof = true;
    backend.greeting = "bye";
    one_factory_t bf = { .base = { .ops = &one_ops }, .p = &backend };
    rig_start(&g, &bf.base);
    peer_init(&client, true);
    client.lose_on_eof = false; /* reads EOF, keeps sending */
    rig_connect(&g, &client);
    tw_test_run_until(g.r, &g.joined, 1);
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (client.received < 3 && tw_time_now() < give_up)
        tw_reactor_iterate(g.r, TW_MSEC(50));
    tw_transport_lose_write_connection(backend.base.transport);
    tw_test_run_until(g.r, &client.eofs, 1);
    assert_int_equal(client.lost, 0);
    tw_transport_write(client.base.transport, "late answer", 11);
    tw_transport_lose_write_connection(client.base.transport);
    tw_test_run_until(g.r, &client.lost, 1);
    tw_test_run_until(g.r, &backend.lost, 1);
    assert_string_equal(backend.head, "late answer");
    assert_string_equal(client.head, "bye");
    assert_int_equal(client.lost_code, 0);
    assert_int_equal(backend.lost_code, 0);
    rig_stop(&g);
}

static void a_failed_connect_closes_the_client(void **state)
{
    rig_t g;
    rig_start(&g, NULL);
    peer_t client;
    peer_init(&client, true);
    client.greeting = "anyone?";
    rig_connect(&g, &client);
    tw_test_run_until(g.r, &client.lost, 1);
    assert_int_equal(client.received, 0);
    assert_int_equal(g.fwd.failures, 1);
    assert_int_equal(g.joined, 0);
    rig_stop(&g);
}

static void the_incoming_side_is_not_read_until_the_outgoing_one_is_made(void **state)
{
    tw_wire_factory_t echo;
    tw_wire_echo_factory_init(&echo);
    rig_t g;
    rig_start(&g, &echo.base);
    tw_protocol_t *p = g.fwd.base.ops->build_protocol(&g.fwd.base, NULL, 0);
    assert_non_null(p);
    tw_string_transport_t *t = tw_string_transport_new(g.r, p);
    assert_true(t->reading_paused);
    assert_int_equal(tw_string_transport_feed_str(t, "early"), -EAGAIN);
    tw_test_run_until(g.r, &g.joined, 1);
    assert_false(t->reading_paused);
    assert_ptr_equal(g.in, &t->base);
    assert_int_equal(t->register_calls, 1); /* the outgoing side's reading, as producer */
    assert_int_equal(tw_string_transport_feed_str(t, "early"), 0);
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_string_transport_len(t) < 5 && tw_time_now() < give_up)
        tw_reactor_iterate(g.r, TW_MSEC(50));
    assert_string_equal(tw_string_transport_value(t, NULL), "early");

    /* the incoming side reads slowly: the outgoing side stops being read */
    tw_string_transport_set_peer_reading(t, false);
    static char big[200000];
    memset(big, 'b', sizeof big);
    assert_int_equal(tw_string_transport_feed(t, big, sizeof big), 0);
    give_up = tw_time_now() + TW_SEC(30);
    while (!t->producer_paused && tw_time_now() < give_up)
        tw_reactor_iterate(g.r, TW_MSEC(50));
    assert_true(t->producer_paused);
    assert_false(tw_reactor_is_reading(g.r, tw_transport_fileno(g.out)));
    tw_string_transport_drain(t, SIZE_MAX);
    assert_false(t->producer_paused);
    assert_true(tw_reactor_is_reading(g.r, tw_transport_fileno(g.out)));

    /* it goes away: the outgoing connection (and the echo's) follow */
    tw_string_transport_disconnect(t, NULL);
    rig_drain(&g);
    tw_string_transport_free(t);
    rig_stop(&g);
}

/* Policies wrap the forwarder like any factory: a limit and a timeout around
 * it, with real sockets, producers and 4 MiB through the wrappers. */
static void a_forwarder_behind_policies(void **state)
{
    tw_wire_factory_t echo;
    tw_wire_echo_factory_init(&echo);
    rig_t g;
    rig_start(&g, &echo.base);
    tw_timeout_factory_t tf;
    assert_int_equal(tw_timeout_factory_init(&tf, &g.fwd.base, g.r, TW_SEC(60)), 0);
    tw_limit_factory_t lf;
    tw_limit_opts_t o = { .max_total = 1, .message = "busy\n" };
    assert_int_equal(tw_limit_factory_init(&lf, &tf.base.base, &o), 0);
    tw_listener_close(g.fwd_l);
    listen_local(g.r, &lf.base.base, &g.fwd_l);

    peer_t client;
    peer_init(&client, true);
    client.produce = true;
    client.to_send = 4 * MIB;
    rig_connect(&g, &client);
    tw_test_run_until(g.r, &g.joined, 1);

    peer_t second;
    peer_init(&second, true);
    tw_client_factory_t cf2;
    tw_client_hooks_t h = { .build = peer_build, .arg = &second };
    assert_int_equal(tw_client_factory_init(&cf2, &h), 0);
    tw_connector_t *c2;
    tw_tcp_connect_opts_t co = { .host = "127.0.0.1", .port = tw_listener_port(g.fwd_l) };
    assert_int_equal(tw_tcp_connect(g.r, &cf2.base, &co, &c2), 0);
    tw_test_run_until(g.r, &second.lost, 1);
    assert_string_equal(second.head, "busy\n");
    assert_int_equal(lf.refused, 1);

    tw_test_run_until(g.r, &client.lost, 1);
    assert_int_equal(client.received, 4 * MIB);
    assert_true(client.in_hash == client.out_hash);
    assert_int_equal(client.lost_code, 0);
    assert_int_equal(g.joined, 1);
    rig_drain(&g);
    assert_int_equal(lf.count, 0);
    assert_int_equal(tw_factory_connection_count(&lf.base.base), 0);
    assert_int_equal(tw_factory_connection_count(&tf.base.base), 0);
    tw_connector_free(c2);
    rig_stop(&g);
}

static void init_checks_the_endpoint(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_proxy_server_factory_t f;
    assert_int_equal(tw_proxy_server_factory_init(&f, r, "tcp:nohost"), -EINVAL);
    assert_int_equal(tw_proxy_server_factory_init(&f, r, "bogus:1"), -EINVAL);
    assert_int_equal(tw_proxy_server_factory_init(&f, NULL, "tcp:127.0.0.1:80"), -EINVAL);
    char longer[TW_ENDPOINT_FORMAT_MAX + 10];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(tw_proxy_server_factory_init(&f, r, longer), -ENAMETOOLONG);
    assert_int_equal(tw_proxy_server_factory_init(&f, r, "unix:/tmp/x.sock"), 0);
    assert_string_equal(f.endpoint, "unix:/tmp/x.sock");
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_checks_the_endpoint),
        cmocka_unit_test(forwards_16_mib_both_ways_intact),
        cmocka_unit_test(a_backend_that_stops_reading_stops_the_client_being_read),
        cmocka_unit_test(a_client_that_stops_reading_stops_the_backend_being_read),
        cmocka_unit_test(a_client_closing_closes_the_backend_connection),
        cmocka_unit_test(a_backend_closing_closes_the_client_connection),
        cmocka_unit_test(a_failed_connect_closes_the_client),
        cmocka_unit_test(the_incoming_side_is_not_read_until_the_outgoing_one_is_made),
        cmocka_unit_test(a_forwarder_behind_policies),
    };
    TW_TEST_MAIN(tests);
}
