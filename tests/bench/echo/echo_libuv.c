/*
 * echo_libuv.c - echo server, the idiomatic libuv way:
 * uv_tcp_t + uv_listen + uv_read_start; alloc_cb mallocs the suggested
 * size, read_cb hands that buffer to uv_write, write_cb frees it.
 * Reading is paused while more than HIGH_WM bytes are queued for writing.
 *
 * usage: echo_libuv PORT
 *
 * Copied from the shared benchmark harness (shared/bench/echo_libuv.c, 2026-11-25) into
 * tests/bench/echo/ so that `make bench` does not depend on it; unchanged apart from this note.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <uv.h>

#define HIGH_WM (1024 * 1024)

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
};

static uv_loop_t *loop;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void close_cb(uv_handle_t *h)
{
    free(h);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    uv_stream_t *s = req->handle;
    free(w->buf.base);
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, close_cb);
        return;
    }
    /* resume reading once the write queue has drained (see read_cb) */
    if (s->data && uv_stream_get_write_queue_size(s) < HIGH_WM / 4 && !uv_is_closing((uv_handle_t *)s)) {
        s->data = NULL;
        uv_read_start(s, alloc_cb, read_cb);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        struct wreq *w = malloc(sizeof *w);
        w->buf = uv_buf_init(buf->base, (unsigned)nread);
        if (uv_write(&w->req, s, &w->buf, 1, write_cb) < 0) {
            free(buf->base);
            free(w);
            uv_close((uv_handle_t *)s, close_cb);
            return;
        }
        if (uv_stream_get_write_queue_size(s) > HIGH_WM) {
            uv_read_stop(s);
            s->data = (void *)1; /* paused */
        }
        return;
    }
    free(buf->base);
    if (nread < 0 && !uv_is_closing((uv_handle_t *)s)) /* UV_EOF or error */
        uv_close((uv_handle_t *)s, close_cb);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof *client);
    uv_tcp_init(loop, client);
    client->data = NULL;
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, close_cb);
        return;
    }
    uv_tcp_nodelay(client, 1);
    uv_read_start((uv_stream_t *)client, alloc_cb, read_cb);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 1;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &a);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (r != 0) {
        fprintf(stderr, "listen: %s\n", uv_strerror(r));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
