/* poll.c -- poll(2) readiness backend.
 *
 * Cost: update is O(1) (a dense pollfd array plus an fd -> slot map; removal
 * moves the last slot into the hole); wait is O(watched) in the kernel and
 * again in the scan of revents.  No descriptor limit beyond RLIMIT_NOFILE and
 * memory (the map is an int per fd up to the highest fd seen).  Portable to
 * any POSIX system.  No kernel object: reinit only forgets.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

typedef struct poll_state {
    struct pollfd *pfds; /* dense: pfds[0..n) are the watched fds */
    int n, cap;
    int *slot;           /* slot[fd] = index in pfds, or -1 */
    int nslot;
} poll_state_t;

static int poll_init(void **state)
{
    poll_state_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    *state = s;
    return 0;
}

static void poll_fini(void *state)
{
    poll_state_t *s = state;
    if (!s)
        return;
    free(s->pfds);
    free(s->slot);
    free(s);
}

static short poll_events(uint32_t mask)
{
    return (short)(((mask & TW__READ) ? POLLIN : 0) | ((mask & TW__WRITE) ? POLLOUT : 0));
}

/* Make room for fd in the map and for one more pollfd. */
static int poll_reserve(poll_state_t *s, int fd)
{
    if (fd >= s->nslot) {
        int n = s->nslot ? s->nslot : 64, i;
        while (n <= fd)
            n = n > 0x3fffffff ? fd + 1 : n * 2;
        int *slot = realloc(s->slot, (size_t)n * sizeof *slot);
        if (!slot)
            return -ENOMEM;
        for (i = s->nslot; i < n; i++)
            slot[i] = -1;
        s->slot = slot;
        s->nslot = n;
    }
    if (s->n == s->cap) {
        int n = s->cap ? s->cap * 2 : 64;
        struct pollfd *pfds = realloc(s->pfds, (size_t)n * sizeof *pfds);
        if (!pfds)
            return -ENOMEM;
        s->pfds = pfds;
        s->cap = n;
    }
    return 0;
}

static int poll_update(void *state, int fd, uint32_t old_mask, uint32_t new_mask)
{
    poll_state_t *s = state;
    int i = fd >= 0 && fd < s->nslot ? s->slot[fd] : -1;

    (void)old_mask; /* the map knows whether fd is present */
    if (fd < 0)
        return -EBADF;
    if (new_mask == 0) {
        if (i >= 0) {
            s->pfds[i] = s->pfds[--s->n];
            s->slot[s->pfds[i].fd] = i;
            s->slot[fd] = -1;
        }
        return 0;
    }
    if (i < 0) {
        int rc = poll_reserve(s, fd);
        if (rc < 0)
            return rc;
        i = s->n++;
        s->slot[fd] = i;
        s->pfds[i].fd = fd;
        s->pfds[i].revents = 0;
    }
    s->pfds[i].events = poll_events(new_mask);
    return 0;
}

static int poll_wait(void *state, tw__fired_t *fired, int max, int timeout_ms)
{
    poll_state_t *s = state;
    int r, i, n = 0;

    if (max <= 0)
        return -EINVAL;
    r = poll(s->pfds, (nfds_t)s->n, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < s->n && r > 0 && n < max; i++) {
        short re = s->pfds[i].revents;
        uint32_t mask = 0;
        if (!re)
            continue;
        r--;
        if (re & (POLLIN | POLLHUP | POLLERR))
            mask |= TW__READ;
        if (re & (POLLOUT | POLLHUP | POLLERR))
            mask |= TW__WRITE;
        if (re & POLLNVAL) /* closed while watched: let read/write see EBADF */
            mask = TW__READ | TW__WRITE;
        fired[n].fd = s->pfds[i].fd;
        fired[n].mask = mask;
        n++;
    }
    return n;
}

static int poll_reinit(void *state)
{
    poll_state_t *s = state;
    int i;
    for (i = 0; i < s->n; i++)
        s->slot[s->pfds[i].fd] = -1;
    s->n = 0;
    return 0;
}

const tw__backend_t tw__backend = {
    "poll", poll_init, poll_fini, poll_update, poll_wait, poll_reinit
};
