/* error.c -- tw_strerror and failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_error.h"

const char *tw_strerror(int code)
{
    switch (code) {
    case 0: return "success";
    case TW_ENOTRUNNING: return "the reactor is not running";
    case TW_EALREADY: return "the reactor is already running";
    case TW_EFDSETSIZE: return "descriptor is at or above FD_SETSIZE: "
                               "the select backend cannot watch it (link another backend)";
    case TW_ENOTACTIVE: return "the delayed call already ran or was cancelled";
    case TW_ENOSIGSLOT: return "too many reactors are watching signals";
    case TW_EPROCEXIT: return "the process exited with a non-zero code";
    case TW_EPROCSIGNAL: return "the process was killed by a signal";
    default: break;
    }
    if (code > 0)
        return "success";
    if (code > -4096) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
        const char *s = strerrordesc_np(-code);
        return s ? s : "unknown system error";
#else
        return strerror(-code);
#endif
    }
    if (code <= TW_EHTTP_BASE && code > TW_EHTTP_BASE - 1000)
        return "HTTP parser error";
    if (code <= TW_ESSL_BASE && code > TW_ESSL_BASE - 1000)
        return "TLS error";
    if (code <= TW_EARES_BASE && code > TW_EARES_BASE - 1000)
        return "DNS resolver error";
    return "unknown error";
}

tw_failure_t *tw_failure_newv(const char *domain, int code, const char *fmt, va_list ap)
{
    tw_failure_t *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->domain = domain ? domain : "twine";
    f->code = code;
    if (fmt) {
        if (vasprintf(&f->message, fmt, ap) < 0)
            f->message = NULL;
    } else {
        f->message = strdup(tw_strerror(code));
    }
    if (!f->message) {
        free(f);
        return NULL;
    }
    return f;
}

tw_failure_t *tw_failure_new(const char *domain, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_failure_t *f = tw_failure_newv(domain, code, fmt, ap);
    va_end(ap);
    return f;
}

tw_failure_t *tw_failure_wrap(tw_failure_t *f, tw_failure_t *cause)
{
    if (!f) {
        tw_failure_free(cause);
        return NULL;
    }
    if (f->cause != cause) /* wrapping the cause it already has keeps it */
        tw_failure_free(f->cause);
    f->cause = cause;
    return f;
}

tw_failure_t *tw_failure_copy(const tw_failure_t *f)
{
    if (!f)
        return NULL;
    tw_failure_t *c = tw_failure_new(f->domain, f->code, "%s", f->message);
    if (c && f->cause && !(c->cause = tw_failure_copy(f->cause))) {
        tw_failure_free(c);
        return NULL;
    }
    return c;
}

void tw_failure_free(tw_failure_t *f)
{
    while (f) {
        tw_failure_t *cause = f->cause;
        free(f->message);
        free(f);
        f = cause;
    }
}
