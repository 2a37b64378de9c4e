/* test_defer_integration.c -- Deferreds where a user expects them: an
 * endpoint's connect fires with the connected protocol (after its
 * connection_made), fails with the connection's failure, and stops when
 * cancelled; listen fires with the listener or the listen failure; "before
 * shutdown" triggers that return a Deferred hold shutdown back while the loop
 * keeps working, up to a limit after which they are cancelled.
 *
 * Every test runs with a hook that fails it on an unhandled failure and a log
 * sink that counts warnings; ASan checks that nothing leaks. */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a trace, the log, the unhandled hook --------------------------------- */

static char trace[1024];

static void trace_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace_add(const char *fmt, ...)
{
    size_t len = strlen(trace);
    if (len)
        trace[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace + len, sizeof trace - len, fmt, ap);
    va_end(ap);
}

static int warnings, unhandled;
static char last_warning[512];

static void sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    (void)arg;
    if (level >= TW_LOG_WARN) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s: %s", domain, msg);
    }
}

static void on_unhandled(const tw_failure_t *f, void *arg)
{
    (void)f;
    (void)arg;
    unhandled++;
}

static int setup(void **state)
{
    (void)state;
    trace[0] = '\0';
    warnings = unhandled = 0;
    last_warning[0] = '\0';
    tw_log_set_sink(sink, NULL);
    tw_deferred_set_unhandled_hook(on_unhandled, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tw_log_set_sink(NULL, NULL);
    tw_deferred_set_unhandled_hook(NULL, NULL);
    assert_int_equal(unhandled, 0);
    return 0;
}

/* ---- a factory and its protocols, counted -------------------------------- */

typedef struct tfac {
    tw_factory_t base;
    const char *name; /* for the trace; NULL: not traced */
    int builds, starts, stops, made, lost, destroyed;
    bool refuse;
    const tw_protocol_ops_t *ops; /* for its protocols; NULL: tp_ops */
    struct tproto *last;
} tfac_t;

typedef struct tproto {
    tw_protocol_t base;
    tfac_t *f;
} tproto_t;

static void tp_made(tw_protocol_t *p, tw_transport_t *t)
{
    tproto_t *tp = (tproto_t *)p;
    assert_ptr_equal(p->transport, t);
    assert_ptr_equal(p->factory, &tp->f->base); /* the user's, not a wrapper */
    tp->f->made++;
    if (tp->f->name)
        trace_add("%s:made", tp->f->name);
}

static void tp_data(tw_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data, (void)len;
}

static void tp_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    tproto_t *tp = (tproto_t *)p;
    tp->f->lost++;
}

static void tp_destroy(tw_protocol_t *p)
{
    tproto_t *tp = (tproto_t *)p;
    tp->f->destroyed++;
    if (tp->f->last == tp)
        tp->f->last = NULL;
    free(tp);
}

static const tw_protocol_ops_t tp_ops = {
    .connection_made = tp_made,
    .data_received = tp_data,
    .connection_lost = tp_lost,
    .destroy = tp_destroy,
};

static tw_protocol_t *tf_build(tw_factory_t *f, const struct sockaddr *a, socklen_t n)
{
    tfac_t *tf = (tfac_t *)f;
    tf->builds++;
    if (tf->refuse)
        return NULL;
    tproto_t *tp = calloc(1, sizeof *tp);
    assert_non_null(tp);
    tp->base.ops = tf->ops ? tf->ops : &tp_ops;
    tp->f = tf;
    tf->last = tp;
    return &tp->base;
}

static void tf_start(tw_factory_t *f)
{
    ((tfac_t *)f)->starts++;
}

static void tf_stop(tw_factory_t *f)
{
    ((tfac_t *)f)->stops++;
}

/* The client hooks must not be called: the Deferred reports instead. */
static void tf_started(tw_factory_t *f, tw_connector_t *c)
{
    fail_msg("started_connecting called");
}

static void tf_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    fail_msg("connection_failed called");
}

static void tf_conn_lost(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    fail_msg("connection_lost called on the factory");
}

static const tw_factory_ops_t tf_ops = {
    .build_protocol = tf_build,
    .start = tf_start,
    .stop = tf_stop,
    .started_connecting = tf_started,
    .connection_failed = tf_failed,
    .connection_lost = tf_conn_lost,
};

static void tf_init(tfac_t *tf, const char *name)
{
    memset(tf, 0, sizeof *tf);
    tf->base.ops = &tf_ops;
    tf->name = name;
}

/* A listener on 127.0.0.1, port chosen by the kernel. */
static tw_listener_t *listen_local(tw_reactor_t *r, tfac_t *srv)
{
    tw_listener_t *l = NULL;
    char err[256];
    assert_int_equal(tw_endpoint_listen(r, "tcp:0:interface=127.0.0.1", &srv->base, &l, err,
                                        sizeof err), 0);
    return l;
}

static void client_string(char *buf, size_t len, int port)
{
    snprintf(buf, len, "tcp:127.0.0.1:%d", port);
}

/* A port with a socket bound to it that does not listen: SYNs get a reset. */
static int closed_port(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in in = { .sin_family = AF_INET };
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    socklen_t len = sizeof in;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    *fd_out = fd;
    return ntohs(in.sin_port);
}

/* What a connect Deferred delivered. */
typedef struct got {
    int fired;
    tw_protocol_t *p;
    const char *domain;
    int code;
    char message[256];
    tfac_t *cli; /* to check the state when it fires */
} got_t;

static tw_outcome_t got_cb(tw_outcome_t in, void *a1, void *a2)
{
    got_t *g = a1;
    g->fired++;
    assert_int_equal(in.kind, TW_OUTCOME_OK);
    assert_null(in.free); /* borrowed: the transport owns it */
    g->p = in.ptr;
    trace_add("cb");
    if (g->cli) { /* connection_made has run; the connection is the factory's */
        assert_int_equal(g->cli->made, 1);
        assert_ptr_equal(g->p, &g->cli->last->base);
        assert_non_null(g->p->transport);
        assert_ptr_equal(g->p->factory, &g->cli->base);
        assert_int_equal(tw_factory_connection_count(&g->cli->base), 1);
    }
    return TW_OK(NULL, NULL);
}

static tw_outcome_t got_eb(tw_outcome_t in, void *a1, void *a2)
{
    got_t *g = a1;
    g->fired++;
    assert_int_equal(in.kind, TW_OUTCOME_FAIL);
    g->domain = in.failure->domain; /* static strings */
    g->code = in.failure->code;
    snprintf(g->message, sizeof g->message, "%s", in.failure->message);
    trace_add("eb");
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void watch(tw_deferred_t *d, got_t *g)
{
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callbacks(d, got_cb, got_eb, g, NULL, NULL), 0);
}

/* ---- connect ----------------------------------------------------------------- */

static void connect_fires_with_the_protocol_after_connection_made(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t srv, cli;
    tf_init(&srv, NULL);
    tf_init(&cli, "cli");
    tw_listener_t *l = listen_local(r, &srv);
    char s[64], err[256] = "junk";
    client_string(s, sizeof s, tw_listener_port(l));

    got_t g = { .cli = &cli };
    tw_deferred_t *d = tw_endpoint_connect_deferred(r, s, &cli.base, err, sizeof err);
    watch(d, &g);
    assert_string_equal(err, "");
    assert_int_equal(g.fired, 0); /* never inside the call */
    assert_int_equal(cli.starts, 1);
    tw_deferred_unref(d); /* the operation keeps it alive until it fires */

    tw_test_run_until(r, &g.fired, 1);
    assert_string_equal(trace, "cli:made cb");
    assert_int_equal(cli.builds, 1);
    tw_test_run_until(r, &srv.made, 1);

    /* The connection ends: the internal connector goes, and with it the
     * factory's last user. */
    tw_transport_lose_connection(g.p->transport);
    tw_test_run_until(r, &cli.destroyed, 1);
    tw_test_run_until(r, &srv.destroyed, 1);
    assert_int_equal(cli.lost, 1);
    assert_int_equal(cli.stops, 1);
    assert_int_equal(tw_factory_connection_count(&cli.base), 0);
    tw_listener_close(l);
    assert_int_equal(srv.stops, 1);
    tw_reactor_free(r);
}

static void connect_to_a_closed_port_fails_with_econnrefused(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    int holder;
    int port = closed_port(&holder);
    tfac_t cli;
    tf_init(&cli, "cli");
    char s[64];
    client_string(s, sizeof s, port);

    got_t g = { 0 };
    tw_deferred_t *d = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(d, &g);
    assert_int_equal(g.fired, 0);
    tw_test_run_until(r, &g.fired, 1);
    assert_string_equal(trace, "eb");
    assert_string_equal(g.domain, "tcp");
    assert_int_equal(g.code, -ECONNREFUSED);
    assert_int_equal(cli.builds, 0);
    assert_int_equal(cli.starts, 1);
    assert_int_equal(cli.stops, 1); /* the connector is gone */
    tw_deferred_unref(d);

    /* A factory that builds no protocol: refused too. */
    tfac_t srv;
    tf_init(&srv, NULL);
    tw_listener_t *l = listen_local(r, &srv);
    client_string(s, sizeof s, tw_listener_port(l));
    cli.refuse = true;
    got_t g2 = { 0 };
    d = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(d, &g2);
    tw_deferred_unref(d);
    tw_test_run_until(r, &g2.fired, 1);
    assert_string_equal(g2.domain, "tcp");
    assert_int_equal(g2.code, -ECONNREFUSED);
    assert_int_equal(cli.builds, 1);
    assert_int_equal(cli.stops, 2);
    tw_listener_close(l); /* the server may have accepted it: it ends */
    tw_test_run_until(r, &srv.destroyed, srv.made);
    close(holder);
    tw_reactor_free(r);
}

static void connect_with_a_bad_string_fails_at_once(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t cli;
    tf_init(&cli, "cli");
    char err[256];
    got_t g = { 0 };
    tw_deferred_t *d = tw_endpoint_connect_deferred(r, "tcp:127.0.0.1", &cli.base, err,
                                                    sizeof err);
    watch(d, &g);
    assert_int_equal(g.fired, 1);
    assert_string_equal(g.domain, "endpoint");
    assert_int_equal(g.code, -EINVAL);
    assert_string_equal(g.message, err);
    assert_non_null(strstr(err, "missing port"));
    assert_int_equal(cli.starts, 0);
    tw_deferred_unref(d);

    /* Nobody looks: reported as unhandled, nothing leaks. */
    d = tw_endpoint_connect_deferred(r, "bogus:1", &cli.base, NULL, 0);
    assert_non_null(d);
    tw_deferred_unref(d);
    assert_int_equal(unhandled, 1);
    unhandled = 0;
    tw_reactor_free(r);
}

static void cancel_stops_the_attempt(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t srv, cli;
    tf_init(&srv, NULL);
    tf_init(&cli, "cli");
    tw_listener_t *l = listen_local(r, &srv);
    char s[64];
    client_string(s, sizeof s, tw_listener_port(l));

    /* Cancelled while connecting: the cancelled failure, at once; no
     * protocol is built, the connector is gone. */
    got_t g = { 0 };
    tw_deferred_t *d = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(d, &g);
    tw_deferred_cancel(d);
    assert_int_equal(g.fired, 1);
    assert_string_equal(g.domain, "deferred");
    assert_int_equal(g.code, -ECANCELED);
    assert_int_equal(cli.stops, 1);
    tw_deferred_unref(d);
    for (int i = 0; i < 5; i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(5)) >= 0);
    assert_int_equal(cli.builds, 0);
    assert_int_equal(g.fired, 1);
    assert_string_equal(trace, "eb");
    /* The server may have accepted the half-made connection: it ends. */
    tw_listener_close(l);
    tw_test_run_until(r, &srv.destroyed, srv.made);

    /* Cancelled after it fired: nothing happens, the connection lives on. */
    tfac_t srv2;
    tf_init(&srv2, NULL);
    l = listen_local(r, &srv2);
    client_string(s, sizeof s, tw_listener_port(l));
    got_t g2 = { 0 };
    d = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(d, &g2);
    tw_test_run_until(r, &g2.fired, 1);
    assert_int_equal(g2.code, 0);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    tw_test_run_until(r, &srv2.made, 1);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(cli.made, 1);
    assert_int_equal(cli.lost, 0);
    assert_int_equal(srv2.lost, 0);
    tw_transport_abort_connection(g2.p->transport);
    tw_test_run_until(r, &cli.destroyed, 1);
    tw_test_run_until(r, &srv2.destroyed, 1);
    assert_int_equal(cli.stops, 2);
    assert_int_equal(cli.starts, 2);
    tw_listener_close(l);
    tw_reactor_free(r);
}

/* Cancelled from the protocol's connection_made: the connection is aborted
 * and the Deferred fails with the cancelled failure. */
static tw_deferred_t *cancel_me;

static void made_then_cancel(tw_protocol_t *p, tw_transport_t *t)
{
    tp_made(p, t);
    tw_deferred_cancel(cancel_me);
}

static void cancel_from_connection_made_aborts(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t srv, cli;
    tf_init(&srv, NULL);
    tf_init(&cli, "cli");
    static tw_protocol_ops_t ops;
    ops = tp_ops;
    ops.connection_made = made_then_cancel;
    cli.ops = &ops;
    tw_listener_t *l = listen_local(r, &srv);
    char s[64];
    client_string(s, sizeof s, tw_listener_port(l));

    got_t g = { 0 };
    cancel_me = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(cancel_me, &g);
    tw_test_run_until(r, &g.fired, 1);
    assert_string_equal(trace, "cli:made eb");
    assert_string_equal(g.domain, "deferred");
    assert_int_equal(g.code, -ECANCELED);
    tw_deferred_unref(cancel_me);
    cancel_me = NULL;
    tw_test_run_until(r, &cli.destroyed, 1);
    assert_int_equal(cli.lost, 1);
    assert_int_equal(cli.stops, 1);
    tw_listener_close(l); /* the server may or may not have accepted it */
    tw_test_run_until(r, &srv.destroyed, srv.made);
    tw_reactor_free(r);
}

/* ---- listen ------------------------------------------------------------------ */

static tw_outcome_t take_listener(tw_outcome_t in, void *a1, void *a2)
{
    tw_listener_t **out = a1;
    assert_int_equal(in.kind, TW_OUTCOME_OK);
    assert_non_null(in.ptr);
    assert_non_null(in.free); /* closes it if nobody takes it */
    *out = in.ptr;
    return TW_OK(NULL, NULL); /* ours now */
}

static void listen_fires_with_a_working_listener(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t srv;
    tf_init(&srv, NULL);
    char err[256] = "junk";
    tw_listener_t *l = NULL;
    tw_deferred_t *d = tw_endpoint_listen_deferred(r, "tcp:0:interface=127.0.0.1", &srv.base,
                                                   err, sizeof err);
    assert_non_null(d);
    assert_string_equal(err, "");
    assert_true(tw_deferred_called(d)); /* listening is synchronous */
    assert_int_equal(tw_deferred_add_callback(d, take_listener, &l, NULL), 0);
    tw_deferred_unref(d);
    assert_non_null(l);
    int port = tw_listener_port(l);
    assert_true(port > 0);
    assert_int_equal(srv.starts, 1);

    /* The port works: a client connects and the factory builds. */
    tfac_t cli;
    tf_init(&cli, "cli");
    char s[64];
    client_string(s, sizeof s, port);
    got_t g = { 0 };
    d = tw_endpoint_connect_deferred(r, s, &cli.base, NULL, 0);
    watch(d, &g);
    tw_deferred_unref(d);
    tw_test_run_until(r, &g.fired, 1);
    tw_test_run_until(r, &srv.made, 1);
    assert_int_equal(srv.builds, 1);
    tw_transport_lose_connection(g.p->transport);
    tw_test_run_until(r, &srv.destroyed, 1);
    tw_test_run_until(r, &cli.destroyed, 1);
    tw_listener_close(l);
    assert_int_equal(srv.stops, 1);

    /* A result nobody takes: the listener is closed with the Deferred, and
     * the port is free again. */
    char again[64];
    snprintf(again, sizeof again, "tcp:%d:interface=127.0.0.1", port);
    d = tw_endpoint_listen_deferred(r, again, &srv.base, NULL, 0);
    assert_non_null(d);
    assert_int_equal(srv.starts, 2);
    tw_deferred_unref(d);
    assert_int_equal(srv.stops, 2);
    d = tw_endpoint_listen_deferred(r, again, &srv.base, NULL, 0);
    l = NULL;
    assert_int_equal(tw_deferred_add_callback(d, take_listener, &l, NULL), 0);
    tw_deferred_unref(d);
    assert_non_null(l);
    tw_listener_close(l);
    tw_reactor_free(r);
}

static void listen_on_a_busy_port_fails_with_eaddrinuse(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tfac_t srv;
    tf_init(&srv, NULL);
    tw_listener_t *l = listen_local(r, &srv);
    char s[64], err[256];
    snprintf(s, sizeof s, "tcp:%d:interface=127.0.0.1", tw_listener_port(l));
    got_t g = { 0 };
    tw_deferred_t *d = tw_endpoint_listen_deferred(r, s, &srv.base, err, sizeof err);
    watch(d, &g);
    assert_int_equal(g.fired, 1);
    assert_string_equal(g.domain, "tcp");
    assert_int_equal(g.code, -EADDRINUSE);
    assert_string_equal(g.message, err);
    assert_non_null(strstr(err, "listen on tcp:"));
    tw_deferred_unref(d);

    /* A string that does not parse. */
    got_t g2 = { 0 };
    d = tw_endpoint_listen_deferred(r, "tcp:99999", &srv.base, NULL, 0);
    watch(d, &g2);
    assert_string_equal(g2.domain, "endpoint");
    assert_int_equal(g2.code, -EINVAL);
    tw_deferred_unref(d);
    assert_int_equal(srv.starts, 1);
    tw_listener_close(l);
    tw_reactor_free(r);
}

/* ---- shutdown Deferreds -------------------------------------------------------- */

/* A drain that needs the loop: three round trips of I/O on a socket pair,
 * then a delayed call, then the Deferred fires. */
typedef struct drain {
    tw_reactor_t *r;
    int fds[2];
    int reads;
    tw_deferred_t *d; /* a reference, until fired */
    int cancels;
} drain_t;

static void drain_timer(tw_timer_t *t, void *arg)
{
    drain_t *dr = arg;
    trace_add("timer");
    tw_deferred_t *d = dr->d;
    dr->d = NULL;
    trace_add("fire");
    tw_deferred_callback(d, NULL, NULL);
    tw_deferred_unref(d);
}

static void drain_readable(tw_reactor_t *r, int fd, void *arg)
{
    drain_t *dr = arg;
    char c;
    assert_int_equal(read(fd, &c, 1), 1);
    dr->reads++;
    trace_add("io%d", dr->reads);
    if (dr->reads < 3) {
        tw_test_poke(dr->fds[1]);
    } else {
        tw_reactor_remove_reader(r, fd);
        assert_non_null(tw_reactor_call_later(r, TW_MSEC(1), drain_timer, dr));
    }
}

static tw_deferred_t *drain_start(tw_reactor_t *r, void *arg)
{
    drain_t *dr = arg;
    trace_add("before-d");
    dr->d = tw_deferred_new(NULL, NULL);
    assert_non_null(dr->d);
    assert_int_equal(tw_reactor_add_reader(r, dr->fds[0], drain_readable, dr), 0);
    tw_test_poke(dr->fds[1]);
    return tw_deferred_ref(dr->d);
}

static void trig_trace(tw_reactor_t *r, void *arg)
{
    trace_add("%s", (const char *)arg);
}

static void stop_now(tw_reactor_t *r, void *arg)
{
    trace_add("stop");
    assert_int_equal(tw_reactor_stop(r), 0);
}

static void shutdown_waits_for_a_deferred(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    drain_t dr = { .r = r };
    tw_test_socketpair(dr.fds);
    assert_true(tw_reactor_add_trigger(r, TW_BEFORE, TW_SHUTDOWN, trig_trace, "before") > 0);
    int id = tw_reactor_add_shutdown_deferred(r, drain_start, &dr);
    assert_true(id > 0);
    assert_true(tw_reactor_add_trigger(r, TW_DURING, TW_SHUTDOWN, trig_trace, "during") > 0);
    assert_true(tw_reactor_add_trigger(r, TW_AFTER, TW_SHUTDOWN, trig_trace, "after") > 0);
    assert_int_equal(tw_reactor_add_shutdown_deferred(r, NULL, NULL), -EINVAL);
    assert_int_equal(tw_reactor_call_when_running(r, stop_now, NULL), 0);

    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    trace_add("returned");
    assert_string_equal(trace, "stop before before-d io1 io2 io3 timer fire during after "
                               "returned");
    assert_int_equal(warnings, 0);
    assert_false(tw_reactor_running(r));

    /* Every shutdown waits again; a removed one does not run. */
    trace[0] = '\0';
    dr.reads = 0;
    assert_int_equal(tw_reactor_call_when_running(r, stop_now, NULL), 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    assert_string_equal(trace, "stop before before-d io1 io2 io3 timer fire during after");
    assert_int_equal(tw_reactor_remove_trigger(r, id), 0);
    trace[0] = '\0';
    assert_int_equal(tw_reactor_call_when_running(r, stop_now, NULL), 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    assert_string_equal(trace, "stop before during after");
    close(dr.fds[0]);
    close(dr.fds[1]);
    tw_reactor_free(r);
}

static void never_cancel(tw_deferred_t *d, void *arg)
{
    drain_t *dr = arg;
    dr->cancels++;
    trace_add("cancelled");
}

static tw_deferred_t *never_fires(tw_reactor_t *r, void *arg)
{
    trace_add("before-never");
    return tw_deferred_new(never_cancel, arg); /* the only reference: the reactor's */
}

static tw_deferred_t *fails_at_once(tw_reactor_t *r, void *arg)
{
    trace_add("before-fail");
    return tw_deferred_fail(tw_failure_new("test", -EIO, "drain failed"));
}

static tw_deferred_t *nothing_to_wait_for(tw_reactor_t *r, void *arg)
{
    trace_add("before-null");
    return NULL;
}

/* A stop from a timer, so that the stop itself is not late. */
static void stop_timer(tw_timer_t *t, void *arg)
{
    stop_now(arg, NULL);
}

static void a_deferred_that_never_fires_is_cancelled_at_the_limit(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    drain_t dr = { .r = r };
    tw_reactor_set_shutdown_timeout(r, TW_MSEC(20));
    assert_true(tw_reactor_add_shutdown_deferred(r, fails_at_once, NULL) > 0);
    assert_true(tw_reactor_add_shutdown_deferred(r, never_fires, &dr) > 0);
    assert_true(tw_reactor_add_shutdown_deferred(r, nothing_to_wait_for, NULL) > 0);
    assert_true(tw_reactor_add_trigger(r, TW_DURING, TW_SHUTDOWN, trig_trace, "during") > 0);
    assert_true(tw_reactor_add_trigger(r, TW_AFTER, TW_SHUTDOWN, trig_trace, "after") > 0);
    assert_non_null(tw_reactor_call_later(r, 0, stop_timer, r));

    tw_time_t t0 = tw_time_now();
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    tw_time_t took = tw_time_now() - t0;
    assert_string_equal(trace, "stop before-fail before-never before-null cancelled during "
                               "after");
    assert_int_equal(dr.cancels, 1);
    assert_true(took >= TW_MSEC(20));
    assert_true(took < TW_SEC(10));
    /* Two warnings: the failure, and the limit (not the cancelled failure). */
    assert_int_equal(warnings, 2);
    assert_non_null(strstr(last_warning, "still pending after 0.02 s"));
    assert_int_equal(tw_reactor_timer_count(r), 0); /* the limit's timer is gone */

    /* No limit at all: cancelled at once. */
    tw_reactor_set_shutdown_timeout(r, 0);
    trace[0] = '\0';
    warnings = 0;
    assert_non_null(tw_reactor_call_later(r, 0, stop_timer, r));
    t0 = tw_time_now();
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    assert_true(tw_time_now() - t0 < TW_SEC(5));
    assert_string_equal(trace, "stop before-fail before-never before-null cancelled during "
                               "after");
    assert_int_equal(dr.cancels, 2);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(connect_fires_with_the_protocol_after_connection_made,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(connect_to_a_closed_port_fails_with_econnrefused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(connect_with_a_bad_string_fails_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cancel_stops_the_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_from_connection_made_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(listen_fires_with_a_working_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(listen_on_a_busy_port_fails_with_eaddrinuse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(shutdown_waits_for_a_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(a_deferred_that_never_fires_is_cancelled_at_the_limit,
                                        setup, teardown),
    };
    TW_TEST_MAIN(tests);
}
