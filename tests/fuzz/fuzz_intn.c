/* fuzz_intn.c -- libFuzzer target for the length-prefixed receivers
 * (protocols/basic.c), 8-, 16- and 32-bit prefixes in one target.
 *
 * Input: byte 0 chooses the prefix size (its value mod 3: 1, 2 or 4 bytes),
 * the maximum length, and whether length_limit_exceeded is set (log and skip
 * the string) or not (the connection is lost); byte 1 seeds the splits; the
 * rest is the stream.  It goes to a receiver on a string transport whole, in
 * pieces cut at positions derived from the input, and a byte at a time; each
 * string received is sent back with tw_intn_send_string, and a string "Q"
 * stops the receiver and loses the connection.  All three runs must give the
 * callbacks and the failure of a naive parser written beside it, and what
 * was sent back must be exactly the strings accepted, framed as they came.
 * Always: strings are at most the maximum and NUL-terminated, nothing comes
 * after the receiver stopped or the connection was lost, and the buffer
 * never outgrows the maximum (so a refused length allocates nothing).  The
 * feeding and the log are in fuzz_receiver.h. */
#define _GNU_SOURCE
#include <errno.h>

#include "tw_basic.h"
#include "fuzz_receiver.h"

static const size_t fz_maxes[] = { 0, 1, 7, 255, 300, 65535, 99999, 4000000000u };

typedef struct fz_proto {
    tw_intn_receiver_t ir;
    fz_log_t *log;
    bool quit;
} fz_proto_t;

static void fz_string(tw_intn_receiver_t *ir, char *data, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)ir;
    assert(!ir->stopped && !p->quit && p->log->lost == 0);
    assert(len <= ir->max && data[len] == '\0');
    fz_event(p->log, 'S', data, len);
    assert(tw_intn_send_string(ir, data, len) == 0);
    if (len == 1 && data[0] == 'Q') {
        p->quit = true;
        tw_intn_receiver_stop(ir);
        tw_transport_lose_connection(ir->base.transport);
    }
    memset(data, 0, len);
}

static void fz_exceeded(tw_intn_receiver_t *ir, size_t length)
{
    fz_proto_t *p = (fz_proto_t *)ir;
    assert(!ir->stopped && !p->quit && p->log->lost == 0);
    assert(length > ir->max);
    uint64_t l = length;
    fz_event(p->log, 'T', &l, sizeof l);
}

static void fz_lost(tw_protocol_t *pr, const tw_failure_t *reason)
{
    fz_log_lost(((fz_proto_t *)pr)->log, reason, "intn");
    assert(!reason || reason->code == -EMSGSIZE);
}

static void fz_destroy(tw_protocol_t *pr)
{
    tw_intn_receiver_fini((tw_intn_receiver_t *)pr);
    free(pr);
}

static const tw_protocol_ops_t fz_proto_ops = {
    .data_received = tw_intn_receiver_data_received,
    .connection_lost = fz_lost,
    .destroy = fz_destroy,
};
static const tw_intn_receiver_ops_t fz_ops = { fz_string, NULL };
static const tw_intn_receiver_ops_t fz_ops_custom = { fz_string, fz_exceeded };

typedef struct fz_cfg {
    int psize;
    size_t max;
    bool custom;
} fz_cfg_t;

/* What the receiver's maximum becomes: clamped to what the prefix says. */
static size_t fz_effective_max(const fz_cfg_t *c)
{
    uint64_t pm = c->psize == 4 ? UINT32_MAX : (UINT64_C(1) << (8 * c->psize)) - 1;
    return c->max > pm ? (size_t)pm : c->max;
}

/* `echo` is what must have been sent back. */
static void fz_run(const fz_cfg_t *c, const uint8_t *in, size_t n, int mode, uint64_t seed,
                   fz_log_t *log, const uint8_t *echo, size_t echo_len)
{
    fz_log_init(log);
    fz_proto_t *p = fz_calloc(sizeof *p);
    int rc = tw_intn_receiver_init(&p->ir, &fz_proto_ops, c->custom ? &fz_ops_custom : &fz_ops,
                                   c->psize);
    assert(rc == 0);
    tw_intn_receiver_set_max_length(&p->ir, c->max);
    assert(p->ir.max == fz_effective_max(c));
    p->log = log;
    tw_string_transport_t *t = fz_transport(&p->ir.base);
    fz_feeder_t f = fz_feeder(t, in, n, mode, seed);
    while (fz_feed_next(&f))
        /* A refused length stores nothing: the buffer never outgrows the
         * largest string allowed. */
        assert(p->ir.cap <= p->ir.max + 1);
    fz_assert_sent(t, echo, echo_len);
    fz_finish(t, log);
}

/* The rules, naively, on the whole input; builds the expected echo. */
static void fz_model(const fz_cfg_t *c, const uint8_t *in, size_t n, fz_log_t *log,
                     uint8_t *echo, size_t *echo_len)
{
    size_t pos = 0, max = fz_effective_max(c), ps = (size_t)c->psize;
    fz_log_init(log);
    *echo_len = 0;
    while (n - pos >= ps) {
        size_t v = 0;
        for (size_t i = 0; i < ps; i++)
            v = v << 8 | in[pos + i];
        size_t start = pos;
        pos += ps;
        if (v > max) {
            if (!c->custom) {
                log->lost_code = -EMSGSIZE;
                return;
            }
            uint64_t l = v;
            fz_event(log, 'T', &l, sizeof l);
            if (n - pos < v)
                return;
            pos += v;
            continue;
        }
        if (n - pos < v)
            return;
        fz_event(log, 'S', in + pos, v);
        memcpy(echo + *echo_len, in + start, ps + v);
        *echo_len += ps + v;
        pos += v;
        if (v == 1 && in[start + ps] == 'Q')
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input_t x;
    if (!fz_input(data, size, &x))
        return 0;
    static const int sizes[] = { 1, 2, 4 };
    fz_cfg_t c = {
        .psize = sizes[x.cfg % 3],
        .custom = (x.cfg / 3) & 1,
        .max = fz_maxes[(x.cfg / 6) % 8],
    };

    uint8_t *echo = malloc(x.n + 1);
    if (!echo)
        abort();
    size_t echo_len;
    fz_log_t model, run;
    fz_model(&c, x.in, x.n, &model, echo, &echo_len);
    for (int mode = 0; mode < FZ_MODES; mode++) {
        if (!fz_mode_fits(mode, x.n))
            continue;
        fz_run(&c, x.in, x.n, mode, x.seed, &run, echo, echo_len);
        fz_log_same(&run, &model);
    }
    free(echo);
    return 0;
}
