/* reactor-demo -- the reactor at work: timers, a worker thread calling into
 * the loop, signals, and a clean shutdown.
 *
 *   reactor-demo [SECONDS]     run for SECONDS (default: until Ctrl-C)
 *
 * Every second a repeating timer prints a tick.  A worker thread searches for
 * primes and hands each one to the loop with tw_call_from_thread, the one
 * thread-safe call.  SIGUSR1 prints statistics.  SIGINT or SIGTERM stops the
 * reactor; a shutdown trigger stops the worker; the program exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <twine.h>

static struct demo {
    tw_reactor_t *r;
    tw_timer_t tick;
    unsigned ticks;
    unsigned long primes, largest; /* touched only in the reactor thread */
    atomic_int quit;
    pthread_t worker;
} demo;

static void on_tick(tw_timer_t *t, void *arg)
{
    (void)arg;
    printf("tick %u: %lu primes found, the largest %lu\n", ++demo.ticks, demo.primes,
           demo.largest);
    fflush(stdout);
    tw_timer_start(t, TW_SEC(1));
}

/* Runs in the reactor thread. */
static void on_prime(tw_reactor_t *r, void *arg)
{
    (void)r;
    demo.primes++;
    demo.largest = (unsigned long)(uintptr_t)arg;
}

static void *worker_main(void *arg)
{
    (void)arg;
    for (uintptr_t n = 2; !atomic_load(&demo.quit); n++) {
        uintptr_t d = 2;
        while (d * d <= n && n % d)
            d++;
        if (d * d > n && tw_call_from_thread(demo.r, on_prime, (void *)n) != 0)
            break;
        if (n % 4096 == 0) { /* be a polite neighbour on a shared machine */
            struct timespec ts = { 0, 2000000 };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void on_usr1(tw_reactor_t *r, int signo, void *arg)
{
    (void)signo;
    (void)arg;
    printf("stats: %lu primes, %d delayed calls pending, backend %s\n", demo.primes,
           tw_reactor_timer_count(r), tw_reactor_backend_name());
    fflush(stdout);
}

static void on_startup(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    printf("twine reactor-demo running on the %s backend (pid %ld); "
           "Ctrl-C or SIGTERM stops it, SIGUSR1 prints stats\n",
           tw_reactor_backend_name(), (long)getpid());
    fflush(stdout);
}

static void on_shutdown(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    atomic_store(&demo.quit, 1);
    pthread_join(demo.worker, NULL);
    tw_timer_cancel(&demo.tick);
    printf("stopped after %u ticks: %lu primes, the largest %lu\n", demo.ticks, demo.primes,
           demo.largest);
}

static void on_deadline(tw_timer_t *t, void *arg)
{
    (void)t;
    tw_reactor_stop(arg);
}

int main(int argc, char **argv)
{
    int rc = tw_reactor_new(&demo.r);
    if (rc) {
        fprintf(stderr, "reactor-demo: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_timer_init(&demo.tick, demo.r, on_tick, NULL);
    tw_timer_start(&demo.tick, TW_SEC(1));
    if (argc > 1 && !tw_reactor_call_later(demo.r, tw_seconds(atof(argv[1])), on_deadline,
                                           demo.r))
        return 1;
    tw_reactor_on_signal(demo.r, SIGUSR1, on_usr1, NULL);
    tw_reactor_add_trigger(demo.r, TW_AFTER, TW_STARTUP, on_startup, NULL);
    tw_reactor_add_trigger(demo.r, TW_BEFORE, TW_SHUTDOWN, on_shutdown, NULL);
    if (pthread_create(&demo.worker, NULL, worker_main, NULL) != 0)
        return 1;

    rc = tw_reactor_run(demo.r, TW_RUN_SIGNALS); /* SIGINT/SIGTERM stop it */
    tw_reactor_free(demo.r);
    return rc == 0 ? 0 : 1;
}
