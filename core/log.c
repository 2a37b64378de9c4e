/* log.c -- levels and a replaceable sink; stderr by default. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "tw_log.h"

static _Atomic int log_level = -1; /* -1: not read from the environment yet */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static tw_log_sink_cb log_sink; /* guarded by log_lock; NULL: stderr */
static void *log_arg;

static const char *const level_names[] = { "debug", "info", "warn", "error", "none" };

static int log_env_level(void)
{
    const char *e = getenv("TWINE_LOG");
    for (int i = 0; e && i <= TW_LOG_NONE; i++)
        if (strcasecmp(e, level_names[i]) == 0)
            return i;
    return TW_LOG_INFO;
}

tw_log_level_t tw_log_get_level(void)
{
    int l = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (l < 0) {
        int want = log_env_level();
        atomic_compare_exchange_strong(&log_level, &l, want);
        l = atomic_load(&log_level);
    }
    return (tw_log_level_t)l;
}

void tw_log_set_level(tw_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

void tw_log_set_sink(tw_log_sink_cb sink, void *arg)
{
    pthread_mutex_lock(&log_lock);
    log_sink = sink;
    log_arg = arg;
    pthread_mutex_unlock(&log_lock);
}

void tw_logv(tw_log_level_t level, const char *domain, const char *fmt, va_list ap)
{
    if (level < tw_log_get_level() || level >= TW_LOG_NONE)
        return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    pthread_mutex_lock(&log_lock);
    tw_log_sink_cb sink = log_sink;
    void *arg = log_arg;
    pthread_mutex_unlock(&log_lock);
    if (sink)
        sink(level, domain, buf, arg);
    else
        fprintf(stderr, "twine %s [%s] %s\n", level_names[level], domain, buf);
}

void tw_log(tw_log_level_t level, const char *domain, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_logv(level, domain, fmt, ap);
    va_end(ap);
}
