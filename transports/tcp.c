/* tcp.c -- listening and connecting stream sockets: TCP over IPv4 and IPv6,
 * and UNIX sockets.  The connections themselves are stream.c's.
 *
 * Accept at the descriptor limit: a listener keeps one spare descriptor (an
 * open "/").  When accept fails with EMFILE or ENFILE, it gives the spare
 * back, accepts and closes what is pending (shedding load rather than
 * leaving the listening socket readable, which would make the loop spin),
 * and takes a spare again.  If no spare can be had, it stops watching the
 * socket and tries again on a timer.  One log line per episode. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "stream.h"
#include "tw_log.h"

#define ACCEPTS_PER_WAKE 64
#define EMFILE_RETRY     TW_MSEC(100)
#define DEFAULT_BACKLOG  128
#define DEFAULT_TIMEOUT  TW_SEC(30)

/* ---- factories -------------------------------------------------------- */

void tw__factory_use(tw_factory_t *f)
{
    if (f->users++ == 0 && f->ops->start)
        f->ops->start(f);
}

void tw__factory_release(tw_factory_t *f)
{
    if (--f->users == 0 && f->ops->stop)
        f->ops->stop(f);
}

/* ---- addresses -------------------------------------------------------- */

static int tcp_parse_addr(const char *host, int port, int family,
                          struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (port < 0 || port > 65535)
        return -EINVAL;
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (!host || !*host) {
        if (family == AF_INET6) {
            in6->sin6_family = AF_INET6;
            in6->sin6_addr = in6addr_any;
            in6->sin6_port = htons((uint16_t)port);
            *len = sizeof *in6;
        } else {
            in4->sin_family = AF_INET;
            in4->sin_addr.s_addr = htonl(INADDR_ANY);
            in4->sin_port = htons((uint16_t)port);
            *len = sizeof *in4;
        }
        return 0;
    }
    if (family != AF_INET6 && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        return 0;
    }
    if (family != AF_INET && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL; /* not a literal address: names need the DNS module */
}

/* "@name" is Linux's abstract namespace: a leading NUL, no file. */
static int unix_parse_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof sun->sun_path)
        return -EINVAL;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
#ifdef __linux__
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
#else
        return -EAFNOSUPPORT;
#endif
    }
    *len = (socklen_t)sizeof *sun;
    return 0;
}

static void addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        snprintf(buf, len, "%s", un->sun_path[0] ? un->sun_path : "@(abstract)");
    } else {
        snprintf(buf, len, "?");
    }
}

/* ---- listening -------------------------------------------------------- */

struct tw_listener {
    tw_reactor_t *r;
    tw_factory_t *f;
    int fd;
    int spare;           /* the reserved descriptor, or -1 */
    bool tcp, shedding, watching, started;
    bool accepting, closed; /* in listener_accept_cb; tw_listener_close called there */
    tw_timer_t retry;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* file to remove, or "" */
};

static void listener_accept_cb(tw_reactor_t *r, int fd, void *arg);

static int spare_open(void)
{
    return open("/", O_RDONLY | O_CLOEXEC);
}

static void listener_watch(tw_listener_t *l, bool on)
{
    if (on && !l->watching)
        l->watching = tw_reactor_add_reader(l->r, l->fd, listener_accept_cb, l) == 0;
    else if (!on && l->watching) {
        tw_reactor_remove_reader(l->r, l->fd);
        l->watching = false;
    }
}

static void listener_retry_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    tw_listener_t *l = arg;
    if (l->spare < 0)
        l->spare = spare_open();
    listener_watch(l, true);
}

/* Out of descriptors: shed what is pending instead of spinning on it. */
static void listener_shed(tw_listener_t *l, int err)
{
    if (!l->shedding) {
        char where[128];
        addr_format((struct sockaddr *)&l->addr, where, sizeof where);
        tw_log(TW_LOG_WARN, l->tcp ? "tcp" : "unix",
               "out of descriptors (%s) on %s: shedding new connections until some are free",
               tw_strerror(err), where);
        l->shedding = true;
    }
    if (l->spare >= 0) {
        close(l->spare);
        l->spare = -1;
        for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
            int c = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0)
                break;
            close(c);
        }
        l->spare = spare_open();
    }
    if (l->spare < 0) { /* no spare: back off, and do not spin meanwhile */
        listener_watch(l, false);
        tw_timer_start(&l->retry, EMFILE_RETRY);
    }
}

static void listener_accept_cb(tw_reactor_t *r, int fd, void *arg)
{
    tw_listener_t *l = arg;
    l->accepting = true; /* a callback below may close the listener */
    for (int i = 0; i < ACCEPTS_PER_WAKE && !l->closed; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                listener_shed(l, -errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                tw_log(TW_LOG_ERROR, l->tcp ? "tcp" : "unix", "accept: %s", tw_strerror(-errno));
            break;
        }
        if (l->shedding) {
            tw_log(TW_LOG_INFO, l->tcp ? "tcp" : "unix", "descriptors free again: accepting");
            l->shedding = false;
        }
        tw_protocol_t *p = l->f->ops->build_protocol(l->f, (struct sockaddr *)&ss, len);
        if (!p) { /* the factory refused it */
            close(c);
            continue;
        }
        tw__stream_open(r, c, p, l->f, l->tcp ? "tcp" : "unix",
                        l->tcp ? TW__STREAM_TCP : TW__STREAM_SOCKET);
    }
    l->accepting = false;
    if (l->closed) /* tw_listener_close was called from build_protocol or connection_made */
        free(l);
}

static int listener_start(tw_reactor_t *r, tw_factory_t *f, int fd, bool tcp, int backlog,
                          tw_listener_t **out)
{
    tw_listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    if (listen(fd, backlog > 0 ? backlog : DEFAULT_BACKLOG) < 0) {
        int err = -errno;
        close(fd);
        free(l);
        return err;
    }
    l->r = r;
    l->f = f;
    l->fd = fd;
    l->tcp = tcp;
    l->spare = spare_open();
    l->addrlen = sizeof l->addr;
    getsockname(fd, (struct sockaddr *)&l->addr, &l->addrlen);
    tw_timer_init(&l->retry, r, listener_retry_cb, l);
    listener_watch(l, true);
    if (!l->watching) {
        tw_listener_close(l);
        return -ENOMEM;
    }
    tw__factory_use(f);
    l->started = true;
    *out = l;
    return 0;
}

int tw_tcp_listen(tw_reactor_t *r, tw_factory_t *f, const tw_tcp_listen_opts_t *o,
                  tw_listener_t **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (!f || !f->ops->build_protocol)
        return -EINVAL;
    int rc = tcp_parse_addr(o->interface, o->port, o->family, &ss, &len);
    if (rc)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, v6only = o->v6only;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return listener_start(r, f, fd, true, o->backlog, out);
}

/* A socket file at `path` that nobody accepts on is left over from a dead
 * process: remove it.  A live one, or another kind of file, stays. */
static int unix_clear_stale(const char *path, const struct sockaddr_un *sun, socklen_t len)
{
    struct stat st;
    if (path[0] == '@' || lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sun, len);
    int err = errno;
    close(fd);
    if (rc == 0)
        return -EADDRINUSE;
    if (err == ECONNREFUSED && unlink(path) == 0) {
        tw_log(TW_LOG_INFO, "unix", "removed stale socket %s", path);
        return 0;
    }
    return -EADDRINUSE;
}

int tw_unix_listen(tw_reactor_t *r, tw_factory_t *f, const tw_unix_listen_opts_t *o,
                   tw_listener_t **out)
{
    struct sockaddr_un sun;
    socklen_t len;
    if (!f || !f->ops->build_protocol)
        return -EINVAL;
    int rc = unix_parse_addr(o->path, &sun, &len);
    if (rc || (rc = unix_clear_stale(o->path, &sun, len)) != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (o->path[0] != '@' && o->mode && chmod(o->path, (mode_t)o->mode) < 0) {
        rc = -errno;
        unlink(o->path);
        close(fd);
        return rc;
    }
    rc = listener_start(r, f, fd, false, o->backlog, out);
    if (rc == 0 && o->path[0] != '@')
        snprintf((*out)->path, sizeof (*out)->path, "%s", o->path);
    else if (rc && o->path[0] != '@')
        unlink(o->path);
    return rc;
}

void tw_listener_close(tw_listener_t *l)
{
    if (!l)
        return;
    tw_timer_cancel(&l->retry);
    listener_watch(l, false);
    close(l->fd);
    if (l->spare >= 0)
        close(l->spare);
    if (l->path[0])
        unlink(l->path);
    if (l->started)
        tw__factory_release(l->f);
    if (l->accepting)
        l->closed = true; /* listener_accept_cb frees it when it returns */
    else
        free(l);
}

int tw_listener_port(const tw_listener_t *l)
{
    if (l->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
    if (l->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
    return -1;
}

int tw_listener_address(const tw_listener_t *l, struct sockaddr_storage *ss, socklen_t *len)
{
    *ss = l->addr;
    *len = l->addrlen;
    return 0;
}

/* ---- connecting ------------------------------------------------------- */

enum { C_IDLE, C_CONNECTING, C_CONNECTED };

struct tw_connector {
    tw_reactor_t *r;
    tw_factory_t *f;
    int state;
    int fd;
    bool tcp;
    tw_time_t timeout;
    tw_timer_t timer;          /* the connect timeout, or a deferred failure */
    int pending_err;           /* a failure found at once, reported from the timer */
    tw__stream_t *stream;
    bool opening, freed;       /* in tw__stream_open; tw_connector_free called there */
    struct sockaddr_storage addr, bind;
    socklen_t addrlen, bindlen;
};

static void connector_fail(tw_connector_t *c, int err)
{
    char where[128];
    addr_format((struct sockaddr *)&c->addr, where, sizeof where);
    tw_failure_t *why = tw_failure_new(c->tcp ? "tcp" : "unix", err, "connect to %s: %s",
                                       where, tw_strerror(err));
    if (c->fd >= 0) {
        tw_reactor_remove_all(c->r, c->fd);
        close(c->fd);
        c->fd = -1;
    }
    tw_timer_cancel(&c->timer);
    c->state = C_IDLE;
    if (c->f->ops->connection_failed)
        c->f->ops->connection_failed(c->f, c, why); /* may free c */
    tw_failure_free(why);
}

static void connector_made(tw_connector_t *c)
{
    tw_reactor_remove_all(c->r, c->fd);
    tw_timer_cancel(&c->timer);
    tw_protocol_t *p = c->f->ops->build_protocol(c->f, (struct sockaddr *)&c->addr, c->addrlen);
    if (!p) {
        connector_fail(c, -ECONNREFUSED);
        return;
    }
    int fd = c->fd;
    c->fd = -1;
    c->state = C_CONNECTED;
    c->opening = true; /* connection_made may free c */
    tw__stream_t *s = tw__stream_open(c->r, fd, p, c->f, c->tcp ? "tcp" : "unix",
                                      c->tcp ? TW__STREAM_TCP : TW__STREAM_SOCKET);
    c->opening = false;
    if (c->freed) { /* tw_connector_free from connection_made: abort what it made */
        if (s)
            tw__stream_detach_connector(s);
        free(c);
        return;
    }
    if (!s) { /* the protocol was destroyed and the socket closed */
        connector_fail(c, -ENOMEM);
        return;
    }
    /* connection_made ran: if it already closed the stream, connector_lost
     * comes later, from the stream's finish. */
    s->connector = c;
    c->stream = s;
}

static void connector_writable_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)r;
    tw_connector_t *c = arg;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        connector_fail(c, -err);
    else
        connector_made(c);
}

static void connector_timer_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    tw_connector_t *c = arg;
    int err = c->pending_err ? c->pending_err : -ETIMEDOUT;
    c->pending_err = 0;
    connector_fail(c, err);
}

void tw__connector_lost(tw_connector_t *c, const tw_failure_t *reason)
{
    c->stream = NULL;
    c->state = C_IDLE;
    if (c->f->ops->connection_lost)
        c->f->ops->connection_lost(c->f, c, reason); /* may free c */
}

int tw_connector_connect(tw_connector_t *c)
{
    if (c->state != C_IDLE)
        return -EBUSY;
    c->state = C_CONNECTING;
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? -errno : 0;
    c->fd = fd;
    if (!err && c->bindlen && bind(fd, (struct sockaddr *)&c->bind, c->bindlen) < 0)
        err = -errno;
    if (!err && connect(fd, (struct sockaddr *)&c->addr, c->addrlen) < 0 &&
        errno != EINPROGRESS)
        err = -errno;
    if (!err) {
        err = tw_reactor_add_writer(c->r, fd, connector_writable_cb, c);
        if (!err && c->timeout != TW_TIME_MAX)
            err = tw_timer_start(&c->timer, c->timeout);
    }
    if (err) { /* reported from the loop, never from inside this call */
        c->pending_err = err;
        tw_timer_start(&c->timer, 0);
    }
    /* Last, with the attempt fully set up: the hook may stop it or free c. */
    if (c->f->ops->started_connecting)
        c->f->ops->started_connecting(c->f, c);
    return 0;
}

static int connector_new(tw_reactor_t *r, tw_factory_t *f, bool tcp, tw_time_t timeout,
                         tw_connector_t **out)
{
    if (!f || !f->ops->build_protocol)
        return -EINVAL;
    tw_connector_t *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->r = r;
    c->f = f;
    c->fd = -1;
    c->tcp = tcp;
    c->timeout = timeout > 0 ? timeout : DEFAULT_TIMEOUT;
    tw_timer_init(&c->timer, r, connector_timer_cb, c);
    *out = c;
    return 0;
}

int tw_tcp_connect(tw_reactor_t *r, tw_factory_t *f, const tw_tcp_connect_opts_t *o,
                   tw_connector_t **out)
{
    tw_connector_t *c;
    int rc = connector_new(r, f, true, o->timeout, &c);
    if (rc)
        return rc;
    if ((rc = tcp_parse_addr(o->host, o->port, 0, &c->addr, &c->addrlen)) != 0 ||
        !o->host || !*o->host || o->port <= 0 ||
        (o->bind_address &&
         (rc = tcp_parse_addr(o->bind_address, o->bind_port, c->addr.ss_family, &c->bind,
                              &c->bindlen)) != 0)) {
        free(c);
        return rc ? rc : -EINVAL;
    }
    tw__factory_use(f);
    *out = c;
    return tw_connector_connect(c);
}

int tw_unix_connect(tw_reactor_t *r, tw_factory_t *f, const char *path, tw_time_t timeout,
                    tw_connector_t **out)
{
    tw_connector_t *c;
    int rc = connector_new(r, f, false, timeout, &c);
    if (rc)
        return rc;
    rc = unix_parse_addr(path, (struct sockaddr_un *)&c->addr, &c->addrlen);
    if (rc) {
        free(c);
        return rc;
    }
    tw__factory_use(f);
    *out = c;
    return tw_connector_connect(c);
}

void tw_connector_stop_connecting(tw_connector_t *c)
{
    if (c->state == C_CONNECTING)
        connector_fail(c, -ECANCELED);
}

tw_transport_t *tw_connector_transport(const tw_connector_t *c)
{
    return c->stream ? &c->stream->base : NULL;
}

void tw_connector_free(tw_connector_t *c)
{
    if (!c)
        return;
    tw_timer_cancel(&c->timer);
    if (c->fd >= 0) {
        tw_reactor_remove_all(c->r, c->fd);
        close(c->fd);
    }
    if (c->stream)
        tw__stream_detach_connector(c->stream);
    tw__factory_release(c->f);
    if (c->opening)
        c->freed = true; /* connector_made frees it when tw__stream_open returns */
    else
        free(c);
}
