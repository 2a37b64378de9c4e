/* backend.h -- the interface between the reactor core and a readiness backend.
 *
 * Private: never installed.  Each file in reactors/ implements this table and
 * defines the one strong symbol the core refers to:
 *
 *     const tw__backend_t tw__backend = { "epoll", epoll_init, ... };
 *
 * Nothing in the core defines a default, so a program links only when exactly
 * one backend library (libtwine-select, -poll, -epoll, -kqueue or -default)
 * follows -ltwine on the link line.  See doc/backends.md.
 *
 * Rules for a backend:
 *  - It includes this header and system headers only, and calls nothing in the
 *    core: it fills an array of ready descriptors and returns.
 *  - It knows nothing of transports or callbacks.  The core re-checks each
 *    descriptor's current interest before dispatching, so reporting an fd that
 *    an earlier callback in the same batch has removed is harmless.
 *  - Readiness is level-triggered: an fd that stays ready is reported again by
 *    the next wait.  Errors and hang-ups are reported as readiness in every
 *    direction the fd is interested in, so the callback's read or write sees it.
 *  - All functions return 0 (or a count) on success and a negative errno-style
 *    code on failure; they never print and never abort.
 */
#ifndef TW_BACKEND_H
#define TW_BACKEND_H

#include <stdint.h>

#define TW__READ  1u
#define TW__WRITE 2u

/* One ready descriptor, filled in by wait().  `gen` belongs to the core: the
 * backend neither reads nor writes it. */
typedef struct tw__fired {
    int fd;
    uint32_t mask; /* TW__READ | TW__WRITE, the directions that are ready */
    uint32_t gen;
} tw__fired_t;

typedef struct tw__backend {
    /* Name reported by tw_reactor_backend_name(): "select", "poll", ... */
    const char *name;

    /* Create the backend state for one reactor and store it in *state.
     * Called once by tw_reactor_new().  Every descriptor the backend creates
     * is close-on-exec.  Returns 0 or -errno (-ENOMEM, -EMFILE, ...). */
    int (*init)(void **state);

    /* Release the state made by init() (and any kernel object it holds).
     * Called once by tw_reactor_free(); state may be NULL. */
    void (*fini)(void *state);

    /* Change the interest of `fd` from old_mask to new_mask (each a subset of
     * TW__READ | TW__WRITE, and never equal).  old_mask == 0 means the fd is
     * new to the backend, new_mask == 0 that it is to be forgotten; the core
     * always forgets an fd before the application may close it.  Returns 0 or
     * -errno; on failure the backend's interest for fd is unchanged.  The
     * select backend returns TW_EFDSETSIZE for fd >= FD_SETSIZE. */
    int (*update)(void *state, int fd, uint32_t old_mask, uint32_t new_mask);

    /* Wait until at least one descriptor is ready or timeout_ms passes
     * (-1: no limit, 0: do not block).  Fill fired[0..n) with the ready
     * descriptors (n <= max; an fd appears at most once per direction) and
     * return n, or return -errno.  An interrupted wait (EINTR) returns 0.
     * The core sizes `max` to at least twice the number of watched
     * descriptors, so no ready fd is ever left out. */
    int (*wait)(void *state, tw__fired_t *fired, int max, int timeout_ms);

    /* After fork(), in the child: drop every registration and any kernel
     * object shared with the parent, and start empty, as if just init()ed.
     * The core then calls update(fd, 0, mask) for each watched descriptor.
     * Returns 0 or -errno. */
    int (*reinit)(void *state);
} tw__backend_t;

/* Defined by exactly one backend library. */
extern const tw__backend_t tw__backend;

/* twine's own error code for a descriptor select(2) cannot hold (see
 * tw_error.h, which the core includes; repeated here so that backends need
 * include nothing else). */
#define TW_EFDSETSIZE (-20003)

#endif
