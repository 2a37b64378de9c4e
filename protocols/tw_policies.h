/* tw_policies.h -- protocol policies: factories that wrap another factory and
 * put a layer between each connection and its protocol (Twisted's
 * twisted.protocols.policies).
 *
 *   wrapping factory   the layer itself (WrappingFactory, ProtocolWrapper),
 *                      with hooks, so that a policy is a few small functions
 *   timeout            close a connection idle for N seconds (TimeoutFactory),
 *                      and tw_idle_timer_t for a protocol of its own
 *                      (TimeoutMixin)
 *   limits             refuse connections beyond a total and/or a number per
 *                      peer address (LimitTotalConnectionsFactory,
 *                      LimitConnectionsByPeer)
 *   throttling         read and write bandwidth limits, a connection limit
 *                      (ThrottlingFactory)
 *   traffic logging    every event of every connection, to a FILE * or
 *                      through tw_log (TrafficLoggingFactory)
 *
 * How the layer works.  For each connection, a wrapping factory asks the
 * factory it wraps (the *inner* factory) for a protocol and returns a
 * *wrapper* in its place.  The wrapper is a protocol to the real transport
 * and a transport to the inner protocol: every request of the inner protocol
 * (write, lose, abort, half-close, pause, producers, addresses, limits)
 * goes on to the real transport, every event of the real transport goes on
 * to the inner protocol, and the policy's hooks see both on the way.
 * Policies stack: the inner factory may itself be a wrapping factory.
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. A factory here belongs to the caller, who initialises it with its
 *     _init function and keeps it alive (and, except where a field says so,
 *     unchanged) while a listener, connector or connection uses it, as for
 *     every tw_factory_t.  The inner factory must live as long.  None of them
 *     holds memory while it has no connections: there is nothing to free.
 *  2. The real transport owns the wrapper, as it owns any protocol; the
 *     wrapper owns the inner protocol.  The inner protocol gets exactly the
 *     callbacks tw_transport.h promises: connection_made once, then data and
 *     eof_received, then connection_lost exactly once and last, then
 *     destroy -- which the wrapper's destroy calls (destroy alone when the
 *     connection was never made).  The inner protocol's `transport` is the
 *     wrapper's transport; its `factory` is the inner factory, and the
 *     connection counts among the inner factory's connections
 *     (tw_factory_connection_count, tw_factory_lose_connections) as well as
 *     among the wrapping factory's (which hold the real transports).
 *  3. The wrapping factory passes start/stop (tw__factory_use semantics:
 *     the inner factory's start runs when its first user starts) and the
 *     client callbacks (started_connecting, connection_failed,
 *     connection_lost) on to the inner factory, so a wrapped reconnecting
 *     factory still reconnects.
 *  4. Reactor-thread-only, like everything attached to a transport.  Hooks
 *     and callbacks run in the reactor thread; what they are given is
 *     borrowed for the call.
 *  5. A connection a policy refuses (a limit) makes build_protocol return
 *     NULL -- a listener then closes the socket at once, a connector reports
 *     -ECONNREFUSED -- unless the factory has a refusal message: the
 *     connection is then accepted, sent the message and closed, and the
 *     inner factory never hears of it.  When the inner factory refuses (its
 *     build_protocol returns NULL), so does the wrapping factory.
 */
#ifndef TW_POLICIES_H
#define TW_POLICIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tw_log.h"
#include "tw_reactor.h"
#include "tw_transport.h"

typedef struct tw_wrapper tw_wrapper_t;
typedef struct tw_wrapping_factory tw_wrapping_factory_t;

/* ---- the wrapping layer ------------------------------------------------ */

/* Requests of the inner protocol, as the `request` hook sees them. */
typedef enum tw_wrapper_request {
    TW_WRAPPER_LOSE = 0,       /* tw_transport_lose_connection (or _with) */
    TW_WRAPPER_ABORT = 1,      /* tw_transport_abort_connection */
    TW_WRAPPER_LOSE_WRITE = 2, /* tw_transport_lose_write_connection */
} tw_wrapper_request_t;

/* A policy: hooks called by every wrapper its factory builds.  All are
 * optional; a NULL table (or all NULL) makes a plain pass-through.  None is
 * called for a refused connection. */
typedef struct tw_wrapper_ops {
    /* Bytes of per-connection state the wrapper allocates with itself,
     * zeroed: w->state. */
    size_t state_size;
    /* A connection from `addr` (NULL when the caller had none) is about to
     * be built, before the inner factory is asked.  Return 0 to accept it,
     * anything else to refuse it (rule 5).  When it returns 0, `release` is
     * called exactly once later. */
    int (*admit)(tw_wrapper_t *w, const struct sockaddr *addr, socklen_t addrlen);
    /* The connection is made: w->real is set; called before the inner
     * protocol's connection_made. */
    void (*made)(tw_wrapper_t *w);
    /* Bytes arrived, before the inner protocol's data_received gets them. */
    void (*data)(tw_wrapper_t *w, const void *data, size_t len);
    /* The peer half-closed, before the inner protocol hears of it. */
    void (*eof)(tw_wrapper_t *w);
    /* The inner protocol writes.  Replaces the forwarding: the hook sends
     * (tw_wrapper_write), holds (tw_wrapper_hold) or refuses the bytes
     * itself, and returns what tw_transport_writev would.  Not called once
     * the inner protocol asked to lose, abort or half-close (those writes
     * fail with -EPIPE first). */
    int (*write)(tw_wrapper_t *w, const struct iovec *iov, int iovcnt);
    /* The inner protocol asked to lose, abort or half-close (every call,
     * before it is acted on). */
    void (*request)(tw_wrapper_t *w, tw_wrapper_request_t what);
    /* The connection is gone: before the inner protocol's connection_lost.
     * w->real is still set (do not write to it). */
    void (*lost)(tw_wrapper_t *w, const tw_failure_t *reason);
    /* The wrapper is being freed (after `lost`, or instead of `made` and
     * `lost` when the connection was never made): undo what admit did. */
    void (*release)(tw_wrapper_t *w);
} tw_wrapper_ops_t;

/* Embed first in a policy's factory, or use as it is (a pass-through). */
struct tw_wrapping_factory {
    tw_factory_t base;        /* first: a tw_wrapping_factory_t * is a tw_factory_t * */
    tw_factory_t *inner;      /* the factory wrapped */
    const tw_wrapper_ops_t *ops;
    void *arg;                /* the policy's own, for its hooks (w->factory->arg) */
    const char *refusal;      /* borrowed: see tw_wrapping_factory_set_refusal */
    size_t refusal_len;
    size_t hold_limit;        /* held bytes past which reading pauses (4 MiB) */
};

/* One connection's wrapper.  The public fields are read-only. */
struct tw_wrapper {
    tw_protocol_t protocol;   /* what the real transport sees */
    tw_transport_t transport; /* what the inner protocol sees */
    tw_wrapping_factory_t *factory;
    tw_protocol_t *inner;     /* the inner protocol; NULL for a refused connection */
    tw_transport_t *real;     /* the real transport, from connection_made until the
                               * inner protocol's connection_lost returns; else NULL */
    void *state;              /* ops->state_size bytes, zeroed; NULL if 0 */

    /* Private. */
    unsigned flags;
    unsigned pause_bits;      /* why reading is paused */
    tw_producer_t proxy;      /* registered on the real transport for the inner's */
    tw_producer_t *producer;  /* the inner protocol's producer, or NULL */
    bool streaming, real_paused, policy_paused, pull_pending, prod_paused;
    char *held;               /* bytes held back by tw_wrapper_hold */
    size_t held_off, held_len, held_cap;
    tw_failure_t *pending_reason; /* for a lose that waits for held bytes */
};

/* Make `f` a wrapping factory around `inner` with the policy `ops` (NULL: a
 * pass-through) and `arg` (stored in f->arg).  Zeroes f first.  Returns 0,
 * or -EINVAL when inner (or its build_protocol) is missing. */
int tw_wrapping_factory_init(tw_wrapping_factory_t *f, tw_factory_t *inner,
                             const tw_wrapper_ops_t *ops, void *arg);

/* Accept refused connections, send them `msg` (borrowed: it must outlive
 * the factory's connections; NULL: refuse by closing at once) and close
 * them (rule 5). */
void tw_wrapping_factory_set_refusal(tw_wrapping_factory_t *f, const char *msg);

/* The wrapper whose inner-facing transport is `t`, or NULL when t is not a
 * wrapper's: how an inner protocol reaches the policy around it.  Wrappers
 * stack: tw_wrapper_of(w->real) is the next one out. */
tw_wrapper_t *tw_wrapper_of(const tw_transport_t *t);

/* For hooks.  Send bytes to the real transport as they are: the `write`
 * hook's way of passing a write on.  Returns what tw_transport_writev
 * returns; -EPIPE when the connection is not (or no longer) there. */
int tw_wrapper_write(tw_wrapper_t *w, const struct iovec *iov, int iovcnt);

/* For hooks.  Hold bytes in the wrapper instead of sending them (a copy is
 * kept); tw_wrapper_release sends them later, in order.  A policy holding
 * bytes must hold every later write too until they are released.  While
 * bytes are held, tw_transport_queued counts them, and a lose or half-close
 * of the inner protocol waits for them to be released; an abort drops them.
 * Past factory->hold_limit held bytes, the connection stops being read until
 * they are released below it (bounded memory).  Returns 0 or -ENOMEM. */
int tw_wrapper_hold(tw_wrapper_t *w, const struct iovec *iov, int iovcnt);

/* Send up to `max` held bytes to the real transport; when none is left, a
 * waiting lose or half-close goes on.  Returns the bytes sent. */
size_t tw_wrapper_release(tw_wrapper_t *w, size_t max);

/* Bytes held. */
static inline size_t tw_wrapper_held(const tw_wrapper_t *w)
{
    return w->held_len;
}

/* For hooks.  Stop / start reading from the peer for the policy's own
 * reasons, independently of the inner protocol's pause_reading: the real
 * transport reads only when neither wants it paused.  Not counted. */
void tw_wrapper_pause_reading(tw_wrapper_t *w);
void tw_wrapper_resume_reading(tw_wrapper_t *w);

/* For hooks.  Pause / resume the inner protocol's producer for the policy's
 * own reasons (Twisted's throttleWrites): a push producer is paused while
 * either the policy or the real transport's water marks want it paused; a
 * pull producer is not asked for more until the policy resumes it.  Applies
 * to a producer registered later too.  Not counted. */
void tw_wrapper_pause_producer(tw_wrapper_t *w);
void tw_wrapper_resume_producer(tw_wrapper_t *w);

/* ---- idle timeouts ----------------------------------------------------- */

/* Twisted's TimeoutMixin, for a protocol that manages its own timeout:
 * embed one, call tw_idle_timer_reset on activity. */
typedef struct tw_idle_timer tw_idle_timer_t;
typedef void (*tw_idle_cb)(tw_idle_timer_t *it, void *arg);

struct tw_idle_timer {
    tw_timer_t timer; /* private */
    tw_time_t timeout; /* private: 0 when none */
    tw_idle_cb cb;    /* private */
    void *arg;        /* private */
};

/* Prepare `it` on reactor r; cb(it, arg) is Twisted's timeoutConnection.
 * No timeout is set yet. */
void tw_idle_timer_init(tw_idle_timer_t *it, tw_reactor_t *r, tw_idle_cb cb, void *arg);

/* Twisted's setTimeout: make the timeout `timeout` (0: none) and return the
 * previous one.  A running countdown restarts from now with the new value
 * (or stops, for 0); with none running, one starts -- also after an earlier
 * one fired. */
tw_time_t tw_idle_timer_set_timeout(tw_idle_timer_t *it, tw_time_t timeout);

/* Twisted's resetTimeout: restart a running countdown from now.  Does
 * nothing when none is running (no timeout set, or it already fired). */
void tw_idle_timer_reset(tw_idle_timer_t *it);

/* Stop for good (set_timeout(it, 0)): call it before the memory goes, e.g.
 * from connection_lost. */
static inline void tw_idle_timer_cancel(tw_idle_timer_t *it)
{
    tw_idle_timer_set_timeout(it, 0);
}

/* Whether a countdown is running. */
static inline bool tw_idle_timer_active(const tw_idle_timer_t *it)
{
    return tw_timer_active(&it->timer);
}

/* A ready-made callback (TimeoutMixin's default timeoutConnection): `arg`
 * is a tw_protocol_t *, whose transport is lost (after flushing) with a
 * failure in domain "policy", code -ETIMEDOUT, "idle for N s". */
void tw_idle_timer_lose_connection(tw_idle_timer_t *it, void *protocol);

/* The timeout factory (Twisted's TimeoutFactory): a connection with no
 * traffic either way -- nothing received, nothing written by its protocol --
 * for `timeout` is lost (after flushing) with a failure in domain "policy",
 * code -ETIMEDOUT, message "idle for N s", which its protocol's
 * connection_lost gets.  If it is still open one more `timeout` later (a peer
 * that does not read what is queued), it is aborted. */
typedef struct tw_timeout_factory {
    tw_wrapping_factory_t base; /* first */
    tw_reactor_t *reactor;
    tw_time_t timeout;          /* for new connections; may be changed at any time */
} tw_timeout_factory_t;

/* Returns 0, or -EINVAL (no inner factory or reactor, timeout <= 0). */
int tw_timeout_factory_init(tw_timeout_factory_t *f, tw_factory_t *inner, tw_reactor_t *r,
                            tw_time_t timeout);

/* From an inner protocol: change its own connection's timeout (Twisted's
 * TimeoutProtocol.setTimeout / cancelTimeout), `t` being its transport; 0
 * turns it off.  The countdown restarts from now.  Returns 0, or -ENOENT
 * when no timeout factory wraps the connection. */
int tw_timeout_set(tw_transport_t *t, tw_time_t timeout);

/* ---- connection limits ------------------------------------------------- */

/* Twisted's LimitTotalConnectionsFactory and LimitConnectionsByPeer in one
 * factory: a connection beyond max_total open connections, or beyond
 * max_per_peer open connections from the same peer address, is refused
 * (rule 5; with `message`, it is sent first).  Peers are counted by IP
 * address (IPv4, IPv6; an IPv4-mapped IPv6 address counts as its IPv4
 * address); every UNIX-socket peer, and a connection built with no address,
 * count as one peer.  A connection stops counting when it is lost (its
 * wrapper is released).  0 means no limit. */
typedef struct tw_limit_opts {
    int max_total;
    int max_per_peer;
    const char *message; /* borrowed; NULL: close refused connections at once */
} tw_limit_opts_t;

typedef struct tw_limit_slot tw_limit_slot_t; /* private */

typedef struct tw_limit_factory {
    tw_wrapping_factory_t base; /* first */
    tw_limit_opts_t opts;
    int count;                  /* read-only: open connections admitted */
    int refused;                /* read-only: connections refused so far */
    tw_limit_slot_t *slots;     /* private: peer counts, while there are connections */
    size_t nslots, used;        /* private */
} tw_limit_factory_t;

/* Returns 0, or -EINVAL (no inner factory, a negative limit). */
int tw_limit_factory_init(tw_limit_factory_t *f, tw_factory_t *inner, const tw_limit_opts_t *o);

/* Open connections counted for the peer at `addr` (len bytes; NULL: the
 * "no address" peer). */
int tw_limit_factory_peer_count(const tw_limit_factory_t *f, const struct sockaddr *addr,
                                socklen_t len);

/* ---- throttling -------------------------------------------------------- */

/* Twisted's ThrottlingFactory.  Limits hold for all the factory's
 * connections together, counted in windows of one second on the reactor's
 * clock, the first starting with the first connection:
 *
 *  - reading: once the bytes read in a window reach read_limit, every
 *    connection stops being read.  At the end of each window the limit is
 *    paid off the count (count = max(0, count - read_limit)), and reading
 *    resumes when what is left is below the limit: a burst that overshoots
 *    is paid for in later windows, so over n windows at most
 *    n * read_limit bytes plus one read are taken.
 *  - writing: at most write_limit bytes written by the protocols reach the
 *    transports in a window, exactly.  Past it, later writes are held in the
 *    wrapper (tw_wrapper_hold) and every registered producer is paused (as
 *    Twisted's throttleWrites does); at each window's end up to write_limit
 *    held bytes are sent, the connections taking turns, and once none is
 *    held and the window is not used up, producers are resumed.  A
 *    connection holding more than base.hold_limit bytes (4 MiB) stops being
 *    read until they drain.
 *  - max_connections: refused beyond it (rule 5).
 * 0 means no limit.  Changing the limits between windows is allowed. */
typedef struct tw_throttle_opts {
    size_t read_limit;   /* bytes per second */
    size_t write_limit;  /* bytes per second */
    int max_connections;
} tw_throttle_opts_t;

typedef struct tw_throttle_conn tw_throttle_conn_t; /* private */

typedef struct tw_throttling_factory {
    tw_wrapping_factory_t base; /* first */
    tw_reactor_t *reactor;
    tw_throttle_opts_t opts;
    int count;                  /* read-only: open connections */
    size_t read_count;          /* read-only: read this window, with the debt carried */
    size_t write_count;         /* read-only: written this window */
    bool reads_throttled;       /* read-only */
    bool writes_throttled;      /* read-only */
    tw_timer_t window;          /* private */
    tw_time_t window_end;       /* private */
    tw_throttle_conn_t *head, *tail; /* private: the open connections */
} tw_throttling_factory_t;

/* Returns 0, or -EINVAL (no inner factory or reactor, a negative limit). */
int tw_throttling_factory_init(tw_throttling_factory_t *f, tw_factory_t *inner,
                               tw_reactor_t *r, const tw_throttle_opts_t *o);

/* ---- traffic logging --------------------------------------------------- */

/* Twisted's TrafficLoggingFactory: one line per event of each connection,
 * connections numbered from 1 in the order they are built:
 *
 *   conn 1: made, peer 192.168.1.1:54321
 *   conn 1: in 6 "hello\n"                data received (escaped)
 *   conn 1: out 6 "HELLO\n"               data the protocol wrote
 *   conn 1: eof                           the peer half-closed
 *   conn 1: lose_connection               also abort_connection,
 *                                         lose_write_connection
 *   conn 1: lost (clean)                  or "lost: DOMAIN CODE: MESSAGE"
 *
 * Bytes are escaped as C string literals do (\n, \r, \t, \\, \", \xHH for
 * the rest outside printing ASCII).  With `hexdump`, a data event is the
 * line "conn 1: in 6" followed by one line per 16 bytes: two spaces, the
 * offset in 4 hex digits, two spaces, each byte as 2 hex digits and a space
 * (padded to 16 bytes' width), then the bytes between bars with '.' for
 * those outside printing ASCII:
 *   "  0000  68 65 6c 6c 6f 0a" + 30 spaces + " |hello.|"
 * Past `max_bytes` (0: no limit) the data of one event is cut, and
 * "... (N more)" ends it (a line "  ... (N more)" with hexdump).  Peers print
 * as 1.2.3.4:5, [::1]:5, "unix /path", "unix @abstract" or "unix". */
typedef struct tw_traffic_log_opts {
    FILE *file;           /* each line written and flushed; NULL: through tw_log */
    tw_log_level_t level; /* with tw_log: the level (domain "traffic") */
    size_t max_bytes;
    bool hexdump;
} tw_traffic_log_opts_t;

typedef struct tw_traffic_log_factory {
    tw_wrapping_factory_t base; /* first */
    tw_traffic_log_opts_t opts;
    unsigned counter;           /* the last connection's number */
} tw_traffic_log_factory_t;

/* `o` is copied; NULL: through tw_log at TW_LOG_INFO, no limit, escaped.
 * The FILE belongs to the caller and must outlive the connections.  Returns
 * 0, or -EINVAL (no inner factory). */
int tw_traffic_log_factory_init(tw_traffic_log_factory_t *f, tw_factory_t *inner,
                                const tw_traffic_log_opts_t *o);

/* Number connections from 1 again (Twisted's resetCounter). */
static inline void tw_traffic_log_factory_reset_counter(tw_traffic_log_factory_t *f)
{
    f->counter = 0;
}

#endif
