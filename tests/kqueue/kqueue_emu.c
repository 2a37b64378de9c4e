/* kqueue_emu.c -- a small kqueue(2)/kevent(2) emulation over Linux epoll(7),
 * used only by the test suite so that reactors/kqueue.c is compiled and run
 * on Linux.  Build with -Itests/kqueue so <sys/event.h> is ours.
 *
 * Emulated:
 *  - kqueue() returns an epoll fd (not close-on-exec, as on BSD).  Each kq
 *    has a table fd -> {registered filters, disabled filters, udata}, kept in
 *    a global array indexed by the kq's fd number, under one mutex: one
 *    kqueue per thread is safe (concurrent waits on one kq are not).  The
 *    table is reset when kqueue() hands out that number again.
 *  - EVFILT_READ and EVFILT_WRITE on any epoll-able fd, level-triggered, with
 *    EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_RECEIPT and udata.
 *  - Change errors: an EV_ERROR entry (data = errno) in eventlist when there
 *    is room, and a receipt (data = 0) for each EV_RECEIPT change that took;
 *    with no room left, kevent() returns -1/errno and stops, as BSD does.  If
 *    any such entry was produced, kevent() returns their count and does not
 *    wait.
 *  - BSD drops knotes when an fd is closed: a stale entry is noticed when
 *    epoll answers ENOENT/EBADF and is then forgotten (EV_ADD starts afresh,
 *    EV_DELETE gets ENOENT).
 *  - Output: one kevent per ready (fd, filter); EPOLLHUP/EPOLLRDHUP/EPOLLERR
 *    set EV_EOF (and report readiness) on the read filter, EPOLLHUP/EPOLLERR
 *    on the write filter.  If an epoll event yields two kevents and only one
 *    fits, the other is left for the next call (it is still ready).
 *  - fork(): as on BSD the child cannot use its parent's kqueues (kevent()
 *    fails with EBADF); the inherited epoll fds are left open, not closed.
 *
 * Not emulated: other filters, EV_ONESHOT, EV_CLEAR, EV_DISPATCH (EINVAL);
 * data (bytes readable/writable) and fflags (socket error) are always 0;
 * close(kq) is not seen, its table lives until the number is reused; a fd
 * whose file stays open through a dup keeps its epoll registration after
 * close (a real kqueue would drop it).
 */
#define _GNU_SOURCE
#include <sys/event.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define KF_READ  1u
#define KF_WRITE 2u

typedef struct emu_knote {
    unsigned on, off;  /* KF_* registered, and of those, disabled */
    void *udata[2];    /* per filter: [0] read, [1] write */
} emu_knote_t;

typedef struct emu_kq {
    emu_knote_t *kn;   /* indexed by fd */
    int nkn;
    struct epoll_event *evs;
    int nevs;
} emu_kq_t;

static pthread_mutex_t emu_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t emu_once = PTHREAD_ONCE_INIT;
static emu_kq_t **emu_kqs;  /* indexed by kq fd */
static int emu_nkqs;

/* Return arr (of *n elements of size sz) grown to at least want elements,
 * zero-filled, updating *n; NULL if out of memory (arr is then unchanged). */
static void *emu_grow(void *arr, int *n, int want, size_t sz)
{
    int m = *n ? *n : 16;
    char *q;
    if (want <= *n)
        return arr;
    while (m < want)
        m *= 2;
    q = realloc(arr, (size_t)m * sz);
    if (!q)
        return NULL;
    memset(q + (size_t)*n * sz, 0, (size_t)(m - *n) * sz);
    *n = m;
    return q;
}

static void emu_free(emu_kq_t *kq)
{
    if (kq) {
        free(kq->kn);
        free(kq->evs);
        free(kq);
    }
}

static void emu_prepare(void) { pthread_mutex_lock(&emu_lock); }
static void emu_parent(void) { pthread_mutex_unlock(&emu_lock); }

static void emu_child(void)
{
    int i;
    for (i = 0; i < emu_nkqs; i++) {
        emu_free(emu_kqs[i]);
        emu_kqs[i] = NULL;
    }
    pthread_mutex_unlock(&emu_lock);
}

static void emu_setup(void)
{
    pthread_atfork(emu_prepare, emu_parent, emu_child);
}

static emu_kq_t *emu_find(int kqfd)
{
    return kqfd >= 0 && kqfd < emu_nkqs ? emu_kqs[kqfd] : NULL;
}

int kqueue(void)
{
    emu_kq_t *kq, **kqs;
    int fd;

    pthread_once(&emu_once, emu_setup);
    fd = epoll_create1(0);
    if (fd < 0)
        return -1;
    kq = calloc(1, sizeof *kq);
    pthread_mutex_lock(&emu_lock);
    kqs = kq ? emu_grow(emu_kqs, &emu_nkqs, fd + 1, sizeof *emu_kqs) : NULL;
    if (!kqs) {
        pthread_mutex_unlock(&emu_lock);
        free(kq);
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    emu_kqs = kqs;
    emu_free(emu_kqs[fd]);
    emu_kqs[fd] = kq;
    pthread_mutex_unlock(&emu_lock);
    return fd;
}

static int emu_ctl(int kqfd, int op, int fd, const emu_knote_t *k)
{
    unsigned act = k->on & ~k->off;
    struct epoll_event e = { 0 };
    if (act & KF_READ)
        e.events |= EPOLLIN | EPOLLRDHUP;
    if (act & KF_WRITE)
        e.events |= EPOLLOUT;
    e.data.fd = fd;
    return epoll_ctl(kqfd, op, fd, &e) < 0 ? errno : 0;
}

/* Apply one change; returns 0 or an errno value. */
static int emu_apply(emu_kq_t *kq, int kqfd, const struct kevent *kev)
{
    unsigned bit = kev->filter == EVFILT_READ ? KF_READ
                 : kev->filter == EVFILT_WRITE ? KF_WRITE : 0;
    unsigned short fl = kev->flags;
    int fd = (int)kev->ident, op, err;
    emu_knote_t *k, nk, *kn;

    if (!bit || (fl & (EV_ONESHOT | EV_CLEAR | EV_DISPATCH)))
        return EINVAL;
    if (kev->ident > (uintptr_t)0x7fffffff)
        return EBADF;
    if (!(kn = emu_grow(kq->kn, &kq->nkn, fd + 1, sizeof *kq->kn)))
        return ENOMEM;
    kq->kn = kn;
    k = &kq->kn[fd];
    nk = *k;
    if (fl & EV_DELETE) {
        if (!(k->on & bit))
            return ENOENT;
        nk.on &= ~bit;
        nk.off &= ~bit;
    } else if (fl & EV_ADD) {
        nk.on |= bit;
        nk.off &= ~bit;  /* adding enables, unless EV_DISABLE says otherwise */
        nk.udata[bit - 1] = kev->udata;
    } else if (!(k->on & bit)) {
        return ENOENT;   /* EV_ENABLE/EV_DISABLE need an existing knote */
    }
    if (!(fl & EV_DELETE)) {
        if (fl & EV_DISABLE)
            nk.off |= bit;
        else if (fl & EV_ENABLE)
            nk.off &= ~bit;
    }
    op = !k->on ? EPOLL_CTL_ADD : !nk.on ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    err = emu_ctl(kqfd, op, fd, &nk);
    if (err == EEXIST && op == EPOLL_CTL_ADD) {
        err = emu_ctl(kqfd, EPOLL_CTL_MOD, fd, &nk);
    } else if ((err == ENOENT || err == EBADF) && op != EPOLL_CTL_ADD) {
        /* The fd was closed since: its knotes are gone, as on BSD. */
        memset(k, 0, sizeof *k);
        if (err == EBADF || !(fl & EV_ADD) || (fl & EV_DELETE))
            return err;
        nk.on = bit;
        nk.off &= bit;
        nk.udata[2 - bit] = NULL;
        err = emu_ctl(kqfd, EPOLL_CTL_ADD, fd, &nk);
    }
    if (!err)
        *k = nk;
    return err;
}

/* Turn ready epoll events into kevents; called with the lock held. */
static int emu_collect(emu_kq_t *kq, const struct epoll_event *evs, int r,
                       struct kevent *out, int nout)
{
    int i, n = 0;
    for (i = 0; i < r && n < nout; i++) {
        int fd = evs[i].data.fd;
        uint32_t e = evs[i].events;
        unsigned act = fd < kq->nkn ? kq->kn[fd].on & ~kq->kn[fd].off : 0;
        if ((act & KF_READ) && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
            EV_SET(&out[n], (uintptr_t)fd, EVFILT_READ,
                   (e & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) ? EV_EOF : 0, 0, 0,
                   kq->kn[fd].udata[0]);
            n++;
        }
        if ((act & KF_WRITE) && (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && n < nout) {
            EV_SET(&out[n], (uintptr_t)fd, EVFILT_WRITE,
                   (e & (EPOLLHUP | EPOLLERR)) ? EV_EOF : 0, 0, 0, kq->kn[fd].udata[1]);
            n++;
        }
    }
    return n;
}

int kevent(int kqfd, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout)
{
    struct epoll_event *buf;
    emu_kq_t *kq;
    int i, r, ms = -1, nerr = 0;

    pthread_mutex_lock(&emu_lock);
    kq = emu_find(kqfd);
    if (!kq || nchanges < 0 || nevents < 0) {
        pthread_mutex_unlock(&emu_lock);
        errno = kq ? EINVAL : EBADF;
        return -1;
    }
    for (i = 0; i < nchanges; i++) {
        struct kevent c = changelist[i];  /* eventlist may alias changelist */
        int err = emu_apply(kq, kqfd, &c);
        if (!err && !(c.flags & EV_RECEIPT))
            continue;
        if (nerr == nevents) {
            if (!err)
                continue;
            pthread_mutex_unlock(&emu_lock);
            errno = err;
            return -1;
        }
        c.flags = EV_ERROR;
        c.data = err;
        eventlist[nerr++] = c;
    }
    buf = nerr || !nevents ? NULL : emu_grow(kq->evs, &kq->nevs, nevents, sizeof *buf);
    if (buf)
        kq->evs = buf;
    pthread_mutex_unlock(&emu_lock);
    if (!buf) {
        if (nerr || !nevents)
            return nerr;
        errno = ENOMEM;
        return -1;
    }
    if (timeout && timeout->tv_sec >= 2000000)
        ms = 2000000000;
    else if (timeout)
        ms = (int)(timeout->tv_sec * 1000 + (timeout->tv_nsec + 999999) / 1000000);
    r = epoll_wait(kqfd, buf, nevents, ms);
    if (r <= 0)
        return r;

    pthread_mutex_lock(&emu_lock);
    kq = emu_find(kqfd);
    r = kq ? emu_collect(kq, buf, r, eventlist, nevents) : 0;
    pthread_mutex_unlock(&emu_lock);
    return r;
}
