/* tw_tcp.h -- TCP and UNIX stream sockets: listen and connect.
 *
 * Lifetime rules:
 *  1. A listener belongs to the caller from tw_tcp_listen / tw_unix_listen
 *     until tw_listener_close, which stops listening at once (the connections
 *     it accepted live on; each owns itself and goes when it closes).
 *  2. A connector belongs to the caller from tw_tcp_connect / tw_unix_connect
 *     until tw_connector_free.  It makes one connection attempt at a time:
 *     the factory hears started_connecting, then either connection_failed or
 *     (after the protocol's connection_lost) connection_lost.  From those
 *     callbacks the factory may call tw_connector_connect to try again (the
 *     reconnecting factory does).  tw_connector_free may be called from any
 *     callback; an attempt in progress is cancelled and a connection it made
 *     is aborted.
 *  3. Descriptors are non-blocking and close-on-exec from birth; TCP_NODELAY
 *     is on for every TCP connection; SIGPIPE never fires (MSG_NOSIGNAL).
 *  4. Reactor-thread-only.  Errors: 0 or a negative code; asynchronous ones
 *     as a tw_failure_t in domain "tcp" or "unix".
 */
#ifndef TW_TCP_H
#define TW_TCP_H

#include <stdbool.h>
#include <sys/socket.h>

#include "tw_reactor.h"
#include "tw_transport.h"

typedef struct tw_listener tw_listener_t;

typedef struct tw_tcp_listen_opts {
    const char *interface; /* a literal IPv4 or IPv6 address; NULL: all interfaces */
    int port;              /* 0: the kernel picks one (see tw_listener_port) */
    int backlog;           /* 0: 128 */
    int family;            /* AF_INET, AF_INET6, or 0: from `interface` (IPv4 if NULL) */
    bool v6only;           /* IPv6 only (IPV6_V6ONLY); else dual-stack on "::" */
    bool reuseport;        /* SO_REUSEPORT: several listeners share the port */
} tw_tcp_listen_opts_t;

/* Listen for TCP connections; each accepted one gets a protocol from
 * f->ops->build_protocol.  Returns 0 and the listener in *out, or a negative
 * code: -EINVAL (bad address), -EADDRINUSE, -EACCES, -EMFILE, ...  When the
 * process runs out of descriptors, the listener sheds pending connections
 * (accepting and closing them with a reserved descriptor), logs once per
 * episode, and accepts again as soon as descriptors are free: it never spins
 * and never stalls the loop. */
int tw_tcp_listen(tw_reactor_t *r, tw_factory_t *f, const tw_tcp_listen_opts_t *o,
                  tw_listener_t **out);

typedef struct tw_unix_listen_opts {
    const char *path; /* filesystem path; on Linux "@name" is the abstract name "name" */
    int mode;         /* chmod the socket file to this (e.g. 0660); 0: leave it */
    int backlog;      /* 0: 128 */
} tw_unix_listen_opts_t;

/* Listen on a UNIX stream socket.  A stale socket file left by a process
 * that died (nobody accepts on it) is removed first; a live one gives
 * -EADDRINUSE, and any other file at the path -EEXIST.  The file is removed
 * again by tw_listener_close. */
int tw_unix_listen(tw_reactor_t *r, tw_factory_t *f, const tw_unix_listen_opts_t *o,
                   tw_listener_t **out);

/* Stop listening, close the socket (and remove the UNIX socket file), free
 * the listener.  Connections already accepted are not touched.  NULL is
 * accepted. */
void tw_listener_close(tw_listener_t *l);

/* The bound TCP port (useful after port 0), or -1 for UNIX listeners. */
int tw_listener_port(const tw_listener_t *l);

/* The listening address.  Returns 0 or -errno. */
int tw_listener_address(const tw_listener_t *l, struct sockaddr_storage *ss, socklen_t *len);

/* ---- clients ---------------------------------------------------------- */

typedef struct tw_tcp_connect_opts {
    const char *host;         /* a literal IPv4 or IPv6 address (names: DNS issue) */
    int port;
    tw_time_t timeout;        /* 0: 30 s; TW_TIME_MAX: none */
    const char *bind_address; /* local address to bind first, or NULL */
    int bind_port;            /* with bind_address; 0: any */
} tw_tcp_connect_opts_t;

/* Start connecting; the attempt's outcome reaches the factory (see the
 * lifetime rules).  Returns 0 and the connector in *out, or a negative code
 * for what can be known at once (-EINVAL for a malformed address or a host
 * name, which needs the DNS module).  A refused or timed-out attempt is
 * reported later to connection_failed, in domain "tcp", with -ECONNREFUSED
 * or -ETIMEDOUT. */
int tw_tcp_connect(tw_reactor_t *r, tw_factory_t *f, const tw_tcp_connect_opts_t *o,
                   tw_connector_t **out);

/* The same for a UNIX socket path ("@name": abstract, Linux). */
int tw_unix_connect(tw_reactor_t *r, tw_factory_t *f, const char *path, tw_time_t timeout,
                    tw_connector_t **out);

/* Make a new attempt (after connection_failed or connection_lost).  Returns
 * 0, or -EBUSY while an attempt or a connection is in progress. */
int tw_connector_connect(tw_connector_t *c);

/* Cancel an attempt in progress: connection_failed is called, with
 * -ECANCELED, before this returns.  A connection already made is left
 * alone. */
void tw_connector_stop_connecting(tw_connector_t *c);

/* The connected transport, or NULL. */
tw_transport_t *tw_connector_transport(const tw_connector_t *c);

/* Free the connector: cancel an attempt (no callback), abort a connection
 * it made (its protocol still gets connection_lost).  Safe from callbacks.
 * NULL is accepted. */
void tw_connector_free(tw_connector_t *c);

#endif
