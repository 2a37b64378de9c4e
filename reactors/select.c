/* select.c -- select(2) readiness backend.
 *
 * Cost: update is O(1) (O(maxfd) once, lazily, when the highest fd goes);
 * wait copies two fd_sets and scans 0..maxfd, so it is O(highest fd), not
 * O(watched).  Limit: descriptors must be below FD_SETSIZE (usually 1024);
 * update refuses larger ones with TW_EFDSETSIZE rather than overrun an fd_set.
 * The most portable backend; no kernel object, so reinit only forgets.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>
#include <sys/time.h>

typedef struct select_state {
    fd_set rfds, wfds; /* master interest sets */
    fd_set rset, wset; /* scratch copies handed to select() */
    int maxfd;         /* highest watched fd, or -1 */
    int maxfd_stale;   /* maxfd was removed: recompute before the next wait */
} select_state_t;

static int select_reinit(void *state)
{
    select_state_t *s = state;
    FD_ZERO(&s->rfds);
    FD_ZERO(&s->wfds);
    s->maxfd = -1;
    s->maxfd_stale = 0;
    return 0;
}

static int select_init(void **state)
{
    select_state_t *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    select_reinit(s);
    *state = s;
    return 0;
}

static void select_fini(void *state)
{
    free(state);
}

static int select_update(void *state, int fd, uint32_t old_mask, uint32_t new_mask)
{
    select_state_t *s = state;

    (void)old_mask;
    if (fd < 0)
        return -EBADF;
    if (fd >= FD_SETSIZE)
        return TW_EFDSETSIZE;
    if (new_mask & TW__READ)
        FD_SET(fd, &s->rfds);
    else
        FD_CLR(fd, &s->rfds);
    if (new_mask & TW__WRITE)
        FD_SET(fd, &s->wfds);
    else
        FD_CLR(fd, &s->wfds);
    if (new_mask && fd > s->maxfd)
        s->maxfd = fd;
    else if (!new_mask && fd == s->maxfd)
        s->maxfd_stale = 1;
    return 0;
}

static int select_wait(void *state, tw__fired_t *fired, int max, int timeout_ms)
{
    select_state_t *s = state;
    struct timeval tv, *tvp = NULL;
    int r, fd, n = 0;

    if (max <= 0)
        return -EINVAL;
    if (s->maxfd_stale) {
        while (s->maxfd >= 0 && !FD_ISSET(s->maxfd, &s->rfds) && !FD_ISSET(s->maxfd, &s->wfds))
            s->maxfd--;
        s->maxfd_stale = 0;
    }
    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    s->rset = s->rfds;
    s->wset = s->wfds;
    r = select(s->maxfd + 1, &s->rset, &s->wset, NULL, tvp);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    /* r counts set bits, an fd ready both ways twice. */
    for (fd = 0; fd <= s->maxfd && r > 0 && n < max; fd++) {
        uint32_t mask = 0;
        if (FD_ISSET(fd, &s->rset)) {
            mask |= TW__READ;
            r--;
        }
        if (FD_ISSET(fd, &s->wset)) {
            mask |= TW__WRITE;
            r--;
        }
        if (mask) {
            fired[n].fd = fd;
            fired[n].mask = mask;
            n++;
        }
    }
    return n;
}

const tw__backend_t tw__backend = {
    "select", select_init, select_fini, select_update, select_wait, select_reinit
};
