/* tw_process.h -- child processes as transports (Twisted's spawnProcess and
 * IProcessProtocol), process output helpers, and the program's own standard
 * input and output as a transport (Twisted's StandardIO).
 *
 * Lifetime, ownership and thread rules (read these first):
 *
 *  1. Everything here is reactor-thread-only.
 *  2. A process transport owns its process protocol from a successful
 *     tw_spawn_process() on.  The protocol's callbacks come in Twisted's
 *     order: connection_made once; child_data_received(fd, ...) any number
 *     of times; child_connection_lost(fd) once for each pipe as it closes;
 *     process_exited once, when the child has been reaped (it may come
 *     before or between the child_connection_lost calls); process_ended
 *     once, last, after the child is reaped *and* every pipe is closed; then
 *     destroy, which frees the protocol.  The tw_process_t stays valid until
 *     process_ended returns.  When tw_spawn_process() fails nothing is
 *     called and the protocol stays the caller's.
 *  3. Data passed to child_data_received is borrowed for the call.
 *  4. A process transport is a tw_transport_t: tw_transport_write and
 *     tw_transport_writev write to the child's fd 0 (with a stream's
 *     buffering, water marks, cap and producers -- tw_transport.h), and
 *     tw_transport_lose_connection closes every pipe (stdin after what is
 *     queued has been sent).  tw_transport_abort_connection closes them all
 *     now.  Neither signals the child.
 *  5. Exit: process_exited and process_ended receive the same status.  Its
 *     reason is NULL when the child exited with code 0 (Twisted's
 *     ProcessDone), else a failure of domain "process": TW_EPROCEXIT
 *     ("exited with code N"), TW_EPROCSIGNAL ("killed by signal N"), or the
 *     exec errno when the program could not be run (-ENOENT, -EACCES, ...:
 *     "exec /no/such: No such file or directory"); exit_code is then -1.
 *  6. Reaping never blocks and never touches children twine did not spawn:
 *     a pidfd per child on Linux (>= 5.3), else a SIGCHLD handler that calls
 *     waitpid() on the pids twine spawned, one by one -- never waitpid(-1).
 *     A user's own tw_reactor_on_signal(SIGCHLD) keeps working beside it.
 *     Freeing the reactor with children still running kills nothing; the
 *     children become the caller's (their pids are not reaped by twine).
 *  7. The child starts with only the descriptors it was given (the fd map;
 *     everything else is closed), every signal at its default disposition
 *     and an empty signal mask.
 */
#ifndef TW_PROCESS_H
#define TW_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tw_deferred.h"
#include "tw_reactor.h"
#include "tw_transport.h"

typedef struct tw_process tw_process_t;
typedef struct tw_process_protocol tw_process_protocol_t;

/* ---- how a child ended ------------------------------------------------ */

typedef struct tw_process_status {
    const tw_failure_t *reason; /* NULL: exited with code 0 */
    int exit_code;              /* the code it exited with, or -1 */
    int signal;                 /* the signal that killed it, or 0 */
    bool core_dumped;
} tw_process_status_t;

/* ---- the process protocol (Twisted's ProcessProtocol) ------------------ */

typedef struct tw_process_protocol_ops {
    /* The child is running; p->process is set.  Optional. */
    void (*connection_made)(tw_process_protocol_t *p, tw_process_t *proc);
    /* The child wrote `len` bytes on its descriptor fd (1 for stdout, 2 for
     * stderr, or any fd mapped TW_FD_READ).  Optional (data is dropped). */
    void (*child_data_received)(tw_process_protocol_t *p, int fd, const void *data,
                                size_t len);
    /* The pipe to or from child fd `fd` closed (by either side).  Optional. */
    void (*child_connection_lost)(tw_process_protocol_t *p, int fd);
    /* The child was reaped.  Optional. */
    void (*process_exited)(tw_process_protocol_t *p, const tw_process_status_t *st);
    /* The child was reaped and every pipe has closed; the last call.
     * Optional. */
    void (*process_ended)(tw_process_protocol_t *p, const tw_process_status_t *st);
    /* Free the protocol, right after process_ended.  Optional. */
    void (*destroy)(tw_process_protocol_t *p);
} tw_process_protocol_ops_t;

/* Embed first in your protocol struct; set ops. */
struct tw_process_protocol {
    const tw_process_protocol_ops_t *ops;
    tw_process_t *process; /* set before connection_made */
};

/* ---- spawning ---------------------------------------------------------- */

/* What a child descriptor is (Twisted's childFDs). */
typedef enum tw_child_fd_kind {
    TW_FD_READ = 1,   /* a pipe: the child writes, the parent reads ('r') */
    TW_FD_WRITE = 2,  /* a pipe: the parent writes, the child reads ('w') */
    TW_FD_INHERIT = 3, /* the parent's descriptor parent_fd, shared */
    TW_FD_DEVNULL = 4, /* /dev/null, opened read-write */
} tw_child_fd_kind_t;

typedef struct tw_child_fd {
    int child_fd;            /* the descriptor number in the child (>= 0) */
    tw_child_fd_kind_t kind;
    int parent_fd;           /* TW_FD_INHERIT only */
} tw_child_fd_t;

/* Option flags. */
#define TW_SPAWN_SETUID  0x01u /* switch to uid (needs privilege) */
#define TW_SPAWN_SETGID  0x02u /* switch to gid; supplementary groups are cleared */
#define TW_SPAWN_SETSID  0x04u /* a new session (setsid) */
#define TW_SPAWN_SETPGID 0x08u /* a new process group (setpgid(0, 0)) */
#define TW_SPAWN_PTY     0x10u /* a pseudo-terminal (Twisted's usePTY): see below */

typedef struct tw_spawn_options {
    char *const *env;         /* NULL-terminated "K=V" strings; NULL: inherit ours */
    const char *cwd;          /* NULL: ours */
    uid_t uid;                /* with TW_SPAWN_SETUID */
    gid_t gid;                /* with TW_SPAWN_SETGID */
    unsigned flags;           /* TW_SPAWN_* */
    const tw_child_fd_t *fds; /* the child's descriptors; NULL: the default map
                               * { 0: TW_FD_WRITE, 1: TW_FD_READ, 2: TW_FD_READ } */
    size_t nfds;
    /* With TW_SPAWN_PTY the fd map is ignored: the child runs in a new
     * session with the slave side of a new pseudo-terminal as its
     * controlling terminal and fds 0-2; the parent reads the master (data
     * arrives as fd 1) and writes to it (tw_transport_write); when the
     * master closes, child_connection_lost is called for fd 1 only.
     * pty_rows/pty_cols set the window size (0: leave the default). */
    unsigned short pty_rows, pty_cols;
} tw_spawn_options_t;

/* Start program `path` with argument vector argv (NULL-terminated; argv[0]
 * is the name the program sees) for protocol p, with options opt (NULL: all
 * defaults).  A path without '/' is searched for in PATH (of the child's
 * environment when opt->env sets one, else ours).  On success returns 0,
 * stores the transport in *out (may be NULL) and delivers connection_made
 * before returning.  A program that cannot be executed is not an error
 * here: it is reported through process_ended (rule 5).  Returns -EINVAL
 * (bad arguments or fd map), -EMFILE/-ENFILE/-ENOMEM/-EAGAIN (the
 * descriptors, memory or process could not be made), with nothing called. */
int tw_spawn_process(tw_reactor_t *r, tw_process_protocol_t *p, const char *path,
                     char *const argv[], const tw_spawn_options_t *opt, tw_process_t **out);

/* The transport (rule 4). */
tw_transport_t *tw_process_transport(tw_process_t *proc);

/* The child's pid (still returned after it exited). */
pid_t tw_process_pid(const tw_process_t *proc);

/* True once the child has been reaped. */
bool tw_process_exited(const tw_process_t *proc);

/* Send signal signo to the child (Twisted's signalProcess).  Returns 0,
 * -ESRCH once it has been reaped, or -errno from kill(2). */
int tw_process_signal(tw_process_t *proc, int signo);

/* Write to the pipe of child fd `fd` (a TW_FD_WRITE fd; 0 is what
 * tw_transport_write uses).  Returns as tw_transport_write, or -EBADF when fd
 * is not an open write pipe of this child. */
int tw_process_write_to_child(tw_process_t *proc, int fd, const void *data, size_t len);

/* Close the pipe of child fd `fd` (a write pipe after what is queued has
 * been sent).  child_connection_lost(fd) follows from the reactor.  Returns
 * 0 or -EBADF when there is no open pipe for fd. */
int tw_process_close_child_fd(tw_process_t *proc, int fd);

static inline int tw_process_close_stdin(tw_process_t *proc)
{
    return tw_process_close_child_fd(proc, 0);
}
static inline int tw_process_close_stdout(tw_process_t *proc)
{
    return tw_process_close_child_fd(proc, 1);
}
static inline int tw_process_close_stderr(tw_process_t *proc)
{
    return tw_process_close_child_fd(proc, 2);
}

/* ---- output helpers (Twisted's getProcessOutput / getProcessValue) ----- */

typedef struct tw_process_result {
    char *out;       /* what the child wrote on stdout, NUL-terminated */
    size_t out_len;
    char *err;       /* on stderr, NUL-terminated */
    size_t err_len;
    int exit_code;   /* -1 when killed by a signal */
    int signal;      /* 0 unless killed by a signal */
} tw_process_result_t;

/* Frees a tw_process_result_t (the Deferred's value destructor). */
void tw_process_result_free(void *res);

/* Run the program with stdin at /dev/null and collect its output.  Each
 * returns a Deferred (a reference), or NULL with errno set when it could
 * not be spawned.  opt may be NULL; its fd map and TW_SPAWN_PTY are
 * ignored.  Output is kept up to max_output bytes per stream (0: 64 MiB);
 * a child that writes more is killed (SIGKILL) and the Deferred errbacks
 * with -EFBIG.
 *
 *  output:           fires with the result once stdout and stderr have
 *                    closed and the child exited, whatever its exit code;
 *                    errbacks (domain "process", -EIO, "got stderr output")
 *                    if anything was written on stderr and errors_too is
 *                    false; with errors_too stderr is merged into out.
 *  value:            fires with the result (out and err discarded, empty).
 *  output_and_value: fires with the full result.
 *  An exec failure errbacks with the exec errno (as tw_process_status_t). */
tw_deferred_t *tw_get_process_output(tw_reactor_t *r, const char *path, char *const argv[],
                                     const tw_spawn_options_t *opt, bool errors_too,
                                     size_t max_output);
tw_deferred_t *tw_get_process_value(tw_reactor_t *r, const char *path, char *const argv[],
                                    const tw_spawn_options_t *opt);
tw_deferred_t *tw_get_process_output_and_value(tw_reactor_t *r, const char *path,
                                               char *const argv[],
                                               const tw_spawn_options_t *opt,
                                               size_t max_output);

/* ---- standard I/O as a transport (Twisted's StandardIO) ---------------- */

/* Connect protocol p to descriptors in_fd (read) and out_fd (written):
 * normally 0 and 1.  The protocol gets connection_made, data_received for
 * what arrives on in_fd, eof_received (or, when NULL, a lose) at its end,
 * and connection_lost once both sides are closed.  tw_transport_write
 * writes to out_fd with a stream's buffering.  The descriptors are set
 * non-blocking while in use (they are shared with the terminal or the
 * parent: their flags are restored when the transport closes) and are
 * closed at the end unless TW_STDIO_KEEP_OPEN is given.  Regular files
 * work too (read at once, written synchronously).  Returns 0 and the
 * transport in *out (may be NULL), or a negative code with nothing called
 * and p still the caller's. */
#define TW_STDIO_KEEP_OPEN 1u
int tw_stdio_open(tw_reactor_t *r, tw_protocol_t *p, int in_fd, int out_fd, unsigned flags,
                  tw_transport_t **out);

#endif
