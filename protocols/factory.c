/* factory.c -- the plain and the reconnecting client factory (see
 * tw_factory.h).
 *
 * The jitter is a normal variate from Box-Muller over an xorshift64*
 * generator.  libtwine does not link libm (static and shared users link
 * with -ltwine alone), so the logarithm, square root and cosine it needs are
 * computed here, to double precision, over the small ranges Box-Muller
 * uses. */
#define _GNU_SOURCE
#include "tw_factory.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tw_log.h"
#include "tw_tcp.h"

#define LOG_DOMAIN "reconnect"

/* ---- the plain client factory ----------------------------------------- */

static tw_protocol_t *factory_build(tw_factory_t *base, const struct sockaddr *addr,
                                    socklen_t addrlen)
{
    (void)addr, (void)addrlen;
    tw_client_factory_t *f = TW_CONTAINER_OF(base, tw_client_factory_t, base);
    return f->hooks.build(f->hooks.arg);
}

static void factory_started(tw_factory_t *base, tw_connector_t *c)
{
    tw_client_factory_t *f = TW_CONTAINER_OF(base, tw_client_factory_t, base);
    if (f->hooks.started_connecting)
        f->hooks.started_connecting(c, f->hooks.arg);
}

static void factory_failed(tw_factory_t *base, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_client_factory_t *f = TW_CONTAINER_OF(base, tw_client_factory_t, base);
    if (f->hooks.connection_failed)
        f->hooks.connection_failed(c, reason, f->hooks.arg);
}

static void factory_lost(tw_factory_t *base, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_client_factory_t *f = TW_CONTAINER_OF(base, tw_client_factory_t, base);
    if (f->hooks.connection_lost)
        f->hooks.connection_lost(c, reason, f->hooks.arg);
}

static const tw_factory_ops_t factory_ops = {
    .build_protocol = factory_build,
    .started_connecting = factory_started,
    .connection_failed = factory_failed,
    .connection_lost = factory_lost,
};

int tw_client_factory_init(tw_client_factory_t *f, const tw_client_hooks_t *hooks)
{
    if (!f || !hooks || !hooks->build)
        return -EINVAL;
    memset(f, 0, sizeof *f);
    f->base.ops = &factory_ops;
    f->hooks = *hooks;
    f->hooks.gave_up = NULL;
    return 0;
}

/* ---- random numbers --------------------------------------------------- */

static uint64_t reconnect_splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* xorshift64*: the state is never 0. */
static uint64_t reconnect_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in (0, 1], in steps of 2^-53. */
static double reconnect_uniform(uint64_t *state)
{
    return (double)((reconnect_next(state) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* ln(x) for a normal x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), and
 * ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172. */
static double reconnect_ln(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, term = s, sum = 0.0;
    for (int k = 1; k <= 25; k += 2) {
        sum += term / k;
        term *= s2;
    }
    return 2.0 * sum + e * 0.69314718055994530942;
}

/* sqrt(y) for y >= 0: Newton from a guess that halves the exponent. */
static double reconnect_sqrt(double y)
{
    if (!(y > 0))
        return 0.0;
    uint64_t bits;
    memcpy(&bits, &y, sizeof bits);
    bits = (bits >> 1) + (0x3ff0000000000000ull >> 1);
    double g;
    memcpy(&g, &bits, sizeof g);
    for (int i = 0; i < 6; i++)
        g = 0.5 * (g + y / g);
    return g;
}

/* cos(2 pi u) for u in [0, 1]: folded onto [0, pi/2], then Taylor. */
static double reconnect_cos_turns(double u)
{
    double sign = 1.0;
    if (u > 0.5)
        u = 1.0 - u;
    if (u > 0.25) {
        u = 0.5 - u;
        sign = -1.0;
    }
    double x = 6.28318530717958647692 * u, x2 = x * x, term = 1.0, sum = 0.0;
    for (int k = 1; k <= 24; k += 2) {
        sum += term;
        term *= -x2 / (double)(k * (k + 1));
    }
    return sign * sum;
}

/* A standard normal variate (Box-Muller; one of the pair). */
static double reconnect_gauss(uint64_t *state)
{
    double u1 = reconnect_uniform(state), u2 = reconnect_uniform(state);
    return reconnect_sqrt(-2.0 * reconnect_ln(u1)) * reconnect_cos_turns(u2);
}

/* ---- the reconnecting factory ----------------------------------------- */

static int reconnect_give_up(tw_reconnecting_factory_t *f, tw_connector_t *c,
                             const tw_failure_t *reason)
{
    f->trying = false;
    tw_log(TW_LOG_INFO, LOG_DOMAIN, "giving up after %d retries", f->retries);
    if (f->hooks.gave_up)
        f->hooks.gave_up(c, reason, f->hooks.arg); /* may free c */
    return -ECANCELED;
}

/* Twisted's retry: count, back off, schedule (or give up). */
static int reconnect_schedule(tw_reconnecting_factory_t *f, tw_connector_t *c,
                              const tw_failure_t *reason)
{
    if (!f->trying) {
        tw_log(TW_LOG_DEBUG, LOG_DOMAIN, "not reconnecting: stopped on request");
        return -ECANCELED;
    }
    double delay = tw_reconnecting_factory_next_delay(f);
    if (delay < 0)
        return reconnect_give_up(f, c, reason);
    f->connector = c;
    tw_log(TW_LOG_INFO, LOG_DOMAIN, "reconnecting in %.2f s (attempt %d)", delay, f->retries);
    int rc = tw_timer_start(&f->timer, tw_seconds(delay));
    if (rc) {
        tw_log(TW_LOG_ERROR, LOG_DOMAIN, "cannot schedule a retry: %s", tw_strerror(rc));
        reconnect_give_up(f, c, reason);
        return rc;
    }
    return 0;
}

static void reconnect_fire(tw_timer_t *t, void *arg)
{
    (void)t;
    tw_reconnecting_factory_t *f = arg;
    if (!f->connector || !f->trying)
        return;
    int rc = tw_connector_connect(f->connector);
    if (rc)
        tw_log(TW_LOG_DEBUG, LOG_DOMAIN, "retry skipped: %s", tw_strerror(rc));
}

static tw_protocol_t *reconnect_build(tw_factory_t *base, const struct sockaddr *addr,
                                      socklen_t addrlen)
{
    (void)addr, (void)addrlen;
    tw_reconnecting_factory_t *f = TW_CONTAINER_OF(base, tw_reconnecting_factory_t, base);
    tw_protocol_t *p = f->hooks.build(f->hooks.arg);
    if (p && !f->opts.manual_reset)
        tw_reconnecting_factory_reset_delay(f);
    return p;
}

/* The last connector or listener let go of the factory: forget the
 * connector (it may be freed) and drop a retry that would use it. */
static void reconnect_stop(tw_factory_t *base)
{
    tw_reconnecting_factory_t *f = TW_CONTAINER_OF(base, tw_reconnecting_factory_t, base);
    tw_timer_cancel(&f->timer);
    f->connector = NULL;
}

static void reconnect_started(tw_factory_t *base, tw_connector_t *c)
{
    tw_reconnecting_factory_t *f = TW_CONTAINER_OF(base, tw_reconnecting_factory_t, base);
    f->connector = c;
    if (f->hooks.started_connecting)
        f->hooks.started_connecting(c, f->hooks.arg);
}

/* Failed or lost: tell the user, then retry -- unless the hook freed the
 * connector (reconnect_stop forgot it) or stopped trying. */
static void reconnect_ended(tw_reconnecting_factory_t *f, tw_connector_t *c,
                            const tw_failure_t *reason,
                            void (*hook)(tw_connector_t *, const tw_failure_t *, void *))
{
    f->connector = c;
    if (hook) {
        hook(c, reason, f->hooks.arg);
        if (f->connector != c)
            return;
    }
    reconnect_schedule(f, c, reason);
}

static void reconnect_failed(tw_factory_t *base, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_reconnecting_factory_t *f = TW_CONTAINER_OF(base, tw_reconnecting_factory_t, base);
    reconnect_ended(f, c, reason, f->hooks.connection_failed);
}

static void reconnect_lost(tw_factory_t *base, tw_connector_t *c, const tw_failure_t *reason)
{
    tw_reconnecting_factory_t *f = TW_CONTAINER_OF(base, tw_reconnecting_factory_t, base);
    reconnect_ended(f, c, reason, f->hooks.connection_lost);
}

static const tw_factory_ops_t reconnect_ops = {
    .build_protocol = reconnect_build,
    .stop = reconnect_stop,
    .started_connecting = reconnect_started,
    .connection_failed = reconnect_failed,
    .connection_lost = reconnect_lost,
};

static bool reconnect_valid(double x)
{
    return x - x == 0 && x >= 0; /* finite (NaN and inf fail x - x == 0) */
}

int tw_reconnecting_factory_init(tw_reconnecting_factory_t *f, tw_reactor_t *r,
                                 const tw_client_hooks_t *hooks,
                                 const tw_reconnect_opts_t *opts)
{
    tw_reconnect_opts_t o = opts ? *opts : TW_RECONNECT_DEFAULTS;
    if (!f || !r || !hooks || !hooks->build || !reconnect_valid(o.initial_delay) ||
        !reconnect_valid(o.factor) || o.factor <= 0 || !reconnect_valid(o.jitter) ||
        !reconnect_valid(o.max_delay) || o.max_retries < 0)
        return -EINVAL;
    memset(f, 0, sizeof *f);
    f->base.ops = &reconnect_ops;
    f->hooks = *hooks;
    f->opts = o;
    f->delay = o.initial_delay;
    f->trying = true;
    tw_timer_init(&f->timer, r, reconnect_fire, f);
    tw_reconnecting_factory_seed(f, (uint64_t)tw_time_now() ^ ((uint64_t)getpid() << 32) ^
                                        (uint64_t)(uintptr_t)f);
    return 0;
}

void tw_reconnecting_factory_seed(tw_reconnecting_factory_t *f, uint64_t seed)
{
    f->rng = reconnect_splitmix(seed);
    if (!f->rng)
        f->rng = 0x9e3779b97f4a7c15ull;
}

double tw_reconnecting_factory_next_delay(tw_reconnecting_factory_t *f)
{
    if (f->opts.max_retries > 0 && f->retries >= f->opts.max_retries)
        return -1.0;
    f->retries++;
    double delay = f->delay * f->opts.factor;
    if (delay > f->opts.max_delay)
        delay = f->opts.max_delay;
    if (f->opts.jitter != 0) {
        double jittered = delay + delay * f->opts.jitter * reconnect_gauss(&f->rng);
        if (jittered >= 0)
            delay = jittered;
    }
    f->delay = delay;
    return delay;
}

int tw_reconnecting_factory_retry(tw_reconnecting_factory_t *f, tw_connector_t *c)
{
    if (!c)
        c = f->connector;
    if (!c)
        return -EINVAL;
    return reconnect_schedule(f, c, NULL);
}

void tw_reconnecting_factory_stop_trying(tw_reconnecting_factory_t *f)
{
    tw_timer_cancel(&f->timer);
    f->trying = false;
    tw_log(TW_LOG_DEBUG, LOG_DOMAIN, "stopped trying on request");
    if (f->connector)
        tw_connector_stop_connecting(f->connector); /* may run connection_failed */
}

void tw_reconnecting_factory_reset_delay(tw_reconnecting_factory_t *f)
{
    f->delay = f->opts.initial_delay;
    f->retries = 0;
    f->trying = true;
}

double tw_reconnecting_factory_delay(const tw_reconnecting_factory_t *f)
{
    return f->delay;
}

int tw_reconnecting_factory_retries(const tw_reconnecting_factory_t *f)
{
    return f->retries;
}

bool tw_reconnecting_factory_trying(const tw_reconnecting_factory_t *f)
{
    return f->trying;
}

bool tw_reconnecting_factory_pending(const tw_reconnecting_factory_t *f)
{
    return tw_timer_active(&f->timer);
}
