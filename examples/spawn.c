/* spawn -- run a command and show what it writes, line by line.
 *
 *   spawn CMD [ARGS...]
 *
 * Runs CMD (searched for in PATH) with our standard input, prints each line
 * it writes on stdout as "out| LINE" and on stderr as "err| LINE", then
 * says how it ended ("exited with code N", "killed by signal N (SIGX)", or
 * why it could not be run) and exits with its exit code: 128 + N when a
 * signal killed it, 127 when it could not be run.  SIGINT and SIGTERM are
 * passed on to the child. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twine.h>

typedef struct line_buf {
    char *data;
    size_t len, cap;
} line_buf_t;

typedef struct shower {
    tw_process_protocol_t base; /* first: the process hands us tw_process_protocol_t * */
    tw_process_t *proc;
    line_buf_t partial[3];      /* an unfinished line per fd (1 and 2) */
    int status;                 /* our exit status, once the child has ended */
} shower_t;

static tw_reactor_t *reactor;

static void show(int fd, const char *line, size_t len)
{
    printf("%s| %.*s\n", fd == 2 ? "err" : "out", (int)len, line);
}

static void shower_made(tw_process_protocol_t *p, tw_process_t *proc)
{
    ((shower_t *)p)->proc = proc;
}

/* Whole lines are shown at once; the rest waits for its newline. */
static void shower_data(tw_process_protocol_t *p, int fd, const void *data, size_t len)
{
    line_buf_t *b = &((shower_t *)p)->partial[fd == 2 ? 2 : 1];
    const char *s = data, *end = s + len;
    for (const char *nl; (nl = memchr(s, '\n', (size_t)(end - s))); s = nl + 1) {
        if (b->len) { /* finish the line begun earlier */
            printf("%s| %.*s%.*s\n", fd == 2 ? "err" : "out", (int)b->len, b->data,
                   (int)(nl - s), s);
            b->len = 0;
        } else {
            show(fd, s, (size_t)(nl - s));
        }
    }
    size_t rest = (size_t)(end - s);
    if (rest) {
        if (b->len + rest > b->cap) {
            size_t cap = (b->len + rest) * 2;
            char *d = realloc(b->data, cap);
            if (!d) { /* show what we have rather than lose it */
                show(fd, b->data, b->len);
                b->len = 0;
                show(fd, s, rest);
                return;
            }
            b->data = d;
            b->cap = cap;
        }
        memcpy(b->data + b->len, s, rest);
        b->len += rest;
    }
}

/* The child closed its end: a last line without a newline is still a line. */
static void shower_pipe_lost(tw_process_protocol_t *p, int fd)
{
    line_buf_t *b = &((shower_t *)p)->partial[fd == 2 ? 2 : 1];
    if (b->len)
        show(fd, b->data, b->len);
    b->len = 0;
}

/* The child was reaped and every pipe has closed: the last call. */
static void shower_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    shower_t *sh = (shower_t *)p;
    fflush(stdout);
    fprintf(stderr, "spawn: %s\n", st->reason ? st->reason->message : "exited with code 0");
    if (st->signal)
        sh->status = 128 + st->signal;
    else if (st->exit_code >= 0)
        sh->status = st->exit_code;
    else
        sh->status = 127; /* it could not be run */
    sh->proc = NULL;
    tw_reactor_stop(reactor);
}

static const tw_process_protocol_ops_t shower_ops = {
    .connection_made = shower_made,
    .child_data_received = shower_data,
    .child_connection_lost = shower_pipe_lost,
    .process_ended = shower_ended,
    /* no destroy: the protocol is static */
};

static shower_t shower = { .base = { &shower_ops, NULL }, .status = 1 };

static void pass_on(tw_reactor_t *r, int signo, void *arg)
{
    (void)r, (void)arg;
    if (shower.proc)
        tw_process_signal(shower.proc, signo);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: spawn CMD [ARGS...]\n");
        return 2;
    }
    int rc = tw_reactor_new(&reactor);
    if (rc != 0) {
        fprintf(stderr, "spawn: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_reactor_on_signal(reactor, SIGINT, pass_on, NULL);
    tw_reactor_on_signal(reactor, SIGTERM, pass_on, NULL);

    /* stdin is ours, shared; stdout and stderr come to us through pipes */
    const tw_child_fd_t fds[] = {
        { 0, TW_FD_INHERIT, 0 },
        { 1, TW_FD_READ, -1 },
        { 2, TW_FD_READ, -1 },
    };
    tw_spawn_options_t opt = { .fds = fds, .nfds = 3 };
    rc = tw_spawn_process(reactor, &shower.base, argv[1], argv + 1, &opt, NULL);
    if (rc != 0) {
        fprintf(stderr, "spawn: %s: %s\n", argv[1], tw_strerror(rc));
        tw_reactor_free(reactor);
        return 1;
    }
    tw_reactor_run(reactor, TW_RUN_DEFAULT);
    tw_reactor_free(reactor);
    free(shower.partial[1].data);
    free(shower.partial[2].data);
    return shower.status;
}
