/* stdio-echo -- upper-case standard input onto standard output, through the
 * reactor (Twisted's StandardIO).
 *
 *   printf 'hello\nworld\n' | stdio-echo        prints HELLO and WORLD
 *
 * Each complete line is written as soon as it arrives; at the end of input
 * the last, unterminated line (if any) is written, the output is flushed,
 * and the program exits 0.  It exits 1 if standard input or output fails
 * (the reader of its output went away, say). */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twine.h>

typedef struct upper {
    tw_protocol_t base; /* first: the transport hands us tw_protocol_t * */
    char line[4096];    /* the line being gathered */
    size_t len;
} upper_t;

static tw_reactor_t *reactor;
static int status = 1;
static bool lost;

static void flush_line(upper_t *u)
{
    for (size_t i = 0; i < u->len; i++)
        u->line[i] = (char)toupper((unsigned char)u->line[i]);
    tw_transport_write(u->base.transport, u->line, u->len);
    u->len = 0;
}

static void upper_data(tw_protocol_t *p, const void *data, size_t len)
{
    upper_t *u = (upper_t *)p;
    const char *d = data;
    for (size_t i = 0; i < len; i++) {
        u->line[u->len++] = d[i];
        if (d[i] == '\n' || u->len == sizeof u->line) /* a very long line goes in pieces */
            flush_line(u);
    }
}

/* The end of standard input: write what is left, then close once the output
 * has been sent (without eof_received the transport would close at once,
 * which is fine too -- this shows where a protocol gets the last word). */
static void upper_eof(tw_protocol_t *p)
{
    upper_t *u = (upper_t *)p;
    flush_line(u);
    tw_transport_lose_connection(p->transport);
}

static void upper_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    (void)p;
    if (why)
        fprintf(stderr, "stdio-echo: %s\n", why->message);
    status = why ? 1 : 0;
    lost = true;
    tw_reactor_stop(reactor);
}

static const tw_protocol_ops_t upper_ops = {
    .data_received = upper_data,
    .eof_received = upper_eof,
    .connection_lost = upper_lost,
};

int main(void)
{
    static upper_t upper = { .base.ops = &upper_ops };
    if (tw_reactor_new(&reactor) != 0)
        return 1;
    tw_transport_t *t;
    int rc = tw_stdio_open(reactor, &upper.base, 0, 1, 0, &t);
    if (rc != 0) {
        fprintf(stderr, "stdio-echo: %s\n", tw_strerror(rc));
        tw_reactor_free(reactor);
        return 1;
    }
    tw_reactor_run(reactor, TW_RUN_SIGNALS);
    if (!lost) {                        /* stopped by a signal: close now */
        tw_transport_abort_connection(t);
        while (!lost && tw_reactor_iterate(reactor, 0) >= 0)
            ;
    }
    tw_reactor_free(reactor);
    return status;
}
