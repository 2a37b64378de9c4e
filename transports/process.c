/* process.c -- child processes as transports (Twisted's spawnProcess and
 * IProcessProtocol): spawning, the child's pipes, reaping.
 *
 * Spawning.  Everything the child needs is prepared in the parent: the
 * pipes (O_CLOEXEC from birth, so a concurrent spawn in another thread
 * cannot leak them), the list of paths to try for a name without '/', and
 * a plan of which descriptor becomes which.  Then vfork(), with every signal
 * blocked so that no handler of ours runs in the child while it borrows our
 * memory.  The child makes only system calls -- raw ones on Linux, past any
 * sanitizer interceptor and past glibc's setuid, which would signal our other
 * threads -- and writes the errno of a failed step where the parent can read
 * it before exiting with 127: in our memory (vfork shares it) or, where
 * vfork is really fork (TSan), through a close-on-exec pipe.
 *
 * The pipes.  Each is a stream (stream.c) whose protocol is a pipe_t
 * embedded in the process: data goes to child_data_received(fd), the end
 * of the stream to child_connection_lost(fd), and the stream's destroy --
 * called once the stream no longer touches its protocol -- to the check
 * for process_ended, which may free the process and so the pipe_t.
 *
 * Reaping.  A pidfd per child, watched for reading like any descriptor
 * (every backend handles it), then waitpid(pid, WNOHANG).  Without pidfds
 * (before Linux 5.3, under seccomp, other systems, or when
 * TWINE_PROCESS_REAPER=sigchld) a SIGCHLD hook in the reactor's signal
 * machinery calls waitpid on each pid this reactor spawned -- never
 * waitpid(-1), which would steal the application's children.  A soon call
 * after each such spawn looks once more, for a child that exited before the
 * hook was in place.  Exits are delivered from the reactor, never from
 * inside the call of the user that spawned or closed something. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
/* Older C libraries lack the numbers; these two are the same on every
 * architecture but alpha.  The kernel says ENOSYS where it lacks them. */
#if !defined(SYS_pidfd_open) && !defined(__alpha__)
#define SYS_pidfd_open 434
#endif
#if !defined(SYS_close_range) && !defined(__alpha__)
#define SYS_close_range 436
#endif
#else
#include <grp.h>
#endif

#include "internal.h"
#include "stream.h"
#include "tw_process.h"

extern char **environ;

/* ---- the structures ------------------------------------------------------ */

/* One pipe to or from the child: the protocol of its stream. */
typedef struct pipe_s {
    tw_protocol_t proto;   /* first: the stream's protocol */
    tw_process_t *proc;
    tw__stream_t *s;       /* NULL once its connection_lost has come */
    int child_fd;
    int kind;              /* TW_FD_READ or TW_FD_WRITE; a pty master is READ */
} pipe_t;

struct tw_process {
    tw_transport_t base;           /* first: the process is a transport */
    tw_process_protocol_t *p;
    tw_process_t *next, *prev;     /* the reactor's processes not yet ended */
    tw_process_t *reaped_next;     /* a sweep's list of children it reaped */
    pid_t pid;
    int pidfd;                     /* -1: reaped by the SIGCHLD sweep (or reaped) */
    int nopen;                     /* pipes whose connection_lost has not come */
    bool reaped, exited, ended, pty;
    tw_failure_t *reason;          /* owned; status.reason */
    bool reason_static;            /* reason is a static failure (out of memory) */
    tw_process_status_t status;
    pipe_t *in;                    /* the pipe tw_transport_write writes to, or NULL */
    size_t npipes;
    pipe_t pipes[];
};

/* The reactor's share (r->procs). */
typedef struct procs {
    tw_process_t *live;  /* every process not yet ended */
    int nsweep;          /* children not yet reaped that the sweep must look at */
    bool hooked;         /* the SIGCHLD hook is installed */
    bool sweep_soon;     /* a sweep is scheduled as a soon call */
} procs_t;

/* ---- status ---------------------------------------------------------------- */

static const char *proc_signame(int sig, char buf[16])
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char *abbr = sigabbrev_np(sig);
    if (abbr && strlen(abbr) < 12) {
        memcpy(buf, "SIG", 3);
        strcpy(buf + 3, abbr);
        return buf;
    }
#endif
    (void)sig;
    (void)buf;
    return NULL;
}

/* When even a failure cannot be allocated, a non-zero status must still not
 * read as success (a NULL reason). */
static tw_failure_t proc_oom_failure = { "process", -ENOMEM, (char *)"child status unknown "
                                         "(out of memory)", NULL };

static void proc_set_reason(tw_process_t *proc, tw_failure_t *f)
{
    proc->reason = f ? f : &proc_oom_failure;
    proc->reason_static = !f;
}

/* Turn waitpid's result (err: 0 or -errno) into the status. */
static void proc_set_status(tw_process_t *proc, int err, int wstatus)
{
    tw_process_status_t *st = &proc->status;
    st->exit_code = -1;
    st->signal = 0;
    st->core_dumped = false;
    if (proc->reason) {
        /* the exec failed: its errno, set at spawn, is the whole story */
    } else if (err) {
        proc_set_reason(proc, tw_failure_new("process", err, "waitpid %ld: %s (reaped elsewhere?)",
                                             (long)proc->pid, tw_strerror(err)));
    } else if (WIFEXITED(wstatus)) {
        st->exit_code = WEXITSTATUS(wstatus);
        if (st->exit_code)
            proc_set_reason(proc, tw_failure_new("process", TW_EPROCEXIT, "exited with code %d",
                                                 st->exit_code));
    } else if (WIFSIGNALED(wstatus)) {
        char buf[16];
        const char *name = proc_signame(WTERMSIG(wstatus), buf);
        st->signal = WTERMSIG(wstatus);
#ifdef WCOREDUMP
        st->core_dumped = WCOREDUMP(wstatus) != 0;
#endif
        proc_set_reason(proc, tw_failure_new("process", TW_EPROCSIGNAL, "killed by signal %d%s%s%s%s",
                                             st->signal, name ? " (" : "", name ? name : "",
                                             name ? ")" : "",
                                             st->core_dumped ? ", core dumped" : ""));
    }
    st->reason = proc->reason;
}

/* ---- the end of a process ------------------------------------------------- */

static void procs_unhook_if_idle(tw_reactor_t *r);

static void proc_unlink(tw_process_t *proc)
{
    procs_t *ps = proc->base.reactor->procs;
    if (proc->prev)
        proc->prev->next = proc->next;
    else
        ps->live = proc->next;
    if (proc->next)
        proc->next->prev = proc->prev;
    proc->next = proc->prev = NULL;
}

static void proc_free(tw_process_t *proc)
{
    if (!proc->reason_static)
        tw_failure_free(proc->reason);
    free(proc);
}

/* process_ended once the child is reaped (and told) and every pipe closed:
 * the last call, then destroy, then the process is freed.  Only ever
 * called from the reactor: a pipe's destroy (a soon call of stream.c) or a
 * reaper. */
static void proc_maybe_end(tw_process_t *proc)
{
    if (!proc->exited || proc->nopen > 0 || proc->ended)
        return;
    proc->ended = true;
    proc_unlink(proc);
    tw_process_protocol_t *p = proc->p;
    if (p->ops->process_ended)
        p->ops->process_ended(p, &proc->status);
    if (p->ops->destroy)
        p->ops->destroy(p);
    proc_free(proc);
}

/* The child has been reaped: stop watching for it.  Nothing is called. */
static void proc_set_reaped(tw_process_t *proc, int err, int wstatus)
{
    tw_reactor_t *r = proc->base.reactor;
    proc->reaped = true;
    if (proc->pidfd >= 0) {
        tw_reactor_remove_reader(r, proc->pidfd);
        close(proc->pidfd);
        proc->pidfd = -1;
    } else {
        ((procs_t *)r->procs)->nsweep--;
    }
    proc_set_status(proc, err, wstatus);
}

static void proc_deliver_exit(tw_process_t *proc)
{
    tw_process_protocol_t *p = proc->p;
    proc->exited = true;
    if (p->ops->process_exited)
        p->ops->process_exited(p, &proc->status);
    proc_maybe_end(proc);
}

static pid_t proc_waitpid(pid_t pid, int *wstatus, int *err)
{
    pid_t w;
    do
        w = waitpid(pid, wstatus, WNOHANG);
    while (w < 0 && errno == EINTR);
    *err = w < 0 ? -errno : 0;
    return w;
}

static void proc_pidfd_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)r, (void)fd;
    tw_process_t *proc = arg;
    int wstatus = 0, err;
    if (proc_waitpid(proc->pid, &wstatus, &err) == 0)
        return; /* not yet: the pidfd will say so again */
    proc_set_reaped(proc, err, wstatus);
    proc_deliver_exit(proc);
}

/* The SIGCHLD reaper: waitpid on each child of this reactor that has no
 * pidfd.  All are reaped first and told after, so a callback that spawns,
 * closes or signals finds the list and the flags as they are. */
static void procs_sweep(tw_reactor_t *r)
{
    procs_t *ps = r->procs;
    tw_process_t *done = NULL, **tail = &done;
    for (tw_process_t *proc = ps->live; proc && ps->nsweep > 0; proc = proc->next) {
        if (proc->reaped || proc->pidfd >= 0)
            continue;
        int wstatus = 0, err;
        if (proc_waitpid(proc->pid, &wstatus, &err) == 0)
            continue;
        proc_set_reaped(proc, err, wstatus);
        proc->reaped_next = NULL;
        *tail = proc;
        tail = &proc->reaped_next;
    }
    while (done) {
        tw_process_t *proc = done;
        done = proc->reaped_next;
        proc_deliver_exit(proc); /* may free proc */
    }
    procs_unhook_if_idle(r);
}

static void procs_sweep_cb(tw_reactor_t *r, void *arg)
{
    (void)arg;
    ((procs_t *)r->procs)->sweep_soon = false;
    procs_sweep(r);
}

static int procs_hook(tw_reactor_t *r)
{
    procs_t *ps = r->procs;
    if (ps->hooked)
        return 0;
    int rc = tw__signals_set_chld_hook(r, procs_sweep);
    if (rc == 0)
        ps->hooked = true;
    return rc;
}

/* No child left for the sweep: give SIGCHLD back (to the application's
 * callback, or to its old disposition). */
static void procs_unhook_if_idle(tw_reactor_t *r)
{
    procs_t *ps = r->procs;
    if (ps->hooked && ps->nsweep == 0) {
        tw__signals_set_chld_hook(r, NULL);
        ps->hooked = false;
    }
}

/* tw_reactor_free: forget every process.  Their protocols are destroyed
 * without any other call; the children are left running, unreaped: they
 * are the caller's now. */
static void procs_free(tw_reactor_t *r)
{
    procs_t *ps = r->procs;
    tw_process_t *proc = ps->live;
    while (proc) {
        tw_process_t *next = proc->next;
        if (proc->pidfd >= 0) {
            tw_reactor_remove_reader(r, proc->pidfd);
            close(proc->pidfd);
        }
        for (size_t i = 0; i < proc->npipes; i++)
            if (proc->pipes[i].s)
                tw__stream_discard(proc->pipes[i].s);
        if (proc->p->ops->destroy)
            proc->p->ops->destroy(proc->p);
        proc_free(proc);
        proc = next;
    }
    if (ps->hooked)
        tw__signals_set_chld_hook(r, NULL);
    free(ps);
    r->procs = NULL;
    r->procs_free = NULL;
}

static procs_t *procs_get(tw_reactor_t *r)
{
    if (!r->procs) {
        r->procs = calloc(1, sizeof(procs_t));
        if (r->procs)
            r->procs_free = procs_free;
    }
    return r->procs;
}

/* ---- the pipes' protocol ------------------------------------------------- */

static void pipe_data(tw_protocol_t *pp, const void *data, size_t len)
{
    pipe_t *pipe = (pipe_t *)pp;
    tw_process_protocol_t *p = pipe->proc->p;
    if (p->ops->child_data_received)
        p->ops->child_data_received(p, pipe->child_fd, data, len);
}

static void pipe_lost(tw_protocol_t *pp, const tw_failure_t *reason)
{
    (void)reason; /* Twisted's childConnectionLost has none either */
    pipe_t *pipe = (pipe_t *)pp;
    tw_process_t *proc = pipe->proc;
    pipe->s = NULL;
    proc->nopen--;
    tw_process_protocol_t *p = proc->p;
    if (p->ops->child_connection_lost)
        p->ops->child_connection_lost(p, pipe->child_fd);
}

/* The stream is done with this protocol: now the process may end (and free
 * the pipe with it). */
static void pipe_destroy(tw_protocol_t *pp)
{
    proc_maybe_end(((pipe_t *)pp)->proc);
}

static const tw_protocol_ops_t pipe_ops = {
    .data_received = pipe_data,
    .connection_lost = pipe_lost,
    .destroy = pipe_destroy,
};

/* The open pipe of child fd `fd` (of kind `kind`, 0: any), or NULL.  A
 * pty's master is the pipe of both fd 0 and fd 1. */
static pipe_t *proc_pipe(tw_process_t *proc, int fd, int kind)
{
    if (proc->pty)
        return (fd == 0 || fd == 1) && proc->pipes[0].s ? &proc->pipes[0] : NULL;
    for (size_t i = 0; i < proc->npipes; i++) {
        pipe_t *pipe = &proc->pipes[i];
        if (pipe->child_fd == fd && pipe->s && (!kind || pipe->kind == kind))
            return pipe;
    }
    return NULL;
}

static tw_transport_t *proc_in(tw_process_t *proc)
{
    return proc->in && proc->in->s ? &proc->in->s->base : NULL;
}

/* ---- the process as a transport ------------------------------------------ */

static tw_process_t *proc_of(tw_transport_t *t)
{
    return (tw_process_t *)t;
}

static int proc_writev(tw_transport_t *t, const struct iovec *iov, int iovcnt)
{
    tw_transport_t *in = proc_in(proc_of(t));
    return in ? tw_transport_writev(in, iov, iovcnt) : -EPIPE;
}

static void proc_lose(tw_transport_t *t)
{
    tw_process_t *proc = proc_of(t);
    /* closing is deferred by the streams: none of them goes away here */
    for (size_t i = 0; i < proc->npipes; i++)
        if (proc->pipes[i].s)
            tw_transport_lose_connection(&proc->pipes[i].s->base);
}

static void proc_lose_with(tw_transport_t *t, tw_failure_t *reason)
{
    tw_failure_free(reason); /* a process protocol has no connection_lost */
    proc_lose(t);
}

static void proc_abort(tw_transport_t *t)
{
    tw_process_t *proc = proc_of(t);
    for (size_t i = 0; i < proc->npipes; i++)
        if (proc->pipes[i].s)
            tw_transport_abort_connection(&proc->pipes[i].s->base);
}

static int proc_lose_write(tw_transport_t *t)
{
    tw_transport_t *in = proc_in(proc_of(t));
    if (!in)
        return -EPIPE;
    tw_transport_lose_connection(in);
    return 0;
}

static void proc_reading(tw_transport_t *t, bool on)
{
    tw_process_t *proc = proc_of(t);
    for (size_t i = 0; i < proc->npipes; i++) {
        pipe_t *pipe = &proc->pipes[i];
        if (pipe->s && pipe->kind == TW_FD_READ) {
            if (on)
                tw_transport_resume_reading(&pipe->s->base);
            else
                tw_transport_pause_reading(&pipe->s->base);
        }
    }
}

static void proc_pause(tw_transport_t *t)
{
    proc_reading(t, false);
}

static void proc_resume(tw_transport_t *t)
{
    proc_reading(t, true);
}

static int proc_register(tw_transport_t *t, tw_producer_t *prod, bool streaming)
{
    tw_transport_t *in = proc_in(proc_of(t));
    return in ? tw_transport_register_producer(in, prod, streaming) : -EPIPE;
}

static void proc_unregister(tw_transport_t *t)
{
    tw_transport_t *in = proc_in(proc_of(t));
    if (in)
        tw_transport_unregister_producer(in);
}

static int proc_address(tw_transport_t *t, struct sockaddr_storage *ss, socklen_t *len)
{
    (void)t, (void)ss, (void)len;
    return -ENOTSUP;
}

static size_t proc_queued(const tw_transport_t *t)
{
    tw_transport_t *in = proc_in(proc_of((tw_transport_t *)t));
    return in ? tw_transport_queued(in) : 0;
}

static void proc_set_limits(tw_transport_t *t, size_t low, size_t high, size_t cap,
                            tw_cap_policy_t policy)
{
    tw_transport_t *in = proc_in(proc_of(t));
    if (in)
        tw_transport_set_limits(in, low, high, cap, policy);
}

static int proc_setopt(tw_transport_t *t, bool on)
{
    (void)t, (void)on;
    return -ENOTSUP;
}

static int proc_fileno(const tw_transport_t *t)
{
    tw_transport_t *in = proc_in(proc_of((tw_transport_t *)t));
    return in ? tw_transport_fileno(in) : -1;
}

static const tw_transport_ops_t proc_ops = {
    .writev = proc_writev,
    .lose_connection = proc_lose,
    .abort_connection = proc_abort,
    .lose_connection_with = proc_lose_with,
    .lose_write_connection = proc_lose_write,
    .pause_reading = proc_pause,
    .resume_reading = proc_resume,
    .register_producer = proc_register,
    .unregister_producer = proc_unregister,
    .peer_address = proc_address,
    .host_address = proc_address,
    .queued = proc_queued,
    .set_limits = proc_set_limits,
    .set_nodelay = proc_setopt,
    .set_keepalive = proc_setopt,
    .fileno = proc_fileno,
};

/* ---- the child -------------------------------------------------------------- */

/* Where vfork() is really fork() (ThreadSanitizer makes it so), the child's
 * memory is not ours: its failure comes back through a pipe. */
#if defined(__SANITIZE_THREAD__)
#define VFORK_IS_FORK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VFORK_IS_FORK 1
#endif
#endif
#ifndef VFORK_IS_FORK
#define VFORK_IS_FORK 0
#endif

/* The child runs on our memory: no sanitizer may record anything there. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define CHILD_CODE __attribute__((no_sanitize("address", "thread", "undefined")))
#else
#define CHILD_CODE
#endif

/* What the child failed at. */
enum { ST_EXEC = 1, ST_CHDIR, ST_SETSID, ST_SETPGID, ST_CTTY, ST_SETGID, ST_SETUID, ST_FD };

typedef struct plan {
    const char *path;       /* with a '/': run as it is */
    const char *paths;      /* else the candidates: "dir/name\0dir/name\0\0" */
    char *const *argv, *const *envp;
    const char *cwd;        /* or NULL */
    unsigned flags;
    uid_t uid;
    gid_t gid;
    int pty;                /* the pty's slave (TIOCSCTTY), or -1 */
    int n;                  /* descriptors: work[i] (a copy of the source the */
    int *work;              /* child may move) becomes dst[i] */
    const int *dst;
    const int *keep;        /* dst sorted, distinct: all that survives exec */
    unsigned long fdmax;    /* RLIMIT_NOFILE: where the close loop ends without close_range */
    int errfd;              /* fork semantics: the failure goes there; else -1 */
    volatile int err, stage, stage_arg; /* written by the child */
} plan_t;

#ifdef __linux__
#define C_SYS(...) syscall(__VA_ARGS__)
#endif

CHILD_CODE static void child_set_default(int sig)
{
#ifdef __linux__
    /* SIG_DFL is 0 everywhere, so a zeroed kernel sigaction (of any
     * architecture's layout) is "default, no flags, empty mask". */
    unsigned long ksa[8] = { 0 };
    C_SYS(SYS_rt_sigaction, sig, ksa, NULL, _NSIG / 8);
#else
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
#endif
}

CHILD_CODE static void child_unblock_all(void)
{
#ifdef __linux__
    unsigned long none[8] = { 0 };
    C_SYS(SYS_rt_sigprocmask, SIG_SETMASK, none, NULL, _NSIG / 8);
#else
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
#endif
}

CHILD_CODE static int child_fcntl(int fd, int cmd, long arg)
{
#ifdef __linux__
    return (int)C_SYS(SYS_fcntl, fd, cmd, arg);
#else
    return fcntl(fd, cmd, arg);
#endif
}

CHILD_CODE static int child_dup_to(int from, int to)
{
#ifdef __linux__
    return (int)C_SYS(SYS_dup3, from, to, 0);
#else
    return dup2(from, to);
#endif
}

/* Close lo..hi (inclusive). */
CHILD_CODE static void child_close_range(unsigned long lo, unsigned long hi, unsigned long fdmax)
{
    if (lo > hi)
        return;
#if defined(__linux__) && defined(SYS_close_range)
    if (C_SYS(SYS_close_range, (unsigned)lo, (unsigned)(hi > UINT_MAX ? UINT_MAX : hi), 0) == 0)
        return;
#endif
    if (hi >= fdmax)
        hi = fdmax - 1;
    for (unsigned long fd = lo; fd <= hi && fd <= INT_MAX; fd++) {
#ifdef __linux__
        C_SYS(SYS_close, (int)fd);
#else
        close((int)fd);
#endif
    }
}

CHILD_CODE static int child_execve(const char *path, char *const argv[], char *const envp[])
{
#ifdef __linux__
    C_SYS(SYS_execve, path, argv, envp);
#else
    execve(path, argv, envp);
#endif
    return errno;
}

__attribute__((noreturn)) CHILD_CODE static void child_fail(plan_t *c, int stage, int arg, int err)
{
    c->err = err;
    c->stage = stage;
    c->stage_arg = arg;
    if (c->errfd >= 0) {
        int msg[3] = { err, stage, arg };
#ifdef __linux__
        C_SYS(SYS_write, c->errfd, msg, sizeof msg);
#else
        write(c->errfd, msg, sizeof msg);
#endif
    }
#ifdef __linux__
    for (;;)
        C_SYS(SYS_exit_group, 127);
#else
    _exit(127);
#endif
}

/* The child, between vfork and exec.  System calls only: no allocation, no
 * locks, no stdio, nothing that a sanitizer intercepts. */
__attribute__((noinline, noreturn)) CHILD_CODE static void child_main(plan_t *c)
{
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            child_set_default(sig); /* ignored ones too: SIG_IGN survives exec */

#ifdef __linux__
    if (c->flags & (TW_SPAWN_SETSID | TW_SPAWN_PTY)) {
        if (C_SYS(SYS_setsid) < 0)
            child_fail(c, ST_SETSID, 0, errno);
    } else if ((c->flags & TW_SPAWN_SETPGID) && C_SYS(SYS_setpgid, 0, 0) < 0) {
        child_fail(c, ST_SETPGID, 0, errno);
    }
    if (c->pty >= 0 && C_SYS(SYS_ioctl, c->pty, TIOCSCTTY, 0) < 0)
        child_fail(c, ST_CTTY, 0, errno);
    /* 32-bit ids where the plain calls take 16-bit ones */
#ifdef SYS_setgid32
    if ((c->flags & TW_SPAWN_SETGID) &&
        (C_SYS(SYS_setgroups32, 0, NULL) < 0 || C_SYS(SYS_setgid32, c->gid) < 0))
        child_fail(c, ST_SETGID, (int)c->gid, errno);
    if ((c->flags & TW_SPAWN_SETUID) && C_SYS(SYS_setuid32, c->uid) < 0)
        child_fail(c, ST_SETUID, (int)c->uid, errno);
#else
    if ((c->flags & TW_SPAWN_SETGID) &&
        (C_SYS(SYS_setgroups, 0, NULL) < 0 || C_SYS(SYS_setgid, c->gid) < 0))
        child_fail(c, ST_SETGID, (int)c->gid, errno);
    if ((c->flags & TW_SPAWN_SETUID) && C_SYS(SYS_setuid, c->uid) < 0)
        child_fail(c, ST_SETUID, (int)c->uid, errno);
#endif
    if (c->cwd && C_SYS(SYS_chdir, c->cwd) < 0)
        child_fail(c, ST_CHDIR, 0, errno);
#else
    if (c->flags & (TW_SPAWN_SETSID | TW_SPAWN_PTY)) {
        if (setsid() < 0)
            child_fail(c, ST_SETSID, 0, errno);
    } else if ((c->flags & TW_SPAWN_SETPGID) && setpgid(0, 0) < 0) {
        child_fail(c, ST_SETPGID, 0, errno);
    }
    if (c->pty >= 0 && ioctl(c->pty, TIOCSCTTY, 0) < 0)
        child_fail(c, ST_CTTY, 0, errno);
    if ((c->flags & TW_SPAWN_SETGID) && (setgroups(0, NULL) < 0 || setgid(c->gid) < 0))
        child_fail(c, ST_SETGID, (int)c->gid, errno);
    if ((c->flags & TW_SPAWN_SETUID) && setuid(c->uid) < 0)
        child_fail(c, ST_SETUID, (int)c->uid, errno);
    if (c->cwd && chdir(c->cwd) < 0)
        child_fail(c, ST_CHDIR, 0, errno);
#endif

    /* The descriptors.  First every source that a target could overwrite
     * moves above the highest target (so do we, the error pipe), then each
     * goes to its place; a source already in place only loses FD_CLOEXEC. */
    int floor = c->n ? c->keep[c->n - 1] + 1 : 0;
    if (c->errfd >= 0 && c->errfd < floor &&
        (c->errfd = child_fcntl(c->errfd, F_DUPFD_CLOEXEC, floor)) < 0)
        child_fail(c, ST_FD, -1, errno);
    for (int i = 0; i < c->n; i++) {
        if (c->work[i] != c->dst[i] && c->work[i] < floor &&
            (c->work[i] = child_fcntl(c->work[i], F_DUPFD_CLOEXEC, floor)) < 0)
            child_fail(c, ST_FD, c->dst[i], errno);
    }
    for (int i = 0; i < c->n; i++) {
        int rc = c->work[i] == c->dst[i] ? child_fcntl(c->dst[i], F_SETFD, 0)
                                         : child_dup_to(c->work[i], c->dst[i]);
        if (rc < 0)
            child_fail(c, ST_FD, c->dst[i], errno);
    }
    /* Everything else closes: the gaps between targets, then the rest
     * (around the error pipe, itself closed by exec). */
    unsigned long lo = 0;
    for (int i = 0; i < c->n; i++) {
        if ((unsigned long)c->keep[i] > lo)
            child_close_range(lo, (unsigned long)c->keep[i] - 1, c->fdmax);
        lo = (unsigned long)c->keep[i] + 1;
    }
    if (c->errfd >= 0) {
        if ((unsigned long)c->errfd > lo)
            child_close_range(lo, (unsigned long)c->errfd - 1, c->fdmax);
        lo = (unsigned long)c->errfd + 1;
    }
    child_close_range(lo, ~0UL, c->fdmax);

    child_unblock_all();
    if (!c->paths)
        child_fail(c, ST_EXEC, 0, child_execve(c->path, c->argv, c->envp));
    /* execvpe's rules: go on past a directory without the file (or not one
     * we may search); a file we may not execute is EACCES unless another
     * one works; any other error stops the search. */
    int err = ENOENT;
    bool eacces = false;
    for (const char *p = c->paths; *p;) {
        err = child_execve(p, c->argv, c->envp);
        if (err == EACCES)
            eacces = true;
        else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV &&
                 err != ETIMEDOUT)
            break;
        while (*p++)
            ;
    }
    if (err == ENOENT || err == ENOTDIR || err == ESTALE || err == ENODEV || err == ETIMEDOUT ||
        err == EACCES)
        err = eacces ? EACCES : ENOENT;
    child_fail(c, ST_EXEC, 0, err);
}

/* A separate frame, so that nothing of the caller's is live across vfork
 * (-Wclobbered) and the child never returns into code that would use it. */
__attribute__((noinline)) static pid_t proc_vfork(plan_t *c)
{
    pid_t pid = vfork();
    if (pid == 0)
        child_main(c);
    return pid;
}

/* ---- spawning -------------------------------------------------------------- */

/* The candidates for a name without '/': each directory of PATH (an empty
 * one is the working directory), in order.  Returns a malloc'ed
 * "cand\0cand\0\0", or NULL (out of memory). */
static char *proc_search_list(const char *name, char *const *env)
{
    const char *path = NULL;
    if (env) {
        for (char *const *e = env; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0) {
                path = *e + 5;
                break;
            }
    }
    if (!path)
        path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t nlen = strlen(name), ndirs = 1;
    for (const char *p = path; *p; p++)
        ndirs += *p == ':';
    char *list = malloc(strlen(path) + ndirs * (nlen + 2) + 1);
    if (!list)
        return NULL;
    char *out = list;
    if (nlen > 0) {
        for (const char *dir = path;;) {
            const char *end = strchr(dir, ':');
            size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
            memcpy(out, dir, dlen);
            out += dlen;
            if (dlen)
                *out++ = '/';
            memcpy(out, name, nlen + 1);
            out += nlen + 1;
            if (!end)
                break;
            dir = end + 1;
        }
    }
    *out = '\0';
    return list;
}

static int proc_fd_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void proc_exec_failure(tw_process_t *proc, const plan_t *c, const char *path)
{
    int code = -c->err;
    const char *why = tw_strerror(code);
    tw_failure_t *f;
    switch (c->stage) {
    case ST_EXEC: f = tw_failure_new("process", code, "exec %s: %s", path, why); break;
    case ST_CHDIR: f = tw_failure_new("process", code, "chdir %s: %s", c->cwd, why); break;
    case ST_SETSID: f = tw_failure_new("process", code, "setsid: %s", why); break;
    case ST_SETPGID: f = tw_failure_new("process", code, "setpgid: %s", why); break;
    case ST_CTTY: f = tw_failure_new("process", code, "controlling terminal: %s", why); break;
    case ST_SETGID:
        f = tw_failure_new("process", code, "setgid %d: %s", c->stage_arg, why);
        break;
    case ST_SETUID:
        f = tw_failure_new("process", code, "setuid %d: %s", c->stage_arg, why);
        break;
    default: f = tw_failure_new("process", code, "child fd %d: %s", c->stage_arg, why); break;
    }
    proc_set_reason(proc, f);
}

/* What a spawn holds until the child runs. */
#define MAP_INLINE 8
typedef struct spawn {
    int *src, *dst, *work, *keep; /* n each: see plan_t */
    int *ours, *theirs;           /* one each per pipe: our end and the child's */
    int devnull, errpipe[2];
    char *paths;
    int *mem;
    int inline_mem[6 * MAP_INLINE];
} spawn_t;

static int spawn_init(spawn_t *sp, size_t n, size_t npipes)
{
    size_t need = 4 * n + 2 * npipes;
    sp->mem = need <= 6 * MAP_INLINE ? sp->inline_mem : malloc(need * sizeof(int));
    if (!sp->mem)
        return -ENOMEM;
    sp->src = sp->mem;
    sp->dst = sp->src + n;
    sp->work = sp->dst + n;
    sp->keep = sp->work + n;
    sp->ours = sp->keep + n;
    sp->theirs = sp->ours + npipes;
    for (size_t i = 0; i < n; i++)
        sp->src[i] = -1;
    for (size_t i = 0; i < 2 * npipes; i++)
        sp->ours[i] = -1;
    sp->devnull = sp->errpipe[0] = sp->errpipe[1] = -1;
    sp->paths = NULL;
    return 0;
}

static void spawn_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The child's ends are the child's now (or were never used). */
static void spawn_close_theirs(spawn_t *sp, size_t npipes)
{
    for (size_t i = 0; i < npipes; i++)
        spawn_close(&sp->theirs[i]);
    spawn_close(&sp->devnull);
    spawn_close(&sp->errpipe[1]);
}

static void spawn_fini(spawn_t *sp, size_t npipes)
{
    spawn_close_theirs(sp, npipes);
    for (size_t i = 0; i < npipes; i++)
        spawn_close(&sp->ours[i]);
    spawn_close(&sp->errpipe[0]);
    free(sp->paths);
    if (sp->mem != sp->inline_mem)
        free(sp->mem);
}

/* A pseudo-terminal: the master is ours[0], the slave theirs[0] and the
 * child's 0, 1 and 2. */
static int spawn_pty(spawn_t *sp, const tw_spawn_options_t *opt)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -errno;
    sp->ours[0] = master;
    char name[128];
    if (grantpt(master) < 0 || unlockpt(master) < 0)
        return -errno;
#if defined(__GLIBC__) || defined(__linux__)
    int rc = ptsname_r(master, name, sizeof name);
    if (rc != 0)
        return rc > 0 ? -rc : -errno;
#else
    const char *pts = ptsname(master);
    if (!pts || strlen(pts) >= sizeof name)
        return pts ? -ENAMETOOLONG : -errno;
    strcpy(name, pts);
#endif
    if ((sp->theirs[0] = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
        return -errno;
    if (opt->pty_rows || opt->pty_cols) {
        struct winsize ws = { .ws_row = opt->pty_rows, .ws_col = opt->pty_cols };
        ioctl(master, TIOCSWINSZ, &ws);
    }
    for (int i = 0; i < 3; i++)
        sp->src[i] = sp->theirs[0];
    return 0;
}

/* The descriptors of the map: pipes (close-on-exec; our ends
 * non-blocking), /dev/null, inherited ones. */
static int spawn_fds(spawn_t *sp, tw_process_t *proc, const tw_child_fd_t *map, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int pfd[2];
        switch (map[i].kind) {
        case TW_FD_INHERIT: sp->src[i] = map[i].parent_fd; break;
        case TW_FD_DEVNULL:
            if (sp->devnull < 0 && (sp->devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
                return -errno;
            sp->src[i] = sp->devnull;
            break;
        default:
            if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
            bool rd = map[i].kind == TW_FD_READ; /* the child writes, we read */
            sp->ours[k] = pfd[rd ? 0 : 1];
            sp->theirs[k] = sp->src[i] = pfd[rd ? 1 : 0];
            proc->pipes[k].child_fd = map[i].child_fd;
            proc->pipes[k].kind = map[i].kind;
            k++;
            break;
        }
    }
    return 0;
}

/* Start watching for the child's exit: a pidfd, or the SIGCHLD sweep. */
static int spawn_reaper(tw_reactor_t *r, tw_process_t *proc, bool by_sigchld)
{
    procs_t *ps = r->procs;
#if defined(__linux__) && defined(SYS_pidfd_open)
    if (!by_sigchld) {
        proc->pidfd = (int)syscall(SYS_pidfd_open, proc->pid, 0);
        if (proc->pidfd >= 0 && tw_reactor_add_reader(r, proc->pidfd, proc_pidfd_cb, proc) == 0)
            return 0;
        if (proc->pidfd >= 0) /* e.g. above FD_SETSIZE for select */
            close(proc->pidfd);
        proc->pidfd = -1;
    }
#else
    (void)by_sigchld;
#endif
    int rc = procs_hook(r);
    if (rc != 0)
        return rc;
    ps->nsweep++;
    /* it may have exited before the hook was in place */
    if (!ps->sweep_soon && tw_reactor_call_soon(r, procs_sweep_cb, NULL) == 0)
        ps->sweep_soon = true;
    return 0;
}

int tw_spawn_process(tw_reactor_t *r, tw_process_protocol_t *p, const char *path,
                     char *const argv[], const tw_spawn_options_t *opt, tw_process_t **out)
{
    if (!r || !p || !p->ops || !path || !argv)
        return -EINVAL;
    TW__ASSERT_OWNER(r);
    static const tw_spawn_options_t no_options;
    static const tw_child_fd_t default_map[3] = {
        { 0, TW_FD_WRITE, -1 }, { 1, TW_FD_READ, -1 }, { 2, TW_FD_READ, -1 },
    };
    if (!opt)
        opt = &no_options;
    if (opt->flags & ~(unsigned)(TW_SPAWN_SETUID | TW_SPAWN_SETGID | TW_SPAWN_SETSID |
                                 TW_SPAWN_SETPGID | TW_SPAWN_PTY))
        return -EINVAL;
    bool pty = opt->flags & TW_SPAWN_PTY;
    const tw_child_fd_t *map = pty ? NULL : opt->fds ? opt->fds : default_map;
    size_t n = pty ? 3 : opt->fds ? opt->nfds : 3;
    if (n > INT_MAX / 8)
        return -EINVAL;
    size_t npipes = pty ? 1 : 0;
    for (size_t i = 0; map && i < n; i++) {
        const tw_child_fd_t *m = &map[i];
        if (m->child_fd < 0)
            return -EINVAL;
        switch (m->kind) {
        case TW_FD_READ:
        case TW_FD_WRITE: npipes++; break;
        case TW_FD_DEVNULL: break;
        case TW_FD_INHERIT:
            if (m->parent_fd < 0 || fcntl(m->parent_fd, F_GETFD) < 0)
                return -EINVAL;
            break;
        default: return -EINVAL;
        }
    }

    spawn_t sp;
    int rc = spawn_init(&sp, n, npipes);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        sp.dst[i] = map ? map[i].child_fd : (int)i;
    memcpy(sp.keep, sp.dst, n * sizeof(int));
    qsort(sp.keep, n, sizeof(int), proc_fd_cmp);
    tw_process_t *proc = NULL;
    for (size_t i = 1; i < n; i++) {
        if (sp.keep[i] == sp.keep[i - 1]) {
            rc = -EINVAL;
            goto done;
        }
    }
    procs_t *ps = procs_get(r);
    proc = calloc(1, sizeof *proc + npipes * sizeof(pipe_t));
    if (!strchr(path, '/'))
        sp.paths = proc_search_list(path, opt->env);
    if (!ps || !proc || (!strchr(path, '/') && !sp.paths)) {
        rc = -ENOMEM;
        goto done;
    }
    proc->npipes = npipes;
    proc->pty = pty;
    proc->pidfd = -1;
    if (pty) {
        proc->pipes[0].child_fd = 1;
        proc->pipes[0].kind = TW_FD_READ;
    }
    if ((rc = pty ? spawn_pty(&sp, opt) : spawn_fds(&sp, proc, map, n)) != 0)
        goto done;
    for (size_t i = 0; i < npipes; i++)
        fcntl(sp.ours[i], F_SETFL, fcntl(sp.ours[i], F_GETFL) | O_NONBLOCK);
    memcpy(sp.work, sp.src, n * sizeof(int));

    struct rlimit rl = { 0, 0 };
    getrlimit(RLIMIT_NOFILE, &rl);
    plan_t plan = {
        .path = path,
        .paths = sp.paths,
        .argv = argv,
        .envp = opt->env ? opt->env : environ,
        .cwd = opt->cwd,
        .flags = opt->flags,
        .uid = opt->uid,
        .gid = opt->gid,
        .pty = pty ? sp.theirs[0] : -1,
        .n = (int)n,
        .work = sp.work,
        .dst = sp.dst,
        .keep = sp.keep,
        .fdmax = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX ? (unsigned long)INT_MAX
                                                                       : (unsigned long)rl.rlim_cur,
        .errfd = -1,
    };
    if (VFORK_IS_FORK) {
        if (pipe2(sp.errpipe, O_CLOEXEC) < 0) {
            rc = -errno;
            goto done;
        }
        plan.errfd = sp.errpipe[1];
    }

    /* SIGCHLD forced by the environment (read at each spawn, so that tests
     * can switch): the hook goes in before the child exists. */
    const char *reaper = getenv("TWINE_PROCESS_REAPER");
    bool by_sigchld = reaper && strcmp(reaper, "sigchld") == 0;
    if (by_sigchld && (rc = procs_hook(r)) != 0)
        goto done;

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = proc_vfork(&plan);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    spawn_close_theirs(&sp, npipes);
    if (pid < 0) {
        rc = -fork_errno;
        goto done;
    }
    if (sp.errpipe[0] >= 0) { /* fork semantics: wait for the exec or the failure */
        int msg[3];
        ssize_t got;
        do
            got = read(sp.errpipe[0], msg, sizeof msg);
        while (got < 0 && errno == EINTR);
        if (got == (ssize_t)sizeof msg) {
            plan.err = msg[0];
            plan.stage = msg[1];
            plan.stage_arg = msg[2];
        }
    }
    if (plan.err)
        proc_exec_failure(proc, &plan, path);

    proc->pid = pid;
    proc->base.ops = &proc_ops;
    proc->base.reactor = r;
    proc->base.as_producer.ops = &tw__transport_producer_ops;
    proc->p = p;
    if ((rc = spawn_reaper(r, proc, by_sigchld)) != 0) {
        /* no way to learn of its exit: undo the spawn */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto done;
    }

    /* The pipes, as streams.  One that cannot be made (out of memory) is
     * closed: the child sees EOF or EPIPE on it. */
    for (size_t i = 0; i < npipes; i++) {
        pipe_t *pipe = &proc->pipes[i];
        pipe->proto.ops = &pipe_ops;
        pipe->proc = proc;
        unsigned kind = pipe->kind == TW_FD_WRITE ? TW__STREAM_WRONLY : TW__STREAM_PIPE;
        pipe->s = tw__stream_open(r, sp.ours[i], &pipe->proto, NULL, "process", kind);
        sp.ours[i] = -1;
        if (pipe->s)
            proc->nopen++;
        if (!proc->in && (pty || (pipe->kind == TW_FD_WRITE && pipe->child_fd == 0)))
            proc->in = pipe;
    }
    proc->next = ps->live;
    if (ps->live)
        ps->live->prev = proc;
    ps->live = proc;
    spawn_fini(&sp, npipes);
    p->process = proc;
    if (out)
        *out = proc;
    if (p->ops->connection_made)
        p->ops->connection_made(p, proc);
    return 0;

done:
    spawn_fini(&sp, npipes);
    if (proc)
        proc_free(proc);
    if (r->procs)
        procs_unhook_if_idle(r);
    return rc;
}

/* ---- the rest of the API ------------------------------------------------------ */

tw_transport_t *tw_process_transport(tw_process_t *proc)
{
    return &proc->base;
}

pid_t tw_process_pid(const tw_process_t *proc)
{
    return proc->pid;
}

bool tw_process_exited(const tw_process_t *proc)
{
    return proc->reaped;
}

int tw_process_signal(tw_process_t *proc, int signo)
{
    /* A reaped pid may already belong to someone else: never signal it.
     * Until we reap it, the pid stays ours (a zombie keeps it). */
    if (proc->reaped)
        return -ESRCH;
    return kill(proc->pid, signo) < 0 ? -errno : 0;
}

int tw_process_write_to_child(tw_process_t *proc, int fd, const void *data, size_t len)
{
    /* a pty's master is written as fd 0 */
    pipe_t *pipe = !proc->pty ? proc_pipe(proc, fd, TW_FD_WRITE) : fd == 0 ? proc_pipe(proc, 0, 0)
                                                                         : NULL;
    if (!pipe)
        return -EBADF;
    return tw_transport_write(&pipe->s->base, data, len);
}

int tw_process_close_child_fd(tw_process_t *proc, int fd)
{
    pipe_t *pipe = proc_pipe(proc, fd, 0);
    if (!pipe)
        return -EBADF;
    tw_transport_lose_connection(&pipe->s->base);
    return 0;
}
