/* stdio.c -- the program's standard input and output as one transport
 * (Twisted's StandardIO).
 *
 * Two streams (stream.c) do the work: one reads in_fd, one writes out_fd.
 * Each has a small internal protocol that forwards to the composite
 * transport below, which is what the user's protocol sees.  The composite
 * ends -- connection_lost, then destroy -- once both streams have finished,
 * with the first failure either of them reported.
 *
 * Each stream owns a dup() of its descriptor, and the originals stay with
 * us until their side ends: in_fd may equal out_fd (a socket or a terminal
 * on both), and the originals are where the descriptors' flags are restored.
 * O_NONBLOCK lives on the open file description, which is shared with the
 * terminal or the parent (and with the other side, when 0 and 1 are the same
 * terminal), so it is set while in use and put back as each side ends --
 * when both sides are on the same file, only once both have ended. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream.h"
#include "tw_process.h"

#define ST_MADE         0x01u /* the user's connection_made was delivered */
#define ST_LOSING       0x02u /* lose or abort: both sides are closing */
#define ST_WRITE_CLOSED 0x04u /* the output side is closing or gone */
#define ST_WRITE_SHUT   0x08u /* lose_write_connection on a socket: shutdown once sent */
#define ST_USER_PAUSED  0x10u /* pause_reading */
#define ST_CAP_PAUSED   0x20u /* reading paused: output over the cap (TW_CAP_PAUSE) */
#define ST_KEEP_OPEN    0x40u /* TW_STDIO_KEEP_OPEN */
#define ST_SAME_FILE    0x80u /* in and out are one file: they may share flags */
#define ST_REASON_GIVEN 0x100u /* reason came from lose_with: an I/O error replaces it */
#define ST_OPENING      0x200u /* in tw_stdio_open: a failed stream must not free us */
#define ST_OUT_FILE     0x400u /* output is a file or /dev/null: never "writable" to a poller */
#define ST_PULL_SOON    0x800u /* a soon call for the user's pull producer is pending */
#define ST_FINISHED     0x1000u /* ended while that call was pending: it frees us */

typedef struct stdio_side {
    tw_protocol_t proto;  /* the stream's protocol: forwards to the composite */
    tw__stream_t *s;      /* NULL before it opens and once it is gone */
    int fd;               /* the caller's descriptor (the stream has a dup) */
    int saved_flags;      /* its file status flags before we set O_NONBLOCK */
    bool live;            /* the stream has not finished yet */
    bool restored, closed; /* the caller's descriptor: flags put back, closed */
} stdio_side_t;

typedef struct tw_stdio {
    tw_transport_t base; /* first: what the user's protocol holds */
    stdio_side_t in, out;
    unsigned flags;
    /* Registered with the output stream at all times, so the composite
     * hears about its water marks: it forwards them to the user's producer
     * and lifts the cap pause of the input side. */
    tw_producer_t outp;
    tw_producer_t *uprod;
    bool ustreaming;
    bool upull_soon; /* uprod is a pull producer driven by soon calls (ST_OUT_FILE) */
    size_t low, cap;
    tw_cap_policy_t policy;
    tw_failure_t *reason; /* the first failure; NULL: a clean close */
} tw_stdio_t;

static const tw_transport_ops_t stdio_ops;
static const tw_protocol_ops_t in_ops, out_ops;
static const tw_producer_ops_t outp_ops;

static inline tw_stdio_t *stdio_of(tw_transport_t *t)
{
    return (tw_stdio_t *)t;
}

static inline tw_stdio_t *of_in(tw_protocol_t *p)
{
    return TW_CONTAINER_OF(p, tw_stdio_t, in.proto);
}

static inline tw_stdio_t *of_out(tw_protocol_t *p)
{
    return TW_CONTAINER_OF(p, tw_stdio_t, out.proto);
}

static inline tw_stdio_t *of_outp(tw_producer_t *p)
{
    return TW_CONTAINER_OF(p, tw_stdio_t, outp);
}

/* ---- the caller's descriptors ------------------------------------------ */

static void side_restore(stdio_side_t *side)
{
    if (side->restored)
        return;
    side->restored = true;
    if (side->saved_flags >= 0 && !(side->saved_flags & O_NONBLOCK))
        fcntl(side->fd, F_SETFL, side->saved_flags);
}

/* The side's stream has closed its dup: put the caller's descriptor back as
 * it was, and close it unless asked not to.  When both sides are on one
 * file (one descriptor, or 0 and 1 on one terminal: maybe one description,
 * one O_NONBLOCK), the side that ends last does both, so the other side
 * keeps its flag and the descriptor we restore through is still ours. */
static void side_release(tw_stdio_t *st, stdio_side_t *side, bool at_end)
{
    stdio_side_t *other = side == &st->in ? &st->out : &st->in;
    if (!at_end && other->live && (st->flags & ST_SAME_FILE))
        return;
    side_restore(side);
    if (other->fd == side->fd)
        other->restored = true; /* the same flags, read before either was set */
    if (!side->closed) {
        side->closed = true;
        if (other->fd == side->fd)
            other->closed = true;
        if (!(st->flags & ST_KEEP_OPEN))
            close(side->fd);
    }
}

/* ---- reading ------------------------------------------------------------- */

/* Pause or resume the input stream to match the flags (its own pause is not
 * counted: two reasons to pause are kept here). */
static void stdio_update_input(tw_stdio_t *st)
{
    if (!st->in.live)
        return;
    if (st->flags & (ST_USER_PAUSED | ST_CAP_PAUSED))
        tw_transport_pause_reading(&st->in.s->base);
    else
        tw_transport_resume_reading(&st->in.s->base);
}

static void in_data(tw_protocol_t *p, const void *data, size_t len)
{
    tw_protocol_t *up = of_in(p)->base.protocol;
    up->ops->data_received(up, data, len);
}

static void in_eof(tw_protocol_t *p)
{
    tw_stdio_t *st = of_in(p);
    tw_protocol_t *up = st->base.protocol;
    /* The input stream has nothing more to do: let it go now, so its
     * descriptor is closed even while the output side carries on. */
    tw_transport_lose_connection(&st->in.s->base);
    if (up->ops->eof_received)
        up->ops->eof_received(up);
    else
        tw_transport_lose_connection(&st->base);
}

static void out_data(tw_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data, (void)len; /* never read: the stream is write-only */
}

/* ---- one side ends, then both ------------------------------------------ */

static void stdio_note_reason(tw_stdio_t *st, const tw_failure_t *reason)
{
    if (!reason)
        return;
    if (st->reason && !(st->flags & ST_REASON_GIVEN))
        return; /* the first failure wins */
    tw_failure_t *copy = tw_failure_copy(reason);
    if (!copy)
        return;
    tw_failure_free(st->reason);
    st->reason = copy;
    st->flags &= ~ST_REASON_GIVEN;
}

static void in_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    tw_stdio_t *st = of_in(p);
    stdio_note_reason(st, reason);
    st->in.live = false;
    side_release(st, &st->in, false);
    /* A read error: nothing more will come in, so finish what goes out
     * (a clean end of input was handled by in_eof). */
    if (reason)
        tw_transport_lose_connection(&st->base);
}

static void out_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    tw_stdio_t *st = of_out(p);
    stdio_note_reason(st, reason);
    bool asked = st->flags & (ST_LOSING | ST_WRITE_CLOSED);
    st->flags |= ST_WRITE_CLOSED;
    st->out.live = false;
    /* The caller's descriptor may still hold the socket open (in_fd is the
     * same socket): a half-close must say so to the peer. */
    if ((st->flags & ST_WRITE_SHUT) && !reason)
        shutdown(st->out.fd, SHUT_WR);
    side_release(st, &st->out, false);
    /* Nothing is queued any more: a cap pause would never be lifted. */
    if (st->flags & ST_CAP_PAUSED) {
        st->flags &= ~ST_CAP_PAUSED;
        stdio_update_input(st);
    }
    if (!asked) {
        /* Our output went away unasked (its reader left, or a write
         * failed): a program with nowhere to write ends, as a pipeline
         * expects (SIGPIPE would have ended it). */
        if (!st->reason)
            st->reason = tw_failure_new("stdio", -EPIPE, "the output was closed by its reader");
        tw_transport_lose_connection(&st->base);
    }
}

static void stdio_side_gone(tw_stdio_t *st, stdio_side_t *side)
{
    side->s = NULL;
    if (st->in.s || st->out.s || (st->flags & ST_OPENING))
        return;
    /* Both streams are gone: the composite ends now (we are in the last
     * stream's destroy, after which it never touches its protocol). */
    side_release(st, &st->in, true);
    side_release(st, &st->out, true);
    tw_protocol_t *up = st->base.protocol;
    if (st->flags & ST_MADE) {
        if (up->ops->connection_lost)
            up->ops->connection_lost(up, st->reason);
        if (up->ops->destroy)
            up->ops->destroy(up);
    }
    tw_failure_free(st->reason);
    if (st->flags & ST_PULL_SOON)
        st->flags |= ST_FINISHED;
    else
        free(st);
}

static void in_destroy(tw_protocol_t *p)
{
    stdio_side_gone(of_in(p), &of_in(p)->in);
}

static void out_destroy(tw_protocol_t *p)
{
    stdio_side_gone(of_out(p), &of_out(p)->out);
}

static const tw_protocol_ops_t in_ops = {
    .data_received = in_data,
    .eof_received = in_eof,
    .connection_lost = in_lost,
    .destroy = in_destroy,
};

static const tw_protocol_ops_t out_ops = {
    .data_received = out_data,
    .connection_lost = out_lost,
    .destroy = out_destroy,
};

/* ---- the output stream's producer: water marks -------------------------- */

static void outp_pause(tw_producer_t *p)
{
    tw_stdio_t *st = of_outp(p);
    if (st->uprod && st->ustreaming)
        st->uprod->ops->pause_producing(st->uprod);
}

static void outp_resume(tw_producer_t *p)
{
    tw_stdio_t *st = of_outp(p);
    if (st->flags & ST_CAP_PAUSED) {
        st->flags &= ~ST_CAP_PAUSED;
        stdio_update_input(st);
    }
    if (st->uprod && !st->upull_soon) /* that one is driven by stdio_pull_cb */
        st->uprod->ops->resume_producing(st->uprod);
}

static void outp_stop(tw_producer_t *p)
{
    tw_stdio_t *st = of_outp(p);
    tw_producer_t *up = st->uprod;
    st->uprod = NULL;
    st->upull_soon = false;
    /* As a stream does, our own reading side is not told to stop: the
     * transport it belongs to is closing anyway. */
    if (up && up != &st->base.as_producer && up->ops->stop_producing)
        up->ops->stop_producing(up);
}

static const tw_producer_ops_t outp_ops = { outp_pause, outp_resume, outp_stop };

/* ---- the transport -------------------------------------------------------- */

static bool stdio_can_write(const tw_stdio_t *st)
{
    return st->out.live && !(st->flags & (ST_LOSING | ST_WRITE_CLOSED));
}

static int stdio_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    tw_stdio_t *st = stdio_of(t);
    if (!stdio_can_write(st))
        return -EPIPE;
    tw_transport_t *o = &st->out.s->base;
    int rc = tw_transport_writev(o, iov, iovcnt);
    /* The queue is over the cap: stop reading what we would answer, until
     * it drains (the output stream's producer hears of that).  Only past
     * the high mark too, so that a resume is sure to come. */
    if (rc == 0 && st->policy == TW_CAP_PAUSE && !(st->flags & ST_CAP_PAUSED) &&
        !(st->uprod && !st->ustreaming)) {
        size_t q = tw_transport_queued(o), high = st->out.s->high;
        if (q > st->cap && q > high) {
            st->flags |= ST_CAP_PAUSED;
            stdio_update_input(st);
        }
    }
    return rc;
}

static void stdio_lose(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    if (st->flags & ST_LOSING)
        return;
    st->flags |= ST_LOSING;
    if (st->in.live)
        tw_transport_lose_connection(&st->in.s->base);
    if (st->out.live)
        tw_transport_lose_connection(&st->out.s->base); /* sends what is queued first */
}

static void stdio_lose_with(tw_transport_t *t, tw_failure_t *reason)
{
    tw_stdio_t *st = stdio_of(t);
    if ((st->flags & ST_LOSING) || st->reason || !reason) {
        tw_failure_free(reason);
    } else {
        st->reason = reason;
        st->flags |= ST_REASON_GIVEN;
    }
    stdio_lose(t);
}

static void stdio_abort(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    st->flags |= ST_LOSING;
    if (st->in.live)
        tw_transport_abort_connection(&st->in.s->base);
    if (st->out.live)
        tw_transport_abort_connection(&st->out.s->base);
}

static int stdio_lose_write(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    if (!stdio_can_write(st))
        return -EPIPE;
    st->flags |= ST_WRITE_CLOSED;
    /* A stream on a socket would shut it down and wait for the peer's end
     * of input, which a write-only stream never sees: close it instead, and
     * shut the socket down ourselves once it has sent everything. */
    struct stat sb;
    if (fstat(st->out.fd, &sb) == 0 && S_ISSOCK(sb.st_mode))
        st->flags |= ST_WRITE_SHUT;
    tw_transport_lose_connection(&st->out.s->base);
    return 0;
}

static void stdio_pause(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    st->flags |= ST_USER_PAUSED;
    stdio_update_input(st);
}

static void stdio_resume(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    st->flags &= ~ST_USER_PAUSED;
    stdio_update_input(st);
}

/* A pull producer writing to a file: the stream would wait for the file to
 * be writable, which no poller says of a file (epoll refuses it), so it is
 * asked for more from a soon call, once per iteration -- a file takes each
 * write whole. */
static void stdio_pull_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    tw_stdio_t *st = arg;
    st->flags &= ~ST_PULL_SOON;
    if (st->flags & ST_FINISHED) {
        free(st);
        return;
    }
    if (!st->upull_soon || !stdio_can_write(st))
        return;
    st->uprod->ops->resume_producing(st->uprod);
    /* Still wanted (and not rescheduled by a producer registered anew)? */
    if (st->upull_soon && stdio_can_write(st) && !(st->flags & ST_PULL_SOON) &&
        tw_reactor_call_soon(st->base.reactor, stdio_pull_cb, st) == 0)
        st->flags |= ST_PULL_SOON;
}

static int stdio_register(tw_transport_t *t, tw_producer_t *p, bool streaming)
{
    tw_stdio_t *st = stdio_of(t);
    if (!stdio_can_write(st))
        return -EPIPE;
    if (st->uprod)
        return -EBUSY;
    if (!streaming && (st->flags & ST_OUT_FILE)) {
        if (!(st->flags & ST_PULL_SOON)) {
            if (tw_reactor_call_soon(t->reactor, stdio_pull_cb, st) != 0)
                return -ENOMEM;
            st->flags |= ST_PULL_SOON;
        }
        st->uprod = p;
        st->ustreaming = false;
        st->upull_soon = true;
        return 0;
    }
    /* Register our producer again, the user's way (push or pull): the
     * stream then pauses, resumes or polls it as it would the user's. */
    tw_transport_t *o = &st->out.s->base;
    tw_transport_unregister_producer(o);
    st->uprod = p;
    st->ustreaming = streaming;
    int rc = tw_transport_register_producer(o, &st->outp, streaming);
    if (rc != 0)
        st->uprod = NULL;
    return rc;
}

static void stdio_unregister(tw_transport_t *t)
{
    tw_stdio_t *st = stdio_of(t);
    if (!st->uprod)
        return;
    st->uprod = NULL;
    if (st->upull_soon) { /* ours stayed registered as it was */
        st->upull_soon = false;
        return;
    }
    if (st->out.live) {
        tw_transport_t *o = &st->out.s->base;
        tw_transport_unregister_producer(o);
        tw_transport_register_producer(o, &st->outp, true);
    }
}

static int stdio_no_address(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    (void)t, (void)ss, (void)len;
    return -ENOTSUP;
}

static size_t stdio_queued(const tw_transport_t *t)
{
    const tw_stdio_t *st = (const tw_stdio_t *)t;
    return st->out.live ? tw_transport_queued(&st->out.s->base) : 0;
}

static void stdio_set_limits(tw_transport_t *t, size_t low, size_t high, size_t cap,
                             tw_cap_policy_t policy)
{
    tw_stdio_t *st = stdio_of(t);
    if (low)
        st->low = low;
    if (cap)
        st->cap = cap;
    st->policy = policy;
    if (st->out.live)
        tw_transport_set_limits(&st->out.s->base, low, high, cap, policy);
}

static int stdio_no_option(tw_transport_t *t, bool on)
{
    (void)t, (void)on;
    return -ENOTSUP;
}

static int stdio_fileno(const tw_transport_t *t)
{
    const tw_stdio_t *st = (const tw_stdio_t *)t;
    return st->out.live ? st->out.fd : -1;
}

static const tw_transport_ops_t stdio_ops = {
    .writev = stdio_writev,
    .lose_connection = stdio_lose,
    .abort_connection = stdio_abort,
    .lose_connection_with = stdio_lose_with,
    .lose_write_connection = stdio_lose_write,
    .pause_reading = stdio_pause,
    .resume_reading = stdio_resume,
    .register_producer = stdio_register,
    .unregister_producer = stdio_unregister,
    .peer_address = stdio_no_address,
    .host_address = stdio_no_address,
    .queued = stdio_queued,
    .set_limits = stdio_set_limits,
    .set_nodelay = stdio_no_option,
    .set_keepalive = stdio_no_option,
    .fileno = stdio_fileno,
};

/* ---- opening ---------------------------------------------------------------- */

/* How each side is read or written, from what the descriptor is. */
static unsigned in_kind(const struct stat *sb, int fd)
{
    if (S_ISFIFO(sb->st_mode))
        return TW__STREAM_PIPE;
    if (S_ISSOCK(sb->st_mode))
        return TW__STREAM_SOCKET;
    /* A terminal can be polled; /dev/null and its kin cannot (epoll refuses
     * them) but never block either: read them as files. */
    if (S_ISCHR(sb->st_mode) && isatty(fd))
        return TW__STREAM_PIPE;
    return TW__STREAM_FILE;
}

static unsigned out_kind(const struct stat *sb, bool same_file)
{
    /* The write end of a pipe: watched to learn that the reader left --
     * unless it is also our input (a FIFO opened for both), which is
     * readable for another reason. */
    if (S_ISFIFO(sb->st_mode) && !same_file)
        return TW__STREAM_WRONLY;
    if (S_ISSOCK(sb->st_mode))
        return TW__STREAM_NOREAD; /* send(2), without SIGPIPE */
    return TW__STREAM_NOREAD | TW__STREAM_PIPE; /* write(2): terminal, file, /dev/null */
}

/* A close-on-exec duplicate for the stream, and O_NONBLOCK set (it is the
 * description's flag: the caller's descriptor sees it too, until
 * side_restore).  Returns the duplicate or -errno. */
static int side_prepare(stdio_side_t *side)
{
    int dup_fd = fcntl(side->fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return -errno;
    side->restored = false;
    if (!(side->saved_flags & O_NONBLOCK) &&
        fcntl(side->fd, F_SETFL, side->saved_flags | O_NONBLOCK) < 0) {
        int rc = -errno;
        close(dup_fd);
        return rc;
    }
    return dup_fd;
}

int tw_stdio_open(tw_reactor_t *r, tw_protocol_t *p, int in_fd, int out_fd, unsigned flags,
                  tw_transport_t **out)
{
    if (!r || !p || !p->ops || !p->ops->data_received || in_fd < 0 || out_fd < 0 ||
        (flags & ~TW_STDIO_KEEP_OPEN))
        return -EINVAL;
    struct stat isb, osb;
    if (fstat(in_fd, &isb) < 0 || fstat(out_fd, &osb) < 0)
        return -errno;
    tw_stdio_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->base.ops = &stdio_ops;
    st->base.reactor = r;
    st->base.protocol = p;
    st->base.as_producer.ops = &tw__transport_producer_ops;
    st->in.proto.ops = &in_ops;
    st->out.proto.ops = &out_ops;
    st->outp.ops = &outp_ops;
    st->low = 16384;
    st->cap = 4u << 20;
    st->policy = TW_CAP_PAUSE;
    bool same = isb.st_dev == osb.st_dev && isb.st_ino == osb.st_ino;
    if (same)
        st->flags |= ST_SAME_FILE;
    if (flags & TW_STDIO_KEEP_OPEN)
        st->flags |= ST_KEEP_OPEN;
    if (S_ISREG(osb.st_mode) || S_ISBLK(osb.st_mode) ||
        (S_ISCHR(osb.st_mode) && !isatty(out_fd)))
        st->flags |= ST_OUT_FILE;
    st->in.restored = st->out.restored = true; /* nothing to put back yet */
    st->in.closed = st->out.closed = true;     /* and the caller's until we succeed */
    st->in.fd = in_fd;
    st->out.fd = out_fd;
    /* Both sets of flags before either is changed: 0 and 1 may be one
     * description (a terminal), where setting one sets the other. */
    st->in.saved_flags = fcntl(in_fd, F_GETFL);
    st->out.saved_flags = fcntl(out_fd, F_GETFL);
    if (st->in.saved_flags < 0 || st->out.saved_flags < 0) {
        free(st);
        return -EBADF;
    }
    st->flags |= ST_OPENING;
    int din = side_prepare(&st->in);
    if (din < 0) {
        free(st);
        return din;
    }
    int dout = side_prepare(&st->out);
    if (dout < 0) {
        side_restore(&st->in);
        close(din);
        free(st);
        return dout;
    }

    /* The output first, so that whatever the input brings can be answered;
     * neither delivers anything before we return (reading happens from the
     * reactor).  A stream that cannot be made closes its descriptor and
     * destroys its protocol (our side) before returning NULL. */
    st->out.live = true;
    st->out.s = tw__stream_open(r, dout, &st->out.proto, NULL, "stdio", out_kind(&osb, same));
    if (!st->out.s) {
        side_restore(&st->in);
        side_restore(&st->out);
        close(din);
        free(st);
        return -ENOMEM;
    }
    tw_transport_register_producer(&st->out.s->base, &st->outp, true);
    st->in.live = true;
    st->in.s = tw__stream_open(r, din, &st->in.proto, NULL, "stdio", in_kind(&isb, in_fd));
    st->flags &= ~ST_OPENING;
    if (!st->in.s) {
        /* The output stream finishes from the reactor; with ST_MADE unset
         * it frees the composite and calls nothing of the user's. */
        st->in.live = false;
        side_restore(&st->in);
        side_restore(&st->out);
        stdio_abort(&st->base);
        return -ENOMEM;
    }
    /* From here on the caller's descriptors are ours to close. */
    st->in.closed = st->out.closed = false;
    p->transport = &st->base;
    p->factory = NULL;
    st->flags |= ST_MADE;
    if (out)
        *out = &st->base;
    if (p->ops->connection_made)
        p->ops->connection_made(p, &st->base);
    return 0;
}
