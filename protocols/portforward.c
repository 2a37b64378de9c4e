/* portforward.c -- the port forwarder (tw_portforward.h).
 *
 * One allocation per pair holds both protocols (the incoming side's and
 * the outgoing side's) and the little factory the outgoing connector uses.
 * Three things keep it alive, each dropping its reference when it is done:
 * the incoming protocol (until its destroy), the outgoing protocol (until
 * its destroy) and the connector (until it is freed, which is done from the
 * connector's last callback, or at once when the incoming side goes first
 * while still connecting). */
#define _GNU_SOURCE
#include "tw_portforward.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tw_log.h"
#include "tw_tcp.h"

#define LOG_DOMAIN "portforward"

typedef struct proxy_pair {
    tw_protocol_t server;      /* the incoming side: its transport owns it */
    tw_protocol_t client;      /* the outgoing side: its transport owns it */
    tw_factory_t cfactory;     /* builds `client`, for the connector */
    tw_proxy_server_factory_t *f;
    tw_connector_t *connector; /* until freed */
    tw_transport_t *in, *out;  /* each until its protocol's connection_lost */
    int refs;
} proxy_pair_t;

static void pair_unref(proxy_pair_t *pp)
{
    if (--pp->refs == 0)
        free(pp);
}

/* A side ended: the other must let go of its producer (the ended side's
 * reading side, about to be freed) and is lost after flushing. */
static void pair_end_other(tw_transport_t *other)
{
    if (!other)
        return;
    tw_transport_unregister_producer(other);
    tw_transport_lose_connection(other);
}

static void pair_write(tw_transport_t *to, const void *data, size_t len)
{
    /* Only a TW_CAP_FAIL transport refuses: dropping bytes would corrupt
     * the stream, so give up on it. */
    if (tw_transport_write(to, data, len) == -ENOBUFS)
        tw_transport_abort_connection(to);
}

/* ---- the incoming side --------------------------------------------------- */

static void server_made(tw_protocol_t *p, tw_transport_t *t)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, server);
    char err[256];
    pp->in = t;
    tw_transport_pause_reading(t); /* until there is somewhere to send the bytes */
    int rc = tw_endpoint_connect(pp->f->reactor, pp->f->endpoint, &pp->cfactory,
                                 &pp->connector, err, sizeof err);
    if (rc < 0) {
        pp->connector = NULL;
        pp->f->failures++;
        tw_log(TW_LOG_INFO, LOG_DOMAIN, "%s", err);
        tw_transport_lose_connection_with(t, tw_failure_new(LOG_DOMAIN, rc, "%s", err));
        return;
    }
    pp->refs++; /* the connector's */
}

static void server_data(tw_protocol_t *p, const void *data, size_t len)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, server);
    if (pp->out)
        pair_write(pp->out, data, len);
}

static void server_eof(tw_protocol_t *p)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, server);
    if (pp->out)
        tw_transport_lose_write_connection(pp->out);
    else
        tw_transport_lose_connection(pp->in);
}

static void server_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, server);
    pp->in = NULL;
    if (pp->out) {
        pair_end_other(pp->out);
    } else if (pp->connector) { /* still connecting: no callback will come */
        tw_connector_t *c = pp->connector;
        pp->connector = NULL;
        tw_connector_free(c);
        pair_unref(pp);
    }
}

static void server_destroy(tw_protocol_t *p)
{
    pair_unref(TW_CONTAINER_OF(p, proxy_pair_t, server));
}

static const tw_protocol_ops_t proxy_server_ops = {
    .connection_made = server_made,
    .data_received = server_data,
    .eof_received = server_eof,
    .connection_lost = server_lost,
    .destroy = server_destroy,
};

/* ---- the outgoing side --------------------------------------------------- */

static void client_made(tw_protocol_t *p, tw_transport_t *t)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, client);
    pp->out = t;
    tw_transport_t *in = pp->in;
    if (!in) {
        tw_transport_lose_connection(t);
        return;
    }
    /* A peer that reads slowly stops the other peer being read. */
    tw_transport_register_producer(t, &in->as_producer, true);
    tw_transport_register_producer(in, &t->as_producer, true);
    if (pp->f->connected)
        pp->f->connected(in, t, pp->f->arg);
    if (pp->in) /* the hook may have closed it */
        tw_transport_resume_reading(pp->in);
}

static void client_data(tw_protocol_t *p, const void *data, size_t len)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, client);
    if (pp->in)
        pair_write(pp->in, data, len);
}

static void client_eof(tw_protocol_t *p)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, client);
    if (pp->in)
        tw_transport_lose_write_connection(pp->in);
    else
        tw_transport_lose_connection(pp->out);
}

static void client_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(p, proxy_pair_t, client);
    pp->out = NULL;
    pair_end_other(pp->in);
}

static void client_destroy(tw_protocol_t *p)
{
    pair_unref(TW_CONTAINER_OF(p, proxy_pair_t, client));
}

static const tw_protocol_ops_t proxy_client_ops = {
    .connection_made = client_made,
    .data_received = client_data,
    .eof_received = client_eof,
    .connection_lost = client_lost,
    .destroy = client_destroy,
};

/* ---- the pair's connector factory ---------------------------------------- */

static tw_protocol_t *cfactory_build(tw_factory_t *cf, const struct sockaddr *a, socklen_t n)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(cf, proxy_pair_t, cfactory);
    if (!pp->in)
        return NULL; /* the incoming side is gone (not expected: its loss frees the connector) */
    pp->refs++;
    return &pp->client;
}

/* The connector's last word: free it (safe from its callbacks). */
static void cfactory_done(proxy_pair_t *pp, tw_connector_t *c)
{
    pp->connector = NULL;
    tw_connector_free(c);
    pair_unref(pp);
}

static void cfactory_failed(tw_factory_t *cf, tw_connector_t *c, const tw_failure_t *reason)
{
    proxy_pair_t *pp = TW_CONTAINER_OF(cf, proxy_pair_t, cfactory);
    pp->f->failures++;
    tw_log(TW_LOG_INFO, LOG_DOMAIN, "cannot forward a connection: %s", reason->message);
    if (pp->in)
        tw_transport_lose_connection_with(pp->in, tw_failure_copy(reason));
    cfactory_done(pp, c);
}

static void cfactory_lost(tw_factory_t *cf, tw_connector_t *c, const tw_failure_t *reason)
{
    cfactory_done(TW_CONTAINER_OF(cf, proxy_pair_t, cfactory), c);
}

static const tw_factory_ops_t proxy_cfactory_ops = {
    .build_protocol = cfactory_build,
    .connection_failed = cfactory_failed,
    .connection_lost = cfactory_lost,
};

/* ---- the factory --------------------------------------------------------- */

static tw_protocol_t *proxy_build(tw_factory_t *bf, const struct sockaddr *a, socklen_t n)
{
    tw_proxy_server_factory_t *f = (tw_proxy_server_factory_t *)bf;
    proxy_pair_t *pp = calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    pp->server.ops = &proxy_server_ops;
    pp->server.factory = bf;
    pp->client.ops = &proxy_client_ops;
    pp->cfactory.ops = &proxy_cfactory_ops;
    pp->f = f;
    pp->refs = 1; /* the incoming protocol's */
    return &pp->server;
}

static const tw_factory_ops_t proxy_factory_ops = {
    .build_protocol = proxy_build,
};

int tw_proxy_server_factory_init(tw_proxy_server_factory_t *f, tw_reactor_t *r,
                                 const char *connect_endpoint)
{
    tw_endpoint_t ep;
    if (!f || !r || !connect_endpoint)
        return -EINVAL;
    if (strlen(connect_endpoint) >= sizeof f->endpoint)
        return -ENAMETOOLONG;
    if (tw_endpoint_parse_client(connect_endpoint, &ep, NULL, 0) != 0)
        return -EINVAL;
    memset(f, 0, sizeof *f);
    f->base.ops = &proxy_factory_ops;
    f->reactor = r;
    strcpy(f->endpoint, connect_endpoint);
    return 0;
}
