/* basic.c -- line, netstring and length-prefixed receivers (see tw_basic.h).
 *
 * All three scan the borrowed read buffer in place and copy each line or
 * frame once, into a buffer of their own that grows with what is actually
 * received (never ahead of the bytes, never past the maximum length): a peer
 * announcing a 99,999-byte string and sending nothing costs nothing. */
#define _GNU_SOURCE
#include "tw_basic.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An idle receiver keeps a buffer up to this size, and frees a larger one:
 * one long line must not pin its memory for the life of the connection. */
#define RECV_KEEP 4096

/* ---- shared pieces ------------------------------------------------------- */

/* Make *buf at least `need` bytes, doubling (so a frame arriving in many
 * reads is copied O(1) times on average) but never past `limit` when `need`
 * fits in it.  Returns 0 or -ENOMEM (the buffer is left as it was). */
static int recv_reserve(char **buf, size_t *cap, size_t need, size_t limit)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > limit && need <= limit)
        n = limit;
    char *b = realloc(*buf, n);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = n;
    return 0;
}

static void recv_fail(tw_protocol_t *p, const char *domain, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Lose the connection, telling connection_lost why.  Without memory for the
 * failure, abort: a clean close would hide that the peer broke the rules. */
static void recv_fail(tw_protocol_t *p, const char *domain, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_failure_t *f = tw_failure_newv(domain, code, fmt, ap);
    va_end(ap);
    if (f)
        tw_transport_lose_connection_with(p->transport, f);
    else
        tw_transport_abort_connection(p->transport);
}

/* ---- line receiver -------------------------------------------------------- */

/* State between reads, in line mode: buf[0, blen) is the start of a line
 * with no complete delimiter in it and not yet known to be too long; or,
 * when discarding, the last (at most dlen - 1) bytes of a too-long line,
 * kept only because they may begin its delimiter.  Inside callbacks blen is
 * 0 and buf holds the line being delivered. */

static size_t line_limit(const tw_line_receiver_t *lr)
{
    return lr->max + lr->dlen + 1;
}

/* The first delimiter in d[0, n), or NULL.  Delimiters are short: memchr on
 * the first byte then a compare beats a general memmem here. */
static const char *line_find(const tw_line_receiver_t *lr, const char *d, size_t n)
{
    size_t dl = lr->dlen;
    if (dl == 1)
        return memchr(d, lr->delim[0], n);
    const char *end = d + n;
    while ((size_t)(end - d) >= dl) {
        d = memchr(d, lr->delim[0], (size_t)(end - d) - dl + 1);
        if (!d)
            return NULL;
        if (memcmp(d + 1, lr->delim + 1, dl - 1) == 0)
            return d;
        d++;
    }
    return NULL;
}

/* s[0, t) starts a line and holds no delimiter: is the line certainly longer
 * than max?  Yes when no delimiter can still start at or before max, i.e.
 * none of the bytes max - dlen + 2 .. max begins one that runs off the end. */
static bool line_too_long(const tw_line_receiver_t *lr, const char *s, size_t t)
{
    size_t max = lr->max, dl = lr->dlen;
    if (t <= max)
        return false;
    if (t - max >= dl)
        return true;
    for (size_t p = t + 1 > dl ? t + 1 - dl : 0; p <= max; p++)
        if (memcmp(s + p, lr->delim, t - p) == 0)
            return false;
    return true;
}

static void line_nomem(tw_line_receiver_t *lr)
{
    lr->stopped = true;
    recv_fail(&lr->base, "line", -ENOMEM, "out of memory for a line");
}

/* Deliver buf[0, len), a complete line. */
static void line_call(tw_line_receiver_t *lr, size_t len)
{
    lr->buf[len] = '\0';
    lr->ops->line_received(lr, lr->buf, len);
}

/* A line is too long; `partial` holds its first max + 1 bytes. */
static void line_exceeded(tw_line_receiver_t *lr, const char *partial)
{
    if (lr->ops->line_length_exceeded) {
        lr->ops->line_length_exceeded(lr, partial, lr->max + 1);
    } else {
        lr->stopped = true;
        recv_fail(&lr->base, "line", -EMSGSIZE, "line longer than %zu bytes", lr->max);
    }
}

/* Keep in buf the last dlen - 1 bytes (or fewer) of buf[0, have) + d[0, n):
 * while skipping a too-long line, enough to see a delimiter split across
 * reads. */
static void line_keep_tail(tw_line_receiver_t *lr, size_t have, const char *d, size_t n)
{
    size_t w = lr->dlen - 1u;
    if (w > have + n)
        w = have + n;
    size_t fd = n < w ? n : w, fb = w - fd;
    if (w && recv_reserve(&lr->buf, &lr->cap, w, line_limit(lr)) < 0) {
        line_nomem(lr);
        return;
    }
    if (fb)
        memmove(lr->buf, lr->buf + have - fb, fb);
    if (fd)
        memcpy(lr->buf + fb, d + n - fd, fd);
    lr->blen = w;
}

/* Raw mode: hand everything over; take back what set_line_mode_extra
 * returned.  Returns the bytes consumed. */
static size_t line_raw(tw_line_receiver_t *lr, const char *d, size_t n)
{
    lr->raw_len = n;
    lr->extra = 0;
    if (lr->ops->raw_data_received)
        lr->ops->raw_data_received(lr, d, n);
    size_t extra = lr->extra;
    lr->raw_len = 0;
    lr->extra = 0;
    return n - extra;
}

/* Line mode, nothing held: the common path.  One line (or the trailing
 * partial one) from d, parsed in place.  Returns the bytes consumed. */
static size_t line_scan(tw_line_receiver_t *lr, const char *d, size_t n)
{
    const char *e = line_find(lr, d, n);
    if (e) {
        size_t len = (size_t)(e - d);
        size_t used = len + lr->dlen; /* before the callback: it may change the delimiter */
        if (len > lr->max) {
            line_exceeded(lr, d); /* the whole line is here: nothing left to skip */
        } else if (recv_reserve(&lr->buf, &lr->cap, len + 1, line_limit(lr)) < 0) {
            line_nomem(lr);
        } else {
            memcpy(lr->buf, d, len);
            line_call(lr, len);
        }
        return used;
    }
    if (line_too_long(lr, d, n)) {
        line_exceeded(lr, d);
        if (!lr->stopped) {
            lr->discarding = true;
            line_keep_tail(lr, 0, d, n);
        }
    } else if (recv_reserve(&lr->buf, &lr->cap, n + 1, line_limit(lr)) < 0) {
        line_nomem(lr);
    } else {
        memcpy(lr->buf, d, n);
        lr->blen = n;
    }
    return n;
}

/* Line mode with bytes held from earlier reads (a partial line, or the tail
 * of a line being skipped): find the delimiter across the join, which may
 * split it.  Returns the bytes of d consumed. */
static size_t line_join(tw_line_receiver_t *lr, const char *d, size_t n)
{
    size_t blen = lr->blen, dl = lr->dlen, max = lr->max;
    size_t end = SIZE_MAX; /* where the delimiter starts, in buf + d */

    /* buf holds no whole delimiter, so one can start only in its last
     * dlen - 1 bytes (ending in d) or in d.  If a start in buf cannot be
     * decided yet (d too short), no later start can be complete either. */
    for (size_t k = blen >= dl ? blen - dl + 1 : 0; k < blen; k++) {
        size_t m = blen - k;
        if (n >= dl - m && memcmp(lr->buf + k, lr->delim, m) == 0 &&
            memcmp(d, lr->delim + m, dl - m) == 0) {
            end = k;
            break;
        }
    }
    if (end == SIZE_MAX) {
        const char *e = line_find(lr, d, n);
        if (e)
            end = blen + (size_t)(e - d);
    }

    if (end != SIZE_MAX) {
        size_t used = end + dl - blen;
        lr->blen = 0;
        if (lr->discarding) {
            lr->discarding = false;
            return used;
        }
        /* Gather the line (or, if too long, its first max + 1 bytes) in buf. */
        size_t want = end > max ? max + 1 : end;
        if (want > blen) {
            if (recv_reserve(&lr->buf, &lr->cap, want + 1, line_limit(lr)) < 0) {
                line_nomem(lr);
                return used;
            }
            memcpy(lr->buf + blen, d, want - blen);
        }
        if (end > max)
            line_exceeded(lr, lr->buf);
        else
            line_call(lr, end);
        return used;
    }

    if (lr->discarding) {
        line_keep_tail(lr, blen, d, n);
        return n;
    }
    size_t total = blen + n;
    if (total < max + dl) {
        /* Still possibly a line of at most max bytes: hold all of it. */
        if (recv_reserve(&lr->buf, &lr->cap, total + 1, line_limit(lr)) < 0) {
            line_nomem(lr);
            return n;
        }
        memcpy(lr->buf + blen, d, n);
        lr->blen = total;
        if (!line_too_long(lr, lr->buf, total))
            return n;
        lr->blen = 0;
        line_exceeded(lr, lr->buf);
        if (!lr->stopped) {
            lr->discarding = true;
            line_keep_tail(lr, total, NULL, 0);
        }
        return n;
    }
    /* Certainly too long: gather its first max + 1 bytes (buf + a prefix of
     * d; buf[0, blen) stays as it was, for the tail below). */
    if (blen < max + 1) {
        if (recv_reserve(&lr->buf, &lr->cap, max + 2, line_limit(lr)) < 0) {
            line_nomem(lr);
            return n;
        }
        memcpy(lr->buf + blen, d, max + 1 - blen);
    }
    lr->blen = 0;
    line_exceeded(lr, lr->buf);
    if (!lr->stopped) {
        lr->discarding = true;
        line_keep_tail(lr, blen, d, n);
    }
    return n;
}

static void line_feed(tw_line_receiver_t *lr, const char *d, size_t n)
{
    size_t off = 0;
    while (off < n && !lr->stopped) {
        if (lr->discarding || lr->blen > 0)
            off += line_join(lr, d + off, n - off);
        else if (lr->raw)
            off += line_raw(lr, d + off, n - off);
        else
            off += line_scan(lr, d + off, n - off);
    }
}

void tw_line_receiver_data_received(tw_protocol_t *p, const void *data, size_t len)
{
    tw_line_receiver_t *lr = (tw_line_receiver_t *)p;
    assert(!lr->busy && "data_received called from inside the receiver's callbacks");
    if (lr->stopped || lr->busy)
        return;
    lr->busy = true;
    if (lr->rescan) {
        /* The delimiter, maximum or mode changed while a partial line was
         * held: parse those bytes again, from scratch, under the new rules. */
        char *held = lr->buf;
        size_t hlen = lr->blen;
        lr->rescan = false;
        lr->buf = NULL;
        lr->blen = lr->cap = 0;
        line_feed(lr, held, hlen);
        free(held);
    }
    line_feed(lr, data, len);
    lr->busy = false;
    if (lr->blen == 0 && lr->cap > RECV_KEEP) {
        free(lr->buf);
        lr->buf = NULL;
        lr->cap = 0;
    }
}

/* Settings changed: bytes held were parsed under the old ones.  Inside a
 * callback nothing is held (the loop carries on under the new settings). */
static void line_changed(tw_line_receiver_t *lr)
{
    if (!lr->busy && lr->blen > 0)
        lr->rescan = true;
}

void tw_line_receiver_init(tw_line_receiver_t *lr, const tw_protocol_ops_t *proto_ops,
                           const tw_line_receiver_ops_t *ops)
{
    memset(lr, 0, sizeof *lr);
    lr->base.ops = proto_ops;
    lr->ops = ops;
    lr->max = TW_LINE_MAX_LENGTH;
    lr->dlen = 2;
    memcpy(lr->delim, "\r\n", 2);
}

void tw_line_receiver_fini(tw_line_receiver_t *lr)
{
    free(lr->buf);
    lr->buf = NULL;
    lr->blen = lr->cap = 0;
}

int tw_line_receiver_set_delimiter(tw_line_receiver_t *lr, const char *delim, size_t len)
{
    if (len == 0 || len > TW_LINE_DELIMITER_MAX)
        return -EINVAL;
    memcpy(lr->delim, delim, len);
    lr->dlen = (unsigned char)len;
    line_changed(lr);
    return 0;
}

void tw_line_receiver_set_max_length(tw_line_receiver_t *lr, size_t max)
{
    lr->max = max > SIZE_MAX / 4 ? SIZE_MAX / 4 : max;
    line_changed(lr);
}

void tw_line_receiver_set_raw_mode(tw_line_receiver_t *lr)
{
    lr->raw = true;
    line_changed(lr);
}

void tw_line_receiver_set_line_mode(tw_line_receiver_t *lr)
{
    lr->raw = false;
}

void tw_line_receiver_set_line_mode_extra(tw_line_receiver_t *lr, size_t extra)
{
    assert(extra <= lr->raw_len && "extra larger than the data given to raw_data_received");
    lr->extra = extra <= lr->raw_len ? extra : lr->raw_len;
    lr->raw = false;
}

void tw_line_receiver_stop(tw_line_receiver_t *lr)
{
    lr->stopped = true;
}

int tw_line_receiver_send_line(tw_line_receiver_t *lr, const void *line, size_t len)
{
    struct iovec iov[2] = { { (void *)line, len }, { lr->delim, lr->dlen } };
    return tw_transport_writev(lr->base.transport, iov, 2);
}

/* ---- netstring receiver --------------------------------------------------- */

enum { NS_LENGTH, NS_PAYLOAD, NS_COMMA };

static void ns_fail(tw_netstring_receiver_t *ns, int code, const char *what, unsigned char c)
{
    ns->stopped = true;
    if (code == -EMSGSIZE)
        recv_fail(&ns->base, "netstring", code, "netstring longer than %zu bytes", ns->max);
    else if (ns->state == NS_COMMA)
        recv_fail(&ns->base, "netstring", code,
                  "netstring not terminated by a comma (byte 0x%02x)", c);
    else if (what)
        recv_fail(&ns->base, "netstring", code, "malformed netstring length (%s)", what);
    else
        recv_fail(&ns->base, "netstring", code, "malformed netstring length (byte 0x%02x)", c);
}

static void ns_feed(tw_netstring_receiver_t *ns, const unsigned char *d, size_t n)
{
    size_t off = 0;
    while (off < n && !ns->stopped) {
        if (ns->state == NS_LENGTH) {
            /* Twisted's grammar: (0|[1-9][0-9]*):  -- checked byte by byte,
             * and the value against the maximum at every digit. */
            unsigned char c = d[off++];
            if (c >= '0' && c <= '9') {
                if (ns->digits && ns->len == 0) {
                    ns_fail(ns, -EPROTO, "leading zero", c);
                } else {
                    ns->len = ns->len * 10 + (size_t)(c - '0');
                    ns->digits = true;
                    if (ns->len > ns->max)
                        ns_fail(ns, -EMSGSIZE, NULL, c);
                }
            } else if (c == ':' && ns->digits) {
                ns->state = NS_PAYLOAD;
                ns->have = 0;
            } else {
                ns_fail(ns, -EPROTO, c == ':' ? "no digits before ':'" : NULL, c);
            }
        } else if (ns->state == NS_PAYLOAD) {
            size_t take = ns->len - ns->have;
            if (take > n - off)
                take = n - off;
            if (take) {
                if (recv_reserve(&ns->buf, &ns->cap, ns->have + take + 1, ns->len + 1) < 0) {
                    ns->stopped = true;
                    recv_fail(&ns->base, "netstring", -ENOMEM,
                              "out of memory for a %zu-byte netstring", ns->len);
                    return;
                }
                memcpy(ns->buf + ns->have, d + off, take);
                ns->have += take;
                off += take;
            }
            if (ns->have == ns->len)
                ns->state = NS_COMMA;
        } else {
            unsigned char c = d[off++];
            if (c != ',') {
                ns_fail(ns, -EPROTO, NULL, c);
                return;
            }
            if (recv_reserve(&ns->buf, &ns->cap, ns->len + 1, ns->len + 1) < 0) {
                ns->stopped = true;
                recv_fail(&ns->base, "netstring", -ENOMEM, "out of memory for a netstring");
                return;
            }
            size_t len = ns->len;
            ns->state = NS_LENGTH;
            ns->len = 0;
            ns->digits = false;
            ns->buf[len] = '\0';
            ns->ops->string_received(ns, ns->buf, len);
        }
    }
}

void tw_netstring_receiver_data_received(tw_protocol_t *p, const void *data, size_t len)
{
    tw_netstring_receiver_t *ns = (tw_netstring_receiver_t *)p;
    assert(!ns->busy && "data_received called from inside the receiver's callbacks");
    if (ns->stopped || ns->busy)
        return;
    ns->busy = true;
    ns_feed(ns, data, len);
    ns->busy = false;
    if (ns->state == NS_LENGTH && ns->cap > RECV_KEEP) {
        free(ns->buf);
        ns->buf = NULL;
        ns->cap = 0;
    }
}

void tw_netstring_receiver_init(tw_netstring_receiver_t *ns, const tw_protocol_ops_t *proto_ops,
                                const tw_netstring_receiver_ops_t *ops)
{
    memset(ns, 0, sizeof *ns);
    ns->base.ops = proto_ops;
    ns->ops = ops;
    ns->max = TW_NETSTRING_MAX_LENGTH;
    ns->state = NS_LENGTH;
}

void tw_netstring_receiver_fini(tw_netstring_receiver_t *ns)
{
    free(ns->buf);
    ns->buf = NULL;
    ns->cap = 0;
}

void tw_netstring_receiver_set_max_length(tw_netstring_receiver_t *ns, size_t max)
{
    /* Bounded so that len * 10 + 9 cannot overflow while parsing. */
    ns->max = max > SIZE_MAX / 16 ? SIZE_MAX / 16 : max;
}

void tw_netstring_receiver_stop(tw_netstring_receiver_t *ns)
{
    ns->stopped = true;
}

int tw_netstring_send_string(tw_netstring_receiver_t *ns, const void *data, size_t len)
{
    char head[24];
    int h = snprintf(head, sizeof head, "%zu:", len);
    struct iovec iov[3] = { { head, (size_t)h }, { (void *)data, len }, { ",", 1 } };
    return tw_transport_writev(ns->base.transport, iov, 3);
}

/* ---- length-prefixed receivers -------------------------------------------- */

/* The largest length a prefix of `size` bytes expresses, as a size_t. */
static size_t intn_prefix_max(unsigned size)
{
    uint64_t m = size >= 4 ? UINT32_MAX : (UINT64_C(1) << (8 * size)) - 1;
    return m > SIZE_MAX / 4 ? SIZE_MAX / 4 : (size_t)m;
}

static void intn_feed(tw_intn_receiver_t *ir, const unsigned char *d, size_t n)
{
    size_t off = 0;
    for (;;) {
        if (ir->stopped)
            return;
        if (!ir->in_payload) {
            while (ir->pfill < ir->psize && off < n)
                ir->prefix[ir->pfill++] = d[off++];
            if (ir->pfill < ir->psize)
                return;
            size_t len = 0;
            for (unsigned i = 0; i < ir->psize; i++)
                len = len << 8 | ir->prefix[i];
            ir->pfill = 0;
            ir->in_payload = true;
            ir->len = len;
            ir->have = 0;
            ir->skipping = len > ir->max;
            if (ir->skipping) {
                /* Refused before a byte of it is read or stored. */
                if (ir->ops->length_limit_exceeded) {
                    ir->ops->length_limit_exceeded(ir, len);
                } else {
                    ir->stopped = true;
                    recv_fail(&ir->base, "intn", -EMSGSIZE,
                              "string of %zu bytes is longer than the maximum of %zu", len,
                              ir->max);
                }
                continue;
            }
        }
        size_t take = ir->len - ir->have;
        if (take > n - off)
            take = n - off;
        if (take && !ir->skipping) {
            if (recv_reserve(&ir->buf, &ir->cap, ir->have + take + 1, ir->len + 1) < 0) {
                ir->stopped = true;
                recv_fail(&ir->base, "intn", -ENOMEM, "out of memory for a %zu-byte string",
                          ir->len);
                return;
            }
            memcpy(ir->buf + ir->have, d + off, take);
        }
        ir->have += take;
        off += take;
        if (ir->have < ir->len)
            return; /* and off == n */
        ir->in_payload = false;
        if (ir->skipping) {
            ir->skipping = false;
            continue;
        }
        if (recv_reserve(&ir->buf, &ir->cap, ir->len + 1, ir->len + 1) < 0) {
            ir->stopped = true;
            recv_fail(&ir->base, "intn", -ENOMEM, "out of memory for a string");
            return;
        }
        ir->buf[ir->len] = '\0';
        ir->ops->string_received(ir, ir->buf, ir->len);
    }
}

void tw_intn_receiver_data_received(tw_protocol_t *p, const void *data, size_t len)
{
    tw_intn_receiver_t *ir = (tw_intn_receiver_t *)p;
    assert(!ir->busy && "data_received called from inside the receiver's callbacks");
    if (ir->stopped || ir->busy)
        return;
    ir->busy = true;
    intn_feed(ir, data, len);
    ir->busy = false;
    if (!ir->in_payload && ir->cap > RECV_KEEP) {
        free(ir->buf);
        ir->buf = NULL;
        ir->cap = 0;
    }
}

int tw_intn_receiver_init(tw_intn_receiver_t *ir, const tw_protocol_ops_t *proto_ops,
                          const tw_intn_receiver_ops_t *ops, int prefix_size)
{
    if (prefix_size != 1 && prefix_size != 2 && prefix_size != 4)
        return -EINVAL;
    memset(ir, 0, sizeof *ir);
    ir->base.ops = proto_ops;
    ir->ops = ops;
    ir->psize = (unsigned char)prefix_size;
    ir->max = TW_INTN_MAX_LENGTH;
    if (ir->max > intn_prefix_max(ir->psize))
        ir->max = intn_prefix_max(ir->psize);
    return 0;
}

void tw_intn_receiver_fini(tw_intn_receiver_t *ir)
{
    free(ir->buf);
    ir->buf = NULL;
    ir->cap = 0;
}

void tw_intn_receiver_set_max_length(tw_intn_receiver_t *ir, size_t max)
{
    size_t pm = intn_prefix_max(ir->psize);
    ir->max = max > pm ? pm : max;
}

void tw_intn_receiver_stop(tw_intn_receiver_t *ir)
{
    ir->stopped = true;
}

int tw_intn_send_string(tw_intn_receiver_t *ir, const void *data, size_t len)
{
    unsigned size = ir->psize;
    uint64_t limit = size >= 4 ? UINT32_MAX : (UINT64_C(1) << (8 * size)) - 1;
    if ((uint64_t)len > limit)
        return -EMSGSIZE;
    unsigned char head[4];
    for (unsigned i = 0; i < size; i++)
        head[i] = (unsigned char)(len >> (8 * (size - 1 - i)));
    struct iovec iov[2] = { { head, size }, { (void *)data, len } };
    return tw_transport_writev(ir->base.transport, iov, 2);
}
