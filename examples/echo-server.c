/* echo-server -- an RFC 862 echo daemon.
 *
 *   echo-server [ENDPOINT]      default tcp:8000:interface=127.0.0.1
 *
 * ENDPOINT is a server endpoint string (doc/endpoints.md): tcp:PORT:interface=ADDR,
 * tcp6:..., unix:/path:mode=660, ...  On SIGINT or SIGTERM it stops listening,
 * lets every connection send what is queued for up to 5 seconds, aborts what
 * is left, frees everything and exits 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <twine.h>
#include <tw_endpoint.h>
#include <tw_wire.h>

#define DRAIN_LIMIT TW_SEC(5)

static struct server {
    tw_reactor_t *r;
    tw_wire_factory_t echo;
    tw_listener_t *listener;
    tw_timer_t drain;
    tw_time_t deadline;
} srv;

/* Shutting down: stop once every connection is gone, or the time is up. */
static void on_drain(tw_timer_t *t, void *arg)
{
    (void)arg;
    tw_factory_t *f = &srv.echo.base;
    if (tw_factory_connection_count(f) == 0) {
        tw_reactor_stop(srv.r);
        return;
    }
    if (tw_reactor_now(srv.r) >= srv.deadline) {
        tw_log(TW_LOG_WARN, "echo-server", "aborting %d connections that did not drain",
               tw_factory_connection_count(f));
        tw_factory_abort_connections(f);
        srv.deadline = TW_TIME_MAX; /* next time round they are gone */
    }
    tw_timer_start(t, TW_MSEC(20));
}

static void on_signal(tw_reactor_t *r, int signo, void *arg)
{
    (void)arg;
    if (!srv.listener)
        return; /* already shutting down */
    tw_log(TW_LOG_INFO, "echo-server", "%s: closing %d connections", strsignal(signo),
           tw_factory_connection_count(&srv.echo.base));
    tw_listener_close(srv.listener);
    srv.listener = NULL;
    tw_factory_lose_connections(&srv.echo.base);
    srv.deadline = tw_reactor_now(r) + DRAIN_LIMIT;
    tw_timer_start(&srv.drain, 0);
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "tcp:8000:interface=127.0.0.1";
    char err[256];
    int rc = tw_reactor_new(&srv.r);
    if (rc) {
        fprintf(stderr, "echo-server: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_wire_echo_factory_init(&srv.echo);
    tw_timer_init(&srv.drain, srv.r, on_drain, NULL);
    rc = tw_endpoint_listen(srv.r, where, &srv.echo.base, &srv.listener, err, sizeof err);
    if (rc) {
        fprintf(stderr, "echo-server: %s\n", err);
        tw_reactor_free(srv.r);
        return 1;
    }
    tw_reactor_on_signal(srv.r, SIGINT, on_signal, NULL);
    tw_reactor_on_signal(srv.r, SIGTERM, on_signal, NULL);
    printf("echo-server: listening on %s (port %d), %s backend\n", where,
           tw_listener_port(srv.listener), tw_reactor_backend_name());
    fflush(stdout);

    rc = tw_reactor_run(srv.r, TW_RUN_DEFAULT);
    tw_timer_cancel(&srv.drain);
    tw_listener_close(srv.listener);
    tw_reactor_free(srv.r);
    return rc == 0 ? 0 : 1;
}
