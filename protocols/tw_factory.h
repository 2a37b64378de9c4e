/* tw_factory.h -- ready-made client factories: a plain one built from a
 * protocol constructor and a few hooks, and a reconnecting one with
 * exponential back-off (Twisted's ClientFactory and
 * ReconnectingClientFactory).
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. A factory belongs to the caller, who initialises it with
 *     tw_client_factory_init / tw_reconnecting_factory_init and keeps it
 *     alive while a listener, connector or connection uses it (as for every
 *     tw_factory_t; tw_transport.h).  Neither holds memory of its own: there
 *     is nothing to free.
 *  2. Protocols come from hooks->build(hooks->arg), one per connection; they
 *     are freed by their own destroy op, as always.  NULL refuses the
 *     connection (a connector then reports it as failed, -ECONNREFUSED).
 *  3. A reconnecting factory serves one connector at a time: the one passed
 *     to its callbacks is the one it retries, from a timer embedded in the
 *     factory.  Before the factory's memory goes, either free the connector
 *     (when the last listener or connector using the factory lets go of it,
 *     a pending retry is cancelled and the connector forgotten) or call
 *     tw_reconnecting_factory_stop_trying.  The hooks may free the connector
 *     (nothing is retried then) but must not reconnect it themselves.
 *  4. Reactor-thread-only, like everything attached to a transport.  Hooks
 *     run in the reactor thread; a `reason` they get is borrowed for the call
 *     (tw_failure_copy keeps it).
 */
#ifndef TW_FACTORY_H
#define TW_FACTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "tw_reactor.h"
#include "tw_transport.h"

/* What the user supplies instead of a vtable.  Only `build` is required. */
typedef struct tw_client_hooks {
    /* A new protocol for a connection that was just made, or NULL. */
    tw_protocol_t *(*build)(void *arg);
    /* A connection attempt began (the first one, or a retry). */
    void (*started_connecting)(tw_connector_t *c, void *arg);
    /* An attempt failed (domain "tcp" or "unix"; -ECANCELED after
     * tw_connector_stop_connecting or stop_trying). */
    void (*connection_failed)(tw_connector_t *c, const tw_failure_t *reason, void *arg);
    /* A connection ended, after its protocol's connection_lost (reason NULL
     * for a clean close). */
    void (*connection_lost)(tw_connector_t *c, const tw_failure_t *reason, void *arg);
    /* Reconnecting factory only: max_retries was passed.  `reason` is the
     * last failure (NULL if that was a clean close).  Nothing more is tried;
     * the hook may free the connector. */
    void (*gave_up)(tw_connector_t *c, const tw_failure_t *reason, void *arg);
    void *arg; /* passed to every hook */
} tw_client_hooks_t;

/* ---- a plain client factory ------------------------------------------- */

typedef struct tw_client_factory {
    tw_factory_t base; /* first: a tw_client_factory_t * is a tw_factory_t * */
    tw_client_hooks_t hooks;
} tw_client_factory_t;

/* Make `f` a factory calling `hooks` (copied; gave_up is ignored).  Returns
 * 0, or -EINVAL when hooks or hooks->build is NULL. */
int tw_client_factory_init(tw_client_factory_t *f, const tw_client_hooks_t *hooks);

/* ---- a reconnecting client factory ------------------------------------ */

/* The back-off, in seconds (Twisted's attributes and defaults).  After each
 * failure or lost connection: delay = min(delay * factor, max_delay), then
 * delay = normal(delay, delay * jitter) -- so the first retry waits about
 * initial_delay * factor, and a jittered delay may pass max_delay a little,
 * exactly as in Twisted.  A draw below zero (only likely with a large
 * jitter) keeps the unjittered delay instead.  max_retries: consecutive
 * retries before giving up, 0 for no limit. */
typedef struct tw_reconnect_opts {
    double initial_delay;
    double factor;
    double jitter;
    double max_delay;
    int max_retries;
    /* false (the default): the delay and retry count are reset as soon as a
     * connection is made (from build_protocol), so each outage starts again
     * from initial_delay.  true: Twisted's way -- nothing resets them until
     * the user calls tw_reconnecting_factory_reset_delay, e.g. once a
     * handshake succeeds, so that a server that accepts and drops at once
     * keeps being retried with a growing delay. */
    bool manual_reset;
} tw_reconnect_opts_t;

#define TW_RECONNECT_DEFAULTS                                                  \
    ((tw_reconnect_opts_t){ .initial_delay = 1.0, .factor = 2.7182818284590451, \
                            .jitter = 0.11962656472, .max_delay = 3600.0,      \
                            .max_retries = 0, .manual_reset = false })

/* Embed first or use as is.  The fields marked private are the factory's. */
typedef struct tw_reconnecting_factory {
    tw_factory_t base; /* first */
    tw_client_hooks_t hooks;
    tw_reconnect_opts_t opts;
    double delay;              /* private: see tw_reconnecting_factory_delay */
    int retries;               /* private */
    bool trying;               /* private: Twisted's continueTrying */
    tw_connector_t *connector; /* private: the connector to retry, or NULL */
    tw_timer_t timer;          /* private: the pending retry */
    uint64_t rng;              /* private: xorshift64* state */
} tw_reconnecting_factory_t;

/* Make `f` a reconnecting factory on reactor r with `hooks` and `opts`
 * (both copied; opts NULL: TW_RECONNECT_DEFAULTS).  The jitter's random
 * generator is seeded from the clock, the process and the factory's address;
 * see tw_reconnecting_factory_seed.  Connect it with tw_tcp_connect or
 * tw_unix_connect as any factory.  Returns 0, or -EINVAL (no build hook; a
 * negative or non-finite option, or factor <= 0). */
int tw_reconnecting_factory_init(tw_reconnecting_factory_t *f, tw_reactor_t *r,
                                 const tw_client_hooks_t *hooks,
                                 const tw_reconnect_opts_t *opts);

/* Seed the jitter's generator: the same seed gives the same delays. */
void tw_reconnecting_factory_seed(tw_reconnecting_factory_t *f, uint64_t seed);

/* Stop for good (Twisted's stopTrying): cancel a pending retry, cancel an
 * attempt in progress (the connection_failed hook runs, inside this call,
 * with -ECANCELED), and retry nothing after.  A connection already made is
 * left alone; when it ends it is not retried. */
void tw_reconnecting_factory_stop_trying(tw_reconnecting_factory_t *f);

/* Twisted's resetDelay: delay back to initial_delay, retry count to 0, and
 * trying again (undoes stop_trying and giving up for later failures).  A
 * retry already pending is not cancelled.  Called for you when a connection
 * is made unless opts.manual_reset. */
void tw_reconnecting_factory_reset_delay(tw_reconnecting_factory_t *f);

/* Twisted's retry: have `c` (NULL: the last connector seen) connect again
 * after the next delay.  Returns 0 when a retry is scheduled; -EINVAL with
 * no connector; -ECANCELED when not trying (after stop_trying), or when
 * max_retries is passed (the factory gives up: gave_up runs, reason NULL). */
int tw_reconnecting_factory_retry(tw_reconnecting_factory_t *f, tw_connector_t *c);

/* The back-off step alone: count one retry and compute its delay, as retry
 * does before scheduling.  Returns the delay in seconds, or -1.0 (and
 * changes nothing) when that retry would pass max_retries. */
double tw_reconnecting_factory_next_delay(tw_reconnecting_factory_t *f);

/* Inspection: the current delay in seconds (the last one scheduled, or
 * initial_delay after a reset), retries since the last reset, whether the
 * factory still retries, and whether a retry is pending. */
double tw_reconnecting_factory_delay(const tw_reconnecting_factory_t *f);
int tw_reconnecting_factory_retries(const tw_reconnecting_factory_t *f);
bool tw_reconnecting_factory_trying(const tw_reconnecting_factory_t *f);
bool tw_reconnecting_factory_pending(const tw_reconnecting_factory_t *f);

#endif
