/* echo-client -- send text to an echo server and print what comes back.
 *
 *   echo-client [ENDPOINT] [MESSAGE...]   default tcp:host=127.0.0.1:port=8000
 *
 * Sends each MESSAGE as a line (or, with none, "hello, world"), half-closes
 * its sending side, prints every byte that comes back, and exits 0 once the
 * server has echoed everything and closed.  A refused or failed connection
 * exits 1 with the reason. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twine.h>
#include <tw_endpoint.h>

typedef struct client {
    tw_protocol_t base; /* first: the transport hands us tw_protocol_t * */
    int argc;
    char **argv;
    size_t sent, received;
} client_t;

static tw_reactor_t *reactor;
static client_t client;
static int status = 1;

static void client_made(tw_protocol_t *p, tw_transport_t *t)
{
    client_t *c = (client_t *)p;
    static char *hello[] = { "hello, world" };
    char **msgs = c->argc ? c->argv : hello;
    int n = c->argc ? c->argc : 1;
    for (int i = 0; i < n; i++) {
        struct iovec iov[2] = { { msgs[i], strlen(msgs[i]) }, { "\n", 1 } };
        tw_transport_writev(t, iov, 2);
        c->sent += iov[0].iov_len + 1;
    }
    tw_transport_lose_write_connection(t); /* FIN: the server closes when done */
}

static void client_data(tw_protocol_t *p, const void *data, size_t len)
{
    client_t *c = (client_t *)p;
    fwrite(data, 1, len, stdout);
    c->received += len;
}

static void client_eof(tw_protocol_t *p)
{
    (void)p; /* the server is done; our side is already closed */
}

static void client_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    client_t *c = (client_t *)p;
    if (why)
        fprintf(stderr, "echo-client: %s\n", why->message);
    status = !why && c->received == c->sent ? 0 : 1;
    tw_reactor_stop(reactor);
}

static const tw_protocol_ops_t client_ops = {
    .connection_made = client_made,
    .data_received = client_data,
    .eof_received = client_eof,
    .connection_lost = client_lost,
};

static tw_protocol_t *build(tw_factory_t *f, const struct sockaddr *addr, socklen_t len)
{
    (void)f, (void)addr, (void)len;
    client.base.ops = &client_ops;
    return &client.base;
}

static void failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    (void)f, (void)c;
    fprintf(stderr, "echo-client: %s\n", why->message);
    tw_reactor_stop(reactor);
}

static const tw_factory_ops_t factory_ops = { .build_protocol = build,
                                              .connection_failed = failed };

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "tcp:host=127.0.0.1:port=8000";
    tw_factory_t factory = { .ops = &factory_ops };
    tw_connector_t *conn = NULL;
    char err[256];
    client.argc = argc > 2 ? argc - 2 : 0;
    client.argv = argv + 2;
    if (tw_reactor_new(&reactor) != 0)
        return 1;
    if (tw_endpoint_connect(reactor, where, &factory, &conn, err, sizeof err) != 0) {
        fprintf(stderr, "echo-client: %s\n", err);
        tw_reactor_free(reactor);
        return 1;
    }
    tw_reactor_run(reactor, TW_RUN_SIGNALS);
    tw_connector_free(conn);            /* aborts a connection still open (Ctrl-C) */
    tw_reactor_iterate(reactor, 0);     /* ...which finishes closing from the loop */
    tw_reactor_free(reactor);
    return status;
}
