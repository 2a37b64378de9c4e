/* test_stdio.c -- standard input and output as a transport (tw_stdio_open,
 * Twisted's StandardIO): echo over pipes, 8 MiB through a slow reader with
 * a producer and with the cap alone, a regular file and /dev/null as input,
 * a regular file as output, the output's reader going away (with and
 * without data queued), lose flushing, lose_write on a socket shared by
 * both sides, a terminal (pty) on both sides, the descriptors' flags put
 * back, TW_STDIO_KEEP_OPEN -- and a real child program reading its own
 * stdin and writing its stdout in shell pipelines (this test binary run in
 * child mode, and examples/stdio-echo when it has been built).  Every
 * protocol's lifetime is checked: connection_made first, connection_lost
 * once and last, destroy right after it. */
#define _GNU_SOURCE
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const char *self_path; /* argv[0]: this program, run again in child mode */

/* ---- a protocol that records its life ------------------------------------ */

typedef struct sp {
    tw_protocol_t base;
    tw_transport_t *t;
    int made, data, eofs, lost, destroyed, depth, bad;
    char why[128];
    size_t bytes, max_queued;
    uint64_t hash;
    int lost_code;            /* 0: clean */
    char lost_domain[16];
    int write_errors;
    bool echo, producer;      /* echo what arrives; throttle with as_producer */
    bool lose_on_eof;         /* with the eof ops: lose at the end of input */
    size_t cap;               /* set_limits cap at made (0: default) */
    size_t write_at_made;     /* bytes of pattern written at made */
    bool lose_at_made, lose_write_at_made;
    char keep[256];           /* the first bytes received */
    size_t nkeep;
} sp_t;

static void sp_bad(sp_t *p, const char *what)
{
    if (p->bad++ == 0)
        snprintf(p->why, sizeof p->why, "%s", what);
}

static unsigned char pat(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 11) * 13);
}

static void sp_made(tw_protocol_t *bp, tw_transport_t *t)
{
    sp_t *p = (sp_t *)bp;
    if (p->made || p->lost || bp->transport != t)
        sp_bad(p, "connection_made out of order or without its transport");
    p->made++;
    p->t = t;
    p->depth++;
    if (p->producer && tw_transport_register_producer(t, &t->as_producer, true) != 0)
        sp_bad(p, "register_producer failed");
    if (p->cap)
        tw_transport_set_limits(t, 0, 0, p->cap, TW_CAP_PAUSE);
    if (p->write_at_made) {
        unsigned char *buf = malloc(p->write_at_made);
        for (size_t i = 0; i < p->write_at_made; i++)
            buf[i] = pat(i);
        if (tw_transport_write(t, buf, p->write_at_made) != 0)
            p->write_errors++;
        free(buf);
    }
    if (p->lose_write_at_made && tw_transport_lose_write_connection(t) != 0)
        sp_bad(p, "lose_write_connection failed");
    if (p->lose_at_made)
        tw_transport_lose_connection(t);
    p->depth--;
}

static void sp_data(tw_protocol_t *bp, const void *d, size_t n)
{
    sp_t *p = (sp_t *)bp;
    if (!p->made || p->lost || p->eofs || p->depth || n == 0)
        sp_bad(p, "data_received out of order");
    p->data++;
    p->bytes += n;
    p->hash = tw_test_fnv(p->hash, d, n);
    size_t k = n < sizeof p->keep - p->nkeep ? n : sizeof p->keep - p->nkeep;
    memcpy(p->keep + p->nkeep, d, k);
    p->nkeep += k;
    if (p->echo) {
        if (tw_transport_write(bp->transport, d, n) != 0)
            p->write_errors++;
        size_t q = tw_transport_queued(bp->transport);
        if (q > p->max_queued)
            p->max_queued = q;
    }
}

static void sp_eof(tw_protocol_t *bp)
{
    sp_t *p = (sp_t *)bp;
    if (!p->made || p->lost || p->eofs || p->depth)
        sp_bad(p, "eof_received out of order");
    p->eofs++;
    if (p->lose_on_eof)
        tw_transport_lose_connection(bp->transport);
}

static void sp_lost(tw_protocol_t *bp, const tw_failure_t *why)
{
    sp_t *p = (sp_t *)bp;
    if (!p->made || p->lost || p->depth)
        sp_bad(p, "connection_lost out of order or inside another callback");
    p->lost++;
    p->lost_code = why ? why->code : 0;
    snprintf(p->lost_domain, sizeof p->lost_domain, "%s", why ? why->domain : "");
    if (tw_transport_write(bp->transport, "x", 1) != -EPIPE)
        sp_bad(p, "a write inside connection_lost was not refused");
}

static void sp_destroy(tw_protocol_t *bp)
{
    sp_t *p = (sp_t *)bp;
    if (p->destroyed || p->depth || (p->made && !p->lost))
        sp_bad(p, "destroy out of order");
    p->destroyed++;
}

static const tw_protocol_ops_t sp_ops = {
    .connection_made = sp_made,
    .data_received = sp_data,
    .connection_lost = sp_lost,
    .destroy = sp_destroy,
};

static const tw_protocol_ops_t sp_ops_eof = {
    .connection_made = sp_made,
    .data_received = sp_data,
    .eof_received = sp_eof,
    .connection_lost = sp_lost,
    .destroy = sp_destroy,
};

static void sp_check_ended(const sp_t *p)
{
    if (p->bad)
        fail_msg("protocol: %s", p->why);
    assert_int_equal(p->made, 1);
    assert_int_equal(p->lost, 1);
    assert_int_equal(p->destroyed, 1);
}

/* ---- the test's side of the pipes ------------------------------------------ */

/* Writes `total` bytes of pattern into fd through the reactor, then closes
 * it (when close_at_end). */
typedef struct feeder {
    int fd;
    size_t total, made, off, len;
    uint64_t hash;
    bool close_at_end;
    int done;
    unsigned char buf[65536];
} feeder_t;

static void feeder_cb(tw_reactor_t *r, int fd, void *arg)
{
    feeder_t *f = arg;
    for (;;) {
        if (f->off == f->len) {
            if (f->made == f->total) {
                tw_reactor_remove_writer(r, fd);
                if (f->close_at_end) {
                    close(fd);
                    f->fd = -1;
                }
                f->done = 1;
                return;
            }
            size_t n = f->total - f->made < sizeof f->buf ? f->total - f->made : sizeof f->buf;
            for (size_t i = 0; i < n; i++)
                f->buf[i] = pat(f->made + i);
            f->hash = tw_test_fnv(f->hash, f->buf, n);
            f->made += n;
            f->off = 0;
            f->len = n;
        }
        ssize_t w = write(fd, f->buf + f->off, f->len - f->off);
        if (w < 0) {
            if (errno == EAGAIN)
                return;
            fail_msg("feeder: write: %s", strerror(errno));
        }
        f->off += (size_t)w;
    }
}

static void feeder_start(tw_reactor_t *r, feeder_t *f, int fd, size_t total, bool close_at_end)
{
    memset(f, 0, sizeof *f);
    f->fd = fd;
    f->total = total;
    f->hash = TW_TEST_FNV_INIT;
    f->close_at_end = close_at_end;
    assert_int_equal(tw_reactor_add_writer(r, fd, feeder_cb, f), 0);
}

/* Reads fd through the reactor until its end; `slow`: at most `chunk` bytes
 * a millisecond, so that the other side's queue fills. */
typedef struct drain {
    tw_reactor_t *r;
    int fd;
    size_t got, chunk;
    uint64_t hash;
    int eof;
    bool slow;
    tw_timer_t timer;
    char keep[256];
    size_t nkeep;
} drain_t;

static void drain_cb(tw_reactor_t *r, int fd, void *arg);

static void drain_again(tw_timer_t *t, void *arg)
{
    (void)t;
    drain_t *d = arg;
    assert_int_equal(tw_reactor_add_reader(d->r, d->fd, drain_cb, d), 0);
}

static void drain_cb(tw_reactor_t *r, int fd, void *arg)
{
    drain_t *d = arg;
    char buf[65536];
    size_t want = d->chunk && d->chunk < sizeof buf ? d->chunk : sizeof buf;
    ssize_t n = read(fd, buf, want);
    if (n > 0) {
        d->got += (size_t)n;
        d->hash = tw_test_fnv(d->hash, buf, (size_t)n);
        size_t k = (size_t)n < sizeof d->keep - d->nkeep ? (size_t)n : sizeof d->keep - d->nkeep;
        memcpy(d->keep + d->nkeep, buf, k);
        d->nkeep += k;
        if (d->slow) {
            tw_reactor_remove_reader(r, fd);
            assert_int_equal(tw_timer_start(&d->timer, TW_MSEC(1)), 0);
        }
    } else if (n == 0) {
        d->eof = 1;
        tw_reactor_remove_reader(r, fd);
    } else if (errno != EAGAIN) {
        fail_msg("drain: read: %s", strerror(errno));
    }
}

static void drain_start(tw_reactor_t *r, drain_t *d, int fd, bool slow, size_t chunk)
{
    memset(d, 0, sizeof *d);
    d->r = r;
    d->fd = fd;
    d->slow = slow;
    d->chunk = chunk;
    d->hash = TW_TEST_FNV_INIT;
    tw_timer_init(&d->timer, r, drain_again, d);
    assert_int_equal(tw_reactor_add_reader(r, fd, drain_cb, d), 0);
}

static void drain_stop(drain_t *d)
{
    tw_timer_cancel(&d->timer);
    tw_reactor_remove_all(d->r, d->fd);
    close(d->fd);
}

static void sp_init(sp_t *p, const tw_protocol_ops_t *ops)
{
    memset(p, 0, sizeof *p);
    p->base.ops = ops;
    p->hash = TW_TEST_FNV_INIT;
}

/* Iterate until `cond` holds; the 30 s bound is a guard against a hang,
 * never what decides a correct run. */
#define ITERATE_UNTIL(r, cond)                                                   \
    do {                                                                         \
        tw_time_t give_up_ = tw_time_now() + TW_SEC(30);                         \
        while (!(cond) && tw_time_now() < give_up_)                              \
            assert_true(tw_reactor_iterate((r), TW_MSEC(10)) >= 0);              \
        if (!(cond))                                                             \
            fail_msg("gave up waiting for %s", #cond);                           \
    } while (0)

static bool fd_is_closed(int fd)
{
    return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

static bool nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    return fl & O_NONBLOCK;
}

/* A pipe with blocking ends, as a shell makes them. */
static void blocking_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
}

static int temp_file(char *path, size_t len)
{
    snprintf(path, len, "/tmp/twine-stdio-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

/* ---- pipes on both sides -------------------------------------------------- */

static void pipes_echo_lines_and_close_at_end_of_input(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    blocking_pipe(in);
    blocking_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = true;
    tw_transport_t *t = NULL;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, &t), 0);
    assert_ptr_equal(t, p.t);
    assert_int_equal(p.made, 1);
    assert_int_equal(tw_transport_fileno(t), out[1]);
    struct sockaddr_storage ss;
    socklen_t sl;
    assert_int_equal(tw_transport_peer_address(t, &ss, &sl), -ENOTSUP);
    assert_int_equal(tw_transport_host_address(t, &ss, &sl), -ENOTSUP);
    assert_int_equal(tw_transport_set_nodelay(t, true), -ENOTSUP);
    assert_true(nonblocking(in[0]) && nonblocking(out[1]));

    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    assert_int_equal(write(in[1], "hello\n", 6), 6);
    ITERATE_UNTIL(r, d.got == 6);
    assert_int_equal(write(in[1], "world\n", 6), 6);
    ITERATE_UNTIL(r, d.got == 12);
    assert_memory_equal(d.keep, "hello\nworld\n", 12);
    assert_int_equal(p.lost, 0);

    close(in[1]); /* end of input, and no eof_received: the transport closes */
    ITERATE_UNTIL(r, p.lost && d.eof);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_true(fd_is_closed(in[0]) && fd_is_closed(out[1]));
    drain_stop(&d);
    tw_reactor_free(r);
}

/* 8 MiB through, the reader taking 32 KiB a millisecond: the protocol
 * throttles itself with its own reading side as producer, so its queue
 * stays near the high water mark. */
static void eight_mib_through_a_slow_reader_with_a_producer(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = p.producer = true;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, NULL), 0);
    feeder_t *f = malloc(sizeof *f);
    drain_t d;
    feeder_start(r, f, in[1], 8u << 20, true);
    drain_start(r, &d, out[0], true, 32768);
    ITERATE_UNTIL(r, d.eof);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(p.write_errors, 0);
    assert_int_equal(d.got, 8u << 20);
    assert_true(d.hash == f->hash);
    assert_true(p.hash == f->hash);
    assert_true(p.max_queued <= 256u * 1024);
    assert_true(p.max_queued > 16384); /* the reader really was slow */
    drain_stop(&d);
    free(f);
    tw_reactor_free(r);
}

/* The same without a producer: the cap (here 256 KiB) pauses reading until
 * the queue drains, so memory stays bounded anyway. */
static void eight_mib_through_a_slow_reader_with_the_cap_alone(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = true;
    p.cap = 256u * 1024;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, NULL), 0);
    feeder_t *f = malloc(sizeof *f);
    drain_t d;
    feeder_start(r, f, in[1], 8u << 20, true);
    drain_start(r, &d, out[0], true, 32768);
    ITERATE_UNTIL(r, d.eof);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(d.got, 8u << 20);
    assert_true(d.hash == f->hash);
    /* one more read's worth can arrive after the cap is passed */
    assert_true(p.max_queued <= p.cap + TW_READ_BUFFER_SIZE);
    assert_true(p.max_queued > 64u * 1024); /* the reader really was slow */
    drain_stop(&d);
    free(f);
    tw_reactor_free(r);
}

/* ---- files and devices ------------------------------------------------------ */

static void regular_file_as_input_is_read_whole_then_eof(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char path[64];
    int fd = temp_file(path, sizeof path);
    size_t size = (1u << 20) + 123;
    unsigned char *buf = malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = pat(i);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    uint64_t want = tw_test_fnv(TW_TEST_FNV_INIT, buf, size);
    free(buf);
    close(fd);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    unlink(path);

    int out[2];
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    p.echo = p.producer = p.lose_on_eof = true;
    assert_int_equal(tw_stdio_open(r, &p.base, in, out[1], 0, NULL), 0);
    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    ITERATE_UNTIL(r, p.lost && d.eof);
    sp_check_ended(&p);
    assert_int_equal(p.eofs, 1);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(p.bytes, size);
    assert_true(p.hash == want);
    assert_int_equal(d.got, size);
    assert_true(d.hash == want);
    assert_true(fd_is_closed(in));
    drain_stop(&d);
    tw_reactor_free(r);
}

static void dev_null_as_input_ends_at_once(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out[2];
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    p.lose_on_eof = true;
    assert_int_equal(tw_stdio_open(r, &p.base, in, out[1], 0, NULL), 0);
    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    ITERATE_UNTIL(r, p.lost && d.eof);
    sp_check_ended(&p);
    assert_int_equal(p.eofs, 1);
    assert_int_equal(p.data, 0);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(d.got, 0);
    drain_stop(&d);
    tw_reactor_free(r);
}

static void regular_file_as_output_gets_everything(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char path[64];
    int out = temp_file(path, sizeof path);
    int in[2];
    tw_test_pipe(in);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = true;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out, 0, NULL), 0);
    feeder_t *f = malloc(sizeof *f);
    feeder_start(r, f, in[1], 3u << 20, true);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(p.write_errors, 0);
    assert_true(fd_is_closed(out));

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    unlink(path);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, 3u << 20);
    char *buf = malloc(3u << 20);
    assert_int_equal(read(fd, buf, 3u << 20), 3u << 20);
    assert_true(tw_test_fnv(TW_TEST_FNV_INIT, buf, 3u << 20) == f->hash);
    free(buf);
    close(fd);
    free(f);
    tw_reactor_free(r);
}

/* A pull producer writing to a file: no poller reports a file writable
 * (epoll refuses it), yet the producer is asked for every chunk. */
typedef struct puller {
    tw_producer_t base;
    tw_transport_t *t;
    int chunks, want, stopped;
    uint64_t hash;
    size_t off;
} puller_t;

static void puller_resume(tw_producer_t *bp)
{
    puller_t *pl = (puller_t *)bp;
    if (pl->chunks == pl->want) {
        tw_transport_unregister_producer(pl->t);
        tw_transport_lose_connection(pl->t);
        return;
    }
    unsigned char buf[10000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = pat(pl->off + i);
    pl->off += sizeof buf;
    pl->hash = tw_test_fnv(pl->hash, buf, sizeof buf);
    assert_int_equal(tw_transport_write(pl->t, buf, sizeof buf), 0);
    pl->chunks++;
}

static void puller_pause(tw_producer_t *bp)
{
    (void)bp;
    fail_msg("a pull producer is never paused");
}

static void puller_stop(tw_producer_t *bp)
{
    ((puller_t *)bp)->stopped++;
}

static const tw_producer_ops_t puller_ops = { puller_pause, puller_resume, puller_stop };

static void pull_producer_writing_to_a_file(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char path[64];
    int out = temp_file(path, sizeof path);
    int in[2];
    tw_test_pipe(in);
    sp_t p;
    sp_init(&p, &sp_ops);
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out, 0, &t), 0);
    puller_t pl = { .base.ops = &puller_ops, .t = t, .want = 300, .hash = TW_TEST_FNV_INIT };
    assert_int_equal(tw_transport_register_producer(t, &pl.base, false), 0);
    assert_int_equal(tw_transport_register_producer(t, &pl.base, false), -EBUSY);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(pl.chunks, 300);
    assert_int_equal(pl.stopped, 0); /* unregistered before the lose */

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    unlink(path);
    size_t size = 300u * 10000;
    char *buf = malloc(size + 1);
    assert_int_equal(read(fd, buf, size + 1), (ssize_t)size);
    assert_true(tw_test_fnv(TW_TEST_FNV_INIT, buf, size) == pl.hash);
    free(buf);
    close(fd);
    close(in[1]);
    tw_reactor_free(r);
}

/* The transport closing tells a registered producer to stop; one still
 * registered when the transport ends with a soon call pending is no leak. */
static void a_pull_producer_is_stopped_when_the_transport_goes(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(out >= 0);
    int in[2];
    tw_test_pipe(in);
    sp_t p;
    sp_init(&p, &sp_ops);
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out, 0, &t), 0);
    puller_t pl = { .base.ops = &puller_ops, .t = t, .want = 1000000,
                    .hash = TW_TEST_FNV_INIT };
    assert_int_equal(tw_transport_register_producer(t, &pl.base, false), 0);
    ITERATE_UNTIL(r, pl.chunks >= 10);
    close(in[1]); /* end of input, no eof_received: lose */
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(pl.stopped, 1);
    int before = pl.chunks;
    for (int i = 0; i < 5; i++)
        tw_reactor_iterate(r, 0);
    assert_int_equal(pl.chunks, before);
    tw_reactor_free(r);
}

/* ---- the output's reader goes away ------------------------------------------ */

/* Nothing queued: the write end notices the reader left, and the whole
 * transport ends (input too) with EPIPE, as a pipeline expects. */
static void output_reader_leaving_ends_the_transport_with_epipe(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, NULL), 0);
    assert_true(tw_reactor_iterate(r, 0) >= 0);
    close(out[0]);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, -EPIPE);
    assert_string_equal(p.lost_domain, "stdio");
    errno = 0;
    assert_int_equal(write(in[1], "x", 1), -1); /* our input was closed too */
    assert_int_equal(errno, EPIPE);
    close(in[1]);
    tw_reactor_free(r);
}

/* Data queued when the reader leaves: lost, and said so. */
static void output_reader_leaving_with_data_queued_fails_with_epipe(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.write_at_made = 1u << 20;
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, &t), 0);
    assert_true(tw_transport_queued(t) > 0);
    close(out[0]);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, -EPIPE);
    assert_string_equal(p.lost_domain, "stdio");
    close(in[1]);
    tw_reactor_free(r);
}

/* ---- closing ------------------------------------------------------------------ */

static void lose_connection_sends_everything_queued_first(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.write_at_made = 1u << 20;
    p.lose_at_made = true;
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, &t), 0);
    assert_int_equal(p.write_errors, 0);
    assert_int_equal(tw_transport_write(t, "late", 4), -EPIPE);
    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    ITERATE_UNTIL(r, d.eof && p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_int_equal(d.got, 1u << 20);
    unsigned char *buf = malloc(1u << 20);
    for (size_t i = 0; i < 1u << 20; i++)
        buf[i] = pat(i);
    assert_true(d.hash == tw_test_fnv(TW_TEST_FNV_INIT, buf, 1u << 20));
    free(buf);
    drain_stop(&d);
    close(in[1]);
    tw_reactor_free(r);
}

static void abort_drops_what_is_queued(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.write_at_made = 1u << 20;
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, &t), 0);
    tw_transport_abort_connection(t);
    assert_int_equal(p.lost, 0); /* never inside the call */
    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    ITERATE_UNTIL(r, d.eof && p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, -ECONNABORTED);
    assert_true(d.got < 1u << 20);
    drain_stop(&d);
    close(in[1]);
    tw_reactor_free(r);
}

/* The protocol ends its output while reading goes on: eof_received set, the
 * transport ends once both sides have. */
static void lose_write_then_end_of_input_closes(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    tw_test_pipe(in);
    tw_test_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    p.write_at_made = 1000;
    p.lose_write_at_made = true;
    tw_transport_t *t;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, &t), 0);
    assert_int_equal(tw_transport_write(t, "x", 1), -EPIPE);
    assert_int_equal(tw_transport_lose_write_connection(t), -EPIPE);
    drain_t d;
    drain_start(r, &d, out[0], false, 0);
    ITERATE_UNTIL(r, d.eof);
    assert_int_equal(d.got, 1000);
    assert_int_equal(write(in[1], "more", 4), 4);
    ITERATE_UNTIL(r, p.bytes == 4);
    assert_int_equal(p.lost, 0);
    close(in[1]);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.eofs, 1);
    assert_int_equal(p.lost_code, 0);
    drain_stop(&d);
    tw_reactor_free(r);
}

/* One socket on both sides (in_fd == out_fd): lose_write_connection must
 * reach the peer although the input side still holds the socket. */
static void one_socket_on_both_sides_half_closes(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int s[2];
    tw_test_socketpair(s);
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    p.echo = false;
    assert_int_equal(tw_stdio_open(r, &p.base, s[0], s[0], 0, NULL), 0);
    assert_int_equal(tw_transport_write(p.t, "hello", 5), 0);
    assert_int_equal(tw_transport_lose_write_connection(p.t), 0);
    drain_t d;
    drain_start(r, &d, s[1], false, 0);
    ITERATE_UNTIL(r, d.eof);
    assert_int_equal(d.got, 5);
    assert_memory_equal(d.keep, "hello", 5);
    assert_int_equal(write(s[1], "abc", 3), 3);
    ITERATE_UNTIL(r, p.bytes == 3);
    assert_memory_equal(p.keep, "abc", 3);
    assert_int_equal(p.lost, 0);
    shutdown(s[1], SHUT_WR);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.eofs, 1);
    assert_int_equal(p.lost_code, 0);
    assert_true(fd_is_closed(s[0]));
    drain_stop(&d);
    tw_reactor_free(r);
}

/* A pseudo-terminal pair (the test is skipped where there is none), its
 * slave side raw, or canonical without echo or output processing. */
static void open_pty(int *master, int *slave, bool raw)
{
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0) {
        print_message("no pseudo-terminals here: %s\n", strerror(errno));
        skip();
    }
    assert_int_equal(grantpt(*master), 0);
    assert_int_equal(unlockpt(*master), 0);
    *slave = open(ptsname(*master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(*slave >= 0);
    struct termios tio;
    assert_int_equal(tcgetattr(*slave, &tio), 0);
    if (raw) {
        cfmakeraw(&tio);
    } else {
        tio.c_lflag &= ~(tcflag_t)ECHO;
        tio.c_oflag &= ~(tcflag_t)OPOST;
    }
    assert_int_equal(tcsetattr(*slave, TCSANOW, &tio), 0);
}

/* A terminal on both sides (0 and 1 as a shell leaves them: one open file
 * description, so one O_NONBLOCK flag), read and written, then put back. */
static void a_terminal_on_both_sides(void **state)
{
    (void)state;
    int master, slave;
    open_pty(&master, &slave, true);
    int slave_out = fcntl(slave, F_DUPFD_CLOEXEC, 0);
    assert_true(slave_out >= 0);
    assert_false(nonblocking(slave));

    tw_reactor_t *r = tw_test_reactor_new();
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = true;
    assert_int_equal(tw_stdio_open(r, &p.base, slave, slave_out, TW_STDIO_KEEP_OPEN, NULL), 0);
    assert_true(nonblocking(slave));
    assert_int_equal(fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK), 0);
    drain_t d;
    drain_start(r, &d, master, false, 0);
    assert_int_equal(write(master, "ping\n", 5), 5);
    ITERATE_UNTIL(r, d.got >= 5);
    assert_memory_equal(d.keep, "ping\n", 5);
    assert_memory_equal(p.keep, "ping\n", 5);
    tw_transport_lose_connection(p.t);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_false(nonblocking(slave)); /* the terminal is as it was */
    assert_false(fd_is_closed(slave) || fd_is_closed(slave_out));
    drain_stop(&d);
    close(slave);
    close(slave_out);
    tw_reactor_free(r);
}

/* 0 and 1 as two descriptors of one terminal, not kept open: the end of
 * input (^D) closes the input side, but O_NONBLOCK -- one flag for both --
 * stays until the output side is done too, and only then is put back. */
static void a_terminal_keeps_its_flag_until_both_sides_end(void **state)
{
    (void)state;
    int master, slave;
    open_pty(&master, &slave, false); /* canonical: ^D ends the input */
    int slave_out = fcntl(slave, F_DUPFD_CLOEXEC, 0);
    int seen = fcntl(slave, F_DUPFD_CLOEXEC, 0); /* the terminal, as the shell sees it */
    assert_true(slave_out >= 0 && seen >= 0);

    tw_reactor_t *r = tw_test_reactor_new();
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    assert_int_equal(tw_stdio_open(r, &p.base, slave, slave_out, 0, NULL), 0);
    assert_true(nonblocking(seen));
    assert_int_equal(write(master, "line\n\x04", 6), 6);
    ITERATE_UNTIL(r, p.eofs == 1);
    for (int i = 0; i < 5; i++) /* the input side finishes closing */
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_memory_equal(p.keep, "line\n", 5);
    assert_true(nonblocking(seen)); /* the output side still uses it */
    assert_int_equal(tw_transport_write(p.t, "bye", 3), 0);
    tw_transport_lose_connection(p.t);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_int_equal(p.lost_code, 0);
    assert_false(nonblocking(seen));
    assert_true(fd_is_closed(slave) && fd_is_closed(slave_out));
    char buf[8];
    assert_int_equal(read(master, buf, sizeof buf), 3);
    assert_memory_equal(buf, "bye", 3);
    close(seen);
    close(master);
    tw_reactor_free(r);
}

/* ---- the descriptors' flags, closing, TW_STDIO_KEEP_OPEN ------------------- */

/* The test keeps a second descriptor on each side's description, to see the
 * flags after the transport has closed its own. */
static void flags_are_put_back_as_each_side_closes(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    blocking_pipe(in);
    blocking_pipe(out);
    int in_seen = fcntl(in[0], F_DUPFD_CLOEXEC, 0), out_seen = fcntl(out[1], F_DUPFD_CLOEXEC, 0);
    sp_t p;
    sp_init(&p, &sp_ops_eof);
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], 0, NULL), 0);
    assert_true(nonblocking(in_seen) && nonblocking(out_seen));
    close(in[1]); /* the input side ends; the output side stays */
    ITERATE_UNTIL(r, !nonblocking(in_seen));
    assert_int_equal(p.eofs, 1);
    assert_true(fd_is_closed(in[0]));
    assert_true(nonblocking(out_seen));
    assert_int_equal(tw_transport_write(p.t, "still", 5), 0);
    tw_transport_lose_connection(p.t);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_false(nonblocking(out_seen));
    assert_true(fd_is_closed(out[1]));
    char buf[8];
    assert_int_equal(read(out[0], buf, sizeof buf), 5);
    close(in_seen);
    close(out_seen);
    close(out[0]);
    tw_reactor_free(r);
}

static void keep_open_leaves_the_descriptors_usable(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int in[2], out[2];
    blocking_pipe(in);
    blocking_pipe(out);
    sp_t p;
    sp_init(&p, &sp_ops);
    p.echo = true;
    assert_int_equal(tw_stdio_open(r, &p.base, in[0], out[1], TW_STDIO_KEEP_OPEN, NULL), 0);
    assert_int_equal(write(in[1], "abc", 3), 3);
    ITERATE_UNTIL(r, p.bytes == 3);
    close(in[1]);
    ITERATE_UNTIL(r, p.lost);
    sp_check_ended(&p);
    assert_false(fd_is_closed(in[0]) || fd_is_closed(out[1]));
    assert_false(nonblocking(in[0]) || nonblocking(out[1]));
    assert_int_equal(write(out[1], "def", 3), 3);
    char buf[8];
    assert_int_equal(read(out[0], buf, sizeof buf), 6);
    assert_memory_equal(buf, "abcdef", 6);
    assert_int_equal(read(in[0], buf, sizeof buf), 0); /* at the end, as we left it */
    close(in[0]);
    close(out[0]);
    close(out[1]);
    tw_reactor_free(r);
}

static void bad_arguments_fail_with_nothing_called(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    sp_t p;
    sp_init(&p, &sp_ops);
    int out[2];
    tw_test_pipe(out);
    int closed = dup(out[0]);
    close(closed);
    assert_int_equal(tw_stdio_open(r, &p.base, closed, out[1], 0, NULL), -EBADF);
    assert_int_equal(tw_stdio_open(r, &p.base, -1, out[1], 0, NULL), -EINVAL);
    assert_int_equal(tw_stdio_open(r, &p.base, out[0], out[1], 0x80, NULL), -EINVAL);
    assert_int_equal(p.made + p.lost + p.destroyed, 0);
    assert_false(fd_is_closed(out[1]));
    close(out[0]);
    close(out[1]);
    tw_reactor_free(r);
}

/* ---- a real program on its own stdin and stdout ----------------------------- */

/* Child mode (TW_TEST_STDIO_CHILD set): what examples/stdio-echo does --
 * upper-case stdin onto stdout until the end of input; exit 0 on a clean
 * end, 1 on a failure. */
typedef struct upper {
    tw_protocol_t base;
    tw_reactor_t *r;
    int status;
    bool lost;
} upper_t;

static void upper_data(tw_protocol_t *p, const void *data, size_t len)
{
    char buf[4096];
    const char *d = data;
    while (len) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)d[i]);
        tw_transport_write(p->transport, buf, n);
        d += n;
        len -= n;
    }
}

static void upper_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    upper_t *u = (upper_t *)p;
    if (why)
        fprintf(stderr, "child: %s\n", why->message);
    u->status = why ? 1 : 0;
    u->lost = true;
    tw_reactor_stop(u->r);
}

static const tw_protocol_ops_t upper_ops = { .data_received = upper_data,
                                             .connection_lost = upper_lost };

static int child_main(void)
{
    upper_t u = { .base.ops = &upper_ops, .status = 1 };
    if (tw_reactor_new(&u.r) != 0)
        return 2;
    if (tw_stdio_open(u.r, &u.base, 0, 1, 0, NULL) != 0)
        return 2;
    tw_reactor_run(u.r, TW_RUN_DEFAULT);
    tw_reactor_free(u.r);
    return u.lost ? u.status : 3;
}

/* Run a shell command; its stdout into buf (NUL-terminated); returns the
 * exit status. */
static int shell(const char *cmd, char *buf, size_t size)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void pipelines_through(const char *prog, const char *env)
{
    char cmd[PATH_MAX * 3], got[4096], want[4096];
    snprintf(cmd, sizeof cmd, "printf 'hello\\nworld' | %s '%s'; echo \" rc=$?\"", env, prog);
    shell(cmd, got, sizeof got);
    assert_string_equal(got, "HELLO\nWORLD rc=0\n");

    /* 3 MB through, checked against the same bytes upper-cased by tr */
    snprintf(cmd, sizeof cmd,
             "head -c 3000000 /dev/zero | tr '\\0' 'a' | %s '%s' | cksum", env, prog);
    assert_int_equal(shell(cmd, got, sizeof got), 0);
    shell("head -c 3000000 /dev/zero | tr '\\0' 'A' | cksum", want, sizeof want);
    assert_string_equal(got, want);

    /* stdin and stdout regular files, stdin /dev/null */
    char path[64];
    int fd = temp_file(path, sizeof path);
    assert_int_equal(write(fd, "from a file\n", 12), 12);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s '%s' < %s > %s.out && cat %s.out; rm -f %s.out", env, prog,
             path, path, path, path);
    assert_int_equal(shell(cmd, got, sizeof got), 0);
    assert_string_equal(got, "FROM A FILE\n");
    unlink(path);
    snprintf(cmd, sizeof cmd, "%s '%s' < /dev/null; echo \"rc=$?\"", env, prog);
    shell(cmd, got, sizeof got);
    assert_string_equal(got, "rc=0\n");

    /* the reader of its output leaves: the program ends (with status 1)
     * instead of reading an endless input for ever */
    snprintf(cmd, sizeof cmd, "yes 2>/dev/null | %s '%s' 2>/dev/null | head -n 2", env, prog);
    assert_int_equal(shell(cmd, got, sizeof got), 0);
    assert_string_equal(got, "Y\nY\n");
}

static void a_child_on_its_own_stdin_and_stdout_in_pipelines(void **state)
{
    (void)state;
    pipelines_through(self_path, "TW_TEST_STDIO_CHILD=1");
}

/* examples/stdio-echo, when it has been built: $TWINE_STDIO_ECHO, else
 * build/<variant>/examples/stdio-echo beside this test's build/<variant>/test/,
 * else the release build's (build/rel/examples: the dbg variant builds no
 * examples). */
static void the_stdio_echo_example_in_pipelines(void **state)
{
    (void)state;
    char path[PATH_MAX] = "";
    const char *env = getenv("TWINE_STDIO_ECHO");
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        char self[PATH_MAX];
        snprintf(self, sizeof self, "%s", self_path);
        const char *dir = dirname(self);
        const char *where[] = { "%s/../examples/stdio-echo", "%s/../../rel/examples/stdio-echo" };
        for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
            snprintf(path, sizeof path, where[i], dir);
            if (access(path, X_OK) == 0)
                break;
        }
    }
    if (access(path, X_OK) != 0) {
        print_message("%s is not built: skipped (set TWINE_STDIO_ECHO)\n", path);
        skip();
    }
    pipelines_through(path, "");
}

int main(int argc, char **argv)
{
    (void)argc;
    if (getenv("TW_TEST_STDIO_CHILD"))
        return child_main();
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipes_echo_lines_and_close_at_end_of_input),
        cmocka_unit_test(eight_mib_through_a_slow_reader_with_a_producer),
        cmocka_unit_test(eight_mib_through_a_slow_reader_with_the_cap_alone),
        cmocka_unit_test(regular_file_as_input_is_read_whole_then_eof),
        cmocka_unit_test(dev_null_as_input_ends_at_once),
        cmocka_unit_test(regular_file_as_output_gets_everything),
        cmocka_unit_test(pull_producer_writing_to_a_file),
        cmocka_unit_test(a_pull_producer_is_stopped_when_the_transport_goes),
        cmocka_unit_test(output_reader_leaving_ends_the_transport_with_epipe),
        cmocka_unit_test(output_reader_leaving_with_data_queued_fails_with_epipe),
        cmocka_unit_test(lose_connection_sends_everything_queued_first),
        cmocka_unit_test(abort_drops_what_is_queued),
        cmocka_unit_test(lose_write_then_end_of_input_closes),
        cmocka_unit_test(one_socket_on_both_sides_half_closes),
        cmocka_unit_test(a_terminal_on_both_sides),
        cmocka_unit_test(a_terminal_keeps_its_flag_until_both_sides_end),
        cmocka_unit_test(flags_are_put_back_as_each_side_closes),
        cmocka_unit_test(keep_open_leaves_the_descriptors_usable),
        cmocka_unit_test(bad_arguments_fail_with_nothing_called),
        cmocka_unit_test(a_child_on_its_own_stdin_and_stdout_in_pipelines),
        cmocka_unit_test(the_stdio_echo_example_in_pipelines),
    };
    TW_TEST_MAIN(tests);
}
