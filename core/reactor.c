/* reactor.c -- the loop: descriptor table, dispatch, soon calls, triggers,
 * run/stop/iterate.  Timers live in timer.c, the thread waker in calls.c,
 * signals in signal.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tw_deferred.h"

const char *tw_reactor_backend_name(void)
{
    return tw__backend.name;
}

#ifndef NDEBUG
void tw__assert_owner(const tw_reactor_t *r, const char *fn)
{
    if (!pthread_equal(pthread_self(), r->owner)) {
        tw_log(TW_LOG_ERROR, "reactor", "%s called from a thread that does not own the reactor",
               fn);
        abort();
    }
}
#endif

static void reactor_wake_cb(tw_reactor_t *r, int fd, void *arg);

int tw_reactor_new(tw_reactor_t **out)
{
    tw__sigpipe_ignore_once();
    size_t size = (sizeof(tw_reactor_t) + 63) & ~(size_t)63;
    tw_reactor_t *r = aligned_alloc(64, size); /* see tw__xq_t in internal.h */
    if (!r)
        return -ENOMEM;
    memset(r, 0, size);
    r->owner = pthread_self();
    r->sig_slot = -1;
    r->wake_rfd = r->wake_wfd = -1;
    r->trig_next_id = 1;
    r->shutdown_timeout = TW_SHUTDOWN_TIMEOUT;
    tw__thread_calls_init(r);
    tw__timers_init(r);

    int rc = tw__backend.init(&r->be);
    if (rc == 0)
        rc = tw__waker_open(r);
    if (rc == 0)
        rc = tw_reactor_add_reader(r, r->wake_rfd, reactor_wake_cb, NULL);
    if (rc != 0) {
        tw_reactor_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void tw_reactor_free(tw_reactor_t *r)
{
    if (!r)
        return;
    if (r->pool_free)
        r->pool_free(r);
    if (r->procs_free)
        r->procs_free(r);
    tw__signals_release(r);
    if (r->wake_rfd >= 0)
        tw_reactor_remove_all(r, r->wake_rfd);
    tw__waker_close(r);
    if (r->be)
        tw__backend.fini(r->be);
    tw__timers_fini(r);
    tw__callq_free(&r->soon);
    tw__callq_free(&r->soon_run);
    tw__thread_calls_fini(r);
    free(r->rbuf);
    free(r->trig);
    free(r->fds);
    free(r->fired);
    free(r);
}

/* ---- descriptors ------------------------------------------------------ */

static int reactor_grow_fds(tw_reactor_t *r, int fd)
{
    if (fd < r->fds_cap)
        return 0;
    size_t cap = r->fds_cap ? (size_t)r->fds_cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    tw__watch_t *v = realloc(r->fds, cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    memset(v + r->fds_cap, 0, (cap - (size_t)r->fds_cap) * sizeof *v);
    r->fds = v;
    r->fds_cap = (int)cap;
    return 0;
}

static int reactor_watch(tw_reactor_t *r, int fd, uint32_t dir, tw_io_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    if (fd < 0)
        return -EBADF;
    if (!cb)
        return -EINVAL;
    int rc = reactor_grow_fds(r, fd);
    if (rc)
        return rc;
    tw__watch_t *w = &r->fds[fd];
    uint32_t old = w->mask, new = old | dir;
    if (new != old) {
        rc = tw__backend.update(r->be, fd, old, new);
        if (rc)
            return rc;
        if (!old)
            r->nwatched++;
        w->mask = new;
    }
    if (dir == TW__READ) {
        w->rcb = cb;
        w->rarg = arg;
    } else {
        w->wcb = cb;
        w->warg = arg;
    }
    return 0;
}

static int reactor_unwatch(tw_reactor_t *r, int fd, uint32_t dir)
{
    TW__ASSERT_OWNER(r);
    if (fd < 0 || fd >= r->fds_cap || !(r->fds[fd].mask & dir))
        return 0;
    tw__watch_t *w = &r->fds[fd];
    uint32_t new = w->mask & ~dir;
    /* The backend cannot refuse to forget an fd in a way we could act on;
     * the table is the truth, and stale reports are filtered by mask. */
    (void)tw__backend.update(r->be, fd, w->mask, new);
    w->mask = new;
    w->gen++;
    if (dir == TW__READ) {
        w->rcb = NULL;
        w->rarg = NULL;
    } else {
        w->wcb = NULL;
        w->warg = NULL;
    }
    if (!new)
        r->nwatched--;
    return 0;
}

int tw_reactor_add_reader(tw_reactor_t *r, int fd, tw_io_cb cb, void *arg)
{
    return reactor_watch(r, fd, TW__READ, cb, arg);
}

int tw_reactor_add_writer(tw_reactor_t *r, int fd, tw_io_cb cb, void *arg)
{
    return reactor_watch(r, fd, TW__WRITE, cb, arg);
}

int tw_reactor_remove_reader(tw_reactor_t *r, int fd)
{
    return reactor_unwatch(r, fd, TW__READ);
}

int tw_reactor_remove_writer(tw_reactor_t *r, int fd)
{
    return reactor_unwatch(r, fd, TW__WRITE);
}

void tw_reactor_remove_all(tw_reactor_t *r, int fd)
{
    reactor_unwatch(r, fd, TW__READ);
    reactor_unwatch(r, fd, TW__WRITE);
}

bool tw_reactor_is_reading(const tw_reactor_t *r, int fd)
{
    return fd >= 0 && fd < r->fds_cap && (r->fds[fd].mask & TW__READ);
}

bool tw_reactor_is_writing(const tw_reactor_t *r, int fd)
{
    return fd >= 0 && fd < r->fds_cap && (r->fds[fd].mask & TW__WRITE);
}

int tw_reactor_watched_count(const tw_reactor_t *r)
{
    return r->nwatched - (r->wake_rfd >= 0); /* the waker is ours, not the caller's */
}

/* Run the callbacks of one batch of ready descriptors.  An earlier callback
 * may remove (and close, and reuse the number of) a later descriptor: every
 * removal bumps the fd's generation, and events gathered under an older
 * generation are dropped, so they never reach a watcher added since. */
static int reactor_dispatch(tw_reactor_t *r, int n)
{
    tw__fired_t *f = r->fired; /* not reallocated during dispatch */
    int ran = 0;
    if (n > 1) /* with one event, no earlier callback can make it stale */
        for (int i = 0; i < n; i++)
            f[i].gen = r->fds[f[i].fd].gen;
    else if (n == 1)
        f[0].gen = r->fds[f[0].fd].gen;
    for (int i = 0; i < n; i++) {
        int fd = f[i].fd;
        tw__watch_t *w = &r->fds[fd];
        if (w->gen != f[i].gen)
            continue;
        if (f[i].mask & w->mask & TW__READ) {
            w->rcb(r, fd, w->rarg);
            ran++;
            w = &r->fds[fd]; /* the table may have grown */
            if (w->gen != f[i].gen)
                continue;
        }
        if (f[i].mask & w->mask & TW__WRITE) {
            w->wcb(r, fd, w->warg);
            ran++;
        }
    }
    return ran;
}

/* ---- soon calls ------------------------------------------------------- */

int tw_reactor_call_soon(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    if (!cb)
        return -EINVAL;
    return tw__callq_push(&r->soon, cb, arg);
}

/* Run the calls queued so far; calls they make wait for the next iteration. */
static int reactor_run_calls(tw_reactor_t *r, tw__callq_t *q, tw__callq_t *spare)
{
    tw__callq_t run = *q;
    *q = *spare;
    for (size_t i = 0; i < run.n; i++)
        run.v[i].cb(r, run.v[i].arg);
    int ran = (int)run.n;
    run.n = 0;
    *spare = run;
    return ran;
}

/* ---- the thread waker ------------------------------------------------- */

static void reactor_wake_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)arg;
    tw__waker_drain(fd);
    tw__signals_dispatch(r);
    tw__thread_calls_run(r);
}

/* ---- iterate ---------------------------------------------------------- */

static int reactor_grow_fired(tw_reactor_t *r)
{
    int want = 2 * r->nwatched + 2;
    if (r->fired_cap >= want)
        return 0;
    int cap = r->fired_cap ? r->fired_cap : 64;
    while (cap < want)
        cap *= 2;
    tw__fired_t *f = realloc(r->fired, (size_t)cap * sizeof *f);
    if (!f)
        return -ENOMEM;
    r->fired = f;
    r->fired_cap = cap;
    return 0;
}

static int reactor_timeout_ms(tw_reactor_t *r, tw_time_t timeout)
{
    if (r->soon.n || (r->stopping && !r->draining) || r->tq_poll)
        return 0;
    tw_time_t next = tw__timers_next(r);
    if (next != TW_TIME_MAX) {
        tw_time_t d = next > r->now ? next - r->now : 0;
        if (timeout < 0 || d < timeout)
            timeout = d;
    }
    if (timeout < 0)
        return -1;
    tw_time_t ms = timeout / 1000000 + (timeout % 1000000 != 0); /* never early */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int reactor_iterate(tw_reactor_t *r, tw_time_t timeout)
{
    int rc = reactor_grow_fired(r);
    if (rc)
        return rc;
    r->in_loop = 1;
    if (r->heap_n) /* the clock matters before waiting only to time the wait */
        tw__update_time(r);
    int n = tw__backend.wait(r->be, r->fired, r->fired_cap, reactor_timeout_ms(r, timeout));
    if (n < 0) {
        r->in_loop = 0;
        return n;
    }
    tw__update_time(r);
    if (r->tq_taken)
        r->tq_taken = 0;
    int ran = reactor_dispatch(r, n);
    if (r->tq_poll && !r->tq_taken)
        ran += tw__thread_calls_run(r);
    ran += tw__timers_run(r);
    ran += reactor_run_calls(r, &r->soon, &r->soon_run);
    r->in_loop = 0;
    return ran;
}

int tw_reactor_iterate(tw_reactor_t *r, tw_time_t timeout)
{
    TW__ASSERT_OWNER(r);
    if (r->in_loop)
        return TW_EALREADY;
    return reactor_iterate(r, timeout);
}

void *tw_reactor_read_buffer(tw_reactor_t *r, size_t *size)
{
    TW__ASSERT_OWNER(r);
    if (!r->rbuf)
        r->rbuf = malloc(TW_READ_BUFFER_SIZE);
    *size = TW_READ_BUFFER_SIZE;
    return r->rbuf;
}

tw_time_t tw_reactor_now(tw_reactor_t *r)
{
    TW__ASSERT_OWNER(r); /* it refreshes the cache outside the loop */
    if (!r->in_loop)
        tw__update_time(r);
    return r->now;
}

/* ---- triggers --------------------------------------------------------- */

#define TRIG_ONCE 2 /* `dead` value for call_when_running: fire once, then go */

static int reactor_add_trigger(tw_reactor_t *r, tw_phase_t phase, tw_event_t event,
                               tw_call_cb cb, tw_shutdown_cb dcb, void *arg, int once)
{
    if ((!cb && !dcb) || (unsigned)phase > TW_AFTER || (unsigned)event > TW_SHUTDOWN)
        return -EINVAL;
    if (r->trig_n == r->trig_cap) {
        int cap = r->trig_cap ? 2 * r->trig_cap : 8;
        tw__trigger_t *v = realloc(r->trig, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        r->trig = v;
        r->trig_cap = cap;
    }
    int id = r->trig_next_id++;
    if (r->trig_next_id == INT_MAX)
        r->trig_next_id = 1;
    r->trig[r->trig_n++] = (tw__trigger_t){ id, (uint8_t)phase, (uint8_t)event,
                                            (uint8_t)(once ? TRIG_ONCE : 0), cb, arg, dcb };
    return id;
}

int tw_reactor_add_trigger(tw_reactor_t *r, tw_phase_t phase, tw_event_t event,
                           tw_call_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    return reactor_add_trigger(r, phase, event, cb, NULL, arg, 0);
}

int tw_reactor_add_shutdown_deferred(tw_reactor_t *r, tw_shutdown_cb fn, void *arg)
{
    TW__ASSERT_OWNER(r);
    if (!fn)
        return -EINVAL;
    return reactor_add_trigger(r, TW_BEFORE, TW_SHUTDOWN, NULL, fn, arg, 0);
}

void tw_reactor_set_shutdown_timeout(tw_reactor_t *r, tw_time_t timeout)
{
    TW__ASSERT_OWNER(r);
    r->shutdown_timeout = timeout > 0 ? timeout : 0;
}

static void reactor_compact_triggers(tw_reactor_t *r)
{
    int j = 0;
    for (int i = 0; i < r->trig_n; i++)
        if (r->trig[i].dead != 1)
            r->trig[j++] = r->trig[i];
    r->trig_n = j;
}

int tw_reactor_remove_trigger(tw_reactor_t *r, int id)
{
    TW__ASSERT_OWNER(r);
    for (int i = 0; i < r->trig_n; i++) {
        if (r->trig[i].id == id && r->trig[i].dead != 1) {
            r->trig[i].dead = 1;
            if (!r->trig_firing)
                reactor_compact_triggers(r);
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- shutdown Deferreds ------------------------------------------------ */

/* The Deferreds that "before shutdown" triggers returned.  The reactor holds
 * a reference to each (to cancel it) while it waits; each one's step holds a
 * reference to this record, so that one firing after the reactor stopped
 * waiting (a cancel that could not stop it) finds it still there, with `r`
 * cleared (and `ds` gone). */
typedef struct reactor_drain_entry {
    tw_deferred_t *d; /* a reference */
    bool done;        /* our step has run (or was dropped) */
} reactor_drain_entry_t;

typedef struct reactor_drain {
    int refs;
    int pending;        /* returned and not fired yet */
    bool gave_up;       /* the limit passed, or the loop failed: stop waiting */
    tw_reactor_t *r;    /* NULL once the reactor no longer waits */
    tw_timer_t limit;
    size_t n, cap;
    reactor_drain_entry_t *ds;
} reactor_drain_t;

static void reactor_drain_unref(reactor_drain_t *dr)
{
    if (--dr->refs == 0)
        free(dr);
}

/* Entry i is settled: count it, unless the reactor no longer waits. */
static void reactor_drain_settle(reactor_drain_t *dr, void *index)
{
    if (dr->r) {
        dr->ds[(size_t)(uintptr_t)index].done = true;
        dr->pending--;
    }
    reactor_drain_unref(dr);
}

static tw_outcome_t reactor_drain_step(tw_outcome_t in, void *arg, void *index)
{
    reactor_drain_t *dr = arg;
    if (in.kind == TW_OUTCOME_FAIL) {
        const tw_failure_t *f = in.failure;
        if (!(dr->gave_up && f->code == -ECANCELED)) /* the limit's warning said it */
            tw_log(TW_LOG_WARN, "reactor", "a shutdown Deferred failed: [%s] %s (%d)",
                   f->domain, f->message, f->code);
        tw_outcome_discard(in);
        in = TW_OK(NULL, NULL);
    }
    reactor_drain_settle(dr, index);
    return in;
}

static void reactor_drain_drop(void *arg, void *index)
{
    reactor_drain_settle(arg, index);
}

/* Watch what a trigger returned (the reference is ours). */
static void reactor_drain_add(tw_reactor_t *r, reactor_drain_t **pdr, tw_deferred_t *d)
{
    if (!d)
        return;
    reactor_drain_t *dr = *pdr;
    if (!dr && (dr = calloc(1, sizeof *dr)) != NULL) {
        dr->refs = 1;
        dr->r = r;
        *pdr = dr;
    }
    if (dr && dr->n == dr->cap) {
        size_t cap = dr->cap ? 2 * dr->cap : 8;
        reactor_drain_entry_t *v = realloc(dr->ds, cap * sizeof *v);
        if (v) {
            dr->ds = v;
            dr->cap = cap;
        }
    }
    if (!dr || dr->n == dr->cap) {
        tw_log(TW_LOG_ERROR, "reactor", "out of memory: not waiting for a shutdown Deferred");
        tw_deferred_unref(d);
        return;
    }
    size_t i = dr->n++;
    dr->ds[i] = (reactor_drain_entry_t){ d, false };
    dr->pending++;
    dr->refs++;
    if (tw_deferred_add_callbacks(d, reactor_drain_step, reactor_drain_step, dr,
                                  (void *)(uintptr_t)i, reactor_drain_drop) < 0) {
        tw_log(TW_LOG_ERROR, "reactor", "out of memory: not waiting for a shutdown Deferred");
        dr->ds[i].done = true;
        dr->pending--;
        dr->refs--;
    }
}

/* Stop waiting: cancel what is pending (a cancel may fire it at once). */
static void reactor_drain_give_up(reactor_drain_t *dr, const char *why)
{
    if (dr->gave_up)
        return;
    dr->gave_up = true;
    if (dr->pending > 0)
        tw_log(TW_LOG_WARN, "reactor", "shutdown: %d Deferred%s still pending %s: cancelling",
               dr->pending, dr->pending == 1 ? "" : "s", why);
    for (size_t i = 0; i < dr->n; i++)
        if (!dr->ds[i].done)
            tw_deferred_cancel(dr->ds[i].d);
}

static void reactor_drain_limit_cb(tw_timer_t *t, void *arg)
{
    reactor_drain_t *dr = arg;
    char why[64];
    snprintf(why, sizeof why, "after %g s", (double)dr->r->shutdown_timeout / 1e9);
    reactor_drain_give_up(dr, why);
}

/* Iterate until every Deferred has fired or the limit passed; `failed`: the
 * loop has failed already, do not wait.  Frees the record (our reference).
 * Returns 0 or the error of an iteration. */
static int reactor_drain(tw_reactor_t *r, reactor_drain_t *dr, bool failed)
{
    int rc = 0;
    tw_timer_init(&dr->limit, r, reactor_drain_limit_cb, dr);
    if (dr->pending > 0 && failed)
        reactor_drain_give_up(dr, "after the loop failed");
    else if (dr->pending > 0 && r->shutdown_timeout <= 0)
        reactor_drain_give_up(dr, "(no shutdown timeout)");
    else if (dr->pending > 0 && r->shutdown_timeout != TW_TIME_MAX &&
             tw_timer_start(&dr->limit, r->shutdown_timeout) < 0)
        reactor_drain_give_up(dr, "(out of memory for the shutdown timeout)");
    r->draining = 1;
    while (dr->pending > 0 && !dr->gave_up) {
        rc = reactor_iterate(r, -1);
        if (rc < 0) {
            tw_log(TW_LOG_ERROR, "reactor", "%s backend failed: %s", tw__backend.name,
                   tw_strerror(rc));
            reactor_drain_give_up(dr, "after the loop failed");
            break;
        }
        rc = 0;
    }
    r->draining = 0;
    tw_timer_cancel(&dr->limit);
    dr->r = NULL;
    reactor_drain_entry_t *ds = dr->ds;
    dr->ds = NULL;
    for (size_t i = 0; i < dr->n; i++)
        tw_deferred_unref(ds[i].d); /* may drop our step: r is NULL already */
    free(ds);
    reactor_drain_unref(dr);
    return rc;
}

/* Fire the triggers of one phase of `event`.  A trigger added while firing
 * runs in this event if its phase is the current one or a later one.
 * Deferreds from shutdown Deferred triggers go to *dr. */
static void reactor_fire_phase(tw_reactor_t *r, tw_event_t event, int phase,
                               reactor_drain_t **dr)
{
    r->trig_firing++;
    for (int i = 0; i < r->trig_n; i++) {
        tw__trigger_t t = r->trig[i];
        if (t.dead == 1 || t.event != event || t.phase != phase)
            continue;
        if (t.dead == TRIG_ONCE)
            r->trig[i].dead = 1;
        if (t.dcb)
            reactor_drain_add(r, dr, t.dcb(r, t.arg));
        else
            t.cb(r, t.arg);
    }
    if (--r->trig_firing == 0)
        reactor_compact_triggers(r);
}

/* Fire every trigger of `event`, phase by phase; shutdown waits between
 * "before" and "during" for the Deferreds of the "before" phase.  Returns 0
 * or the error of an iteration while waiting. */
static int reactor_fire_event(tw_reactor_t *r, tw_event_t event, bool failed)
{
    reactor_drain_t *dr = NULL;
    int rc = 0;
    reactor_fire_phase(r, event, TW_BEFORE, &dr);
    if (dr)
        rc = reactor_drain(r, dr, failed);
    reactor_fire_phase(r, event, TW_DURING, NULL);
    reactor_fire_phase(r, event, TW_AFTER, NULL);
    return rc;
}

int tw_reactor_call_when_running(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    if (r->running)
        return tw_reactor_call_soon(r, cb, arg);
    int id = reactor_add_trigger(r, TW_AFTER, TW_STARTUP, cb, NULL, arg, 1);
    return id < 0 ? id : 0;
}

/* ---- run and stop ----------------------------------------------------- */

static void reactor_stop_on_signal(tw_reactor_t *r, int signo, void *arg)
{
    (void)arg;
    tw_log(TW_LOG_INFO, "reactor", "received %s, stopping", strsignal(signo));
    tw_reactor_stop(r);
}

static const int run_signals[2] = { SIGINT, SIGTERM };

int tw_reactor_run(tw_reactor_t *r, unsigned flags)
{
    if (r->running || r->in_loop)
        return TW_EALREADY;
    /* Written only when the reactor changes threads: other threads read it
     * (tw_blocking_call_from_thread refuses the reactor's own thread). */
    if (!pthread_equal(r->owner, pthread_self()))
        r->owner = pthread_self();
    r->running = 1;
    r->stopping = 0;
    r->run_signals = 0;
    if (flags & TW_RUN_SIGNALS) {
        for (int i = 0; i < 2; i++) {
            int s = run_signals[i];
            if (!r->sig[s].cb && tw_reactor_on_signal(r, s, reactor_stop_on_signal, NULL) == 0)
                r->run_signals |= 1 << i;
        }
    }

    int rc = 0;
    reactor_fire_event(r, TW_STARTUP, false);
    while (!r->stopping) {
        rc = reactor_iterate(r, -1);
        if (rc < 0) {
            tw_log(TW_LOG_ERROR, "reactor", "%s backend failed: %s", tw__backend.name,
                   tw_strerror(rc));
            break;
        }
        rc = 0;
    }
    r->stopping = 1;
    int drc = reactor_fire_event(r, TW_SHUTDOWN, rc < 0);
    if (rc == 0)
        rc = drc;

    for (int i = 0; i < 2; i++) /* unless the application replaced ours meanwhile */
        if ((r->run_signals & (1 << i)) && r->sig[run_signals[i]].cb == reactor_stop_on_signal)
            tw_reactor_on_signal(r, run_signals[i], NULL, NULL);
    r->run_signals = 0;
    r->running = 0;
    r->stopping = 0;
    return rc;
}

int tw_reactor_stop(tw_reactor_t *r)
{
    TW__ASSERT_OWNER(r);
    if (!r->running || r->stopping)
        return TW_ENOTRUNNING;
    r->stopping = 1;
    return 0;
}

bool tw_reactor_running(const tw_reactor_t *r)
{
    return r->running;
}

int tw_reactor_after_fork(tw_reactor_t *r)
{
    r->owner = pthread_self();
    int rc = tw__backend.reinit(r->be);
    if (rc)
        return rc;
    /* The waker is shared with the parent: forget it before re-registering. */
    int old = r->wake_rfd;
    tw__watch_t *ow = old >= 0 ? &r->fds[old] : NULL;
    if (ow && ow->mask) {
        ow->mask = 0;
        ow->gen++;
        r->nwatched--;
    }
    for (int fd = 0; fd < r->fds_cap; fd++) {
        tw__watch_t *w = &r->fds[fd];
        if (w->mask && (rc = tw__backend.update(r->be, fd, 0, w->mask)) != 0)
            return rc;
    }
    tw__waker_close(r);
    tw__thread_calls_init(r); /* a lock may have been held by a parent thread */
    r->tq_poll = 0;
    if ((rc = tw__waker_open(r)) != 0)
        return rc;
    tw__signals_rebind(r);
    return tw_reactor_add_reader(r, r->wake_rfd, reactor_wake_cb, NULL);
}
