/* stream.c -- the stream transport: reading into the reactor's lent buffer,
 * a write queue sent with writev, water marks and producers, half-close,
 * lose and abort.  TCP and UNIX sockets use it as it is.
 *
 * Writes go straight to the socket when nothing is queued (one system call
 * per write in steady state); only what the kernel does not take is copied
 * into the queue, and the writer is watched only while something is queued.
 * Closing never happens inside the call that asks for it: the stream stops
 * its watchers, and a soon call finishes the job (connection_lost, destroy,
 * free) from the reactor, so no callback of the stream is ever on the stack
 * when it is freed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"
#include "tw_log.h"

#define S_TCP         0x001u
#define S_READING     0x002u /* the reader is registered */
#define S_WRITING     0x004u /* the writer is registered */
#define S_USER_PAUSED 0x008u /* pause_reading */
#define S_CAP_PAUSED  0x010u /* reading paused: queue over the cap (TW_CAP_PAUSE) */
#define S_EOF         0x020u /* the peer closed its side */
#define S_LOSING      0x040u /* close once the queue is empty */
#define S_SHUT_WANTED 0x080u /* shutdown(SHUT_WR) once the queue is empty */
#define S_SHUT_DONE   0x100u
#define S_CLOSING     0x200u /* finishing: nothing more happens */
#define S_MADE        0x400u /* connection_made was delivered */
#define S_PIPE        0x800u  /* read(2)/write(2): a pipe, a pty master, a file */
#define S_WRONLY      0x1000u /* the write end of a pipe: readable means the reader left */
#define S_FILE        0x2000u /* a regular file: always ready, read from soon calls */
#define S_FILE_SOON   0x4000u /* a soon call to read the file is pending */
#define S_NOREAD      0x8000u /* write-only, and nothing to watch for reading */

#define CHUNK_SIZE  16384 /* what does not fit goes in chunks of this size */
#define CHUNK_CACHE 64    /* free chunks a thread keeps: 1 MiB at most */
#define IOV_BATCH   64

struct tw__chunk {
    tw__chunk_t *next;
    size_t off, len, cap;
    char data[];
};

static const tw_transport_ops_t stream_ops;

static void stream_read_cb(tw_reactor_t *r, int fd, void *arg);
static void stream_file_cb(tw_reactor_t *r, void *arg);
static void stream_write_cb(tw_reactor_t *r, int fd, void *arg);

static inline tw__stream_t *stream_of(tw_transport_t *t)
{
    return (tw__stream_t *)t;
}

/* ---- closing ---------------------------------------------------------- */

/* Queue chunks are all one size and recycled through a small per-thread
 * cache: a busy writer (a chat fan-out, a stream to a slow reader) would
 * otherwise malloc and free tens of kilobytes a turn, and glibc would give
 * the top of the heap back to the kernel and take it again each time (brk,
 * TLB flushes): that churn cost more than the copying.  Streams live in
 * their reactor's thread, so the cache needs no lock. */
static _Thread_local struct {
    tw__chunk_t *head;
    int n;
    bool armed; /* the thread-exit destructor will empty it */
} chunk_cache;

static pthread_key_t chunk_key;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;

static void chunk_cache_drain(void *unused)
{
    (void)unused;
    while (chunk_cache.head) {
        tw__chunk_t *c = chunk_cache.head;
        chunk_cache.head = c->next;
        free(c);
    }
    chunk_cache.n = 0;
    chunk_cache.armed = false;
}

static void chunk_key_make(void)
{
    if (pthread_key_create(&chunk_key, chunk_cache_drain) != 0)
        chunk_key = (pthread_key_t)-1;
}

static tw__chunk_t *chunk_new(void)
{
    tw__chunk_t *c = chunk_cache.head;
    if (c) {
        chunk_cache.head = c->next;
        chunk_cache.n--;
        return c;
    }
    return malloc(sizeof *c + CHUNK_SIZE);
}

static void chunk_free(tw__chunk_t *c)
{
    if (!chunk_cache.armed) { /* a thread that ends gives its cache back */
        pthread_once(&chunk_once, chunk_key_make);
        chunk_cache.armed = chunk_key != (pthread_key_t)-1 &&
                            pthread_setspecific(chunk_key, &chunk_cache) == 0;
    }
    if (chunk_cache.armed && chunk_cache.n < CHUNK_CACHE) {
        c->next = chunk_cache.head;
        chunk_cache.head = c;
        chunk_cache.n++;
    } else {
        free(c);
    }
}

static void stream_free_queue(tw__stream_t *s)
{
    while (s->qhead) {
        tw__chunk_t *c = s->qhead;
        s->qhead = c->next;
        chunk_free(c);
    }
    s->qtail = NULL;
    s->queued = 0;
}

/* ---- the factory's list of its connections ---------------------------- */

void tw__factory_track(tw_factory_t *f, tw_transport_t *t)
{
    t->tracked = f;
    t->fprev = NULL;
    t->fnext = f->conns;
    if (f->conns)
        f->conns->fprev = t;
    f->conns = t;
    f->nconns++;
}

void tw__factory_untrack(tw_transport_t *t)
{
    tw_factory_t *f = t->tracked;
    if (!f)
        return;
    t->tracked = NULL;
    if (t->fprev)
        t->fprev->fnext = t->fnext;
    else
        f->conns = t->fnext;
    if (t->fnext)
        t->fnext->fprev = t->fprev;
    f->nconns--;
}

static void factory_each(tw_factory_t *f, void (*fn)(tw_transport_t *t))
{
    /* fn never frees a transport (closing is deferred), so the list holds */
    for (tw_transport_t *t = f->conns; t; t = t->fnext)
        fn(t);
}

void tw_factory_lose_connections(tw_factory_t *f)
{
    factory_each(f, tw_transport_lose_connection);
}

void tw_factory_abort_connections(tw_factory_t *f)
{
    factory_each(f, tw_transport_abort_connection);
}

/* ---- closing, continued ------------------------------------------------ */

static void stream_finish_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    tw__stream_t *s = arg;
    tw_protocol_t *p = s->base.protocol;
    /* The list it is on, not p->factory: a layer (TLS) may have taken the
     * protocol slot since. */
    tw__factory_untrack(&s->base);

    if (s->producer) {
        tw_producer_t *prod = s->producer;
        s->producer = NULL;
        if (prod != &s->base.as_producer && prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    close(s->fd);
    s->fd = -1;
    stream_free_queue(s);
    if (s->flags & S_MADE) {
        if (p->ops->connection_lost)
            p->ops->connection_lost(p, s->reason);
    }
    if (p->ops->destroy)
        p->ops->destroy(p);
    /* Read only now: the protocol may have freed its connector meanwhile
     * (tw_connector_free detaches it from the stream). */
    tw_connector_t *c = s->connector;
    if (c)
        tw__connector_lost(c, s->reason);
    tw_failure_free(s->reason);
    free(s);
}

/* Begin closing (once): stop every watcher now, finish from a soon call.
 * `reason` is taken (NULL: a clean close). */
static void stream_close(tw__stream_t *s, tw_failure_t *reason)
{
    if (s->flags & S_CLOSING) {
        tw_failure_free(reason);
        return;
    }
    s->flags |= S_CLOSING;
    if (reason) { /* an I/O error replaces a reason given to lose_with */
        tw_failure_free(s->reason);
        s->reason = reason;
    }
    tw_reactor_remove_all(s->base.reactor, s->fd);
    s->flags &= ~(S_READING | S_WRITING);
    if (tw_reactor_call_soon(s->base.reactor, stream_finish_cb, s) != 0) {
        /* Out of memory: finishing now is the only way left; our callers
         * touch nothing after stream_close returns. */
        stream_finish_cb(s->base.reactor, s);
    }
}

static tw_failure_t *stream_failure(tw__stream_t *s, int code, const char *what)
{
    /* A reset peer is routine (and frequent under load): skip the
     * formatting and say just what happened. */
    if (code == -ECONNRESET || code == -EPIPE)
        return tw_failure_new(s->domain, code, NULL);
    return tw_failure_new(s->domain, code, "%s: %s", what, tw_strerror(code));
}

/* ---- reading ---------------------------------------------------------- */

/* Register or drop the reader to match the flags. */
static void stream_update_reading(tw__stream_t *s)
{
    if (s->flags & S_NOREAD)
        return;
    bool want = !(s->flags & (S_USER_PAUSED | S_CAP_PAUSED | S_EOF | S_LOSING | S_CLOSING));
    if (s->flags & S_FILE) { /* never "not ready": read once per iteration */
        if (want && !(s->flags & S_FILE_SOON)) {
            if (tw_reactor_call_soon(s->base.reactor, stream_file_cb, s) != 0) {
                stream_close(s, stream_failure(s, -ENOMEM, "cannot schedule a read"));
                return;
            }
            s->flags |= S_FILE_SOON;
        }
        s->flags = want ? s->flags | S_READING : s->flags & ~S_READING;
        return;
    }
    if (want && !(s->flags & S_READING)) {
        int rc = tw_reactor_add_reader(s->base.reactor, s->fd, stream_read_cb, s);
        if (rc == 0)
            s->flags |= S_READING;
        else
            stream_close(s, stream_failure(s, rc, "cannot watch the descriptor"));
    } else if (!want && (s->flags & S_READING)) {
        tw_reactor_remove_reader(s->base.reactor, s->fd);
        s->flags &= ~S_READING;
    }
}

static void stream_eof(tw__stream_t *s)
{
    tw_protocol_t *p = s->base.protocol;
    s->flags |= S_EOF;
    stream_update_reading(s);
    if (!p->ops->eof_received) {
        tw_transport_lose_connection(&s->base);
        return;
    }
    p->ops->eof_received(p);
    /* We had half-closed already: both directions are now closed. */
    if ((s->flags & S_SHUT_DONE) && !(s->flags & S_CLOSING))
        stream_close(s, NULL);
}

static void stream_read_cb(tw_reactor_t *r, int fd, void *arg)
{
    tw__stream_t *s = arg;
    if (s->flags & S_WRONLY) {
        /* The write end of a pipe turns "readable" only when the reader
         * has gone (POLLERR): data still queued is lost. */
        bool lost = s->queued > 0;
        stream_free_queue(s);
        stream_close(s, lost ? stream_failure(s, -EPIPE, "write") : NULL);
        return;
    }
    size_t size;
    char *buf = tw_reactor_read_buffer(r, &size);
    if (!buf) {
        stream_close(s, stream_failure(s, -ENOMEM, "no read buffer"));
        return;
    }
    ssize_t n = read(fd, buf, size);
    if (n > 0) {
        tw_protocol_t *p = s->base.protocol;
        p->ops->data_received(p, buf, (size_t)n);
    } else if (n == 0 || (errno == EIO && (s->flags & S_PIPE))) {
        stream_eof(s); /* EIO: a pty master whose slave side has closed */
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        stream_close(s, stream_failure(s, -errno, "read"));
    }
}

static void stream_file_cb(tw_reactor_t *r, void *arg)
{
    tw__stream_t *s = arg;
    s->flags &= ~S_FILE_SOON;
    if (!(s->flags & S_READING) || (s->flags & S_CLOSING))
        return;
    stream_read_cb(r, s->fd, s);
    if (!(s->flags & S_CLOSING))
        stream_update_reading(s); /* the next read, if still wanted */
}

/* ---- writing ---------------------------------------------------------- */

static ssize_t stream_send(tw__stream_t *s, const struct iovec *iov, int n)
{
    ssize_t w;
    if (s->flags & S_PIPE) {
        do
            w = n == 1 ? write(s->fd, iov->iov_base, iov->iov_len) : writev(s->fd, iov, n);
        while (w < 0 && errno == EINTR);
        return w;
    }
    if (n == 1) { /* the common case, without building a msghdr */
        do
            w = send(s->fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        return w;
    }
    struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
    do
        w = sendmsg(s->fd, &m, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w;
}

/* Append bytes to the queue, filling the tail chunk first. */
static int stream_enqueue(tw__stream_t *s, const char *data, size_t len)
{
    tw__chunk_t *t = s->qtail;
    if (t && t->off + t->len < t->cap) {
        size_t room = t->cap - t->off - t->len, k = len < room ? len : room;
        memcpy(t->data + t->off + t->len, data, k);
        t->len += k;
        s->queued += k;
        data += k;
        len -= k;
    }
    while (len) {
        tw__chunk_t *c = chunk_new();
        if (!c)
            return -ENOMEM;
        size_t k = len < CHUNK_SIZE ? len : CHUNK_SIZE;
        c->next = NULL;
        c->off = 0;
        c->len = k;
        c->cap = CHUNK_SIZE;
        memcpy(c->data, data, k);
        if (s->qtail)
            s->qtail->next = c;
        else
            s->qhead = c;
        s->qtail = c;
        s->queued += k;
        data += k;
        len -= k;
    }
    return 0;
}

/* Send what is queued.  Returns 0 when the queue is empty, 1 when the
 * socket is full, or a negative code. */
static int stream_flush(tw__stream_t *s)
{
    while (s->qhead) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (tw__chunk_t *c = s->qhead; c && n < IOV_BATCH; c = c->next)
            iov[n++] = (struct iovec){ c->data + c->off, c->len };
        ssize_t w = stream_send(s, iov, n);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
        s->queued -= (size_t)w;
        while (w > 0) {
            tw__chunk_t *c = s->qhead;
            if ((size_t)w < c->len) {
                c->off += (size_t)w;
                c->len -= (size_t)w;
                break;
            }
            w -= (ssize_t)c->len;
            s->qhead = c->next;
            chunk_free(c);
        }
        if (!s->qhead)
            s->qtail = NULL;
    }
    return 0;
}

/* The queue shrank: resume what its size held back. */
static void stream_drained(tw__stream_t *s)
{
    if (s->queued > s->low)
        return;
    if (s->flags & S_CAP_PAUSED) {
        s->flags &= ~S_CAP_PAUSED;
        stream_update_reading(s);
    }
    if (s->producer && !(s->flags & S_CLOSING)) {
        if (!s->streaming || s->producer_paused) {
            s->producer_paused = false;
            s->producer->ops->resume_producing(s->producer);
        }
    }
}

/* The queue is empty: finish a pending lose or half-close. */
static void stream_idle(tw__stream_t *s)
{
    if (s->flags & S_LOSING) {
        stream_close(s, NULL);
    } else if ((s->flags & S_SHUT_WANTED) && !(s->flags & S_SHUT_DONE)) {
        s->flags |= S_SHUT_DONE;
        shutdown(s->fd, SHUT_WR);
        if (s->flags & S_EOF)
            stream_close(s, NULL);
    }
}

static void stream_write_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)fd;
    tw__stream_t *s = arg;
    int rc = stream_flush(s);
    if (rc < 0) {
        stream_close(s, stream_failure(s, rc, "write"));
        return;
    }
    if (rc == 0) {
        tw_reactor_remove_writer(r, s->fd);
        s->flags &= ~S_WRITING;
    }
    stream_drained(s); /* a producer may queue more from here */
    if (!s->qhead && !(s->flags & S_CLOSING))
        stream_idle(s);
}

static int stream_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    tw__stream_t *s = stream_of(t);
    if (s->flags & (S_LOSING | S_SHUT_WANTED | S_CLOSING))
        return -EPIPE;
    if (iovcnt < 0)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (!total)
        return 0;
    if (s->queued + total > s->cap) {
        if (s->policy == TW_CAP_FAIL)
            return -ENOBUFS;
        if (s->policy == TW_CAP_ABORT) {
            tw_transport_abort_connection(t);
            tw_failure_free(s->reason);
            s->reason = tw_failure_new(s->domain, -ENOBUFS,
                                       "aborted: %zu bytes queued for a peer that does not read",
                                       s->queued + total);
            return -ENOBUFS;
        }
    }

    size_t sent = 0;
    if (!s->qhead) { /* the common case: straight to the socket */
        ssize_t w = stream_send(s, iov, iovcnt < IOV_BATCH ? iovcnt : IOV_BATCH);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            stream_close(s, stream_failure(s, -errno, "write"));
            return 0; /* reported through connection_lost, as Twisted does */
        }
        sent = w > 0 ? (size_t)w : 0;
        /* A pull producer is asked for more when the socket can take it:
         * that is the writer's job, so it is watched even now. */
        if (sent == total && !(s->producer && !s->streaming))
            return 0;
    }
    for (int i = 0; i < iovcnt; i++) { /* queue what the kernel did not take */
        size_t len = iov[i].iov_len;
        if (sent >= len) {
            sent -= len;
            continue;
        }
        if (stream_enqueue(s, (const char *)iov[i].iov_base + sent, len - sent) != 0) {
            stream_close(s, stream_failure(s, -ENOMEM, "write queue"));
            return -ENOMEM;
        }
        sent = 0;
    }
    if (!(s->flags & S_WRITING)) {
        if (tw_reactor_add_writer(t->reactor, s->fd, stream_write_cb, s) != 0) {
            stream_close(s, stream_failure(s, -ENOMEM, "cannot watch the connection"));
            return -ENOMEM;
        }
        s->flags |= S_WRITING;
    }
    if (s->producer && s->streaming && !s->producer_paused && s->queued > s->high) {
        s->producer_paused = true;
        s->producer->ops->pause_producing(s->producer);
    }
    if (s->queued > s->cap && s->policy == TW_CAP_PAUSE && !(s->flags & S_CAP_PAUSED)) {
        s->flags |= S_CAP_PAUSED;
        stream_update_reading(s);
    }
    return 0;
}

/* ---- the rest of the vtable ------------------------------------------- */

static void stream_unregister(tw__stream_t *s, bool stop)
{
    tw_producer_t *p = s->producer;
    s->producer = NULL;
    s->producer_paused = false;
    if (stop && p && p != &s->base.as_producer && p->ops->stop_producing)
        p->ops->stop_producing(p);
}

static void stream_lose(tw_transport_t *t)
{
    tw__stream_t *s = stream_of(t);
    if (s->flags & (S_LOSING | S_CLOSING))
        return;
    s->flags |= S_LOSING;
    stream_update_reading(s);
    stream_unregister(s, true);
    if (!(s->flags & S_CLOSING) && !s->qhead)
        stream_close(s, NULL);
}

static void stream_lose_with(tw_transport_t *t, tw_failure_t *reason)
{
    tw__stream_t *s = stream_of(t);
    if ((s->flags & (S_LOSING | S_CLOSING)) || s->reason)
        tw_failure_free(reason);
    else
        s->reason = reason;
    stream_lose(t);
}

static void stream_abort(tw_transport_t *t)
{
    tw__stream_t *s = stream_of(t);
    if (s->flags & S_CLOSING)
        return;
    if (s->flags & S_TCP) { /* a reset, not a FIN */
        struct linger l = { 1, 0 };
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    stream_free_queue(s);
    stream_close(s, tw_failure_new(s->domain, -ECONNABORTED, "connection aborted"));
}

static int stream_lose_write(tw_transport_t *t)
{
    tw__stream_t *s = stream_of(t);
    if (s->flags & (S_LOSING | S_CLOSING))
        return -EPIPE;
    if (s->flags & S_PIPE) { /* no half of a pipe to shut: closing is the FIN */
        stream_lose(t);
        return 0;
    }
    s->flags |= S_SHUT_WANTED;
    if (!s->qhead)
        stream_idle(s);
    return 0;
}

static void stream_pause(tw_transport_t *t)
{
    tw__stream_t *s = stream_of(t);
    s->flags |= S_USER_PAUSED;
    stream_update_reading(s);
}

static void stream_resume(tw_transport_t *t)
{
    tw__stream_t *s = stream_of(t);
    s->flags &= ~S_USER_PAUSED;
    stream_update_reading(s);
}

static int stream_register(tw_transport_t *t, tw_producer_t *p, bool streaming)
{
    tw__stream_t *s = stream_of(t);
    if (s->flags & (S_LOSING | S_CLOSING))
        return -EPIPE;
    if (s->producer)
        return -EBUSY;
    s->producer = p;
    s->streaming = streaming;
    s->producer_paused = false;
    if (streaming && s->queued > s->high) {
        s->producer_paused = true;
        p->ops->pause_producing(p);
    } else if (!streaming) {
        p->ops->resume_producing(p); /* a pull producer writes its first chunk */
    }
    return 0;
}

static void stream_unregister_op(tw_transport_t *t)
{
    stream_unregister(stream_of(t), false);
}

static int stream_name(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len, int peer)
{
    *len = sizeof *ss;
    int rc = peer ? getpeername(stream_of(t)->fd, (struct sockaddr *)ss, len)
                  : getsockname(stream_of(t)->fd, (struct sockaddr *)ss, len);
    return rc < 0 ? -errno : 0;
}

static int stream_peer(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    return stream_name(t, ss, len, 1);
}

static int stream_host(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    return stream_name(t, ss, len, 0);
}

static size_t stream_queued(const tw_transport_t *t)
{
    return ((const tw__stream_t *)t)->queued;
}

static void stream_set_limits(tw_transport_t *t, size_t low, size_t high, size_t cap,
                              tw_cap_policy_t policy)
{
    tw__stream_t *s = stream_of(t);
    if (low)
        s->low = low > UINT32_MAX ? UINT32_MAX : (uint32_t)low;
    if (high)
        s->high = high > UINT32_MAX ? UINT32_MAX : (uint32_t)high;
    if (cap)
        s->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    s->policy = (uint8_t)policy;
}

static int stream_setopt(tw_transport_t *t, int level, int opt, bool on)
{
    tw__stream_t *s = stream_of(t);
    if (!(s->flags & S_TCP))
        return -ENOTSUP;
    int v = on;
    return setsockopt(s->fd, level, opt, &v, sizeof v) < 0 ? -errno : 0;
}

static int stream_nodelay(tw_transport_t *t, bool on)
{
    return stream_setopt(t, IPPROTO_TCP, TCP_NODELAY, on);
}

static int stream_keepalive(tw_transport_t *t, bool on)
{
    return stream_setopt(t, SOL_SOCKET, SO_KEEPALIVE, on);
}

static int stream_fileno(const tw_transport_t *t)
{
    return ((const tw__stream_t *)t)->fd;
}

static const tw_transport_ops_t stream_ops = {
    .writev = stream_writev,
    .lose_connection = stream_lose,
    .abort_connection = stream_abort,
    .lose_connection_with = stream_lose_with,
    .lose_write_connection = stream_lose_write,
    .pause_reading = stream_pause,
    .resume_reading = stream_resume,
    .register_producer = stream_register,
    .unregister_producer = stream_unregister_op,
    .peer_address = stream_peer,
    .host_address = stream_host,
    .queued = stream_queued,
    .set_limits = stream_set_limits,
    .set_nodelay = stream_nodelay,
    .set_keepalive = stream_keepalive,
    .fileno = stream_fileno,
};

/* A transport's reading side as a push producer (Twisted's transports are
 * producers too): registering it on itself makes a protocol throttle.  It
 * works through the transport's own vtable, so every transport shares it. */
static void transport_producer_pause(tw_producer_t *p)
{
    tw_transport_pause_reading(TW_CONTAINER_OF(p, tw_transport_t, as_producer));
}

static void transport_producer_resume(tw_producer_t *p)
{
    tw_transport_resume_reading(TW_CONTAINER_OF(p, tw_transport_t, as_producer));
}

static void transport_producer_stop(tw_producer_t *p)
{
    tw_transport_lose_connection(TW_CONTAINER_OF(p, tw_transport_t, as_producer));
}

const tw_producer_ops_t tw__transport_producer_ops = {
    transport_producer_pause, transport_producer_resume, transport_producer_stop
};

/* ---- opening ---------------------------------------------------------- */

tw__stream_t *tw__stream_open(tw_reactor_t *r, int fd, tw_protocol_t *p, tw_factory_t *f,
                              const char *domain, unsigned kind)
{
    tw__stream_t *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        if (p->ops->destroy)
            p->ops->destroy(p);
        return NULL;
    }
    s->base.ops = &stream_ops;
    s->base.reactor = r;
    s->base.protocol = p;
    s->base.as_producer.ops = &tw__transport_producer_ops;
    s->fd = fd;
    s->domain = domain;
    s->low = 16384;
    s->high = 65536;
    s->cap = 4u << 20;
    s->policy = TW_CAP_PAUSE;
    if (kind & TW__STREAM_PIPE)
        s->flags |= S_PIPE;
    if (kind & TW__STREAM_WRONLY)
        s->flags |= S_PIPE | S_WRONLY;
    if (kind & TW__STREAM_FILE)
        s->flags |= S_PIPE | S_FILE;
    if (kind & TW__STREAM_NOREAD)
        s->flags |= S_NOREAD;
    if (kind & TW__STREAM_TCP) {
        s->flags |= S_TCP;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    p->transport = &s->base;
    p->factory = f;
    if (f)
        tw__factory_track(f, &s->base);
    s->flags |= S_MADE;
    if (p->ops->connection_made)
        p->ops->connection_made(p, &s->base);
    stream_update_reading(s);
    return s;
}

void tw__stream_detach_connector(tw__stream_t *s)
{
    s->connector = NULL;
    stream_abort(&s->base);
}

void tw__stream_discard(tw__stream_t *s)
{
    tw__factory_untrack(&s->base);
    tw_reactor_remove_all(s->base.reactor, s->fd);
    close(s->fd);
    stream_free_queue(s);
    tw_failure_free(s->reason);
    free(s);
}
