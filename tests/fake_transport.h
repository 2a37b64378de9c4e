/* fake_transport.h -- an in-memory transport for protocol tests (Twisted's
 * StringTransport, minimal).  Test-only code: never installed.
 *
 * The fake implements tw_transport_ops_t with no socket and no reactor: it
 * keeps what the protocol writes in a growable buffer and counts every other
 * request, so that a test can drive a protocol byte by byte and look at what
 * it did.  Nothing happens behind the test's back: the test delivers data
 * (fake_feed), EOF (fake_eof), the end of the connection (fake_lose) and the
 * draining of the write queue (fake_drain).
 *
 * Lifetime, as for a real transport (tw_transport.h):
 *  1. fake_transport_new sets protocol->transport and calls connection_made.
 *  2. fake_lose delivers connection_lost exactly once, then destroy (destroy
 *     alone if connection_made never ran); after it the fake no longer knows
 *     the protocol (later feeds return -EPIPE).
 *  3. fake_transport_free calls fake_lose(ft, NULL) if the test did not, then
 *     frees the fake.  The protocol is the test's until destroy runs, and
 *     belongs to nobody after it if its ops have no destroy.
 *
 * The write queue is simulated: when `queue_writes` is set, written bytes
 * count towards queued() until fake_drain, as if the peer did not read.  A
 * streaming producer is paused when a write takes queued() above `high`, and
 * resumed by fake_drain once queued() is at or below `low`; a pull producer's
 * resume_producing is called by every fake_drain that ends at or below `low`,
 * and once as it is registered (as Twisted does) unless
 * `no_resume_on_register` is set.
 */
#ifndef FAKE_TRANSPORT_H
#define FAKE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_transport.h"

typedef struct fake_transport {
    tw_transport_t base; /* base.protocol is NULL once the protocol is destroyed */

    /* What the protocol wrote, in order (NUL-terminated for convenience). */
    char *out;
    size_t out_len, out_cap;

    /* Settings the test may change at any time. */
    bool queue_writes;          /* writes add to `queued` (a peer that does not read) */
    bool no_resume_on_register; /* do not ask a new pull producer for a first chunk */
    int write_rc;               /* if non-zero, writev refuses with this code */
    size_t low, high, cap;      /* water marks (16 KiB / 64 KiB / 4 MiB by default) */

    /* State. */
    size_t queued;        /* what queued() reports */
    bool reading_paused;  /* pause_reading (or the own producer's pause) in effect */
    bool reading_stopped; /* the transport's own producer was told to stop */
    bool disconnecting;   /* lose_connection or abort_connection was called */
    bool write_closed;    /* lose_write_connection was called */
    bool made;            /* connection_made was called */
    bool eof;             /* fake_eof delivered EOF */
    bool lost;            /* fake_lose ran */
    tw_producer_t *producer; /* the registered producer, or NULL */
    bool streaming;          /* ... and whether it is a push producer */
    bool producer_paused;    /* a push producer is paused by the fake */

    /* Counters: how often the protocol asked for each thing. */
    int writes, lose_calls, abort_calls, lose_write_calls;
    int pause_calls, resume_calls, register_calls, unregister_calls;
    int producer_pauses, producer_resumes, producer_stops; /* calls the fake made */
    int nodelay, keepalive; /* last value set, or -1 */
} fake_transport_t;

/* A fake transport for `p` on reactor `r` (NULL is fine: the fake needs none;
 * it is only stored in base.reactor for protocols that schedule timers).
 * Sets p->transport, then calls connection_made.  Returns NULL if memory is
 * exhausted (connection_made is then not called). */
fake_transport_t *fake_transport_new(tw_reactor_t *r, tw_protocol_t *p);

/* The two halves of fake_transport_new, for a test that changes settings
 * before connection_made: alloc sets p->transport and nothing else;
 * fake_connection_made calls connection_made (once). */
fake_transport_t *fake_transport_alloc(tw_reactor_t *r, tw_protocol_t *p);
void fake_connection_made(fake_transport_t *ft);

/* fake_lose(ft, NULL) if not done yet, then free the fake and its buffer. */
void fake_transport_free(fake_transport_t *ft);

/* Deliver `len` bytes to data_received in one call (fake_feed) or one byte
 * per call (fake_feed_bytewise).  Returns 0; -EPIPE (nothing delivered) after
 * lose, abort, EOF or fake_lose; -EAGAIN while reading is paused (a real
 * transport would leave the bytes in the kernel).  The bytewise feed stops at
 * the first refusal and returns it. */
int fake_feed(fake_transport_t *ft, const void *data, size_t len);
int fake_feed_bytewise(fake_transport_t *ft, const void *data, size_t len);
int fake_feed_str(fake_transport_t *ft, const char *s);

/* The peer half-closed: eof_received, or, when the protocol has none,
 * lose_connection (the transport's default).  Returns -EPIPE if already
 * closing, else 0. */
int fake_eof(fake_transport_t *ft);

/* The connection is gone: stop the registered producer (if any), then
 * connection_lost(reason) (borrowed; NULL for a clean close; skipped if the
 * connection was never made), then destroy.
 * Once only: later calls do nothing. */
void fake_lose(fake_transport_t *ft, const tw_failure_t *reason);

/* The peer read `n` queued bytes (SIZE_MAX: all of them); then resume the
 * producer as described at the top. */
void fake_drain(fake_transport_t *ft, size_t n);

/* The captured output (borrowed; valid until the next write or fake_clear)
 * and its length; fake_clear forgets it (Twisted's clear()). */
const char *fake_output(const fake_transport_t *ft, size_t *len);
void fake_clear(fake_transport_t *ft);

#endif
