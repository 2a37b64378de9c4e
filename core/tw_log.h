/* tw_log.h -- the library's logging.
 *
 * twine never prints on its own: what it has to say (an accept loop that ran
 * out of descriptors, an unhandled failure) goes through tw_log(), which
 * passes messages at or above the current level to a sink.  The default sink
 * writes one line per message to stderr.
 *
 * Thread rules: the level and sink are process-wide.  tw_log() may be called
 * from any thread; the sink must then be thread-safe (the default is).  Set
 * the sink before starting threads that log.
 */
#ifndef TW_LOG_H
#define TW_LOG_H

#include <stdarg.h>

typedef enum tw_log_level {
    TW_LOG_DEBUG = 0,
    TW_LOG_INFO  = 1,
    TW_LOG_WARN  = 2,
    TW_LOG_ERROR = 3,
    TW_LOG_NONE  = 4, /* as a level: log nothing */
} tw_log_level_t;

/* A sink receives the level, the module ("reactor", "tcp", ...) and the
 * formatted message without a trailing newline; `msg` is borrowed for the
 * call. */
typedef void (*tw_log_sink_cb)(tw_log_level_t level, const char *domain, const char *msg,
                               void *arg);

/* Messages below `level` are dropped (default TW_LOG_INFO, or the value of
 * the TWINE_LOG environment variable: debug, info, warn, error, none). */
void tw_log_set_level(tw_log_level_t level);
tw_log_level_t tw_log_get_level(void);

/* Replace the sink; NULL restores the stderr sink.  `arg` is passed back. */
void tw_log_set_sink(tw_log_sink_cb sink, void *arg);

/* Log a message.  Cheap when the level is filtered out. */
void tw_log(tw_log_level_t level, const char *domain, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tw_logv(tw_log_level_t level, const char *domain, const char *fmt, va_list ap);

#endif
