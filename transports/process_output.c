/* process_output.c -- run a program and collect what it writes and how it
 * ended, as a Deferred (Twisted's getProcessOutput, getProcessValue and
 * getProcessOutputAndValue, from twisted.internet.utils).
 *
 * One process protocol, the collector, serves all three: it gathers stdout
 * and stderr into growing buffers (each capped), and fires the Deferred
 * from process_ended -- when the child has been reaped and both pipes have
 * closed -- so whoever the Deferred calls back knows nothing of the child
 * is left running.  Built only on the public API of tw_process.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_process.h"

#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20)

typedef enum collect_mode {
    COLLECT_OUTPUT, /* getProcessOutput */
    COLLECT_VALUE,  /* getProcessValue */
    COLLECT_BOTH,   /* getProcessOutputAndValue */
} collect_mode_t;

typedef struct buf {
    char *p; /* NUL-terminated whenever len > 0 */
    size_t len, cap;
} buf_t;

typedef struct collector collector_t;

/* What the canceller is given.  It outlives the collector when the reactor
 * is freed with the child running (destroy without process_ended: d stays
 * unfired, and may be cancelled later), so it lives as long as d can be
 * cancelled: until d fires or is freed (a step of d frees it). */
typedef struct cancel_handle {
    collector_t *c; /* NULL once the collector is gone */
} cancel_handle_t;

struct collector {
    tw_process_protocol_t base; /* first */
    cancel_handle_t *handle;    /* NULL once d has fired or been freed */
    tw_deferred_t *d;           /* our reference, until process_ended */
    collect_mode_t mode;
    bool errors_too;
    bool cancelled;             /* d was cancelled: it has fired already */
    bool failed;                /* d errbacks with fail (NULL: out of memory) */
    size_t max;                 /* per stream */
    buf_t out, err;
    tw_failure_t *fail;         /* set: d errbacks with it (EFBIG, ENOMEM, stderr) */
};

void tw_process_result_free(void *res)
{
    tw_process_result_t *pr = res;
    if (!pr)
        return;
    free(pr->out);
    free(pr->err);
    free(pr);
}

/* Give up on the child: remember why (the first reason wins), and close our
 * ends of its pipes so process_ended comes even if a grandchild holds them;
 * `kill` also ends the child itself. */
static void collector_stop(collector_t *c, tw_failure_t *why, bool and_kill)
{
    if (c->failed) {
        tw_failure_free(why);
    } else {
        c->failed = true;
        c->fail = why;
    }
    if (and_kill)
        tw_process_signal(c->base.process, SIGKILL);
    tw_transport_lose_connection(tw_process_transport(c->base.process));
}

static void buf_append(collector_t *c, buf_t *b, const void *data, size_t len)
{
    if (c->failed || c->cancelled)
        return; /* already giving up: the rest is dropped */
    if (len > c->max - b->len) {
        collector_stop(c,
                       tw_failure_new("process", -EFBIG,
                                      "the child wrote more than %zu bytes on one stream",
                                      c->max),
                       true);
        return;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        if (cap > c->max + 1)
            cap = c->max + 1;
        char *p = realloc(b->p, cap);
        if (!p) {
            collector_stop(c, tw_failure_new("process", -ENOMEM, "cannot keep the output"),
                           true);
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void collector_data(tw_process_protocol_t *p, int fd, const void *data, size_t len)
{
    collector_t *c = (collector_t *)p;
    if (c->mode == COLLECT_VALUE || (fd != 1 && fd != 2))
        return;
    if (fd == 1 || (c->mode == COLLECT_OUTPUT && c->errors_too)) {
        buf_append(c, &c->out, data, len);
    } else if (c->mode == COLLECT_BOTH) {
        buf_append(c, &c->err, data, len);
    } else if (!c->failed && !c->cancelled) {
        /* getProcessOutput without errors_too: any stderr output is a
         * failure.  As Twisted does, stop listening (the pipes close; the
         * child is not killed) and report it once the child has ended. */
        char text[81];
        size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
        memcpy(text, data, n);
        while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
            n--;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
                text[i] = ' ';
        text[n] = '\0';
        collector_stop(c, tw_failure_new("process", -EIO, "got stderr output: %s", text), false);
    }
}

/* Take a buffer's contents as a NUL-terminated string (never NULL). */
static char *buf_take(buf_t *b)
{
    char *s = b->p ? b->p : calloc(1, 1);
    b->p = NULL;
    b->len = b->cap = 0;
    return s;
}

static void collector_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    collector_t *c = (collector_t *)p;
    tw_deferred_t *d = c->d;
    c->d = NULL;
    if (c->cancelled) {
        /* the cancel fired d (with the cancelled failure) */
    } else if (c->failed) {
        tw_failure_t *f = c->fail; /* NULL stands for out of memory */
        c->fail = NULL;
        tw_deferred_errback(d, f);
    } else if (st->reason && st->reason->code != TW_EPROCEXIT &&
               st->reason->code != TW_EPROCSIGNAL) {
        /* The program could not be run (exec's errno), or some other
         * trouble the transport reported: the status's reason, copied (it
         * is borrowed for this call; NULL stands for out of memory). */
        tw_deferred_errback(d, tw_failure_copy(st->reason));
    } else {
        tw_process_result_t *res = calloc(1, sizeof *res);
        if (res) {
            res->out_len = c->out.len;
            res->out = buf_take(&c->out);
            res->err_len = c->err.len;
            res->err = buf_take(&c->err);
            res->exit_code = st->exit_code;
            res->signal = st->signal;
        }
        if (!res || !res->out || !res->err) {
            tw_process_result_free(res);
            tw_deferred_errback(d, tw_failure_new("process", -ENOMEM, "cannot make the result"));
        } else {
            tw_deferred_callback(d, res, tw_process_result_free);
        }
    }
    tw_deferred_unref(d);
}

static void collector_destroy(tw_process_protocol_t *p)
{
    collector_t *c = (collector_t *)p;
    if (c->handle)
        c->handle->c = NULL;
    tw_deferred_unref(c->d); /* only if process_ended never came (reactor freed) */
    free(c->out.p);
    free(c->err.p);
    tw_failure_free(c->fail);
    free(c);
}

static const tw_process_protocol_ops_t collector_ops = {
    .child_data_received = collector_data,
    .process_ended = collector_ended,
    .destroy = collector_destroy,
};

/* Cancelling the Deferred kills the child; the collector lives on until
 * process_ended (the transport owns it), and fires nothing more: not firing
 * here makes the Deferred errback with the cancelled failure. */
static void collector_cancel(tw_deferred_t *d, void *arg)
{
    (void)d;
    collector_t *c = ((cancel_handle_t *)arg)->c;
    if (!c)
        return; /* the reactor was freed: the child is no longer ours */
    c->cancelled = true;
    tw_process_signal(c->base.process, SIGKILL);
    tw_transport_lose_connection(tw_process_transport(c->base.process));
}

static void handle_free(void *a1, void *a2)
{
    (void)a2;
    cancel_handle_t *h = a1;
    if (h->c)
        h->c->handle = NULL;
    free(h);
}

/* d's first step: d has fired, so it can no longer be cancelled. */
static tw_outcome_t handle_done(tw_outcome_t in, void *a1, void *a2)
{
    handle_free(a1, a2);
    return in;
}

static tw_deferred_t *collect(tw_reactor_t *r, const char *path, char *const argv[],
                              const tw_spawn_options_t *opt, collect_mode_t mode,
                              bool errors_too, size_t max_output)
{
    static const tw_child_fd_t fds[] = {
        { 0, TW_FD_DEVNULL, -1 },
        { 1, TW_FD_READ, -1 },
        { 2, TW_FD_READ, -1 },
    };
    tw_spawn_options_t o = { 0 };
    if (opt)
        o = *opt;
    o.fds = fds;
    o.nfds = sizeof fds / sizeof fds[0];
    o.flags &= ~TW_SPAWN_PTY;

    collector_t *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->base.ops = &collector_ops;
    c->mode = mode;
    c->errors_too = errors_too;
    c->max = max_output ? max_output : DEFAULT_MAX_OUTPUT;
    if (c->max > SIZE_MAX - 2)
        c->max = SIZE_MAX - 2;
    c->handle = calloc(1, sizeof *c->handle);
    c->d = c->handle ? tw_deferred_new(collector_cancel, c->handle) : NULL;
    if (!c->d || tw_deferred_add_callbacks(c->d, handle_done, handle_done, c->handle, NULL,
                                           handle_free) != 0) {
        tw_deferred_unref(c->d);
        free(c->handle);
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    c->handle->c = c;
    int rc = tw_spawn_process(r, &c->base, path, argv, &o, NULL);
    if (rc != 0) {
        tw_deferred_unref(c->d); /* unfired: freed quietly (handle_free frees the handle) */
        free(c);
        errno = -rc;
        return NULL;
    }
    return tw_deferred_ref(c->d); /* the caller's; ours goes in process_ended */
}

tw_deferred_t *tw_get_process_output(tw_reactor_t *r, const char *path, char *const argv[],
                                     const tw_spawn_options_t *opt, bool errors_too,
                                     size_t max_output)
{
    return collect(r, path, argv, opt, COLLECT_OUTPUT, errors_too, max_output);
}

tw_deferred_t *tw_get_process_value(tw_reactor_t *r, const char *path, char *const argv[],
                                    const tw_spawn_options_t *opt)
{
    return collect(r, path, argv, opt, COLLECT_VALUE, false, 0);
}

tw_deferred_t *tw_get_process_output_and_value(tw_reactor_t *r, const char *path,
                                               char *const argv[],
                                               const tw_spawn_options_t *opt,
                                               size_t max_output)
{
    return collect(r, path, argv, opt, COLLECT_BOTH, false, max_output);
}
