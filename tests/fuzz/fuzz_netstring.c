/* fuzz_netstring.c -- libFuzzer target for the netstring receiver
 * (protocols/basic.c).
 *
 * Input: byte 0 chooses the maximum length; byte 1 seeds the splits; the
 * rest is the stream.  It goes to a receiver on a string transport whole, in
 * pieces cut at positions derived from the input, and a byte at a time; each
 * string received is sent back with tw_netstring_send_string, and a string
 * "Q" stops the receiver and loses the connection.  All three runs must give
 * the callbacks, and the failure, of a naive parser written beside it
 * (Twisted's grammar: (0|[1-9][0-9]*):<data>,); and since that encoding is
 * canonical, what was sent back must be exactly the input up to the end of
 * the last string accepted.  Always: strings are at most the maximum and
 * NUL-terminated, nothing comes after the receiver stopped or the connection
 * was lost, and the receiver's buffer never outgrows the maximum.  The
 * feeding and the log are in fuzz_receiver.h. */
#define _GNU_SOURCE
#include <errno.h>

#include "tw_basic.h"
#include "fuzz_receiver.h"

static const size_t fz_maxes[] = { 0, 1, 5, 10, 99, 1000, 99999, 10000000 };

typedef struct fz_proto {
    tw_netstring_receiver_t ns;
    fz_log_t *log;
    bool quit;
} fz_proto_t;

static void fz_string(tw_netstring_receiver_t *ns, char *data, size_t len)
{
    fz_proto_t *p = (fz_proto_t *)ns;
    assert(!ns->stopped && !p->quit && p->log->lost == 0);
    assert(len <= ns->max && data[len] == '\0');
    fz_event(p->log, 'S', data, len);
    assert(tw_netstring_send_string(ns, data, len) == 0);
    if (len == 1 && data[0] == 'Q') {
        p->quit = true;
        tw_netstring_receiver_stop(ns);
        tw_transport_lose_connection(ns->base.transport);
    }
    memset(data, 0, len);
}

static void fz_lost(tw_protocol_t *pr, const tw_failure_t *reason)
{
    fz_log_lost(((fz_proto_t *)pr)->log, reason, "netstring");
    assert(!reason || reason->code == -EPROTO || reason->code == -EMSGSIZE);
}

static void fz_destroy(tw_protocol_t *pr)
{
    tw_netstring_receiver_fini((tw_netstring_receiver_t *)pr);
    free(pr);
}

static const tw_protocol_ops_t fz_proto_ops = {
    .data_received = tw_netstring_receiver_data_received,
    .connection_lost = fz_lost,
    .destroy = fz_destroy,
};
static const tw_netstring_receiver_ops_t fz_ops = { fz_string };

/* Checks the echo against the input: the first `consumed` bytes. */
static void fz_run(size_t max, const uint8_t *in, size_t n, int mode, uint64_t seed,
                   fz_log_t *log, size_t consumed)
{
    fz_log_init(log);
    fz_proto_t *p = fz_calloc(sizeof *p);
    tw_netstring_receiver_init(&p->ns, &fz_proto_ops, &fz_ops);
    tw_netstring_receiver_set_max_length(&p->ns, max);
    p->log = log;
    tw_string_transport_t *t = fz_transport(&p->ns.base);
    fz_feeder_t f = fz_feeder(t, in, n, mode, seed);
    while (fz_feed_next(&f))
        /* Never more than the longest string allowed, and its NUL. */
        assert(p->ns.cap <= max + 1);
    fz_assert_sent(t, in, consumed);
    fz_finish(t, log);
}

/* Twisted's rules, naively, on the whole input at once.  Returns how much
 * of the input the strings accepted take, up to the end of the last. */
static size_t fz_model(size_t max, const uint8_t *in, size_t n, fz_log_t *log)
{
    size_t pos = 0;
    fz_log_init(log);
    for (;;) {
        size_t i = pos, v = 0;
        bool any = false;
        for (; i < n && in[i] >= '0' && in[i] <= '9'; i++) {
            if (any && v == 0) {
                log->lost_code = -EPROTO; /* leading zero */
                return pos;
            }
            v = v * 10 + (size_t)(in[i] - '0');
            any = true;
            if (v > max) {
                log->lost_code = -EMSGSIZE;
                return pos;
            }
        }
        if (i == n)
            return pos; /* incomplete length */
        if (in[i] != ':' || !any) {
            log->lost_code = -EPROTO;
            return pos;
        }
        i++;
        if (n - i < v + 1)
            return pos; /* incomplete payload or comma */
        if (in[i + v] != ',') {
            log->lost_code = -EPROTO;
            return pos;
        }
        fz_event(log, 'S', in + i, v);
        pos = i + v + 1;
        if (v == 1 && in[i] == 'Q')
            return pos;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input_t x;
    if (!fz_input(data, size, &x))
        return 0;
    size_t max = fz_maxes[x.cfg % 8];

    fz_log_t model, run;
    size_t consumed = fz_model(max, x.in, x.n, &model);
    for (int mode = 0; mode < FZ_MODES; mode++) {
        if (!fz_mode_fits(mode, x.n))
            continue;
        fz_run(max, x.in, x.n, mode, x.seed, &run, consumed);
        fz_log_same(&run, &model);
    }
    return 0;
}
