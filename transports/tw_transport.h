/* tw_transport.h -- protocols, factories, transports and producers: the
 * three vtables a twine program is made of.
 *
 * A *protocol* is a small state machine that reacts to a connection's
 * events; the user writes one as a tw_protocol_ops_t table and a struct that
 * embeds tw_protocol_t first.  A *factory* builds one protocol per
 * connection.  A *transport* is the connection (TCP, UNIX, later TLS, pipes,
 * processes): the protocol writes to it and closes it through the wrappers
 * below.  A *producer* is anything that can be told to pause, resume and
 * stop producing data (Twisted's IPushProducer / IPullProducer); a transport
 * is one for its own reading side.
 *
 * Lifetime rules (read these first):
 *
 *  1. A transport owns its protocol.  The protocol's callbacks come in this
 *     order: connection_made once; then data_received and eof_received any
 *     number of times (none after eof_received, which comes at most once);
 *     then connection_lost exactly once, always, and last; then destroy,
 *     which frees the protocol.  After connection_lost returns the protocol
 *     must not use its transport again.
 *  2. A protocol may write, lose, abort or half-close its transport from
 *     inside any of its callbacks (and from any other callback of the
 *     reactor's thread).  The transport is never freed while one of its
 *     callbacks is on the stack: closing completes at a safe point, from the
 *     reactor, never inside the call that asked for it.
 *  3. Data passed to data_received is borrowed for the call (it lives in a
 *     buffer the reactor lends while reading); copy what you keep.
 *     tw_transport_write copies what it cannot send at once: the caller
 *     keeps its buffer.
 *  4. Everything here is reactor-thread-only.
 *  5. Errors: functions return 0 or a negative code (tw_error.h); the reason
 *     a connection ended arrives in connection_lost as a tw_failure_t
 *     (domain "tcp", "unix", ...), or NULL for a clean close.
 */
#ifndef TW_TRANSPORT_H
#define TW_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tw_error.h"
#include "tw_reactor.h"

typedef struct tw_transport tw_transport_t;
typedef struct tw_protocol tw_protocol_t;
typedef struct tw_factory tw_factory_t;
typedef struct tw_producer tw_producer_t;
typedef struct tw_connector tw_connector_t;

/* ---- producers (Twisted's IProducer) ---------------------------------- */

typedef struct tw_producer_ops {
    /* Stop producing for now (a push producer); the consumer's buffer is full. */
    void (*pause_producing)(tw_producer_t *p);
    /* Produce again: a push producer resumes; a pull producer is asked to
     * write one more chunk. */
    void (*resume_producing)(tw_producer_t *p);
    /* The consumer is going away: stop for good.  Optional (may be NULL). */
    void (*stop_producing)(tw_producer_t *p);
} tw_producer_ops_t;

struct tw_producer {
    const tw_producer_ops_t *ops;
};

/* ---- protocols -------------------------------------------------------- */

typedef struct tw_protocol_ops {
    /* The connection is up; p->transport is set.  Optional. */
    void (*connection_made)(tw_protocol_t *p, tw_transport_t *t);
    /* Bytes arrived; `data` is borrowed for the call.  Required. */
    void (*data_received)(tw_protocol_t *p, const void *data, size_t len);
    /* The peer closed its sending side (half-close).  Optional: when NULL,
     * the transport loses the connection (flushing what is queued first),
     * which is what most protocols want.  When set, the protocol decides: it
     * may keep writing, and call tw_transport_lose_connection when done. */
    void (*eof_received)(tw_protocol_t *p);
    /* The connection is gone: reason is NULL for a clean close (by either
     * side), else why (borrowed for the call).  Always called, once, last.
     * Optional. */
    void (*connection_lost)(tw_protocol_t *p, const tw_failure_t *reason);
    /* Free the protocol.  Called right after connection_lost (or instead of
     * connection_made, when a connection fails before it is made).
     * Optional: NULL means the protocol is not freed by the transport. */
    void (*destroy)(tw_protocol_t *p);
} tw_protocol_ops_t;

/* Embed first in your protocol struct; set ops, the rest is set for you. */
struct tw_protocol {
    const tw_protocol_ops_t *ops;
    tw_transport_t *transport; /* set before connection_made */
    tw_factory_t *factory;     /* the factory that built it, or NULL */
};

/* ---- factories -------------------------------------------------------- */

typedef struct tw_factory_ops {
    /* Build a protocol for a new connection with the peer at `addr`.  Return
     * NULL to refuse the connection (it is closed at once).  Required. */
    tw_protocol_t *(*build_protocol)(tw_factory_t *f, const struct sockaddr *addr,
                                     socklen_t addrlen);
    /* The first listener or connector using the factory started / the last
     * one stopped (Twisted's doStart / doStop).  Optional. */
    void (*start)(tw_factory_t *f);
    void (*stop)(tw_factory_t *f);
    /* Client side, all optional: a connection attempt began; it failed (no
     * protocol was built: reason says why, borrowed); the connection made by
     * connector c ended, after the protocol's connection_lost (reason as
     * there, NULL for a clean close). */
    void (*started_connecting)(tw_factory_t *f, tw_connector_t *c);
    void (*connection_failed)(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *reason);
    void (*connection_lost)(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *reason);
} tw_factory_ops_t;

/* Embed first in your factory struct; the factory belongs to the caller and
 * must outlive the listeners and connectors that use it, and the
 * connections it built.  Zero-initialise the private fields. */
struct tw_factory {
    const tw_factory_ops_t *ops;
    int users;          /* private: listeners and connectors using it (start/stop) */
    int nconns;         /* private: open connections it built */
    tw_transport_t *conns; /* private: the list of them */
};

/* The connections built by this factory that are still open. */
static inline int tw_factory_connection_count(const tw_factory_t *f)
{
    return f->nconns;
}

/* Lose (flush, then close) or abort every open connection this factory
 * built: how a daemon shuts down gracefully (stop listening, lose them all,
 * wait a bounded time, abort what is left).  Their connection_lost calls
 * follow from the reactor, as always. */
void tw_factory_lose_connections(tw_factory_t *f);
void tw_factory_abort_connections(tw_factory_t *f);

/* ---- transports ------------------------------------------------------- */

/* What to do when a write would take the queued bytes over the hard cap. */
typedef enum tw_cap_policy {
    TW_CAP_PAUSE = 0, /* stop reading from the peer until the queue drains below
                       * the low water mark; the write is queued (default) */
    TW_CAP_FAIL  = 1, /* refuse the write with -ENOBUFS; nothing is queued */
    TW_CAP_ABORT = 2, /* abort the connection with an ENOBUFS failure */
} tw_cap_policy_t;

typedef struct tw_transport_ops {
    int (*writev)(tw_transport_t *t, const struct iovec *iov, int iovcnt);
    void (*lose_connection)(tw_transport_t *t);
    void (*abort_connection)(tw_transport_t *t);
    int (*lose_write_connection)(tw_transport_t *t);
    void (*pause_reading)(tw_transport_t *t);
    void (*resume_reading)(tw_transport_t *t);
    int (*register_producer)(tw_transport_t *t, tw_producer_t *p, bool streaming);
    void (*unregister_producer)(tw_transport_t *t);
    int (*peer_address)(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len);
    int (*host_address)(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len);
    size_t (*queued)(const tw_transport_t *t);
    void (*set_limits)(tw_transport_t *t, size_t low, size_t high, size_t cap,
                       tw_cap_policy_t policy);
    int (*set_nodelay)(tw_transport_t *t, bool on);
    int (*set_keepalive)(tw_transport_t *t, bool on);
    int (*fileno)(const tw_transport_t *t);
    /* Optional: lose_connection, with `reason` (taken) for connection_lost. */
    void (*lose_connection_with)(tw_transport_t *t, tw_failure_t *reason);
} tw_transport_ops_t;

/* The base every transport embeds first.  Read-only for users. */
struct tw_transport {
    const tw_transport_ops_t *ops;
    tw_reactor_t *reactor;
    tw_protocol_t *protocol;
    tw_producer_t as_producer; /* the transport's reading side, as a push producer */
    tw_transport_t *fnext, *fprev; /* private: the factory's list of connections */
    tw_factory_t *tracked;         /* private: the factory whose list it is on */
};

/* Queue `len` bytes for the peer.  Sent at once when possible (one write(2)
 * when nothing is queued); what cannot be sent is copied and sent when the
 * socket is writable.  Returns 0 (also when the socket has failed: that is
 * reported once, through connection_lost); -ENOBUFS when the cap would be
 * passed under TW_CAP_FAIL (nothing is queued) or TW_CAP_ABORT (the
 * connection is aborted); -EPIPE (nothing is queued) after lose_connection,
 * lose_write_connection or abort, or once the connection is gone; -ENOMEM
 * when the queue cannot grow (the connection is closed); -EINVAL for a
 * negative count. */
static inline int tw_transport_write(tw_transport_t *t, const void *data, size_t len)
{
    struct iovec iov = { (void *)data, len };
    return t->ops->writev(t, &iov, 1);
}

/* The same for a sequence of buffers, sent with one writev(2) when possible
 * (Twisted's writeSequence). */
static inline int tw_transport_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    return t->ops->writev(t, iov, iovcnt);
}

/* Close after everything queued has been sent (Twisted's loseConnection).
 * Reading stops at once; a registered producer is told to stop.  Calling it
 * again is harmless. */
static inline void tw_transport_lose_connection(tw_transport_t *t)
{
    t->ops->lose_connection(t);
}

/* Close after everything queued has been sent, as lose_connection, and give
 * connection_lost `reason` (taken; NULL is a clean close) instead of NULL:
 * how a protocol closes a connection whose peer broke the rules (a line too
 * long, a malformed frame), so the reason is logged where connections end.
 * The first reason given wins; an I/O error while flushing replaces it. */
static inline void tw_transport_lose_connection_with(tw_transport_t *t, tw_failure_t *reason)
{
    if (t->ops->lose_connection_with) {
        t->ops->lose_connection_with(t, reason);
    } else {
        tw_failure_free(reason);
        t->ops->lose_connection(t);
    }
}

/* Close now, dropping what is queued; TCP peers see a reset (Twisted's
 * abortConnection).  connection_lost follows at a safe point with a
 * "connection aborted" failure. */
static inline void tw_transport_abort_connection(tw_transport_t *t)
{
    t->ops->abort_connection(t);
}

/* Half-close: send what is queued, then shut down the sending side (FIN);
 * keep reading until the peer closes.  Returns 0 or -EPIPE if closing. */
static inline int tw_transport_lose_write_connection(tw_transport_t *t)
{
    return t->ops->lose_write_connection(t);
}

/* Stop / start reading from the peer (Twisted's pauseProducing /
 * resumeProducing on a transport).  Nesting is not counted. */
static inline void tw_transport_pause_reading(tw_transport_t *t)
{
    t->ops->pause_reading(t);
}

static inline void tw_transport_resume_reading(tw_transport_t *t)
{
    t->ops->resume_reading(t);
}

/* Register a producer of data for this transport (one at a time; -EBUSY if
 * one is registered, -EPIPE if closing).  A streaming (push) producer is
 * paused when the queue passes the high water mark and resumed when it
 * drains below the low one; a pull producer's resume_producing is called
 * each time the queue drains below the low mark.  The producer is told to
 * stop when the connection goes.  The producer belongs to the caller.
 * Registering the transport's own t->as_producer makes a protocol such as
 * echo throttle itself: a peer that does not read stops being read. */
static inline int tw_transport_register_producer(tw_transport_t *t, tw_producer_t *p,
                                                 bool streaming)
{
    return t->ops->register_producer(t, p, streaming);
}

static inline void tw_transport_unregister_producer(tw_transport_t *t)
{
    t->ops->unregister_producer(t);
}

/* The peer's and our own address.  Returns 0 or -errno. */
static inline int tw_transport_peer_address(tw_transport_t *t, struct sockaddr_storage *ss,
                                            socklen_t *len)
{
    return t->ops->peer_address(t, ss, len);
}

static inline int tw_transport_host_address(tw_transport_t *t, struct sockaddr_storage *ss,
                                            socklen_t *len)
{
    return t->ops->host_address(t, ss, len);
}

/* Bytes queued and not yet sent. */
static inline size_t tw_transport_queued(const tw_transport_t *t)
{
    return t->ops->queued(t);
}

/* Water marks and the hard cap on queued bytes (defaults: low 16 KiB, high
 * 64 KiB, cap 4 MiB, TW_CAP_PAUSE).  0 keeps a value as it is. */
static inline void tw_transport_set_limits(tw_transport_t *t, size_t low, size_t high,
                                           size_t cap, tw_cap_policy_t policy)
{
    t->ops->set_limits(t, low, high, cap, policy);
}

/* TCP_NODELAY (on by default for TCP) and SO_KEEPALIVE.  -ENOTSUP on
 * transports where they mean nothing (UNIX sockets). */
static inline int tw_transport_set_nodelay(tw_transport_t *t, bool on)
{
    return t->ops->set_nodelay(t, on);
}

static inline int tw_transport_set_keepalive(tw_transport_t *t, bool on)
{
    return t->ops->set_keepalive(t, on);
}

/* The descriptor underneath, for options twine does not wrap; -1 if none.
 * Do not read, write or close it. */
static inline int tw_transport_fileno(const tw_transport_t *t)
{
    return t->ops->fileno(t);
}

#endif
