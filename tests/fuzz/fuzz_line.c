/* fuzz_line.c -- libFuzzer target for the line receiver (protocols/basic.c).
 *
 * Input: byte 0 chooses the delimiter, the maximum length, whether
 * line_length_exceeded is set (log and carry on) and whether lines act as
 * commands (R<d>: raw mode for d bytes; D<d>: another delimiter; M<d>:
 * another maximum; Q: stop and lose); byte 1 seeds the splits; the rest is
 * the stream.  The stream goes to a receiver on a string transport three
 * ways -- whole, in pieces cut at positions derived from the input, and a
 * byte at a time -- and the three must give the same callbacks (raw data
 * compared as a stream).  Without commands, the callbacks must also be those
 * of a naive model of the rules written beside it.  Always: a line is at
 * most the maximum and NUL-terminated; an exceeded partial is max + 1 bytes;
 * no callback comes after the receiver stopped or the connection was lost;
 * bytes delivered as lines, delimiters and raw data never exceed the input;
 * the receiver's buffer stays within max + delimiter + 1. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_basic.h"
#include "tw_string_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    const char *s;
    size_t len;
} fz_delims[] = { { "\r\n", 2 }, { "\n", 1 }, { "aab", 3 }, { "\r\n\r\n", 4 }, { "\0", 1 } };
#define FZ_NDELIMS (sizeof fz_delims / sizeof fz_delims[0])

static const size_t fz_maxes[] = { 0, 1, 2, 3, 5, 8, 64, 300 };

/* What one run saw: a hash of the callbacks in order. */
typedef struct fz_log {
    uint64_t hash;
    int events;
    bool raw_open;
    int lost;
    int lost_code;
    size_t accounted; /* line bytes + delimiters + raw bytes */
} fz_log_t;

static void fz_hash(fz_log_t *l, const void *d, size_t n)
{
    const unsigned char *p = d;
    for (size_t i = 0; i < n; i++)
        l->hash = (l->hash ^ p[i]) * 0x100000001b3ull;
}

static void fz_event(fz_log_t *l, char tag, const void *d, size_t n)
{
    if (tag == 'R' && l->raw_open) {
        fz_hash(l, d, n); /* raw data is a stream: its cuts do not count */
        return;
    }
    l->raw_open = tag == 'R';
    l->events++;
    uint64_t len = tag == 'R' ? 0 : n; /* a raw run's length is not known yet */
    fz_hash(l, &tag, 1);
    fz_hash(l, &len, sizeof len);
    fz_hash(l, d, n);
}

typedef struct fz_proto {
    tw_line_receiver_t lr;
    fz_log_t *log;
    size_t raw_left;
    bool commands, quit;
} fz_proto_t;

static void fz_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)lr;
    assert(!lr->stopped && !p->quit && p->log->lost == 0);
    assert(len <= lr->max && line[len] == '\0');
    p->log->accounted += len + lr->dlen;
    fz_event(p->log, 'L', line, len);
    if (!p->commands || len < 1)
        return;
    unsigned d = len >= 2 && line[1] >= '0' && line[1] <= '9' ? (unsigned)(line[1] - '0') : 0;
    switch (line[0]) {
    case 'R':
        p->raw_left = d;
        tw_line_receiver_set_raw_mode(lr);
        break;
    case 'D':
        tw_line_receiver_set_delimiter(lr, fz_delims[d % FZ_NDELIMS].s,
                                       fz_delims[d % FZ_NDELIMS].len);
        break;
    case 'M':
        tw_line_receiver_set_max_length(lr, fz_maxes[d % 8]);
        break;
    case 'Q':
        p->quit = true;
        tw_line_receiver_stop(lr);
        tw_transport_lose_connection(lr->base.transport);
        break;
    }
    memset(line, 0, len); /* ours to scribble on */
}

static void fz_raw(tw_line_receiver_t *lr, const void *data, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)lr;
    assert(!lr->stopped && !p->quit && p->log->lost == 0 && len > 0);
    size_t take = len < p->raw_left ? len : p->raw_left;
    if (take)
        fz_event(p->log, 'R', data, take);
    p->log->accounted += take;
    p->raw_left -= take;
    if (p->raw_left == 0) {
        p->log->raw_open = false;
        tw_line_receiver_set_line_mode_extra(lr, len - take);
    }
}

static void fz_exceeded(tw_line_receiver_t *lr, const char *partial, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)lr;
    assert(!lr->stopped && !p->quit && p->log->lost == 0);
    assert(len == lr->max + 1);
    fz_event(p->log, 'X', partial, len);
}

static void fz_lost(tw_protocol_t *pr, const tw_failure_t *reason)
{
    fz_proto_t *p = (fz_proto_t *)pr;
    p->log->lost++;
    p->log->lost_code = reason ? reason->code : 0;
    if (reason)
        assert(strcmp(reason->domain, "line") == 0 && reason->code == -EMSGSIZE);
}

static void fz_destroy(tw_protocol_t *pr)
{
    tw_line_receiver_fini((tw_line_receiver_t *)pr);
    free(pr);
}

static const tw_protocol_ops_t fz_proto_ops = {
    .data_received = tw_line_receiver_data_received,
    .connection_lost = fz_lost,
    .destroy = fz_destroy,
};
static const tw_line_receiver_ops_t fz_ops = { fz_line, fz_raw, NULL };
static const tw_line_receiver_ops_t fz_ops_custom = { fz_line, fz_raw, fz_exceeded };

typedef struct fz_cfg {
    unsigned delim, max;
    bool custom, commands;
} fz_cfg_t;

static uint64_t fz_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* mode 0: whole; 1: a byte at a time; 2: pieces from the seed. */
static void fz_run(const fz_cfg_t *c, const uint8_t *in, size_t n, int mode, uint64_t seed,
                   fz_log_t *log)
{
    memset(log, 0, sizeof *log);
    log->hash = 0xcbf29ce484222325ull;
    fz_proto_t *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    tw_line_receiver_init(&p->lr, &fz_proto_ops, c->custom ? &fz_ops_custom : &fz_ops);
    tw_line_receiver_set_delimiter(&p->lr, fz_delims[c->delim].s, fz_delims[c->delim].len);
    tw_line_receiver_set_max_length(&p->lr, fz_maxes[c->max]);
    p->log = log;
    p->commands = c->commands;
    tw_string_transport_t *t = tw_string_transport_new(NULL, &p->lr.base);
    if (!t)
        abort();
    size_t bound = fz_maxes[c->max] + fz_delims[c->delim].len + 1;
    size_t off = 0;
    uint64_t s = seed | 1;
    while (off < n) {
        size_t k = mode == 0 ? n - off : mode == 1 ? 1 : 1 + (size_t)(fz_next(&s) % 64);
        if (k > n - off)
            k = n - off;
        if (tw_string_transport_feed(t, in + off, k) < 0)
            break;
        off += k;
        if (!c->commands) /* with commands the maximum moves */
            assert(p->lr.cap <= bound);
    }
    assert(log->accounted <= n);
    tw_string_transport_settle(t);
    tw_string_transport_free(t);
    assert(log->lost == 1);
}

/* The rules, naively: find each delimiter from scratch; a partial line is
 * too long when it has more than max bytes and no delimiter can still start
 * within its first max + 1. */
static size_t fz_find(const uint8_t *in, size_t from, size_t n, const char *d, size_t dl)
{
    for (size_t i = from; i + dl <= n; i++)
        if (memcmp(in + i, d, dl) == 0)
            return i;
    return SIZE_MAX;
}

static void fz_model(const fz_cfg_t *c, const uint8_t *in, size_t n, fz_log_t *log)
{
    const char *d = fz_delims[c->delim].s;
    size_t dl = fz_delims[c->delim].len, max = fz_maxes[c->max], pos = 0;
    memset(log, 0, sizeof *log);
    log->hash = 0xcbf29ce484222325ull;
    for (;;) {
        size_t f = fz_find(in, pos, n, d, dl);
        if (f != SIZE_MAX) {
            if (f - pos > max) {
                if (!c->custom) { /* the receiver closes: no callback */
                    log->lost_code = -EMSGSIZE;
                    return;
                }
                fz_event(log, 'X', in + pos, max + 1);
            } else {
                fz_event(log, 'L', in + pos, f - pos);
            }
            pos = f + dl;
            continue;
        }
        size_t rem = n - pos;
        if (rem <= max)
            return;
        for (size_t p = 0; p <= max; p++)
            if (rem - p < dl && memcmp(in + pos + p, d, rem - p) == 0)
                return; /* a delimiter may still start at p */
        if (c->custom)
            fz_event(log, 'X', in + pos, max + 1);
        else
            log->lost_code = -EMSGSIZE;
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fz_cfg_t c = {
        .delim = (data[0] & 7) % FZ_NDELIMS,
        .custom = data[0] & 8,
        .commands = data[0] & 16,
        .max = data[0] >> 5,
    };
    uint64_t seed = (uint64_t)data[1] * 0x9e3779b97f4a7c15ull + size;
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    fz_log_t whole, split, bytes;
    fz_run(&c, in, n, 0, seed, &whole);
    fz_run(&c, in, n, 2, seed, &split);
    assert(whole.hash == split.hash && whole.events == split.events);
    assert(whole.lost_code == split.lost_code);
    if (n <= 1024) { /* a byte at a time is slow: short inputs only */
        fz_run(&c, in, n, 1, seed, &bytes);
        assert(whole.hash == bytes.hash && whole.events == bytes.events);
        assert(whole.lost_code == bytes.lost_code);
    }
    if (!c.commands) {
        fz_log_t model;
        fz_model(&c, in, n, &model);
        assert(whole.hash == model.hash && whole.events == model.events);
        assert(whole.lost_code == model.lost_code);
    }
    return 0;
}
