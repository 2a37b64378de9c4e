/* kqueue.c -- BSD/macOS kqueue(2) readiness backend.
 *
 * Cost: update is one kevent() carrying at most two changes (one per filter
 * involved), plus one more to roll back if only one of them took; wait is
 * O(ready).  Level-triggered (no EV_CLEAR).  An fd ready both ways comes back
 * as two kevents; adjacent ones are merged, others are reported twice, once
 * per direction, which backend.h allows.  At most KQ_MAX_BATCH kevents per
 * wait (the rest stay ready).  A kqueue is not inherited by fork(), so reinit
 * opens a new one; like libevent we close the old descriptor only in the
 * process that opened it, since in a child its number may already be reused.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/event.h>
#include <time.h>
#include <unistd.h>

#ifdef EV_RECEIPT
#define KQ_RECEIPT EV_RECEIPT
#else
#define KQ_RECEIPT 0
#endif

#define KQ_FIRST_BATCH 64
#define KQ_MAX_BATCH   4096

typedef struct kqueue_state {
    int kq;
    pid_t pid;            /* process that opened kq */
    int cap;              /* entries in evs */
    struct kevent *evs;   /* reused by every wait */
} kqueue_state_t;

static int kqueue_open(kqueue_state_t *s)
{
    s->kq = kqueue();
    if (s->kq < 0)
        return -errno;
    if (fcntl(s->kq, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(s->kq);
        s->kq = -1;
        return -err;
    }
    s->pid = getpid();
    return 0;
}

static void kqueue_close(kqueue_state_t *s)
{
    if (s->kq >= 0 && s->pid == getpid())
        close(s->kq);
    s->kq = -1;
}

static int kqueue_init(void **state)
{
    kqueue_state_t *s = calloc(1, sizeof *s);
    int rc;
    if (!s)
        return -ENOMEM;
    s->evs = malloc(KQ_FIRST_BATCH * sizeof *s->evs);
    if (!s->evs) {
        free(s);
        return -ENOMEM;
    }
    s->cap = KQ_FIRST_BATCH;
    rc = kqueue_open(s);
    if (rc < 0) {
        free(s->evs);
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static void kqueue_fini(void *state)
{
    kqueue_state_t *s = state;
    if (!s)
        return;
    kqueue_close(s);
    free(s->evs);
    free(s);
}

/* Apply ch[0..n) now; fail[i] says whether change i was refused (a delete
 * of a filter that is already gone counts as done).  Returns 0 or -errno. */
static int kqueue_apply(int kq, struct kevent *ch, int n, int fail[2])
{
    static const struct timespec zero = { 0, 0 };
    struct kevent res[2];
    int r, i, j, err = 0;

    fail[0] = fail[1] = 0;
    /* Room for one result per change: errors then come back as EV_ERROR
     * entries (every change does with EV_RECEIPT) instead of stopping. */
    r = kevent(kq, ch, n, res, n, &zero);
    if (r < 0)
        return -errno;
    for (i = 0; i < r; i++) {
        if (!(res[i].flags & EV_ERROR) || res[i].data == 0)
            continue;  /* a receipt for a change that took, or a stray event */
        for (j = 0; j < n; j++) {
            if (ch[j].filter != res[i].filter)
                continue;
            if ((ch[j].flags & EV_DELETE) && (res[i].data == ENOENT || res[i].data == EBADF))
                break;
            fail[j] = 1;
            err = -(int)res[i].data;
        }
    }
    return err;
}

static int kqueue_update(void *state, int fd, uint32_t old_mask, uint32_t new_mask)
{
    kqueue_state_t *s = state;
    struct kevent ch[2];
    int n = 0, fail[2], undo[2], changed[2], rc, i;
    uint32_t bit;

    if (fd < 0)
        return -EBADF;
    /* Every wanted filter is (re-)added, not only the new one: EV_ADD of an
     * existing knote is harmless, and it restores one the kernel dropped
     * because the fd was closed and its number reused (cf. epoll's MOD->ADD). */
    for (bit = TW__READ; bit <= TW__WRITE; bit <<= 1) {
        if (!((old_mask | new_mask) & bit))
            continue;
        EV_SET(&ch[n], (uintptr_t)fd, bit == TW__READ ? EVFILT_READ : EVFILT_WRITE,
               ((new_mask & bit) ? EV_ADD : EV_DELETE) | KQ_RECEIPT, 0, 0, 0);
        changed[n++] = ((old_mask ^ new_mask) & bit) != 0;
    }
    rc = kqueue_apply(s->kq, ch, n, fail);
    for (i = 0; rc < 0 && i < n; i++) {
        /* Partly applied: undo what took, best effort. */
        if (!fail[i] && changed[i]) {
            ch[i].flags ^= EV_ADD | EV_DELETE;
            kqueue_apply(s->kq, &ch[i], 1, undo);
        }
    }
    return rc;
}

static int kqueue_wait(void *state, tw__fired_t *fired, int max, int timeout_ms)
{
    kqueue_state_t *s = state;
    struct timespec ts, *tsp = NULL;
    int want = max < KQ_MAX_BATCH ? max : KQ_MAX_BATCH;
    int r, i, n = 0;

    if (want <= 0)
        return -EINVAL;
    if (want > s->cap) {
        struct kevent *evs = realloc(s->evs, (size_t)want * sizeof *evs);
        if (evs) {
            s->evs = evs;
            s->cap = want;
        } else {
            want = s->cap;  /* level-triggered: a smaller batch is still correct */
        }
    }
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    r = kevent(s->kq, NULL, 0, s->evs, want, tsp);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < r; i++) {
        /* EV_EOF and EV_ERROR still mean "look at this fd in this direction". */
        uint32_t mask = s->evs[i].filter == EVFILT_READ ? TW__READ
                      : s->evs[i].filter == EVFILT_WRITE ? TW__WRITE : 0;
        int fd = (int)s->evs[i].ident;
        if (!mask)
            continue;
        if (n > 0 && fired[n - 1].fd == fd) {
            fired[n - 1].mask |= mask;
            continue;
        }
        fired[n].fd = fd;
        fired[n].mask = mask;
        n++;
    }
    return n;
}

static int kqueue_reinit(void *state)
{
    kqueue_state_t *s = state;
    kqueue_close(s);
    return kqueue_open(s);
}

const tw__backend_t tw__backend = {
    "kqueue", kqueue_init, kqueue_fini, kqueue_update, kqueue_wait, kqueue_reinit
};
