/* loopback.c -- two protocols connected in memory (tw_loopback.h).
 *
 * Each side is a string transport whose peer does not read: its captured
 * output is exactly what it has queued for the other side.  A pump copies
 * at most `chunk` bytes of it into a scratch buffer (the sender may write
 * again while the receiver runs), feeds them to the other side, then
 * consumes and drains them on the sender, which is what moves its
 * producer, its pending lose and its pending half-close along. */
#define _GNU_SOURCE
#include "tw_loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tw_loopback {
    tw_string_transport_t *side[2]; /* 0: the client, 1: the server */
    bool eof_sent[2];  /* side i's half-close (FIN) reached the other side */
    bool gone_told[2]; /* the other side learnt that side i ended */
    bool pumping;
    bool auto_on;
    size_t chunk;
    char *scratch;     /* chunk bytes */
    tw_timer_t timer;  /* automatic pumping */
};

/* ---- pumping ------------------------------------------------------------ */

/* Deliver up to n of what side `from` has queued.  Returns whether anything
 * moved (delivered or dropped). */
static bool loopback_deliver(tw_loopback_t *lb, int from, size_t n)
{
    tw_string_transport_t *a = lb->side[from], *b = lb->side[!from];
    size_t pending = tw_string_transport_len(a);
    if (n > pending)
        n = pending;
    if (!n)
        return false;
    if (a->closing) { /* aborted, or disconnected by force: nothing more leaves */
        tw_string_transport_consume(a, SIZE_MAX);
        return true;
    }
    memcpy(lb->scratch, tw_string_transport_value(a, NULL), n);
    int rc = tw_string_transport_feed(b, lb->scratch, n);
    if (rc == -EAGAIN)
        return false; /* b does not read now: a's queue stays, and grows */
    if (rc < 0)
        n = SIZE_MAX; /* b reads no more: what a sends is lost */
    tw_string_transport_consume(a, n);
    tw_string_transport_drain(a, n);
    return true;
}

static void loopback_reset(tw_string_transport_t *b)
{
    tw_failure_t *f = tw_failure_new(b->domain, -ECONNRESET, "connection reset by peer");
    if (f) {
        tw_string_transport_disconnect(b, f);
        tw_failure_free(f);
    } else {
        tw_string_transport_disconnect(b, NULL);
    }
}

/* Tell the other side what became of side i: its FIN (once the other side
 * reads again, if it paused: a FIN comes in order with the data), or its
 * end (a reset at once). */
static bool loopback_propagate(tw_loopback_t *lb, int i)
{
    tw_string_transport_t *a = lb->side[i], *b = lb->side[!i];
    bool moved = false;
    if (!lb->eof_sent[i] && a->write_shut && !tw_string_transport_len(a)) {
        if (tw_string_transport_feed_eof(b) == -EAGAIN)
            return false;
        lb->eof_sent[i] = moved = true;
    }
    if (lb->gone_told[i] || !a->closing)
        return moved;
    if (b->closing) { /* b is ending on its own: its reason stands */
        lb->gone_told[i] = true;
        return moved;
    }
    if (a->close_code) {
        loopback_reset(b);
    } else if (!lb->eof_sent[i]) {
        if (tw_string_transport_feed_eof(b) == -EAGAIN)
            return moved;
        lb->eof_sent[i] = true;
    }
    lb->gone_told[i] = true;
    tw_string_transport_disconnect(b, NULL); /* done already after a reset */
    return true;
}

static bool loopback_settle(tw_loopback_t *lb)
{
    bool moved = tw_string_transport_settle(lb->side[0]) > 0;
    return tw_string_transport_settle(lb->side[1]) > 0 || moved;
}

bool tw_loopback_pump(tw_loopback_t *lb)
{
    if (lb->pumping)
        return false;
    lb->pumping = true;
    /* What each side had queued when the pump began: a reply written while
     * receiving waits for the next pump, as in Twisted's IOPump. */
    size_t n[2];
    for (int i = 0; i < 2; i++) {
        n[i] = tw_string_transport_len(lb->side[i]);
        n[i] = n[i] < lb->chunk ? n[i] : lb->chunk;
    }
    bool moved = loopback_deliver(lb, 0, n[0]);
    moved = loopback_deliver(lb, 1, n[1]) || moved;
    moved = loopback_settle(lb) || moved; /* the side that ended goes first */
    moved = loopback_propagate(lb, 0) || moved;
    moved = loopback_propagate(lb, 1) || moved;
    moved = loopback_settle(lb) || moved;
    lb->pumping = false;
    return moved;
}

int tw_loopback_pump_all(tw_loopback_t *lb)
{
    int n = 0;
    for (int i = 0; i < TW_LOOPBACK_PUMP_MAX; i++) {
        if (!tw_loopback_pump(lb))
            return n;
        n++;
    }
    return -EAGAIN;
}

/* ---- automatic pumping ---------------------------------------------------- */

static void loopback_timer_cb(tw_timer_t *timer, void *arg)
{
    tw_loopback_t *lb = arg;
    if (tw_loopback_pump(lb) && lb->auto_on)
        tw_timer_start(timer, 0);
}

static void loopback_activity(tw_string_transport_t *t, void *arg)
{
    (void)t;
    tw_loopback_t *lb = arg;
    if (lb->auto_on && !tw_timer_active(&lb->timer))
        tw_timer_start(&lb->timer, 0);
}

int tw_loopback_start_auto(tw_loopback_t *lb)
{
    if (!lb->side[0]->base.reactor)
        return -EINVAL;
    lb->auto_on = true;
    return tw_timer_start(&lb->timer, 0);
}

void tw_loopback_stop_auto(tw_loopback_t *lb)
{
    lb->auto_on = false;
    tw_timer_cancel(&lb->timer);
}

/* ---- making and freeing ------------------------------------------------------ */

static void loopback_addr(struct sockaddr_in *sin, uint16_t port)
{
    *sin = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port) };
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void loopback_setup(tw_loopback_t *lb, int i)
{
    tw_string_transport_t *t = lb->side[i];
    struct sockaddr_in client, server;
    loopback_addr(&client, 54321);
    loopback_addr(&server, 12345);
    tw_string_transport_set_peer_reading(t, false);
    tw_string_transport_on_activity(t, loopback_activity, lb);
    tw_string_transport_set_host_address(t, (struct sockaddr *)(i ? &server : &client),
                                         sizeof client);
    tw_string_transport_set_peer_address(t, (struct sockaddr *)(i ? &client : &server),
                                         sizeof client);
}

tw_loopback_t *tw_loopback_new(tw_reactor_t *r, tw_protocol_t *client, tw_protocol_t *server)
{
    tw_loopback_t *lb = calloc(1, sizeof *lb);
    char *scratch = malloc(TW_READ_BUFFER_SIZE);
    if (!lb || !scratch) {
        free(lb);
        free(scratch);
        if (client->ops->destroy)
            client->ops->destroy(client);
        if (server->ops->destroy)
            server->ops->destroy(server);
        return NULL;
    }
    lb->scratch = scratch;
    lb->chunk = TW_READ_BUFFER_SIZE;
    lb->side[0] = tw_string_transport_alloc(r, client); /* destroys client on failure */
    lb->side[1] = lb->side[0] ? tw_string_transport_alloc(r, server) : NULL;
    if (!lb->side[1]) {
        if (!lb->side[0] && server->ops->destroy)
            server->ops->destroy(server);
        tw_string_transport_free(lb->side[0]); /* never made: destroy alone */
        free(scratch);
        free(lb);
        return NULL;
    }
    tw_timer_init(&lb->timer, r, loopback_timer_cb, lb);
    loopback_setup(lb, 0);
    loopback_setup(lb, 1);
    tw_string_transport_make_connection(lb->side[1]);
    tw_string_transport_make_connection(lb->side[0]);
    return lb;
}

void tw_loopback_free(tw_loopback_t *lb)
{
    if (!lb)
        return;
    tw_loopback_stop_auto(lb);
    tw_string_transport_free(lb->side[0]);
    tw_string_transport_free(lb->side[1]);
    free(lb->scratch);
    free(lb);
}

tw_string_transport_t *tw_loopback_client(tw_loopback_t *lb)
{
    return lb->side[0];
}

tw_string_transport_t *tw_loopback_server(tw_loopback_t *lb)
{
    return lb->side[1];
}

int tw_loopback_set_chunk(tw_loopback_t *lb, size_t chunk)
{
    if (!chunk)
        return -EINVAL;
    char *n = realloc(lb->scratch, chunk);
    if (!n)
        return -ENOMEM;
    lb->scratch = n;
    lb->chunk = chunk;
    return 0;
}
