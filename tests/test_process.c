/* test_process.c -- child processes: Twisted's order of callbacks, exit
 * statuses and exec failures, stdin/stdout/stderr and any other fd map, what
 * the child starts with (descriptors, signals, environment, directory,
 * session, ids), pseudo-terminals, backpressure through a child, reaping
 * (pidfd and the SIGCHLD fallback beside the application's own handler), no
 * zombies and no descriptors left behind, and freeing a reactor with a child
 * still running.  The reaping tests run twice: once with pidfds, once with
 * TWINE_PROCESS_REAPER=sigchld.
 *
 * The program is also its own helper child: `test_process --helper ...`
 * (see helper_main) lists its descriptors, writes to given ones, prints its
 * ids. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the helper child ---------------------------------------------------------- */

static int fd_cmp(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Open descriptors, ascending, but for the one reading the directory. */
static int list_fds(int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != dirfd(d))
            out[n++] = fd;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, fd_cmp);
    return n;
}

static int helper_main(int argc, char **argv)
{
    char buf[512];
    size_t len = 0;
    if (argc >= 1 && strcmp(argv[0], "fds") == 0) {
        int fds[64];
        int n = list_fds(fds, 64);
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? " " : "", fds[i]);
        len += (size_t)snprintf(buf + len, sizeof buf - len, "\n");
        if (write(1, buf, len) != (ssize_t)len)
            _exit(2);
    } else if (argc >= 1 && strcmp(argv[0], "write") == 0) {
        /* write FD TEXT [FD TEXT...]: TEXT and a newline to each FD */
        for (int i = 1; i + 1 < argc; i += 2) {
            len = (size_t)snprintf(buf, sizeof buf, "%s\n", argv[i + 1]);
            if (write(atoi(argv[i]), buf, len) != (ssize_t)len)
                _exit(3);
        }
    } else if (argc >= 1 && strcmp(argv[0], "ids") == 0) {
        len = (size_t)snprintf(buf, sizeof buf, "%d %d %d %d %d\n", (int)getpid(),
                               (int)getpgrp(), (int)getsid(0), (int)getuid(), (int)getgid());
        if (write(1, buf, len) != (ssize_t)len)
            _exit(2);
    } else {
        _exit(100);
    }
    _exit(0); /* no leak check, no atexit: just the answer */
}

static char self_exe[PATH_MAX];

/* ---- bookkeeping ------------------------------------------------------------------ */

static int count_open_fds(void)
{
    int fds[4096];
    return list_fds(fds, 4096);
}

/* Our children, zombies included, found without waiting for any. */
static int count_children(void)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t got = read(fd, stat, sizeof stat - 1);
        close(fd);
        if (got <= 0)
            continue;
        stat[got] = '\0';
        char *rp = strrchr(stat, ')'); /* the name may hold anything */
        int ppid;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == (int)getpid())
            n++;
    }
    closedir(d);
    return n;
}

/* A process protocol that records everything. */
#define NFD 16
typedef struct rec {
    tw_process_protocol_t base;
    tw_process_t *proc;
    int made, exited, ended, destroyed;
    int lost[NFD];
    char log[128];            /* M made, 0-9 lost(fd), X exited, E ended, Z destroy */
    struct {
        char *data;
        size_t len, cap;
    } out[NFD];
    tw_process_status_t xst, est; /* as given to process_exited / process_ended */
    int xcode, ecode;             /* their reasons' codes (0: NULL) */
    char xmsg[160], emsg[160];
    bool made_inside_spawn;
    int signal_after_reap;        /* tw_process_signal(0) inside process_exited */
    bool exited_flag_in_exited;
    void (*on_data)(struct rec *c, int fd, const void *data, size_t len);
} rec_t;

static int in_spawn;      /* inside tw_spawn_process */
static int in_user_call;  /* inside another call of ours: no callback may come */

static void rec_log(rec_t *c, char ch)
{
    size_t n = strlen(c->log);
    if (n + 1 < sizeof c->log)
        c->log[n] = ch;
}

static void rec_made(tw_process_protocol_t *p, tw_process_t *proc)
{
    rec_t *c = (rec_t *)p;
    assert_ptr_equal(p->process, proc);
    c->proc = proc;
    c->made++;
    c->made_inside_spawn = in_spawn;
    rec_log(c, 'M');
}

static void rec_data(tw_process_protocol_t *p, int fd, const void *data, size_t len)
{
    rec_t *c = (rec_t *)p;
    assert_false(in_user_call);
    assert_true(fd >= 0 && fd < NFD);
    assert_int_equal(c->made, 1);
    assert_int_equal(c->lost[fd], 0);
    assert_int_equal(c->ended, 0);
    if (c->on_data) {
        c->on_data(c, fd, data, len);
        return;
    }
    if (c->out[fd].len + len + 1 > c->out[fd].cap) {
        c->out[fd].cap = (c->out[fd].len + len + 1) * 2;
        c->out[fd].data = realloc(c->out[fd].data, c->out[fd].cap);
        assert_non_null(c->out[fd].data);
    }
    memcpy(c->out[fd].data + c->out[fd].len, data, len);
    c->out[fd].len += len;
    c->out[fd].data[c->out[fd].len] = '\0';
}

static void rec_lost(tw_process_protocol_t *p, int fd)
{
    rec_t *c = (rec_t *)p;
    assert_false(in_user_call);
    assert_true(fd >= 0 && fd < NFD);
    assert_int_equal(c->ended, 0);
    c->lost[fd]++;
    rec_log(c, fd < 10 ? (char)('0' + fd) : '+');
}

static void rec_status(const tw_process_status_t *st, tw_process_status_t *copy, int *code,
                       char *msg)
{
    *copy = *st;
    copy->reason = NULL; /* not kept: it is freed with the process */
    *code = st->reason ? st->reason->code : 0;
    snprintf(msg, 160, "%s", st->reason ? st->reason->message : "");
    if (st->reason)
        assert_string_equal(st->reason->domain, "process");
}

static void rec_exited(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    rec_t *c = (rec_t *)p;
    assert_false(in_user_call);
    assert_int_equal(c->exited, 0);
    assert_int_equal(c->ended, 0);
    c->exited++;
    rec_log(c, 'X');
    rec_status(st, &c->xst, &c->xcode, c->xmsg);
    c->exited_flag_in_exited = tw_process_exited(c->proc);
    c->signal_after_reap = tw_process_signal(c->proc, 0);
}

static void rec_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    rec_t *c = (rec_t *)p;
    assert_false(in_user_call);
    assert_int_equal(c->exited, 1);
    assert_int_equal(c->ended, 0);
    c->ended++;
    rec_log(c, 'E');
    rec_status(st, &c->est, &c->ecode, c->emsg);
}

static void rec_destroy(tw_process_protocol_t *p)
{
    rec_t *c = (rec_t *)p;
    c->destroyed++;
    rec_log(c, 'Z');
}

static const tw_process_protocol_ops_t rec_ops = {
    .connection_made = rec_made,
    .child_data_received = rec_data,
    .child_connection_lost = rec_lost,
    .process_exited = rec_exited,
    .process_ended = rec_ended,
    .destroy = rec_destroy,
};

static void rec_init(rec_t *c)
{
    memset(c, 0, sizeof *c);
    c->base.ops = &rec_ops;
}

static void rec_fini(rec_t *c)
{
    for (int i = 0; i < NFD; i++)
        free(c->out[i].data);
}

static const char *rec_out(rec_t *c, int fd)
{
    return c->out[fd].data ? c->out[fd].data : "";
}

static int spawn(tw_reactor_t *r, rec_t *c, const char *path, char *const argv[],
                 const tw_spawn_options_t *opt)
{
    in_spawn = 1;
    tw_process_t *proc = NULL;
    int rc = tw_spawn_process(r, &c->base, path, argv, opt, &proc);
    in_spawn = 0;
    if (rc == 0) {
        assert_ptr_equal(proc, c->proc);
        assert_int_equal(c->made, 1);
        assert_true(c->made_inside_spawn);
        assert_true(tw_process_pid(proc) > 0);
    }
    return rc;
}

static void spawn_ok(tw_reactor_t *r, rec_t *c, const char *path, char *const argv[],
                     const tw_spawn_options_t *opt)
{
    assert_int_equal(spawn(r, c, path, argv, opt), 0);
}

/* Run until process_ended and check what every process protocol must see:
 * made first; each pipe lost once; exited once; ended, then destroy, last;
 * process_exited and process_ended agree. */
static void run_to_end(tw_reactor_t *r, rec_t *c, int npipes)
{
    tw_test_run_until(r, &c->ended, 1);
    assert_int_equal(c->destroyed, 1);
    assert_int_equal(c->exited, 1);
    size_t n = strlen(c->log);
    assert_true(n >= 4);
    assert_int_equal(c->log[0], 'M');
    assert_int_equal(c->log[n - 2], 'E');
    assert_int_equal(c->log[n - 1], 'Z');
    int lost = 0;
    for (int fd = 0; fd < NFD; fd++) {
        assert_true(c->lost[fd] <= 1);
        lost += c->lost[fd];
    }
    assert_int_equal(lost, npipes);
    assert_int_equal((int)n, npipes + 4);
    assert_int_equal(c->xst.exit_code, c->est.exit_code);
    assert_int_equal(c->xst.signal, c->est.signal);
    assert_int_equal(c->xcode, c->ecode);
    assert_string_equal(c->xmsg, c->emsg);
    assert_true(c->exited_flag_in_exited);
    assert_int_equal(c->signal_after_reap, -ESRCH);
}

/* Iterate until fd's output is `want` (30 s at most). */
static void run_until_output(tw_reactor_t *r, rec_t *c, int fd, const char *want)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (strcmp(rec_out(c, fd), want) != 0 && tw_time_now() < give_up)
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    assert_string_equal(rec_out(c, fd), want);
}

static bool sigchld_mode(void)
{
    const char *m = getenv("TWINE_PROCESS_REAPER");
    return m && strcmp(m, "sigchld") == 0;
}

/* ---- order, status, exec failures ---------------------------------------------- */

static void output_then_exit_status_in_twisteds_order(void **state)
{
    (void)state;
    int fds0 = count_open_fds();
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
    spawn_ok(r, &c, "/bin/sh", argv, NULL);
    assert_false(tw_process_exited(c.proc));
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "out\n");
    assert_string_equal(rec_out(&c, 2), "err\n");
    assert_int_equal(c.est.exit_code, 3);
    assert_int_equal(c.est.signal, 0);
    assert_false(c.est.core_dumped);
    assert_int_equal(c.ecode, TW_EPROCEXIT);
    assert_string_equal(c.emsg, "exited with code 3");
    rec_fini(&c);
    tw_reactor_free(r);
    assert_int_equal(count_open_fds(), fds0);
    assert_int_equal(count_children(), 0);
}

static void exit_zero_is_a_null_reason_and_path_is_searched(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "true", NULL };
    spawn_ok(r, &c, "true", argv, NULL);
    run_to_end(r, &c, 3);
    assert_int_equal(c.est.exit_code, 0);
    assert_int_equal(c.ecode, 0);
    assert_int_equal(c.xcode, 0);
    rec_fini(&c);
    tw_reactor_free(r);
}

static void stdin_written_then_closed_comes_back_from_cat(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "cat", NULL };
    spawn_ok(r, &c, "/bin/cat", argv, NULL);
    tw_transport_t *t = tw_process_transport(c.proc);
    assert_int_equal(tw_transport_write(t, "hello, ", 7), 0);
    struct iovec iov[2] = { { "child", 5 }, { "\n", 1 } };
    assert_int_equal(tw_transport_writev(t, iov, 2), 0);
    assert_int_equal(tw_process_write_to_child(c.proc, 0, "bye\n", 4), 0);
    in_user_call = 1;
    assert_int_equal(tw_process_close_stdin(c.proc), 0);
    in_user_call = 0;
    assert_int_equal(tw_transport_write(t, "late", 4), -EPIPE);
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "hello, child\nbye\n");
    assert_int_equal(c.ecode, 0);
    rec_fini(&c);
    tw_reactor_free(r);
}

static void signal_kills_and_is_reported_then_esrch_after_reaping(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "sleep", "100", NULL };
    spawn_ok(r, &c, "sleep", argv, NULL);
    assert_int_equal(tw_process_signal(c.proc, 0), 0);
    in_user_call = 1;
    assert_int_equal(tw_process_signal(c.proc, SIGTERM), 0);
    in_user_call = 0;
    run_to_end(r, &c, 3);
    assert_int_equal(c.est.signal, SIGTERM);
    assert_int_equal(c.est.exit_code, -1);
    assert_int_equal(c.ecode, TW_EPROCSIGNAL);
    assert_string_equal(c.emsg, "killed by signal 15 (SIGTERM)");
    rec_fini(&c);
    tw_reactor_free(r);
}

static void exec_failures_are_the_exec_errno_not_exit_127(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char tmpl[] = "/tmp/twine-noexec-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
    close(fd);
    assert_int_equal(chmod(tmpl, 0644), 0);
    struct {
        const char *path;
        int code;
        const char *msg;
    } cases[] = {
        { "/no/such/program", -ENOENT, "exec /no/such/program: No such file or directory" },
        { "twine-no-such-program", -ENOENT,
          "exec twine-no-such-program: No such file or directory" },
        { tmpl, -EACCES, NULL },
        { "/tmp", -EACCES, "exec /tmp: Permission denied" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_t c;
        rec_init(&c);
        char *argv[] = { "x", NULL };
        spawn_ok(r, &c, cases[i].path, argv, NULL);
        run_to_end(r, &c, 3);
        assert_int_equal(c.ecode, cases[i].code);
        assert_int_equal(c.est.exit_code, -1);
        assert_int_equal(c.est.signal, 0);
        if (cases[i].msg)
            assert_string_equal(c.emsg, cases[i].msg);
        else
            assert_non_null(strstr(c.emsg, "Permission denied"));
        rec_fini(&c);
    }
    /* a directory that does not exist is reported the same way */
    rec_t c;
    rec_init(&c);
    char *argv[] = { "true", NULL };
    tw_spawn_options_t opt = { .cwd = "/no/such/dir" };
    spawn_ok(r, &c, "true", argv, &opt);
    run_to_end(r, &c, 3);
    assert_int_equal(c.ecode, -ENOENT);
    assert_string_equal(c.emsg, "chdir /no/such/dir: No such file or directory");
    rec_fini(&c);
    unlink(tmpl);
    tw_reactor_free(r);
    assert_int_equal(count_children(), 0);
}

static void bad_arguments_are_einval_and_call_nothing(void **state)
{
    (void)state;
    int fds0 = count_open_fds();
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "true", NULL };
    int closed = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(closed >= 0);
    close(closed);
    const tw_child_fd_t dup_fds[] = { { 1, TW_FD_READ, -1 }, { 1, TW_FD_READ, -1 } };
    const tw_child_fd_t neg_fd[] = { { -1, TW_FD_READ, -1 } };
    const tw_child_fd_t bad_kind[] = { { 1, (tw_child_fd_kind_t)9, -1 } };
    const tw_child_fd_t bad_parent[] = { { 3, TW_FD_INHERIT, closed } };
    const tw_child_fd_t neg_parent[] = { { 3, TW_FD_INHERIT, -1 } };
    const tw_spawn_options_t bad[] = {
        { .fds = dup_fds, .nfds = 2 },    { .fds = neg_fd, .nfds = 1 },
        { .fds = bad_kind, .nfds = 1 },   { .fds = bad_parent, .nfds = 1 },
        { .fds = neg_parent, .nfds = 1 }, { .flags = 0x1000 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(spawn(r, &c, "true", argv, &bad[i]), -EINVAL);
    assert_int_equal(spawn(r, &c, "true", NULL, NULL), -EINVAL);
    assert_int_equal(spawn(r, &c, NULL, argv, NULL), -EINVAL);
    assert_int_equal(tw_spawn_process(r, NULL, "true", argv, NULL, NULL), -EINVAL);
    assert_int_equal(c.made + c.destroyed, 0);
    tw_reactor_free(r);
    assert_int_equal(count_open_fds(), fds0);
}

/* ---- what the child starts with -------------------------------------------------- */

static void env_is_exactly_what_was_given_and_cwd_is_set(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *env[] = { "A=1", "B=two words", NULL };
    tw_spawn_options_t opt = { .env = env };
    char *argv[] = { "env", NULL };
    spawn_ok(r, &c, "env", argv, &opt); /* found through our PATH: env has none */
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "A=1\nB=two words\n");
    assert_int_equal(c.ecode, 0);
    rec_fini(&c);

    /* a PATH in the given environment is the one searched */
    rec_init(&c);
    char *env2[] = { "PATH=/twine/nowhere", NULL };
    opt.env = env2;
    spawn_ok(r, &c, "env", argv, &opt);
    run_to_end(r, &c, 3);
    assert_int_equal(c.ecode, -ENOENT);
    rec_fini(&c);

    char tmpl[] = "/tmp/twine-cwd-XXXXXX", real[PATH_MAX], want[PATH_MAX + 2];
    assert_non_null(mkdtemp(tmpl));
    assert_non_null(realpath(tmpl, real));
    snprintf(want, sizeof want, "%s\n", real);
    rec_init(&c);
    tw_spawn_options_t opt2 = { .cwd = tmpl };
    char *pwd[] = { "pwd", NULL };
    spawn_ok(r, &c, "/bin/pwd", pwd, &opt2);
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), want);
    rec_fini(&c);
    rmdir(tmpl);
    tw_reactor_free(r);
}

static void child_has_only_mapped_descriptors(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    /* a descriptor of ours without FD_CLOEXEC must not reach the child */
    int leak = fcntl(2, F_DUPFD, 20);
    assert_true(leak >= 20);
    rec_t c;
    rec_init(&c);
    char *argv[] = { "helper", "--helper", "fds", NULL };
    spawn_ok(r, &c, self_exe, argv, NULL);
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "0 1 2\n");
    rec_fini(&c);

    /* a sparse map: 1 and 7 only */
    rec_init(&c);
    const tw_child_fd_t map[] = { { 7, TW_FD_DEVNULL, 0 }, { 1, TW_FD_READ, 0 } };
    tw_spawn_options_t opt = { .fds = map, .nfds = 2 };
    spawn_ok(r, &c, self_exe, argv, &opt);
    run_to_end(r, &c, 1);
    assert_string_equal(rec_out(&c, 1), "1 7\n");
    rec_fini(&c);
    close(leak);
    tw_reactor_free(r);
}

static void fd_map_moves_inherits_and_swaps_descriptors(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2], q[2];
    tw_test_pipe(p);
    tw_test_pipe(q);
    /* Child fd p[1] gets our q[1] and child fd q[1] our p[1]: each target
     * is the other's source, so one must move out of the way first.  Child
     * fd 3 shares our p[1] too, and fd 1 is a pipe read as fd 1. */
    const tw_child_fd_t map[] = {
        { p[1], TW_FD_INHERIT, q[1] }, { q[1], TW_FD_INHERIT, p[1] },
        { 3, TW_FD_INHERIT, p[1] },    { 1, TW_FD_READ, 0 },
        { 9, TW_FD_READ, 0 },          { 0, TW_FD_DEVNULL, 0 },
    };
    tw_spawn_options_t opt = { .fds = map, .nfds = sizeof map / sizeof map[0] };
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", p[1]);
    snprintf(b, sizeof b, "%d", q[1]);
    char *argv[] = { "helper", "--helper", "write", a, "to-p1", b, "to-q1", "3", "to-3",
                     "1",      "to-1",     "9",     "to-9", NULL };
    rec_t c;
    rec_init(&c);
    spawn_ok(r, &c, self_exe, argv, &opt);
    run_to_end(r, &c, 2);
    assert_string_equal(rec_out(&c, 1), "to-1\n");
    assert_string_equal(rec_out(&c, 9), "to-9\n");
    assert_int_equal(c.lost[1] + c.lost[9], 2);
    assert_int_equal(c.ecode, 0);
    char buf[64];
    ssize_t n = read(q[0], buf, sizeof buf - 1); /* what went to child fd p[1] */
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "to-p1\n");
    n = read(p[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "to-q1\nto-3\n");
    rec_fini(&c);
    for (int i = 0; i < 2; i++) {
        close(p[i]);
        close(q[i]);
    }
    tw_reactor_free(r);
}

static void child_starts_with_default_signals_and_an_empty_mask(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    /* ours: SIGUSR1 blocked, SIGUSR2 and SIGPIPE (twine's doing) ignored */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    struct sigaction ign = { .sa_handler = SIG_IGN }, old2;
    assert_int_equal(sigaction(SIGUSR2, &ign, &old2), 0);
    rec_t c;
    rec_init(&c);
    char *argv[] = { "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL };
    spawn_ok(r, &c, "grep", argv, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGUSR2, &old2, NULL);
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    rec_fini(&c);
    tw_reactor_free(r);
}

static void session_group_and_ids(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char *argv[] = { "helper", "--helper", "ids", NULL };
    unsigned flags[] = { 0, TW_SPAWN_SETPGID, TW_SPAWN_SETSID };
    for (int i = 0; i < 3; i++) {
        rec_t c;
        rec_init(&c);
        tw_spawn_options_t opt = { .flags = flags[i] };
        spawn_ok(r, &c, self_exe, argv, &opt);
        int pid = (int)tw_process_pid(c.proc);
        run_to_end(r, &c, 3);
        int cpid, pgrp, sid, uid, gid;
        assert_int_equal(sscanf(rec_out(&c, 1), "%d %d %d %d %d", &cpid, &pgrp, &sid, &uid, &gid),
                         5);
        assert_int_equal(cpid, pid);
        assert_int_equal(pgrp, i == 0 ? (int)getpgrp() : pid);
        assert_int_equal(sid, i == 2 ? pid : (int)getsid(0));
        rec_fini(&c);
    }
    if (geteuid() == 0) { /* the ids need privilege */
        rec_t c;
        rec_init(&c);
        tw_spawn_options_t opt = { .flags = TW_SPAWN_SETUID | TW_SPAWN_SETGID, .uid = 65534,
                                   .gid = 65533 };
        char *id[] = { "sh", "-c", "id -u; id -g; id -G", NULL };
        spawn_ok(r, &c, "/bin/sh", id, &opt);
        run_to_end(r, &c, 3);
        assert_string_equal(rec_out(&c, 1), "65534\n65533\n65533\n");
        rec_fini(&c);
    }
    tw_reactor_free(r);
}

/* ---- pseudo-terminals ---------------------------------------------------------------- */

static void pty_data(rec_t *c, int fd, const void *data, size_t len)
{
    c->on_data = NULL;
    rec_data(&c->base, fd, data, len); /* keep it */
    c->on_data = pty_data;
    if (strstr(rec_out(c, 1), "33 111") && !strstr(rec_out(c, 1), "hello"))
        assert_int_equal(tw_transport_write(tw_process_transport(c->proc), "hello\n", 6), 0);
}

static void pty_is_the_controlling_terminal_with_echo_and_size(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    c.on_data = pty_data;
    char *argv[] = { "sh", "-c",
                     "tty; exec 3</dev/tty && echo ctty-ok; stty size; read x; echo got:$x", NULL };
    tw_spawn_options_t opt = { .flags = TW_SPAWN_PTY, .pty_rows = 33, .pty_cols = 111 };
    spawn_ok(r, &c, "/bin/sh", argv, &opt);
    assert_int_equal(tw_process_close_stderr(c.proc), -EBADF); /* one pipe: the master */
    run_to_end(r, &c, 1);
    assert_int_equal(c.lost[1], 1);
    const char *out = rec_out(&c, 1);
    assert_true(strncmp(out, "/dev/pts/", 9) == 0);
    assert_non_null(strstr(out, "\r\nctty-ok\r\n33 111\r\n"));
    assert_non_null(strstr(out, "hello\r\n")); /* the terminal's echo */
    assert_non_null(strstr(out, "got:hello\r\n"));
    assert_int_equal(c.ecode, 0);
    rec_fini(&c);
    tw_reactor_free(r);
}

/* ---- pipes -------------------------------------------------------------------------- */

static void exited_comes_before_ended_while_a_grandchild_holds_stdout(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "sh", "-c", "exec 3<&0; (read x <&3; echo late:$x) & exit 4", NULL };
    spawn_ok(r, &c, "/bin/sh", argv, NULL);
    tw_test_run_until(r, &c.exited, 1);
    /* reaped, but its grandchild still holds stdout and stderr */
    for (int i = 0; i < 5; i++)
        tw_reactor_iterate(r, TW_MSEC(10));
    assert_int_equal(c.ended, 0);
    assert_int_equal(c.lost[1] + c.lost[2], 0);
    assert_int_equal(c.xst.exit_code, 4);
    assert_true(tw_process_exited(c.proc));
    assert_int_equal(tw_process_signal(c.proc, SIGTERM), -ESRCH);
    assert_int_equal(tw_process_write_to_child(c.proc, 0, "x\n", 2), 0);
    assert_int_equal(tw_process_close_stdin(c.proc), 0);
    run_to_end(r, &c, 3);
    assert_string_equal(rec_out(&c, 1), "late:x\n");
    assert_int_equal(c.est.exit_code, 4);
    rec_fini(&c);
    tw_reactor_free(r);
}

static void closing_stderr_stdout_stdin_one_by_one(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "cat", NULL };
    spawn_ok(r, &c, "cat", argv, NULL);
    in_user_call = 1;
    assert_int_equal(tw_process_close_stderr(c.proc), 0);
    assert_int_equal(tw_process_close_stderr(c.proc), 0); /* closing: harmless */
    in_user_call = 0;
    tw_test_run_until(r, &c.lost[2], 1);
    assert_int_equal(tw_process_close_stderr(c.proc), -EBADF);
    assert_int_equal(tw_process_write_to_child(c.proc, 0, "a\n", 2), 0);
    assert_int_equal(tw_process_write_to_child(c.proc, 1, "a\n", 2), -EBADF);
    assert_int_equal(tw_process_write_to_child(c.proc, 5, "a\n", 2), -EBADF);
    run_until_output(r, &c, 1, "a\n");
    in_user_call = 1;
    assert_int_equal(tw_process_close_stdout(c.proc), 0);
    in_user_call = 0;
    tw_test_run_until(r, &c.lost[1], 1);
    assert_int_equal(c.exited, 0); /* cat still reads */
    in_user_call = 1;
    assert_int_equal(tw_process_close_stdin(c.proc), 0);
    in_user_call = 0;
    run_to_end(r, &c, 3);
    assert_string_equal(c.log, "M210XEZ");
    assert_int_equal(c.ecode, 0);
    rec_fini(&c);
    tw_reactor_free(r);
}

static void other_write_pipes_and_the_transport_vtable(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    /* no stdin pipe: fd 3 is written instead */
    const tw_child_fd_t map[] = { { 0, TW_FD_DEVNULL, 0 }, { 1, TW_FD_READ, 0 },
                                  { 3, TW_FD_WRITE, 0 } };
    tw_spawn_options_t opt = { .fds = map, .nfds = 3 };
    char *argv[] = { "sh", "-c", "cat <&3", NULL };
    spawn_ok(r, &c, "/bin/sh", argv, &opt);
    tw_transport_t *t = tw_process_transport(c.proc);
    assert_int_equal(tw_transport_write(t, "x", 1), -EPIPE);
    assert_int_equal(tw_transport_lose_write_connection(t), -EPIPE);
    assert_int_equal(tw_transport_queued(t), 0);
    assert_int_equal(tw_transport_fileno(t), -1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(tw_transport_peer_address(t, &ss, &len), -ENOTSUP);
    assert_int_equal(tw_transport_host_address(t, &ss, &len), -ENOTSUP);
    assert_int_equal(tw_transport_set_nodelay(t, true), -ENOTSUP);
    assert_int_equal(tw_transport_set_keepalive(t, true), -ENOTSUP);
    assert_int_equal(tw_process_write_to_child(c.proc, 3, "via3\n", 5), 0);
    assert_int_equal(tw_process_close_child_fd(c.proc, 3), 0);
    run_to_end(r, &c, 2);
    assert_string_equal(rec_out(&c, 1), "via3\n");
    assert_int_equal(c.lost[3], 1);
    rec_fini(&c);

    /* lose_connection closes every pipe (stdin after what is queued) */
    rec_init(&c);
    char *cat[] = { "cat", NULL };
    spawn_ok(r, &c, "cat", cat, NULL);
    t = tw_process_transport(c.proc);
    assert_true(tw_transport_fileno(t) >= 0);
    assert_int_equal(tw_transport_write(t, "queued", 6), 0);
    in_user_call = 1;
    tw_transport_lose_connection(t);
    tw_transport_lose_connection(t);
    in_user_call = 0;
    run_to_end(r, &c, 3);
    /* cat got EOF, or SIGPIPE writing "queued" to the stdout we closed */
    assert_true(c.ecode == 0 || c.est.signal == SIGPIPE);
    rec_fini(&c);

    /* abort closes them all at once; pause_reading holds data back */
    rec_init(&c);
    char *sh[] = { "sh", "-c", "echo one; read x; echo two", NULL };
    spawn_ok(r, &c, "/bin/sh", sh, NULL);
    t = tw_process_transport(c.proc);
    tw_transport_pause_reading(t);
    for (int i = 0; i < 20; i++)
        tw_reactor_iterate(r, TW_MSEC(5));
    assert_string_equal(rec_out(&c, 1), "");
    tw_transport_resume_reading(t);
    run_until_output(r, &c, 1, "one\n");
    tw_transport_abort_connection(t);
    run_to_end(r, &c, 3);
    /* read got EOF; "two" then met the closed stdout (SIGPIPE), or just missed it */
    assert_true(c.ecode == 0 || c.est.signal == SIGPIPE);
    rec_fini(&c);
    tw_reactor_free(r);
}

/* ---- 100 MiB through cat -------------------------------------------------------------- */

#define BIG_TOTAL (100ull << 20)
#define BIG_CHUNK 65536
#define BIG_CAP (256u << 10)

typedef struct big {
    rec_t rec;
    tw_producer_t prod;
    tw_reactor_t *r;
    uint64_t sent, recvd, hsent, hrecvd, rng;
    size_t max_queued;
    uint64_t next_pause;
    int pauses, resumes;
    tw_timer_t resume;
    unsigned char chunk[BIG_CHUNK];
} big_t;

static void big_resume_producing(tw_producer_t *p)
{
    big_t *b = TW_CONTAINER_OF(p, big_t, prod);
    tw_transport_t *t = tw_process_transport(b->rec.proc);
    b->resumes++;
    size_t n = BIG_TOTAL - b->sent < BIG_CHUNK ? (size_t)(BIG_TOTAL - b->sent) : BIG_CHUNK;
    for (size_t i = 0; i < n; i += 8) { /* xorshift64 */
        b->rng ^= b->rng << 13;
        b->rng ^= b->rng >> 7;
        b->rng ^= b->rng << 17;
        memcpy(b->chunk + i, &b->rng, 8);
    }
    assert_int_equal(tw_transport_write(t, b->chunk, n), 0);
    b->hsent = tw_test_fnv(b->hsent, b->chunk, n);
    b->sent += n;
    if (tw_transport_queued(t) > b->max_queued)
        b->max_queued = tw_transport_queued(t);
    if (b->sent == BIG_TOTAL) {
        tw_transport_unregister_producer(t);
        assert_int_equal(tw_process_close_stdin(b->rec.proc), 0);
    }
}

static void big_pause_producing(tw_producer_t *p)
{
    (void)p;
    fail_msg("a pull producer is never paused");
}

static const tw_producer_ops_t big_prod_ops = { big_pause_producing, big_resume_producing, NULL };

static void big_resume_reading(tw_timer_t *tm, void *arg)
{
    (void)tm;
    big_t *b = arg;
    tw_transport_resume_reading(tw_process_transport(b->rec.proc));
}

static void big_data(rec_t *c, int fd, const void *data, size_t len)
{
    big_t *b = (big_t *)c;
    assert_int_equal(fd, 1);
    b->hrecvd = tw_test_fnv(b->hrecvd, data, len);
    b->recvd += len;
    if (b->recvd >= b->next_pause) { /* stop reading now and then: cat blocks, so do we */
        b->next_pause += 8u << 20;
        b->pauses++;
        tw_transport_pause_reading(tw_process_transport(c->proc));
        assert_int_equal(tw_timer_start(&b->resume, TW_MSEC(2)), 0);
    }
}

static void hundred_mib_through_cat_with_a_pull_producer_and_pauses(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    big_t *b = calloc(1, sizeof *b);
    assert_non_null(b);
    rec_init(&b->rec);
    b->rec.on_data = big_data;
    b->r = r;
    b->rng = 0x9e3779b97f4a7c15ull;
    b->hsent = b->hrecvd = TW_TEST_FNV_INIT;
    b->next_pause = 8u << 20;
    b->prod.ops = &big_prod_ops;
    tw_timer_init(&b->resume, r, big_resume_reading, b);
    char *argv[] = { "cat", NULL };
    spawn_ok(r, &b->rec, "cat", argv, NULL);
    tw_transport_t *t = tw_process_transport(b->rec.proc);
    tw_transport_set_limits(t, 16384, 65536, BIG_CAP, TW_CAP_PAUSE);
    assert_int_equal(tw_transport_register_producer(t, &b->prod, false), 0);
    run_to_end(r, &b->rec, 3);
    assert_true(b->sent == BIG_TOTAL);
    assert_true(b->recvd == BIG_TOTAL);
    assert_true(b->hsent == b->hrecvd);
    assert_true(b->max_queued <= BIG_CAP);
    assert_true(b->pauses >= 10);
    assert_int_equal(b->rec.ecode, 0);
    tw_timer_cancel(&b->resume);
    rec_fini(&b->rec);
    free(b);
    tw_reactor_free(r);
}

/* ---- many at once, reaping, no leftovers ------------------------------------------------- */

#define MANY 200

typedef struct many {
    rec_t rec;
    int *seen;
} many_t;

static void many_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    many_t *m = (many_t *)p;
    rec_ended(p, st);
    assert_true(st->exit_code >= 0 && st->exit_code < MANY);
    m->seen[st->exit_code]++;
}

static void two_hundred_children_at_once_each_status_once_no_zombies_no_fds(void **state)
{
    (void)state;
    tw_test_raise_nofile(4096);
    int fds0 = count_open_fds();
    tw_reactor_t *r = tw_test_reactor_new();
    static tw_process_protocol_ops_t ops;
    ops = rec_ops;
    ops.process_ended = many_ended;
    many_t *m = calloc(MANY, sizeof *m);
    int *seen = calloc(MANY, sizeof *seen);
    assert_non_null(m);
    assert_non_null(seen);
    const tw_child_fd_t map[] = { { 0, TW_FD_DEVNULL, 0 }, { 1, TW_FD_READ, 0 },
                                  { 2, TW_FD_DEVNULL, 0 } };
    tw_spawn_options_t opt = { .fds = map, .nfds = 3 };
    int ended = 0;
    for (int i = 0; i < MANY; i++) {
        rec_init(&m[i].rec);
        m[i].rec.base.ops = &ops;
        m[i].seen = seen;
        char cmd[48];
        snprintf(cmd, sizeof cmd, "echo %d; exit %d", i, i);
        char *argv[] = { "sh", "-c", cmd, NULL };
        spawn_ok(r, &m[i].rec, "/bin/sh", argv, &opt);
    }
    tw_time_t give_up = tw_time_now() + TW_SEC(60);
    while (ended < MANY && tw_time_now() < give_up) {
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
        ended = 0;
        for (int i = 0; i < MANY; i++)
            ended += m[i].rec.ended;
    }
    assert_int_equal(ended, MANY);
    for (int i = 0; i < MANY; i++) {
        rec_t *c = &m[i].rec;
        char want[16];
        snprintf(want, sizeof want, "%d\n", i);
        assert_int_equal(seen[i], 1);
        assert_int_equal(c->destroyed, 1);
        assert_int_equal(c->est.exit_code, i);
        assert_int_equal(c->ecode, i ? TW_EPROCEXIT : 0);
        assert_string_equal(rec_out(c, 1), want);
        assert_int_equal(c->lost[1], 1);
        rec_fini(c);
    }
    free(m);
    free(seen);
    assert_int_equal(count_children(), 0);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    tw_reactor_free(r);
    assert_int_equal(count_open_fds(), fds0);
}

typedef struct chld {
    int calls;
} chld_t;

static void user_chld_cb(tw_reactor_t *r, int signo, void *arg)
{
    (void)r;
    assert_int_equal(signo, SIGCHLD);
    ((chld_t *)arg)->calls++;
}

static void (*chld_disposition(void))(int)
{
    struct sigaction sa;
    assert_int_equal(sigaction(SIGCHLD, NULL, &sa), 0);
    return sa.sa_handler;
}

static void applications_own_sigchld_and_children_keep_working(void **state)
{
    (void)state;
    assert_true(chld_disposition() == SIG_DFL);
    tw_reactor_t *r = tw_test_reactor_new();
    chld_t u = { 0 };
    assert_int_equal(tw_reactor_on_signal(r, SIGCHLD, user_chld_cb, &u), 0);
    /* a child of the application's own, which twine must not reap */
    pid_t own = fork();
    assert_true(own >= 0);
    if (own == 0)
        _exit(7);
    rec_t c;
    rec_init(&c);
    char *argv[] = { "true", NULL };
    spawn_ok(r, &c, "true", argv, NULL);
    run_to_end(r, &c, 3);
    tw_test_run_until(r, &u.calls, 1);
    rec_fini(&c);
    int st = 0;
    assert_int_equal(waitpid(own, &st, 0), own);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 7);

    /* without the application's callback, children are still reaped */
    assert_int_equal(tw_reactor_on_signal(r, SIGCHLD, NULL, NULL), 0);
    int calls = u.calls;
    rec_init(&c);
    spawn_ok(r, &c, "true", argv, NULL);
    if (sigchld_mode())
        assert_true(chld_disposition() != SIG_DFL);
    run_to_end(r, &c, 3);
    rec_fini(&c);
    assert_int_equal(u.calls, calls);
    /* no child left to reap: SIGCHLD is given back */
    assert_true(chld_disposition() == SIG_DFL);

    /* the callback comes back while the reaper has children */
    rec_init(&c);
    char *sleeper[] = { "sleep", "100", NULL };
    spawn_ok(r, &c, "sleep", sleeper, NULL);
    assert_int_equal(tw_reactor_on_signal(r, SIGCHLD, user_chld_cb, &u), 0);
    assert_int_equal(tw_process_signal(c.proc, SIGKILL), 0);
    run_to_end(r, &c, 3);
    assert_int_equal(c.est.signal, SIGKILL);
    tw_test_run_until(r, &u.calls, calls + 1);
    rec_fini(&c);
    tw_reactor_free(r);
    assert_true(chld_disposition() == SIG_DFL);
    assert_int_equal(count_children(), 0);
}

static void freeing_the_reactor_with_a_child_running_destroys_only(void **state)
{
    (void)state;
    int fds0 = count_open_fds();
    tw_reactor_t *r = tw_test_reactor_new();
    rec_t c;
    rec_init(&c);
    char *argv[] = { "sleep", "100", NULL }; /* runs on when its pipes close */
    spawn_ok(r, &c, "sleep", argv, NULL);
    pid_t pid = tw_process_pid(c.proc);
    /* more than the pipe holds: most stays queued in the stdin stream */
    static char block[1 << 20];
    tw_transport_t *t = tw_process_transport(c.proc);
    tw_transport_set_limits(t, 0, 0, 8u << 20, TW_CAP_PAUSE);
    assert_int_equal(tw_transport_write(t, block, sizeof block), 0);
    assert_true(tw_transport_queued(t) > 0);
    for (int i = 0; i < 3; i++)
        tw_reactor_iterate(r, TW_MSEC(5));
    tw_process_close_stdout(c.proc); /* a pipe in its closing soon call */
    tw_reactor_free(r);
    assert_string_equal(c.log, "MZ");
    assert_int_equal(c.destroyed, 1);
    assert_int_equal(kill(pid, 0), 0); /* still ours, still running */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    rec_fini(&c);
    assert_int_equal(count_open_fds(), fds0);
    assert_true(chld_disposition() == SIG_DFL);
}

/* Two reactors in two threads: each reaps its own children (with SIGCHLD,
 * both sweeps run on every signal and must take only their own). */
typedef struct worker {
    pthread_t thread;
    int n, ended, bad;
} worker_t;

typedef struct worker_proto {
    tw_process_protocol_t base;
    worker_t *w;
    int code;
} worker_proto_t;

static void worker_proto_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    worker_proto_t *wp = (worker_proto_t *)p;
    wp->w->ended++;
    if (st->exit_code != wp->code || (st->reason == NULL) != (wp->code == 0))
        wp->w->bad++;
}

static const tw_process_protocol_ops_t worker_ops = { .process_ended = worker_proto_ended };

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    tw_reactor_t *r;
    if (tw_reactor_new(&r) != 0) {
        w->bad++;
        return NULL;
    }
    worker_proto_t wp[20];
    const tw_child_fd_t map[] = { { 1, TW_FD_READ, 0 } };
    tw_spawn_options_t opt = { .fds = map, .nfds = 1 };
    for (int i = 0; i < w->n; i++) {
        char cmd[32];
        wp[i] = (worker_proto_t){ { &worker_ops, NULL }, w, (i * 7 + w->n) % 50 };
        snprintf(cmd, sizeof cmd, "exit %d", wp[i].code);
        char *argv[] = { "sh", "-c", cmd, NULL };
        if (tw_spawn_process(r, &wp[i].base, "/bin/sh", argv, &opt, NULL) != 0)
            w->bad++;
    }
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (w->ended < w->n && tw_time_now() < give_up)
        tw_reactor_iterate(r, TW_MSEC(50));
    tw_reactor_free(r);
    return NULL;
}

static void reactors_in_two_threads_reap_only_their_own(void **state)
{
    (void)state;
    worker_t w[2] = { { .n = 20 }, { .n = 19 } };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&w[i].thread, NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(w[i].thread, NULL), 0);
        assert_int_equal(w[i].ended, w[i].n);
        assert_int_equal(w[i].bad, 0);
    }
    assert_int_equal(count_children(), 0);
    assert_true(chld_disposition() == SIG_DFL);
}

/* ---- main ----------------------------------------------------------------------------------- */

static int use_pidfd(void **state)
{
    (void)state;
    return unsetenv("TWINE_PROCESS_REAPER");
}

static int use_sigchld(void **state)
{
    (void)state;
    return setenv("TWINE_PROCESS_REAPER", "sigchld", 1);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--helper") == 0)
        return helper_main(argc - 2, argv + 2);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';

    const struct CMUnitTest backend[] = { cmocka_unit_test(tw_test_backend_is_expected) };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(output_then_exit_status_in_twisteds_order),
        cmocka_unit_test(exit_zero_is_a_null_reason_and_path_is_searched),
        cmocka_unit_test(stdin_written_then_closed_comes_back_from_cat),
        cmocka_unit_test(signal_kills_and_is_reported_then_esrch_after_reaping),
        cmocka_unit_test(exec_failures_are_the_exec_errno_not_exit_127),
        cmocka_unit_test(bad_arguments_are_einval_and_call_nothing),
        cmocka_unit_test(env_is_exactly_what_was_given_and_cwd_is_set),
        cmocka_unit_test(child_has_only_mapped_descriptors),
        cmocka_unit_test(fd_map_moves_inherits_and_swaps_descriptors),
        cmocka_unit_test(child_starts_with_default_signals_and_an_empty_mask),
        cmocka_unit_test(session_group_and_ids),
        cmocka_unit_test(pty_is_the_controlling_terminal_with_echo_and_size),
        cmocka_unit_test(exited_comes_before_ended_while_a_grandchild_holds_stdout),
        cmocka_unit_test(closing_stderr_stdout_stdin_one_by_one),
        cmocka_unit_test(other_write_pipes_and_the_transport_vtable),
        cmocka_unit_test(hundred_mib_through_cat_with_a_pull_producer_and_pauses),
        cmocka_unit_test(two_hundred_children_at_once_each_status_once_no_zombies_no_fds),
        cmocka_unit_test(applications_own_sigchld_and_children_keep_working),
        cmocka_unit_test(freeing_the_reactor_with_a_child_running_destroys_only),
        cmocka_unit_test(reactors_in_two_threads_reap_only_their_own),
    };
    /* the reaping tests again, with the SIGCHLD reaper */
    const struct CMUnitTest by_sigchld[] = {
        cmocka_unit_test(output_then_exit_status_in_twisteds_order),
        cmocka_unit_test(stdin_written_then_closed_comes_back_from_cat),
        cmocka_unit_test(signal_kills_and_is_reported_then_esrch_after_reaping),
        cmocka_unit_test(exec_failures_are_the_exec_errno_not_exit_127),
        cmocka_unit_test(exited_comes_before_ended_while_a_grandchild_holds_stdout),
        cmocka_unit_test(pty_is_the_controlling_terminal_with_echo_and_size),
        cmocka_unit_test(two_hundred_children_at_once_each_status_once_no_zombies_no_fds),
        cmocka_unit_test(applications_own_sigchld_and_children_keep_working),
        cmocka_unit_test(freeing_the_reactor_with_a_child_running_destroys_only),
        cmocka_unit_test(reactors_in_two_threads_reap_only_their_own),
    };
    int rc = cmocka_run_group_tests_name("backend", backend, NULL, NULL);
    if (rc == 0)
        rc = cmocka_run_group_tests_name("pidfd", tests, use_pidfd, NULL);
    if (rc == 0)
        rc = cmocka_run_group_tests_name("sigchld", by_sigchld, use_sigchld, use_pidfd);
    return rc;
}
