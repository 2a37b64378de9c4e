/* test_unix.c -- UNIX stream sockets: echo through a listener in a private
 * /tmp directory, the socket file's mode, stale and live socket files, other
 * files in the way, removal on close, Linux's abstract namespace, connecting
 * to a missing path, and the TCP-only options; every protocol's lifetime is
 * checked as in test_tcp.c. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- a protocol that records its life ------------------------------------ */

typedef struct life {
    tw_transport_t *t;
    int made, data, eofs, lost, destroyed, depth, bad;
    char why[96];
    int made_at, last_data_at, eof_at, lost_at, destroy_at;
    bool lost_clean;
    size_t bytes;
    uint64_t hash;
    int write_errors;
} life_t;

typedef struct tproto tproto_t;

typedef struct tfactory {
    tw_factory_t base;
    bool echo, eof_handler;
    void (*on_made)(tproto_t *p, tw_transport_t *t);
    void *user;
    life_t lives[4];
    int nlives, overflow, seq;
    int builds, made, lost, destroyed;
    int starts, stops, failed, conn_lost;
    int fail_code;
    const char *fail_domain;
    bool in_call;
    int inside_call;
} tfactory_t;

struct tproto {
    tw_protocol_t base;
    tfactory_t *tf;
    life_t *life;
};

static void life_bad(life_t *l, const char *what)
{
    if (l->bad++ == 0)
        snprintf(l->why, sizeof l->why, "%s", what);
}

static void tp_made(tw_protocol_t *bp, tw_transport_t *t)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (l->made || l->lost || bp->transport != t)
        life_bad(l, "connection_made out of order or without its transport");
    l->made++;
    l->made_at = ++p->tf->seq;
    l->t = t;
    p->tf->made++;
    l->depth++;
    if (p->tf->echo && tw_transport_register_producer(t, &t->as_producer, true) != 0)
        life_bad(l, "register_producer failed");
    if (p->tf->on_made)
        p->tf->on_made(p, t);
    l->depth--;
}

static void tp_data(tw_protocol_t *bp, const void *d, size_t n)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost || l->eofs || l->depth || n == 0)
        life_bad(l, "data_received out of order");
    l->data++;
    l->last_data_at = ++p->tf->seq;
    l->bytes += n;
    l->hash = tw_test_fnv(l->hash, d, n);
    if (p->tf->echo && tw_transport_write(bp->transport, d, n) != 0)
        l->write_errors++;
}

static void tp_eof(tw_protocol_t *bp)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost || l->eofs || l->depth)
        life_bad(l, "eof_received out of order");
    l->eofs++;
    l->eof_at = ++p->tf->seq;
}

static void tp_lost(tw_protocol_t *bp, const tw_failure_t *why)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (!l->made || l->lost || l->depth)
        life_bad(l, "connection_lost out of order or inside another callback");
    l->lost++;
    l->lost_at = ++p->tf->seq;
    l->lost_clean = why == NULL;
    if (why && strcmp(why->domain, "unix") != 0)
        life_bad(l, "failure outside the \"unix\" domain");
    if (tw_transport_write(bp->transport, "x", 1) != -EPIPE)
        life_bad(l, "a write inside connection_lost was not refused");
    p->tf->lost++;
    l->t = NULL;
}

static void tp_destroy(tw_protocol_t *bp)
{
    tproto_t *p = (tproto_t *)bp;
    life_t *l = p->life;
    if (l->destroyed || l->depth || (l->made && !l->lost))
        life_bad(l, "destroy out of order");
    l->destroyed++;
    l->destroy_at = ++p->tf->seq;
    p->tf->destroyed++;
    free(p);
}

static const tw_protocol_ops_t tp_ops = {
    .connection_made = tp_made,
    .data_received = tp_data,
    .connection_lost = tp_lost,
    .destroy = tp_destroy,
};

static const tw_protocol_ops_t tp_ops_eof = {
    .connection_made = tp_made,
    .data_received = tp_data,
    .eof_received = tp_eof,
    .connection_lost = tp_lost,
    .destroy = tp_destroy,
};

static tw_protocol_t *tf_build(tw_factory_t *f, const struct sockaddr *addr, socklen_t len)
{
    tfactory_t *tf = (tfactory_t *)f;
    tf->builds++;
    if (!addr || len < (socklen_t)sizeof(sa_family_t) || addr->sa_family != AF_UNIX ||
        tf->nlives == 4) {
        tf->overflow++;
        return NULL;
    }
    tproto_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base.ops = tf->eof_handler ? &tp_ops_eof : &tp_ops;
    p->tf = tf;
    p->life = &tf->lives[tf->nlives++];
    p->life->hash = TW_TEST_FNV_INIT;
    return &p->base;
}

static void tf_start(tw_factory_t *f)
{
    ((tfactory_t *)f)->starts++;
}

static void tf_stop(tw_factory_t *f)
{
    ((tfactory_t *)f)->stops++;
}

static void tf_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    (void)c;
    tfactory_t *tf = (tfactory_t *)f;
    tf->failed++;
    tf->inside_call += tf->in_call;
    tf->fail_code = why->code;
    tf->fail_domain = why->domain;
}

static void tf_conn_lost(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    (void)c;
    (void)why;
    tfactory_t *tf = (tfactory_t *)f;
    tf->conn_lost++;
    tf->inside_call += tf->in_call;
}

static const tw_factory_ops_t tf_ops = {
    .build_protocol = tf_build,
    .start = tf_start,
    .stop = tf_stop,
    .connection_failed = tf_failed,
    .connection_lost = tf_conn_lost,
};

static void tf_init(tfactory_t *tf)
{
    memset(tf, 0, sizeof *tf);
    tf->base.ops = &tf_ops;
}

static void tf_check_all(const tfactory_t *tf)
{
    assert_int_equal(tf->overflow, 0);
    assert_int_equal(tf->inside_call, 0);
    assert_int_equal(tf->destroyed, tf->nlives);
    for (int i = 0; i < tf->nlives; i++) {
        const life_t *l = &tf->lives[i];
        if (l->bad)
            fail_msg("protocol %d: %s", i, l->why);
        assert_int_equal(l->made, 1);
        assert_int_equal(l->lost, 1);
        assert_int_equal(l->destroyed, 1);
        assert_null(l->t);
        assert_true(l->lost_at > l->last_data_at && l->lost_at > l->eof_at);
        assert_int_equal(l->destroy_at, l->lost_at + 1);
    }
}

/* ---- a private directory ------------------------------------------------- */

typedef struct tmpdir {
    char dir[64];
    char path[128]; /* dir/sock */
} tmpdir_t;

static void tmpdir_make(tmpdir_t *d)
{
    snprintf(d->dir, sizeof d->dir, "/tmp/twine-unix-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof d->path, "%s/sock", d->dir);
}

static void tmpdir_remove(tmpdir_t *d)
{
    unlink(d->path);
    assert_int_equal(rmdir(d->dir), 0);
}

static bool is_socket_file(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static tw_listener_t *listen_at(tw_reactor_t *r, tfactory_t *tf, const char *path, int mode)
{
    tw_unix_listen_opts_t o = { .path = path, .mode = mode };
    tw_listener_t *l = NULL;
    assert_int_equal(tw_unix_listen(r, &tf->base, &o, &l), 0);
    assert_non_null(l);
    assert_int_equal(tw_listener_port(l), -1);
    return l;
}

static tw_connector_t *connect_at(tw_reactor_t *r, tfactory_t *tf, const char *path)
{
    tw_connector_t *c = NULL;
    tf->in_call = true;
    int rc = tw_unix_connect(r, &tf->base, path, 0, &c);
    tf->in_call = false;
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

/* ---- echo ----------------------------------------------------------------- */

#define ECHO_BYTES (300 * 1024)

typedef struct echo_ctx {
    unsigned char *msg;
    int rc_write, rc_shut, rc_nodelay, rc_keepalive;
    int srv_nodelay, srv_keepalive;
    sa_family_t peer_family, host_family;
} echo_ctx_t;

static void client_sends_then_half_closes(tproto_t *p, tw_transport_t *t)
{
    echo_ctx_t *e = p->tf->user;
    e->rc_nodelay = tw_transport_set_nodelay(t, true);
    e->rc_keepalive = tw_transport_set_keepalive(t, true);
    struct sockaddr_storage ss;
    socklen_t len;
    if (tw_transport_peer_address(t, &ss, &len) == 0)
        e->peer_family = ss.ss_family;
    if (tw_transport_host_address(t, &ss, &len) == 0)
        e->host_family = ss.ss_family;
    e->rc_write = tw_transport_write(t, e->msg, ECHO_BYTES);
    e->rc_shut = tw_transport_lose_write_connection(t);
}

static void server_options(tproto_t *p, tw_transport_t *t)
{
    echo_ctx_t *e = p->tf->user;
    e->srv_nodelay = tw_transport_set_nodelay(t, false);
    e->srv_keepalive = tw_transport_set_keepalive(t, false);
}

/* Echo ECHO_BYTES through a listener at `path` (listening already). */
static void echo_through(tw_reactor_t *r, tfactory_t *srv, const char *path)
{
    tfactory_t cli;
    tf_init(&cli);
    cli.eof_handler = true;
    echo_ctx_t e = { .msg = malloc(ECHO_BYTES) };
    assert_non_null(e.msg);
    for (size_t i = 0; i < ECHO_BYTES; i++)
        e.msg[i] = (unsigned char)(i * 31 + (i >> 9));
    cli.on_made = client_sends_then_half_closes;
    cli.user = &e;
    srv->user = &e;
    srv->on_made = server_options;
    int destroyed = srv->destroyed;
    tw_connector_t *c = connect_at(r, &cli, path);
    assert_int_equal(cli.failed, 0);
    tw_test_run_until(r, &cli.conn_lost, 1);
    tw_test_run_until(r, &srv->destroyed, destroyed + 1);
    tf_check_all(&cli);
    const life_t *cl = &cli.lives[0], *sl = &srv->lives[srv->nlives - 1];
    assert_int_equal(e.rc_write, 0);
    assert_int_equal(e.rc_shut, 0);
    assert_int_equal(e.rc_nodelay, -ENOTSUP);
    assert_int_equal(e.rc_keepalive, -ENOTSUP);
    assert_int_equal(e.srv_nodelay, -ENOTSUP);
    assert_int_equal(e.srv_keepalive, -ENOTSUP);
    assert_int_equal(e.peer_family, AF_UNIX);
    assert_int_equal(e.host_family, AF_UNIX);
    uint64_t h = tw_test_fnv(TW_TEST_FNV_INIT, e.msg, ECHO_BYTES);
    assert_int_equal(sl->bytes, ECHO_BYTES);
    assert_true(sl->hash == h);
    assert_int_equal(sl->write_errors, 0);
    assert_int_equal(cl->bytes, ECHO_BYTES);
    assert_true(cl->hash == h);
    assert_int_equal(cl->eofs, 1);
    assert_true(cl->eof_at > cl->last_data_at);
    assert_true(cl->lost_clean);
    assert_true(sl->lost_clean);
    tw_connector_free(c);
    assert_int_equal(cli.stops, 1);
    free(e.msg);
}

static void echo_with_mode_0600_and_close_removes_the_file(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tmpdir_t d;
    tmpdir_make(&d);
    tfactory_t srv;
    tf_init(&srv);
    srv.echo = true;
    tw_listener_t *l = listen_at(r, &srv, d.path, 0600);
    assert_int_equal(srv.starts, 1);
    struct stat st;
    assert_int_equal(lstat(d.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(tw_listener_address(l, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_UNIX);
    assert_string_equal(((struct sockaddr_un *)&ss)->sun_path, d.path);

    echo_through(r, &srv, d.path);
    tf_check_all(&srv);

    tw_listener_close(l);
    assert_int_equal(srv.stops, 1);
    assert_false(exists(d.path));
    tmpdir_remove(&d);
    tw_reactor_free(r);
}

/* ---- what is at the path already ---------------------------------------- */

static int raw_unix_socket(const char *path, bool do_listen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static void stale_socket_file_is_removed_and_listening_succeeds(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tmpdir_t d;
    tmpdir_make(&d);
    /* Left behind by a process that died: bound only, then listening. */
    for (int round = 0; round < 2; round++) {
        close(raw_unix_socket(d.path, round == 1));
        assert_true(is_socket_file(d.path));
        tfactory_t srv;
        tf_init(&srv);
        srv.echo = true;
        tw_listener_t *l = listen_at(r, &srv, d.path, 0);
        assert_true(is_socket_file(d.path));
        echo_through(r, &srv, d.path);
        tf_check_all(&srv);
        tw_listener_close(l);
        assert_false(exists(d.path));
    }
    tmpdir_remove(&d);
    tw_reactor_free(r);
}

static void live_socket_at_the_path_gives_eaddrinuse(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tmpdir_t d;
    tmpdir_make(&d);
    tfactory_t srv;
    tf_init(&srv);
    srv.echo = true;
    tw_unix_listen_opts_t o = { .path = d.path };
    tw_listener_t *l = NULL;

    /* Someone else listens there. */
    int other = raw_unix_socket(d.path, true);
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l), -EADDRINUSE);
    assert_null(l);
    assert_true(is_socket_file(d.path)); /* left alone */
    assert_int_equal(srv.starts, 0);
    close(other);
    unlink(d.path);

    /* A twine listener there: a second one is refused, the first works on. */
    tw_listener_t *first = listen_at(r, &srv, d.path, 0);
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l), -EADDRINUSE);
    assert_true(is_socket_file(d.path));
    echo_through(r, &srv, d.path);
    tf_check_all(&srv);
    tw_listener_close(first);
    assert_false(exists(d.path));
    assert_int_equal(srv.starts, 1);
    assert_int_equal(srv.stops, 1);
    tmpdir_remove(&d);
    tw_reactor_free(r);
}

static void other_file_at_the_path_gives_eexist(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tmpdir_t d;
    tmpdir_make(&d);
    int fd = open(d.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    tfactory_t srv;
    tf_init(&srv);
    tw_unix_listen_opts_t o = { .path = d.path, .mode = 0600 };
    tw_listener_t *l = NULL;
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l), -EEXIST);
    struct stat st;
    assert_int_equal(lstat(d.path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(srv.starts, 0);

    /* Nor are bad paths accepted. */
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    o.path = longpath;
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l), -EINVAL);
    o.path = "";
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l), -EINVAL);
    tw_connector_t *c = NULL;
    assert_int_equal(tw_unix_connect(r, &srv.base, longpath, 0, &c), -EINVAL);
    assert_int_equal(srv.starts, 0);
    tmpdir_remove(&d);
    tw_reactor_free(r);
}

static void abstract_namespace_name_works(void **state)
{
    (void)state;
#ifdef __linux__
    tw_reactor_t *r = tw_test_reactor_new();
    char name[64];
    snprintf(name, sizeof name, "@twine-test-%ld", (long)getpid());
    tfactory_t srv;
    tf_init(&srv);
    srv.echo = true;
    tw_listener_t *l = listen_at(r, &srv, name, 0600);
    assert_false(exists(name)); /* no file anywhere */
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(tw_listener_address(l, &ss, &len), 0);
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
    assert_int_equal(sun->sun_family, AF_UNIX);
    assert_int_equal(sun->sun_path[0], '\0');
    assert_memory_equal(sun->sun_path + 1, name + 1, strlen(name) - 1);
    tw_unix_listen_opts_t o = { .path = name };
    tw_listener_t *l2 = NULL;
    assert_int_equal(tw_unix_listen(r, &srv.base, &o, &l2), -EADDRINUSE);

    echo_through(r, &srv, name);
    tf_check_all(&srv);
    tw_listener_close(l);
    assert_int_equal(srv.stops, 1);

    /* Gone with the listener: connecting now fails. */
    tfactory_t cli;
    tf_init(&cli);
    tw_connector_t *c = connect_at(r, &cli, name);
    tw_test_run_until(r, &cli.failed, 1);
    assert_int_equal(cli.fail_code, -ECONNREFUSED);
    tw_connector_free(c);
    tw_reactor_free(r);
#else
    print_message("the abstract namespace is Linux-only: skipped\n");
    skip();
#endif
}

static void connect_to_a_missing_path_fails_with_enoent_later(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tmpdir_t d;
    tmpdir_make(&d);
    tfactory_t cli;
    tf_init(&cli);
    tw_connector_t *c = connect_at(r, &cli, d.path);
    assert_int_equal(cli.failed, 0); /* not inside tw_unix_connect */
    assert_int_equal(cli.starts, 1);
    tw_test_run_until(r, &cli.failed, 1);
    assert_int_equal(cli.inside_call, 0);
    assert_non_null(cli.fail_domain);
    assert_string_equal(cli.fail_domain, "unix");
    assert_int_equal(cli.fail_code, -ENOENT);
    assert_int_equal(cli.builds, 0);
    assert_null(tw_connector_transport(c));
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(cli.failed, 1);
    tw_connector_free(c);
    assert_int_equal(cli.stops, 1);
    tmpdir_remove(&d);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_with_mode_0600_and_close_removes_the_file),
        cmocka_unit_test(stale_socket_file_is_removed_and_listening_succeeds),
        cmocka_unit_test(live_socket_at_the_path_gives_eaddrinuse),
        cmocka_unit_test(other_file_at_the_path_gives_eexist),
        cmocka_unit_test(abstract_namespace_name_works),
        cmocka_unit_test(connect_to_a_missing_path_fails_with_enoent_later),
    };
    TW_TEST_MAIN(tests);
}
