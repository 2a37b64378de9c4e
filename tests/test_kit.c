/* test_kit.c -- the testing kit, part 2: the string transport and the
 * loopback pair, and echo's tests of test_wire.c redone with the kit. */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_loopback.h"
#include "tw_string_transport.h"
#include "tw_testing.h"
#include "tw_wire.h"

/* ---- a recording protocol ------------------------------------------------ */

static int seq_g; /* one clock for every rec_t of a test: orders both sides */

typedef struct rec {
    tw_protocol_t base;
    int made, datas, eofs, lost, destroyed, after_lost;
    int made_at, data_at, eof_at, lost_at, destroyed_at;
    int lost_code;       /* the failure's code in connection_lost; 0: clean */
    size_t eof_in_len;   /* bytes received when EOF came */
    char *in;            /* what arrived, NUL-terminated */
    size_t in_len, in_cap;
    /* What it does. */
    bool echo, lose_on_data, disconnect_on_data;
    const char *eof_reply; /* rec_eof_ops: write this at EOF ... */
    bool lose_at_eof;      /* ... then lose */
} rec_t;

static void rec_made(tw_protocol_t *p, tw_transport_t *t)
{
    rec_t *r = (rec_t *)p;
    r->made++;
    r->made_at = ++seq_g;
    assert_ptr_equal(p->transport, t);
}

static void rec_data(tw_protocol_t *p, const void *data, size_t len)
{
    rec_t *r = (rec_t *)p;
    r->datas++;
    r->data_at = ++seq_g;
    r->after_lost += r->lost > 0;
    if (r->in_len + len + 1 > r->in_cap) {
        r->in_cap = (r->in_len + len + 1) * 2;
        r->in = realloc(r->in, r->in_cap);
        assert_non_null(r->in);
    }
    memcpy(r->in + r->in_len, data, len);
    r->in_len += len;
    r->in[r->in_len] = '\0';
    if (r->echo)
        tw_transport_write(p->transport, data, len);
    if (r->lose_on_data)
        tw_transport_lose_connection(p->transport);
    if (r->disconnect_on_data) /* from inside a callback: must wait */
        tw_string_transport_disconnect((tw_string_transport_t *)p->transport, NULL);
}

static void rec_eof(tw_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->eofs++;
    r->eof_at = ++seq_g;
    r->eof_in_len = r->in_len;
    if (r->eof_reply)
        assert_int_equal(tw_transport_write(p->transport, r->eof_reply,
                                            strlen(r->eof_reply)), 0);
    if (r->lose_at_eof)
        tw_transport_lose_connection(p->transport);
}

static void rec_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    rec_t *r = (rec_t *)p;
    r->lost++;
    r->lost_at = ++seq_g;
    r->lost_code = reason ? reason->code : 0;
    assert_int_equal(tw_transport_write(p->transport, "x", 1), -EPIPE);
}

static void rec_destroy(tw_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->destroyed++;
    r->destroyed_at = ++seq_g;
}

/* Without eof_received: the transport loses the connection at EOF. */
static const tw_protocol_ops_t rec_ops = {
    rec_made, rec_data, NULL, rec_lost, rec_destroy,
};
static const tw_protocol_ops_t rec_eof_ops = {
    rec_made, rec_data, rec_eof, rec_lost, rec_destroy,
};

static void rec_init(rec_t *r, const tw_protocol_ops_t *ops)
{
    memset(r, 0, sizeof *r);
    r->base.ops = ops;
}

/* Exactly one connection_lost, after everything else, then destroy. */
static void rec_done(rec_t *r, int code)
{
    assert_int_equal(r->made, 1);
    assert_int_equal(r->lost, 1);
    assert_int_equal(r->destroyed, 1);
    assert_int_equal(r->after_lost, 0);
    assert_int_equal(r->lost_code, code);
    assert_true(r->made_at < r->lost_at && r->data_at < r->lost_at && r->eof_at < r->lost_at);
    assert_int_equal(r->destroyed_at, r->lost_at + 1);
    free(r->in);
}

/* ---- a producer ----------------------------------------------------------- */

typedef struct prod {
    tw_producer_t base;
    int pauses, resumes, stops;
    tw_transport_t *t; /* pull: each resume writes `chunk` bytes, `left` times */
    size_t chunk;
    int left;
} prod_t;

static void prod_pause(tw_producer_t *p)
{
    ((prod_t *)p)->pauses++;
}

static void prod_resume(tw_producer_t *p)
{
    prod_t *d = (prod_t *)p;
    char buf[4096] = { 0 };
    d->resumes++;
    if (d->t && d->left-- > 0)
        assert_int_equal(tw_transport_write(d->t, buf, d->chunk), 0);
}

static void prod_stop(tw_producer_t *p)
{
    ((prod_t *)p)->stops++;
}

static const tw_producer_ops_t prod_ops = { prod_pause, prod_resume, prod_stop };

/* ---- helpers ---------------------------------------------------------------- */

static void fill_pattern(unsigned char *buf, size_t len)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

static tw_string_transport_t *open_rec(rec_t *r, const tw_protocol_ops_t *ops)
{
    seq_g = 0;
    rec_init(r, ops);
    tw_string_transport_t *t = tw_string_transport_new(NULL, &r->base);
    assert_non_null(t);
    assert_int_equal(r->made, 1);
    return t;
}

static void write_str(tw_string_transport_t *t, const char *s)
{
    assert_int_equal(tw_transport_write(&t->base, s, strlen(s)), 0);
}

/* ---- the string transport ---------------------------------------------------- */

static void string_captures_writes(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    assert_ptr_equal(r.base.transport, &t->base);
    write_str(t, "hello ");
    struct iovec iov[2] = { { "wor", 3 }, { "ld", 2 } };
    assert_int_equal(tw_transport_writev(&t->base, iov, 2), 0);
    assert_int_equal(tw_transport_write(&t->base, "", 0), 0);
    assert_int_equal(tw_transport_writev(&t->base, iov, -1), -EINVAL);
    assert_string_equal(tw_string_transport_value(t, NULL), "hello world");
    assert_int_equal(tw_string_transport_len(t), 11);
    assert_int_equal(t->writes, 2);
    assert_int_equal(tw_transport_queued(&t->base), 0); /* the peer reads it all */
    tw_string_transport_consume(t, 6);
    assert_string_equal(tw_string_transport_value(t, NULL), "world");
    tw_string_transport_clear(t);
    size_t len = 1;
    assert_string_equal(tw_string_transport_value(t, &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(tw_transport_fileno(&t->base), -1);
    tw_string_transport_free(t);
    rec_done(&r, 0);
}

static void string_feeds_whole_and_bytewise(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    assert_int_equal(tw_string_transport_feed(t, "abc", 3), 0);
    assert_int_equal(tw_string_transport_feed(t, "", 0), 0);
    assert_int_equal(r.datas, 1);
    assert_int_equal(tw_string_transport_feed_bytewise(t, "defg", 4), 0);
    assert_int_equal(tw_string_transport_feed_str(t, "hi"), 0);
    assert_int_equal(r.datas, 6);
    assert_string_equal(r.in, "abcdefghi");
    tw_string_transport_free(t);
    rec_done(&r, 0);
}

static void string_lose_is_recorded_and_settled_later(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    r.lose_on_data = true;
    assert_int_equal(tw_string_transport_feed_str(t, "quit"), 0);
    assert_int_equal(t->lose_calls, 1);
    assert_true(t->disconnecting && t->closing && !t->lost);
    assert_int_equal(r.lost, 0); /* never inside the call that asked */
    assert_false(tw_string_transport_reading(t));
    assert_int_equal(tw_string_transport_feed_str(t, "more"), -EPIPE);
    assert_int_equal(tw_string_transport_feed_eof(t), -EPIPE);
    assert_int_equal(tw_transport_write(&t->base, "x", 1), -EPIPE);
    assert_int_equal(tw_transport_lose_write_connection(&t->base), -EPIPE);
    prod_t p = { .base.ops = &prod_ops };
    assert_int_equal(tw_transport_register_producer(&t->base, &p.base, true), -EPIPE);
    assert_int_equal(tw_string_transport_settle(t), 1);
    assert_int_equal(tw_string_transport_settle(t), 0);
    assert_null(t->base.protocol);
    assert_int_equal(t->close_code, 0);
    rec_done(&r, 0);
    tw_string_transport_free(t);
    assert_int_equal(r.lost, 1);
}

static void string_abort_is_recorded_with_a_failure(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    write_str(t, "abc");
    tw_transport_abort_connection(&t->base);
    tw_transport_abort_connection(&t->base);
    assert_int_equal(t->abort_calls, 2);
    assert_true(t->aborted && t->closing);
    assert_int_equal(t->close_code, -ECONNABORTED);
    assert_int_equal(tw_transport_write(&t->base, "x", 1), -EPIPE);
    assert_string_equal(tw_string_transport_value(t, NULL), "abc");
    assert_int_equal(tw_string_transport_settle(t), 1);
    rec_done(&r, -ECONNABORTED);
    tw_string_transport_free(t);
}

static void string_lifetime_is_made_data_eof_lost_destroy(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_eof_ops);
    assert_int_equal(tw_string_transport_feed_str(t, "data"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(r.eofs, 1);
    assert_false(t->closing); /* eof_received decides: it kept the connection */
    assert_int_equal(tw_string_transport_feed_str(t, "late"), -EPIPE);
    assert_int_equal(tw_string_transport_feed_eof(t), -EPIPE);
    write_str(t, "still writing");
    tw_failure_t *why = tw_failure_new("tcp", -ECONNRESET, NULL);
    tw_string_transport_disconnect(t, why);
    tw_string_transport_disconnect(t, NULL); /* once only */
    tw_failure_free(why);
    assert_true(r.made_at < r.data_at && r.data_at < r.eof_at);
    rec_done(&r, -ECONNRESET);
    tw_string_transport_free(t);
    assert_int_equal(r.lost + r.destroyed, 2);

    /* Without eof_received, EOF loses the connection (the default). */
    t = open_rec(&r, &rec_ops);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(tw_string_transport_settle(t), 1);
    rec_done(&r, 0);
    tw_string_transport_free(t);

    /* A connection never made: destroy alone. */
    rec_init(&r, &rec_ops);
    t = tw_string_transport_alloc(NULL, &r.base);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), -ENOTCONN);
    tw_string_transport_free(t);
    assert_int_equal(r.made + r.lost, 0);
    assert_int_equal(r.destroyed, 1);
}

static void string_disconnect_inside_a_callback_waits(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    r.disconnect_on_data = true;
    assert_int_equal(tw_string_transport_feed_str(t, "x"), 0);
    assert_true(t->closing);
    assert_int_equal(r.lost, 0);
    assert_int_equal(tw_string_transport_settle(t), 1);
    rec_done(&r, 0);
    tw_string_transport_free(t);
}

static void string_lose_and_half_close_wait_for_the_queue(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    tw_string_transport_set_peer_reading(t, false);
    write_str(t, "0123456789");
    assert_int_equal(tw_transport_queued(&t->base), 10);
    tw_transport_lose_connection(&t->base);
    assert_true(t->disconnecting && !t->closing);
    tw_string_transport_drain(t, 6);
    assert_false(t->closing);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_true(t->closing);
    assert_int_equal(tw_string_transport_settle(t), 1);
    rec_done(&r, 0);
    tw_string_transport_free(t);

    t = open_rec(&r, &rec_eof_ops);
    tw_string_transport_set_peer_reading(t, false);
    write_str(t, "request");
    assert_int_equal(tw_transport_lose_write_connection(&t->base), 0);
    assert_true(t->write_closed && !t->write_shut);
    assert_int_equal(tw_transport_write(&t->base, "x", 1), -EPIPE);
    assert_int_equal(tw_string_transport_feed_str(t, "reply"), 0); /* still reading */
    tw_string_transport_drain(t, SIZE_MAX);
    assert_true(t->write_shut && !t->closing);
    assert_int_equal(tw_string_transport_feed_eof(t), 0); /* both ways closed */
    assert_true(t->closing);
    tw_string_transport_free(t);
    rec_done(&r, 0);
}

static void string_producers_follow_the_water_marks(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 0, TW_CAP_PAUSE);
    prod_t p = { .base.ops = &prod_ops };
    assert_int_equal(tw_transport_register_producer(&t->base, &p.base, true), 0);
    assert_int_equal(tw_transport_register_producer(&t->base, &p.base, true), -EBUSY);
    char buf[600] = { 0 };
    assert_int_equal(tw_transport_write(&t->base, buf, 600), 0);
    assert_int_equal(p.pauses, 0);
    assert_int_equal(tw_transport_write(&t->base, buf, 600), 0); /* 1200 > high */
    assert_int_equal(tw_transport_write(&t->base, buf, 100), 0);
    assert_int_equal(p.pauses, 1);
    assert_true(t->producer_paused);
    tw_string_transport_drain(t, 1000); /* 300: above low */
    assert_int_equal(p.resumes, 0);
    tw_string_transport_drain(t, 200); /* 100: at low */
    assert_int_equal(p.resumes, 1);
    tw_string_transport_set_queued(t, 5000);
    assert_int_equal(p.pauses, 2);
    tw_string_transport_set_queued(t, 0);
    assert_int_equal(p.resumes, 2);
    assert_int_equal(t->producer_pauses + t->producer_resumes, 4);
    tw_transport_unregister_producer(&t->base);
    assert_int_equal(p.stops, 0);
    tw_string_transport_set_queued(t, 2000); /* registering above high pauses at once */
    assert_int_equal(tw_transport_register_producer(&t->base, &p.base, true), 0);
    assert_int_equal(p.pauses, 3);
    tw_transport_lose_connection(&t->base);
    assert_int_equal(p.stops, 1);
    tw_string_transport_free(t);
    rec_done(&r, 0);

    /* A pull producer: asked once as it registers, then at each drain that
     * ends at or below the low mark. */
    t = open_rec(&r, &rec_ops);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 0, TW_CAP_PAUSE);
    prod_t q = { .base.ops = &prod_ops, .t = &t->base, .chunk = 400, .left = 3 };
    assert_int_equal(tw_transport_register_producer(&t->base, &q.base, false), 0);
    assert_int_equal(q.resumes, 1);
    assert_int_equal(tw_transport_queued(&t->base), 400);
    tw_string_transport_drain(t, 250);
    assert_int_equal(q.resumes, 1);
    tw_string_transport_drain(t, 50);
    assert_int_equal(q.resumes, 2);
    assert_int_equal(tw_transport_queued(&t->base), 500);
    tw_string_transport_drain(t, SIZE_MAX);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_int_equal(q.resumes, 4);
    assert_int_equal(tw_string_transport_len(t), 1200);
    tw_string_transport_free(t);
    assert_int_equal(q.stops, 1);
    rec_done(&r, 0);
}

static void string_cap_policies(void **state)
{
    rec_t r;
    char buf[60] = { 0 };
    for (int policy = TW_CAP_PAUSE; policy <= TW_CAP_ABORT; policy++) {
        tw_string_transport_t *t = open_rec(&r, &rec_ops);
        tw_string_transport_set_peer_reading(t, false);
        tw_transport_set_limits(&t->base, 10, 20, 50, (tw_cap_policy_t)policy);
        assert_int_equal(tw_transport_write(&t->base, buf, 40), 0);
        int rc = tw_transport_write(&t->base, buf, 20);
        if (policy == TW_CAP_PAUSE) { /* queued, and the peer is not read */
            assert_int_equal(rc, 0);
            assert_true(t->cap_paused);
            assert_int_equal(tw_string_transport_feed_str(t, "x"), -EAGAIN);
            tw_string_transport_drain(t, 50);
            assert_int_equal(tw_string_transport_feed_str(t, "x"), 0);
        } else if (policy == TW_CAP_FAIL) { /* refused, nothing queued */
            assert_int_equal(rc, -ENOBUFS);
            assert_int_equal(tw_string_transport_len(t), 40);
            assert_false(t->closing);
        } else {
            assert_int_equal(rc, -ENOBUFS);
            assert_true(t->aborted && t->closing);
            assert_int_equal(tw_string_transport_settle(t), 1);
        }
        tw_string_transport_free(t);
        rec_done(&r, policy == TW_CAP_ABORT ? -ENOBUFS : 0);
    }
}

static void string_pause_reading_and_its_own_producer(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    tw_transport_pause_reading(&t->base);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), -EAGAIN);
    assert_int_equal(tw_string_transport_feed_eof(t), -EAGAIN);
    tw_transport_resume_reading(&t->base);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), 0);
    t->base.as_producer.ops->pause_producing(&t->base.as_producer);
    assert_true(t->reading_paused);
    t->base.as_producer.ops->resume_producing(&t->base.as_producer);
    assert_int_equal(t->pause_calls + t->resume_calls, 4);
    t->base.as_producer.ops->stop_producing(&t->base.as_producer);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(tw_transport_set_nodelay(&t->base, true), 0);
    assert_int_equal(t->nodelay, 1);
    assert_int_equal(t->keepalive, -1);
    tw_string_transport_free(t);
    rec_done(&r, 0);
}

static void string_addresses(void **state)
{
    rec_t r;
    tw_string_transport_t *t = open_rec(&r, &rec_ops);
    struct sockaddr_storage ss;
    socklen_t len;
    char ip[64];
    assert_int_equal(tw_transport_peer_address(&t->base, &ss, &len), 0);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    assert_int_equal(len, sizeof *sin);
    assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip), "192.168.1.1");
    assert_int_equal(ntohs(sin->sin_port), 54321);
    assert_int_equal(tw_transport_host_address(&t->base, &ss, &len), 0);
    assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip), "10.0.0.1");
    struct sockaddr_in6 six = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
    six.sin6_addr = in6addr_loopback;
    assert_int_equal(tw_string_transport_set_peer_address(t, (void *)&six, sizeof six), 0);
    assert_int_equal(tw_string_transport_set_peer_address(t, (void *)&six, 0), -EINVAL);
    assert_int_equal(tw_transport_peer_address(&t->base, &ss, &len), 0);
    assert_int_equal(len, sizeof six);
    assert_memory_equal(&ss, &six, sizeof six);
    tw_string_transport_free(t);
    rec_done(&r, 0);
}

static void string_settles_from_the_reactor(void **state)
{
    tw_reactor_t *re;
    tw_fake_clock_t clock;
    assert_int_equal(tw_reactor_new(&re), 0);
    tw_fake_clock_attach(&clock, re, 0);
    rec_t r, s;
    rec_init(&r, &rec_ops);
    rec_init(&s, &rec_ops);
    tw_string_transport_t *t = tw_string_transport_new(re, &r.base);
    tw_string_transport_t *u = tw_string_transport_new(re, &s.base);
    assert_ptr_equal(t->base.reactor, re);
    r.lose_on_data = s.lose_on_data = true;
    assert_int_equal(tw_string_transport_feed_str(t, "bye"), 0);
    assert_int_equal(r.lost, 0);
    assert_true(tw_reactor_check_clean(re, NULL, 0) < 0); /* the close is pending */
    tw_fake_clock_advance(&clock, 0);
    rec_done(&r, 0);
    tw_string_transport_free(t);
    assert_int_equal(tw_string_transport_feed_str(u, "bye"), 0);
    assert_true(tw_reactor_check_clean(re, NULL, 0) < 0);
    tw_string_transport_free(u); /* settles, and cancels its delayed call */
    rec_done(&s, 0);
    char what[128];
    assert_int_equal(tw_reactor_check_clean(re, what, sizeof what), 0);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(re);
}

static void string_counts_in_its_factory(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_protocol_t *p = f.base.ops->build_protocol(&f.base, NULL, 0);
    tw_string_transport_t *t = tw_string_transport_new(NULL, p);
    assert_int_equal(tw_factory_connection_count(&f.base), 1);
    tw_factory_lose_connections(&f.base);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(tw_factory_connection_count(&f.base), 1);
    assert_int_equal(tw_string_transport_settle(t), 1);
    assert_int_equal(tw_factory_connection_count(&f.base), 0);
    tw_string_transport_free(t);
}

/* ---- echo, from test_wire.c, on the kit ------------------------------------------ */

static tw_string_transport_t *open_echo(tw_wire_factory_t *f)
{
    tw_wire_echo_factory_init(f);
    tw_string_transport_t *t =
        tw_string_transport_new(NULL, f->base.ops->build_protocol(&f->base, NULL, 0));
    assert_non_null(t);
    return t;
}

static void assert_value(const tw_string_transport_t *t, const void *want, size_t len)
{
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    assert_int_equal(n, len);
    assert_memory_equal(out, want, len);
}

static void echo_returns_every_byte_fed_whole(void **state)
{
    tw_wire_factory_t f;
    tw_string_transport_t *t = open_echo(&f);
    static const char msg[] = "hello\0world\r\n\xff";
    assert_int_equal(tw_string_transport_feed(t, msg, sizeof msg), 0);
    assert_value(t, msg, sizeof msg);
    unsigned char big[10000];
    fill_pattern(big, sizeof big);
    tw_string_transport_clear(t);
    assert_int_equal(tw_string_transport_feed(t, big, sizeof big), 0);
    assert_value(t, big, sizeof big);
    assert_int_equal(t->lose_calls + t->abort_calls, 0);
    tw_string_transport_free(t);
}

static void echo_returns_every_byte_fed_one_at_a_time(void **state)
{
    tw_wire_factory_t f;
    tw_string_transport_t *t = open_echo(&f);
    unsigned char big[3000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_string_transport_feed_bytewise(t, big, sizeof big), 0);
    assert_value(t, big, sizeof big);
    assert_int_equal(t->writes, (int)sizeof big);
    tw_string_transport_free(t);
}

static void echo_stops_reading_a_peer_that_does_not_read(void **state)
{
    tw_wire_factory_t f;
    tw_string_transport_t *t = open_echo(&f);
    assert_ptr_equal(t->producer, &t->base.as_producer);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 0, TW_CAP_PAUSE);
    unsigned char buf[2400];
    fill_pattern(buf, sizeof buf);
    assert_int_equal(tw_string_transport_feed(t, buf, 600), 0);
    assert_false(t->reading_paused);
    assert_int_equal(tw_string_transport_feed(t, buf + 600, 600), 0); /* past high */
    assert_true(t->reading_paused);
    assert_int_equal(tw_string_transport_feed(t, buf + 1200, 600), -EAGAIN);
    tw_string_transport_drain(t, 1150); /* 50: below low, read again */
    assert_false(t->reading_paused);
    assert_int_equal(tw_string_transport_feed_bytewise(t, buf + 1200, 900), 0);
    assert_int_equal(tw_string_transport_feed(t, buf + 2100, 300), 0);
    assert_true(t->reading_paused);
    assert_int_equal(t->producer_pauses, 2);
    assert_value(t, buf, sizeof buf);
    tw_string_transport_free(t);
}

static void echo_loses_the_connection_at_eof(void **state)
{
    tw_wire_factory_t f;
    tw_string_transport_t *t = open_echo(&f);
    assert_int_equal(tw_string_transport_feed_str(t, "last words"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(tw_string_transport_settle(t), 1);
    assert_true(t->lost && !t->aborted);
    assert_value(t, "last words", 10);
    tw_string_transport_free(t);
}

/* ---- the loopback pair -------------------------------------------------------------- */

/* A client rec_t and an echo server. */
static tw_loopback_t *open_pair(tw_reactor_t *re, rec_t *c, tw_wire_factory_t *f)
{
    seq_g = 0;
    rec_init(c, &rec_eof_ops);
    tw_wire_echo_factory_init(f);
    tw_loopback_t *lb = tw_loopback_new(re, &c->base, f->base.ops->build_protocol(&f->base,
                                                                                 NULL, 0));
    assert_non_null(lb);
    return lb;
}

static void loopback_echo_round_trip(void **state)
{
    rec_t c;
    tw_wire_factory_t f;
    tw_loopback_t *lb = open_pair(NULL, &c, &f);
    tw_string_transport_t *ct = tw_loopback_client(lb);
    assert_false(tw_loopback_pump(lb));
    write_str(ct, "ping");
    assert_true(tw_loopback_pump(lb)); /* to the server, which echoes ... */
    assert_int_equal(c.in_len, 0);
    assert_true(tw_loopback_pump(lb)); /* ... back */
    assert_string_equal(c.in, "ping");
    assert_false(tw_loopback_pump(lb));

    static unsigned char big[300000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_transport_write(&ct->base, big, sizeof big), 0);
    assert_true(tw_loopback_pump_all(lb) > 2);
    assert_int_equal(c.in_len, 4 + sizeof big);
    assert_memory_equal(c.in + 4, big, sizeof big);
    int datas = c.datas;
    assert_int_equal(tw_loopback_set_chunk(lb, 1), 0);
    write_str(ct, "abc");
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(c.datas, datas + 3);
    assert_int_equal(tw_factory_connection_count(&f.base), 1);
    tw_loopback_free(lb);
    assert_int_equal(tw_factory_connection_count(&f.base), 0);
    rec_done(&c, 0);
}

static void loopback_half_close_delivers_every_byte_then_eof(void **state)
{
    rec_t c, s;
    seq_g = 0;
    rec_init(&c, &rec_eof_ops);
    rec_init(&s, &rec_eof_ops);
    s.eof_reply = "bye";
    s.lose_at_eof = true;
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base, &s.base);
    tw_string_transport_t *ct = tw_loopback_client(lb);
    static unsigned char big[200000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_transport_write(&ct->base, big, sizeof big), 0);
    assert_int_equal(tw_transport_lose_write_connection(&ct->base), 0);
    assert_int_equal(tw_transport_write(&ct->base, "x", 1), -EPIPE);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(s.in_len, sizeof big);
    assert_memory_equal(s.in, big, sizeof big);
    assert_int_equal(s.eofs, 1);
    assert_int_equal(s.eof_in_len, sizeof big);
    assert_string_equal(c.in, "bye"); /* the half-closed side still reads */
    assert_int_equal(c.eofs, 1);
    assert_true(s.lost_at < c.lost_at);
    rec_done(&s, 0);
    rec_done(&c, 0);
    tw_loopback_free(lb);
    assert_int_equal(c.lost + s.lost, 2);
}

static void loopback_lose_flushes_then_closes_both(void **state)
{
    rec_t c, s;
    seq_g = 0;
    rec_init(&c, &rec_ops);
    rec_init(&s, &rec_ops);
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base, &s.base);
    tw_string_transport_t *st = tw_loopback_server(lb);
    static unsigned char big[100000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_transport_write(&st->base, big, sizeof big), 0);
    tw_transport_lose_connection(&st->base);
    assert_int_equal(tw_transport_write(&st->base, "x", 1), -EPIPE);
    assert_false(st->closing); /* waits for its queue */
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(c.in_len, sizeof big);
    assert_memory_equal(c.in, big, sizeof big);
    assert_int_equal(tw_loopback_client(lb)->lose_calls, 1); /* EOF's default */
    assert_true(s.lost_at < c.lost_at);
    rec_done(&s, 0);
    rec_done(&c, 0);
    tw_loopback_free(lb);
}

static void loopback_abort_resets_the_other_side(void **state)
{
    rec_t c, s;
    seq_g = 0;
    rec_init(&c, &rec_ops);
    rec_init(&s, &rec_ops);
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base, &s.base);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    write_str(st, "in flight");
    write_str(ct, "never delivered");
    tw_transport_abort_connection(&ct->base);
    assert_int_equal(c.lost, 0); /* at a safe point: the next pump */
    assert_true(tw_loopback_pump(lb));
    assert_int_equal(s.in_len + c.in_len, 0);
    assert_int_equal(ct->close_code, -ECONNABORTED);
    assert_int_equal(st->close_code, -ECONNRESET);
    assert_true(c.lost_at < s.lost_at);
    assert_int_equal(tw_loopback_pump_all(lb), 0);
    rec_done(&c, -ECONNABORTED);
    rec_done(&s, -ECONNRESET);
    tw_loopback_free(lb);
}

static void loopback_producer_paused_until_pumped(void **state)
{
    rec_t c, s;
    seq_g = 0;
    rec_init(&c, &rec_ops);
    rec_init(&s, &rec_ops);
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base, &s.base);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    tw_transport_set_limits(&ct->base, 100, 1000, 0, TW_CAP_PAUSE);
    prod_t p = { .base.ops = &prod_ops };
    assert_int_equal(tw_transport_register_producer(&ct->base, &p.base, true), 0);
    char buf[1500] = { 0 };
    assert_int_equal(tw_transport_write(&ct->base, buf, sizeof buf), 0);
    assert_int_equal(p.pauses, 1); /* nobody pumped */
    assert_true(tw_loopback_pump(lb));
    assert_int_equal(p.resumes, 1);
    tw_transport_pause_reading(&st->base); /* the server stops reading */
    assert_int_equal(tw_transport_write(&ct->base, buf, sizeof buf), 0);
    assert_int_equal(tw_loopback_pump_all(lb), 0);
    assert_int_equal(p.pauses, 2);
    assert_int_equal(tw_transport_queued(&ct->base), sizeof buf);
    tw_transport_resume_reading(&st->base);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(p.resumes, 2);
    assert_int_equal(s.in_len, 2 * sizeof buf);
    /* A FIN waits, in order, for a reader that paused. */
    tw_transport_pause_reading(&st->base);
    assert_int_equal(tw_transport_lose_write_connection(&ct->base), 0);
    assert_int_equal(p.stops, 0);
    assert_true(tw_loopback_pump_all(lb) >= 0);
    assert_true(ct->write_shut && !st->eof);
    tw_transport_resume_reading(&st->base);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_true(st->eof); /* its default: lose, and the client is closed too */
    rec_done(&c, 0);
    rec_done(&s, 0);
    assert_int_equal(p.stops, 1);
    tw_loopback_free(lb);
}

static void loopback_echo_throttles_a_client_that_does_not_read(void **state)
{
    rec_t c;
    tw_wire_factory_t f;
    tw_loopback_t *lb = open_pair(NULL, &c, &f);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    tw_transport_set_limits(&st->base, 100, 1000, 0, TW_CAP_PAUSE);
    tw_transport_pause_reading(&ct->base);
    unsigned char big[5000];
    fill_pattern(big, sizeof big);
    for (size_t i = 0; i < sizeof big; i += 500)
        assert_int_equal(tw_transport_write(&ct->base, big + i, 500), 0);
    assert_int_equal(tw_loopback_set_chunk(lb, 500), 0);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_true(st->reading_paused); /* its echo queue passed high */
    assert_true(tw_transport_queued(&st->base) > 1000);
    assert_true(tw_transport_queued(&ct->base) > 0); /* the rest waits at the client */
    tw_transport_resume_reading(&ct->base);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(c.in_len, sizeof big);
    assert_memory_equal(c.in, big, sizeof big);
    tw_loopback_free(lb);
    rec_done(&c, 0);
}

static void loopback_pumps_itself_from_the_reactor(void **state)
{
    tw_reactor_t *re;
    tw_fake_clock_t clock;
    assert_int_equal(tw_reactor_new(&re), 0);
    tw_fake_clock_attach(&clock, re, 0);
    rec_t c;
    tw_wire_factory_t f;
    tw_loopback_t *lb = open_pair(NULL, &c, &f);
    assert_int_equal(tw_loopback_start_auto(lb), -EINVAL); /* no reactor */
    tw_loopback_free(lb);
    free(c.in);
    lb = open_pair(re, &c, &f);
    assert_int_equal(tw_loopback_start_auto(lb), 0);
    write_str(tw_loopback_client(lb), "ping");
    tw_fake_clock_advance(&clock, 0);
    assert_string_equal(c.in, "ping");
    tw_transport_lose_connection(&tw_loopback_client(lb)->base);
    tw_fake_clock_advance(&clock, 0);
    rec_done(&c, 0);
    assert_true(tw_loopback_server(lb)->lost);
    char what[128];
    assert_int_equal(tw_reactor_check_clean(re, what, sizeof what), 0);
    tw_loopback_free(lb);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(re);
}

static void loopback_free_ends_what_is_open(void **state)
{
    rec_t c, s;
    seq_g = 0;
    rec_init(&c, &rec_ops);
    rec_init(&s, &rec_ops);
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base, &s.base);
    assert_true(s.made_at < c.made_at); /* the server is made first */
    tw_loopback_free(lb);
    rec_done(&c, 0);
    rec_done(&s, 0);
}

static void loopback_pull_producer_that_never_ends(void **state)
{
    rec_t c;
    tw_wire_factory_t f;
    seq_g = 0;
    rec_init(&c, &rec_ops);
    tw_wire_chargen_factory_init(&f);
    tw_loopback_t *lb = tw_loopback_new(NULL, &c.base,
                                        f.base.ops->build_protocol(&f.base, NULL, 0));
    assert_int_equal(tw_loopback_pump_all(lb), -EAGAIN);
    assert_true(c.in_len > 1000000);
    assert_memory_equal(c.in, " !\"#$%&'()*+,-./0123456789", 26);
    assert_true(tw_transport_queued(&tw_loopback_server(lb)->base) <= 65536);
    tw_loopback_free(lb);
    rec_done(&c, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(string_captures_writes),
        cmocka_unit_test(string_feeds_whole_and_bytewise),
        cmocka_unit_test(string_lose_is_recorded_and_settled_later),
        cmocka_unit_test(string_abort_is_recorded_with_a_failure),
        cmocka_unit_test(string_lifetime_is_made_data_eof_lost_destroy),
        cmocka_unit_test(string_disconnect_inside_a_callback_waits),
        cmocka_unit_test(string_lose_and_half_close_wait_for_the_queue),
        cmocka_unit_test(string_producers_follow_the_water_marks),
        cmocka_unit_test(string_cap_policies),
        cmocka_unit_test(string_pause_reading_and_its_own_producer),
        cmocka_unit_test(string_addresses),
        cmocka_unit_test(string_settles_from_the_reactor),
        cmocka_unit_test(string_counts_in_its_factory),
        cmocka_unit_test(echo_returns_every_byte_fed_whole),
        cmocka_unit_test(echo_returns_every_byte_fed_one_at_a_time),
        cmocka_unit_test(echo_stops_reading_a_peer_that_does_not_read),
        cmocka_unit_test(echo_loses_the_connection_at_eof),
        cmocka_unit_test(loopback_echo_round_trip),
        cmocka_unit_test(loopback_half_close_delivers_every_byte_then_eof),
        cmocka_unit_test(loopback_lose_flushes_then_closes_both),
        cmocka_unit_test(loopback_abort_resets_the_other_side),
        cmocka_unit_test(loopback_producer_paused_until_pumped),
        cmocka_unit_test(loopback_echo_throttles_a_client_that_does_not_read),
        cmocka_unit_test(loopback_pumps_itself_from_the_reactor),
        cmocka_unit_test(loopback_free_ends_what_is_open),
        cmocka_unit_test(loopback_pull_producer_that_never_ends),
    };
    TW_TEST_MAIN(tests);
}
