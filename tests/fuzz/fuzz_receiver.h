/* fuzz_receiver.h -- what the receiver fuzz targets (fuzz_line.c,
 * fuzz_netstring.c, fuzz_intn.c) share.
 *
 * Each target reads its input the same way -- byte 0 configures the
 * receiver, byte 1 seeds the cuts, the rest is the stream -- feeds the
 * stream to a receiver on a string transport several ways (whole, in pieces
 * drawn from the seed, a byte at a time), records the callbacks of each run
 * in an fz_log_t and asserts that the logs agree, with each other or with a
 * naive model of the rules.  What is here knows nothing of any one receiver;
 * the callbacks, the model and the configuration stay in each target.
 *
 * The Makefile builds each target as a single translation unit, so this is
 * all static inline (no object of its own, no unused-function warnings) and
 * is found as "fuzz_receiver.h", beside the .c that includes it. */
#ifndef FUZZ_RECEIVER_H
#define FUZZ_RECEIVER_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_string_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one run saw: an FNV-1a hash of the callbacks in order, their number,
 * and how the connection ended. */
typedef struct fz_log {
    uint64_t hash;
    int events;
    int lost;      /* connection_lost calls: exactly one per run */
    int lost_code; /* the reason's code, 0 for a clean close */
} fz_log_t;

static inline void fz_log_init(fz_log_t *l)
{
    memset(l, 0, sizeof *l);
    l->hash = 0xcbf29ce484222325ull;
}

static inline void fz_hash(fz_log_t *l, const void *d, size_t n)
{
    const unsigned char *p = d;
    for (size_t i = 0; i < n; i++)
        l->hash = (l->hash ^ p[i]) * 0x100000001b3ull;
}

/* One callback: its kind, then its length before its bytes, so that no two
 * different sequences of events hash the same bytes in the same order. */
static inline void fz_event(fz_log_t *l, char tag, const void *d, size_t n)
{
    uint64_t len = n;
    l->events++;
    fz_hash(l, &tag, 1);
    fz_hash(l, &len, sizeof len);
    fz_hash(l, d, n);
}

/* For a target's connection_lost: counts the call and keeps the code; a
 * failure must come from the receiver under test (`domain`).  The target
 * then checks which codes its receiver may give. */
static inline void fz_log_lost(fz_log_t *l, const tw_failure_t *reason, const char *domain)
{
    l->lost++;
    l->lost_code = reason ? reason->code : 0;
    if (reason)
        assert(strcmp(reason->domain, domain) == 0);
}

/* Two runs of the same input saw the same callbacks and the same end. */
static inline void fz_log_same(const fz_log_t *a, const fz_log_t *b)
{
    assert(a->hash == b->hash && a->events == b->events);
    assert(a->lost_code == b->lost_code);
}

/* The input, split: byte 0 is the target's configuration, byte 1 (mixed
 * with the size) seeds the cuts, the rest is the stream.  False when there
 * is no stream to speak of (fewer than two bytes). */
typedef struct fz_input {
    uint8_t cfg;
    uint64_t seed;
    const uint8_t *in;
    size_t n;
} fz_input_t;

static inline bool fz_input(const uint8_t *data, size_t size, fz_input_t *out)
{
    if (size < 2)
        return false;
    out->cfg = data[0];
    out->seed = (uint64_t)data[1] * 0x9e3779b97f4a7c15ull + size;
    out->in = data + 2;
    out->n = size - 2;
    return true;
}

/* The ways a stream is cut before it is fed.  A byte at a time is slow, so
 * it is only for streams of at most FZ_BYTES_MAX bytes (fz_mode_fits). */
enum { FZ_WHOLE, FZ_PIECES, FZ_BYTES, FZ_MODES };
#define FZ_BYTES_MAX 1024

static inline bool fz_mode_fits(int mode, size_t n)
{
    return mode != FZ_BYTES || n <= FZ_BYTES_MAX;
}

/* xorshift64: cheap, and the same cuts for the same seed. */
static inline uint64_t fz_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

static inline void *fz_calloc(size_t size)
{
    void *p = calloc(1, size);
    if (!p)
        abort();
    return p;
}

/* A string transport for `pr` (which it owns from here on). */
static inline tw_string_transport_t *fz_transport(tw_protocol_t *pr)
{
    tw_string_transport_t *t = tw_string_transport_new(NULL, pr);
    if (!t)
        abort();
    return t;
}

/* Feeds a stream to a transport piece by piece, so that the target can
 * check the receiver between pieces:
 *
 *     fz_feeder_t f = fz_feeder(t, in, n, mode, seed);
 *     while (fz_feed_next(&f))
 *         assert(...);
 */
typedef struct fz_feeder {
    tw_string_transport_t *t;
    const uint8_t *in;
    size_t n, off;
    int mode;
    uint64_t s;
} fz_feeder_t;

static inline fz_feeder_t fz_feeder(tw_string_transport_t *t, const uint8_t *in, size_t n,
                                    int mode, uint64_t seed)
{
    return (fz_feeder_t){ .t = t, .in = in, .n = n, .mode = mode, .s = seed | 1 };
}

/* Feeds the next piece; false once all is fed or the transport refused a
 * piece (the connection is closing: the rest would go nowhere). */
static inline bool fz_feed_next(fz_feeder_t *f)
{
    if (f->off >= f->n)
        return false;
    size_t k = f->mode == FZ_WHOLE   ? f->n - f->off
               : f->mode == FZ_BYTES ? 1
                                     : 1 + (size_t)(fz_next(&f->s) % 64);
    if (k > f->n - f->off)
        k = f->n - f->off;
    if (tw_string_transport_feed(f->t, f->in + f->off, k) < 0)
        return false;
    f->off += k;
    return true;
}

/* The receiver wrote back exactly `want`. */
static inline void fz_assert_sent(const tw_string_transport_t *t, const void *want, size_t len)
{
    size_t outn;
    const char *out = tw_string_transport_value(t, &outn);
    assert(outn == len && memcmp(out, want, len) == 0);
}

/* Ends a run: lets the connection finish closing, frees the transport (and
 * with it the protocol), and checks that connection_lost came once. */
static inline void fz_finish(tw_string_transport_t *t, const fz_log_t *log)
{
    tw_string_transport_settle(t);
    tw_string_transport_free(t);
    assert(log->lost == 1);
}

#endif
