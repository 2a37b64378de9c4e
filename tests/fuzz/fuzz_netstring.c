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
 * was lost, and the receiver's buffer never outgrows the maximum. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_basic.h"
#include "tw_string_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t fz_maxes[] = { 0, 1, 5, 10, 99, 1000, 99999, 10000000 };

typedef struct fz_log {
    uint64_t hash;
    int events, lost, lost_code;
    size_t consumed; /* input bytes up to the end of the last string */
} fz_log_t;

static void fz_hash(fz_log_t *l, const void *d, size_t n)
{
    const unsigned char *p = d;
    for (size_t i = 0; i < n; i++)
        l->hash = (l->hash ^ p[i]) * 0x100000001b3ull;
}

static void fz_event(fz_log_t *l, const void *d, size_t n)
{
    uint64_t len = n;
    l->events++;
    fz_hash(l, &len, sizeof len);
    fz_hash(l, d, n);
}

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
    fz_event(p->log, data, len);
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
    fz_proto_t *p = (fz_proto_t *)pr;
    p->log->lost++;
    p->log->lost_code = reason ? reason->code : 0;
    if (reason)
        assert(strcmp(reason->domain, "netstring") == 0 &&
               (reason->code == -EPROTO || reason->code == -EMSGSIZE));
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

static uint64_t fz_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* mode 0: whole; 1: a byte at a time; 2: pieces from the seed.  Checks the
 * echo against the input. */
static void fz_run(size_t max, const uint8_t *in, size_t n, int mode, uint64_t seed,
                   fz_log_t *log, size_t consumed)
{
    memset(log, 0, sizeof *log);
    log->hash = 0xcbf29ce484222325ull;
    fz_proto_t *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    tw_netstring_receiver_init(&p->ns, &fz_proto_ops, &fz_ops);
    tw_netstring_receiver_set_max_length(&p->ns, max);
    p->log = log;
    tw_string_transport_t *t = tw_string_transport_new(NULL, &p->ns.base);
    if (!t)
        abort();
    size_t off = 0;
    uint64_t s = seed | 1;
    while (off < n) {
        size_t k = mode == 0 ? n - off : mode == 1 ? 1 : 1 + (size_t)(fz_next(&s) % 64);
        if (k > n - off)
            k = n - off;
        if (tw_string_transport_feed(t, in + off, k) < 0)
            break;
        off += k;
        /* Never more than the longest string allowed, and its NUL. */
        assert(p->ns.cap <= max + 1);
    }
    size_t outn;
    const char *out = tw_string_transport_value(t, &outn);
    assert(outn == consumed && memcmp(out, in, consumed) == 0);
    tw_string_transport_settle(t);
    tw_string_transport_free(t);
    assert(log->lost == 1);
}

/* Twisted's rules, naively, on the whole input at once. */
static void fz_model(size_t max, const uint8_t *in, size_t n, fz_log_t *log)
{
    size_t pos = 0;
    memset(log, 0, sizeof *log);
    log->hash = 0xcbf29ce484222325ull;
    for (;;) {
        size_t i = pos, v = 0;
        bool any = false;
        for (; i < n && in[i] >= '0' && in[i] <= '9'; i++) {
            if (any && v == 0) {
                log->lost_code = -EPROTO; /* leading zero */
                return;
            }
            v = v * 10 + (size_t)(in[i] - '0');
            any = true;
            if (v > max) {
                log->lost_code = -EMSGSIZE;
                return;
            }
        }
        if (i == n)
            return; /* incomplete length */
        if (in[i] != ':' || !any) {
            log->lost_code = -EPROTO;
            return;
        }
        i++;
        if (n - i < v + 1)
            return; /* incomplete payload or comma */
        if (in[i + v] != ',') {
            log->lost_code = -EPROTO;
            return;
        }
        fz_event(log, in + i, v);
        pos = i + v + 1;
        log->consumed = pos;
        if (v == 1 && in[i] == 'Q')
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = fz_maxes[data[0] % 8];
    uint64_t seed = (uint64_t)data[1] * 0x9e3779b97f4a7c15ull + size;
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    fz_log_t model, run;
    fz_model(max, in, n, &model);
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 1 && n > 1024) /* a byte at a time is slow: short inputs only */
            continue;
        fz_run(max, in, n, mode, seed, &run, model.consumed);
        assert(run.hash == model.hash && run.events == model.events);
        assert(run.lost_code == model.lost_code);
    }
    return 0;
}
