/* dict-service -- the owner-thread pattern: one thread owns a table, the
 * others ask it to do things through a queue.
 *
 *   dict-service [CLIENTS [OPS]]      default 4 client threads, 20000 ops each
 *
 * From Alex Martelli's "Python Patterns of Concurrent Programming" (2007):
 * rather than put a lock around a shared dictionary, give it to one
 * dedicated thread -- the only one that ever reads or changes it -- and let
 * every other thread send that owner requests through a Queue, and wait for
 * a reply when there is one.  Here the table is a small string -> long hash
 * map, the request queue is a tw_thread_queue_t, and each request carries
 * its own reply slot (a mutex and a condition variable), so any number of
 * threads can wait for their replies at once.
 *
 * CLIENTS plain threads each make OPS random get / put / delete requests on
 * keys of their own ("c2:k17"), keep a private copy of what they expect the
 * table to hold for them, and check every reply against it.  The reactor
 * thread uses the service too, without ever blocking: every 20 ms a
 * LoopingCall asks for the table's size with tw_defer_to_thread (a pool
 * worker makes the request and waits for the reply; the Deferred brings the
 * answer back).  When a client is done it reports to the reactor thread with
 * tw_blocking_call_from_thread.  Once every client has reported, the reactor
 * thread checks the final size, closes the queue (the owner drains it and
 * exits), prints a summary and the program exits 0 -- or 1 if any reply was
 * wrong. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twine.h>
#include <tw_task.h>
#include <tw_thread.h>

#define KEYS_PER_CLIENT 64

/* ---- the table: touched by the owner thread only ------------------------------- */

typedef struct entry {
    struct entry *next;
    long value;
    char key[];
} entry_t;

typedef struct table {
    entry_t **buckets;
    size_t nbuckets, size;
} table_t;

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return h;
}

static entry_t **table_find(table_t *t, const char *key)
{
    entry_t **e = &t->buckets[hash(key) & (t->nbuckets - 1)];
    while (*e && strcmp((*e)->key, key) != 0)
        e = &(*e)->next;
    return e;
}

static int table_grow(table_t *t)
{
    size_t n = t->nbuckets * 2;
    entry_t **b = calloc(n, sizeof *b);
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (entry_t *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            entry_t **slot = &b[hash(e->key) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

static int table_put(table_t *t, const char *key, long value)
{
    entry_t **e = table_find(t, key);
    if (*e) {
        (*e)->value = value;
        return 0;
    }
    size_t len = strlen(key) + 1;
    entry_t *n = malloc(sizeof *n + len);
    if (!n)
        return -ENOMEM;
    memcpy(n->key, key, len);
    n->value = value;
    n->next = NULL;
    *e = n;
    if (++t->size > t->nbuckets)
        table_grow(t); /* if it fails the chains get longer, nothing worse */
    return 0;
}

static void table_free(table_t *t)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (entry_t *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(t->buckets);
}

/* ---- requests and the owner thread ------------------------------------------- */

typedef enum op { OP_GET, OP_PUT, OP_DEL, OP_LEN } op_t;

/* A request, on the asker's stack: the owner fills in the reply and signals
 * the slot; the asker waits on it.  Nothing is allocated per request. */
typedef struct request {
    op_t op;
    const char *key; /* borrowed until the reply */
    long value;
    /* the reply slot */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int status;      /* 0, or -ENOENT (get/delete of a missing key), -ENOMEM */
    long result;     /* get: the value; len: the size */
} request_t;

typedef struct service {
    tw_thread_queue_t *requests;
    pthread_t owner;
    table_t table;             /* the owner's alone */
    unsigned long served[4];   /* per op; read after the owner is joined */
} service_t;

static void *owner_main(void *arg)
{
    service_t *svc = arg;
    void *item;
    /* Until the queue is closed and drained. */
    while (tw_thread_queue_get(svc->requests, &item, TW_WAIT_FOREVER) == 0) {
        request_t *rq = item;
        table_t *t = &svc->table;
        entry_t **e;
        rq->status = 0;
        switch (rq->op) {
        case OP_GET:
            e = table_find(t, rq->key);
            if (*e)
                rq->result = (*e)->value;
            else
                rq->status = -ENOENT;
            break;
        case OP_PUT:
            rq->status = table_put(t, rq->key, rq->value);
            break;
        case OP_DEL:
            e = table_find(t, rq->key);
            if (*e) {
                entry_t *gone = *e;
                *e = gone->next;
                free(gone);
                t->size--;
            } else {
                rq->status = -ENOENT;
            }
            break;
        case OP_LEN:
            rq->result = (long)t->size;
            break;
        }
        svc->served[rq->op]++;
        pthread_mutex_lock(&rq->lock); /* the reply */
        rq->ready = true;
        pthread_cond_signal(&rq->cond);
        pthread_mutex_unlock(&rq->lock);
    }
    return NULL;
}

/* Any thread but the reactor's (it blocks): send a request, wait for its
 * reply.  Returns the status; *result gets the value of get and len. */
static int dict_call(service_t *svc, op_t op, const char *key, long value, long *result)
{
    request_t rq = { .op = op, .key = key, .value = value,
                     .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    int rc = tw_thread_queue_put(svc->requests, &rq, TW_WAIT_FOREVER);
    if (rc != 0)
        return rc; /* -EPIPE: the service is closed */
    pthread_mutex_lock(&rq.lock);
    while (!rq.ready)
        pthread_cond_wait(&rq.cond, &rq.lock);
    pthread_mutex_unlock(&rq.lock);
    pthread_cond_destroy(&rq.cond);
    pthread_mutex_destroy(&rq.lock);
    if (result)
        *result = rq.result;
    return rq.status;
}

/* ---- client threads ------------------------------------------------------------------ */

typedef struct client {
    int id, ops;
    service_t *svc;
    tw_reactor_t *r;
    pthread_t thread;
    long expect[KEYS_PER_CLIENT]; /* what the table holds for us; -1: absent */
    unsigned long gets, puts, dels, wrong;
    long keys_held;               /* present at the end */
} client_t;

static struct app {
    tw_reactor_t *r;
    service_t svc;
    client_t *clients;
    int nclients, reported;
    long size_checks, last_size;
    tw_looping_call_t ticker;
    bool stopping;
    int status;
} app;

/* Runs in the reactor thread, called by a client with
 * tw_blocking_call_from_thread: the client waits until it returns. */
static tw_outcome_t client_report(tw_reactor_t *r, void *arg)
{
    (void)r;
    client_t *c = arg;
    printf("client %d: %lu gets, %lu puts, %lu deletes, %lu wrong replies, %ld keys held\n",
           c->id, c->gets, c->puts, c->dels, c->wrong, c->keys_held);
    app.reported++;
    return TW_OK((void *)(uintptr_t)app.reported, NULL); /* the client learns its rank */
}

static void *client_main(void *arg)
{
    client_t *c = arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(c->id + 1); /* xorshift */
    char key[32];
    for (int k = 0; k < KEYS_PER_CLIENT; k++)
        c->expect[k] = -1;
    for (int i = 0; i < c->ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % KEYS_PER_CLIENT);
        snprintf(key, sizeof key, "c%d:k%d", c->id, k);
        long got = 0;
        int rc;
        switch ((x >> 32) % 4) {
        case 0:
        case 1: /* gets are the most common */
            c->gets++;
            rc = dict_call(c->svc, OP_GET, key, 0, &got);
            if (c->expect[k] < 0 ? rc != -ENOENT : rc != 0 || got != c->expect[k])
                c->wrong++;
            break;
        case 2:
            c->puts++;
            rc = dict_call(c->svc, OP_PUT, key, (long)i, NULL);
            if (rc == 0)
                c->expect[k] = i;
            else
                c->wrong++;
            break;
        default:
            c->dels++;
            rc = dict_call(c->svc, OP_DEL, key, 0, NULL);
            if (rc != (c->expect[k] < 0 ? -ENOENT : 0))
                c->wrong++;
            c->expect[k] = -1;
            break;
        }
    }
    for (int k = 0; k < KEYS_PER_CLIENT; k++)
        c->keys_held += c->expect[k] >= 0;
    tw_outcome_t o = tw_blocking_call_from_thread(c->r, client_report, c);
    if (o.kind != TW_OUTCOME_OK)
        c->wrong++;
    tw_outcome_discard(o);
    return NULL;
}

/* ---- the reactor thread: asks through the pool, never blocks ------------------ */

/* In a pool worker: this one may wait for the owner's reply. */
static tw_outcome_t size_work(void *arg)
{
    long n = 0;
    int rc = dict_call(arg, OP_LEN, NULL, 0, &n);
    if (rc != 0)
        return TW_FAIL(tw_failure_new("dict", rc, "len: %s", tw_strerror(rc)));
    return TW_OK((void *)(intptr_t)n, NULL);
}

static tw_outcome_t on_size(tw_outcome_t in, void *a1, void *a2)
{
    (void)a1, (void)a2;
    app.size_checks++;
    app.last_size = (long)(intptr_t)in.ptr;
    return TW_OK(NULL, NULL);
}

static tw_outcome_t on_final_size(tw_outcome_t in, void *a1, void *a2)
{
    (void)a1, (void)a2;
    long want = 0;
    for (int i = 0; i < app.nclients; i++)
        want += app.clients[i].keys_held;
    long got = (long)(intptr_t)in.ptr;
    app.size_checks++;
    printf("the table holds %ld keys; the clients expect %ld\n", got, want);
    if (got != want)
        app.status = 1;
    tw_reactor_stop(app.r);
    return TW_OK(NULL, NULL);
}

static tw_outcome_t on_size_failed(tw_outcome_t in, void *a1, void *a2)
{
    (void)a1, (void)a2;
    fprintf(stderr, "dict-service: %s\n", in.failure->message);
    tw_outcome_discard(in);
    app.status = 1;
    tw_reactor_stop(app.r);
    return TW_OK(NULL, NULL);
}

static int ask_size(tw_deferred_cb then)
{
    tw_deferred_t *d = tw_defer_to_thread(app.r, NULL, size_work, &app.svc);
    if (!d || tw_deferred_add_callbacks(d, then, on_size_failed, NULL, NULL, NULL) != 0)
        return -ENOMEM;
    tw_deferred_unref(d);
    return 0;
}

static int on_tick(tw_looping_call_t *lc, void *arg)
{
    (void)arg;
    if (app.reported < app.nclients)
        return ask_size(on_size);
    /* Every client is done: one last look, then stop. */
    tw_looping_call_stop(lc);
    return ask_size(on_final_size);
}

int main(int argc, char **argv)
{
    app.nclients = argc > 1 ? atoi(argv[1]) : 4;
    int ops = argc > 2 ? atoi(argv[2]) : 20000;
    if (app.nclients < 1 || app.nclients > 256 || ops < 0) {
        fprintf(stderr, "usage: dict-service [CLIENTS (1..256) [OPS]]\n");
        return 1;
    }
    int rc = tw_reactor_new(&app.r);
    if (rc) {
        fprintf(stderr, "dict-service: %s\n", tw_strerror(rc));
        return 1;
    }
    service_t *svc = &app.svc;
    svc->table.nbuckets = 16;
    svc->table.buckets = calloc(16, sizeof *svc->table.buckets);
    svc->requests = tw_thread_queue_new(64); /* a bounded queue: askers wait when full */
    app.clients = calloc((size_t)app.nclients, sizeof *app.clients);
    if (!svc->table.buckets || !svc->requests || !app.clients ||
        pthread_create(&svc->owner, NULL, owner_main, svc) != 0) {
        fprintf(stderr, "dict-service: cannot start\n");
        return 1;
    }
    for (int i = 0; i < app.nclients; i++) {
        client_t *c = &app.clients[i];
        *c = (client_t){ .id = i, .ops = ops, .svc = svc, .r = app.r };
        if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
            fprintf(stderr, "dict-service: cannot start client %d\n", i);
            return 1;
        }
    }
    printf("dict-service: %d clients x %d requests, %s backend\n", app.nclients, ops,
           tw_reactor_backend_name());

    tw_looping_call_init(&app.ticker, app.r, on_tick, NULL);
    tw_deferred_t *ticking = tw_looping_call_start(&app.ticker, TW_MSEC(20), false);
    rc = tw_reactor_run(app.r, TW_RUN_DEFAULT);
    tw_deferred_unref(ticking);

    /* The clients have reported (run does not return before), so they are
     * finishing; join them, then close the queue: the owner drains it and
     * exits. */
    unsigned long wrong = 0;
    for (int i = 0; i < app.nclients; i++) {
        pthread_join(app.clients[i].thread, NULL);
        wrong += app.clients[i].wrong;
    }
    tw_thread_queue_close(svc->requests);
    pthread_join(svc->owner, NULL);
    printf("served %lu gets, %lu puts, %lu deletes, %lu sizes (%ld of them for the reactor "
           "thread); %lu wrong replies\n",
           svc->served[OP_GET], svc->served[OP_PUT], svc->served[OP_DEL], svc->served[OP_LEN],
           app.size_checks, wrong);
    table_free(&svc->table);
    tw_thread_queue_free(svc->requests, NULL);
    tw_reactor_free(app.r); /* and with it the default thread pool */
    free(app.clients);
    return rc == 0 && app.status == 0 && wrong == 0 ? 0 : 1;
}
