/* bench_spawn.c -- child processes spawned and reaped by the loop (Twisted's
 * spawnProcess): twine against libuv.
 *
 *   usage: bench_spawn twine|uv N C   spawn /bin/true N times, at most C
 *                                     running at once (C = 1: one after the other)
 *
 *   twine  tw_spawn_process(r, proto, "/bin/true", ...) with fds 0, 1 and 2
 *          mapped to TW_FD_DEVNULL (no pipes); process_ended checks the
 *          status and spawns the next
 *   uv     uv_spawn(loop, proc, ...) with fds 0, 1 and 2 UV_IGNORE (libuv
 *          opens /dev/null for them in the child); exit_cb checks the status
 *          and closes the handle, whose close callback spawns the next
 *
 * Both leave the rest of the environment alone (inherited) and search no PATH.
 *
 * A run fails unless every child exited with status 0 (no signal), each
 * was reported exactly once, in the loop thread, and no child is left
 * unreaped at the end (waitpid(-1, WNOHANG) finds none).
 *
 *   spawns/s = N / (time from the first spawn to the last child reported
 *   ended, timed in the loop thread).  Also reports this process's CPU time
 *   per spawn (fork, exec hand-off and reaping on the parent's side; the
 *   children's own CPU is not included) and CPU time / elapsed time.
 *
 * Prints one line: RESULT bench=spawn impl=... ... ok=1 (exit 1 if not).
 */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <uv.h>

#include "tw_process.h"
#include "tw_reactor.h"

#define MAXC 1024
#define PROG "/bin/true"

static uint32_t N, C;
static pthread_t loop_thread;

/* Loop thread only. */
static uint32_t started, ended;
static uint64_t t_first, t_last;
static uint64_t bad_status, bad_thread;

typedef struct {
    const char *name;
    void (*setup)(void);
    void (*spawn)(void); /* loop thread: start one child */
    void (*run)(void);   /* until every child has ended */
    void (*stop)(void);  /* loop thread: the last child ended */
    void (*teardown)(void);
} impl_t;
static const impl_t *impl;

static void spawn_next(void)
{
    started++;
    impl->spawn();
}

/* Loop thread, at the start: the first C children. */
static void start(void)
{
    t_first = now_ns();
    while (started < C && started < N)
        spawn_next();
}

/* Loop thread: a child ended (ok: with status 0).  The caller spawns the
 * next one: twine at once, libuv from the handle's close callback. */
static void on_ended(int ok)
{
    if (!pthread_equal(pthread_self(), loop_thread))
        bad_thread++;
    if (!ok)
        bad_status++;
    if (++ended == N) {
        t_last = now_ns();
        impl->stop();
    }
}

/* ---- twine ------------------------------------------------------------- */

static tw_reactor_t *tr;
static char *const argv_true[] = { "true", NULL };
static const tw_child_fd_t devnull_fds[] = {
    { 0, TW_FD_DEVNULL, -1 },
    { 1, TW_FD_DEVNULL, -1 },
    { 2, TW_FD_DEVNULL, -1 },
};
static const tw_spawn_options_t tw_opts = { .fds = devnull_fds, .nfds = 3 };

typedef struct {
    tw_process_protocol_t base;
    int ended;
} tw_child_t;

static void tw_process_ended(tw_process_protocol_t *p, const tw_process_status_t *st)
{
    tw_child_t *c = (tw_child_t *)p;
    int ok = st->reason == NULL && st->exit_code == 0 && st->signal == 0 && !c->ended;
    if (!ok)
        fprintf(stderr, "bench_spawn twine: child %d: exit_code=%d signal=%d %s\n",
                (int)tw_process_pid(p->process), st->exit_code, st->signal,
                st->reason ? st->reason->message : "");
    c->ended++;
    on_ended(ok);
    if (started < N)
        spawn_next();
}

static void tw_destroy(tw_process_protocol_t *p)
{
    tw_child_t *c = (tw_child_t *)p;
    if (c->ended != 1) /* destroy comes once, after process_ended */
        bad_status++;
    free(c);
}

static const tw_process_protocol_ops_t tw_child_ops = {
    .process_ended = tw_process_ended,
    .destroy = tw_destroy,
};

static void tw_spawn(void)
{
    tw_child_t *c = calloc(1, sizeof *c);
    if (!c)
        DIE("out of memory");
    c->base.ops = &tw_child_ops;
    int e = tw_spawn_process(tr, &c->base, PROG, argv_true, &tw_opts, NULL);
    if (e)
        DIE("tw_spawn_process: %s", tw_strerror(e));
}

static void tw_start(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    start();
}

static void tw_setup(void)
{
    if (tw_reactor_new(&tr))
        DIE("tw_reactor_new");
}

static void tw_run(void)
{
    if (tw_reactor_call_soon(tr, tw_start, NULL))
        DIE("tw_reactor_call_soon");
    if (tw_reactor_run(tr, TW_RUN_DEFAULT))
        DIE("tw_reactor_run");
}

static void tw_stop(void)
{
    if (tw_reactor_stop(tr))
        DIE("tw_reactor_stop");
}

static void tw_teardown(void)
{
    tw_reactor_free(tr);
}

/* ---- libuv ------------------------------------------------------------- */

static uv_loop_t uloop;
static uv_process_t *uprocs;
static uv_process_t *ufree[MAXC];
static uint32_t n_ufree;
static uv_stdio_container_t ustdio[3] = {
    { .flags = UV_IGNORE },
    { .flags = UV_IGNORE },
    { .flags = UV_IGNORE },
};

static void u_exit(uv_process_t *p, int64_t status, int signo);

static void u_spawn(void)
{
    if (!n_ufree)
        DIE("more than C running");
    uv_process_t *p = ufree[--n_ufree];
    uv_process_options_t o = {
        .exit_cb = u_exit,
        .file = PROG,
        .args = (char **)argv_true,
        .stdio_count = 3,
        .stdio = ustdio,
    };
    int e = uv_spawn(&uloop, p, &o);
    if (e)
        DIE("uv_spawn: %s", uv_strerror(e));
}

static void u_closed(uv_handle_t *h)
{
    ufree[n_ufree++] = (uv_process_t *)h;
    if (started < N)
        spawn_next();
}

static void u_exit(uv_process_t *p, int64_t status, int signo)
{
    int ok = status == 0 && signo == 0;
    if (!ok)
        fprintf(stderr, "bench_spawn uv: child %d: exit status %lld signal %d\n", p->pid,
                (long long)status, signo);
    on_ended(ok);
    uv_close((uv_handle_t *)p, u_closed);
}

static void u_setup(void)
{
    if (uv_loop_init(&uloop))
        DIE("uv_loop_init");
    if (!(uprocs = calloc(C, sizeof *uprocs)))
        DIE("out of memory");
    for (uint32_t k = 0; k < C; k++)
        ufree[n_ufree++] = &uprocs[C - 1 - k];
}

static void u_run(void)
{
    start();
    uv_run(&uloop, UV_RUN_DEFAULT); /* returns when every process handle is closed */
}

static void u_stop(void) {}

static void u_teardown(void)
{
    if (uv_loop_close(&uloop))
        DIE("uv_loop_close");
    free(uprocs);
}

static const impl_t impls[] = {
    { "twine", tw_setup, tw_spawn, tw_run, tw_stop, tw_teardown },
    { "uv", u_setup, u_spawn, u_run, u_stop, u_teardown },
};

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc != 4)
        DIE("usage: %s twine|uv N C", argv[0]);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (!strcmp(argv[1], impls[i].name))
            impl = &impls[i];
    if (!impl)
        DIE("unknown impl %s (twine, uv)", argv[1]);
    N = (uint32_t)strtoul(argv[2], NULL, 10);
    C = (uint32_t)strtoul(argv[3], NULL, 10);
    if (N < 1 || C < 1 || C > MAXC)
        DIE("bad N or C (1 <= C <= %d)", MAXC);
    loop_thread = pthread_self();

    impl->setup();
    double c0 = cpu_s();
    uint64_t w0 = now_ns();
    impl->run();
    double c1 = cpu_s();
    uint64_t w1 = now_ns();
    impl->teardown();

    /* Every child must have been reaped by the library. */
    int zombies = 0;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        zombies++;
    int ok = started == N && ended == N && bad_status == 0 && bad_thread == 0 && zombies == 0 &&
             t_last > t_first;
    if (!ok)
        fprintf(stderr,
                "bench_spawn %s: check failed (started=%u ended=%u/%u bad_status=%llu "
                "off-loop=%llu unreaped=%d)\n",
                impl->name, started, ended, N, (unsigned long long)bad_status,
                (unsigned long long)bad_thread, zombies);
    double el = (double)(t_last - t_first) / 1e9;
    printf("RESULT bench=spawn impl=%s C=%u N=%u spawns_per_s=%.0f elapsed_s=%.3f "
           "cpu_us_per_spawn=%.1f cpu_util=%.2f ok=%d\n",
           impl->name, C, N, (double)N / el, el, (c1 - c0) * 1e6 / N,
           (c1 - c0) / ((double)(w1 - w0) / 1e9), ok);
    return ok ? 0 : 1;
}
