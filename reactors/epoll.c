/* epoll.c -- Linux epoll(7) readiness backend.
 *
 * Cost: update is one epoll_ctl() (two when the kernel's view disagrees with
 * the core's and we retry); wait is O(ready), independent of how many fds
 * are watched.  Level-triggered.  Limits: Linux only; regular files cannot be
 * watched (EPERM); at most EPOLL_MAX_BATCH events are returned per wait (the
 * rest stay ready and come back on the next one).  Like every epoll user, it
 * relies on the core removing an fd before closing it: a registration made
 * through an fd whose file is still open elsewhere (dup, fork) outlives close.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EPOLL_FIRST_BATCH 64
#define EPOLL_MAX_BATCH   4096

typedef struct epoll_state {
    int epfd;
    int cap;                  /* entries in evs */
    struct epoll_event *evs;  /* reused by every wait */
} epoll_state_t;

static int epoll_init(void **state)
{
    epoll_state_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->evs = malloc(EPOLL_FIRST_BATCH * sizeof *s->evs);
    if (!s->evs) {
        free(s);
        return -ENOMEM;
    }
    s->cap = EPOLL_FIRST_BATCH;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = errno;
        free(s->evs);
        free(s);
        return -err;
    }
    *state = s;
    return 0;
}

static void epoll_fini(void *state)
{
    epoll_state_t *s = state;
    if (!s)
        return;
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->evs);
    free(s);
}

static int epoll_ctl_mask(int epfd, int op, int fd, uint32_t mask)
{
    struct epoll_event ev = { 0 };
    if (mask & TW__READ)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (mask & TW__WRITE)
        ev.events |= EPOLLOUT;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int epoll_update(void *state, int fd, uint32_t old_mask, uint32_t new_mask)
{
    epoll_state_t *s = state;
    int rc;

    if (fd < 0)
        return -EBADF;
    if (new_mask == 0) {
        rc = epoll_ctl_mask(s->epfd, EPOLL_CTL_DEL, fd, 0);
        /* Already gone (closed, or never accepted): forgetting succeeded. */
        if (rc == -ENOENT || rc == -EBADF || rc == -EPERM)
            rc = 0;
        return rc;
    }
    if (old_mask == 0) {
        rc = epoll_ctl_mask(s->epfd, EPOLL_CTL_ADD, fd, new_mask);
        if (rc == -EEXIST)
            rc = epoll_ctl_mask(s->epfd, EPOLL_CTL_MOD, fd, new_mask);
    } else {
        rc = epoll_ctl_mask(s->epfd, EPOLL_CTL_MOD, fd, new_mask);
        if (rc == -ENOENT)
            rc = epoll_ctl_mask(s->epfd, EPOLL_CTL_ADD, fd, new_mask);
    }
    return rc;
}

/* Not epoll_wait(): libc has that name. */
static int epoll_wait_ready(void *state, tw__fired_t *fired, int max, int timeout_ms)
{
    epoll_state_t *s = state;
    int want = max < EPOLL_MAX_BATCH ? max : EPOLL_MAX_BATCH;
    int n, i;

    if (want <= 0)
        return -EINVAL;
    if (want > s->cap) {
        struct epoll_event *evs = realloc(s->evs, (size_t)want * sizeof *evs);
        if (evs) {
            s->evs = evs;
            s->cap = want;
        } else {
            want = s->cap;  /* level-triggered: a smaller batch is still correct */
        }
    }
    n = epoll_wait(s->epfd, s->evs, want, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < n; i++) {
        uint32_t e = s->evs[i].events, mask = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            mask |= TW__READ;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            mask |= TW__WRITE;
        fired[i].fd = s->evs[i].data.fd;
        fired[i].mask = mask;
    }
    return n;
}

static int epoll_reinit(void *state)
{
    epoll_state_t *s = state;
    /* The child shares the parent's epoll instance: drop our reference and
     * start from a fresh, empty one. */
    if (s->epfd >= 0)
        close(s->epfd);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    return s->epfd < 0 ? -errno : 0;
}

const tw__backend_t tw__backend = {
    "epoll", epoll_init, epoll_fini, epoll_update, epoll_wait_ready, epoll_reinit
};
