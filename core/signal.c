/* signal.c -- signals delivered in the reactor thread.
 *
 * Signal dispositions are process-wide, reactors are per thread.  A
 * process-wide table of slots, one per reactor that watches signals, holds
 * what the handler may touch: the signals the reactor wants, the signals that
 * arrived, the reactor's waker descriptor, and a count of handlers running.
 * The handler only sets bits and writes the waker (both async-signal-safe);
 * the reactor reads the bits when it wakes and calls the callbacks.
 *
 * Installing and removing handlers happens under a mutex, in reactor threads.
 * The first reactor to want a signal installs the handler and keeps the old
 * disposition; the last one to let go puts it back. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

#define SLOTS 64

typedef struct sig_slot {
    _Atomic uint64_t want;    /* bit (signo - 1) */
    _Atomic uint64_t pending;
    _Atomic int wfd;          /* waker to write, -1 when the slot is free */
    _Atomic int busy;         /* handlers inside this slot right now */
    int used;                 /* guarded by sig_lock */
} sig_slot_t;

static sig_slot_t sig_slots[SLOTS];
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction sig_old[TW__NSIG]; /* guarded by sig_lock */
static int sig_users[TW__NSIG];            /* guarded by sig_lock */

static inline uint64_t sig_bit(int signo)
{
    return (uint64_t)1 << (signo - 1);
}

static void sig_handler(int signo)
{
    int saved = errno;
    uint64_t bit = sig_bit(signo);
    for (int i = 0; i < SLOTS; i++) {
        sig_slot_t *s = &sig_slots[i];
        if (!(atomic_load(&s->want) & bit))
            continue;
        atomic_fetch_add(&s->busy, 1);
        int wfd = atomic_load(&s->wfd);
        if (wfd >= 0 && (atomic_load(&s->want) & bit)) {
            atomic_fetch_or(&s->pending, bit);
            tw__waker_wake(wfd);
        }
        atomic_fetch_sub(&s->busy, 1);
    }
    errno = saved;
}

static int sig_install(int signo)
{
    if (sig_users[signo]++ > 0)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, &sig_old[signo]) < 0) {
        sig_users[signo]--;
        return -errno;
    }
    return 0;
}

static void sig_uninstall(int signo)
{
    if (--sig_users[signo] == 0)
        sigaction(signo, &sig_old[signo], NULL);
}

/* Wait out any handler still using slot s, so its waker can be closed. */
static void sig_quiesce(sig_slot_t *s)
{
    while (atomic_load(&s->busy) != 0)
        ;
}

/* Make r's slot want signo or not (taking a slot for r the first time one
 * is wanted), installing the handler for the first reactor that wants it and
 * restoring the old disposition after the last.  Called with sig_lock held. */
static int sig_want(tw_reactor_t *r, int signo, bool want)
{
    if (r->sig_slot < 0) {
        if (!want)
            return 0;
        for (int i = 0; i < SLOTS; i++) {
            if (!sig_slots[i].used) {
                sig_slots[i].used = 1;
                atomic_store(&sig_slots[i].pending, 0);
                atomic_store(&sig_slots[i].wfd, r->wake_wfd);
                r->sig_slot = i;
                break;
            }
        }
        if (r->sig_slot < 0)
            return TW_ENOSIGSLOT;
    }
    sig_slot_t *s = &sig_slots[r->sig_slot];
    uint64_t bit = sig_bit(signo);
    bool wanted = (atomic_load(&s->want) & bit) != 0;
    int rc = 0;
    if (want && !wanted) {
        rc = sig_install(signo);
        if (rc == 0)
            atomic_fetch_or(&s->want, bit);
    } else if (!want && wanted) {
        atomic_fetch_and(&s->want, ~bit);
        atomic_fetch_and(&s->pending, ~bit);
        sig_uninstall(signo);
    }
    return rc;
}

int tw_reactor_on_signal(tw_reactor_t *r, int signo, tw_signal_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    if (signo < 1 || signo >= TW__NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    pthread_mutex_lock(&sig_lock);
    /* process.c's reaper may want SIGCHLD too: it stays watched for it */
    int rc = sig_want(r, signo, cb || (signo == SIGCHLD && r->chld_hook));
    if (rc == 0)
        r->sig[signo] = (tw__sighandler_t){ cb, cb ? arg : NULL };
    pthread_mutex_unlock(&sig_lock);
    return rc;
}

int tw__signals_set_chld_hook(tw_reactor_t *r, void (*hook)(tw_reactor_t *r))
{
    TW__ASSERT_OWNER(r);
    pthread_mutex_lock(&sig_lock);
    int rc = sig_want(r, SIGCHLD, hook || r->sig[SIGCHLD].cb);
    if (rc == 0)
        r->chld_hook = hook;
    pthread_mutex_unlock(&sig_lock);
    return rc;
}

int tw__signals_dispatch(tw_reactor_t *r)
{
    if (r->sig_slot < 0)
        return 0;
    uint64_t pending = atomic_exchange(&sig_slots[r->sig_slot].pending, 0);
    int ran = 0;
    for (int signo = 1; pending && signo < TW__NSIG; signo++) {
        if (!(pending & sig_bit(signo)))
            continue;
        pending &= ~sig_bit(signo);
        /* The reaper first: it takes only the children twine spawned, so
         * an application callback that reaps its own finds just those. */
        if (signo == SIGCHLD && r->chld_hook) {
            r->chld_hook(r);
            ran++;
        }
        if (r->sig[signo].cb) {
            r->sig[signo].cb(r, signo, r->sig[signo].arg);
            ran++;
        }
    }
    return ran;
}

void tw__signals_rebind(tw_reactor_t *r)
{
    if (r->sig_slot >= 0)
        atomic_store(&sig_slots[r->sig_slot].wfd, r->wake_wfd);
}

void tw__signals_release(tw_reactor_t *r)
{
    if (r->sig_slot < 0)
        return;
    pthread_mutex_lock(&sig_lock);
    sig_slot_t *s = &sig_slots[r->sig_slot];
    uint64_t want = atomic_exchange(&s->want, 0);
    for (int signo = 1; signo < TW__NSIG; signo++)
        if (want & sig_bit(signo))
            sig_uninstall(signo);
    atomic_store(&s->wfd, -1);
    sig_quiesce(s);
    s->used = 0;
    r->sig_slot = -1;
    r->chld_hook = NULL;
    pthread_mutex_unlock(&sig_lock);
}

/* A write to a socket whose peer has gone must return EPIPE, not kill the
 * process.  Applications that set their own SIGPIPE disposition keep it. */
static void sig_ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        !(sa.sa_flags & SA_SIGINFO)) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

void tw__sigpipe_ignore_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sig_ignore_sigpipe);
}
