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
 * the receiver's buffer stays within max + delimiter + 1.  The feeding and
 * the log are in fuzz_receiver.h. */
#define _GNU_SOURCE
#include <errno.h>

#include "tw_basic.h"
#include "fuzz_receiver.h"

static const struct {
    const char *s;
    size_t len;
} fz_delims[] = { { "\r\n", 2 }, { "\n", 1 }, { "aab", 3 }, { "\r\n\r\n", 4 }, { "\0", 1 } };
#define FZ_NDELIMS (sizeof fz_delims / sizeof fz_delims[0])

static const size_t fz_maxes[] = { 0, 1, 2, 3, 5, 8, 64, 300 };

typedef struct fz_proto {
    tw_line_receiver_t lr;
    fz_log_t *log;
    size_t raw_left;
    size_t accounted; /* line bytes + delimiters + raw bytes */
    bool raw_open;    /* the last event was raw data */
    bool commands, quit;
} fz_proto_t;

/* A line or an exceeded partial: it ends any run of raw data. */
static void fz_record(fz_proto_t *p, char tag, const void *d, size_t n)
{
    p->raw_open = false;
    fz_event(p->log, tag, d, n);
}

/* Raw data is a stream: its cuts do not count, so a run of it is one event
 * (its length not known yet) whose bytes are hashed as they come. */
static void fz_record_raw(fz_proto_t *p, const void *d, size_t n)
{
    if (!p->raw_open)
        fz_event(p->log, 'R', NULL, 0);
    p->raw_open = true;
    fz_hash(p->log, d, n);
}

static void fz_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)lr;
    assert(!lr->stopped && !p->quit && p->log->lost == 0);
    assert(len <= lr->max && line[len] == '\0');
    p->accounted += len + lr->dlen;
    fz_record(p, 'L', line, len);
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
        fz_record_raw(p, data, take);
    p->accounted += take;
    p->raw_left -= take;
    if (p->raw_left == 0) {
        p->raw_open = false;
        tw_line_receiver_set_line_mode_extra(lr, len - take);
    }
}

static void fz_exceeded(tw_line_receiver_t *lr, const char *partial, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)lr;
    assert(!lr->stopped && !p->quit && p->log->lost == 0);
    assert(len == lr->max + 1);
    fz_record(p, 'X', partial, len);
}

static void fz_lost(tw_protocol_t *pr, const tw_failure_t *reason)
{
    fz_log_lost(((fz_proto_t *)pr)->log, reason, "line");
    assert(!reason || reason->code == -EMSGSIZE);
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

static void fz_run(const fz_cfg_t *c, const uint8_t *in, size_t n, int mode, uint64_t seed,
                   fz_log_t *log)
{
    fz_log_init(log);
    fz_proto_t *p = fz_calloc(sizeof *p);
    tw_line_receiver_init(&p->lr, &fz_proto_ops, c->custom ? &fz_ops_custom : &fz_ops);
    tw_line_receiver_set_delimiter(&p->lr, fz_delims[c->delim].s, fz_delims[c->delim].len);
    tw_line_receiver_set_max_length(&p->lr, fz_maxes[c->max]);
    p->log = log;
    p->commands = c->commands;
    tw_string_transport_t *t = fz_transport(&p->lr.base);
    size_t bound = fz_maxes[c->max] + fz_delims[c->delim].len + 1;
    fz_feeder_t f = fz_feeder(t, in, n, mode, seed);
    while (fz_feed_next(&f))
        if (!c->commands) /* with commands the maximum moves */
            assert(p->lr.cap <= bound);
    assert(p->accounted <= n);
    fz_finish(t, log);
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
    fz_log_init(log);
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
    fz_input_t x;
    if (!fz_input(data, size, &x))
        return 0;
    fz_cfg_t c = {
        .delim = (x.cfg & 7) % FZ_NDELIMS,
        .custom = x.cfg & 8,
        .commands = x.cfg & 16,
        .max = x.cfg >> 5,
    };

    /* Every way of cutting the stream gives what it gives whole. */
    fz_log_t whole, run;
    fz_run(&c, x.in, x.n, FZ_WHOLE, x.seed, &whole);
    for (int mode = FZ_WHOLE + 1; mode < FZ_MODES; mode++) {
        if (!fz_mode_fits(mode, x.n))
            continue;
        fz_run(&c, x.in, x.n, mode, x.seed, &run);
        fz_log_same(&whole, &run);
    }
    if (!c.commands) {
        fz_log_t model;
        fz_model(&c, x.in, x.n, &model);
        fz_log_same(&whole, &model);
    }
    return 0;
}
