/* tw_portforward.h -- a TCP (or UNIX) port forwarder: every connection
 * accepted is joined to a new outgoing connection, and bytes flow both ways
 * (Twisted's twisted.protocols.portforward: ProxyFactory, ProxyServer,
 * ProxyClient).
 *
 *   tw_proxy_server_factory_t fwd;
 *   tw_proxy_server_factory_init(&fwd, r, "tcp:host=127.0.0.1:port=8000");
 *   tw_endpoint_listen(r, "tcp:9000", &fwd.base, &listener, err, sizeof err);
 *
 * What each pair of connections does:
 *  - the incoming connection is not read until the outgoing one is made
 *    (bytes wait in the kernel); if the outgoing connection fails, the
 *    incoming one is closed, with the failure as its reason;
 *  - each side's reading side is registered as a streaming producer on the
 *    other side's transport (tw_transport_register_producer): when one peer
 *    reads slowly and its queue passes the high water mark, the other peer
 *    stops being read until the queue drains.  Memory per pair stays under
 *    a high water mark plus one read on each side, whatever the peers do;
 *  - a half-close is passed on: when one peer shuts its sending side, the
 *    other side's sending side is shut once what is queued for it is sent,
 *    and answers still flow back; the pair ends when both directions have
 *    ended;
 *  - when one side's connection ends (closed, reset, aborted), the other is
 *    lost after sending what is queued for it.
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. The factory belongs to the caller, who keeps it alive while a listener
 *     or connection uses it, as for every tw_factory_t.  It holds no memory:
 *     there is nothing to free.  Each pair of connections owns its state,
 *     freed when both connections (and the connection attempt) are gone.
 *  2. tw_factory_connection_count / tw_factory_lose_connections on
 *     &f->base see the incoming connections; losing one loses its outgoing
 *     partner in turn.
 *  3. Reactor-thread-only.
 */
#ifndef TW_PORTFORWARD_H
#define TW_PORTFORWARD_H

#include "tw_endpoint.h"
#include "tw_reactor.h"
#include "tw_transport.h"

/* Called when a pair is joined, right after the outgoing connection is
 * made and before any byte flows: both transports are borrowed, valid until
 * their protocols' connection_lost (use it to set water marks, options, or
 * to log).  Optional. */
typedef void (*tw_proxy_connected_cb)(tw_transport_t *incoming, tw_transport_t *outgoing,
                                      void *arg);

typedef struct tw_proxy_server_factory {
    tw_factory_t base;      /* first: a tw_proxy_server_factory_t * is a tw_factory_t * */
    tw_reactor_t *reactor;
    char endpoint[TW_ENDPOINT_FORMAT_MAX]; /* where to connect: a client endpoint string */
    tw_proxy_connected_cb connected;       /* may be set after init */
    void *arg;
    int failures;           /* read-only: outgoing connections that could not be made */
} tw_proxy_server_factory_t;

/* Make `f` forward every connection it is given to the client endpoint
 * `connect_endpoint` (tw_endpoint.h: "tcp:HOST:PORT", "tcp:host=H:port=P:
 * timeout=5", "unix:/path"; copied).  Returns 0, or -EINVAL when r is NULL
 * or the endpoint does not parse (tw_endpoint_parse_client says why), or
 * -ENAMETOOLONG when it is longer than TW_ENDPOINT_FORMAT_MAX - 1. */
int tw_proxy_server_factory_init(tw_proxy_server_factory_t *f, tw_reactor_t *r,
                                 const char *connect_endpoint);

#endif
