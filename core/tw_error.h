/* tw_error.h -- error codes and failures.
 *
 * Every twine function that can fail returns an int: 0 (or a count) on
 * success, a negative code on failure.  System errors are -errno (-ENOMEM,
 * -EBADF, ...); twine's own conditions use the range below -20000, and later
 * modules map c-ares, OpenSSL and http-parser errors into their own ranges.
 * tw_strerror() turns any of them into a message.  When a function that takes
 * a callback returns an error, the callback is never called.
 *
 * Errors that happen later, away from any call (a connection reset, a DNS
 * timeout), arrive as a tw_failure_t: a domain ("tcp", "tls", "dns", ...),
 * the code, a readable message and an optional cause.
 *
 * Thread rules: everything here is safe to call from any thread.
 */
#ifndef TW_ERROR_H
#define TW_ERROR_H

#include <stdarg.h>

/* twine's own codes (-20000 .. -20999) */
#define TW_EBASE          (-20000)
#define TW_ENOTRUNNING    (-20001) /* the reactor is not running */
#define TW_EALREADY       (-20002) /* the reactor is already running */
#define TW_EFDSETSIZE     (-20003) /* fd >= FD_SETSIZE: the select backend cannot watch it */
#define TW_ENOTACTIVE     (-20004) /* the delayed call already ran or was cancelled */
#define TW_ENOSIGSLOT     (-20006) /* too many reactors watching signals at once */
#define TW_EPROCEXIT      (-20007) /* a child process exited with a non-zero code */
#define TW_EPROCSIGNAL    (-20008) /* a child process was killed by a signal */

/* Ranges reserved for the libraries later modules wrap. */
#define TW_EARES_BASE     (-21000) /* c-ares: TW_EARES_BASE - ares status */
#define TW_ESSL_BASE      (-22000) /* OpenSSL */
#define TW_EHTTP_BASE     (-23000) /* http-parser: TW_EHTTP_BASE - http_errno */

/* A message for any code this library returns, negative or zero.  Returns a
 * static string (never NULL, never freed by the caller); thread-safe. */
const char *tw_strerror(int code);

/* A failure: why something asynchronous did not succeed.
 *
 * Ownership: a failure is owned by whoever holds the pointer; handing it to a
 * function documented as "takes the failure" transfers it.  The message (and
 * the cause, if any) belong to the failure and go with it. */
typedef struct tw_failure {
    const char *domain;        /* static string: "reactor", "tcp", "dns", ... */
    int code;                  /* a twine error code, as above */
    char *message;             /* owned; human-readable, never NULL */
    struct tw_failure *cause;  /* owned; the failure this one wraps, or NULL */
} tw_failure_t;

/* A new failure with a printf-style message (NULL fmt: tw_strerror(code)).
 * `domain` must be a string that outlives the failure (a literal).  Returns
 * NULL only when memory is exhausted. */
tw_failure_t *tw_failure_new(const char *domain, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
tw_failure_t *tw_failure_newv(const char *domain, int code, const char *fmt, va_list ap);

/* Make `cause` the cause of `f` (f takes ownership of cause; an earlier cause
 * is freed).  Returns f. */
tw_failure_t *tw_failure_wrap(tw_failure_t *f, tw_failure_t *cause);

/* A deep copy, or NULL when memory is exhausted. */
tw_failure_t *tw_failure_copy(const tw_failure_t *f);

/* Free a failure and its chain of causes.  NULL is accepted. */
void tw_failure_free(tw_failure_t *f);

#endif
