/* test_wire.c -- echo, discard, chargen, qotd and daytime over the testing
 * kit: the string transport (one protocol, the test playing the peer) and
 * the loopback pair (a client and a service, back-pressure end to end). */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tw_loopback.h"
#include "tw_string_transport.h"
#include "tw_testing.h"
#include "tw_wire.h"

/* ---- helpers ------------------------------------------------------------ */

/* Counts the calls a protocol gets, in order, by wrapping its ops table
 * (one wrapped protocol at a time). */
static struct {
    const tw_protocol_ops_t *orig;
    tw_protocol_ops_t ops;
    int seq, made_at, lost_at, destroyed_at;
    int made, received, lost, destroyed, after_lost;
    int lost_code; /* the failure's code in connection_lost; 0: clean */
} cnt;

static void cnt_made(tw_protocol_t *p, tw_transport_t *t)
{
    cnt.made++;
    cnt.made_at = ++cnt.seq;
    if (cnt.orig->connection_made)
        cnt.orig->connection_made(p, t);
}

static void cnt_received(tw_protocol_t *p, const void *data, size_t len)
{
    cnt.received++;
    cnt.after_lost += cnt.lost > 0;
    cnt.orig->data_received(p, data, len);
}

static void cnt_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    cnt.lost++;
    cnt.lost_at = ++cnt.seq;
    cnt.lost_code = reason ? reason->code : 0;
    if (cnt.orig->connection_lost)
        cnt.orig->connection_lost(p, reason);
}

static void cnt_destroy(tw_protocol_t *p)
{
    cnt.destroyed++;
    cnt.destroyed_at = ++cnt.seq;
    cnt.orig->destroy(p);
}

static void cnt_wrap(tw_protocol_t *p)
{
    memset(&cnt, 0, sizeof cnt);
    cnt.orig = p->ops;
    cnt.ops = *p->ops;
    cnt.ops.connection_made = cnt_made;
    cnt.ops.data_received = cnt_received;
    cnt.ops.connection_lost = cnt_lost;
    cnt.ops.destroy = cnt_destroy;
    p->ops = &cnt.ops;
}

static tw_protocol_t *build(tw_wire_factory_t *f)
{
    tw_protocol_t *p = f->base.ops->build_protocol(&f->base, NULL, 0);
    assert_non_null(p);
    return p;
}

/* A connected string transport running a fresh protocol from f. */
static tw_string_transport_t *open_conn(tw_wire_factory_t *f)
{
    tw_string_transport_t *t = tw_string_transport_new(NULL, build(f));
    assert_non_null(t);
    return t;
}

static void fill_pattern(unsigned char *buf, size_t len)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

static void assert_output(const tw_string_transport_t *t, const void *want, size_t len)
{
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    assert_int_equal(n, len);
    assert_memory_equal(out, want, len);
}

/* The connection ended cleanly, and the protocol is gone. */
static void assert_closed_cleanly(tw_string_transport_t *t)
{
    tw_string_transport_settle(t);
    assert_true(t->lost);
    assert_false(t->aborted);
    assert_int_equal(t->close_code, 0);
    assert_null(t->base.protocol);
}

/* The client side of a loopback pair: keeps what arrives, and EOF. */
typedef struct sink {
    tw_protocol_t base;
    char *in;
    size_t in_len, in_cap;
    int eofs, lost, destroyed, lost_code;
    size_t eof_in_len; /* bytes received when EOF came */
} sink_t;

static void sink_data(tw_protocol_t *p, const void *data, size_t len)
{
    sink_t *s = (sink_t *)p;
    assert_int_equal(s->lost, 0);
    if (s->in_len + len + 1 > s->in_cap) {
        s->in_cap = (s->in_len + len + 1) * 2;
        s->in = realloc(s->in, s->in_cap);
        assert_non_null(s->in);
    }
    memcpy(s->in + s->in_len, data, len);
    s->in_len += len;
    s->in[s->in_len] = '\0';
}

static void sink_eof(tw_protocol_t *p)
{
    sink_t *s = (sink_t *)p;
    s->eofs++;
    s->eof_in_len = s->in_len;
}

static void sink_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    sink_t *s = (sink_t *)p;
    s->lost++;
    s->lost_code = reason ? reason->code : 0;
}

static void sink_destroy(tw_protocol_t *p)
{
    sink_t *s = (sink_t *)p;
    assert_int_equal(s->lost, 1);
    s->destroyed++;
}

/* It keeps the connection at EOF (a half-closed client still reads). */
static const tw_protocol_ops_t sink_ops = {
    .data_received = sink_data,
    .eof_received = sink_eof,
    .connection_lost = sink_lost,
    .destroy = sink_destroy,
};

/* A sink client connected in memory to a fresh service from f. */
static tw_loopback_t *open_pair(sink_t *c, tw_wire_factory_t *f)
{
    memset(c, 0, sizeof *c);
    c->base.ops = &sink_ops;
    tw_loopback_t *lb = tw_loopback_new(NULL, &c->base, build(f));
    assert_non_null(lb);
    return lb;
}

/* ---- echo ----------------------------------------------------------------- */

static void echo_returns_every_byte_fed_whole(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    static const char msg[] = "hello\0world\r\n\xff";
    assert_int_equal(tw_string_transport_feed(t, msg, sizeof msg), 0);
    assert_output(t, msg, sizeof msg);

    unsigned char big[10000];
    fill_pattern(big, sizeof big);
    tw_string_transport_clear(t);
    assert_int_equal(tw_string_transport_feed(t, big, sizeof big), 0);
    assert_output(t, big, sizeof big);
    assert_int_equal(t->writes, 2); /* one write per read */
    assert_int_equal(t->lose_calls + t->abort_calls, 0);
    tw_string_transport_free(t);
}

static void echo_returns_every_byte_fed_one_at_a_time(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    unsigned char big[3000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_string_transport_feed_bytewise(t, big, sizeof big), 0);
    assert_output(t, big, sizeof big);
    assert_int_equal(t->writes, (int)sizeof big);
    tw_string_transport_free(t);
}

static void echo_registers_its_transport_as_streaming_producer(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    assert_int_equal(t->register_calls, 1);
    assert_ptr_equal(t->producer, &t->base.as_producer);
    assert_true(t->streaming);
    assert_int_equal(t->producer_pauses + t->producer_resumes, 0);
    tw_string_transport_free(t);
}

static void echo_stops_reading_a_peer_that_does_not_read(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 0, TW_CAP_PAUSE);

    unsigned char buf[2400];
    fill_pattern(buf, sizeof buf);
    assert_int_equal(tw_string_transport_feed(t, buf, 600), 0);
    assert_false(t->reading_paused);
    assert_int_equal(tw_string_transport_feed(t, buf + 600, 600), 0); /* queue passes high */
    assert_true(t->reading_paused);
    assert_int_equal(t->producer_pauses, 1);
    assert_int_equal(t->pause_calls, 1);
    /* The peer keeps sending and never reads: nothing more is read. */
    assert_int_equal(tw_string_transport_feed(t, buf + 1200, 600), -EAGAIN);
    assert_int_equal(tw_transport_queued(&t->base), 1200);

    tw_string_transport_drain(t, 1099); /* down to 101, above the low mark */
    assert_true(t->reading_paused);
    tw_string_transport_drain(t, 51); /* 50, below the low mark: read again */
    assert_false(t->reading_paused);
    assert_int_equal(t->producer_resumes, 1);
    assert_int_equal(tw_string_transport_feed_bytewise(t, buf + 1200, 900), 0); /* 950 queued */
    assert_false(t->reading_paused);
    assert_int_equal(tw_string_transport_feed(t, buf + 2100, 300), 0); /* 1250: past high again */
    assert_true(t->reading_paused);
    assert_int_equal(t->producer_pauses, 2);
    assert_output(t, buf, sizeof buf);
    assert_int_equal(t->lose_calls + t->abort_calls, 0);
    tw_string_transport_free(t);
}

static void echo_aborts_when_the_transport_refuses_a_write(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    unsigned char buf[1600];
    fill_pattern(buf, sizeof buf);

    /* TW_CAP_FAIL refuses a write that would pass the cap: echo would have
     * to drop bytes, so it aborts instead. */
    tw_string_transport_t *t = open_conn(&f);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 1500, TW_CAP_FAIL);
    assert_int_equal(tw_string_transport_feed(t, buf, 600), 0);
    assert_int_equal(tw_string_transport_feed(t, buf + 600, 1000), 0); /* 1600 > cap */
    assert_int_equal(t->abort_calls, 1);
    assert_int_equal(t->lose_calls, 0);
    assert_true(t->aborted && t->closing);
    assert_output(t, buf, 600); /* the refused write left nothing */
    assert_int_equal(tw_string_transport_feed_str(t, "y"), -EPIPE);
    assert_int_equal(tw_string_transport_settle(t), 1);
    assert_int_equal(t->close_code, -ECONNABORTED);
    tw_string_transport_free(t);

    /* TW_CAP_ABORT aborts by itself: echo's abort changes nothing. */
    t = open_conn(&f);
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 1000, 1500, TW_CAP_ABORT);
    assert_int_equal(tw_string_transport_feed(t, buf, sizeof buf), 0);
    assert_true(t->aborted);
    assert_int_equal(t->abort_calls, 1);
    assert_int_equal(tw_string_transport_settle(t), 1);
    assert_int_equal(t->close_code, -ENOBUFS);
    tw_string_transport_free(t);
}

static void echo_loses_the_connection_at_eof(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    assert_int_equal(tw_string_transport_feed_str(t, "last words"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(t->abort_calls, 0);
    assert_output(t, "last words", 10);
    assert_closed_cleanly(t);
    tw_string_transport_free(t);

    /* With its echo still queued, the connection ends only once the peer
     * has read every byte. */
    t = open_conn(&f);
    tw_string_transport_set_peer_reading(t, false);
    assert_int_equal(tw_string_transport_feed_str(t, "last words"), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_true(t->disconnecting && !t->closing);
    tw_string_transport_drain(t, 9);
    assert_false(t->closing);
    tw_string_transport_drain(t, 1);
    assert_true(t->closing);
    assert_closed_cleanly(t);
    assert_output(t, "last words", 10);
    tw_string_transport_free(t);
}

static void echo_through_a_pair_throttles_a_client_that_does_not_read(void **state)
{
    sink_t c;
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_loopback_t *lb = open_pair(&c, &f);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    enum { CHUNK = 4096, HIGH = 8000 };
    tw_transport_set_limits(&st->base, 1000, HIGH, 0, TW_CAP_PAUSE);
    assert_int_equal(tw_loopback_set_chunk(lb, CHUNK), 0);

    /* The client sends 200 kB and reads nothing: the service reads until its
     * echo passes the high mark, then the rest waits at the client. */
    static unsigned char big[200000];
    fill_pattern(big, sizeof big);
    tw_transport_pause_reading(&ct->base);
    assert_int_equal(tw_transport_write(&ct->base, big, sizeof big), 0);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_true(st->reading_paused);
    assert_int_equal(st->producer_pauses, 1);
    size_t held = tw_transport_queued(&st->base);
    assert_true(held > HIGH && held <= HIGH + CHUNK); /* one read past the mark */
    assert_int_equal(tw_transport_queued(&ct->base), sizeof big - held);
    assert_int_equal(c.in_len, 0);

    /* The client reads: every byte comes back, in order, and the service's
     * queue never holds more than one read past the high mark. */
    tw_transport_resume_reading(&ct->base);
    for (int i = 0; i < 1000 && tw_loopback_pump(lb); i++)
        assert_true(tw_transport_queued(&st->base) <= HIGH + CHUNK);
    assert_int_equal(c.in_len, sizeof big);
    assert_memory_equal(c.in, big, sizeof big);
    assert_true(st->producer_pauses > 1); /* throttled again and again */
    assert_int_equal(st->producer_resumes, st->producer_pauses);
    assert_false(st->reading_paused);
    assert_int_equal(tw_factory_connection_count(&f.base), 1);
    tw_loopback_free(lb);
    assert_int_equal(tw_factory_connection_count(&f.base), 0);
    assert_int_equal(c.destroyed, 1);
    free(c.in);
}

static void echo_through_a_pair_returns_every_byte_before_its_fin(void **state)
{
    sink_t c;
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    tw_loopback_t *lb = open_pair(&c, &f);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    static unsigned char big[300000];
    fill_pattern(big, sizeof big);
    assert_int_equal(tw_transport_write(&ct->base, big, sizeof big), 0);
    assert_int_equal(tw_transport_lose_write_connection(&ct->base), 0);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.eof_in_len, sizeof big); /* the FIN came after every byte */
    assert_memory_equal(c.in, big, sizeof big);
    assert_int_equal(st->lose_calls, 1); /* the default at EOF */
    assert_true(st->lost && st->close_code == 0);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_code, 0);
    tw_loopback_free(lb);
    free(c.in);
}

/* ---- discard ---------------------------------------------------------------- */

static void discard_writes_nothing(void **state)
{
    tw_wire_factory_t f;
    tw_wire_discard_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    unsigned char buf[5000];
    fill_pattern(buf, sizeof buf);
    assert_int_equal(tw_string_transport_feed(t, buf, sizeof buf), 0);
    assert_int_equal(tw_string_transport_feed_bytewise(t, buf, 500), 0);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(t->writes, 0);
    assert_output(t, "", 0);
    assert_int_equal(t->register_calls, 0);
    assert_int_equal(t->lose_calls, 1); /* the default at EOF */
    assert_closed_cleanly(t);
    tw_string_transport_free(t);
}

/* ---- chargen ----------------------------------------------------------------- */

#define LINE (TW_WIRE_CHARGEN_WIDTH + 2)

/* Every line of `out` follows RFC 864, the first being line number `first`. */
static void assert_chargen_lines(const char *out, size_t len, unsigned first)
{
    assert_int_equal(len % LINE, 0);
    for (size_t i = 0; i < len / LINE; i++) {
        const char *l = out + i * LINE;
        unsigned n = first + (unsigned)i;
        assert_int_equal(l[0], 32 + n % 95);
        for (unsigned k = 0; k < TW_WIRE_CHARGEN_WIDTH; k++)
            assert_int_equal((unsigned char)l[k], 32 + (n + k) % 95);
        assert_memory_equal(l + TW_WIRE_CHARGEN_WIDTH, "\r\n", 2);
    }
}

static void chargen_first_lines_follow_rfc_864(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    static const char want[] =
        " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
        "\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n";
    size_t len;
    const char *out = tw_string_transport_value(t, &len);
    assert_true(len >= 3 * LINE);
    assert_memory_equal(out, want, sizeof want - 1);
    tw_string_transport_free(t);
}

static void chargen_lines_rotate_through_the_ring(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    while (tw_string_transport_len(t) < 400 * LINE) /* several chunks, past the ring's wrap */
        tw_string_transport_drain(t, SIZE_MAX);
    size_t len;
    const char *out = tw_string_transport_value(t, &len);
    assert_chargen_lines(out, len, 0);
    /* Line 95 is line 0 again; line 94 starts with '~' and wraps to ' '. */
    assert_memory_equal(out + 95 * LINE, out, LINE);
    assert_int_equal(out[94 * LINE], '~');
    assert_int_equal(out[94 * LINE + 1], ' ');
    tw_string_transport_free(t);
}

static void chargen_writes_only_when_asked(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    assert_int_equal(t->register_calls, 1);
    assert_non_null(t->producer);
    assert_false(t->streaming);
    assert_int_equal(t->producer_resumes, 1);
    assert_int_equal(t->writes, 1); /* the first chunk, asked for at registration */

    /* Input is thrown away and asks for nothing. */
    assert_int_equal(tw_string_transport_feed_str(t, "please stop"), 0);
    assert_int_equal(tw_string_transport_feed_bytewise(t, "abc", 3), 0);
    assert_int_equal(t->writes, 1);

    /* A queue that does not drain below the low mark asks for nothing. */
    tw_string_transport_set_peer_reading(t, false);
    tw_transport_set_limits(&t->base, 100, 200, 0, TW_CAP_PAUSE);
    tw_string_transport_drain(t, 0);
    assert_int_equal(t->writes, 2); /* queued 0 <= low: one chunk */
    size_t chunk = tw_transport_queued(&t->base);
    assert_true(chunk > 100);
    assert_int_equal(chunk % LINE, 0);
    tw_string_transport_drain(t, chunk - 101);
    assert_int_equal(t->writes, 2);
    tw_string_transport_drain(t, 1);
    assert_int_equal(t->writes, 3);
    assert_int_equal(tw_transport_queued(&t->base), 100 + chunk);
    /* Never paused: a pull producer only writes when asked. */
    assert_int_equal(t->producer_pauses, 0);

    size_t len;
    const char *out = tw_string_transport_value(t, &len);
    assert_int_equal(len, 3 * chunk);
    assert_chargen_lines(out, len, 0);
    tw_string_transport_free(t);
}

/* twine's transports ask a pull producer for a first chunk as it registers
 * (as Twisted's do); another tw_transport_ops_t may wait for its queue to
 * drain instead.  quiet_register is the string transport's register with
 * that request hidden from the producer. */
static const tw_transport_ops_t *string_ops;
static int quiet_hidden; /* requests the producer did not see */

static void quiet_resume(tw_producer_t *p)
{
    (void)p;
    quiet_hidden++;
}

static int quiet_register(tw_transport_t *t, tw_producer_t *p, bool streaming)
{
    const tw_producer_ops_t *ops = p->ops;
    tw_producer_ops_t masked = *ops;
    masked.resume_producing = quiet_resume;
    p->ops = &masked;
    int rc = string_ops->register_producer(t, p, streaming);
    p->ops = ops;
    return rc;
}

static void chargen_starts_itself_when_registration_asks_nothing(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_string_transport_t *t = tw_string_transport_alloc(NULL, build(&f));
    assert_non_null(t);
    static tw_transport_ops_t quiet_ops;
    string_ops = t->base.ops;
    quiet_ops = *string_ops;
    quiet_ops.register_producer = quiet_register;
    t->base.ops = &quiet_ops;
    quiet_hidden = 0;
    tw_string_transport_make_connection(t);
    assert_int_equal(t->register_calls, 1);
    assert_int_equal(quiet_hidden, 1);
    assert_int_equal(t->writes, 1); /* it primed itself, once */
    tw_string_transport_drain(t, SIZE_MAX);
    assert_int_equal(t->writes, 2);
    size_t len;
    const char *out = tw_string_transport_value(t, &len);
    assert_chargen_lines(out, len, 0);
    tw_string_transport_free(t);
}

static void chargen_stops_when_stopped(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_string_transport_t *t = open_conn(&f);
    tw_producer_t *prod = t->producer;
    prod->ops->stop_producing(prod);
    tw_string_transport_drain(t, SIZE_MAX); /* asked again, after being stopped */
    assert_int_equal(t->producer_resumes, 2);
    assert_int_equal(t->writes, 1);
    tw_string_transport_free(t);

    /* Losing the connection stops it too, and it unregisters when lost. */
    t = open_conn(&f);
    assert_int_equal(tw_string_transport_feed_eof(t), 0);
    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(t->producer_stops, 1);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_int_equal(t->writes, 1);
    assert_int_equal(t->unregister_calls, 0);
    assert_closed_cleanly(t);
    assert_int_equal(t->unregister_calls, 1);
    assert_null(t->producer);
    tw_string_transport_free(t);
}

static void chargen_through_a_pair_writes_as_the_client_reads(void **state)
{
    sink_t c;
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    tw_loopback_t *lb = open_pair(&c, &f);
    tw_string_transport_t *ct = tw_loopback_client(lb), *st = tw_loopback_server(lb);
    size_t chunk = tw_string_transport_len(st);
    assert_true(chunk > 0 && chunk <= st->low);
    assert_int_equal(st->writes, 1);

    /* Each pump delivers the chunk queued; the drained queue asks for one
     * more: the service never holds more than a chunk. */
    for (int i = 1; i <= 10; i++) {
        assert_true(tw_loopback_pump(lb));
        assert_int_equal(c.in_len, i * chunk);
        assert_int_equal(st->writes, i + 1);
        assert_int_equal(tw_transport_queued(&st->base), chunk);
    }

    /* A client that stops reading: nothing moves, nothing more is written. */
    tw_transport_pause_reading(&ct->base);
    assert_int_equal(tw_loopback_pump_all(lb), 0);
    assert_int_equal(st->writes, 11);
    assert_int_equal(c.in_len, 10 * chunk);

    /* A client that reads in small pieces: each drain at or below the low
     * mark asks for a chunk, so the queue fills up to just past the low
     * mark and stays there. */
    tw_transport_resume_reading(&ct->base);
    assert_int_equal(tw_loopback_set_chunk(lb, 1000), 0);
    for (int i = 0; i < 200; i++) {
        assert_true(tw_loopback_pump(lb));
        assert_true(tw_transport_queued(&st->base) <= st->low + chunk);
    }
    assert_true(tw_transport_queued(&st->base) > st->low);
    assert_int_equal(st->producer_pauses, 0);
    assert_int_equal(c.in_len, 10 * chunk + 200 * 1000);
    assert_chargen_lines(c.in, c.in_len - c.in_len % LINE, 0);

    /* The client goes: chargen is stopped and unregisters. */
    tw_transport_lose_connection(&ct->base);
    assert_true(tw_loopback_pump_all(lb) > 0);
    assert_true(st->lost && ct->lost);
    assert_int_equal(st->producer_stops, 1);
    assert_int_equal(st->unregister_calls, 1);
    assert_int_equal(c.lost, 1);
    tw_loopback_free(lb);
    free(c.in);
}

/* ---- daytime and qotd ---------------------------------------------------------- */

static void daytime_writes_one_line_then_loses_the_connection(void **state)
{
    tw_wire_factory_t f;
    tw_wire_daytime_factory_init(&f);
    time_t before = time(NULL);
    tw_string_transport_t *t = open_conn(&f);
    time_t after = time(NULL);

    size_t len;
    const char *out = tw_string_transport_value(t, &len);
    assert_int_equal(t->writes, 1);
    assert_int_equal(len, strlen("Tue Mar 05 14:03:27 2024\r\n"));
    assert_memory_equal(out + len - 2, "\r\n", 2);
    assert_null(memchr(out, '\n', len - 1));

    struct tm tm = { 0 };
    const char *end = strptime(out, "%a %b %d %H:%M:%S %Y", &tm);
    assert_non_null(end);
    assert_string_equal(end, "\r\n");
    tm.tm_isdst = -1;
    time_t when = mktime(&tm);
    assert_true(when >= before - 1 && when <= after + 1);

    assert_int_equal(t->lose_calls, 1);
    assert_int_equal(t->abort_calls, 0);
    assert_int_equal(tw_string_transport_feed_str(t, "late"), -EPIPE);
    assert_closed_cleanly(t);
    tw_string_transport_free(t);
}

static void qotd_writes_the_quote_then_loses_the_connection(void **state)
{
    tw_wire_factory_t f;
    assert_int_equal(tw_wire_qotd_factory_init(&f, NULL), 0);
    tw_string_transport_t *t = open_conn(&f);
    assert_output(t, tw_wire_default_quote, strlen(tw_wire_default_quote));
    assert_true(strlen(tw_wire_default_quote) < 512);
    assert_int_equal(t->lose_calls, 1);
    assert_closed_cleanly(t);
    tw_string_transport_free(t);

    static const char quote[] = "Simple things should be simple.\r\n";
    assert_int_equal(tw_wire_qotd_factory_init(&f, quote), 0);
    t = open_conn(&f);
    assert_output(t, quote, sizeof quote - 1);
    assert_int_equal(t->writes, 1);
    assert_int_equal(t->lose_calls, 1);
    tw_string_transport_free(t);

    /* A peer slow to read still gets the whole quote before the close. */
    t = tw_string_transport_alloc(NULL, build(&f));
    tw_string_transport_set_peer_reading(t, false);
    tw_string_transport_make_connection(t);
    assert_true(t->disconnecting && !t->closing);
    tw_string_transport_drain(t, SIZE_MAX);
    assert_closed_cleanly(t);
    assert_output(t, quote, sizeof quote - 1);
    tw_string_transport_free(t);
}

static void qotd_refuses_a_quote_of_512_characters(void **state)
{
    char quote[513];
    memset(quote, 'q', sizeof quote - 1);
    quote[512] = '\0';
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    assert_int_equal(tw_wire_qotd_factory_init(&f, quote), -EINVAL);
    assert_ptr_equal(f.quote, NULL); /* untouched: still the echo factory */
    quote[TW_WIRE_QOTD_MAX] = '\0';
    assert_int_equal(tw_wire_qotd_factory_init(&f, quote), 0);
    tw_string_transport_t *t = open_conn(&f);
    assert_output(t, quote, TW_WIRE_QOTD_MAX);
    tw_string_transport_free(t);
}

/* ---- lifetime and factories ------------------------------------------------------ */

typedef void (*factory_init_fn)(tw_wire_factory_t *f);

static void qotd_default_init(tw_wire_factory_t *f)
{
    assert_int_equal(tw_wire_qotd_factory_init(f, NULL), 0);
}

static const factory_init_fn all_factories[] = {
    tw_wire_echo_factory_init,    tw_wire_discard_factory_init, tw_wire_chargen_factory_init,
    tw_wire_daytime_factory_init, qotd_default_init,
};
#define NFACTORIES (sizeof all_factories / sizeof *all_factories)

static void every_protocol_gets_connection_lost_once_then_destroy(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    for (size_t i = 0; i < NFACTORIES; i++) {
        for (int how = 0; how < 4; how++) {
            tw_wire_factory_t f;
            all_factories[i](&f);
            tw_protocol_t *p = build(&f);
            cnt_wrap(p);
            /* how == 3: the transport settles from a reactor */
            tw_string_transport_t *t = tw_string_transport_new(how == 3 ? r : NULL, p);
            assert_non_null(t);
            assert_int_equal(tw_factory_connection_count(&f.base), 1);
            tw_string_transport_feed_str(t, "some input\r\n"); /* refused by qotd, daytime */
            tw_failure_t *why = tw_failure_new("tcp", -ECONNRESET, NULL);
            assert_non_null(why);
            if (how == 0) {
                bool ending = t->closing; /* qotd and daytime: closing cleanly already */
                tw_string_transport_disconnect(t, why);
                tw_string_transport_disconnect(t, NULL); /* a second loss is ignored */
                assert_int_equal(cnt.lost_code, ending ? 0 : -ECONNRESET);
            } else if (how == 1) {
                tw_string_transport_feed_eof(t);
                tw_string_transport_disconnect(t, NULL);
                assert_int_equal(cnt.lost_code, 0);
            } else if (how == 3) {
                tw_string_transport_feed_eof(t);
                assert_int_equal(cnt.lost, 0); /* never inside the call */
                tw_fake_clock_advance(&clock, 0);
                assert_int_equal(cnt.lost, 1);
                assert_int_equal(cnt.lost_code, 0);
                char what[128];
                assert_int_equal(tw_reactor_check_clean(r, what, sizeof what), 0);
            } /* how == 2: tw_string_transport_free loses it */
            tw_string_transport_free(t);
            tw_failure_free(why);
            assert_int_equal(cnt.made, 1);
            assert_int_equal(cnt.lost, 1);
            assert_int_equal(cnt.destroyed, 1);
            assert_int_equal(cnt.after_lost, 0);
            assert_true(cnt.made_at < cnt.lost_at);
            assert_int_equal(cnt.destroyed_at, cnt.lost_at + 1);
            assert_int_equal(tw_factory_connection_count(&f.base), 0);
        }
    }
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), 0);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void a_protocol_never_connected_is_only_destroyed(void **state)
{
    for (size_t i = 0; i < NFACTORIES; i++) {
        tw_wire_factory_t f;
        all_factories[i](&f);
        tw_protocol_t *p = build(&f);
        cnt_wrap(p);
        tw_string_transport_t *t = tw_string_transport_alloc(NULL, p);
        assert_non_null(t);
        tw_string_transport_free(t);
        assert_int_equal(cnt.made + cnt.lost, 0);
        assert_int_equal(cnt.destroyed, 1);
    }
}

static void factory_builds_distinct_instances(void **state)
{
    for (size_t i = 0; i < NFACTORIES; i++) {
        tw_wire_factory_t f;
        all_factories[i](&f);
        assert_non_null(f.base.ops->build_protocol);
        tw_protocol_t *a = build(&f), *b = build(&f);
        assert_ptr_not_equal(a, b);
        assert_ptr_equal(a->ops, b->ops);
        assert_ptr_equal(a->factory, &f.base);
        assert_non_null(a->ops->data_received);
        assert_non_null(a->ops->destroy);
        a->ops->destroy(a);
        b->ops->destroy(b);
    }
    /* The services differ from each other. */
    tw_wire_factory_t e, d;
    tw_wire_echo_factory_init(&e);
    tw_wire_discard_factory_init(&d);
    assert_ptr_not_equal(e.base.ops, d.base.ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_returns_every_byte_fed_whole),
        cmocka_unit_test(echo_returns_every_byte_fed_one_at_a_time),
        cmocka_unit_test(echo_registers_its_transport_as_streaming_producer),
        cmocka_unit_test(echo_stops_reading_a_peer_that_does_not_read),
        cmocka_unit_test(echo_aborts_when_the_transport_refuses_a_write),
        cmocka_unit_test(echo_loses_the_connection_at_eof),
        cmocka_unit_test(echo_through_a_pair_throttles_a_client_that_does_not_read),
        cmocka_unit_test(echo_through_a_pair_returns_every_byte_before_its_fin),
        cmocka_unit_test(discard_writes_nothing),
        cmocka_unit_test(chargen_first_lines_follow_rfc_864),
        cmocka_unit_test(chargen_lines_rotate_through_the_ring),
        cmocka_unit_test(chargen_writes_only_when_asked),
        cmocka_unit_test(chargen_starts_itself_when_registration_asks_nothing),
        cmocka_unit_test(chargen_stops_when_stopped),
        cmocka_unit_test(chargen_through_a_pair_writes_as_the_client_reads),
        cmocka_unit_test(daytime_writes_one_line_then_loses_the_connection),
        cmocka_unit_test(qotd_writes_the_quote_then_loses_the_connection),
        cmocka_unit_test(qotd_refuses_a_quote_of_512_characters),
        cmocka_unit_test(every_protocol_gets_connection_lost_once_then_destroy),
        cmocka_unit_test(a_protocol_never_connected_is_only_destroyed),
        cmocka_unit_test(factory_builds_distinct_instances),
    };
    TW_TEST_MAIN(tests);
}
