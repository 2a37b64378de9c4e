/* policies.c -- the wrapping layer and the policies built on it: idle
 * timeouts, connection limits, throttling, traffic logging (tw_policies.h).
 *
 * A wrapper is one allocation per connection: the protocol the real
 * transport sees, the transport the inner protocol sees, a producer that
 * stands in for the inner protocol's on the real transport, and the
 * policy's per-connection state after it.  The wrapper never closes or
 * frees anything itself: closing is the real transport's (deferred, as
 * always), and the wrapper goes in its destroy, taking the inner protocol
 * with it. */
#define _GNU_SOURCE
#include "tw_policies.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "stream.h" /* tw__factory_track/_untrack/_use/_release, tw__transport_producer_ops */
#include "tw_log.h"

#define LOG_DOMAIN "policy"

/* Wrapper flags. */
#define W_MADE         0x01u
#define W_LOST         0x02u /* connection_lost came: the real transport is going */
#define W_LOSING       0x04u /* the inner protocol asked to lose or abort */
#define W_SHUT         0x08u /* the inner protocol half-closed */
#define W_LOSE_PENDING 0x10u /* the lose waits for held bytes */
#define W_SHUT_PENDING 0x20u /* the half-close waits for held bytes */
#define W_REFUSED      0x40u /* a refused connection: send the message, close */

/* Why reading is paused (pause_bits): the real transport reads when none is set. */
#define P_INNER  0x1u /* the inner protocol's pause_reading */
#define P_POLICY 0x2u /* tw_wrapper_pause_reading */
#define P_HELD   0x4u /* held bytes past the hold limit */
#define P_LOSING 0x8u /* a lose waits for held bytes: read no more */

#define HOLD_LIMIT_DEFAULT (4u << 20)

static const tw_protocol_ops_t wrap_protocol_ops;
static const tw_transport_ops_t wrap_transport_ops;
static const tw_producer_ops_t wrap_proxy_ops;

static inline tw_wrapper_t *wrap_of(const tw_transport_t *t)
{
    return TW_CONTAINER_OF(t, tw_wrapper_t, transport);
}

static inline tw_wrapper_t *wrap_of_protocol(tw_protocol_t *p)
{
    return TW_CONTAINER_OF(p, tw_wrapper_t, protocol);
}

static inline const tw_wrapper_ops_t *wrap_ops(const tw_wrapper_t *w)
{
    static const tw_wrapper_ops_t none;
    return w->factory->ops ? w->factory->ops : &none;
}

/* The real transport is there to be asked. */
static inline bool wrap_live(const tw_wrapper_t *w)
{
    return w->real && !(w->flags & W_LOST);
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

/* ---- reading and producers ----------------------------------------------- */

static void wrap_set_pause(tw_wrapper_t *w, unsigned bit, bool on)
{
    unsigned old = w->pause_bits;
    w->pause_bits = on ? old | bit : old & ~bit;
    if (!(w->flags & W_MADE) || !wrap_live(w))
        return; /* applied by connection_made */
    if (!old && w->pause_bits)
        tw_transport_pause_reading(w->real);
    else if (old && !w->pause_bits)
        tw_transport_resume_reading(w->real);
}

void tw_wrapper_pause_reading(tw_wrapper_t *w)
{
    wrap_set_pause(w, P_POLICY, true);
}

void tw_wrapper_resume_reading(tw_wrapper_t *w)
{
    wrap_set_pause(w, P_POLICY, false);
}

/* A push producer runs while neither the real transport nor the policy
 * wants it paused. */
static void wrap_update_producer(tw_wrapper_t *w)
{
    tw_producer_t *p = w->producer;
    if (!p || !w->streaming)
        return;
    bool want = w->real_paused || w->policy_paused;
    if (want == w->prod_paused)
        return;
    w->prod_paused = want;
    if (want)
        p->ops->pause_producing(p);
    else
        p->ops->resume_producing(p);
}

/* Forget the inner producer and tell it to stop (never the wrapper's own
 * reading side: stopping that would lose the connection, as stream.c
 * knows for its own). */
static void wrap_stop_producer(tw_wrapper_t *w)
{
    tw_producer_t *p = w->producer;
    w->producer = NULL;
    w->real_paused = w->prod_paused = w->pull_pending = false;
    if (p && p != &w->transport.as_producer && p->ops->stop_producing)
        p->ops->stop_producing(p);
}

void tw_wrapper_pause_producer(tw_wrapper_t *w)
{
    w->policy_paused = true;
    wrap_update_producer(w);
}

void tw_wrapper_resume_producer(tw_wrapper_t *w)
{
    w->policy_paused = false;
    tw_producer_t *p = w->producer;
    if (p && !w->streaming && w->pull_pending) {
        w->pull_pending = false; /* the transport asked while we held it back */
        p->ops->resume_producing(p);
        return;
    }
    wrap_update_producer(w);
}

/* The producer the real transport sees, standing in for the inner one. */
static void proxy_pause(tw_producer_t *pp)
{
    tw_wrapper_t *w = TW_CONTAINER_OF(pp, tw_wrapper_t, proxy);
    w->real_paused = true;
    wrap_update_producer(w);
}

static void proxy_resume(tw_producer_t *pp)
{
    tw_wrapper_t *w = TW_CONTAINER_OF(pp, tw_wrapper_t, proxy);
    tw_producer_t *p = w->producer;
    if (!p)
        return;
    if (w->streaming) {
        w->real_paused = false;
        wrap_update_producer(w);
    } else if (w->policy_paused) {
        w->pull_pending = true;
    } else {
        p->ops->resume_producing(p);
    }
}

static void proxy_stop(tw_producer_t *pp)
{
    wrap_stop_producer(TW_CONTAINER_OF(pp, tw_wrapper_t, proxy));
}

static const tw_producer_ops_t wrap_proxy_ops = { proxy_pause, proxy_resume, proxy_stop };

/* ---- held bytes ---------------------------------------------------------- */

static size_t wrap_hold_limit(const tw_wrapper_t *w)
{
    return w->factory->hold_limit ? w->factory->hold_limit : HOLD_LIMIT_DEFAULT;
}

static void wrap_drop_held(tw_wrapper_t *w)
{
    free(w->held);
    w->held = NULL;
    w->held_off = w->held_len = w->held_cap = 0;
}

int tw_wrapper_hold(tw_wrapper_t *w, const struct iovec *iov, int iovcnt)
{
    size_t total = iov_total(iov, iovcnt);
    if (!total)
        return 0;
    if (w->held_off + w->held_len + total > w->held_cap) {
        if (w->held_off) { /* reuse the space already released */
            memmove(w->held, w->held + w->held_off, w->held_len);
            w->held_off = 0;
        }
        if (w->held_len + total > w->held_cap) {
            size_t cap = w->held_cap ? w->held_cap : 4096;
            while (cap < w->held_len + total)
                cap *= 2;
            char *n = realloc(w->held, cap);
            if (!n)
                return -ENOMEM;
            w->held = n;
            w->held_cap = cap;
        }
    }
    char *o = w->held + w->held_off + w->held_len;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(o, iov[i].iov_base, iov[i].iov_len);
        o += iov[i].iov_len;
    }
    w->held_len += total;
    if (w->held_len > wrap_hold_limit(w) && !(w->pause_bits & P_HELD))
        wrap_set_pause(w, P_HELD, true);
    return 0;
}

/* No byte is held any more: a lose or half-close that waited goes on. */
static void wrap_finish_pending(tw_wrapper_t *w)
{
    if (!wrap_live(w))
        return;
    if (w->flags & W_LOSE_PENDING) {
        w->flags &= ~(W_LOSE_PENDING | W_SHUT_PENDING);
        tw_failure_t *reason = w->pending_reason;
        w->pending_reason = NULL;
        tw_transport_lose_connection_with(w->real, reason);
    } else if (w->flags & W_SHUT_PENDING) {
        w->flags &= ~W_SHUT_PENDING;
        tw_transport_lose_write_connection(w->real);
    }
}

size_t tw_wrapper_release(tw_wrapper_t *w, size_t max)
{
    size_t n = w->held_len < max ? w->held_len : max;
    if (n) {
        if (!wrap_live(w))
            return 0;
        struct iovec iov = { w->held + w->held_off, n };
        int rc = tw_transport_writev(w->real, &iov, 1);
        if (rc == -ENOBUFS)
            return 0; /* a TW_CAP_FAIL refusal: keep them for the next release */
        if (rc < 0) {
            /* -EPIPE, -ENOMEM: the connection is going, and what it holds
             * goes with it. */
            wrap_drop_held(w);
            n = 0;
        } else {
            w->held_off += n;
            w->held_len -= n;
            if (!w->held_len)
                wrap_drop_held(w); /* an idle connection holds no buffer */
        }
        if ((w->pause_bits & P_HELD) && w->held_len <= wrap_hold_limit(w))
            wrap_set_pause(w, P_HELD, false);
    }
    if (!w->held_len)
        wrap_finish_pending(w);
    return n;
}

int tw_wrapper_write(tw_wrapper_t *w, const struct iovec *iov, int iovcnt)
{
    if (!wrap_live(w))
        return -EPIPE;
    return tw_transport_writev(w->real, iov, iovcnt);
}

/* ---- the transport the inner protocol sees ------------------------------- */

static void wrap_request(tw_wrapper_t *w, tw_wrapper_request_t what)
{
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->request)
        ops->request(w, what);
}

static int wt_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    tw_wrapper_t *w = wrap_of(t);
    if ((w->flags & (W_LOSING | W_SHUT)) || !wrap_live(w))
        return -EPIPE;
    if (iovcnt < 0)
        return -EINVAL;
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->write)
        return ops->write(w, iov, iovcnt);
    return tw_transport_writev(w->real, iov, iovcnt);
}

static void wt_lose_with(tw_transport_t *t, tw_failure_t *reason)
{
    tw_wrapper_t *w = wrap_of(t);
    wrap_request(w, TW_WRAPPER_LOSE);
    if ((w->flags & W_LOSING) || !wrap_live(w)) {
        tw_failure_free(reason);
        return;
    }
    w->flags |= W_LOSING;
    if (!w->held_len) {
        tw_transport_lose_connection_with(w->real, reason);
        return;
    }
    /* Held bytes go first; meanwhile do what a losing transport does:
     * read no more, stop the producer. */
    w->flags |= W_LOSE_PENDING;
    w->pending_reason = reason;
    wrap_set_pause(w, P_LOSING, true);
    if (w->producer) {
        tw_transport_unregister_producer(w->real);
        wrap_stop_producer(w);
    }
}

static void wt_lose(tw_transport_t *t)
{
    wt_lose_with(t, NULL);
}

static void wt_abort(tw_transport_t *t)
{
    tw_wrapper_t *w = wrap_of(t);
    wrap_request(w, TW_WRAPPER_ABORT);
    if (!wrap_live(w))
        return;
    w->flags |= W_LOSING;
    w->flags &= ~(W_LOSE_PENDING | W_SHUT_PENDING);
    tw_failure_free(w->pending_reason);
    w->pending_reason = NULL;
    wrap_drop_held(w);
    tw_transport_abort_connection(w->real);
}

static int wt_lose_write(tw_transport_t *t)
{
    tw_wrapper_t *w = wrap_of(t);
    wrap_request(w, TW_WRAPPER_LOSE_WRITE);
    if ((w->flags & W_LOSING) || !wrap_live(w))
        return -EPIPE;
    w->flags |= W_SHUT;
    if (w->held_len) {
        w->flags |= W_SHUT_PENDING;
        return 0;
    }
    return tw_transport_lose_write_connection(w->real);
}

static void wt_pause(tw_transport_t *t)
{
    wrap_set_pause(wrap_of(t), P_INNER, true);
}

static void wt_resume(tw_transport_t *t)
{
    wrap_set_pause(wrap_of(t), P_INNER, false);
}

static int wt_register(tw_transport_t *t, tw_producer_t *p, bool streaming)
{
    tw_wrapper_t *w = wrap_of(t);
    if ((w->flags & W_LOSING) || !wrap_live(w))
        return -EPIPE;
    if (w->producer)
        return -EBUSY;
    w->producer = p;
    w->streaming = streaming;
    w->real_paused = w->prod_paused = w->pull_pending = false;
    /* The real transport may pause (push) or ask (pull) from inside. */
    int rc = tw_transport_register_producer(w->real, &w->proxy, streaming);
    if (rc) {
        w->producer = NULL;
        return rc;
    }
    wrap_update_producer(w); /* the policy may hold it paused */
    return 0;
}

static void wt_unregister(tw_transport_t *t)
{
    tw_wrapper_t *w = wrap_of(t);
    if (!w->producer)
        return;
    w->producer = NULL;
    w->real_paused = w->prod_paused = w->pull_pending = false;
    if (wrap_live(w))
        tw_transport_unregister_producer(w->real);
}

static int wt_peer(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    tw_wrapper_t *w = wrap_of(t);
    return w->real ? tw_transport_peer_address(w->real, ss, len) : -ENOTCONN;
}

static int wt_host(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    tw_wrapper_t *w = wrap_of(t);
    return w->real ? tw_transport_host_address(w->real, ss, len) : -ENOTCONN;
}

static size_t wt_queued(const tw_transport_t *t)
{
    const tw_wrapper_t *w = wrap_of(t);
    return (w->real ? tw_transport_queued(w->real) : 0) + w->held_len;
}

static void wt_set_limits(tw_transport_t *t, size_t low, size_t high, size_t cap,
                          tw_cap_policy_t policy)
{
    tw_wrapper_t *w = wrap_of(t);
    if (w->real)
        tw_transport_set_limits(w->real, low, high, cap, policy);
}

static int wt_nodelay(tw_transport_t *t, bool on)
{
    tw_wrapper_t *w = wrap_of(t);
    return w->real ? tw_transport_set_nodelay(w->real, on) : -ENOTCONN;
}

static int wt_keepalive(tw_transport_t *t, bool on)
{
    tw_wrapper_t *w = wrap_of(t);
    return w->real ? tw_transport_set_keepalive(w->real, on) : -ENOTCONN;
}

static int wt_fileno(const tw_transport_t *t)
{
    const tw_wrapper_t *w = wrap_of(t);
    return w->real ? tw_transport_fileno(w->real) : -1;
}

static const tw_transport_ops_t wrap_transport_ops = {
    .writev = wt_writev,
    .lose_connection = wt_lose,
    .abort_connection = wt_abort,
    .lose_write_connection = wt_lose_write,
    .pause_reading = wt_pause,
    .resume_reading = wt_resume,
    .register_producer = wt_register,
    .unregister_producer = wt_unregister,
    .peer_address = wt_peer,
    .host_address = wt_host,
    .queued = wt_queued,
    .set_limits = wt_set_limits,
    .set_nodelay = wt_nodelay,
    .set_keepalive = wt_keepalive,
    .fileno = wt_fileno,
    .lose_connection_with = wt_lose_with,
};

tw_wrapper_t *tw_wrapper_of(const tw_transport_t *t)
{
    return t && t->ops == &wrap_transport_ops ? wrap_of(t) : NULL;
}

/* ---- the protocol the real transport sees -------------------------------- */

static void wp_made(tw_protocol_t *p, tw_transport_t *t)
{
    tw_wrapper_t *w = wrap_of_protocol(p);
    w->real = t;
    w->transport.reactor = t->reactor;
    w->flags |= W_MADE;
    if (w->flags & W_REFUSED) {
        tw_wrapping_factory_t *f = w->factory;
        if (f->refusal_len)
            tw_transport_write(t, f->refusal, f->refusal_len);
        tw_transport_lose_connection(t);
        return;
    }
    tw_protocol_t *in = w->inner;
    tw__factory_track(w->factory->inner, &w->transport);
    if (w->pause_bits) /* a policy paused before the connection was made */
        tw_transport_pause_reading(t);
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->made)
        ops->made(w);
    if (in->ops->connection_made)
        in->ops->connection_made(in, &w->transport);
}

static void wp_data(tw_protocol_t *p, const void *data, size_t len)
{
    tw_wrapper_t *w = wrap_of_protocol(p);
    if (w->flags & W_REFUSED)
        return;
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->data)
        ops->data(w, data, len);
    w->inner->ops->data_received(w->inner, data, len);
}

static void wp_eof(tw_protocol_t *p)
{
    tw_wrapper_t *w = wrap_of_protocol(p);
    if (w->flags & W_REFUSED) {
        tw_transport_lose_connection(w->real);
        return;
    }
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->eof)
        ops->eof(w);
    tw_protocol_t *in = w->inner;
    if (in->ops->eof_received)
        in->ops->eof_received(in);
    else /* the transport's default, through the wrapper (held bytes first) */
        tw_transport_lose_connection(&w->transport);
}

static void wp_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    tw_wrapper_t *w = wrap_of_protocol(p);
    w->flags |= W_LOST;
    if (w->flags & W_REFUSED) {
        w->real = NULL;
        return;
    }
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (ops->lost)
        ops->lost(w, reason);
    tw__factory_untrack(&w->transport);
    if (w->producer) /* a transport stops its producer when it goes */
        wrap_stop_producer(w);
    wrap_drop_held(w);
    tw_protocol_t *in = w->inner;
    if (in->ops->connection_lost)
        in->ops->connection_lost(in, reason);
    w->real = NULL;
}

static void wp_destroy(tw_protocol_t *p)
{
    tw_wrapper_t *w = wrap_of_protocol(p);
    const tw_wrapper_ops_t *ops = wrap_ops(w);
    if (!(w->flags & W_REFUSED) && ops->release)
        ops->release(w);
    tw__factory_untrack(&w->transport); /* if connection_lost never came */
    if (w->inner && w->inner->ops->destroy)
        w->inner->ops->destroy(w->inner);
    wrap_drop_held(w);
    tw_failure_free(w->pending_reason);
    free(w);
}

static const tw_protocol_ops_t wrap_protocol_ops = {
    .connection_made = wp_made,
    .data_received = wp_data,
    .eof_received = wp_eof,
    .connection_lost = wp_lost,
    .destroy = wp_destroy,
};

/* ---- the wrapping factory ------------------------------------------------ */

static inline tw_wrapping_factory_t *wf_of(tw_factory_t *f)
{
    return TW_CONTAINER_OF(f, tw_wrapping_factory_t, base);
}

/* The state lives after the wrapper, aligned for anything. */
#define WRAP_STATE_OFFSET \
    ((sizeof(tw_wrapper_t) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1))

static tw_protocol_t *wf_build(tw_factory_t *bf, const struct sockaddr *addr, socklen_t len)
{
    tw_wrapping_factory_t *f = wf_of(bf);
    const tw_wrapper_ops_t *ops = f->ops;
    size_t state = ops ? ops->state_size : 0;
    tw_wrapper_t *w = calloc(1, WRAP_STATE_OFFSET + state);
    if (!w)
        return NULL;
    w->protocol.ops = &wrap_protocol_ops;
    w->protocol.factory = bf;
    w->transport.ops = &wrap_transport_ops;
    w->transport.as_producer.ops = &tw__transport_producer_ops;
    w->proxy.ops = &wrap_proxy_ops;
    w->factory = f;
    w->state = state ? (char *)w + WRAP_STATE_OFFSET : NULL;
    if (ops && ops->admit && ops->admit(w, addr, len) != 0) {
        if (!f->refusal) {
            free(w);
            return NULL;
        }
        w->flags |= W_REFUSED; /* accepted, told, closed: rule 5 */
        return &w->protocol;
    }
    tw_protocol_t *in = f->inner->ops->build_protocol(f->inner, addr, len);
    if (!in) {
        if (ops && ops->release)
            ops->release(w);
        free(w);
        return NULL;
    }
    w->inner = in;
    in->transport = &w->transport;
    in->factory = f->inner;
    w->transport.protocol = in;
    return &w->protocol;
}

static void wf_start(tw_factory_t *bf)
{
    tw__factory_use(wf_of(bf)->inner);
}

static void wf_stop(tw_factory_t *bf)
{
    tw__factory_release(wf_of(bf)->inner);
}

static void wf_started(tw_factory_t *bf, tw_connector_t *c)
{
    tw_factory_t *in = wf_of(bf)->inner;
    if (in->ops->started_connecting)
        in->ops->started_connecting(in, c);
}

static void wf_failed(tw_factory_t *bf, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_factory_t *in = wf_of(bf)->inner;
    if (in->ops->connection_failed)
        in->ops->connection_failed(in, c, reason);
}

static void wf_lost(tw_factory_t *bf, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_factory_t *in = wf_of(bf)->inner;
    if (in->ops->connection_lost)
        in->ops->connection_lost(in, c, reason);
}

static const tw_factory_ops_t wrapping_factory_ops = {
    .build_protocol = wf_build,
    .start = wf_start,
    .stop = wf_stop,
    .started_connecting = wf_started,
    .connection_failed = wf_failed,
    .connection_lost = wf_lost,
};

int tw_wrapping_factory_init(tw_wrapping_factory_t *f, tw_factory_t *inner,
                             const tw_wrapper_ops_t *ops, void *arg)
{
    if (!f || !inner || !inner->ops || !inner->ops->build_protocol)
        return -EINVAL;
    memset(f, 0, sizeof *f);
    f->base.ops = &wrapping_factory_ops;
    f->inner = inner;
    f->ops = ops;
    f->arg = arg;
    f->hold_limit = HOLD_LIMIT_DEFAULT;
    return 0;
}

void tw_wrapping_factory_set_refusal(tw_wrapping_factory_t *f, const char *msg)
{
    f->refusal = msg;
    f->refusal_len = msg ? strlen(msg) : 0;
}

/* ---- idle timers --------------------------------------------------------- */

static tw_failure_t *idle_failure(tw_time_t timeout)
{
    return tw_failure_new(LOG_DOMAIN, -ETIMEDOUT, "idle for %g s", (double)timeout / 1e9);
}

static void idle_fire(tw_timer_t *t, void *arg)
{
    tw_idle_timer_t *it = arg;
    it->cb(it, it->arg);
}

void tw_idle_timer_init(tw_idle_timer_t *it, tw_reactor_t *r, tw_idle_cb cb, void *arg)
{
    memset(it, 0, sizeof *it);
    tw_timer_init(&it->timer, r, idle_fire, it);
    it->cb = cb;
    it->arg = arg;
}

tw_time_t tw_idle_timer_set_timeout(tw_idle_timer_t *it, tw_time_t timeout)
{
    tw_time_t prev = it->timeout;
    it->timeout = timeout > 0 ? timeout : 0;
    if (!it->timeout) {
        tw_timer_cancel(&it->timer);
    } else if (tw_timer_start(&it->timer, it->timeout) != 0) {
        it->timeout = 0;
        tw_log(TW_LOG_ERROR, LOG_DOMAIN, "cannot start an idle timeout: out of memory");
    }
    return prev;
}

void tw_idle_timer_reset(tw_idle_timer_t *it)
{
    if (it->timeout && tw_timer_active(&it->timer))
        tw_timer_start(&it->timer, it->timeout); /* moving an active timer allocates nothing */
}

void tw_idle_timer_lose_connection(tw_idle_timer_t *it, void *protocol)
{
    tw_protocol_t *p = protocol;
    if (p && p->transport)
        tw_transport_lose_connection_with(p->transport, idle_failure(it->timeout));
}

/* ---- the timeout factory ------------------------------------------------- */

typedef struct timeout_conn {
    tw_idle_timer_t idle;
    tw_wrapper_t *w;
    bool fired; /* lost for being idle; the next expiry aborts */
} timeout_conn_t;

static void timeout_expired(tw_idle_timer_t *it, void *arg)
{
    timeout_conn_t *c = arg;
    if (c->fired) { /* still here: the queue never drained */
        tw_transport_abort_connection(&c->w->transport);
        return;
    }
    c->fired = true;
    tw_time_t timeout = it->timeout;
    tw_idle_timer_set_timeout(it, timeout); /* one more period to flush */
    tw_transport_lose_connection_with(&c->w->transport, idle_failure(timeout));
}

static int timeout_admit(tw_wrapper_t *w, const struct sockaddr *addr, socklen_t len)
{
    tw_timeout_factory_t *f = TW_CONTAINER_OF(w->factory, tw_timeout_factory_t, base);
    timeout_conn_t *c = w->state;
    c->w = w;
    tw_idle_timer_init(&c->idle, f->reactor, timeout_expired, c);
    return 0;
}

static void timeout_made(tw_wrapper_t *w)
{
    tw_timeout_factory_t *f = TW_CONTAINER_OF(w->factory, tw_timeout_factory_t, base);
    tw_idle_timer_set_timeout(&((timeout_conn_t *)w->state)->idle, f->timeout);
}

static void timeout_activity(tw_wrapper_t *w)
{
    timeout_conn_t *c = w->state;
    if (!c->fired)
        tw_idle_timer_reset(&c->idle);
}

static void timeout_data(tw_wrapper_t *w, const void *data, size_t len)
{
    timeout_activity(w);
}

static int timeout_write(tw_wrapper_t *w, const struct iovec *iov, int iovcnt)
{
    timeout_activity(w);
    return tw_wrapper_write(w, iov, iovcnt);
}

static void timeout_release(tw_wrapper_t *w)
{
    tw_idle_timer_cancel(&((timeout_conn_t *)w->state)->idle);
}

static const tw_wrapper_ops_t timeout_ops = {
    .state_size = sizeof(timeout_conn_t),
    .admit = timeout_admit,
    .made = timeout_made,
    .data = timeout_data,
    .write = timeout_write,
    .release = timeout_release, /* also covers connection_lost: it comes just before */
};

int tw_timeout_factory_init(tw_timeout_factory_t *f, tw_factory_t *inner, tw_reactor_t *r,
                            tw_time_t timeout)
{
    if (!f || !r || timeout <= 0)
        return -EINVAL;
    int rc = tw_wrapping_factory_init(&f->base, inner, &timeout_ops, NULL);
    if (rc)
        return rc;
    f->reactor = r;
    f->timeout = timeout;
    return 0;
}

int tw_timeout_set(tw_transport_t *t, tw_time_t timeout)
{
    for (tw_wrapper_t *w = tw_wrapper_of(t); w; w = tw_wrapper_of(w->real)) {
        if (w->factory->ops == &timeout_ops) {
            timeout_conn_t *c = w->state;
            c->fired = false;
            tw_idle_timer_set_timeout(&c->idle, timeout);
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- connection limits --------------------------------------------------- */

/* A peer: 4 (IPv4), 6 (IPv6) or 0 (UNIX, unknown: one peer), and the address. */
typedef struct limit_key {
    uint8_t fam;
    uint8_t a[16];
} limit_key_t;

struct tw_limit_slot {
    limit_key_t key;
    int count; /* 0: the slot is free */
};

typedef struct limit_conn {
    limit_key_t key;
    bool by_peer; /* counted in the peer table */
} limit_conn_t;

static void limit_key_of(const struct sockaddr *sa, socklen_t len, limit_key_t *k)
{
    memset(k, 0, sizeof *k);
    if (!sa || len < (socklen_t)sizeof(sa_family_t))
        return;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof sin);
        k->fam = 4;
        memcpy(k->a, &sin.sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof sin6);
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) { /* a dual-stack listener's IPv4 peer */
            k->fam = 4;
            memcpy(k->a, (const uint8_t *)&sin6.sin6_addr + 12, 4);
        } else {
            k->fam = 6;
            memcpy(k->a, &sin6.sin6_addr, 16);
        }
    }
}

static size_t limit_hash(const limit_key_t *k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = (h ^ k->fam) * 0x100000001b3ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ k->a[i]) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 32));
}

static bool limit_key_eq(const limit_key_t *a, const limit_key_t *b)
{
    return a->fam == b->fam && memcmp(a->a, b->a, sizeof a->a) == 0;
}

/* Open addressing, linear probing; the table exists only while some peer
 * is counted. */
static tw_limit_slot_t *limit_find(const tw_limit_factory_t *f, const limit_key_t *k)
{
    if (!f->nslots)
        return NULL;
    size_t mask = f->nslots - 1;
    for (size_t i = limit_hash(k) & mask;; i = (i + 1) & mask) {
        tw_limit_slot_t *s = &f->slots[i];
        if (!s->count)
            return NULL;
        if (limit_key_eq(&s->key, k))
            return s;
    }
}

static tw_limit_slot_t *limit_slot_for(tw_limit_slot_t *slots, size_t n, const limit_key_t *k)
{
    size_t mask = n - 1, i = limit_hash(k) & mask;
    while (slots[i].count && !limit_key_eq(&slots[i].key, k))
        i = (i + 1) & mask;
    return &slots[i];
}

static int limit_peer_add(tw_limit_factory_t *f, const limit_key_t *k)
{
    tw_limit_slot_t *s = limit_find(f, k);
    if (s) {
        s->count++;
        return 0;
    }
    if ((f->used + 1) * 4 > f->nslots * 3) { /* keep it under 3/4 full */
        size_t n = f->nslots ? f->nslots * 2 : 16;
        tw_limit_slot_t *slots = calloc(n, sizeof *slots);
        if (!slots)
            return -ENOMEM;
        for (size_t i = 0; i < f->nslots; i++)
            if (f->slots[i].count)
                *limit_slot_for(slots, n, &f->slots[i].key) = f->slots[i];
        free(f->slots);
        f->slots = slots;
        f->nslots = n;
    }
    s = limit_slot_for(f->slots, f->nslots, k);
    s->key = *k;
    s->count = 1;
    f->used++;
    return 0;
}

static void limit_peer_sub(tw_limit_factory_t *f, const limit_key_t *k)
{
    tw_limit_slot_t *s = limit_find(f, k);
    if (!s || --s->count)
        return;
    f->used--;
    if (!f->used) { /* no connection left: no memory either */
        free(f->slots);
        f->slots = NULL;
        f->nslots = 0;
        return;
    }
    /* Backward-shift deletion: pull later entries of the probe run into the
     * hole, so that lookups never need tombstones. */
    size_t mask = f->nslots - 1, hole = (size_t)(s - f->slots);
    for (size_t j = (hole + 1) & mask; f->slots[j].count; j = (j + 1) & mask) {
        size_t home = limit_hash(&f->slots[j].key) & mask;
        /* j's entry may move to the hole if its home is not in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            f->slots[hole] = f->slots[j];
            hole = j;
        }
    }
    f->slots[hole].count = 0;
}

static int limit_admit(tw_wrapper_t *w, const struct sockaddr *addr, socklen_t len)
{
    tw_limit_factory_t *f = TW_CONTAINER_OF(w->factory, tw_limit_factory_t, base);
    limit_conn_t *c = w->state;
    limit_key_of(addr, len, &c->key);
    const char *why = NULL;
    if (f->opts.max_total && f->count >= f->opts.max_total) {
        why = "connection limit reached";
    } else if (f->opts.max_per_peer) {
        tw_limit_slot_t *s = limit_find(f, &c->key);
        if (s && s->count >= f->opts.max_per_peer)
            why = "per-peer connection limit reached";
        else if (limit_peer_add(f, &c->key) != 0)
            why = "out of memory";
        else
            c->by_peer = true;
    }
    if (why) {
        f->refused++;
        tw_log(TW_LOG_DEBUG, LOG_DOMAIN, "refusing a connection: %s", why);
        return -1;
    }
    f->count++;
    return 0;
}

static void limit_release(tw_wrapper_t *w)
{
    tw_limit_factory_t *f = TW_CONTAINER_OF(w->factory, tw_limit_factory_t, base);
    limit_conn_t *c = w->state;
    f->count--;
    if (c->by_peer)
        limit_peer_sub(f, &c->key);
}

static const tw_wrapper_ops_t limit_ops = {
    .state_size = sizeof(limit_conn_t),
    .admit = limit_admit,
    .release = limit_release,
};

int tw_limit_factory_init(tw_limit_factory_t *f, tw_factory_t *inner, const tw_limit_opts_t *o)
{
    if (!f || !o || o->max_total < 0 || o->max_per_peer < 0)
        return -EINVAL;
    int rc = tw_wrapping_factory_init(&f->base, inner, &limit_ops, NULL);
    if (rc)
        return rc;
    f->opts = *o;
    f->count = f->refused = 0;
    f->slots = NULL;
    f->nslots = f->used = 0;
    tw_wrapping_factory_set_refusal(&f->base, o->message);
    return 0;
}

int tw_limit_factory_peer_count(const tw_limit_factory_t *f, const struct sockaddr *addr,
                                socklen_t len)
{
    limit_key_t k;
    limit_key_of(addr, len, &k);
    const tw_limit_slot_t *s = limit_find(f, &k);
    return s ? s->count : 0;
}

/* ---- throttling ---------------------------------------------------------- */

struct tw_throttle_conn {
    tw_wrapper_t *w;
    tw_throttle_conn_t *next, *prev;
    bool listed;
};

static inline tw_throttling_factory_t *throttle_of(tw_wrapper_t *w)
{
    return TW_CONTAINER_OF(w->factory, tw_throttling_factory_t, base);
}

static void throttle_unlist(tw_throttling_factory_t *f, tw_throttle_conn_t *c)
{
    if (!c->listed)
        return;
    c->listed = false;
    *(c->prev ? &c->prev->next : &f->head) = c->next;
    *(c->next ? &c->next->prev : &f->tail) = c->prev;
    c->next = c->prev = NULL;
}

static void throttle_append(tw_throttling_factory_t *f, tw_throttle_conn_t *c)
{
    c->listed = true;
    c->next = NULL;
    c->prev = f->tail;
    *(f->tail ? &f->tail->next : &f->head) = c;
    f->tail = c;
}

static void throttle_reads(tw_throttling_factory_t *f, bool on)
{
    f->reads_throttled = on;
    for (tw_throttle_conn_t *c = f->head, *next; c; c = next) {
        next = c->next;
        if (on)
            tw_wrapper_pause_reading(c->w);
        else
            tw_wrapper_resume_reading(c->w);
    }
}

static void throttle_writes(tw_throttling_factory_t *f)
{
    if (f->writes_throttled)
        return;
    f->writes_throttled = true;
    for (tw_throttle_conn_t *c = f->head, *next; c; c = next) {
        next = c->next;
        tw_wrapper_pause_producer(c->w);
    }
}

static void unthrottle_writes(tw_throttling_factory_t *f)
{
    f->writes_throttled = false;
    for (tw_throttle_conn_t *c = f->head, *next; c && !f->writes_throttled; c = next) {
        next = c->next;
        tw_wrapper_resume_producer(c->w); /* a pull producer may write (and throttle) now */
    }
}

/* The end of a window: pay the read limit off the count, send up to the
 * write limit of held bytes. */
static void throttle_tick(tw_timer_t *t, void *arg)
{
    tw_throttling_factory_t *f = arg;
    tw_time_t now = tw_reactor_now(f->reactor);
    f->window_end += TW_SEC(1);
    if (f->window_end <= now) /* a stalled loop: the windows missed are not made up */
        f->window_end = now + TW_SEC(1);
    tw_timer_start_at(t, f->window_end);

    size_t rl = f->opts.read_limit;
    f->read_count = rl && f->read_count > rl ? f->read_count - rl : 0;
    if (f->reads_throttled && (!rl || f->read_count < rl))
        throttle_reads(f, false);

    size_t wl = f->opts.write_limit, budget = wl ? wl : SIZE_MAX;
    bool held = false;
    for (tw_throttle_conn_t *c = f->head, *next; c; c = next) {
        next = c->next;
        if (budget && tw_wrapper_held(c->w))
            budget -= tw_wrapper_release(c->w, budget);
        held |= c->listed && tw_wrapper_held(c->w) > 0;
    }
    if (f->head && f->head != f->tail) { /* the next window starts with the next one */
        tw_throttle_conn_t *c = f->head;
        throttle_unlist(f, c);
        throttle_append(f, c);
    }
    f->write_count = wl ? wl - budget : 0;
    if (f->writes_throttled && !held && (!wl || f->write_count < wl))
        unthrottle_writes(f);
}

static int throttle_admit(tw_wrapper_t *w, const struct sockaddr *addr, socklen_t len)
{
    tw_throttling_factory_t *f = throttle_of(w);
    if (f->opts.max_connections && f->count >= f->opts.max_connections) {
        tw_log(TW_LOG_DEBUG, LOG_DOMAIN, "refusing a connection: max connection count reached");
        return -1;
    }
    if (f->count++ == 0) { /* the first connection starts the windows */
        f->read_count = f->write_count = 0;
        f->reads_throttled = f->writes_throttled = false;
        f->window_end = tw_reactor_now(f->reactor) + TW_SEC(1);
        tw_timer_start_at(&f->window, f->window_end);
    }
    ((tw_throttle_conn_t *)w->state)->w = w;
    return 0;
}

static void throttle_made(tw_wrapper_t *w)
{
    tw_throttling_factory_t *f = throttle_of(w);
    throttle_append(f, w->state);
    if (f->reads_throttled)
        tw_wrapper_pause_reading(w);
    if (f->writes_throttled)
        tw_wrapper_pause_producer(w);
}

static void throttle_data(tw_wrapper_t *w, const void *data, size_t len)
{
    tw_throttling_factory_t *f = throttle_of(w);
    size_t rl = f->opts.read_limit;
    if (!rl)
        return;
    f->read_count = len > SIZE_MAX - f->read_count ? SIZE_MAX : f->read_count + len;
    if (!f->reads_throttled && f->read_count >= rl)
        throttle_reads(f, true); /* this chunk is delivered: it has been read */
}

static int throttle_write(tw_wrapper_t *w, const struct iovec *iov, int iovcnt)
{
    tw_throttling_factory_t *f = throttle_of(w);
    size_t wl = f->opts.write_limit;
    if (!wl)
        return tw_wrapper_write(w, iov, iovcnt);
    if (f->writes_throttled || tw_wrapper_held(w)) /* behind what is held, in order */
        return tw_wrapper_hold(w, iov, iovcnt);
    size_t total = iov_total(iov, iovcnt);
    size_t room = f->write_count < wl ? wl - f->write_count : 0;
    if (total <= room) {
        int rc = tw_wrapper_write(w, iov, iovcnt);
        if (rc == 0)
            f->write_count += total;
        if (f->write_count >= wl)
            throttle_writes(f);
        return rc;
    }
    /* Exactly `room` bytes now -- the whole buffers that fit, then a piece
     * of the next -- and hold the rest. */
    int k = 0;
    size_t sent = 0;
    while (k < iovcnt && sent + iov[k].iov_len <= room)
        sent += iov[k++].iov_len;
    int rc = k ? tw_wrapper_write(w, iov, k) : 0;
    size_t part = room - sent;
    if (rc == 0 && part) {
        struct iovec piece = { iov[k].iov_base, part };
        rc = tw_wrapper_write(w, &piece, 1);
    }
    if (rc < 0)
        return rc;
    f->write_count = wl;
    throttle_writes(f);
    struct iovec rest = { (char *)iov[k].iov_base + part, iov[k].iov_len - part };
    rc = tw_wrapper_hold(w, &rest, 1);
    if (rc == 0 && k + 1 < iovcnt)
        rc = tw_wrapper_hold(w, iov + k + 1, iovcnt - k - 1);
    return rc;
}

static void throttle_lost(tw_wrapper_t *w, const tw_failure_t *reason)
{
    throttle_unlist(throttle_of(w), w->state);
}

static void throttle_release(tw_wrapper_t *w)
{
    tw_throttling_factory_t *f = throttle_of(w);
    throttle_unlist(f, w->state);
    if (--f->count == 0) {
        tw_timer_cancel(&f->window);
        f->read_count = f->write_count = 0;
        f->reads_throttled = f->writes_throttled = false;
    }
}

static const tw_wrapper_ops_t throttle_ops = {
    .state_size = sizeof(tw_throttle_conn_t),
    .admit = throttle_admit,
    .made = throttle_made,
    .data = throttle_data,
    .write = throttle_write,
    .lost = throttle_lost,
    .release = throttle_release,
};

int tw_throttling_factory_init(tw_throttling_factory_t *f, tw_factory_t *inner,
                               tw_reactor_t *r, const tw_throttle_opts_t *o)
{
    if (!f || !r || !o || o->max_connections < 0)
        return -EINVAL;
    int rc = tw_wrapping_factory_init(&f->base, inner, &throttle_ops, NULL);
    if (rc)
        return rc;
    f->reactor = r;
    f->opts = *o;
    f->count = 0;
    f->read_count = f->write_count = 0;
    f->reads_throttled = f->writes_throttled = false;
    f->window_end = 0;
    f->head = f->tail = NULL;
    tw_timer_init(&f->window, r, throttle_tick, f);
    return 0;
}

/* ---- traffic logging ----------------------------------------------------- */

/* A growing line; on allocation failure the event is not logged. */
typedef struct tlog_buf {
    char *p;
    size_t len, cap;
    bool failed;
} tlog_buf_t;

static void tlog_reserve(tlog_buf_t *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *n = realloc(b->p, cap);
    if (!n) {
        b->failed = true;
        return;
    }
    b->p = n;
    b->cap = cap;
}

static void tlog_printf(tlog_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tlog_printf(tlog_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    tlog_reserve(b, (size_t)n);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static inline tw_traffic_log_factory_t *tlog_of(tw_wrapper_t *w)
{
    return TW_CONTAINER_OF(w->factory, tw_traffic_log_factory_t, base);
}

static void tlog_emit(tw_traffic_log_factory_t *f, tlog_buf_t *b)
{
    if (b->failed || !b->p)
        return;
    if (f->opts.file) {
        b->p[b->len] = '\n';
        fwrite(b->p, 1, b->len + 1, f->opts.file);
        fflush(f->opts.file);
    } else {
        tw_log(f->opts.level, "traffic", "%s", b->p);
    }
    b->len = 0;
    b->p[0] = '\0';
}

static void tlog_line(tw_wrapper_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tlog_line(tw_wrapper_t *w, const char *fmt, ...)
{
    tw_traffic_log_factory_t *f = tlog_of(w);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tlog_buf_t b = { 0 };
    tlog_printf(&b, "conn %u: %s", *(unsigned *)w->state, msg);
    tlog_emit(f, &b);
    free(b.p);
}

static void tlog_escape(tlog_buf_t *b, unsigned char ch)
{
    tlog_reserve(b, 4);
    if (b->failed)
        return;
    char *o = b->p + b->len;
    switch (ch) {
    case '\n': memcpy(o, "\\n", 2), b->len += 2; break;
    case '\r': memcpy(o, "\\r", 2), b->len += 2; break;
    case '\t': memcpy(o, "\\t", 2), b->len += 2; break;
    case '\\': memcpy(o, "\\\\", 2), b->len += 2; break;
    case '"': memcpy(o, "\\\"", 2), b->len += 2; break;
    default:
        if (ch >= 0x20 && ch < 0x7f) {
            *o = (char)ch;
            b->len += 1;
        } else {
            static const char hex[] = "0123456789abcdef";
            o[0] = '\\', o[1] = 'x', o[2] = hex[ch >> 4], o[3] = hex[ch & 15];
            b->len += 4;
        }
    }
    b->p[b->len] = '\0';
}

/* One 16-byte hexdump line. */
static void tlog_hexline(tlog_buf_t *b, size_t off, const unsigned char *d, size_t n)
{
    tlog_printf(b, "  %04zx  ", off);
    for (size_t i = 0; i < 16; i++) {
        if (i < n)
            tlog_printf(b, "%02x ", d[i]);
        else
            tlog_printf(b, "   ");
    }
    tlog_printf(b, "|");
    for (size_t i = 0; i < n; i++)
        tlog_printf(b, "%c", d[i] >= 0x20 && d[i] < 0x7f ? d[i] : '.');
    tlog_printf(b, "|");
}

/* A data event: "conn N: in LEN ..." over the bytes of iov. */
static void tlog_data(tw_wrapper_t *w, const char *dir, const struct iovec *iov, int iovcnt)
{
    tw_traffic_log_factory_t *f = tlog_of(w);
    size_t total = iov_total(iov, iovcnt);
    size_t shown = f->opts.max_bytes && total > f->opts.max_bytes ? f->opts.max_bytes : total;
    tlog_buf_t b = { 0 };
    tlog_printf(&b, "conn %u: %s %zu", *(unsigned *)w->state, dir, total);
    if (!f->opts.hexdump) {
        tlog_printf(&b, " \"");
        size_t left = shown;
        for (int i = 0; i < iovcnt && left; i++) {
            const unsigned char *d = iov[i].iov_base;
            for (size_t j = 0; j < iov[i].iov_len && left; j++, left--)
                tlog_escape(&b, d[j]);
        }
        tlog_printf(&b, "\"");
        if (shown < total)
            tlog_printf(&b, "... (%zu more)", total - shown);
        tlog_emit(f, &b);
    } else {
        tlog_emit(f, &b);
        unsigned char line[16];
        size_t n = 0, off = 0, left = shown;
        for (int i = 0; i < iovcnt && left; i++) {
            const unsigned char *d = iov[i].iov_base;
            for (size_t j = 0; j < iov[i].iov_len && left; j++, left--) {
                line[n++] = d[j];
                if (n == 16) {
                    tlog_hexline(&b, off, line, n);
                    tlog_emit(f, &b);
                    off += n;
                    n = 0;
                }
            }
        }
        if (n) {
            tlog_hexline(&b, off, line, n);
            tlog_emit(f, &b);
        }
        if (shown < total) {
            tlog_printf(&b, "  ... (%zu more)", total - shown);
            tlog_emit(f, &b);
        }
    }
    free(b.p);
}

static void policy_format_addr(const struct sockaddr_storage *ss, socklen_t len, char *buf,
                               size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)len - offsetof(struct sockaddr_un, sun_path) : 0;
        if (plen > sizeof sun->sun_path)
            plen = sizeof sun->sun_path;
        if (plen && sun->sun_path[0] == '\0') /* abstract */
            snprintf(buf, n, "unix @%.*s", (int)plen - 1, sun->sun_path + 1);
        else if (plen && sun->sun_path[0])
            snprintf(buf, n, "unix %.*s", (int)strnlen(sun->sun_path, plen), sun->sun_path);
        else
            snprintf(buf, n, "unix");
    } else {
        snprintf(buf, n, "unknown");
    }
}

static int tlog_admit(tw_wrapper_t *w, const struct sockaddr *addr, socklen_t len)
{
    *(unsigned *)w->state = ++tlog_of(w)->counter;
    return 0;
}

static void tlog_made(tw_wrapper_t *w)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char peer[160] = "unknown";
    memset(&ss, 0, sizeof ss);
    if (tw_transport_peer_address(w->real, &ss, &len) == 0)
        policy_format_addr(&ss, len, peer, sizeof peer);
    tlog_line(w, "made, peer %s", peer);
}

static void tlog_in(tw_wrapper_t *w, const void *data, size_t len)
{
    struct iovec iov = { (void *)data, len };
    tlog_data(w, "in", &iov, 1);
}

static void tlog_eof(tw_wrapper_t *w)
{
    tlog_line(w, "eof");
}

static int tlog_out(tw_wrapper_t *w, const struct iovec *iov, int iovcnt)
{
    if (iov_total(iov, iovcnt))
        tlog_data(w, "out", iov, iovcnt);
    return tw_wrapper_write(w, iov, iovcnt);
}

static void tlog_request(tw_wrapper_t *w, tw_wrapper_request_t what)
{
    static const char *const names[] = { "lose_connection", "abort_connection",
                                         "lose_write_connection" };
    tlog_line(w, "%s", names[what]);
}

static void tlog_lost(tw_wrapper_t *w, const tw_failure_t *reason)
{
    if (reason)
        tlog_line(w, "lost: %s %d: %s", reason->domain, reason->code, reason->message);
    else
        tlog_line(w, "lost (clean)");
}

static const tw_wrapper_ops_t tlog_ops = {
    .state_size = sizeof(unsigned),
    .admit = tlog_admit,
    .made = tlog_made,
    .data = tlog_in,
    .eof = tlog_eof,
    .write = tlog_out,
    .request = tlog_request,
    .lost = tlog_lost,
};

int tw_traffic_log_factory_init(tw_traffic_log_factory_t *f, tw_factory_t *inner,
                                const tw_traffic_log_opts_t *o)
{
    if (!f)
        return -EINVAL;
    int rc = tw_wrapping_factory_init(&f->base, inner, &tlog_ops, NULL);
    if (rc)
        return rc;
    if (o)
        f->opts = *o;
    else
        f->opts = (tw_traffic_log_opts_t){ .file = NULL, .level = TW_LOG_INFO };
    f->counter = 0;
    return 0;
}
