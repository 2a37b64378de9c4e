/* threads -- CPU work on a thread pool while the loop keeps serving.
 *
 *   threads [ENDPOINT [RANGES]]   default tcp:0:interface=127.0.0.1, 16 ranges
 *
 * Counts the primes below RANGES x 250,000, one range of 250,000 numbers per
 * piece of work, with tw_defer_to_thread on a pool of one thread per CPU.
 * Each result is printed as its Deferred fires in the reactor thread, and
 * each worker reports, halfway through its range, with tw_call_from_thread.
 *
 * Meanwhile the loop keeps serving: an echo server listens on ENDPOINT
 * (any server endpoint string; try `nc` on the port it prints), a client of
 * our own is connected to it, and a LoopingCall sends a line through it
 * every 50 ms and prints how far the work has got.
 *
 * When every range is in, it prints the total (and checks it, for the
 * default 16 ranges: there are 283,146 primes below 4,000,000), closes the
 * connections, and exits 0 once every echoed byte has come back.  Exit 1 on
 * an error, a wrong count, or after 60 s. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <twine.h>
#include <tw_endpoint.h>
#include <tw_task.h>
#include <tw_thread.h>
#include <tw_wire.h>

#define RANGE 250000

typedef struct range {
    tw_reactor_t *r;
    uint64_t lo, hi; /* [lo, hi) */
    int index;
    bool halfway;    /* reactor thread: the worker said so */
} range_t;

static struct app {
    tw_reactor_t *r;
    tw_threadpool_t *pool;
    range_t *ranges;
    int nranges, done, failed, out_of_order;
    uint64_t primes;
    tw_looping_call_t ticker;
    tw_wire_factory_t echo;       /* the server side */
    tw_listener_t *listener;
    tw_factory_t client_factory;  /* our own client */
    tw_connector_t *connector;
    tw_transport_t *client;       /* while connected */
    size_t sent, echoed;
    int ticks, status;
} app = { .status = 1 };

/* ---- the work: in a pool thread -------------------------------------------- */

static bool is_prime(uint64_t n)
{
    if (n < 2)
        return false;
    if (n % 2 == 0)
        return n == 2;
    for (uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return false;
    return true;
}

/* Runs in the reactor thread, sent by a worker. */
static void on_halfway(tw_reactor_t *r, void *arg)
{
    (void)r;
    range_t *rg = arg;
    rg->halfway = true;
    printf("  range %2d: halfway\n", rg->index);
}

/* Runs in a worker: it must not touch the reactor, except through
 * tw_call_from_thread.  The range is read-only here. */
static tw_outcome_t count_primes(void *arg)
{
    range_t *rg = arg;
    uint64_t count = 0, mid = rg->lo + (rg->hi - rg->lo) / 2;
    for (uint64_t n = rg->lo; n < rg->hi; n++) {
        if (n == mid)
            tw_call_from_thread(rg->r, on_halfway, rg);
        count += is_prime(n);
    }
    return TW_OK((void *)(uintptr_t)count, NULL);
}

/* ---- results: in the reactor thread ------------------------------------------ */

static void finish(void);

static tw_outcome_t on_count(tw_outcome_t in, void *a1, void *a2)
{
    (void)a2;
    range_t *rg = a1;
    uint64_t n = (uint64_t)(uintptr_t)in.ptr;
    app.primes += n;
    printf("  range %2d: [%8llu, %8llu) has %5llu primes\n", rg->index,
           (unsigned long long)rg->lo, (unsigned long long)rg->hi, (unsigned long long)n);
    if (!rg->halfway) /* the worker's call was made first, so it runs first */
        app.out_of_order++;
    if (++app.done == app.nranges)
        finish();
    return TW_OK(NULL, NULL);
}

static tw_outcome_t on_failure(tw_outcome_t in, void *a1, void *a2)
{
    (void)a2;
    range_t *rg = a1;
    fprintf(stderr, "threads: range %d failed: %s\n", rg->index, in.failure->message);
    tw_outcome_discard(in);
    app.failed++;
    if (++app.done == app.nranges)
        finish();
    return TW_OK(NULL, NULL);
}

/* Every result is in: check, then close the connections (the ticker stops
 * the loop once they are gone). */
static void finish(void)
{
    uint64_t below = (uint64_t)app.nranges * RANGE;
    printf("%llu primes below %llu (%d ticks while the pool worked)\n",
           (unsigned long long)app.primes, (unsigned long long)below, app.ticks);
    bool right = app.failed == 0 && app.out_of_order == 0 &&
                 (app.nranges != 16 || app.primes == 283146);
    if (!right)
        fprintf(stderr, "threads: wrong result (%d failed, %d before their report)\n",
                app.failed, app.out_of_order);
    app.status = right ? 0 : 1;
    if (app.client)
        tw_transport_lose_connection(app.client);
    if (app.listener)
        tw_listener_close(app.listener);
    app.listener = NULL;
}

/* ---- the client of our own echo server -------------------------------------- */

static tw_protocol_t client_proto;

static void client_made(tw_protocol_t *p, tw_transport_t *t)
{
    (void)p;
    app.client = t;
}

static void client_data(tw_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data;
    app.echoed += len;
}

static void client_lost(tw_protocol_t *p, const tw_failure_t *why)
{
    (void)p;
    if (why && app.listener) /* before finish() closed it: unexpected */
        fprintf(stderr, "threads: echo client: %s\n", why->message);
    app.client = NULL;
}

static const tw_protocol_ops_t client_ops = {
    .connection_made = client_made,
    .data_received = client_data,
    .connection_lost = client_lost,
};

static tw_protocol_t *client_build(tw_factory_t *f, const struct sockaddr *a, socklen_t len)
{
    (void)f, (void)a, (void)len;
    client_proto.ops = &client_ops;
    return &client_proto;
}

static void client_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *why)
{
    (void)f, (void)c;
    fprintf(stderr, "threads: cannot connect to our own server: %s\n", why->message);
    app.status = 1;
    tw_reactor_stop(app.r);
}

static const tw_factory_ops_t client_factory_ops = { .build_protocol = client_build,
                                                     .connection_failed = client_failed };

/* The client endpoint for the server we listen on. */
static int client_endpoint(const char *server, char *buf, size_t len)
{
    tw_endpoint_t ep;
    char err[128];
    if (tw_endpoint_parse_server(server, &ep, err, sizeof err) != 0)
        return -1;
    if (ep.kind == TW_ENDPOINT_UNIX)
        return snprintf(buf, len, "unix:%s", ep.path) < (int)len ? 0 : -1;
    const char *host = ep.host;
    if (!host[0] || !strcmp(host, "0.0.0.0"))
        host = "127.0.0.1";
    else if (!strcmp(host, "::"))
        host = "::1";
    int n = strchr(host, ':')
                ? snprintf(buf, len, "tcp:host=[%s]:port=%d", host, tw_listener_port(app.listener))
                : snprintf(buf, len, "tcp:host=%s:port=%d", host, tw_listener_port(app.listener));
    return n < (int)len ? 0 : -1;
}

/* ---- the ticker ----------------------------------------------------------------- */

static int on_tick(tw_looping_call_t *lc, void *arg)
{
    (void)lc, (void)arg;
    app.ticks++;
    if (app.done < app.nranges) {
        tw_threadpool_stats_t st;
        tw_threadpool_stats(app.pool, &st);
        printf("tick %3d: %d/%d ranges done, %zu running, %zu queued; echoed %zu/%zu bytes\n",
               app.ticks, app.done, app.nranges, st.running, st.queued, app.echoed, app.sent);
        if (app.client) {
            char line[32];
            int n = snprintf(line, sizeof line, "tick %d\n", app.ticks);
            if (tw_transport_write(app.client, line, (size_t)n) == 0)
                app.sent += (size_t)n;
        }
    } else if (tw_factory_connection_count(&app.echo.base) == 0 && !app.client) {
        if (app.echoed != app.sent) {
            fprintf(stderr, "threads: %zu bytes sent, %zu echoed\n", app.sent, app.echoed);
            app.status = 1;
        }
        tw_reactor_stop(app.r); /* everything is closed */
    }
    if (app.ticks > 1200) { /* 60 s */
        fprintf(stderr, "threads: giving up after 60 s\n");
        app.status = 1;
        tw_reactor_stop(app.r);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "tcp:0:interface=127.0.0.1";
    app.nranges = argc > 2 ? atoi(argv[2]) : 16;
    if (app.nranges < 1 || app.nranges > 4000) {
        fprintf(stderr, "usage: threads [ENDPOINT [RANGES (1..4000)]]\n");
        return 1;
    }
    char err[256], client_ep[256];
    int rc = tw_reactor_new(&app.r);
    if (rc) {
        fprintf(stderr, "threads: %s\n", tw_strerror(rc));
        return 1;
    }

    /* CPU-bound work: as many threads as CPUs; more would only queue. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    tw_threadpool_options_t opt = { .max_threads = cpus > 0 ? (int)cpus : 2, .name = "primes" };
    app.pool = tw_threadpool_new(app.r, &opt);
    app.ranges = calloc((size_t)app.nranges, sizeof *app.ranges);
    if (!app.pool || !app.ranges) {
        fprintf(stderr, "threads: out of memory\n");
        return 1;
    }

    tw_wire_echo_factory_init(&app.echo);
    rc = tw_endpoint_listen(app.r, where, &app.echo.base, &app.listener, err, sizeof err);
    if (rc) {
        fprintf(stderr, "threads: %s\n", err);
        return 1;
    }
    app.client_factory.ops = &client_factory_ops;
    if (client_endpoint(where, client_ep, sizeof client_ep) != 0 ||
        tw_endpoint_connect(app.r, client_ep, &app.client_factory, &app.connector, err,
                            sizeof err) != 0) {
        fprintf(stderr, "threads: cannot connect to %s: %s\n", client_ep, err);
        return 1;
    }
    printf("threads: echo server on %s (port %d), %s backend; %d ranges on %d threads\n", where,
           tw_listener_port(app.listener), tw_reactor_backend_name(), app.nranges,
           opt.max_threads);

    for (int i = 0; i < app.nranges; i++) {
        range_t *rg = &app.ranges[i];
        *rg = (range_t){ .r = app.r, .lo = (uint64_t)i * RANGE, .hi = (uint64_t)(i + 1) * RANGE,
                         .index = i };
        tw_deferred_t *d = tw_defer_to_thread(app.r, app.pool, count_primes, rg);
        if (!d || tw_deferred_add_callbacks(d, on_count, on_failure, rg, NULL, NULL) != 0) {
            fprintf(stderr, "threads: cannot submit work\n");
            return 1;
        }
        tw_deferred_unref(d); /* the pool keeps its own reference until it fires */
    }

    tw_looping_call_init(&app.ticker, app.r, on_tick, NULL);
    tw_deferred_t *ticking = tw_looping_call_start(&app.ticker, TW_MSEC(50), false);
    rc = tw_reactor_run(app.r, TW_RUN_SIGNALS);
    if (tw_looping_call_running(&app.ticker))
        tw_looping_call_stop(&app.ticker);
    tw_deferred_unref(ticking);
    /* After Ctrl-C, work is still queued or running: freeing the pool
     * cancels the one and waits for the other, firing their Deferreds. */
    tw_threadpool_free(app.pool);
    tw_connector_free(app.connector);
    tw_listener_close(app.listener);
    app.listener = NULL;
    tw_reactor_iterate(app.r, 0); /* closes finish from the loop */
    tw_reactor_free(app.r);
    free(app.ranges);
    return rc == 0 ? app.status : 1;
}
