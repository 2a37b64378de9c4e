/* tw_string_transport.h -- the testing kit, part 2: a transport made of a
 * string (Twisted's StringTransport and StringTransportWithDisconnection).
 *
 * A tw_string_transport_t is a tw_transport_t with no socket: it keeps what
 * its protocol writes in a growable buffer, records every other request
 * (lose, abort, half-close, pause/resume reading, producers), and lets the
 * test play the peer: feed data whole or a byte at a time, feed EOF, drop the
 * connection with or without a failure, fill and drain the "kernel" queue so
 * that water marks pause and resume a registered producer.  It keeps the
 * semantics of the stream transport (transports/stream.c): -EPIPE after
 * lose, half-close or abort, a lose that waits for the queue to drain, cap
 * policies, the transport's own reading side as a push producer, and the
 * lifetime rules of tw_transport.h.
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. The transport belongs to the test: tw_string_transport_free frees it.
 *     It outlives its protocol, so that the test can look at it after the
 *     connection is gone.
 *  2. The transport owns its protocol from tw_string_transport_new / _alloc
 *     on (also when they fail: the protocol is then destroyed at once).  The
 *     protocol gets connection_made once; data and EOF as the test feeds
 *     them; then connection_lost exactly once, always, and last; then destroy
 *     (destroy alone if the connection was never made).  Afterwards
 *     base.protocol is NULL.
 *  3. Closing is deferred to a safe point, never done inside the call that
 *     asks for it.  A lose, abort or half-close that ends the connection
 *     only marks it `closing`; connection_lost and destroy come at the next
 *     tw_string_transport_settle() -- or, if the transport was given a
 *     reactor, from a zero-delay delayed call of that reactor (a cancellable
 *     embedded timer: tw_fake_clock_advance(c, 0) or any iteration runs it;
 *     tw_reactor_check_clean counts it while pending).  The test-driving
 *     functions below that end the connection themselves
 *     (tw_string_transport_disconnect, _free) settle at once, unless called
 *     from inside one of the transport's callbacks.
 *  4. If the protocol's factory (p->factory) is set, the connection counts
 *     in that factory's list as a socket connection does
 *     (tw_factory_connection_count, tw_factory_lose_connections) until
 *     connection_lost: the factory must outlive it.
 *  5. Reactor-thread-only, like every transport (and reactor-free when no
 *     reactor is given).  Never free a transport from inside one of its
 *     callbacks; free it before its reactor.
 */
#ifndef TW_STRING_TRANSPORT_H
#define TW_STRING_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "tw_reactor.h"
#include "tw_transport.h"

typedef struct tw_string_transport tw_string_transport_t;

/* Called after each request the protocol makes of the transport. */
typedef void (*tw_string_transport_cb)(tw_string_transport_t *t, void *arg);

struct tw_string_transport {
    tw_transport_t base; /* first: a tw_transport_t * is a tw_string_transport_t * */

    /* State, read-only for the test. */
    bool made;            /* connection_made was delivered */
    bool disconnecting;   /* lose_connection was asked (Twisted's `disconnecting`) */
    bool aborted;         /* abort_connection was asked, or the cap policy aborted */
    bool write_closed;    /* lose_write_connection was asked ... */
    bool write_shut;      /* ... and done, once the queue had drained (the FIN) */
    bool eof;             /* the test fed EOF */
    bool reading_paused;  /* pause_reading (or its own producer's pause) in effect */
    bool cap_paused;      /* reading stopped: the queue passed the cap (TW_CAP_PAUSE) */
    bool closing;         /* the connection is ending: connection_lost pending or done */
    bool lost;            /* connection_lost (if made) and destroy were delivered */
    int close_code;       /* once closing: the code of the failure it ends with; 0: clean */
    size_t queued;        /* what tw_transport_queued reports */
    size_t low, high, cap; /* 16 KiB, 64 KiB, 4 MiB unless set_limits changes them */
    tw_cap_policy_t policy;
    tw_producer_t *producer; /* the registered producer, or NULL */
    bool streaming;          /* ... is a push producer */
    bool producer_paused;    /* ... was paused by the transport */
    int nodelay, keepalive;  /* the last value set, -1 if never */
    const char *domain;      /* domain of the failures it makes ("tcp"); settable */

    /* Counters: requests the protocol made, and calls the transport made. */
    int writes, lose_calls, abort_calls, lose_write_calls;
    int pause_calls, resume_calls, register_calls, unregister_calls;
    int producer_pauses, producer_resumes, producer_stops;

    /* Private. */
    char *out;
    size_t out_len, out_cap;
    bool peer_reading;
    int depth;            /* test-driven calls into the protocol on the stack */
    tw_failure_t *reason; /* why it is closing, until settled */
    tw_failure_t *pending_reason; /* given to lose_connection_with, until closing */
    tw_timer_t timer;     /* reactor mode: settles at a safe point */
    tw_factory_t *factory;
    struct sockaddr_storage peer, host;
    socklen_t peer_len, host_len;
    tw_string_transport_cb activity_cb;
    void *activity_arg;
};

/* ---- making and freeing ------------------------------------------------ */

/* A transport for protocol p: sets p->transport, then delivers
 * connection_made.  `r` may be NULL; when given it is stored in
 * base.reactor (for protocols that schedule delayed calls) and closing
 * settles from it (rule 3).  Returns NULL when memory is exhausted (p is
 * then destroyed, connection_made never called). */
tw_string_transport_t *tw_string_transport_new(tw_reactor_t *r, tw_protocol_t *p);

/* The two halves of _new, for a test that sets addresses, limits or the
 * peer's behaviour before connection_made: alloc sets p->transport and
 * nothing else; make_connection delivers connection_made (once). */
tw_string_transport_t *tw_string_transport_alloc(tw_reactor_t *r, tw_protocol_t *p);
void tw_string_transport_make_connection(tw_string_transport_t *t);

/* End the connection cleanly if it has not ended (connection_lost(NULL),
 * destroy), then free the transport.  NULL is accepted. */
void tw_string_transport_free(tw_string_transport_t *t);

/* ---- what the protocol wrote -------------------------------------------- */

/* Everything written since the last clear (Twisted's value()): borrowed,
 * NUL-terminated, valid until the next write, clear or consume.  Stores the
 * length in *len if len is not NULL. */
static inline const char *tw_string_transport_value(const tw_string_transport_t *t,
                                                    size_t *len)
{
    if (len)
        *len = t->out_len;
    return t->out ? t->out : "";
}

static inline size_t tw_string_transport_len(const tw_string_transport_t *t)
{
    return t->out_len;
}

/* Forget the first n bytes written (all of them if n is larger); clear
 * forgets everything (Twisted's clear()). */
void tw_string_transport_consume(tw_string_transport_t *t, size_t n);

static inline void tw_string_transport_clear(tw_string_transport_t *t)
{
    tw_string_transport_consume(t, SIZE_MAX);
}

/* ---- playing the peer --------------------------------------------------- */

/* Deliver bytes to data_received: in one call (feed), one byte per call
 * (feed_bytewise, which stops at the first refusal), or a C string.
 * Returns 0; -EPIPE (nothing delivered) once the protocol asked to lose or
 * abort, after EOF, or once the connection is ending; -EAGAIN while reading
 * is paused (pause_reading, or the cap under TW_CAP_PAUSE): a socket would
 * leave the bytes in the kernel, so feed them again after resume;
 * -ENOTCONN before connection_made. */
int tw_string_transport_feed(tw_string_transport_t *t, const void *data, size_t len);
int tw_string_transport_feed_bytewise(tw_string_transport_t *t, const void *data, size_t len);

static inline int tw_string_transport_feed_str(tw_string_transport_t *t, const char *s)
{
    return tw_string_transport_feed(t, s, strlen(s));
}

/* The peer half-closed: eof_received, or when the protocol has none, a lose
 * (the stream transport's default).  If the protocol had half-closed too,
 * the connection ends cleanly (settled later, rule 3).  Returns 0, or the
 * refusals of feed. */
int tw_string_transport_feed_eof(tw_string_transport_t *t);

/* The connection is gone (a reset, the network, a peer that closed):
 * connection_lost(reason) -- borrowed, copied; NULL for a clean close --
 * then destroy, before this returns (rule 3).  What is queued is dropped and
 * a producer is told to stop.  If the connection was already ending, it
 * ends as it was going to (the earlier reason wins).  Idempotent. */
void tw_string_transport_disconnect(tw_string_transport_t *t, const tw_failure_t *reason);

/* Finish a pending close at this safe point: stop the producer, deliver
 * connection_lost (if made) then destroy.  Returns 1 if it did, 0 if there
 * was nothing to do or it was called from inside one of the transport's
 * own calls into the protocol (the close then waits for the next settle). */
int tw_string_transport_settle(tw_string_transport_t *t);

/* The peer's reading.  By default it reads everything at once: writes are
 * captured but queued() stays 0.  With set_peer_reading(t, false) every
 * write adds to queued() until drain(): a streaming producer is paused
 * above the high water mark, reading stops past the cap (TW_CAP_PAUSE). */
static inline void tw_string_transport_set_peer_reading(tw_string_transport_t *t,
                                                        bool reading)
{
    t->peer_reading = reading;
}

/* The peer read n queued bytes (SIZE_MAX: all); then, as the stream
 * transport does when the socket is writable again: at or below the low
 * mark, reading resumes after a cap pause, a paused push producer is
 * resumed and a pull producer is asked for more (drain(t, 0) asks a pull
 * producer whenever the queue is low); when the queue is empty a pending
 * lose ends the connection and a pending half-close is done. */
void tw_string_transport_drain(tw_string_transport_t *t, size_t n);

/* Make queued() n at once: above the current size as a write would (pause
 * above high), below as drain would (resume at or below low). */
void tw_string_transport_set_queued(tw_string_transport_t *t, size_t n);

/* The addresses tw_transport_peer_address / _host_address report.  By
 * default 192.168.1.1:54321 (peer) and 10.0.0.1:12345 (host), as Twisted's.
 * Returns 0, or -EINVAL when len is 0 or larger than a sockaddr_storage. */
int tw_string_transport_set_peer_address(tw_string_transport_t *t, const struct sockaddr *sa,
                                         socklen_t len);
int tw_string_transport_set_host_address(tw_string_transport_t *t, const struct sockaddr *sa,
                                         socklen_t len);

/* Whether the transport would read now: made, not paused, no EOF, not
 * losing or closing. */
static inline bool tw_string_transport_reading(const tw_string_transport_t *t)
{
    return t->made && !(t->reading_paused || t->cap_paused || t->eof || t->disconnecting ||
                        t->closing);
}

/* Call cb(t, arg) after each request the protocol makes (write, lose,
 * abort, half-close, pause/resume reading, producer registration); NULL
 * removes it.  While a callback is set, closing does not settle from the
 * reactor: the callback's owner settles (tw_loopback is built on this). */
static inline void tw_string_transport_on_activity(tw_string_transport_t *t,
                                                   tw_string_transport_cb cb, void *arg)
{
    t->activity_cb = cb;
    t->activity_arg = arg;
}

#endif
