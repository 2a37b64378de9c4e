/* twine_peer -- twine's framing receivers, as a server or a client, for
 * tests/interop/run.sh to drive against real Twisted programs.
 *
 *   twine_peer server line|netstring|int32 ENDPOINT [--max N]
 *   twine_peer client line|netstring|int32 ENDPOINT FILE [--max N]
 *                     [--write frames|one|chunk:N] [--timeout SECONDS]
 *
 * The server echoes every line or string it receives, framed the same way,
 * prints "port N" on stdout once listening, and logs each connection that
 * ends with a reason ("twine_peer: connection lost: line longer than ...") on
 * stderr.  --max sets the receiver's maximum length (default Twisted's:
 * 16384 for lines, 99999 otherwise).  On SIGINT or SIGTERM it closes
 * everything, frees everything and exits 0, so ASan's leak check sees a
 * clean process.
 *
 * The client connects, sends the frames listed in FILE, checks that each
 * comes back unchanged and in order, and exits 0, or 1 saying what was wrong.
 * FILE holds one directive per line ('#' starts a comment line):
 *
 *   size N       a frame of N bytes of a pattern (letters and digits for
 *                lines; every byte value, CR, LF, ',' and NUL included, for
 *                the binary framings)
 *   text STRING  the frame STRING, with C escapes: \r \n \t \0 \\ \xHH
 *   refuse N     a frame of N bytes that the peer must refuse: it must be the
 *                last directive; no echo is expected for it, and the peer
 *                must close the connection after echoing the frames before it.
 *                Only what shows the frame is too long is sent: the line and
 *                its "\r\n" (Twisted needs the end, or max + 2 bytes), the
 *                netstring's "N:", the 4-byte prefix.  So the peer has read
 *                everything when it closes and closes with a FIN: a close
 *                with unread input sends a RST, which may destroy the echoes
 *                still in flight.
 *
 * How the frames are written (--write): "frames" (default) one send call of
 * the receiver per frame, all from connection_made; "one" the whole stream,
 * framed by this program, in a single write; "chunk:N" the stream in pieces
 * of N bytes, one per millisecond (chunk:1 is byte by byte), so the peer's
 * parser sees every possible split.  Without a refused frame the client
 * closes once every echo is back.  --timeout (default 20 s) bounds the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twine.h>
#include <tw_basic.h>
#include <tw_endpoint.h>

enum framing { LINE, NETSTRING, INT32 };

static const char *const framing_names[] = { "line", "netstring", "int32" };

typedef struct frame {
    char *data;
    size_t len;
} frame_t;

/* The options of both modes. */
static struct config {
    enum framing framing;
    const char *endpoint;
    const char *file;
    size_t max;          /* 0: the receiver's default */
    enum { W_FRAMES, W_ONE, W_CHUNK } write;
    size_t chunk;
    double timeout;
} cfg = { .timeout = 20 };

static tw_reactor_t *reactor;

/* One connection, server or client.  Every receiver embeds tw_protocol_t
 * first, so the union sits at offset 0 and a pointer to the connection is a
 * pointer to whichever receiver is in use. */
typedef struct peer_conn {
    union {
        tw_protocol_t base;
        tw_line_receiver_t line;
        tw_netstring_receiver_t ns;
        tw_intn_receiver_t intn;
    } u;
    void (*on_frame)(struct peer_conn *c, const char *data, size_t len);
} peer_conn_t;

static void fail_exit(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail_exit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("twine_peer: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- receivers, shared by both modes ------------------------------------- */

static void on_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    peer_conn_t *c = (peer_conn_t *)lr;
    c->on_frame(c, line, len);
}

static void on_netstring(tw_netstring_receiver_t *ns, char *data, size_t len)
{
    peer_conn_t *c = (peer_conn_t *)ns;
    c->on_frame(c, data, len);
}

static void on_intn(tw_intn_receiver_t *ir, char *data, size_t len)
{
    peer_conn_t *c = (peer_conn_t *)ir;
    c->on_frame(c, data, len);
}

static const tw_line_receiver_ops_t line_ops = { .line_received = on_line };
static const tw_netstring_receiver_ops_t ns_ops = { .string_received = on_netstring };
static const tw_intn_receiver_ops_t intn_ops = { .string_received = on_intn };

/* Make c a receiver of the configured framing with protocol ops `ops`. */
static void conn_init(peer_conn_t *c, const tw_protocol_ops_t *ops)
{
    switch (cfg.framing) {
    case LINE:
        tw_line_receiver_init(&c->u.line, ops, &line_ops);
        if (cfg.max)
            tw_line_receiver_set_max_length(&c->u.line, cfg.max);
        break;
    case NETSTRING:
        tw_netstring_receiver_init(&c->u.ns, ops, &ns_ops);
        if (cfg.max)
            tw_netstring_receiver_set_max_length(&c->u.ns, cfg.max);
        break;
    case INT32:
        tw_intn_receiver_init(&c->u.intn, ops, &intn_ops, 4);
        if (cfg.max)
            tw_intn_receiver_set_max_length(&c->u.intn, cfg.max);
        break;
    }
}

static void conn_fini(peer_conn_t *c)
{
    switch (cfg.framing) {
    case LINE: tw_line_receiver_fini(&c->u.line); break;
    case NETSTRING: tw_netstring_receiver_fini(&c->u.ns); break;
    case INT32: tw_intn_receiver_fini(&c->u.intn); break;
    }
}

static void conn_stop(peer_conn_t *c)
{
    switch (cfg.framing) {
    case LINE: tw_line_receiver_stop(&c->u.line); break;
    case NETSTRING: tw_netstring_receiver_stop(&c->u.ns); break;
    case INT32: tw_intn_receiver_stop(&c->u.intn); break;
    }
}

/* Send one frame with the receiver's own encoder. */
static int conn_send(peer_conn_t *c, const void *data, size_t len)
{
    switch (cfg.framing) {
    case LINE: return tw_line_receiver_send_line(&c->u.line, data, len);
    case NETSTRING: return tw_netstring_send_string(&c->u.ns, data, len);
    case INT32: return tw_intn_send_string(&c->u.intn, data, len);
    }
    return -EINVAL;
}

static void data_received(tw_protocol_t *p, const void *data, size_t len)
{
    switch (cfg.framing) {
    case LINE: tw_line_receiver_data_received(p, data, len); break;
    case NETSTRING: tw_netstring_receiver_data_received(p, data, len); break;
    case INT32: tw_intn_receiver_data_received(p, data, len); break;
    }
}

/* ---- server ---------------------------------------------------------------- */

static struct {
    tw_factory_t factory;
    tw_listener_t *listener;
    long connections, frames;
} srv;

static void server_frame(peer_conn_t *c, const char *data, size_t len)
{
    srv.frames++;
    int rc = conn_send(c, data, len);
    if (rc < 0 && rc != -EPIPE)
        fprintf(stderr, "twine_peer: echo failed: %s\n", tw_strerror(rc));
}

static void server_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    (void)p;
    if (why)
        fprintf(stderr, "twine_peer: connection lost: %s\n", why->message);
}

static void conn_destroy(tw_protocol_t *p)
{
    peer_conn_t *c = (peer_conn_t *)p;
    conn_fini(c);
    free(c);
}

static const tw_protocol_ops_t server_proto_ops = {
    .data_received = data_received,
    .connection_lost = server_lost,
    .destroy = conn_destroy,
};

static tw_protocol_t *server_build(tw_factory_t *f, const struct sockaddr *addr, socklen_t len)
{
    (void)f, (void)addr, (void)len;
    peer_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    conn_init(c, &server_proto_ops);
    c->on_frame = server_frame;
    srv.connections++;
    return &c->u.base;
}

static const tw_factory_ops_t server_factory_ops = { .build_protocol = server_build };

static void server_signal(tw_reactor_t *r, int signo, void *arg)
{
    (void)signo, (void)arg;
    tw_reactor_stop(r);
}

static int run_server(void)
{
    char err[256];
    srv.factory.ops = &server_factory_ops;
    int rc = tw_endpoint_listen(reactor, cfg.endpoint, &srv.factory, &srv.listener, err,
                                sizeof err);
    if (rc) {
        fprintf(stderr, "twine_peer: %s\n", err);
        return 1;
    }
    tw_reactor_on_signal(reactor, SIGINT, server_signal, NULL);
    tw_reactor_on_signal(reactor, SIGTERM, server_signal, NULL);
    printf("port %d\n", tw_listener_port(srv.listener));
    fflush(stdout);

    rc = tw_reactor_run(reactor, TW_RUN_DEFAULT);
    tw_listener_close(srv.listener);
    tw_factory_abort_connections(&srv.factory);
    /* The aborts finish from the loop: let them, so every protocol is freed
     * (bounded: a close takes a pass or two). */
    for (int i = 0; i < 100 && tw_factory_connection_count(&srv.factory) > 0; i++)
        tw_reactor_iterate(reactor, TW_MSEC(10));
    fprintf(stderr, "twine_peer: server done: %ld connections, %ld frames echoed\n",
            srv.connections, srv.frames);
    return rc == 0 && tw_factory_connection_count(&srv.factory) == 0 ? 0 : 1;
}

/* ---- client ---------------------------------------------------------------- */

static struct {
    frame_t *frames;       /* what to send; the last one is `refused` when set */
    size_t nframes, nexpect;
    bool refused;          /* the last frame must be refused by the peer */
    size_t got;            /* echoes received and checked */
    char *stream;          /* --write one / chunk: the frames, encoded */
    size_t slen, soff;
    peer_conn_t *conn;
    tw_transport_t *transport;
    tw_timer_t chunk_timer, guard;
    bool done;
    int status;            /* the exit status */
} cl = { .status = 1 };

static void client_finish(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record the outcome (the first one wins) and stop the reactor. */
static void client_finish(int status, const char *fmt, ...)
{
    if (cl.done)
        return;
    cl.done = true;
    cl.status = status;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "twine_peer: %s: ", status == 0 ? "ok" : "FAIL");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    tw_timer_cancel(&cl.chunk_timer);
    tw_timer_cancel(&cl.guard);
    tw_reactor_stop(reactor);
}

/* The first byte where a and b differ (they differ somewhere). */
static size_t first_difference(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static void client_frame(peer_conn_t *c, const char *data, size_t len)
{
    if (cl.done)
        return;
    if (cl.got >= cl.nexpect) {
        client_finish(1, "unexpected frame of %zu bytes after all %zu echoes", len, cl.nexpect);
        conn_stop(c);
        tw_transport_abort_connection(c->u.base.transport);
        return;
    }
    const frame_t *want = &cl.frames[cl.got];
    if (len != want->len || memcmp(data, want->data, len) != 0) {
        client_finish(1, "echo %zu: got %zu bytes, want %zu; first difference at byte %zu",
                      cl.got, len, want->len, first_difference(data, len, want->data, want->len));
        conn_stop(c);
        tw_transport_abort_connection(c->u.base.transport);
        return;
    }
    cl.got++;
    if (cl.got == cl.nexpect && !cl.refused) {
        /* Everything is back: close, and report once the close is done. */
        tw_transport_lose_connection(c->u.base.transport);
    }
}

/* Append frame f, framed, to cl.stream; only its start when it is the
 * refused one (see "refuse" above). */
static void stream_append(const frame_t *f, bool refused)
{
    char head[32];
    size_t hlen = 0, tlen = 0, dlen = f->len;
    const char *tail = "";
    switch (cfg.framing) {
    case LINE:
        tail = "\r\n", tlen = 2;
        break;
    case NETSTRING:
        hlen = (size_t)snprintf(head, sizeof head, "%zu:", f->len);
        tail = ",", tlen = 1;
        break;
    case INT32:
        head[0] = (char)(f->len >> 24), head[1] = (char)(f->len >> 16);
        head[2] = (char)(f->len >> 8), head[3] = (char)f->len, hlen = 4;
        break;
    }
    if (refused && cfg.framing != LINE)
        dlen = tlen = 0;
    char *s = realloc(cl.stream, cl.slen + hlen + dlen + tlen);
    if (!s)
        fail_exit("out of memory");
    cl.stream = s;
    memcpy(s + cl.slen, head, hlen);
    if (dlen)
        memcpy(s + cl.slen + hlen, f->data, dlen);
    memcpy(s + cl.slen + hlen + dlen, tail, tlen);
    cl.slen += hlen + dlen + tlen;
}

/* --write chunk:N: the next piece, then wait a millisecond. */
static void send_chunk(tw_timer_t *t, void *arg)
{
    (void)arg;
    size_t n = cl.slen - cl.soff < cfg.chunk ? cl.slen - cl.soff : cfg.chunk;
    int rc = tw_transport_write(cl.transport, cl.stream + cl.soff, n);
    if (rc < 0) {
        /* Refused frame: the peer may close before the rest is written. */
        if (!(cl.refused && rc == -EPIPE))
            client_finish(1, "write at byte %zu: %s", cl.soff, tw_strerror(rc));
        return;
    }
    cl.soff += n;
    if (cl.soff < cl.slen)
        tw_timer_start(t, TW_MSEC(1));
}

static void client_made(tw_protocol_t *p, tw_transport_t *t)
{
    cl.conn = (peer_conn_t *)p;
    cl.transport = t;
    if (cfg.write == W_FRAMES) {
        for (size_t i = 0; i < cl.nexpect; i++) {
            int rc = conn_send(cl.conn, cl.frames[i].data, cl.frames[i].len);
            if (rc < 0) {
                client_finish(1, "sending frame %zu: %s", i, tw_strerror(rc));
                tw_transport_abort_connection(t);
                return;
            }
        }
        if (cl.refused) {
            /* The receivers' encoders send whole frames: frame the start
             * of this one here. */
            stream_append(&cl.frames[cl.nexpect], true);
            int rc = tw_transport_write(t, cl.stream, cl.slen);
            if (rc < 0) {
                client_finish(1, "sending the refused frame: %s", tw_strerror(rc));
                tw_transport_abort_connection(t);
            }
        }
    } else if (cfg.write == W_ONE) {
        int rc = tw_transport_write(t, cl.stream, cl.slen);
        if (rc < 0) {
            client_finish(1, "write: %s", tw_strerror(rc));
            tw_transport_abort_connection(t);
        }
    } else {
        tw_timer_start(&cl.chunk_timer, 0);
    }
}

static void client_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    (void)p;
    tw_timer_cancel(&cl.chunk_timer);
    cl.transport = NULL;
    const char *reason = why ? why->message : "closed cleanly";
    if (cl.got < cl.nexpect)
        client_finish(1, "connection lost (%s) after %zu of %zu echoes", reason, cl.got,
                      cl.nexpect);
    else if (cl.refused)
        client_finish(0, "%zu echoes, then the peer refused the %zu-byte frame and closed (%s)",
                      cl.got, cl.frames[cl.nframes - 1].len, reason);
    else if (why)
        client_finish(1, "%zu echoes, but the close failed: %s", cl.got, reason);
    else
        client_finish(0, "%zu echoes, all correct", cl.got);
}

static const tw_protocol_ops_t client_proto_ops = {
    .connection_made = client_made,
    .data_received = data_received,
    .connection_lost = client_lost,
    .destroy = conn_destroy,
};

static tw_protocol_t *client_build(tw_factory_t *f, const struct sockaddr *addr, socklen_t len)
{
    (void)f, (void)addr, (void)len;
    peer_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    conn_init(c, &client_proto_ops);
    c->on_frame = client_frame;
    return &c->u.base;
}

static void client_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    (void)f, (void)c;
    client_finish(1, "connection failed: %s", why->message);
}

static const tw_factory_ops_t client_factory_ops = {
    .build_protocol = client_build,
    .connection_failed = client_failed,
};

static void client_guard(tw_timer_t *t, void *arg)
{
    (void)t, (void)arg;
    client_finish(1, "timed out after %.1f s with %zu of %zu echoes", cfg.timeout, cl.got,
                  cl.nexpect);
    if (cl.transport)
        tw_transport_abort_connection(cl.transport);
}

/* ---- the frame file ---------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Unescape s (C escapes) into a new buffer; *len gets its length. */
static char *unescape(const char *s, size_t *len, const char *where)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);
    if (!out)
        fail_exit("out of memory");
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (++i == n)
            fail_exit("%s: a backslash ends the line", where);
        switch (s[i]) {
        case 'r': out[o++] = '\r'; break;
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case '0': out[o++] = '\0'; break;
        case '\\': out[o++] = '\\'; break;
        case 'x': {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                fail_exit("%s: \\x needs two hex digits", where);
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
            break;
        }
        default:
            fail_exit("%s: unknown escape \\%c", where, s[i]);
        }
    }
    *len = o;
    return out;
}

/* Frame number `index` of `len` pattern bytes: printable for lines (no CR or
 * LF), every byte value for the binary framings, different for each frame so
 * a reordered or repeated echo is caught. */
static char *pattern(size_t index, size_t len)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    char *p = malloc(len + 1);
    if (!p)
        fail_exit("out of memory");
    for (size_t j = 0; j < len; j++) {
        if (cfg.framing == LINE)
            p[j] = alnum[(index * 7 + j) % (sizeof alnum - 1)];
        else
            p[j] = (char)(unsigned char)(index * 31 + j * 7 + (j >> 8));
    }
    return p;
}

static size_t parse_size(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v > SIZE_MAX / 4)
        fail_exit("bad %s '%s'", what, s);
    return (size_t)v;
}

static void load_frames(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_exit("%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char where[64];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (cl.refused)
            fail_exit("%s: nothing may follow a 'refuse' line", where);
        char *sp = strchr(line, ' ');
        const char *arg = sp ? sp + 1 : "";
        if (sp)
            *sp = '\0';
        frame_t f;
        if (strcmp(line, "size") == 0 || strcmp(line, "refuse") == 0) {
            f.len = parse_size(arg, "size");
            f.data = pattern(cl.nframes, f.len);
            cl.refused = line[0] == 'r';
        } else if (strcmp(line, "text") == 0) {
            f.data = unescape(arg, &f.len, where);
        } else {
            fail_exit("%s: unknown directive '%s' (size, text, refuse)", where, line);
        }
        if (cfg.framing == LINE && memmem(f.data, f.len, "\r\n", 2))
            fail_exit("%s: a line cannot contain its delimiter \\r\\n", where);
        if (cfg.framing == INT32 && (uint64_t)f.len > UINT32_MAX)
            fail_exit("%s: too long for a 4-byte prefix", where);
        frame_t *fs = realloc(cl.frames, (cl.nframes + 1) * sizeof *fs);
        if (!fs)
            fail_exit("out of memory");
        cl.frames = fs;
        cl.frames[cl.nframes++] = f;
    }
    free(line);
    fclose(fp);
    if (cl.nframes == 0)
        fail_exit("%s: no frames", path);
    cl.nexpect = cl.refused ? cl.nframes - 1 : cl.nframes;
}

static int run_client(void)
{
    char err[256];
    tw_connector_t *connector = NULL;
    tw_factory_t factory = { .ops = &client_factory_ops };

    load_frames(cfg.file);
    if (cfg.write != W_FRAMES)
        for (size_t i = 0; i < cl.nframes; i++)
            stream_append(&cl.frames[i], cl.refused && i == cl.nexpect);
    /* The receiver takes the longest frame in the file, the refused one
     * included: were the peer to echo that instead of refusing it, the
     * client must see an unexpected frame, not refuse it itself and take its
     * own close for the peer's. */
    if (!cfg.max) {
        for (size_t i = 0; i < cl.nframes; i++)
            if (cl.frames[i].len > cfg.max)
                cfg.max = cl.frames[i].len;
        if (cfg.max < 16)
            cfg.max = 16;
    }
    tw_timer_init(&cl.chunk_timer, reactor, send_chunk, NULL);
    tw_timer_init(&cl.guard, reactor, client_guard, NULL);
    tw_timer_start(&cl.guard, tw_seconds(cfg.timeout));

    int rc = tw_endpoint_connect(reactor, cfg.endpoint, &factory, &connector, err, sizeof err);
    if (rc) {
        fprintf(stderr, "twine_peer: %s\n", err);
        cl.status = 1;
    } else {
        tw_reactor_run(reactor, TW_RUN_SIGNALS);
    }
    tw_timer_cancel(&cl.chunk_timer);
    tw_timer_cancel(&cl.guard);
    if (connector) {
        tw_connector_free(connector); /* aborts a connection still open */
        for (int i = 0; i < 100 && tw_factory_connection_count(&factory) > 0; i++)
            tw_reactor_iterate(reactor, TW_MSEC(10));
    }
    for (size_t i = 0; i < cl.nframes; i++)
        free(cl.frames[i].data);
    free(cl.frames);
    free(cl.stream);
    return cl.status;
}

/* ---- main -------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: twine_peer server line|netstring|int32 ENDPOINT [--max N]\n"
            "       twine_peer client line|netstring|int32 ENDPOINT FILE [--max N]\n"
            "                  [--write frames|one|chunk:N] [--timeout SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *pos[4];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
            cfg.max = parse_size(argv[++i], "--max");
            if (cfg.max == 0)
                fail_exit("--max must be at least 1");
        } else if (strcmp(argv[i], "--write") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            if (strcmp(w, "frames") == 0) {
                cfg.write = W_FRAMES;
            } else if (strcmp(w, "one") == 0) {
                cfg.write = W_ONE;
            } else if (strncmp(w, "chunk:", 6) == 0) {
                cfg.write = W_CHUNK;
                cfg.chunk = parse_size(w + 6, "chunk size");
                if (cfg.chunk == 0)
                    fail_exit("chunk size must be at least 1");
            } else {
                usage();
            }
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            cfg.timeout = strtod(argv[++i], &end);
            if (*end || !(cfg.timeout > 0 && cfg.timeout < 3600))
                fail_exit("bad --timeout '%s'", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            usage();
        } else if (npos < 4) {
            pos[npos++] = argv[i];
        } else {
            usage();
        }
    }
    if (npos < 3)
        usage();
    bool server = strcmp(pos[0], "server") == 0;
    if (!server && strcmp(pos[0], "client") != 0)
        usage();
    if (npos != (server ? 3 : 4))
        usage();
    size_t k = 0;
    while (k < 3 && strcmp(pos[1], framing_names[k]) != 0)
        k++;
    if (k == 3)
        usage();
    cfg.framing = (enum framing)k;
    cfg.endpoint = pos[2];
    cfg.file = server ? NULL : pos[3];

    int rc = tw_reactor_new(&reactor);
    if (rc) {
        fprintf(stderr, "twine_peer: %s\n", tw_strerror(rc));
        return 1;
    }
    int status = server ? run_server() : run_client();
    tw_reactor_free(reactor);
    return status;
}
