/* wire.c -- echo, discard, chargen, qotd and daytime (see tw_wire.h). */
#define _GNU_SOURCE
#include "tw_wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef container_of
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#endif

const char tw_wire_default_quote[] =
    "An apple a day keeps the doctor away.\r\n";

/* Lines of chargen written per resume_producing: about 4.7 KiB, a fraction of
 * the default low water mark, so one chunk never runs far past it. */
#define WIRE_CHARGEN_LINES 64
#define WIRE_CHARGEN_LINE  (TW_WIRE_CHARGEN_WIDTH + 2)
#define WIRE_RING          95 /* printing ASCII characters, ' ' to '~' */

/* ---- shared pieces ------------------------------------------------------- */

static void wire_ignore(tw_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data, (void)len;
}

static void wire_destroy(tw_protocol_t *p)
{
    free(p);
}

/* A protocol with no state beyond the base (echo, discard, daytime). */
static tw_protocol_t *wire_build_plain(tw_factory_t *f, const tw_protocol_ops_t *ops)
{
    tw_protocol_t *p = calloc(1, sizeof *p);
    if (p) {
        p->ops = ops;
        p->factory = f;
    }
    return p;
}

/* ---- echo (RFC 862) ------------------------------------------------------ */

static void wire_echo_made(tw_protocol_t *p, tw_transport_t *t)
{
    /* The transport's reading side becomes the producer of what we write:
     * when the peer stops reading our echo, we stop reading the peer. */
    tw_transport_register_producer(t, &t->as_producer, true);
}

static void wire_echo_received(tw_protocol_t *p, const void *data, size_t len)
{
    /* Only a TW_CAP_FAIL transport refuses a write; dropping bytes would
     * break the service, so give up on the connection instead.  -EPIPE
     * means the connection is already closing: nothing to do. */
    if (tw_transport_write(p->transport, data, len) == -ENOBUFS)
        tw_transport_abort_connection(p->transport);
}

static const tw_protocol_ops_t wire_echo_ops = {
    .connection_made = wire_echo_made,
    .data_received = wire_echo_received,
    .destroy = wire_destroy,
};

static tw_protocol_t *wire_echo_build(tw_factory_t *f, const struct sockaddr *a, socklen_t n)
{
    return wire_build_plain(f, &wire_echo_ops);
}

/* ---- discard (RFC 863) --------------------------------------------------- */

static const tw_protocol_ops_t wire_discard_ops = {
    .data_received = wire_ignore,
    .destroy = wire_destroy,
};

static tw_protocol_t *wire_discard_build(tw_factory_t *f, const struct sockaddr *a,
                                         socklen_t n)
{
    return wire_build_plain(f, &wire_discard_ops);
}

/* ---- chargen (RFC 864) --------------------------------------------------- */

typedef struct wire_chargen {
    tw_protocol_t base;
    tw_producer_t producer; /* a pull producer registered on the transport */
    unsigned line;          /* the next line's number, mod 95 */
    bool asked;             /* resume_producing has been called at least once */
    bool stopped;           /* stop_producing or connection_lost: write no more */
} wire_chargen_t;

static void wire_chargen_resume(tw_producer_t *prod)
{
    wire_chargen_t *c = container_of(prod, wire_chargen_t, producer);
    char buf[WIRE_CHARGEN_LINES * WIRE_CHARGEN_LINE];
    char *o = buf;

    c->asked = true;
    if (c->stopped)
        return;
    for (int i = 0; i < WIRE_CHARGEN_LINES; i++) {
        for (unsigned k = 0; k < TW_WIRE_CHARGEN_WIDTH; k++)
            *o++ = (char)(' ' + (c->line + k) % WIRE_RING);
        *o++ = '\r';
        *o++ = '\n';
        c->line = (c->line + 1) % WIRE_RING;
    }
    if (tw_transport_write(c->base.transport, buf, sizeof buf) == -ENOBUFS)
        tw_transport_abort_connection(c->base.transport);
}

/* A pull producer is never paused: it writes only when asked. */
static void wire_chargen_pause(tw_producer_t *prod)
{
    (void)prod;
}

static void wire_chargen_stop(tw_producer_t *prod)
{
    container_of(prod, wire_chargen_t, producer)->stopped = true;
}

static const tw_producer_ops_t wire_chargen_producer_ops = {
    .pause_producing = wire_chargen_pause,
    .resume_producing = wire_chargen_resume,
    .stop_producing = wire_chargen_stop,
};

static void wire_chargen_made(tw_protocol_t *p, tw_transport_t *t)
{
    wire_chargen_t *c = (wire_chargen_t *)p;
    if (tw_transport_register_producer(t, &c->producer, false) < 0) {
        tw_transport_lose_connection(t);
        return;
    }
    /* Twisted's transports ask a pull producer for its first chunk as it is
     * registered; one that waits for the (empty) queue to drain never would,
     * so prime it ourselves in that case. */
    if (!c->asked)
        wire_chargen_resume(&c->producer);
}

static void wire_chargen_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    wire_chargen_t *c = (wire_chargen_t *)p;
    c->stopped = true;
    /* The producer is freed with us: make sure the transport forgets it. */
    tw_transport_unregister_producer(p->transport);
}

static const tw_protocol_ops_t wire_chargen_ops = {
    .connection_made = wire_chargen_made,
    .data_received = wire_ignore,
    .connection_lost = wire_chargen_lost,
    .destroy = wire_destroy,
};

static tw_protocol_t *wire_chargen_build(tw_factory_t *f, const struct sockaddr *a,
                                         socklen_t n)
{
    wire_chargen_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base.ops = &wire_chargen_ops;
    c->base.factory = f;
    c->producer.ops = &wire_chargen_producer_ops;
    return &c->base;
}

/* ---- qotd (RFC 865) and daytime (RFC 867) -------------------------------- */

typedef struct wire_qotd {
    tw_protocol_t base;
    const char *quote; /* borrowed from the factory */
    size_t len;
} wire_qotd_t;

static void wire_qotd_made(tw_protocol_t *p, tw_transport_t *t)
{
    wire_qotd_t *q = (wire_qotd_t *)p;
    tw_transport_write(t, q->quote, q->len);
    tw_transport_lose_connection(t);
}

static const tw_protocol_ops_t wire_qotd_ops = {
    .connection_made = wire_qotd_made,
    .data_received = wire_ignore,
    .destroy = wire_destroy,
};

static tw_protocol_t *wire_qotd_build(tw_factory_t *f, const struct sockaddr *a, socklen_t n)
{
    tw_wire_factory_t *wf = (tw_wire_factory_t *)f;
    wire_qotd_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->base.ops = &wire_qotd_ops;
    q->base.factory = f;
    q->quote = wf->quote;
    q->len = wf->quote_len;
    return &q->base;
}

static void wire_daytime_made(tw_protocol_t *p, tw_transport_t *t)
{
    char buf[128];
    struct tm tm;
    time_t now = time(NULL);
    size_t n = 0;

    if (localtime_r(&now, &tm))
        n = strftime(buf, sizeof buf, "%a %b %d %H:%M:%S %Y\r\n", &tm);
    if (n == 0) /* no local time, or a locale with absurd names */
        n = (size_t)snprintf(buf, sizeof buf, "%lld\r\n", (long long)now);
    tw_transport_write(t, buf, n);
    tw_transport_lose_connection(t);
}

static const tw_protocol_ops_t wire_daytime_ops = {
    .connection_made = wire_daytime_made,
    .data_received = wire_ignore,
    .destroy = wire_destroy,
};

static tw_protocol_t *wire_daytime_build(tw_factory_t *f, const struct sockaddr *a,
                                         socklen_t n)
{
    return wire_build_plain(f, &wire_daytime_ops);
}

/* ---- factories ----------------------------------------------------------- */

#define WIRE_FACTORY_OPS(name)                                 \
    static const tw_factory_ops_t wire_##name##_factory_ops = { \
        .build_protocol = wire_##name##_build,                  \
    }

WIRE_FACTORY_OPS(echo);
WIRE_FACTORY_OPS(discard);
WIRE_FACTORY_OPS(chargen);
WIRE_FACTORY_OPS(daytime);
WIRE_FACTORY_OPS(qotd);

static void wire_factory_init(tw_wire_factory_t *f, const tw_factory_ops_t *ops)
{
    memset(f, 0, sizeof *f);
    f->base.ops = ops;
}

void tw_wire_echo_factory_init(tw_wire_factory_t *f)
{
    wire_factory_init(f, &wire_echo_factory_ops);
}

void tw_wire_discard_factory_init(tw_wire_factory_t *f)
{
    wire_factory_init(f, &wire_discard_factory_ops);
}

void tw_wire_chargen_factory_init(tw_wire_factory_t *f)
{
    wire_factory_init(f, &wire_chargen_factory_ops);
}

void tw_wire_daytime_factory_init(tw_wire_factory_t *f)
{
    wire_factory_init(f, &wire_daytime_factory_ops);
}

int tw_wire_qotd_factory_init(tw_wire_factory_t *f, const char *quote)
{
    if (!quote)
        quote = tw_wire_default_quote;
    size_t len = strlen(quote);
    if (len > TW_WIRE_QOTD_MAX)
        return -EINVAL;
    wire_factory_init(f, &wire_qotd_factory_ops);
    f->quote = quote;
    f->quote_len = len;
    return 0;
}
