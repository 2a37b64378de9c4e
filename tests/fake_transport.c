/* fake_transport.c -- an in-memory transport for protocol tests. */
#define _GNU_SOURCE
#include "fake_transport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static fake_transport_t *ft_of(const tw_transport_t *t)
{
    return (fake_transport_t *)t;
}

/* ---- the transport's own reading side, as a push producer ---------------- */

static fake_transport_t *ft_of_self(tw_producer_t *p)
{
    return (fake_transport_t *)((char *)p - offsetof(tw_transport_t, as_producer));
}

static void ft_self_pause(tw_producer_t *p)
{
    ft_of_self(p)->reading_paused = true;
}

static void ft_self_resume(tw_producer_t *p)
{
    ft_of_self(p)->reading_paused = false;
}

static void ft_self_stop(tw_producer_t *p)
{
    ft_of_self(p)->reading_stopped = true;
}

static const tw_producer_ops_t ft_self_ops = {
    .pause_producing = ft_self_pause,
    .resume_producing = ft_self_resume,
    .stop_producing = ft_self_stop,
};

/* ---- producers ------------------------------------------------------------- */

static void ft_stop_producer(fake_transport_t *ft)
{
    tw_producer_t *p = ft->producer;
    if (!p)
        return;
    ft->producer = NULL;
    ft->producer_stops++;
    /* As the stream transport does, never tell its own reading side. */
    if (p != &ft->base.as_producer && p->ops->stop_producing)
        p->ops->stop_producing(p);
}

/* After the queue changed: pause a push producer above `high`, resume it (or
 * ask a pull producer for more) at or below `low`. */
static void ft_check_marks(fake_transport_t *ft, bool drained)
{
    tw_producer_t *p = ft->producer;
    if (!p || ft->disconnecting)
        return;
    if (ft->streaming && !ft->producer_paused && ft->queued > ft->high) {
        ft->producer_paused = true;
        ft->producer_pauses++;
        p->ops->pause_producing(p);
    } else if (drained && ft->queued <= ft->low && (!ft->streaming || ft->producer_paused)) {
        ft->producer_paused = false;
        ft->producer_resumes++;
        p->ops->resume_producing(p);
    }
}

/* ---- tw_transport_ops_t ------------------------------------------------------ */

static int ft_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    fake_transport_t *ft = ft_of(t);
    if (ft->disconnecting || ft->write_closed || ft->lost)
        return -EPIPE;
    if (ft->write_rc)
        return ft->write_rc;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (ft->out_len + total + 1 > ft->out_cap) {
        size_t cap = ft->out_cap ? ft->out_cap : 256;
        while (cap < ft->out_len + total + 1)
            cap *= 2;
        char *n = realloc(ft->out, cap);
        if (!n)
            return -ENOMEM;
        ft->out = n;
        ft->out_cap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(ft->out + ft->out_len, iov[i].iov_base, iov[i].iov_len);
        ft->out_len += iov[i].iov_len;
    }
    ft->out[ft->out_len] = '\0';
    ft->writes++;
    if (ft->queue_writes) {
        ft->queued += total;
        ft_check_marks(ft, false);
    }
    return 0;
}

static void ft_lose_connection(tw_transport_t *t)
{
    fake_transport_t *ft = ft_of(t);
    ft->lose_calls++;
    ft->disconnecting = true;
    ft_stop_producer(ft);
}

static void ft_abort_connection(tw_transport_t *t)
{
    fake_transport_t *ft = ft_of(t);
    ft->abort_calls++;
    ft->disconnecting = true;
    ft->queued = 0;
    ft_stop_producer(ft);
}

static int ft_lose_write_connection(tw_transport_t *t)
{
    fake_transport_t *ft = ft_of(t);
    ft->lose_write_calls++;
    if (ft->disconnecting || ft->lost)
        return -EPIPE;
    ft->write_closed = true;
    return 0;
}

static void ft_pause_reading(tw_transport_t *t)
{
    ft_of(t)->pause_calls++;
    ft_of(t)->reading_paused = true;
}

static void ft_resume_reading(tw_transport_t *t)
{
    ft_of(t)->resume_calls++;
    ft_of(t)->reading_paused = false;
}

static int ft_register_producer(tw_transport_t *t, tw_producer_t *p, bool streaming)
{
    fake_transport_t *ft = ft_of(t);
    ft->register_calls++;
    if (ft->producer)
        return -EBUSY;
    if (ft->disconnecting || ft->lost)
        return -EPIPE;
    ft->producer = p;
    ft->streaming = streaming;
    ft->producer_paused = false;
    if (!streaming && !ft->no_resume_on_register) {
        ft->producer_resumes++;
        p->ops->resume_producing(p);
    } else {
        ft_check_marks(ft, false);
    }
    return 0;
}

static void ft_unregister_producer(tw_transport_t *t)
{
    ft_of(t)->unregister_calls++;
    ft_of(t)->producer = NULL;
}

static int ft_address(struct sockaddr_storage *ss, socklen_t *len, uint16_t port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (*len < sizeof sin)
        return -EINVAL;
    memcpy(ss, &sin, sizeof sin);
    *len = sizeof sin;
    return 0;
}

static int ft_peer_address(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    return ft_address(ss, len, 54321);
}

static int ft_host_address(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    return ft_address(ss, len, 12345);
}

static size_t ft_queued(const tw_transport_t *t)
{
    return ft_of(t)->queued;
}

static void ft_set_limits(tw_transport_t *t, size_t low, size_t high, size_t cap,
                          tw_cap_policy_t policy)
{
    fake_transport_t *ft = ft_of(t);
    ft->low = low ? low : ft->low;
    ft->high = high ? high : ft->high;
    ft->cap = cap ? cap : ft->cap;
}

static int ft_set_nodelay(tw_transport_t *t, bool on)
{
    ft_of(t)->nodelay = on;
    return 0;
}

static int ft_set_keepalive(tw_transport_t *t, bool on)
{
    ft_of(t)->keepalive = on;
    return 0;
}

static int ft_fileno(const tw_transport_t *t)
{
    return -1;
}

static const tw_transport_ops_t ft_ops = {
    .writev = ft_writev,
    .lose_connection = ft_lose_connection,
    .abort_connection = ft_abort_connection,
    .lose_write_connection = ft_lose_write_connection,
    .pause_reading = ft_pause_reading,
    .resume_reading = ft_resume_reading,
    .register_producer = ft_register_producer,
    .unregister_producer = ft_unregister_producer,
    .peer_address = ft_peer_address,
    .host_address = ft_host_address,
    .queued = ft_queued,
    .set_limits = ft_set_limits,
    .set_nodelay = ft_set_nodelay,
    .set_keepalive = ft_set_keepalive,
    .fileno = ft_fileno,
};

/* ---- the test's side ----------------------------------------------------------- */

fake_transport_t *fake_transport_alloc(tw_reactor_t *r, tw_protocol_t *p)
{
    fake_transport_t *ft = calloc(1, sizeof *ft);
    if (!ft)
        return NULL;
    ft->base.ops = &ft_ops;
    ft->base.reactor = r;
    ft->base.protocol = p;
    ft->base.as_producer.ops = &ft_self_ops;
    ft->low = 16 * 1024;
    ft->high = 64 * 1024;
    ft->cap = 4 * 1024 * 1024;
    ft->nodelay = ft->keepalive = -1;
    p->transport = &ft->base;
    return ft;
}

void fake_connection_made(fake_transport_t *ft)
{
    tw_protocol_t *p = ft->base.protocol;
    assert(!ft->made && !ft->lost);
    ft->made = true;
    if (p->ops->connection_made)
        p->ops->connection_made(p, &ft->base);
}

fake_transport_t *fake_transport_new(tw_reactor_t *r, tw_protocol_t *p)
{
    fake_transport_t *ft = fake_transport_alloc(r, p);
    if (ft)
        fake_connection_made(ft);
    return ft;
}

void fake_transport_free(fake_transport_t *ft)
{
    if (!ft)
        return;
    fake_lose(ft, NULL);
    free(ft->out);
    free(ft);
}

int fake_feed(fake_transport_t *ft, const void *data, size_t len)
{
    if (ft->lost || ft->disconnecting || ft->eof)
        return -EPIPE;
    if (ft->reading_paused || ft->reading_stopped)
        return -EAGAIN;
    ft->base.protocol->ops->data_received(ft->base.protocol, data, len);
    return 0;
}

int fake_feed_bytewise(fake_transport_t *ft, const void *data, size_t len)
{
    const char *s = data;
    for (size_t i = 0; i < len; i++) {
        int rc = fake_feed(ft, s + i, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int fake_feed_str(fake_transport_t *ft, const char *s)
{
    return fake_feed(ft, s, strlen(s));
}

int fake_eof(fake_transport_t *ft)
{
    if (ft->lost || ft->disconnecting || ft->eof)
        return -EPIPE;
    ft->eof = true;
    tw_protocol_t *p = ft->base.protocol;
    if (p->ops->eof_received)
        p->ops->eof_received(p);
    else
        tw_transport_lose_connection(&ft->base);
    return 0;
}

void fake_lose(fake_transport_t *ft, const tw_failure_t *reason)
{
    if (ft->lost)
        return;
    ft->lost = true;
    ft->disconnecting = true;
    ft_stop_producer(ft);
    tw_protocol_t *p = ft->base.protocol;
    /* A connection never made gets destroy alone (tw_transport.h, rule 1). */
    if (ft->made && p->ops->connection_lost)
        p->ops->connection_lost(p, reason);
    ft->base.protocol = NULL;
    if (p->ops->destroy)
        p->ops->destroy(p);
}

void fake_drain(fake_transport_t *ft, size_t n)
{
    ft->queued = n >= ft->queued ? 0 : ft->queued - n;
    ft_check_marks(ft, true);
}

const char *fake_output(const fake_transport_t *ft, size_t *len)
{
    if (len)
        *len = ft->out_len;
    return ft->out ? ft->out : "";
}

void fake_clear(fake_transport_t *ft)
{
    ft->out_len = 0;
    if (ft->out)
        ft->out[0] = '\0';
}
