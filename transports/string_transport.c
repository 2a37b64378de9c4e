/* string_transport.c -- a transport made of a string, for protocol tests
 * (tw_string_transport.h).  The state machine follows stream.c: the same
 * flags (losing, half-close wanted / done, EOF, closing), the same water
 * mark and cap logic, with the socket replaced by the test. */
#define _GNU_SOURCE
#include "tw_string_transport.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline tw_string_transport_t *string_of(const tw_transport_t *t)
{
    return (tw_string_transport_t *)t;
}

static void string_notify(tw_string_transport_t *t)
{
    if (t->activity_cb)
        t->activity_cb(t, t->activity_arg);
}

/* ---- the factory's list of its connections ------------------------------ */

static void string_track(tw_string_transport_t *t, tw_factory_t *f)
{
    t->factory = f;
    tw__factory_track(f, &t->base);
}

static void string_untrack(tw_string_transport_t *t)
{
    tw__factory_untrack(&t->base);
    t->factory = NULL;
}

/* ---- closing ------------------------------------------------------------ */

/* Forget the producer; tell it to stop if asked (never the transport's own
 * reading side, as stream.c). */
static void string_unregister(tw_string_transport_t *t, bool stop)
{
    tw_producer_t *p = t->producer;
    t->producer = NULL;
    t->producer_paused = false;
    if (stop && p && p != &t->base.as_producer && p->ops->stop_producing) {
        t->producer_stops++;
        p->ops->stop_producing(p);
    }
}

/* Begin closing (once).  `reason` is taken; `code` is its code (kept even
 * if the failure could not be allocated). */
static void string_close(tw_string_transport_t *t, tw_failure_t *reason, int code)
{
    if (t->closing) {
        tw_failure_free(reason);
        return;
    }
    t->closing = true;
    if (!reason && t->pending_reason) { /* a clean close after lose_with */
        reason = t->pending_reason;
        code = reason->code;
    } else {
        tw_failure_free(t->pending_reason);
    }
    t->pending_reason = NULL;
    t->close_code = code;
    t->reason = reason;
    if (!t->activity_cb && t->base.reactor)
        tw_timer_start(&t->timer, 0); /* on failure: settled by settle() or free */
}

static void string_abort_with(tw_string_transport_t *t, int code, tw_failure_t *reason)
{
    t->aborted = true;
    t->queued = 0;
    string_close(t, reason, code);
}

int tw_string_transport_settle(tw_string_transport_t *t)
{
    if (!t->closing || t->lost || t->depth > 0)
        return 0;
    t->lost = true;
    tw_timer_cancel(&t->timer);
    string_untrack(t);
    string_unregister(t, true);
    t->queued = 0;
    tw_protocol_t *p = t->base.protocol;
    t->depth++;
    if (t->made && p->ops->connection_lost)
        p->ops->connection_lost(p, t->reason);
    t->base.protocol = NULL;
    if (p->ops->destroy)
        p->ops->destroy(p);
    t->depth--;
    tw_failure_free(t->reason);
    t->reason = NULL;
    return 1;
}

static void string_timer_cb(tw_timer_t *timer, void *arg)
{
    tw_string_transport_settle(arg);
}

/* ---- writing and the queue ------------------------------------------------ */

static int string_append(tw_string_transport_t *t, const struct iovec *iov, int iovcnt,
                         size_t total)
{
    if (t->out_len + total + 1 > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 256;
        while (cap < t->out_len + total + 1)
            cap *= 2;
        char *n = realloc(t->out, cap);
        if (!n)
            return -ENOMEM;
        t->out = n;
        t->out_cap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(t->out + t->out_len, iov[i].iov_base, iov[i].iov_len);
        t->out_len += iov[i].iov_len;
    }
    t->out[t->out_len] = '\0';
    return 0;
}

/* The queue grew: pause a push producer above high, stop reading past the
 * cap (TW_CAP_PAUSE). */
static void string_grew(tw_string_transport_t *t)
{
    if (t->producer && t->streaming && !t->producer_paused && t->queued > t->high) {
        t->producer_paused = true;
        t->producer_pauses++;
        t->producer->ops->pause_producing(t->producer);
    }
    if (t->queued > t->cap && t->policy == TW_CAP_PAUSE)
        t->cap_paused = true;
}

/* The queue shrank (stream_drained). */
static void string_drained(tw_string_transport_t *t)
{
    if (t->queued > t->low)
        return;
    t->cap_paused = false;
    if (t->producer && !t->closing && (!t->streaming || t->producer_paused)) {
        t->producer_paused = false;
        t->producer_resumes++;
        t->producer->ops->resume_producing(t->producer);
    }
}

/* The queue is empty: finish a pending lose or half-close (stream_idle). */
static void string_idle(tw_string_transport_t *t)
{
    if (t->closing)
        return;
    if (t->disconnecting) {
        string_close(t, NULL, 0);
    } else if (t->write_closed && !t->write_shut) {
        t->write_shut = true;
        if (t->eof)
            string_close(t, NULL, 0);
    }
}

static int string_write(tw_string_transport_t *t, const struct iovec *iov, int iovcnt)
{
    if (t->disconnecting || t->write_closed || t->closing)
        return -EPIPE;
    if (iovcnt < 0)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (!total)
        return 0;
    if (t->queued + total > t->cap && t->policy != TW_CAP_PAUSE) {
        if (t->policy == TW_CAP_FAIL)
            return -ENOBUFS;
        string_abort_with(t, -ENOBUFS,
                          tw_failure_new(t->domain, -ENOBUFS, "aborted: %zu bytes queued for "
                                         "a peer that does not read", t->queued + total));
        return -ENOBUFS;
    }
    if (string_append(t, iov, iovcnt, total) != 0) {
        string_close(t, tw_failure_new(t->domain, -ENOMEM, "write queue"), -ENOMEM);
        return -ENOMEM;
    }
    t->writes++;
    if (!t->peer_reading) {
        t->queued += total;
        string_grew(t);
    }
    return 0;
}

/* ---- tw_transport_ops_t ---------------------------------------------------- */

static int string_writev(tw_transport_t *bt, const struct iovec *iov, int iovcnt)
{
    tw_string_transport_t *t = string_of(bt);
    int rc = string_write(t, iov, iovcnt);
    string_notify(t);
    return rc;
}

static void string_lose(tw_transport_t *bt)
{
    tw_string_transport_t *t = string_of(bt);
    t->lose_calls++;
    if (!t->disconnecting && !t->closing) {
        t->disconnecting = true;
        string_unregister(t, true);
        if (!t->queued)
            string_close(t, NULL, 0);
    }
    string_notify(t);
}

static void string_lose_with(tw_transport_t *bt, tw_failure_t *reason)
{
    tw_string_transport_t *t = string_of(bt);
    if (t->disconnecting || t->closing || t->pending_reason)
        tw_failure_free(reason);
    else
        t->pending_reason = reason;
    string_lose(bt);
}

static void string_abort(tw_transport_t *bt)
{
    tw_string_transport_t *t = string_of(bt);
    t->abort_calls++;
    if (!t->closing)
        string_abort_with(t, -ECONNABORTED,
                          tw_failure_new(t->domain, -ECONNABORTED, "connection aborted"));
    string_notify(t);
}

static int string_lose_write(tw_transport_t *bt)
{
    tw_string_transport_t *t = string_of(bt);
    int rc = 0;
    t->lose_write_calls++;
    if (t->disconnecting || t->closing) {
        rc = -EPIPE;
    } else {
        t->write_closed = true;
        if (!t->queued)
            string_idle(t);
    }
    string_notify(t);
    return rc;
}

static void string_set_paused(tw_transport_t *bt, bool paused)
{
    tw_string_transport_t *t = string_of(bt);
    *(paused ? &t->pause_calls : &t->resume_calls) += 1;
    t->reading_paused = paused;
    string_notify(t);
}

static void string_pause(tw_transport_t *bt)
{
    string_set_paused(bt, true);
}

static void string_resume(tw_transport_t *bt)
{
    string_set_paused(bt, false);
}

static int string_register(tw_transport_t *bt, tw_producer_t *p, bool streaming)
{
    tw_string_transport_t *t = string_of(bt);
    int rc = 0;
    t->register_calls++;
    if (t->disconnecting || t->closing) {
        rc = -EPIPE;
    } else if (t->producer) {
        rc = -EBUSY;
    } else {
        t->producer = p;
        t->streaming = streaming;
        t->producer_paused = false;
        if (streaming && t->queued > t->high) {
            t->producer_paused = true;
            t->producer_pauses++;
            p->ops->pause_producing(p);
        } else if (!streaming) {
            t->producer_resumes++;
            p->ops->resume_producing(p); /* a pull producer writes its first chunk */
        }
    }
    string_notify(t);
    return rc;
}

static void string_unregister_op(tw_transport_t *bt)
{
    tw_string_transport_t *t = string_of(bt);
    t->unregister_calls++;
    string_unregister(t, false);
    string_notify(t);
}

static int string_name(tw_transport_t *bt, struct sockaddr_storage *ss, socklen_t *len,
                       bool peer)
{
    tw_string_transport_t *t = string_of(bt);
    *len = peer ? t->peer_len : t->host_len;
    memcpy(ss, peer ? &t->peer : &t->host, *len);
    return 0;
}

static int string_peer(tw_transport_t *bt, struct sockaddr_storage *ss, socklen_t *len)
{
    return string_name(bt, ss, len, true);
}

static int string_host(tw_transport_t *bt, struct sockaddr_storage *ss, socklen_t *len)
{
    return string_name(bt, ss, len, false);
}

static size_t string_queued(const tw_transport_t *bt)
{
    return string_of(bt)->queued;
}

static void string_set_limits(tw_transport_t *bt, size_t low, size_t high, size_t cap,
                              tw_cap_policy_t policy)
{
    tw_string_transport_t *t = string_of(bt);
    if (low)
        t->low = low;
    if (high)
        t->high = high;
    if (cap)
        t->cap = cap;
    t->policy = policy;
}

static int string_nodelay(tw_transport_t *bt, bool on)
{
    return string_of(bt)->nodelay = on, 0;
}

static int string_keepalive(tw_transport_t *bt, bool on)
{
    return string_of(bt)->keepalive = on, 0;
}

static int string_fileno(const tw_transport_t *bt)
{
    return -1;
}

static const tw_transport_ops_t string_ops = {
    .writev = string_writev,
    .lose_connection = string_lose,
    .abort_connection = string_abort,
    .lose_connection_with = string_lose_with,
    .lose_write_connection = string_lose_write,
    .pause_reading = string_pause,
    .resume_reading = string_resume,
    .register_producer = string_register,
    .unregister_producer = string_unregister_op,
    .peer_address = string_peer,
    .host_address = string_host,
    .queued = string_queued,
    .set_limits = string_set_limits,
    .set_nodelay = string_nodelay,
    .set_keepalive = string_keepalive,
    .fileno = string_fileno,
};


/* ---- making and freeing --------------------------------------------------- */

static void string_ipv4(struct sockaddr_storage *ss, socklen_t *len, uint32_t ip,
                        uint16_t port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    sin.sin_addr.s_addr = htonl(ip);
    memcpy(ss, &sin, sizeof sin);
    *len = sizeof sin;
}

tw_string_transport_t *tw_string_transport_alloc(tw_reactor_t *r, tw_protocol_t *p)
{
    tw_string_transport_t *t = calloc(1, sizeof *t);
    if (!t) {
        if (p->ops->destroy)
            p->ops->destroy(p);
        return NULL;
    }
    t->base.ops = &string_ops;
    t->base.reactor = r;
    t->base.protocol = p;
    t->base.as_producer.ops = &tw__transport_producer_ops;
    t->low = 16384;
    t->high = 65536;
    t->cap = 4u << 20;
    t->policy = TW_CAP_PAUSE;
    t->nodelay = t->keepalive = -1;
    t->domain = "tcp";
    t->peer_reading = true;
    tw_timer_init(&t->timer, r, string_timer_cb, t);
    string_ipv4(&t->peer, &t->peer_len, 0xc0a80101, 54321); /* 192.168.1.1 */
    string_ipv4(&t->host, &t->host_len, 0x0a000001, 12345); /* 10.0.0.1 */
    p->transport = &t->base;
    if (p->factory)
        string_track(t, p->factory);
    return t;
}

void tw_string_transport_make_connection(tw_string_transport_t *t)
{
    if (t->made || t->closing)
        return;
    t->made = true;
    tw_protocol_t *p = t->base.protocol;
    t->depth++;
    if (p->ops->connection_made)
        p->ops->connection_made(p, &t->base);
    t->depth--;
}

tw_string_transport_t *tw_string_transport_new(tw_reactor_t *r, tw_protocol_t *p)
{
    tw_string_transport_t *t = tw_string_transport_alloc(r, p);
    if (t)
        tw_string_transport_make_connection(t);
    return t;
}

void tw_string_transport_free(tw_string_transport_t *t)
{
    if (!t)
        return;
    tw_string_transport_disconnect(t, NULL);
    tw_timer_cancel(&t->timer);
    free(t->out);
    free(t);
}

/* ---- what the protocol wrote ------------------------------------------------- */

void tw_string_transport_consume(tw_string_transport_t *t, size_t n)
{
    if (n > t->out_len)
        n = t->out_len;
    if (!n)
        return;
    memmove(t->out, t->out + n, t->out_len - n + 1); /* with the NUL */
    t->out_len -= n;
}

/* ---- playing the peer ----------------------------------------------------------- */

static int string_can_read(const tw_string_transport_t *t)
{
    if (!t->made)
        return -ENOTCONN;
    if (t->eof || t->disconnecting || t->closing)
        return -EPIPE;
    return t->reading_paused || t->cap_paused ? -EAGAIN : 0;
}

int tw_string_transport_feed(tw_string_transport_t *t, const void *data, size_t len)
{
    int rc = string_can_read(t);
    if (rc < 0 || !len)
        return rc;
    tw_protocol_t *p = t->base.protocol;
    t->depth++;
    p->ops->data_received(p, data, len);
    t->depth--;
    return 0;
}

int tw_string_transport_feed_bytewise(tw_string_transport_t *t, const void *data, size_t len)
{
    const char *s = data;
    for (size_t i = 0; i < len; i++) {
        int rc = tw_string_transport_feed(t, s + i, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int tw_string_transport_feed_eof(tw_string_transport_t *t)
{
    int rc = string_can_read(t);
    if (rc < 0)
        return rc;
    tw_protocol_t *p = t->base.protocol;
    t->eof = true;
    t->depth++;
    if (!p->ops->eof_received) {
        tw_transport_lose_connection(&t->base);
    } else {
        p->ops->eof_received(p);
        if (t->write_shut) /* we had half-closed: both directions are closed */
            string_close(t, NULL, 0);
    }
    t->depth--;
    return 0;
}

void tw_string_transport_disconnect(tw_string_transport_t *t, const tw_failure_t *reason)
{
    if (!t->closing) {
        t->queued = 0;
        string_close(t, reason ? tw_failure_copy(reason) : NULL, reason ? reason->code : 0);
    }
    tw_string_transport_settle(t);
}

void tw_string_transport_drain(tw_string_transport_t *t, size_t n)
{
    t->queued = n >= t->queued ? 0 : t->queued - n;
    t->depth++;
    string_drained(t);
    if (!t->queued)
        string_idle(t);
    t->depth--;
}

void tw_string_transport_set_queued(tw_string_transport_t *t, size_t n)
{
    if (n <= t->queued) {
        tw_string_transport_drain(t, t->queued - n);
        return;
    }
    t->queued = n;
    t->depth++;
    string_grew(t);
    t->depth--;
}

static int string_set_address(struct sockaddr_storage *ss, socklen_t *slen,
                              const struct sockaddr *sa, socklen_t len)
{
    if (!sa || !len || len > sizeof *ss)
        return -EINVAL;
    memset(ss, 0, sizeof *ss);
    memcpy(ss, sa, len);
    *slen = len;
    return 0;
}

int tw_string_transport_set_peer_address(tw_string_transport_t *t, const struct sockaddr *sa,
                                         socklen_t len)
{
    return string_set_address(&t->peer, &t->peer_len, sa, len);
}

int tw_string_transport_set_host_address(tw_string_transport_t *t, const struct sockaddr *sa,
                                         socklen_t len)
{
    return string_set_address(&t->host, &t->host_len, sa, len);
}
