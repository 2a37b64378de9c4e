/* tw_endpoint.h -- endpoint strings: "tcp:8000", "unix:/run/x.sock:mode=660",
 * "tcp:host=127.0.0.1:port=8000:timeout=5", as Twisted's serverFromString
 * and clientFromString read them.
 *
 * Rules (read these first):
 *
 *  1. Parsing and formatting are pure: they touch only the memory passed in,
 *     allocate nothing and are safe from any thread.  Listening and
 *     connecting (plain or _deferred) are reactor-thread-only, like tw_tcp.h.
 *  2. Errors: 0 (or a length) on success, a negative code on failure.  Bad
 *     input gives -EINVAL and a one-line message in `err`, naming the part of
 *     the string at fault.  `err` may be NULL; at most `errlen` bytes are
 *     written, always NUL-terminated when errlen > 0.  Nothing is printed,
 *     nothing aborts.
 *  3. A parse zeroes every byte of the endpoint it fills, and fills it only on
 *     success (on failure *ep is left as it was).  So two parses that mean the
 *     same endpoint compare equal field by field, and
 *     parse(format(parse(s))) == parse(s).
 *
 * Syntax (Twisted's): "type:arg:key=value:...".  ':' separates the parts,
 * the first '=' in a part makes it a key=value option, and a backslash makes
 * the next character literal ("\:", "\=", "\\").  Options come in any order;
 * positional arguments are listed below.  Every value is checked: unknown
 * types and options, repeated options, empty parts, bad numbers, ports out of
 * range, too many positional arguments are all refused.
 *
 *   Servers (tw_endpoint_parse_server, tw_endpoint_listen):
 *     tcp:PORT          options port, interface, backlog, reuseport=yes|no
 *     tcp6:PORT         the same plus v6only=yes|no; the interface must be
 *                       IPv6 and defaults to "::" (AF_INET6)
 *     unix:PATH         options address (= PATH), mode (octal, 1..777),
 *                       backlog; Twisted's lockfile and wantPID are accepted
 *                       (0 or 1) and ignored.  "@name" is the Linux abstract
 *                       name "name" (no mode then).
 *   Clients (tw_endpoint_parse_client, tw_endpoint_connect):
 *     tcp:HOST:PORT     or host=, port= (one positional with host= given is
 *                       the port, as in Twisted); timeout=SECONDS (decimal,
 *                       "0.5"; "none": no limit); bindAddress=ADDR,
 *                       ADDR:PORT or [IPv6]:PORT.  tcp6: the host must be IPv6.
 *     unix:PATH         or path=; timeout=; Twisted's checkPID (0|1) ignored.
 *
 * Addresses must be literal IPv4 or IPv6 addresses (inet_pton): host names
 * are refused until the DNS module lands.  An IPv6 address may be written
 * escaped ("tcp:\:\:1:80", Twisted's way), in brackets ("tcp:[::1]:80",
 * "host=[::1]"), or, as the value of host=, interface= or bindAddress=,
 * unescaped ("tcp:host=::1:port=80"): when such a value is not an address by
 * itself, it takes the following ':' parts that are not key=value options,
 * as many as make the longest valid address.  So "tcp6:interface=::1:8000"
 * reads "::1:8000" as the interface; write "tcp6:8000:interface=::1" instead.
 * After bindAddress=IPv4 or bindAddress=[IPv6], a following all-digit part is
 * its port (an unbracketed IPv6 bindAddress never has one).
 *
 * Defaults: backlog 0 (tw_tcp.h's 128), interface "" (all interfaces; "::"
 * for tcp6), mode 0 (the file keeps the mode umask gives it), client timeout
 * 30 s, no bind address.  Port 0 (the kernel picks) is for servers only.
 */
#ifndef TW_ENDPOINT_H
#define TW_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_deferred.h"
#include "tw_reactor.h"
#include "tw_tcp.h"
#include "tw_transport.h"

typedef enum tw_endpoint_kind {
    TW_ENDPOINT_TCP,  /* "tcp": IPv4, or IPv6 when the address is one */
    TW_ENDPOINT_TCP6, /* "tcp6": IPv6 only (AF_INET6) */
    TW_ENDPOINT_UNIX, /* "unix": a UNIX stream socket */
} tw_endpoint_kind_t;

/* A parsed endpoint.  Fields that do not apply to the kind are zero. */
typedef struct tw_endpoint {
    tw_endpoint_kind_t kind;
    bool server;
    char host[64];      /* servers: the interface ("" = all); clients: the host */
    int port;           /* 0..65535 (0: servers only, the kernel picks) */
    int backlog;        /* servers; 0: the default (128) */
    bool reuseport;     /* TCP servers: SO_REUSEPORT */
    bool v6only;        /* tcp6 servers: IPV6_V6ONLY */
    char path[108];     /* UNIX: the socket path ("@name": abstract), sun_path's size */
    int mode;           /* UNIX servers: permission bits, 0: left as created */
    tw_time_t timeout;  /* clients: connection timeout (30 s default, TW_TIME_MAX: none) */
    char bind_host[64]; /* TCP clients: local address to bind first, "" = none */
    int bind_port;      /* with bind_host; 0: any */
} tw_endpoint_t;

/* A buffer this large always holds tw_endpoint_format's output. */
#define TW_ENDPOINT_FORMAT_MAX 512

/* Parse a server (listening) endpoint string into *ep.  Returns 0, or
 * -EINVAL with a message in err. */
int tw_endpoint_parse_server(const char *s, tw_endpoint_t *ep, char *err, size_t errlen);

/* Parse a client (connecting) endpoint string into *ep.  Returns 0, or
 * -EINVAL with a message in err. */
int tw_endpoint_parse_client(const char *s, tw_endpoint_t *ep, char *err, size_t errlen);

/* Write the canonical string for *ep (as parsed: only options that differ
 * from the defaults, values escaped Twisted's way, e.g.
 * "tcp:host=\:\:1:port=80"), for logs and configuration files.  Returns its
 * length; -ENOSPC when `len` is too small (buf then holds as much as fits,
 * NUL-terminated, if len > 0); -EINVAL for an endpoint no parse could have
 * produced (an unknown kind, a path or host without its NUL). */
int tw_endpoint_format(const tw_endpoint_t *ep, char *buf, size_t len);

/* Parse `s` as a server endpoint and listen on it with tw_tcp_listen or
 * tw_unix_listen; accepted connections get protocols from f (which belongs
 * to the caller and must outlive the listener).  Returns 0 and the listener
 * in *out (the caller's, until tw_listener_close), or a negative code:
 * -EINVAL with the parse error in err, or the listen error (-EADDRINUSE, ...)
 * with "listen on <s>: <reason>" in err.  Reactor-thread-only. */
int tw_endpoint_listen(tw_reactor_t *r, const char *s, tw_factory_t *f, tw_listener_t **out,
                       char *err, size_t errlen);

/* Parse `s` as a client endpoint and start connecting with tw_tcp_connect or
 * tw_unix_connect; the outcome reaches f as tw_tcp.h describes.  Returns 0
 * and the connector in *out (the caller's, until tw_connector_free), or a
 * negative code: -EINVAL with the parse error in err, or what the connect
 * call returned, with "connect to <s>: <reason>" in err.  Reactor-thread-only. */
int tw_endpoint_connect(tw_reactor_t *r, const char *s, tw_factory_t *f, tw_connector_t **out,
                        char *err, size_t errlen);

/* ---- with Deferreds (Twisted's endpoint.listen and endpoint.connect) ---- */

/* Listen on `s` as tw_endpoint_listen does; returns a Deferred that has
 * already fired: with the listener (TW_OK(l, ...) whose free function closes
 * it: a callback that keeps it returns something else and closes it later
 * with tw_listener_close; a result nobody takes is closed when the Deferred
 * goes), or with a failure: domain "endpoint", -EINVAL for a string that does
 * not parse; "tcp" or "unix" with the listen error (-EADDRINUSE, ...) and the
 * message "listen on <s>: <reason>".  err gets the same message as with
 * tw_endpoint_listen ("" on success; may be NULL).  NULL only on -ENOMEM. */
tw_deferred_t *tw_endpoint_listen_deferred(tw_reactor_t *r, const char *s, tw_factory_t *f,
                                           char *err, size_t errlen);

/* Connect to `s`; returns a Deferred that fires with the connected protocol
 * (borrowed: the transport owns it, as always) right after its
 * connection_made has run, or fails: with the attempt's failure (domain
 * "tcp" or "unix": -ECONNREFUSED, -ETIMEDOUT after the endpoint's timeout,
 * ...; -ECONNREFUSED also when f builds no protocol), or at once for what is
 * known at once, as tw_endpoint_listen_deferred (domain "endpoint" for a
 * string that does not parse, "tcp"/"unix" for what the connect call
 * refuses; err as with tw_endpoint_connect).  NULL only on -ENOMEM.
 *
 * f only builds the protocols (and gets start/stop): as in Twisted, its
 * started_connecting, connection_failed and connection_lost are not called
 * -- the Deferred reports the outcome, the protocol's connection_lost the end
 * of the connection.  The connector is internal: it is freed when the attempt
 * fails or the connection ends.  p->factory is f, and the connection counts
 * among f's (tw_factory_connection_count, tw_factory_lose_connections).
 *
 * Cancelling the Deferred before it fired stops the attempt (the protocol is
 * never built) and fails it with the cancelled failure (domain "deferred",
 * -ECANCELED, so tw_deferred_add_timeout works); cancelled from inside the
 * protocol's connection_made, it aborts the connection.  An attempt still
 * pending when the reactor is freed leaks its connector: cancel it first. */
tw_deferred_t *tw_endpoint_connect_deferred(tw_reactor_t *r, const char *s, tw_factory_t *f,
                                            char *err, size_t errlen);

#endif
