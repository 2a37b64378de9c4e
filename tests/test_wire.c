/* test_wire.c -- echo, discard, chargen, qotd and daytime over the fake
 * transport. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_transport.h"
#include "tw_wire.h"

/* ---- helpers ------------------------------------------------------------ */

/* Counts the calls a protocol gets, in order, by wrapping its ops table
 * (one wrapped protocol at a time). */
static struct {
    const tw_protocol_ops_t *orig;
    tw_protocol_ops_t ops;
    int seq, made_at, lost_at, destroyed_at;
    int made, received, lost, destroyed, after_lost;
    const tw_failure_t *reason;
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
    cnt.reason = reason;
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

/* A connected fake transport running a fresh protocol from f. */
static fake_transport_t *open_conn(tw_wire_factory_t *f)
{
    fake_transport_t *ft = fake_transport_new(NULL, build(f));
    assert_non_null(ft);
    return ft;
}

static void fill_pattern(unsigned char *buf, size_t len)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

static void assert_output(const fake_transport_t *ft, const void *want, size_t len)
{
    size_t n;
    const char *out = fake_output(ft, &n);
    assert_int_equal(n, len);
    assert_memory_equal(out, want, len);
}

/* ---- echo ----------------------------------------------------------------- */

static void echo_returns_every_byte_fed_whole(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    static const char msg[] = "hello\0world\r\n\xff";
    assert_int_equal(fake_feed(ft, msg, sizeof msg), 0);
    assert_output(ft, msg, sizeof msg);

    unsigned char big[10000];
    fill_pattern(big, sizeof big);
    fake_clear(ft);
    assert_int_equal(fake_feed(ft, big, sizeof big), 0);
    assert_output(ft, big, sizeof big);
    assert_int_equal(ft->lose_calls + ft->abort_calls, 0);
    fake_transport_free(ft);
}

static void echo_returns_every_byte_fed_one_at_a_time(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    unsigned char big[3000];
    fill_pattern(big, sizeof big);
    assert_int_equal(fake_feed_bytewise(ft, big, sizeof big), 0);
    assert_output(ft, big, sizeof big);
    assert_int_equal(ft->writes, (int)sizeof big);
    fake_transport_free(ft);
}

static void echo_registers_its_transport_as_streaming_producer(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    assert_int_equal(ft->register_calls, 1);
    assert_ptr_equal(ft->producer, &ft->base.as_producer);
    assert_true(ft->streaming);
    fake_transport_free(ft);
}

static void echo_stops_reading_a_peer_that_does_not_read(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    ft->queue_writes = true;
    tw_transport_set_limits(&ft->base, 100, 1000, 0, TW_CAP_PAUSE);

    unsigned char buf[2400];
    fill_pattern(buf, sizeof buf);
    assert_int_equal(fake_feed(ft, buf, 600), 0);
    assert_false(ft->reading_paused);
    assert_int_equal(fake_feed(ft, buf + 600, 600), 0); /* queue passes high */
    assert_true(ft->reading_paused);
    assert_int_equal(ft->producer_pauses, 1);
    /* The peer keeps sending and never reads: nothing more is read. */
    assert_int_equal(fake_feed(ft, buf + 1200, 600), -EAGAIN);
    assert_int_equal(tw_transport_queued(&ft->base), 1200);

    fake_drain(ft, 1150); /* down to 50, below the low mark: read again */
    assert_false(ft->reading_paused);
    assert_int_equal(ft->producer_resumes, 1);
    assert_int_equal(fake_feed_bytewise(ft, buf + 1200, 900), 0); /* 950 queued */
    assert_false(ft->reading_paused);
    assert_int_equal(fake_feed(ft, buf + 2100, 300), 0); /* 1250: past high again */
    assert_true(ft->reading_paused);
    assert_int_equal(ft->producer_pauses, 2);
    assert_output(ft, buf, sizeof buf);
    fake_transport_free(ft);
}

static void echo_aborts_when_the_transport_refuses_a_write(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    ft->write_rc = -ENOBUFS;
    assert_int_equal(fake_feed_str(ft, "x"), 0);
    assert_int_equal(ft->abort_calls, 1);
    assert_int_equal(fake_feed_str(ft, "y"), -EPIPE);
    fake_transport_free(ft);
}

static void echo_loses_the_connection_at_eof(void **state)
{
    tw_wire_factory_t f;
    tw_wire_echo_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    assert_int_equal(fake_feed_str(ft, "last words"), 0);
    assert_int_equal(fake_eof(ft), 0);
    assert_int_equal(ft->lose_calls, 1);
    assert_int_equal(ft->abort_calls, 0);
    assert_output(ft, "last words", 10);
    fake_transport_free(ft);
}

/* ---- discard ---------------------------------------------------------------- */

static void discard_writes_nothing(void **state)
{
    tw_wire_factory_t f;
    tw_wire_discard_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    unsigned char buf[5000];
    fill_pattern(buf, sizeof buf);
    assert_int_equal(fake_feed(ft, buf, sizeof buf), 0);
    assert_int_equal(fake_feed_bytewise(ft, buf, 500), 0);
    assert_int_equal(fake_eof(ft), 0);
    assert_int_equal(ft->writes, 0);
    assert_output(ft, "", 0);
    assert_int_equal(ft->register_calls, 0);
    assert_int_equal(ft->lose_calls, 1); /* the default at EOF */
    fake_transport_free(ft);
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
    fake_transport_t *ft = open_conn(&f);
    static const char want[] =
        " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
        "\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n";
    size_t len;
    const char *out = fake_output(ft, &len);
    assert_true(len >= 3 * LINE);
    assert_memory_equal(out, want, sizeof want - 1);
    fake_transport_free(ft);
}

static void chargen_lines_rotate_through_the_ring(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    while (ft->out_len < 400 * LINE) /* several chunks, past the ring's wrap */
        fake_drain(ft, SIZE_MAX);
    size_t len;
    const char *out = fake_output(ft, &len);
    assert_chargen_lines(out, len, 0);
    /* Line 95 is line 0 again; line 94 starts with '~' and wraps to ' '. */
    assert_memory_equal(out + 95 * LINE, out, LINE);
    assert_int_equal(out[94 * LINE], '~');
    assert_int_equal(out[94 * LINE + 1], ' ');
    fake_transport_free(ft);
}

static void chargen_writes_only_when_asked(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    assert_int_equal(ft->register_calls, 1);
    assert_non_null(ft->producer);
    assert_false(ft->streaming);
    assert_int_equal(ft->writes, 1); /* the first chunk, asked for at registration */

    /* Input is thrown away and asks for nothing. */
    assert_int_equal(fake_feed_str(ft, "please stop"), 0);
    assert_int_equal(fake_feed_bytewise(ft, "abc", 3), 0);
    assert_int_equal(ft->writes, 1);

    /* A queue that does not drain below the low mark asks for nothing. */
    ft->queue_writes = true;
    tw_transport_set_limits(&ft->base, 100, 200, 0, TW_CAP_PAUSE);
    fake_drain(ft, 0);
    assert_int_equal(ft->writes, 2); /* queued 0 <= low: one chunk */
    size_t chunk = tw_transport_queued(&ft->base);
    assert_true(chunk > 100);
    fake_drain(ft, chunk - 101);
    assert_int_equal(ft->writes, 2);
    fake_drain(ft, 1);
    assert_int_equal(ft->writes, 3);
    assert_int_equal(tw_transport_queued(&ft->base), 100 + chunk);

    size_t len;
    const char *out = fake_output(ft, &len);
    assert_chargen_lines(out, len, 0);
    fake_transport_free(ft);
}

static void chargen_starts_itself_when_registration_asks_nothing(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    fake_transport_t *ft = fake_transport_alloc(NULL, build(&f));
    assert_non_null(ft);
    ft->no_resume_on_register = true;
    fake_connection_made(ft);
    assert_int_equal(ft->producer_resumes, 0);
    assert_int_equal(ft->writes, 1);
    fake_drain(ft, SIZE_MAX);
    assert_int_equal(ft->writes, 2);
    size_t len;
    const char *out = fake_output(ft, &len);
    assert_chargen_lines(out, len, 0);
    fake_transport_free(ft);
}

static void chargen_stops_when_stopped(void **state)
{
    tw_wire_factory_t f;
    tw_wire_chargen_factory_init(&f);
    fake_transport_t *ft = open_conn(&f);
    tw_producer_t *prod = ft->producer;
    prod->ops->stop_producing(prod);
    fake_drain(ft, SIZE_MAX); /* asked again, after being stopped */
    assert_int_equal(ft->producer_resumes, 2);
    assert_int_equal(ft->writes, 1);
    fake_transport_free(ft);

    /* Losing the connection stops it too, and it unregisters when lost. */
    ft = open_conn(&f);
    assert_int_equal(fake_eof(ft), 0);
    assert_int_equal(ft->lose_calls, 1);
    assert_int_equal(ft->producer_stops, 1);
    fake_drain(ft, SIZE_MAX);
    assert_int_equal(ft->writes, 1);
    fake_lose(ft, NULL);
    assert_int_equal(ft->unregister_calls, 1);
    fake_transport_free(ft);
}

/* ---- daytime and qotd ---------------------------------------------------------- */

static void daytime_writes_one_line_then_loses_the_connection(void **state)
{
    tw_wire_factory_t f;
    tw_wire_daytime_factory_init(&f);
    time_t before = time(NULL);
    fake_transport_t *ft = open_conn(&f);
    time_t after = time(NULL);

    size_t len;
    const char *out = fake_output(ft, &len);
    assert_int_equal(ft->writes, 1);
    assert_int_equal(len, strlen("Tue Mar 05 14:03:27 2024\r\n"));
    assert_memory_equal(out + len - 2, "\r\n", 2);
    assert_null(memchr(out, '\n', len - 1));

    struct tm tm = { 0 };
    const char *end = strptime(out, "%a %b %d %H:%M:%S %Y", &tm);
    assert_non_null(end);
    assert_string_equal(end, "\r\n");
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    assert_true(t >= before - 1 && t <= after + 1);

    assert_int_equal(ft->lose_calls, 1);
    assert_int_equal(ft->abort_calls, 0);
    assert_int_equal(fake_feed_str(ft, "late"), -EPIPE);
    fake_transport_free(ft);
}

static void qotd_writes_the_quote_then_loses_the_connection(void **state)
{
    tw_wire_factory_t f;
    assert_int_equal(tw_wire_qotd_factory_init(&f, NULL), 0);
    fake_transport_t *ft = open_conn(&f);
    assert_output(ft, tw_wire_default_quote, strlen(tw_wire_default_quote));
    assert_true(strlen(tw_wire_default_quote) < 512);
    assert_int_equal(ft->lose_calls, 1);
    fake_transport_free(ft);

    static const char quote[] = "Simple things should be simple.\r\n";
    assert_int_equal(tw_wire_qotd_factory_init(&f, quote), 0);
    ft = open_conn(&f);
    assert_output(ft, quote, sizeof quote - 1);
    assert_int_equal(ft->writes, 1);
    assert_int_equal(ft->lose_calls, 1);
    fake_transport_free(ft);
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
    fake_transport_t *ft = open_conn(&f);
    assert_output(ft, quote, TW_WIRE_QOTD_MAX);
    fake_transport_free(ft);
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
    for (size_t i = 0; i < NFACTORIES; i++) {
        for (int how = 0; how < 3; how++) {
            tw_wire_factory_t f;
            all_factories[i](&f);
            tw_protocol_t *p = build(&f);
            cnt_wrap(p);
            fake_transport_t *ft = fake_transport_new(NULL, p);
            assert_non_null(ft);
            fake_feed_str(ft, "some input\r\n");
            tw_failure_t *why = tw_failure_new("tcp", -ECONNRESET, NULL);
            assert_non_null(why);
            if (how == 0) {
                fake_lose(ft, why);
                fake_lose(ft, NULL); /* a second loss is ignored */
                assert_ptr_equal(cnt.reason, why);
            } else if (how == 1) {
                fake_eof(ft);
                fake_lose(ft, NULL);
                assert_null(cnt.reason);
            } /* how == 2: fake_transport_free loses it */
            fake_transport_free(ft);
            tw_failure_free(why);
            assert_int_equal(cnt.made, 1);
            assert_int_equal(cnt.lost, 1);
            assert_int_equal(cnt.destroyed, 1);
            assert_int_equal(cnt.after_lost, 0);
            assert_true(cnt.made_at < cnt.lost_at);
            assert_int_equal(cnt.destroyed_at, cnt.lost_at + 1);
        }
    }
}

static void a_protocol_never_connected_is_only_destroyed(void **state)
{
    for (size_t i = 0; i < NFACTORIES; i++) {
        tw_wire_factory_t f;
        all_factories[i](&f);
        tw_protocol_t *p = build(&f);
        cnt_wrap(p);
        fake_transport_t *ft = fake_transport_alloc(NULL, p);
        assert_non_null(ft);
        fake_transport_free(ft);
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
        cmocka_unit_test(discard_writes_nothing),
        cmocka_unit_test(chargen_first_lines_follow_rfc_864),
        cmocka_unit_test(chargen_lines_rotate_through_the_ring),
        cmocka_unit_test(chargen_writes_only_when_asked),
        cmocka_unit_test(chargen_starts_itself_when_registration_asks_nothing),
        cmocka_unit_test(chargen_stops_when_stopped),
        cmocka_unit_test(daytime_writes_one_line_then_loses_the_connection),
        cmocka_unit_test(qotd_writes_the_quote_then_loses_the_connection),
        cmocka_unit_test(qotd_refuses_a_quote_of_512_characters),
        cmocka_unit_test(every_protocol_gets_connection_lost_once_then_destroy),
        cmocka_unit_test(a_protocol_never_connected_is_only_destroyed),
        cmocka_unit_test(factory_builds_distinct_instances),
    };
    TW_TEST_MAIN(tests);
}
