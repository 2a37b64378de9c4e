/* test_policies.c -- the wrapping layer and the policies (tw_policies.h)
 * over the string transport, with a fake clock for everything timed: the
 * clock, never the speed of the machine, decides each outcome. */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "tw_policies.h"
#include "tw_string_transport.h"
#include "tw_tcp.h"
#include "tw_testing.h"

/* ---- an inner protocol that records what it gets ------------------------- */

static struct {
    char log[8192];
    int made, lost, destroyed, lost_code;
    char lost_msg[128];
} ev;

static void ev_reset(void)
{
    memset(&ev, 0, sizeof ev);
}

static void ev_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ev_add(const char *fmt, ...)
{
    size_t n = strlen(ev.log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.log + n, sizeof ev.log - n, fmt, ap);
    va_end(ap);
}

typedef struct rec {
    tw_protocol_t base;
    tw_producer_t prod;
    int pauses, resumes, stops;
    bool upper;        /* answer each chunk in upper case */
    bool quiet;        /* do not log data (large transfers) */
} rec_t;

typedef struct rec_factory {
    tw_factory_t base;
    int builds, starts, stops, started, failed;
    bool refuse, upper, with_eof;
    rec_t *last;
} rec_factory_t;

static void rec_made(tw_protocol_t *p, tw_transport_t *t)
{
    assert_ptr_equal(p->transport, t);
    ev.made++;
    ev_add("made;");
}

static void rec_data(tw_protocol_t *p, const void *data, size_t len)
{
    rec_t *r = (rec_t *)p;
    assert_int_equal(ev.lost, 0);
    if (!r->quiet)
        ev_add("data:%.*s;", (int)len, (const char *)data);
    if (len == 4 && memcmp(data, "quit", 4) == 0) {
        tw_transport_lose_connection(p->transport);
    } else if (len == 5 && memcmp(data, "abort", 5) == 0) {
        tw_transport_abort_connection(p->transport);
    } else if (len == 4 && memcmp(data, "half", 4) == 0) {
        assert_int_equal(tw_transport_lose_write_connection(p->transport), 0);
    } else if (len == 6 && memcmp(data, "reason", 6) == 0) {
        tw_transport_lose_connection_with(p->transport,
                                          tw_failure_new("test", -EPROTO, "bad input"));
    } else if (r->upper) {
        char buf[256];
        size_t n = len < sizeof buf ? len : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(((const char *)data)[i] >= 'a' && ((const char *)data)[i] <= 'z'
                                ? ((const char *)data)[i] - 32 : ((const char *)data)[i]);
        tw_transport_write(p->transport, buf, n);
    }
}

static void rec_eof(tw_protocol_t *p)
{
    ev_add("eof;");
}

static void rec_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    ev.lost++;
    ev.lost_code = reason ? reason->code : 0;
    snprintf(ev.lost_msg, sizeof ev.lost_msg, "%s", reason ? reason->message : "");
    ev_add("lost:%d;", ev.lost_code);
}

static void rec_destroy(tw_protocol_t *p)
{
    ev.destroyed++;
    ev_add("destroy;");
    rec_factory_t *f = (rec_factory_t *)p->factory;
    if (f && f->last == (rec_t *)p)
        f->last = NULL;
    free(p);
}

static const tw_protocol_ops_t rec_ops = {
    .connection_made = rec_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
    .destroy = rec_destroy,
};

static const tw_protocol_ops_t rec_eof_ops = {
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
    .destroy = rec_destroy,
};

static void rec_pause(tw_producer_t *pp)
{
    TW_CONTAINER_OF(pp, rec_t, prod)->pauses++;
}

static void rec_resume(tw_producer_t *pp)
{
    TW_CONTAINER_OF(pp, rec_t, prod)->resumes++;
}

static void rec_stop(tw_producer_t *pp)
{
    TW_CONTAINER_OF(pp, rec_t, prod)->stops++;
}

static const tw_producer_ops_t rec_producer_ops = { rec_pause, rec_resume, rec_stop };

static tw_protocol_t *recf_build(tw_factory_t *bf, const struct sockaddr *a, socklen_t n)
{
    rec_factory_t *f = (rec_factory_t *)bf;
    if (f->refuse)
        return NULL;
    rec_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->base.ops = f->with_eof ? &rec_eof_ops : &rec_ops;
    r->prod.ops = &rec_producer_ops;
    r->upper = f->upper;
    f->builds++;
    f->last = r;
    return &r->base;
}

static void recf_start(tw_factory_t *bf)
{
    ((rec_factory_t *)bf)->starts++;
}

static void recf_stop(tw_factory_t *bf)
{
    ((rec_factory_t *)bf)->stops++;
}

static void recf_started(tw_factory_t *bf, tw_connector_t *c)
{
    ((rec_factory_t *)bf)->started++;
}

static void recf_failed(tw_factory_t *bf, tw_connector_t *c, const tw_failure_t *reason)
{
    ((rec_factory_t *)bf)->failed++;
}

static const tw_factory_ops_t recf_ops = {
    .build_protocol = recf_build,
    .start = recf_start,
    .stop = recf_stop,
    .started_connecting = recf_started,
    .connection_failed = recf_failed,
};

static void recf_init(rec_factory_t *f)
{
    memset(f, 0, sizeof *f);
    f->base.ops = &recf_ops;
    ev_reset();
}

/* ---- addresses and connections ------------------------------------------- */

typedef struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
} addr_t;

static addr_t ip_addr(const char *ip, int port)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        a.len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a.ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        a.len = sizeof *s4;
    }
    return a;
}

static addr_t unix_addr(const char *path)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    struct sockaddr_un *su = (struct sockaddr_un *)&a.ss;
    su->sun_family = AF_UNIX;
    snprintf(su->sun_path, sizeof su->sun_path, "%s", path);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    return a;
}

/* A connection from `a` (NULL: the string transport's default peer) built by
 * f and made on a string transport; NULL when f refused it. */
static tw_string_transport_t *conn_from(tw_reactor_t *r, tw_factory_t *f, const addr_t *a)
{
    tw_protocol_t *p = f->ops->build_protocol(f, a ? (const struct sockaddr *)&a->ss : NULL,
                                              a ? a->len : 0);
    if (!p)
        return NULL;
    tw_string_transport_t *t = tw_string_transport_alloc(r, p);
    assert_non_null(t);
    if (a)
        assert_int_equal(tw_string_transport_set_peer_address(t, (const struct sockaddr *)&a->ss,
                                                              a->len), 0);
    tw_string_transport_make_connection(t);
    return t;
}

static tw_string_transport_t *conn(tw_reactor_t *r, tw_factory_t *f)
{
    return conn_from(r, f, NULL);
}

/* The inner protocol of the wrapper on t. */
static tw_protocol_t *inner_of(tw_string_transport_t *t)
{
    tw_wrapper_t *w = (tw_wrapper_t *)t->base.protocol;
    assert_non_null(w);
    return w->inner;
}

static void assert_output(tw_string_transport_t *t, const char *want)
{
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void assert_clean(tw_reactor_t *r)
{
    char what[256];
    if (tw_reactor_check_clean(r, what, sizeof what) != 0)
        fail_msg("%s", what);
}

/* ---- the wrapping layer -------------------------------------------------- */

static void wrapper_delivers_every_callback_once_in_order(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    in.with_eof = true;
    in.upper = true;
    tw_wrapping_factory_t wf;
    assert_int_equal(tw_wrapping_factory_init(&wf, &in.base, NULL, NULL), 0);

    tw_string_transport_t *t = conn(NULL, &wf.base);
    tw_protocol_t *p = inner_of(t);
    tw_wrapper_t *w = tw_wrapper_of(p->transport);
    assert_non_null(w);
    assert_ptr_equal(&w->transport, p->transport);
    assert_ptr_equal(w->real, &t->base);
    assert_ptr_equal(p->factory, &in.base);
    assert_null(tw_wrapper_of(&t->base));
    assert_int_equal(tw_factory_connection_count(&in.base), 1);
    assert_int_equal(tw_factory_connection_count(&wf.base), 1);

    assert_int_equal(tw_string_transport_feed_str(t, "abc"), 0);
    assert_int_equal(tw_string_transport_feed_bytewise(t, "de", 2), 0);
    assert_output(t, "ABCDE");
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_false(t->closing); /* the inner protocol has eof_received: it decides */
    tw_string_transport_disconnect(t, NULL);
    assert_string_equal(ev.log, "made;data:abc;data:d;data:e;eof;lost:0;destroy;");
    assert_int_equal(tw_factory_connection_count(&in.base), 0);
    assert_int_equal(tw_factory_connection_count(&wf.base), 0);
    tw_string_transport_free(t);
    assert_string_equal(ev.log, "made;data:abc;data:d;data:e;eof;lost:0;destroy;");
}

static void wrapper_passes_lose_abort_and_half_close(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, NULL, NULL);

    /* lose, with bytes queued: closes once the queue drains */
    tw_string_transport_t *t = conn(NULL, &wf.base);
    tw_protocol_t *p = inner_of(t);
    tw_string_transport_set_peer_reading(t, false);
    assert_int_equal(tw_transport_write(p->transport, "xyz", 3), 0);
    assert_int_equal(tw_transport_queued(p->transport), 3);
    assert_int_equal(tw_string_transport_feed_str(t, "quit"), 0);
    assert_true(t->disconnecting);
    assert_false(t->closing);
    assert_int_equal(tw_transport_write(p->transport, "more", 4), -EPIPE);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_true(t->closing);
    tw_string_transport_settle(t);
    assert_int_equal(ev.lost, 1);
    assert_int_equal(ev.lost_code, 0);
    assert_int_equal(ev.destroyed, 1);
    tw_string_transport_free(t);

    /* abort */
    ev_reset();
    t = conn(NULL, &wf.base);
    assert_int_equal(tw_string_transport_feed_str(t, "abort"), 0);
    assert_true(t->aborted);
    tw_string_transport_settle(t);
    assert_int_equal(ev.lost_code, -ECONNABORTED);
    assert_string_equal(ev.log, "made;data:abort;lost:-103;destroy;");
    tw_string_transport_free(t);

    /* half-close: writes refused, reading goes on, EOF ends it cleanly */
    ev_reset();
    in.with_eof = true;
    t = conn(NULL, &wf.base);
    p = inner_of(t);
    assert_int_equal(tw_string_transport_feed_str(t, "half"), 0);
    assert_true(t->write_closed);
    assert_true(t->write_shut);
    assert_int_equal(tw_transport_write(p->transport, "x", 1), -EPIPE);
    assert_int_equal(tw_string_transport_feed_str(t, "still"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_true(t->closing);
    tw_string_transport_settle(t);
    assert_string_equal(ev.log, "made;data:half;data:still;eof;lost:0;destroy;");
    tw_string_transport_free(t);

    /* lose with a reason */
    ev_reset();
    t = conn(NULL, &wf.base);
    assert_int_equal(tw_string_transport_feed_str(t, "reason"), 0);
    tw_string_transport_settle(t);
    assert_int_equal(t->close_code, -EPROTO);
    assert_int_equal(ev.lost_code, -EPROTO);
    assert_string_equal(ev.lost_msg, "bad input");
    tw_string_transport_free(t);

    /* EOF with no eof_received: the transport's default, a lose */
    ev_reset();
    in.with_eof = false;
    t = conn(NULL, &wf.base);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_true(t->closing);
    tw_string_transport_settle(t);
    assert_string_equal(ev.log, "made;lost:0;destroy;");
    tw_string_transport_free(t);

    /* the peer going away */
    ev_reset();
    t = conn(NULL, &wf.base);
    tw_failure_t *reset = tw_failure_new("tcp", -ECONNRESET, NULL);
    tw_string_transport_disconnect(t, reset);
    tw_failure_free(reset);
    assert_string_equal(ev.log, "made;lost:-104;destroy;");
    tw_string_transport_free(t);
}

static void wrapper_passes_producers_both_kinds(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, NULL, NULL);

    /* a push producer: paused past high, resumed under low, stopped at the end */
    tw_string_transport_t *t = conn(NULL, &wf.base);
    rec_t *r = (rec_t *)inner_of(t);
    tw_transport_t *it = r->base.transport;
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(it, 10, 100, 0, TW_CAP_PAUSE);
    assert_int_equal(t->low, 10);
    assert_int_equal(tw_transport_register_producer(it, &r->prod, true), 0);
    assert_int_equal(tw_transport_register_producer(it, &r->prod, true), -EBUSY);
    assert_non_null(t->producer);
    char buf[150] = { 0 };
    assert_int_equal(tw_transport_write(it, buf, sizeof buf), 0);
    assert_int_equal(r->pauses, 1);
    tw_string_transport_drain(t, 145);
    assert_int_equal(r->resumes, 1);
    tw_string_transport_disconnect(t, NULL);
    assert_int_equal(ev.destroyed, 1);
    tw_string_transport_free(t);

    /* the same, but unregistered first: never told to stop */
    ev_reset();
    t = conn(NULL, &wf.base);
    r = (rec_t *)inner_of(t);
    it = r->base.transport;
    assert_int_equal(tw_transport_register_producer(it, &r->prod, true), 0);
    tw_transport_unregister_producer(it);
    assert_null(t->producer);
    int stops = r->stops;
    assert_int_equal(stops, 0);
    tw_string_transport_free(t);

    /* a pull producer: asked at registration and whenever the queue is low */
    ev_reset();
    t = conn(NULL, &wf.base);
    r = (rec_t *)inner_of(t);
    it = r->base.transport;
    assert_int_equal(tw_transport_register_producer(it, &r->prod, false), 0);
    assert_int_equal(r->resumes, 1);
    tw_string_transport_drain(t, 0);
    assert_int_equal(r->resumes, 2);
    assert_int_equal(r->pauses, 0);
    tw_string_transport_free(t);

    /* the wrapper's own reading side as producer (echo's way): a peer that
     * does not read stops being read, through the wrapper */
    ev_reset();
    t = conn(NULL, &wf.base);
    r = (rec_t *)inner_of(t);
    it = r->base.transport;
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(it, 10, 100, 0, TW_CAP_PAUSE);
    assert_int_equal(tw_transport_register_producer(it, &it->as_producer, true), 0);
    assert_int_equal(tw_transport_write(it, buf, sizeof buf), 0);
    assert_true(t->reading_paused);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), -EAGAIN);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_false(t->reading_paused);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), 0);
    /* losing stops the producer; the wrapper's own side is not "stopped" */
    tw_transport_lose_connection(it);
    tw_string_transport_settle(t);
    assert_true(t->lost);
    tw_string_transport_free(t);

    /* pause and resume reading directly */
    ev_reset();
    t = conn(NULL, &wf.base);
    it = inner_of(t)->transport;
    tw_transport_pause_reading(it);
    assert_true(t->reading_paused);
    tw_transport_resume_reading(it);
    assert_false(t->reading_paused);
    tw_string_transport_free(t);
}

static void wrapper_forwards_addresses_and_options(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, NULL, NULL);
    addr_t a = ip_addr("2001:db8::7", 4242);
    tw_string_transport_t *t = conn_from(NULL, &wf.base, &a);
    tw_transport_t *it = inner_of(t)->transport;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(tw_transport_peer_address(it, &ss, &len), 0);
    assert_int_equal(len, a.len);
    assert_memory_equal(&ss, &a.ss, len);
    assert_int_equal(tw_transport_host_address(it, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(tw_transport_set_nodelay(it, false), 0);
    assert_int_equal(t->nodelay, 0);
    assert_int_equal(tw_transport_set_keepalive(it, true), 0);
    assert_int_equal(t->keepalive, 1);
    assert_int_equal(tw_transport_fileno(it), -1);
    tw_string_transport_free(t);
}

static void wrapper_refuses_when_the_inner_factory_does(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    in.refuse = true;
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, NULL, NULL);
    tw_wrapping_factory_set_refusal(&wf, "ignored\n"); /* for policy refusals only */
    assert_null(wf.base.ops->build_protocol(&wf.base, NULL, 0));
    assert_int_equal(tw_wrapping_factory_init(&wf, NULL, NULL, NULL), -EINVAL);
}

/* A policy that records its hooks among the inner protocol's events. */
static void hk_made(tw_wrapper_t *w)
{
    ev_add("H-made;");
    assert_non_null(w->real);
}

static void hk_data(tw_wrapper_t *w, const void *d, size_t n)
{
    ev_add("H-data:%zu;", n);
}

static void hk_eof(tw_wrapper_t *w)
{
    ev_add("H-eof;");
}

static int hk_write(tw_wrapper_t *w, const struct iovec *iov, int n)
{
    ev_add("H-write:%d;", n);
    return tw_wrapper_write(w, iov, n);
}

static void hk_request(tw_wrapper_t *w, tw_wrapper_request_t what)
{
    ev_add("H-request:%d;", (int)what);
}

static void hk_lost(tw_wrapper_t *w, const tw_failure_t *reason)
{
    ev_add("H-lost;");
}

static int hk_admit(tw_wrapper_t *w, const struct sockaddr *a, socklen_t n)
{
    ev_add("H-admit;");
    *(int *)w->state = 42;
    return 0;
}

static void hk_release(tw_wrapper_t *w)
{
    assert_int_equal(*(int *)w->state, 42);
    ev_add("H-release;");
}

static const tw_wrapper_ops_t hook_ops = {
    .state_size = sizeof(int),
    .admit = hk_admit,
    .made = hk_made,
    .data = hk_data,
    .eof = hk_eof,
    .write = hk_write,
    .request = hk_request,
    .lost = hk_lost,
    .release = hk_release,
};

static void wrapper_hooks_run_around_the_inner_protocol(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    in.upper = true;
    in.with_eof = true;
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, &hook_ops, NULL);
    tw_string_transport_t *t = conn(NULL, &wf.base);
    assert_int_equal(tw_string_transport_feed_str(t, "ab"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(tw_string_transport_feed_str(t, "quit"), -EPIPE); /* after EOF */
    tw_transport_lose_connection(inner_of(t)->transport);
    tw_string_transport_settle(t);
    assert_string_equal(ev.log, "H-admit;H-made;made;H-data:2;data:ab;H-write:1;H-eof;eof;"
                                "H-request:0;H-lost;lost:0;H-release;destroy;");
    assert_output(t, "AB");
    tw_string_transport_free(t);

    /* built but never made: release and destroy, nothing else */
    ev_reset();
    tw_protocol_t *p = wf.base.ops->build_protocol(&wf.base, NULL, 0);
    p->ops->destroy(p);
    assert_string_equal(ev.log, "H-admit;H-release;destroy;");
}

static void wrapper_passes_start_stop_and_client_callbacks(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    rec_factory_t in;
    recf_init(&in);
    tw_wrapping_factory_t wf;
    tw_wrapping_factory_init(&wf, &in.base, NULL, NULL);
    tw_listener_t *l;
    tw_tcp_listen_opts_t lo = { .interface = "127.0.0.1" };
    assert_int_equal(tw_tcp_listen(r, &wf.base, &lo, &l), 0);
    assert_int_equal(in.starts, 1);
    int port = tw_listener_port(l);
    tw_listener_close(l);
    assert_int_equal(in.stops, 1);

    /* a connection refused reaches the inner factory's connection_failed */
    tw_connector_t *c;
    tw_tcp_connect_opts_t co = { .host = "127.0.0.1", .port = port };
    assert_int_equal(tw_tcp_connect(r, &wf.base, &co, &c), 0);
    assert_int_equal(in.starts, 2);
    assert_int_equal(in.started, 1);
    tw_test_run_until(r, &in.failed, 1);
    tw_connector_free(c);
    assert_int_equal(in.stops, 2);
    assert_int_equal(in.builds, 0);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- idle timeouts ------------------------------------------------------- */

static void timeout_fires_after_n_seconds_of_silence_and_not_before(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    in.upper = true;
    tw_timeout_factory_t tf;
    assert_int_equal(tw_timeout_factory_init(&tf, &in.base, r, TW_SEC(10)), 0);
    assert_int_equal(tw_timeout_factory_init(&tf, &in.base, r, 0), -EINVAL);
    assert_int_equal(tw_timeout_factory_init(&tf, &in.base, r, TW_SEC(10)), 0);

    tw_string_transport_t *t = conn(r, &tf.base.base);
    tw_fake_clock_advance(&clock, TW_SEC(10) - 1);
    assert_false(t->closing);
    assert_false(t->disconnecting);
    tw_fake_clock_advance(&clock, 1);
    assert_true(t->closing);
    assert_int_equal(t->close_code, -ETIMEDOUT);
    tw_fake_clock_advance(&clock, 0); /* the close settles from the reactor */
    assert_true(t->lost);
    assert_int_equal(ev.lost, 1);
    assert_int_equal(ev.lost_code, -ETIMEDOUT);
    assert_string_equal(ev.lost_msg, "idle for 10 s");
    tw_string_transport_free(t);
    assert_clean(r);

    /* traffic in resets it, and so does traffic out */
    ev_reset();
    t = conn(r, &tf.base.base);
    tw_fake_clock_advance(&clock, TW_SEC(6));
    assert_int_equal(tw_string_transport_feed_str(t, "ping"), 0); /* in, and "PING" out */
    tw_fake_clock_advance(&clock, TW_SEC(6));
    assert_false(t->closing);
    tw_transport_write(inner_of(t)->transport, "out", 3); /* out only */
    tw_fake_clock_advance(&clock, TW_SEC(9));
    assert_false(t->closing);
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_true(t->closing);
    assert_output(t, "PINGout");
    tw_fake_clock_advance(&clock, 0);
    assert_int_equal(ev.lost_code, -ETIMEDOUT);
    tw_string_transport_free(t);

    /* a half-second timeout reads so */
    ev_reset();
    tf.timeout = TW_MSEC(500);
    t = conn(r, &tf.base.base);
    tw_fake_clock_advance(&clock, TW_MSEC(500));
    tw_fake_clock_advance(&clock, 0);
    assert_string_equal(ev.lost_msg, "idle for 0.5 s");
    tw_string_transport_free(t);

    /* a connection closed early leaves no timer behind */
    ev_reset();
    t = conn(r, &tf.base.base);
    tw_string_transport_disconnect(t, NULL);
    tw_string_transport_free(t);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void timeout_aborts_a_connection_that_cannot_flush(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    tw_timeout_factory_t tf;
    tw_timeout_factory_init(&tf, &in.base, r, TW_SEC(5));
    tw_string_transport_t *t = conn(r, &tf.base.base);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_write(inner_of(t)->transport, "stuck", 5);
    tw_fake_clock_advance(&clock, TW_SEC(5));
    assert_true(t->disconnecting); /* losing, but the peer reads nothing */
    assert_false(t->closing);
    tw_fake_clock_advance(&clock, TW_SEC(5) - 1);
    assert_false(t->closing);
    tw_fake_clock_advance(&clock, 1);
    assert_true(t->aborted);
    tw_fake_clock_advance(&clock, 0);
    assert_int_equal(ev.lost, 1);
    assert_int_equal(ev.lost_code, -ECONNABORTED);
    tw_string_transport_free(t);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void timeout_can_be_changed_by_the_protocol(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    /* a pass-through wrapper between: tw_timeout_set looks outwards */
    tw_wrapping_factory_t inner_wrap;
    tw_wrapping_factory_init(&inner_wrap, &in.base, NULL, NULL);
    tw_timeout_factory_t tf2;
    tw_timeout_factory_init(&tf2, &inner_wrap.base, r, TW_SEC(5));

    tw_string_transport_t *t = conn(r, &tf2.base.base);
    tw_protocol_t *p = ((tw_wrapper_t *)inner_of(t))->inner; /* under inner_wrap */
    assert_int_equal(tw_timeout_set(p->transport, 0), 0);
    tw_fake_clock_advance(&clock, TW_SEC(100));
    assert_false(t->closing);
    assert_int_equal(tw_timeout_set(p->transport, TW_SEC(2)), 0);
    tw_fake_clock_advance(&clock, TW_SEC(2));
    assert_true(t->closing);
    tw_fake_clock_advance(&clock, 0);
    assert_string_equal(ev.lost_msg, "idle for 2 s");
    tw_string_transport_free(t);

    /* no timeout factory around: -ENOENT */
    t = conn(r, &inner_wrap.base);
    assert_int_equal(tw_timeout_set(inner_of(t)->transport, TW_SEC(1)), -ENOENT);
    assert_int_equal(tw_timeout_set(&t->base, TW_SEC(1)), -ENOENT);
    tw_string_transport_free(t);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static int idle_fired;

static void idle_cb(tw_idle_timer_t *it, void *arg)
{
    idle_fired++;
}

static void idle_timer_is_twisteds_timeout_mixin(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    tw_idle_timer_t it;
    idle_fired = 0;
    tw_idle_timer_init(&it, r, idle_cb, NULL);
    tw_idle_timer_reset(&it); /* no timeout: nothing */
    assert_false(tw_idle_timer_active(&it));
    assert_int_equal(tw_idle_timer_set_timeout(&it, TW_SEC(3)), 0);
    assert_true(tw_idle_timer_active(&it));
    tw_fake_clock_advance(&clock, TW_SEC(2));
    tw_idle_timer_reset(&it);
    tw_fake_clock_advance(&clock, TW_SEC(2));
    assert_int_equal(idle_fired, 0);
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_int_equal(idle_fired, 1);
    assert_false(tw_idle_timer_active(&it));
    tw_idle_timer_reset(&it); /* fired: resetTimeout does nothing */
    tw_fake_clock_advance(&clock, TW_SEC(10));
    assert_int_equal(idle_fired, 1);
    /* setTimeout starts it again and returns the previous value */
    assert_int_equal(tw_idle_timer_set_timeout(&it, TW_SEC(1)), TW_SEC(3));
    tw_fake_clock_advance(&clock, TW_MSEC(500));
    assert_int_equal(tw_idle_timer_set_timeout(&it, TW_SEC(2)), TW_SEC(1)); /* restarts */
    tw_fake_clock_advance(&clock, TW_MSEC(1500));
    assert_int_equal(idle_fired, 1);
    tw_fake_clock_advance(&clock, TW_MSEC(500));
    assert_int_equal(idle_fired, 2);
    tw_idle_timer_set_timeout(&it, TW_SEC(1));
    tw_idle_timer_cancel(&it);
    tw_fake_clock_advance(&clock, TW_SEC(5));
    assert_int_equal(idle_fired, 2);
    assert_clean(r);

    /* the ready-made timeoutConnection */
    rec_factory_t in;
    recf_init(&in);
    tw_protocol_t *p = in.base.ops->build_protocol(&in.base, NULL, 0);
    tw_string_transport_t *t = tw_string_transport_new(r, p);
    tw_idle_timer_init(&it, r, tw_idle_timer_lose_connection, p);
    tw_idle_timer_set_timeout(&it, TW_SEC(4));
    tw_fake_clock_advance(&clock, TW_SEC(4));
    assert_true(t->closing);
    assert_int_equal(t->close_code, -ETIMEDOUT);
    tw_fake_clock_advance(&clock, 0);
    assert_string_equal(ev.lost_msg, "idle for 4 s");
    tw_string_transport_free(t);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

/* ---- connection limits --------------------------------------------------- */

static void limit_refuses_beyond_the_total_and_counts_down_on_close(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_limit_factory_t lf;
    tw_limit_opts_t o = { .max_total = 2, .message = "busy\r\n" };
    assert_int_equal(tw_limit_factory_init(&lf, &in.base, &o), 0);

    tw_string_transport_t *a = conn(NULL, &lf.base.base);
    tw_string_transport_t *b = conn(NULL, &lf.base.base);
    assert_int_equal(lf.count, 2);
    tw_string_transport_t *c = conn(NULL, &lf.base.base); /* accepted, told, closed */
    assert_non_null(c);
    assert_output(c, "busy\r\n");
    assert_true(c->disconnecting);
    assert_true(c->closing);
    assert_int_equal(tw_string_transport_feed_str(c, "x"), -EPIPE);
    tw_string_transport_settle(c);
    assert_true(c->lost);
    assert_int_equal(in.builds, 2); /* the inner factory never heard of it */
    assert_int_equal(ev.made, 2);
    assert_int_equal(lf.refused, 1);
    assert_int_equal(lf.count, 2);
    tw_string_transport_free(c);

    tw_string_transport_disconnect(a, NULL);
    assert_int_equal(lf.count, 1);
    tw_string_transport_t *d = conn(NULL, &lf.base.base);
    assert_false(d->closing);
    assert_int_equal(lf.count, 2);
    assert_int_equal(in.builds, 3);

    /* without a message: refused by returning NULL (the socket is closed) */
    lf.base.refusal = NULL;
    lf.base.refusal_len = 0;
    assert_null(conn(NULL, &lf.base.base));
    assert_int_equal(lf.refused, 2);
    tw_string_transport_free(a);
    tw_string_transport_free(b);
    tw_string_transport_free(d);
    assert_int_equal(lf.count, 0);
    assert_int_equal(ev.lost, 3);
    assert_int_equal(ev.destroyed, 3);
}

static void limit_counts_each_peer_address(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_limit_factory_t lf;
    tw_limit_opts_t o = { .max_per_peer = 2 };
    assert_int_equal(tw_limit_factory_init(&lf, &in.base, &o), 0);
    addr_t a1 = ip_addr("10.0.0.1", 1000), a2 = ip_addr("10.0.0.1", 2000);
    addr_t a3 = ip_addr("10.0.0.1", 3000), b = ip_addr("10.0.0.2", 1000);
    addr_t mapped = ip_addr("::ffff:10.0.0.2", 5), v6 = ip_addr("2001:db8::1", 1);
    addr_t v6b = ip_addr("2001:db8::1", 2), v6c = ip_addr("2001:db8::1", 3);
    addr_t u1 = unix_addr("/tmp/one"), u2 = unix_addr(""), u3 = unix_addr("/tmp/three");

    tw_string_transport_t *ta1 = conn_from(NULL, &lf.base.base, &a1);
    tw_string_transport_t *ta2 = conn_from(NULL, &lf.base.base, &a2);
    assert_null(conn_from(NULL, &lf.base.base, &a3)); /* a third from 10.0.0.1 */
    tw_string_transport_t *tb = conn_from(NULL, &lf.base.base, &b);
    tw_string_transport_t *tm = conn_from(NULL, &lf.base.base, &mapped); /* 10.0.0.2 again */
    assert_null(conn_from(NULL, &lf.base.base, &b));
    assert_int_equal(tw_limit_factory_peer_count(&lf, (struct sockaddr *)&a3.ss, a3.len), 2);
    assert_int_equal(tw_limit_factory_peer_count(&lf, (struct sockaddr *)&b.ss, b.len), 2);
    /* the peer address reaches the protocol through the wrapper */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(tw_transport_peer_address(inner_of(tb)->transport, &ss, &len), 0);
    assert_memory_equal(&ss, &b.ss, b.len);

    tw_string_transport_t *t6 = conn_from(NULL, &lf.base.base, &v6);
    tw_string_transport_t *t6b = conn_from(NULL, &lf.base.base, &v6b);
    assert_null(conn_from(NULL, &lf.base.base, &v6c));
    tw_string_transport_t *tu1 = conn_from(NULL, &lf.base.base, &u1);
    tw_string_transport_t *tu2 = conn_from(NULL, &lf.base.base, &u2);
    assert_null(conn_from(NULL, &lf.base.base, &u3)); /* UNIX peers are one peer */
    assert_null(conn_from(NULL, &lf.base.base, NULL)); /* and so is "no address" */
    assert_int_equal(lf.count, 8);
    assert_int_equal(lf.refused, 5);

    /* closing one lets the next one from that peer in */
    tw_string_transport_disconnect(ta1, NULL);
    assert_int_equal(tw_limit_factory_peer_count(&lf, (struct sockaddr *)&a1.ss, a1.len), 1);
    tw_string_transport_t *ta3 = conn_from(NULL, &lf.base.base, &a3);
    assert_non_null(ta3);
    tw_string_transport_disconnect(tu1, NULL);
    tw_string_transport_t *tu3 = conn_from(NULL, &lf.base.base, &u3);
    assert_non_null(tu3);

    tw_string_transport_t *all[] = { ta1, ta2, ta3, tb, tm, t6, t6b, tu1, tu2, tu3 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tw_string_transport_free(all[i]);
    assert_int_equal(lf.count, 0);
    assert_null(lf.slots); /* no connection, no memory */
    assert_int_equal(ev.made, ev.destroyed);
}

static void limit_peer_table_survives_many_peers(void **state)
{
    enum { N = 1500 };
    rec_factory_t in;
    recf_init(&in);
    tw_limit_factory_t lf;
    tw_limit_opts_t o = { .max_per_peer = 1 };
    tw_limit_factory_init(&lf, &in.base, &o);
    static tw_protocol_t *ps[N];
    static addr_t as[N];
    for (int i = 0; i < N; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i % 7, (i * 37) % 256, i % 251);
        as[i] = ip_addr(ip, 1);
        ps[i] = lf.base.base.ops->build_protocol(&lf.base.base, (struct sockaddr *)&as[i].ss,
                                                 as[i].len);
        assert_non_null(ps[i]);
        assert_null(lf.base.base.ops->build_protocol(&lf.base.base,
                                                     (struct sockaddr *)&as[i].ss, as[i].len));
    }
    /* drop them in a scrambled order, checking the rest stay counted */
    for (int k = 0; k < N; k++) {
        int i = (int)(((long)k * 811) % N);
        ps[i]->ops->destroy(ps[i]); /* never made: destroy alone */
        ps[i] = NULL;
        if (k % 97 == 0) {
            for (int j = 0; j < N; j++)
                assert_int_equal(tw_limit_factory_peer_count(&lf, (struct sockaddr *)&as[j].ss,
                                                             as[j].len), ps[j] ? 1 : 0);
        }
    }
    assert_int_equal(lf.count, 0);
    assert_null(lf.slots);
}

/* ---- throttling ---------------------------------------------------------- */

static void throttle_pauses_reading_at_the_limit_until_the_next_window(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    tw_throttling_factory_t th;
    tw_throttle_opts_t o = { .read_limit = 1000 };
    assert_int_equal(tw_throttling_factory_init(&th, &in.base, r, &o), 0);
    static char buf[4000];
    memset(buf, 'r', sizeof buf);

    tw_string_transport_t *a = conn(r, &th.base.base);
    tw_string_transport_t *b = conn(r, &th.base.base);
    ((rec_t *)inner_of(a))->quiet = ((rec_t *)inner_of(b))->quiet = true;
    assert_int_equal(tw_string_transport_feed(a, buf, 600), 0);
    assert_false(th.reads_throttled);
    assert_int_equal(tw_string_transport_feed(b, buf, 500), 0); /* 1100: both stop */
    assert_true(th.reads_throttled);
    assert_true(a->reading_paused && b->reading_paused);
    assert_int_equal(tw_string_transport_feed(a, buf, 1), -EAGAIN);
    /* a connection made while throttled starts paused */
    tw_string_transport_t *c = conn(r, &th.base.base);
    assert_true(c->reading_paused);

    tw_fake_clock_advance(&clock, TW_SEC(1) - 1);
    assert_true(a->reading_paused);
    tw_fake_clock_advance(&clock, 1); /* the window ends: 100 carried */
    assert_int_equal(th.read_count, 100);
    assert_false(a->reading_paused || b->reading_paused || c->reading_paused);
    assert_int_equal(tw_string_transport_feed(c, buf, 899), 0); /* 999 */
    assert_false(th.reads_throttled);
    assert_int_equal(tw_string_transport_feed(a, buf, 2501), 0); /* 3500: three windows' worth */
    assert_true(th.reads_throttled);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* 2500 */
    assert_true(b->reading_paused);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* 1500 */
    assert_true(b->reading_paused);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* 500 */
    assert_false(b->reading_paused);
    assert_int_equal(th.read_count, 500);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* paid off */
    assert_int_equal(th.read_count, 0);

    tw_string_transport_free(a);
    tw_string_transport_free(b);
    assert_true(tw_timer_active(&th.window));
    tw_string_transport_free(c);
    assert_false(tw_timer_active(&th.window)); /* the last connection stops the windows */
    assert_int_equal(th.count, 0);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void throttle_sends_exactly_the_write_limit_per_window(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    tw_throttling_factory_t th;
    tw_throttle_opts_t o = { .write_limit = 4000 };
    tw_throttling_factory_init(&th, &in.base, r, &o);
    static char buf[10000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)('a' + i % 26);

    tw_string_transport_t *t = conn(r, &th.base.base);
    rec_t *rp = (rec_t *)inner_of(t);
    tw_transport_t *it = rp->base.transport;
    assert_int_equal(tw_transport_register_producer(it, &rp->prod, true), 0);
    /* many small writes, then one that crosses the limit */
    for (int i = 0; i < 39; i++)
        assert_int_equal(tw_transport_write(it, buf + i * 100, 100), 0);
    assert_int_equal(tw_string_transport_len(t), 3900);
    assert_int_equal(rp->pauses, 0);
    struct iovec iov[3] = { { buf + 3900, 50 }, { buf + 3950, 100 }, { buf + 4050, 5950 } };
    assert_int_equal(tw_transport_writev(it, iov, 3), 0);
    assert_int_equal(tw_string_transport_len(t), 4000); /* exactly the limit */
    assert_true(th.writes_throttled);
    assert_int_equal(rp->pauses, 1); /* Twisted's throttleWrites */
    assert_int_equal(tw_transport_queued(it), 6000); /* held in the wrapper */
    assert_int_equal(tw_transport_write(it, "", 0), 0);

    tw_fake_clock_advance(&clock, TW_SEC(1) - 1);
    assert_int_equal(tw_string_transport_len(t), 4000);
    tw_fake_clock_advance(&clock, 1);
    assert_int_equal(tw_string_transport_len(t), 8000);
    assert_int_equal(rp->resumes, 0);
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_int_equal(tw_string_transport_len(t), 10000);
    assert_false(th.writes_throttled);
    assert_int_equal(rp->resumes, 1);
    assert_int_equal(th.write_count, 2000);
    assert_memory_equal(tw_string_transport_value(t, NULL), buf, sizeof buf);

    /* 2000 left in this window: a 3000-byte write sends 2000 now */
    assert_int_equal(tw_transport_write(it, buf, 3000), 0);
    assert_int_equal(tw_string_transport_len(t), 12000);
    assert_int_equal(rp->pauses, 2);
    /* a lose waits for the held bytes; writes after it are refused */
    tw_transport_lose_connection(it);
    assert_int_equal(tw_transport_write(it, "x", 1), -EPIPE);
    assert_false(t->disconnecting);
    assert_int_equal(rp->stops, 1); /* a losing transport stops its producer */
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_int_equal(tw_string_transport_len(t), 13000);
    assert_true(t->disconnecting);
    tw_fake_clock_advance(&clock, 0);
    assert_true(t->lost);
    assert_int_equal(ev.lost_code, 0);
    tw_string_transport_free(t);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void throttle_shares_the_write_limit_and_holds_pull_producers(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    rec_factory_t in;
    recf_init(&in);
    tw_throttling_factory_t th;
    tw_throttle_opts_t o = { .write_limit = 1000, .max_connections = 2 };
    tw_throttling_factory_init(&th, &in.base, r, &o);
    th.base.hold_limit = 2500;
    static char buf[5000];
    memset(buf, 'w', sizeof buf);

    tw_string_transport_t *a = conn(r, &th.base.base);
    tw_string_transport_t *b = conn(r, &th.base.base);
    assert_null(conn(r, &th.base.base)); /* max_connections */
    rec_t *ra = (rec_t *)inner_of(a), *rb = (rec_t *)inner_of(b);
    assert_int_equal(tw_transport_register_producer(rb->base.transport, &rb->prod, false), 0);
    assert_int_equal(rb->resumes, 1); /* a pull producer is asked at once */

    assert_int_equal(tw_transport_write(ra->base.transport, buf, 4000), 0); /* 1000 + 3000 held */
    assert_int_equal(tw_string_transport_len(a), 1000);
    assert_true(a->reading_paused); /* more than hold_limit held */
    assert_int_equal(tw_transport_write(rb->base.transport, buf, 600), 0); /* held: throttled */
    assert_int_equal(tw_string_transport_len(b), 0);
    tw_string_transport_drain(b, 0); /* the transport asks b's pull producer for more ... */
    assert_int_equal(rb->resumes, 1); /* ... but not while writes are throttled */

    tw_fake_clock_advance(&clock, TW_SEC(1)); /* a's turn first: 1000 more of a */
    assert_int_equal(tw_string_transport_len(a), 2000);
    assert_false(a->reading_paused); /* 2000 held: under the hold limit */
    assert_int_equal(tw_string_transport_len(b), 0);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* b first now: 600 of b, 400 of a */
    assert_int_equal(tw_string_transport_len(b), 600);
    assert_int_equal(tw_string_transport_len(a), 2400);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* 1000 of a */
    assert_int_equal(tw_string_transport_len(a), 3400);
    assert_true(th.writes_throttled);
    tw_fake_clock_advance(&clock, TW_SEC(1)); /* the last 600: producers go again */
    assert_int_equal(tw_string_transport_len(a), 4000);
    assert_false(th.writes_throttled);
    assert_int_equal(rb->resumes, 2); /* the ask held back is delivered */

    /* an abort drops what is held */
    assert_int_equal(tw_transport_write(ra->base.transport, buf, 1000), 0);
    assert_true(th.writes_throttled);
    assert_int_equal(tw_transport_write(ra->base.transport, buf, 10), 0);
    assert_int_equal(tw_transport_queued(ra->base.transport), 610); /* 600 + 10 held */
    tw_transport_abort_connection(ra->base.transport);
    assert_true(a->aborted);
    tw_fake_clock_advance(&clock, 0);
    assert_true(a->lost);
    tw_string_transport_free(a);
    tw_string_transport_free(b);
    assert_int_equal(th.count, 0);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

/* ---- traffic logging ----------------------------------------------------- */

static void traffic_log_writes_each_event(void **state)
{
    char *text = NULL;
    size_t size = 0;
    FILE *mf = open_memstream(&text, &size);
    assert_non_null(mf);
    rec_factory_t in;
    recf_init(&in);
    in.upper = true;
    tw_traffic_log_factory_t lf;
    tw_traffic_log_opts_t o = { .file = mf };
    assert_int_equal(tw_traffic_log_factory_init(&lf, &in.base, &o), 0);

    tw_string_transport_t *t = conn(NULL, &lf.base.base);
    assert_int_equal(tw_string_transport_feed_str(t, "hello\n"), 0);
    struct iovec iov[2] = { { "a\"b\\", 4 }, { "\x00\x01\xff\t\r", 5 } };
    tw_transport_writev(inner_of(t)->transport, iov, 2);
    assert_int_equal(tw_string_transport_feed_str(t, "quit"), 0);
    tw_string_transport_settle(t);
    tw_string_transport_free(t);

    addr_t a = ip_addr("::1", 80);
    t = conn_from(NULL, &lf.base.base, &a);
    tw_transport_abort_connection(inner_of(t)->transport);
    tw_string_transport_free(t);
    tw_traffic_log_factory_reset_counter(&lf);
    addr_t u = unix_addr("/run/x.sock");
    t = conn_from(NULL, &lf.base.base, &u);
    tw_transport_lose_write_connection(inner_of(t)->transport);
    tw_string_transport_free(t);
    fclose(mf);
    assert_string_equal(text,
                        "conn 1: made, peer 192.168.1.1:54321\n"
                        "conn 1: in 6 \"hello\\n\"\n"
                        "conn 1: out 6 \"HELLO\\n\"\n"
                        "conn 1: out 9 \"a\\\"b\\\\\\x00\\x01\\xff\\t\\r\"\n"
                        "conn 1: in 4 \"quit\"\n"
                        "conn 1: lose_connection\n"
                        "conn 1: lost (clean)\n"
                        "conn 2: made, peer [::1]:80\n"
                        "conn 2: abort_connection\n"
                        "conn 2: lost: tcp -103: connection aborted\n"
                        "conn 1: made, peer unix /run/x.sock\n"
                        "conn 1: lose_write_connection\n"
                        "conn 1: lost (clean)\n");
    free(text);
}

static void traffic_log_hexdump_and_limit(void **state)
{
    char *text = NULL;
    size_t size = 0;
    FILE *mf = open_memstream(&text, &size);
    rec_factory_t in;
    recf_init(&in);
    in.with_eof = true;
    tw_traffic_log_factory_t lf;
    tw_traffic_log_opts_t o = { .file = mf, .hexdump = true, .max_bytes = 20 };
    tw_traffic_log_factory_init(&lf, &in.base, &o);
    tw_string_transport_t *t = conn(NULL, &lf.base.base);
    ((rec_t *)inner_of(t))->quiet = true;
    assert_int_equal(tw_string_transport_feed_str(t, "0123456789abcdef\x01XYZ-cut-off"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    lf.opts.hexdump = false;
    lf.opts.max_bytes = 3;
    tw_transport_write(inner_of(t)->transport, "abcdef", 6);
    tw_string_transport_free(t);
    fclose(mf);
    assert_string_equal(text,
        "conn 1: made, peer 192.168.1.1:54321\n"
        "conn 1: in 28\n"
        "  0000  30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 |0123456789abcdef|\n"
        "  0010  01 58 59 5a                                     |.XYZ|\n"
        "  ... (8 more)\n"
        "conn 1: eof\n"
        "conn 1: out 6 \"abc\"... (3 more)\n"
        "conn 1: lost (clean)\n");
    free(text);
}

static char sunk[2048];

static void sink_cb(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    size_t n = strlen(sunk);
    snprintf(sunk + n, sizeof sunk - n, "%d %s %s\n", (int)level, domain, msg);
}

static void traffic_log_goes_through_tw_log(void **state)
{
    rec_factory_t in;
    recf_init(&in);
    tw_traffic_log_factory_t lf;
    assert_int_equal(tw_traffic_log_factory_init(&lf, &in.base, NULL), 0);
    tw_log_level_t old = tw_log_get_level();
    tw_log_set_level(TW_LOG_DEBUG);
    sunk[0] = '\0';
    tw_log_set_sink(sink_cb, NULL);
    tw_string_transport_t *t = conn(NULL, &lf.base.base);
    tw_string_transport_t *t2 = conn(NULL, &lf.base.base);
    tw_string_transport_feed_str(t2, "hi");
    tw_string_transport_free(t);
    tw_string_transport_free(t2);
    tw_log_set_sink(NULL, NULL);
    tw_log_set_level(old);
    assert_string_equal(sunk, "1 traffic conn 1: made, peer 192.168.1.1:54321\n"
                              "1 traffic conn 2: made, peer 192.168.1.1:54321\n"
                              "1 traffic conn 2: in 2 \"hi\"\n"
                              "1 traffic conn 1: lost (clean)\n"
                              "1 traffic conn 2: lost (clean)\n");
}

/* Policies stack: a throttled, logged, limited, timed connection. */
static void policies_stack(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, 0);
    char *text = NULL;
    size_t size = 0;
    FILE *mf = open_memstream(&text, &size);
    rec_factory_t in;
    recf_init(&in);
    in.upper = true;
    tw_traffic_log_factory_t lg;
    tw_traffic_log_opts_t lo = { .file = mf };
    tw_traffic_log_factory_init(&lg, &in.base, &lo);
    tw_throttling_factory_t th;
    tw_throttle_opts_t to = { .write_limit = 2 };
    tw_throttling_factory_init(&th, &lg.base.base, r, &to);
    tw_limit_factory_t lf;
    tw_limit_opts_t mo = { .max_total = 1 };
    tw_limit_factory_init(&lf, &th.base.base, &mo);
    tw_timeout_factory_t tf;
    tw_timeout_factory_init(&tf, &lf.base.base, r, TW_SEC(3));

    tw_string_transport_t *t = conn(r, &tf.base.base);
    assert_null(conn(r, &tf.base.base));
    assert_int_equal(tw_string_transport_feed_str(t, "abcd"), 0);
    assert_output(t, "AB");
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_output(t, "ABCD");
    tw_fake_clock_advance(&clock, TW_SEC(3)); /* idle since the held bytes went at 1 s */
    tw_fake_clock_advance(&clock, 0);
    assert_true(t->lost);
    assert_int_equal(ev.lost_code, -ETIMEDOUT);
    tw_string_transport_free(t);
    fclose(mf);
    /* the log sits under the throttle: it sees the whole write at once */
    assert_string_equal(text, "conn 1: made, peer 192.168.1.1:54321\n"
                              "conn 1: in 4 \"abcd\"\n"
                              "conn 1: out 4 \"ABCD\"\n"
                              "conn 1: lost: policy -110: idle for 3 s\n");
    free(text);
    assert_int_equal(lf.count, 0);
    assert_int_equal(th.count, 0);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wrapper_delivers_every_callback_once_in_order),
        cmocka_unit_test(wrapper_passes_lose_abort_and_half_close),
        cmocka_unit_test(wrapper_passes_producers_both_kinds),
        cmocka_unit_test(wrapper_forwards_addresses_and_options),
        cmocka_unit_test(wrapper_refuses_when_the_inner_factory_does),
        cmocka_unit_test(wrapper_hooks_run_around_the_inner_protocol),
        cmocka_unit_test(wrapper_passes_start_stop_and_client_callbacks),
        cmocka_unit_test(timeout_fires_after_n_seconds_of_silence_and_not_before),
        cmocka_unit_test(timeout_aborts_a_connection_that_cannot_flush),
        cmocka_unit_test(timeout_can_be_changed_by_the_protocol),
        cmocka_unit_test(idle_timer_is_twisteds_timeout_mixin),
        cmocka_unit_test(limit_refuses_beyond_the_total_and_counts_down_on_close),
        cmocka_unit_test(limit_counts_each_peer_address),
        cmocka_unit_test(limit_peer_table_survives_many_peers),
        cmocka_unit_test(throttle_pauses_reading_at_the_limit_until_the_next_window),
        cmocka_unit_test(throttle_sends_exactly_the_write_limit_per_window),
        cmocka_unit_test(throttle_shares_the_write_limit_and_holds_pull_producers),
        cmocka_unit_test(traffic_log_writes_each_event),
        cmocka_unit_test(traffic_log_hexdump_and_limit),
        cmocka_unit_test(traffic_log_goes_through_tw_log),
        cmocka_unit_test(policies_stack),
    };
    TW_TEST_MAIN(tests);
}
