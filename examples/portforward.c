/* portforward -- forward every connection to another address.
 *
 *   portforward LISTEN_ENDPOINT CONNECT_ENDPOINT
 *   portforward tcp:9000:interface=127.0.0.1 tcp:host=127.0.0.1:port=8000
 *
 * LISTEN_ENDPOINT is a server endpoint string, CONNECT_ENDPOINT a client one
 * (doc/endpoints.md).  On SIGINT or SIGTERM it stops listening, lets the
 * connections send what is queued for up to 5 seconds, aborts what is left
 * and exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <twine.h>
#include <tw_endpoint.h>
#include <tw_portforward.h>

#define DRAIN_LIMIT TW_SEC(5)

static struct forwarder {
    tw_reactor_t *r;
    tw_proxy_server_factory_t fwd;
    tw_listener_t *listener;
    tw_timer_t drain;
    tw_time_t deadline;
} fw;

static void on_connected(tw_transport_t *in, tw_transport_t *out, void *arg)
{
    (void)out, (void)arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[64] = "a local peer";
    memset(&ss, 0, sizeof ss);
    if (tw_transport_peer_address(in, &ss, &len) != 0)
        strcpy(host, "an unknown peer");
    else if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    tw_log(TW_LOG_INFO, "portforward", "forwarding a connection from %s (%d open)", host,
           tw_factory_connection_count(&fw.fwd.base));
}

static void on_drain(tw_timer_t *t, void *arg)
{
    (void)arg;
    tw_factory_t *f = &fw.fwd.base;
    if (tw_factory_connection_count(f) == 0) {
        tw_reactor_stop(fw.r);
        return;
    }
    if (tw_reactor_now(fw.r) >= fw.deadline) {
        tw_factory_abort_connections(f); /* each takes its partner with it */
        fw.deadline = TW_TIME_MAX;
    }
    tw_timer_start(t, TW_MSEC(20));
}

static void on_signal(tw_reactor_t *r, int signo, void *arg)
{
    (void)arg;
    if (!fw.listener)
        return;
    tw_log(TW_LOG_INFO, "portforward", "%s: closing %d connections", strsignal(signo),
           tw_factory_connection_count(&fw.fwd.base));
    tw_listener_close(fw.listener);
    fw.listener = NULL;
    tw_factory_lose_connections(&fw.fwd.base);
    fw.deadline = tw_reactor_now(r) + DRAIN_LIMIT;
    tw_timer_start(&fw.drain, 0);
}

int main(int argc, char **argv)
{
    char err[256];
    if (argc != 3) {
        fprintf(stderr, "usage: portforward LISTEN_ENDPOINT CONNECT_ENDPOINT\n"
                        "  e.g. portforward tcp:9000 tcp:host=127.0.0.1:port=8000\n");
        return 2;
    }
    tw_endpoint_t ep;
    if (tw_endpoint_parse_client(argv[2], &ep, err, sizeof err) != 0) {
        fprintf(stderr, "portforward: %s\n", err);
        return 2;
    }
    int rc = tw_reactor_new(&fw.r);
    if (rc) {
        fprintf(stderr, "portforward: %s\n", tw_strerror(rc));
        return 1;
    }
    rc = tw_proxy_server_factory_init(&fw.fwd, fw.r, argv[2]);
    if (rc) {
        fprintf(stderr, "portforward: %s: %s\n", argv[2], tw_strerror(rc));
        tw_reactor_free(fw.r);
        return 2;
    }
    fw.fwd.connected = on_connected;
    tw_timer_init(&fw.drain, fw.r, on_drain, NULL);
    rc = tw_endpoint_listen(fw.r, argv[1], &fw.fwd.base, &fw.listener, err, sizeof err);
    if (rc) {
        fprintf(stderr, "portforward: %s\n", err);
        tw_reactor_free(fw.r);
        return 1;
    }
    tw_reactor_on_signal(fw.r, SIGINT, on_signal, NULL);
    tw_reactor_on_signal(fw.r, SIGTERM, on_signal, NULL);
    printf("portforward: %s -> %s, %s backend\n", argv[1], argv[2],
           tw_reactor_backend_name());
    fflush(stdout);

    rc = tw_reactor_run(fw.r, TW_RUN_DEFAULT);
    tw_timer_cancel(&fw.drain);
    tw_listener_close(fw.listener);
    tw_reactor_free(fw.r);
    return rc == 0 ? 0 : 1;
}
