/* test_basic.c -- the framing receivers (line, netstring, length-prefixed)
 * over the string transport: every input fed whole, one byte at a time and
 * in random pieces must give the same callbacks; limits, malformed input,
 * mode switches and output checked byte for byte against what Twisted's
 * twisted.protocols.basic does.  Then the receivers end to end: through the
 * loopback pair and over real TCP on the backend under test. */
#define _GNU_SOURCE
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_basic.h"
#include "tw_loopback.h"
#include "tw_string_transport.h"

/* ---- the event log ---------------------------------------------------------
 * Each callback appends an entry: L(line) R(raw) X(partial) S(string)
 * T(length) and, at the end, lost(...) or lost(clean).  Bytes outside
 * printable ASCII, and ( ) \, are written \xHH.  Consecutive raw chunks merge
 * into one R(...), since how raw data is cut depends on the reads. */

static char g_log[1 << 17];
static size_t g_len;
static bool g_raw_open;  /* the last entry is an R(...) still open for merging */
static int g_after_lost; /* callbacks after connection_lost */
static int g_lost;

static void log_reset(void)
{
    g_len = 0;
    g_log[0] = '\0';
    g_raw_open = false;
    g_after_lost = 0;
    g_lost = 0;
}

static void log_put(const char *s, size_t n)
{
    assert_true(g_len + n < sizeof g_log);
    memcpy(g_log + g_len, s, n);
    g_len += n;
    g_log[g_len] = '\0';
}

static void log_bytes(const void *data, size_t n)
{
    const unsigned char *d = data;
    for (size_t i = 0; i < n; i++) {
        char tmp[8];
        unsigned c = d[i];
        if (c >= 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\') {
            tmp[0] = (char)c;
            log_put(tmp, 1);
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            log_put(tmp, 4);
        }
    }
}

static void log_entry(char tag, const void *data, size_t n)
{
    g_after_lost += g_lost > 0;
    if (tag == 'R' && g_raw_open) {
        g_len--; /* reopen the R(...) */
    } else {
        char head[2] = { tag, '(' };
        log_put(head, 2);
    }
    log_bytes(data, n);
    log_put(")", 1);
    g_raw_open = tag == 'R';
}

static void log_lost(const tw_failure_t *reason)
{
    char tmp[256];
    g_lost++;
    g_raw_open = false;
    if (reason)
        snprintf(tmp, sizeof tmp, "lost(%s,%d,%s)", reason->domain, reason->code,
                 reason->message);
    else
        snprintf(tmp, sizeof tmp, "lost(clean)");
    log_put(tmp, strlen(tmp));
}

/* ---- feeding ------------------------------------------------------------------ */

enum { FEED_WHOLE, FEED_BYTES, FEED_RANDOM };

static uint64_t xs64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* Feed data whole, byte by byte, or in random pieces (1..17 bytes, or up to
 * the rest), stopping at the first refusal as a socket would. */
static void feed(tw_string_transport_t *t, const void *data, size_t len, int mode, uint64_t seed)
{
    const char *d = data;
    if (mode == FEED_WHOLE) {
        tw_string_transport_feed(t, d, len);
    } else if (mode == FEED_BYTES) {
        tw_string_transport_feed_bytewise(t, d, len);
    } else {
        uint64_t s = seed * 2654435761u + 1;
        size_t off = 0;
        while (off < len) {
            size_t r = (size_t)(xs64(&s) % 20);
            size_t n = r < 18 ? r + 1 : len - off;
            if (n > len - off)
                n = len - off;
            if (tw_string_transport_feed(t, d + off, n) < 0)
                return;
            off += n;
        }
    }
}

/* After a run: what the protocol wrote, as W(...), then how it ended. */
static void finish(tw_string_transport_t *t)
{
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    if (n) {
        log_put("W(", 2);
        log_bytes(out, n);
        log_put(")", 1);
    }
    tw_string_transport_settle(t);
    tw_string_transport_free(t); /* a connection still open ends cleanly */
    assert_int_equal(g_lost, 1);
    assert_int_equal(g_after_lost, 0);
}

/* ---- the line protocol under test ----------------------------------------------
 * It logs what it gets and obeys a few commands, as a real protocol would:
 *   RAW<n>     raw mode for the next n bytes, then lines again
 *   QUIT       stop the receiver and lose the connection
 *   STOP       stop the receiver only
 *   DELIM=LF   / DELIM=CRLF / DELIM=<text>: change the delimiter
 *   MAX=<n>    change the maximum length
 *   PAUSE      pause the transport
 *   ECHO <x>   send_line(x) */

typedef struct lcfg {
    size_t max;             /* 0: default */
    const char *delim;      /* NULL: default */
    bool custom_exceeded;   /* log X(...) and carry on */
    bool no_raw;            /* raw_data_received NULL */
} lcfg_t;

typedef struct lproto {
    tw_line_receiver_t lr; /* first */
    size_t raw_left;
} lproto_t;

static int g_destroyed;

static void lp_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    lproto_t *lp = (lproto_t *)lr;
    assert_int_equal(line[len], '\0');
    log_entry('L', line, len);
    if (len > 3 && memcmp(line, "RAW", 3) == 0) {
        lp->raw_left = strtoul(line + 3, NULL, 10);
        tw_line_receiver_set_raw_mode(lr);
    } else if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
        tw_line_receiver_stop(lr);
        tw_transport_lose_connection(lr->base.transport);
    } else if (len == 4 && memcmp(line, "STOP", 4) == 0) {
        tw_line_receiver_stop(lr);
    } else if (len > 6 && memcmp(line, "DELIM=", 6) == 0) {
        const char *d = line + 6;
        if (strcmp(d, "LF") == 0)
            d = "\n";
        else if (strcmp(d, "CRLF") == 0)
            d = "\r\n";
        assert_int_equal(tw_line_receiver_set_delimiter(lr, d, strlen(d)), 0);
    } else if (len > 4 && memcmp(line, "MAX=", 4) == 0) {
        tw_line_receiver_set_max_length(lr, strtoul(line + 4, NULL, 10));
    } else if (len == 5 && memcmp(line, "PAUSE", 5) == 0) {
        tw_transport_pause_reading(lr->base.transport);
    } else if (len >= 5 && memcmp(line, "ECHO ", 5) == 0) {
        assert_int_equal(tw_line_receiver_send_line(lr, line + 5, len - 5), 0);
    }
    /* The line is ours to scribble on. */
    memset(line, '#', len);
}

static void lp_raw(tw_line_receiver_t *lr, const void *data, size_t len)
{
    lproto_t *lp = (lproto_t *)lr;
    assert_true(len > 0);
    size_t take = len < lp->raw_left ? len : lp->raw_left;
    if (take)
        log_entry('R', data, take);
    lp->raw_left -= take;
    if (lp->raw_left == 0) {
        g_raw_open = false; /* this raw block is over */
        tw_line_receiver_set_line_mode_extra(lr, len - take);
    }
}

static void lp_exceeded(tw_line_receiver_t *lr, const char *partial, size_t len)
{
    assert_int_equal(len, lr->max + 1);
    log_entry('X', partial, len);
}

static void lp_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    log_lost(reason);
}

static void lp_destroy(tw_protocol_t *p)
{
    tw_line_receiver_fini((tw_line_receiver_t *)p);
    free(p);
    g_destroyed++;
}

static const tw_protocol_ops_t lp_proto_ops = {
    .data_received = tw_line_receiver_data_received,
    .connection_lost = lp_lost,
    .destroy = lp_destroy,
};
static const tw_line_receiver_ops_t lp_ops = { lp_line, lp_raw, NULL };
static const tw_line_receiver_ops_t lp_ops_custom = { lp_line, lp_raw, lp_exceeded };
static const tw_line_receiver_ops_t lp_ops_noraw = { lp_line, NULL, NULL };

static lproto_t *lp_new(const lcfg_t *cfg)
{
    lproto_t *lp = calloc(1, sizeof *lp);
    assert_non_null(lp);
    const tw_line_receiver_ops_t *ops = &lp_ops;
    if (cfg && cfg->custom_exceeded)
        ops = &lp_ops_custom;
    else if (cfg && cfg->no_raw)
        ops = &lp_ops_noraw;
    tw_line_receiver_init(&lp->lr, &lp_proto_ops, ops);
    if (cfg && cfg->max)
        tw_line_receiver_set_max_length(&lp->lr, cfg->max);
    if (cfg && cfg->delim)
        assert_int_equal(tw_line_receiver_set_delimiter(&lp->lr, cfg->delim, strlen(cfg->delim)),
                         0);
    return lp;
}

static tw_string_transport_t *lp_open(const lcfg_t *cfg, lproto_t **out)
{
    lproto_t *lp = lp_new(cfg);
    tw_string_transport_t *t = tw_string_transport_new(NULL, &lp->lr.base);
    assert_non_null(t);
    if (out)
        *out = lp;
    return t;
}

/* One run: a fresh protocol gets `input` in the given way; returns the log. */
static char *run_line(const lcfg_t *cfg, const void *input, size_t len, int mode, uint64_t seed)
{
    log_reset();
    tw_string_transport_t *t = lp_open(cfg, NULL);
    feed(t, input, len, mode, seed);
    finish(t);
    return strdup(g_log);
}

/* Whole, byte by byte and 20 random splits give the same log; it is `want`
 * when want is not NULL. */
static void check_line(const lcfg_t *cfg, const void *input, size_t len, const char *want)
{
    char *whole = run_line(cfg, input, len, FEED_WHOLE, 0);
    if (want && strcmp(whole, want) != 0)
        fail_msg("input fed whole:\n  got  %s\n  want %s", whole, want);
    char *bytes = run_line(cfg, input, len, FEED_BYTES, 0);
    if (strcmp(whole, bytes) != 0)
        fail_msg("whole and bytewise differ:\n  whole %s\n  bytes %s", whole, bytes);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        char *split = run_line(cfg, input, len, FEED_RANDOM, seed);
        if (strcmp(whole, split) != 0)
            fail_msg("whole and split (seed %d) differ:\n  whole %s\n  split %s", (int)seed,
                     whole, split);
        free(split);
    }
    free(whole);
    free(bytes);
}

#define CHECK_LINE(cfg, lit, want) check_line(cfg, lit, sizeof(lit) - 1, want)

/* ---- line receiver tests ----------------------------------------------------- */

static void line_lines_in_order_whole_bytewise_and_split(void **state)
{
    CHECK_LINE(NULL, "a\r\nbc\r\n\r\nd", "L(a)L(bc)L()lost(clean)");
    CHECK_LINE(NULL, "\r\n\r\n", "L()L()lost(clean)");
    CHECK_LINE(NULL, "", "lost(clean)");
    CHECK_LINE(NULL, "no delimiter at all", "lost(clean)");
    /* A lone CR or LF is part of the line with a CRLF delimiter. */
    CHECK_LINE(NULL, "a\rb\r\nc\nd\r\n\r\r\n", "L(a\\x0db)L(c\\x0ad)L(\\x0d)lost(clean)");
    /* NULs are bytes like any other. */
    CHECK_LINE(NULL, "x\0y\r\n", "L(x\\x00y)lost(clean)");
    lcfg_t lf = { .delim = "\n" };
    CHECK_LINE(&lf, "one\ntwo\r\n\nthree", "L(one)L(two\\x0d)L()lost(clean)");
}

static void line_many_lines_in_one_read(void **state)
{
    enum { N = 2000 };
    char *in = malloc(N * 16), *want = malloc(N * 16 + 64);
    size_t n = 0, w = 0;
    for (int i = 0; i < N; i++) {
        n += (size_t)sprintf(in + n, "line %d\r\n", i);
        w += (size_t)sprintf(want + w, "L(line %d)", i);
    }
    strcpy(want + w, "lost(clean)");
    check_line(NULL, in, n, want);
    free(in);
    free(want);
}

static void line_delimiter_split_across_reads(void **state)
{
    lproto_t *lp;
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, &lp);
    tw_string_transport_feed_str(t, "abc\r");
    assert_string_equal(g_log, "");
    tw_string_transport_feed_str(t, "\ndef\r");
    assert_string_equal(g_log, "L(abc)");
    tw_string_transport_feed_str(t, "\r");
    tw_string_transport_feed_str(t, "\n");
    assert_string_equal(g_log, "L(abc)L(def\\x0d)");
    finish(t);

    /* Longer, self-overlapping delimiters, in every split. */
    lcfg_t aab = { .delim = "aab" };
    CHECK_LINE(&aab, "xaaab" "aab" "aaaab" "yaab", "L(xa)L()L(aa)L(y)lost(clean)");
    lcfg_t crlf2 = { .delim = "\r\n\r\n" };
    CHECK_LINE(&crlf2, "GET /\r\nHost: x\r\n\r\n\r\n\r\n\r\r\n\r\n",
               "L(GET /\\x0d\\x0aHost: x)L()L(\\x0d)lost(clean)");
}

static void line_exactly_max_accepted_one_more_refused(void **state)
{
    lcfg_t c8 = { .max = 8 };
    CHECK_LINE(&c8, "12345678\r\n", "L(12345678)lost(clean)");
    CHECK_LINE(&c8, "\r\n12345678\r\n123456789\r\nnever\r\n",
               "L()L(12345678)lost(line,-90,line longer than 8 bytes)");
    lcfg_t lf4 = { .max = 4, .delim = "\n" };
    CHECK_LINE(&lf4, "abcd\nabcde\nx\n", "L(abcd)lost(line,-90,line longer than 4 bytes)");
    /* The default is Twisted's 16384. */
    char *big = malloc(16384 + 4);
    memset(big, 'z', 16385);
    memcpy(big + 16384, "\r\n", 2);
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, NULL);
    tw_string_transport_feed(t, big, 16386);
    assert_int_equal(g_len, 2 + 16384 + 1);
    big[16384] = 'z';
    tw_string_transport_feed(t, big, 16385);
    assert_true(t->disconnecting);
    finish(t);
    assert_non_null(strstr(g_log, "lost(line,-90,line longer than 16384 bytes)"));
    free(big);
}

/* The refusal comes as soon as the line is certainly too long, with at most
 * max + len(delimiter) - 1 bytes held, and nothing more is read. */
static void line_too_long_refused_as_soon_as_known(void **state)
{
    lproto_t *lp;
    lcfg_t c8 = { .max = 8 };
    log_reset();
    tw_string_transport_t *t = lp_open(&c8, &lp);
    assert_int_equal(tw_string_transport_feed_str(t, "12345678"), 0);
    assert_int_equal(tw_string_transport_feed_str(t, "\r"), 0); /* could end the line */
    assert_false(t->disconnecting);
    assert_int_equal(lp->lr.blen, 9);
    assert_true(lp->lr.cap <= 8 + 2 + 1);
    assert_int_equal(tw_string_transport_feed_str(t, "x"), 0); /* now it cannot */
    assert_true(t->disconnecting);
    assert_int_equal(tw_string_transport_feed_str(t, "\r\n"), -EPIPE);
    assert_string_equal(g_log, "");
    finish(t);
    assert_string_equal(g_log, "lost(line,-90,line longer than 8 bytes)");

    /* Without a CR at the edge it is known at max + 1. */
    log_reset();
    t = lp_open(&c8, &lp);
    assert_int_equal(tw_string_transport_feed_str(t, "123456789"), 0);
    assert_true(t->disconnecting);
    finish(t);

    /* A flood with no delimiter, in one read: refused, nothing held. */
    log_reset();
    t = lp_open(&c8, &lp);
    char flood[65536];
    memset(flood, 'f', sizeof flood);
    tw_string_transport_feed(t, flood, sizeof flood);
    assert_true(t->disconnecting);
    assert_true(lp->lr.cap <= 8 + 2 + 1);
    finish(t);
    assert_string_equal(g_log, "lost(line,-90,line longer than 8 bytes)");
}

static void line_custom_exceeded_skips_the_rest_of_the_line(void **state)
{
    lcfg_t c = { .max = 4, .custom_exceeded = true };
    CHECK_LINE(&c, "ok\r\ntoolong\r\nnext\r\n", "L(ok)X(toolo)L(next)lost(clean)");
    CHECK_LINE(&c, "abcde\r\nabcd\r\nabcd\r\r\n12345678901234567890\r\n\r\nend\r\n",
               "X(abcde)L(abcd)X(abcd\\x0d)X(12345)L()L(end)lost(clean)");
    /* The skipped line's delimiter split across reads. */
    lproto_t *lp;
    log_reset();
    tw_string_transport_t *t = lp_open(&c, &lp);
    tw_string_transport_feed_str(t, "abcdefgh\r");
    tw_string_transport_feed_str(t, "\nxy\r\n");
    assert_string_equal(g_log, "X(abcde)L(xy)");
    finish(t);
    lcfg_t c3 = { .max = 2, .custom_exceeded = true, .delim = "aab" };
    CHECK_LINE(&c3, "xyzaaaab" "q" "aab", "X(xyz)L(q)lost(clean)");
}

static void line_raw_mode_switch_is_byte_exact(void **state)
{
    CHECK_LINE(NULL, "a\r\nRAW5\r\nhello b\r\nRAW3\r\nxyzc\r\nRAW0\r\nd\r\n",
               "L(a)L(RAW5)R(hello)L( b)L(RAW3)R(xyz)L(c)L(RAW0)L(d)lost(clean)");
    /* Raw bytes that look like delimiters and commands are raw. */
    CHECK_LINE(NULL, "RAW12\r\n\r\nQUIT\r\n\r\n\r\nafter\r\n",
               "L(RAW12)R(\\x0d\\x0aQUIT\\x0d\\x0a\\x0d\\x0a\\x0d\\x0a)L(after)lost(clean)");
    /* Raw to the end of the input. */
    CHECK_LINE(NULL, "RAW100\r\nabc\r\ndef", "L(RAW100)R(abc\\x0d\\x0adef)lost(clean)");
    /* A switch of delimiter in between. */
    CHECK_LINE(NULL, "DELIM=LF\r\nRAW2\nxyz\nDELIM=CRLF\nq\r\n",
               "L(DELIM=LF)L(RAW2)R(xy)L(z)L(DELIM=CRLF)L(q)lost(clean)");
    /* With no raw_data_received the raw bytes are dropped. */
    lcfg_t noraw = { .no_raw = true };
    CHECK_LINE(&noraw, "a\r\nRAW5\r\nhello\r\n", "L(a)L(RAW5)lost(clean)");
}

/* Settings changed between reads, while a partial line is held: the held
 * bytes are parsed again under the new settings. */
static void line_settings_changed_between_reads(void **state)
{
    lproto_t *lp;
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, &lp);
    tw_string_transport_feed_str(t, "ab\ncd");
    assert_int_equal(tw_line_receiver_set_delimiter(&lp->lr, "\n", 1), 0);
    tw_string_transport_feed_str(t, "\n");
    assert_string_equal(g_log, "L(ab)L(cd)");
    tw_string_transport_feed_str(t, "xy");
    tw_line_receiver_set_raw_mode(&lp->lr);
    lp->raw_left = 3;
    tw_string_transport_feed_str(t, "zw\n");
    assert_string_equal(g_log, "L(ab)L(cd)R(xyz)L(w)");
    tw_string_transport_feed_str(t, "123456");
    tw_line_receiver_set_max_length(&lp->lr, 4);
    tw_string_transport_feed_str(t, "\n");
    assert_true(t->disconnecting);
    assert_int_equal(tw_line_receiver_set_delimiter(&lp->lr, "", 0), -EINVAL);
    assert_int_equal(tw_line_receiver_set_delimiter(&lp->lr, "01234567890123456", 17), -EINVAL);
    finish(t);
    assert_string_equal(g_log, "L(ab)L(cd)R(xyz)L(w)lost(line,-90,line longer than 4 bytes)");
}

static void line_quit_stops_the_rest_of_the_read(void **state)
{
    CHECK_LINE(NULL, "a\r\nQUIT\r\nb\r\nc", "L(a)L(QUIT)lost(clean)");
    /* Stopped for good: later reads are ignored, the connection stays up. */
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, NULL);
    assert_int_equal(tw_string_transport_feed_str(t, "a\r\nSTOP\r\nb\r\n"), 0);
    assert_int_equal(tw_string_transport_feed_str(t, "c\r\n"), 0);
    assert_false(t->disconnecting);
    finish(t);
    assert_string_equal(g_log, "L(a)L(STOP)lost(clean)");
    CHECK_LINE(NULL, "MAX=3\r\nabc\r\nabcd\r\nnever\r\n",
               "L(MAX=3)L(abc)lost(line,-90,line longer than 3 bytes)");
}

/* Pausing the transport stops reading, not the delivery of lines already
 * read (Twisted behaves the same). */
static void line_pause_in_callback(void **state)
{
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, NULL);
    assert_int_equal(tw_string_transport_feed_str(t, "PAUSE\r\nx\r\ny"), 0);
    assert_true(t->reading_paused);
    assert_string_equal(g_log, "L(PAUSE)L(x)");
    assert_int_equal(tw_string_transport_feed_str(t, "\r\n"), -EAGAIN);
    tw_transport_resume_reading(&t->base);
    assert_int_equal(tw_string_transport_feed_str(t, "\r\n"), 0);
    finish(t);
    assert_string_equal(g_log, "L(PAUSE)L(x)L(y)lost(clean)");
}

static void line_send_line_writes_line_and_delimiter(void **state)
{
    CHECK_LINE(NULL, "ECHO hello\r\nECHO \r\n", "L(ECHO hello)L(ECHO )W(hello\\x0d\\x0a\\x0d\\x0a)"
                                               "lost(clean)");
    lproto_t *lp;
    log_reset();
    tw_string_transport_t *t = lp_open(NULL, &lp);
    assert_int_equal(tw_line_receiver_send_line(&lp->lr, "abc", 3), 0);
    tw_line_receiver_set_delimiter(&lp->lr, "\n", 1);
    assert_int_equal(tw_line_receiver_send_line(&lp->lr, "d\0e", 3), 0);
    assert_int_equal(t->writes, 2); /* one writev each */
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "abc\r\nd\0e\n", 9);
    tw_transport_lose_connection(&t->base);
    assert_int_equal(tw_line_receiver_send_line(&lp->lr, "late", 4), -EPIPE);
    finish(t);
}

/* A long line's buffer is not kept once the connection is idle again. */
static void line_idle_receiver_keeps_no_big_buffer(void **state)
{
    lproto_t *lp;
    lcfg_t big = { .max = 100000 };
    log_reset();
    tw_string_transport_t *t = lp_open(&big, &lp);
    char *line = malloc(50002);
    memset(line, 'q', 50000);
    memcpy(line + 50000, "\r\n", 2);
    tw_string_transport_feed(t, line, 25000);
    assert_true(lp->lr.cap >= 25000);
    tw_string_transport_feed(t, line + 25000, 25002);
    assert_int_equal(g_len, 50003);
    assert_true(lp->lr.cap <= 4096);
    free(line);
    finish(t);
}

/* ---- netstring receiver ---------------------------------------------------------- */

typedef struct nproto {
    tw_netstring_receiver_t ns; /* first */
} nproto_t;

static void np_string(tw_netstring_receiver_t *ns, char *data, size_t len)
{
    assert_int_equal(data[len], '\0');
    log_entry('S', data, len);
    if (len == 4 && memcmp(data, "QUIT", 4) == 0) {
        tw_netstring_receiver_stop(ns);
        tw_transport_lose_connection(ns->base.transport);
    } else if (len >= 5 && memcmp(data, "ECHO ", 5) == 0) {
        assert_int_equal(tw_netstring_send_string(ns, data + 5, len - 5), 0);
    }
}

static void np_destroy(tw_protocol_t *p)
{
    tw_netstring_receiver_fini((tw_netstring_receiver_t *)p);
    free(p);
    g_destroyed++;
}

static const tw_protocol_ops_t np_proto_ops = {
    .data_received = tw_netstring_receiver_data_received,
    .connection_lost = lp_lost,
    .destroy = np_destroy,
};
static const tw_netstring_receiver_ops_t np_ops = { np_string };

static tw_string_transport_t *np_open(size_t max, nproto_t **out)
{
    nproto_t *np = calloc(1, sizeof *np);
    assert_non_null(np);
    tw_netstring_receiver_init(&np->ns, &np_proto_ops, &np_ops);
    if (max)
        tw_netstring_receiver_set_max_length(&np->ns, max);
    tw_string_transport_t *t = tw_string_transport_new(NULL, &np->ns.base);
    assert_non_null(t);
    if (out)
        *out = np;
    return t;
}

static char *run_ns(size_t max, const void *input, size_t len, int mode, uint64_t seed)
{
    log_reset();
    tw_string_transport_t *t = np_open(max, NULL);
    feed(t, input, len, mode, seed);
    finish(t);
    return strdup(g_log);
}

static void check_ns(size_t max, const void *input, size_t len, const char *want)
{
    char *whole = run_ns(max, input, len, FEED_WHOLE, 0);
    if (want && strcmp(whole, want) != 0)
        fail_msg("input fed whole:\n  got  %s\n  want %s", whole, want);
    char *bytes = run_ns(max, input, len, FEED_BYTES, 0);
    if (strcmp(whole, bytes) != 0)
        fail_msg("whole and bytewise differ:\n  whole %s\n  bytes %s", whole, bytes);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        char *split = run_ns(max, input, len, FEED_RANDOM, seed);
        if (strcmp(whole, split) != 0)
            fail_msg("whole and split (seed %d) differ:\n  whole %s\n  split %s", (int)seed,
                     whole, split);
        free(split);
    }
    free(whole);
    free(bytes);
}

#define CHECK_NS(max, lit, want) check_ns(max, lit, sizeof(lit) - 1, want)

static void netstring_strings_in_order_whole_bytewise_and_split(void **state)
{
    CHECK_NS(0, "5:hello,0:,3:a,b,", "S(hello)S()S(a,b)lost(clean)");
    CHECK_NS(0, "0:,", "S()lost(clean)");
    CHECK_NS(0, "12:hello world!,1:\0,", "S(hello world!)S(\\x00)lost(clean)");
    CHECK_NS(0, "5:hel", "lost(clean)"); /* incomplete: nothing */
    CHECK_NS(0, "5:hello", "lost(clean)"); /* the comma has not come */
    CHECK_NS(0, "3:abc,QUIT", "S(abc)lost(netstring,-71,malformed netstring length (byte 0x51))");
    CHECK_NS(0, "4:QUIT,4:more,", "S(QUIT)lost(clean)");
}

static void netstring_many_in_one_read(void **state)
{
    enum { N = 1000 };
    char *in = malloc(N * 24), *want = malloc(N * 24 + 64);
    size_t n = 0, w = 0;
    for (int i = 0; i < N; i++) {
        char s[16];
        int k = sprintf(s, "s%d", i * 7);
        n += (size_t)sprintf(in + n, "%d:%s,", k, s);
        w += (size_t)sprintf(want + w, "S(%s)", s);
    }
    strcpy(want + w, "lost(clean)");
    check_ns(0, in, n, want);
    free(in);
    free(want);
}

static void netstring_malformed_input_closes_with_a_reason(void **state)
{
    CHECK_NS(0, "abc:", "lost(netstring,-71,malformed netstring length (byte 0x61))");
    CHECK_NS(0, "5x:hello,", "lost(netstring,-71,malformed netstring length (byte 0x78))");
    CHECK_NS(0, ":hello,",
             "lost(netstring,-71,malformed netstring length (no digits before ':'))");
    CHECK_NS(0, "-5:hello,", "lost(netstring,-71,malformed netstring length (byte 0x2d))");
    CHECK_NS(0, " 5:hello,", "lost(netstring,-71,malformed netstring length (byte 0x20))");
    CHECK_NS(0, "+5:hello,", "lost(netstring,-71,malformed netstring length (byte 0x2b))");
    /* Twisted refuses leading zeros ("007:"), and so does the spec. */
    CHECK_NS(0, "05:hello,", "lost(netstring,-71,malformed netstring length (leading zero))");
    CHECK_NS(0, "00:,", "lost(netstring,-71,malformed netstring length (leading zero))");
    CHECK_NS(0, "5:hellox", "lost(netstring,-71,netstring not terminated by a comma (byte 0x78))");
    CHECK_NS(0, "0:x", "lost(netstring,-71,netstring not terminated by a comma (byte 0x78))");
    CHECK_NS(0, "2:ok,5:hello;3:abc,",
             "S(ok)lost(netstring,-71,netstring not terminated by a comma (byte 0x3b))");
}

static void netstring_exactly_max_accepted_one_more_refused(void **state)
{
    CHECK_NS(5, "5:hello,6:hello!,", "S(hello)lost(netstring,-90,netstring longer than 5 bytes)");
    CHECK_NS(10, "10:0123456789,11:",
             "S(0123456789)lost(netstring,-90,netstring longer than 10 bytes)");
    /* The default is Twisted's 99999. */
    nproto_t *np;
    log_reset();
    tw_string_transport_t *t = np_open(0, &np);
    assert_int_equal(tw_string_transport_feed_str(t, "99999:"), 0);
    assert_false(t->disconnecting);
    assert_int_equal(np->ns.cap, 0); /* nothing set aside before the payload comes */
    char *big = malloc(100000);
    memset(big, 'n', 99999);
    big[99999] = ',';
    assert_int_equal(tw_string_transport_feed(t, big, 100000), 0);
    assert_int_equal(g_len, 2 + 99999 + 1);
    assert_true(np->ns.cap <= 4096); /* and nothing kept after it */
    assert_int_equal(tw_string_transport_feed_str(t, "100000:"), 0);
    assert_true(t->disconnecting);
    finish(t);
    assert_non_null(strstr(g_log, "lost(netstring,-90,netstring longer than 99999 bytes)"));
    free(big);
}

/* A huge length is refused from its digits, before the ':' and the payload,
 * with nothing allocated and no callback. */
static void netstring_huge_length_refused_before_payload(void **state)
{
    nproto_t *np;
    log_reset();
    tw_string_transport_t *t = np_open(0, &np);
    assert_int_equal(tw_string_transport_feed_str(t, "99999999999999999999999999"), 0);
    assert_true(t->disconnecting);
    assert_int_equal(np->ns.cap, 0);
    assert_null(np->ns.buf);
    assert_string_equal(g_log, "");
    assert_int_equal(tw_string_transport_feed_str(t, ":xxxx"), -EPIPE);
    finish(t);
    assert_string_equal(g_log, "lost(netstring,-90,netstring longer than 99999 bytes)");
}

static void netstring_send_string_is_twisted_format(void **state)
{
    CHECK_NS(0, "10:ECHO hello,5:ECHO ,", "S(ECHO hello)S(ECHO )W(5:hello,0:,)lost(clean)");
    nproto_t *np;
    log_reset();
    tw_string_transport_t *t = np_open(0, &np);
    assert_int_equal(tw_netstring_send_string(&np->ns, "a\0b", 3), 0);
    char *big = calloc(1, 123456);
    assert_int_equal(tw_netstring_send_string(&np->ns, big, 123456), 0);
    assert_int_equal(t->writes, 2);
    size_t n;
    const char *out = tw_string_transport_value(t, &n);
    assert_int_equal(n, 6 + 7 + 123456 + 1);
    assert_memory_equal(out, "3:a\0b,123456:", 13);
    assert_int_equal(out[n - 1], ',');
    free(big);
    tw_string_transport_clear(t);
    finish(t);
}

/* ---- length-prefixed receivers ------------------------------------------------------ */

typedef struct iproto {
    tw_intn_receiver_t ir; /* first */
} iproto_t;

static void ip_string(tw_intn_receiver_t *ir, char *data, size_t len)
{
    assert_int_equal(data[len], '\0');
    log_entry('S', data, len);
    if (len == 4 && memcmp(data, "QUIT", 4) == 0) {
        tw_intn_receiver_stop(ir);
        tw_transport_lose_connection(ir->base.transport);
    } else if (len >= 5 && memcmp(data, "ECHO ", 5) == 0) {
        assert_int_equal(tw_intn_send_string(ir, data + 5, len - 5), 0);
    }
}

static void ip_exceeded(tw_intn_receiver_t *ir, size_t length)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%zu", length);
    log_entry('T', tmp, (size_t)n);
}

static void ip_destroy(tw_protocol_t *p)
{
    tw_intn_receiver_fini((tw_intn_receiver_t *)p);
    free(p);
    g_destroyed++;
}

static const tw_protocol_ops_t ip_proto_ops = {
    .data_received = tw_intn_receiver_data_received,
    .connection_lost = lp_lost,
    .destroy = ip_destroy,
};
static const tw_intn_receiver_ops_t ip_ops = { ip_string, NULL };
static const tw_intn_receiver_ops_t ip_ops_custom = { ip_string, ip_exceeded };

typedef struct icfg {
    int size;
    size_t max;
    bool custom;
} icfg_t;

static tw_string_transport_t *ip_open(const icfg_t *c, iproto_t **out)
{
    iproto_t *ip = calloc(1, sizeof *ip);
    assert_non_null(ip);
    assert_int_equal(tw_intn_receiver_init(&ip->ir, &ip_proto_ops, c->custom ? &ip_ops_custom
                                                                              : &ip_ops, c->size),
                     0);
    if (c->max)
        tw_intn_receiver_set_max_length(&ip->ir, c->max);
    tw_string_transport_t *t = tw_string_transport_new(NULL, &ip->ir.base);
    assert_non_null(t);
    if (out)
        *out = ip;
    return t;
}

static char *run_ip(const icfg_t *c, const void *input, size_t len, int mode, uint64_t seed)
{
    log_reset();
    tw_string_transport_t *t = ip_open(c, NULL);
    feed(t, input, len, mode, seed);
    finish(t);
    return strdup(g_log);
}

static void check_ip(const icfg_t *c, const void *input, size_t len, const char *want)
{
    char *whole = run_ip(c, input, len, FEED_WHOLE, 0);
    if (want && strcmp(whole, want) != 0)
        fail_msg("input fed whole:\n  got  %s\n  want %s", whole, want);
    char *bytes = run_ip(c, input, len, FEED_BYTES, 0);
    if (strcmp(whole, bytes) != 0)
        fail_msg("whole and bytewise differ:\n  whole %s\n  bytes %s", whole, bytes);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        char *split = run_ip(c, input, len, FEED_RANDOM, seed);
        if (strcmp(whole, split) != 0)
            fail_msg("whole and split (seed %d) differ:\n  whole %s\n  split %s", (int)seed,
                     whole, split);
        free(split);
    }
    free(whole);
    free(bytes);
}

#define CHECK_IP(c, lit, want) check_ip(c, lit, sizeof(lit) - 1, want)

static void intn_strings_in_order_whole_bytewise_and_split(void **state)
{
    icfg_t i8 = { 1, 0, false }, i16 = { 2, 0, false }, i32 = { 4, 0, false };
    CHECK_IP(&i8, "\x05hello\x00\x03" "abc", "S(hello)S()S(abc)lost(clean)");
    CHECK_IP(&i16, "\x00\x05hello\x00\x00\x00\x03" "abc\x00", "S(hello)S()S(abc)lost(clean)");
    CHECK_IP(&i32, "\x00\x00\x00\x05hello\x00\x00\x00\x00\x00\x00\x00\x03" "abc\x00\x00\x00",
             "S(hello)S()S(abc)lost(clean)");
    CHECK_IP(&i32, "\x00\x00\x00\x04QUIT\x00\x00\x00\x01x", "S(QUIT)lost(clean)");
    CHECK_IP(&i16, "\x00\x0a" "0123", "lost(clean)"); /* incomplete */
}

static void intn_many_in_one_read(void **state)
{
    for (int size = 1; size <= 4; size *= 2) {
        enum { N = 1000 };
        unsigned char *in = malloc(N * 24);
        char *want = malloc(N * 24 + 64);
        size_t n = 0, w = 0;
        for (int i = 0; i < N; i++) {
            char s[16];
            int k = sprintf(s, "s%d", i * 13);
            for (int b = size - 1; b >= 0; b--)
                in[n++] = (unsigned char)(k >> (8 * b));
            memcpy(in + n, s, (size_t)k);
            n += (size_t)k;
            w += (size_t)sprintf(want + w, "S(%s)", s);
        }
        strcpy(want + w, "lost(clean)");
        icfg_t c = { size, 0, false };
        check_ip(&c, in, n, want);
        free(in);
        free(want);
    }
}

static void intn_exactly_max_accepted_one_more_refused(void **state)
{
    icfg_t i32 = { 4, 5, false };
    CHECK_IP(&i32, "\x00\x00\x00\x05hello\x00\x00\x00\x06hello!",
             "S(hello)lost(intn,-90,string of 6 bytes is longer than the maximum of 5)");
    icfg_t i16 = { 2, 3, false };
    CHECK_IP(&i16, "\x00\x03" "abc\x00\x04" "abcd",
             "S(abc)lost(intn,-90,string of 4 bytes is longer than the maximum of 3)");
    /* Defaults: Twisted's 99999, or what the prefix can say. */
    iproto_t *ip;
    icfg_t d8 = { 1, 0, false }, d16 = { 2, 0, false }, d32 = { 4, 0, false };
    log_reset();
    tw_string_transport_t *t = ip_open(&d8, &ip);
    assert_int_equal(ip->ir.max, 255);
    tw_intn_receiver_set_max_length(&ip->ir, 1000);
    assert_int_equal(ip->ir.max, 255);
    unsigned char f[256];
    f[0] = 255;
    memset(f + 1, 'm', 255);
    tw_string_transport_feed(t, f, 256);
    assert_int_equal(g_len, 2 + 255 + 1);
    finish(t);
    log_reset();
    t = ip_open(&d16, &ip);
    assert_int_equal(ip->ir.max, 65535);
    finish(t);
    log_reset();
    t = ip_open(&d32, &ip);
    assert_int_equal(ip->ir.max, 99999);
    assert_int_equal(tw_string_transport_feed(t, "\x00\x01\x86\x9f", 4), 0); /* 99999 */
    assert_false(t->disconnecting);
    assert_int_equal(ip->ir.cap, 0); /* nothing set aside before the payload comes */
    finish(t);
    log_reset();
    t = ip_open(&d32, &ip);
    assert_int_equal(tw_string_transport_feed(t, "\x00\x01\x86\xa0", 4), 0); /* 100000 */
    assert_true(t->disconnecting);
    finish(t);
    assert_string_equal(
        g_log, "lost(intn,-90,string of 100000 bytes is longer than the maximum of 99999)");

    iproto_t bad;
    assert_int_equal(tw_intn_receiver_init(&bad.ir, &ip_proto_ops, &ip_ops, 3), -EINVAL);
    assert_int_equal(tw_intn_receiver_init(&bad.ir, &ip_proto_ops, &ip_ops, 8), -EINVAL);
}

static void intn_huge_length_refused_before_payload(void **state)
{
    iproto_t *ip;
    icfg_t i32 = { 4, 0, false };
    log_reset();
    tw_string_transport_t *t = ip_open(&i32, &ip);
    assert_int_equal(tw_string_transport_feed(t, "\xff\xff", 2), 0);
    assert_false(t->disconnecting);
    assert_int_equal(tw_string_transport_feed(t, "\xff\xff", 2), 0);
    assert_true(t->disconnecting);
    assert_null(ip->ir.buf);
    assert_string_equal(g_log, "");
    assert_int_equal(tw_string_transport_feed(t, "payload", 7), -EPIPE);
    finish(t);
    assert_string_equal(
        g_log, "lost(intn,-90,string of 4294967295 bytes is longer than the maximum of 99999)");
}

static void intn_custom_limit_callback_skips_the_string(void **state)
{
    icfg_t c = { 2, 4, true };
    CHECK_IP(&c, "\x00\x02hi\x00\x08" "01234567\x00\x03" "abc\x00\x05" "hello\x00\x00",
             "S(hi)T(8)S(abc)T(5)S()lost(clean)");
    /* A huge announced length is skipped as it arrives, never stored. */
    iproto_t *ip;
    log_reset();
    tw_string_transport_t *t = ip_open(&(icfg_t){ 4, 0, true }, &ip);
    tw_string_transport_feed(t, "\x00\x10\x00\x00", 4); /* 1 MiB */
    char *junk = malloc(1 << 20);
    memset(junk, 'j', 1 << 20);
    for (int i = 0; i < 16; i++) {
        tw_string_transport_feed(t, junk + i * 65536, 65536);
        assert_null(ip->ir.buf);
    }
    tw_string_transport_feed(t, "\x00\x00\x00\x02ok", 6);
    free(junk);
    finish(t);
    assert_string_equal(g_log, "T(1048576)S(ok)lost(clean)");
}

static void intn_send_string_is_twisted_format(void **state)
{
    icfg_t i16 = { 2, 0, false };
    CHECK_IP(&i16, "\x00\x07" "ECHO hi\x00\x05" "ECHO ",
             "S(ECHO hi)S(ECHO )W(\\x00\\x02hi\\x00\\x00)lost(clean)");
    static char big[65536];
    for (int size = 1; size <= 4; size *= 2) {
        iproto_t *ip;
        log_reset();
        icfg_t c = { size, 0, false };
        tw_string_transport_t *t = ip_open(&c, &ip);
        assert_int_equal(tw_intn_send_string(&ip->ir, "hi", 2), 0);
        size_t n;
        const char *out = tw_string_transport_value(t, &n);
        assert_int_equal(n, (size_t)size + 2);
        for (int i = 0; i < size - 1; i++)
            assert_int_equal(out[i], 0);
        assert_int_equal(out[size - 1], 2);
        assert_memory_equal(out + size, "hi", 2);
        tw_string_transport_clear(t);
        /* The largest the prefix can say, and one more. */
        size_t lim = size == 1 ? 255 : size == 2 ? 65535 : 0;
        if (lim) {
            assert_int_equal(tw_intn_send_string(&ip->ir, big, lim), 0);
            assert_int_equal(tw_string_transport_len(t), size + lim);
            tw_string_transport_clear(t);
            int writes = t->writes;
            assert_int_equal(tw_intn_send_string(&ip->ir, big, lim + 1), -EMSGSIZE);
            assert_int_equal(t->writes, writes);
            assert_int_equal(tw_string_transport_len(t), 0);
        }
        finish(t);
    }
}

/* ---- end to end: the loopback pair, one byte per read -------------------------------- */

/* A peer that echoes every netstring, or intn string, it gets (the same
 * kind), and a client that sends a batch and collects the answers. */
typedef struct echo_ns {
    tw_netstring_receiver_t ns;
    int got;
    char last[64];
} echo_ns_t;

static void echo_ns_string(tw_netstring_receiver_t *ns, char *data, size_t len)
{
    echo_ns_t *e = (echo_ns_t *)ns;
    e->got++;
    snprintf(e->last, sizeof e->last, "%.*s", (int)len, data);
    if (e->ns.base.ops->connection_made == NULL) /* the server */
        tw_netstring_send_string(ns, data, len);
}

static void echo_ns_made(tw_protocol_t *p, tw_transport_t *t)
{
    echo_ns_t *e = (echo_ns_t *)p;
    char s[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(s, sizeof s, "message %d", i);
        assert_int_equal(tw_netstring_send_string(&e->ns, s, (size_t)n), 0);
    }
}

static void echo_ns_destroy(tw_protocol_t *p)
{
    tw_netstring_receiver_fini((tw_netstring_receiver_t *)p);
    free(p);
}

static const tw_protocol_ops_t echo_ns_server_ops = {
    .data_received = tw_netstring_receiver_data_received,
    .destroy = echo_ns_destroy,
};
static const tw_protocol_ops_t echo_ns_client_ops = {
    .connection_made = echo_ns_made,
    .data_received = tw_netstring_receiver_data_received,
    .destroy = echo_ns_destroy,
};
static const tw_netstring_receiver_ops_t echo_ns_ops = { echo_ns_string };

static void netstring_loopback_byte_by_byte(void **state)
{
    echo_ns_t *cli = calloc(1, sizeof *cli), *srv = calloc(1, sizeof *srv);
    tw_netstring_receiver_init(&cli->ns, &echo_ns_client_ops, &echo_ns_ops);
    tw_netstring_receiver_init(&srv->ns, &echo_ns_server_ops, &echo_ns_ops);
    tw_loopback_t *lb = tw_loopback_new(NULL, &cli->ns.base, &srv->ns.base);
    assert_non_null(lb);
    assert_int_equal(tw_loopback_set_chunk(lb, 1), 0);
    while (cli->got < 100 && tw_loopback_pump(lb))
        ;
    assert_int_equal(srv->got, 100);
    assert_int_equal(cli->got, 100);
    assert_string_equal(cli->last, "message 99");
    tw_loopback_free(lb);
}

/* ---- end to end: real TCP on the backend under test --------------------------------- */

/* Server: each line comes back upper-cased; "quit" closes.  Client: sends
 * N lines in one write, then "quit", and checks each answer. */
enum { TCP_LINES = 500 };

typedef struct upper {
    tw_line_receiver_t lr;
    bool client;
    int got, bad, *lost;
} upper_t;

static int tcp_lost, tcp_destroyed;

static void upper_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    upper_t *u = (upper_t *)lr;
    if (u->client) {
        char want[32];
        snprintf(want, sizeof want, "LINE %d OF SOME LENGTH", u->got);
        u->bad += strlen(want) != len || memcmp(want, line, len) != 0;
        if (++u->got == TCP_LINES)
            tw_line_receiver_send_line(lr, "quit", 4);
        return;
    }
    if (len == 4 && memcmp(line, "quit", 4) == 0) {
        tw_line_receiver_stop(lr);
        tw_transport_lose_connection(lr->base.transport);
        return;
    }
    for (size_t i = 0; i < len; i++) /* in place: the line is ours */
        line[i] = (char)toupper((unsigned char)line[i]);
    tw_line_receiver_send_line(lr, line, len);
}

static void upper_made(tw_protocol_t *p, tw_transport_t *t)
{
    upper_t *u = (upper_t *)p;
    if (!u->client)
        return;
    char *all = malloc(TCP_LINES * 32);
    size_t n = 0;
    for (int i = 0; i < TCP_LINES; i++)
        n += (size_t)sprintf(all + n, "line %d of some length\r\n", i);
    tw_transport_write(t, all, n);
    free(all);
}

static void upper_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    upper_t *u = (upper_t *)p;
    if (u->client) {
        assert_null(reason);
        assert_int_equal(u->got, TCP_LINES);
        assert_int_equal(u->bad, 0);
    }
    tcp_lost++;
}

static void upper_destroy(tw_protocol_t *p)
{
    tw_line_receiver_fini((tw_line_receiver_t *)p);
    free(p);
    tcp_destroyed++;
}

static const tw_protocol_ops_t upper_proto_ops = {
    .connection_made = upper_made,
    .data_received = tw_line_receiver_data_received,
    .connection_lost = upper_lost,
    .destroy = upper_destroy,
};
static const tw_line_receiver_ops_t upper_ops = { upper_line, NULL, NULL };

typedef struct upper_factory {
    tw_factory_t base;
    bool client;
} upper_factory_t;

static tw_protocol_t *upper_build(tw_factory_t *f, const struct sockaddr *a, socklen_t n)
{
    upper_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    tw_line_receiver_init(&u->lr, &upper_proto_ops, &upper_ops);
    u->lr.base.factory = f;
    u->client = ((upper_factory_t *)f)->client;
    return &u->lr.base;
}

static const tw_factory_ops_t upper_factory_ops = { .build_protocol = upper_build };

static void line_over_tcp(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    upper_factory_t sf = { .base.ops = &upper_factory_ops, .client = false };
    upper_factory_t cf = { .base.ops = &upper_factory_ops, .client = true };
    tw_listener_t *l = NULL;
    tw_tcp_listen_opts_t lo = { .interface = "127.0.0.1" };
    assert_int_equal(tw_tcp_listen(r, &sf.base, &lo, &l), 0);
    tw_tcp_connect_opts_t co = { .host = "127.0.0.1", .port = tw_listener_port(l) };
    tw_connector_t *c = NULL;
    tcp_lost = tcp_destroyed = 0;
    assert_int_equal(tw_tcp_connect(r, &cf.base, &co, &c), 0);
    tw_test_run_until(r, &tcp_destroyed, 2);
    assert_int_equal(tcp_lost, 2);
    tw_connector_free(c);
    tw_listener_close(l);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_lines_in_order_whole_bytewise_and_split),
        cmocka_unit_test(line_many_lines_in_one_read),
        cmocka_unit_test(line_delimiter_split_across_reads),
        cmocka_unit_test(line_exactly_max_accepted_one_more_refused),
        cmocka_unit_test(line_too_long_refused_as_soon_as_known),
        cmocka_unit_test(line_custom_exceeded_skips_the_rest_of_the_line),
        cmocka_unit_test(line_raw_mode_switch_is_byte_exact),
        cmocka_unit_test(line_settings_changed_between_reads),
        cmocka_unit_test(line_quit_stops_the_rest_of_the_read),
        cmocka_unit_test(line_pause_in_callback),
        cmocka_unit_test(line_send_line_writes_line_and_delimiter),
        cmocka_unit_test(line_idle_receiver_keeps_no_big_buffer),
        cmocka_unit_test(netstring_strings_in_order_whole_bytewise_and_split),
        cmocka_unit_test(netstring_many_in_one_read),
        cmocka_unit_test(netstring_malformed_input_closes_with_a_reason),
        cmocka_unit_test(netstring_exactly_max_accepted_one_more_refused),
        cmocka_unit_test(netstring_huge_length_refused_before_payload),
        cmocka_unit_test(netstring_send_string_is_twisted_format),
        cmocka_unit_test(intn_strings_in_order_whole_bytewise_and_split),
        cmocka_unit_test(intn_many_in_one_read),
        cmocka_unit_test(intn_exactly_max_accepted_one_more_refused),
        cmocka_unit_test(intn_huge_length_refused_before_payload),
        cmocka_unit_test(intn_custom_limit_callback_skips_the_string),
        cmocka_unit_test(intn_send_string_is_twisted_format),
        cmocka_unit_test(netstring_loopback_byte_by_byte),
        cmocka_unit_test(line_over_tcp),
    };
    TW_TEST_MAIN(tests);
}
