/* chat-server -- a multi-user line chat (doc/chat.md).
 *
 *   chat-server [ENDPOINT] [NAME]   default tcp:8000:interface=127.0.0.1
 *
 * Join with `nc 127.0.0.1 8000` or `telnet 127.0.0.1 8000`: choose a
 * nickname, then type; /help lists the commands.  Joins and leaves are logged
 * on stderr (TWINE_LOG=debug for more).  On SIGINT or SIGTERM it stops
 * listening, tells every client the server is shutting down, lets them take
 * what they are owed for up to 5 seconds, aborts what is left, frees
 * everything and exits 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <twine.h>
#include <tw_chat.h>
#include <tw_endpoint.h>

#define DRAIN_LIMIT TW_SEC(5)

static struct server {
    tw_reactor_t *r;
    tw_chat_server_t *chat;
    tw_listener_t *listener;
    tw_timer_t drain;
    tw_time_t deadline;
} srv;

static void on_drain(tw_timer_t *t, void *arg)
{
    (void)arg;
    if (tw_chat_server_connections(srv.chat) == 0) {
        tw_reactor_stop(srv.r);
        return;
    }
    if (tw_reactor_now(srv.r) >= srv.deadline) {
        tw_log(TW_LOG_WARN, "chat-server", "aborting %d connections that did not drain",
               tw_chat_server_connections(srv.chat));
        tw_factory_abort_connections(tw_chat_server_factory(srv.chat));
        srv.deadline = TW_TIME_MAX;
    }
    tw_timer_start(t, TW_MSEC(20));
}

static void on_signal(tw_reactor_t *r, int signo, void *arg)
{
    (void)arg;
    if (!srv.listener)
        return;
    tw_log(TW_LOG_INFO, "chat-server", "%s: closing %d connections", strsignal(signo),
           tw_chat_server_connections(srv.chat));
    tw_listener_close(srv.listener);
    srv.listener = NULL;
    tw_chat_server_shutdown(srv.chat, "server shutting down: goodbye");
    srv.deadline = tw_reactor_now(r) + DRAIN_LIMIT;
    tw_timer_start(&srv.drain, 0);
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "tcp:8000:interface=127.0.0.1";
    tw_chat_options_t opt = { .name = argc > 2 ? argv[2] : NULL };
    char err[256];
    int rc = tw_reactor_new(&srv.r);
    if (rc) {
        fprintf(stderr, "chat-server: %s\n", tw_strerror(rc));
        return 1;
    }
    srv.chat = tw_chat_server_new(srv.r, &opt);
    if (!srv.chat) {
        fprintf(stderr, "chat-server: out of memory\n");
        tw_reactor_free(srv.r);
        return 1;
    }
    tw_timer_init(&srv.drain, srv.r, on_drain, NULL);
    rc = tw_endpoint_listen(srv.r, where, tw_chat_server_factory(srv.chat), &srv.listener, err,
                            sizeof err);
    if (rc) {
        fprintf(stderr, "chat-server: %s\n", err);
        tw_chat_server_free(srv.chat);
        tw_reactor_free(srv.r);
        return 1;
    }
    tw_reactor_on_signal(srv.r, SIGINT, on_signal, NULL);
    tw_reactor_on_signal(srv.r, SIGTERM, on_signal, NULL);
    printf("chat-server: listening on %s (port %d), %s backend; join with: nc 127.0.0.1 %d\n",
           where, tw_listener_port(srv.listener), tw_reactor_backend_name(),
           tw_listener_port(srv.listener));
    fflush(stdout);

    rc = tw_reactor_run(srv.r, TW_RUN_DEFAULT);
    tw_timer_cancel(&srv.drain);
    tw_listener_close(srv.listener);
    tw_chat_server_free(srv.chat);
    tw_reactor_iterate(srv.r, 0); /* let aborted connections finish and free it */
    tw_reactor_free(srv.r);
    return rc == 0 ? 0 : 1;
}
