/* stream.h -- the stream transport shared by TCP, UNIX sockets (and, later,
 * pipes): private to transports/, never installed. */
#ifndef TW_STREAM_H
#define TW_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tw_tcp.h"
#include "tw_transport.h"

typedef struct tw__chunk tw__chunk_t;

typedef struct tw__stream {
    tw_transport_t base;      /* first: a tw_transport_t * is a tw__stream_t * */
    int fd;
    unsigned flags;
    const char *domain;       /* "tcp", "unix": the domain of its failures */
    tw__chunk_t *qhead, *qtail;
    size_t queued;
    uint32_t low, high, cap;  /* an idle connection's size matters: 32 bits each */
    uint8_t policy;           /* tw_cap_policy_t */
    bool streaming, producer_paused;
    tw_producer_t *producer;
    tw_failure_t *reason;     /* why it is closing; NULL: clean */
    tw_connector_t *connector; /* the connector that made it, told when it ends */
} tw__stream_t;

/* What the descriptor of a stream is (tw__stream_open's `kind`). */
#define TW__STREAM_SOCKET 0u /* a connected stream socket (UNIX) */
#define TW__STREAM_TCP    1u /* a TCP socket: TCP_NODELAY, abort sends a reset */
#define TW__STREAM_PIPE   2u /* read(2)/write(2): a pipe's read end, a pty master
                              * (EIO when the slave closes is the end of input);
                              * lose_write_connection closes it */
#define TW__STREAM_WRONLY 4u /* a pipe's write end: nothing is read; the reader
                              * closing it ends the stream (EPIPE if data was lost) */
#define TW__STREAM_FILE   8u /* a regular file: read once per iteration from soon
                              * calls (pollers refuse or always report files) */
#define TW__STREAM_NOREAD 16u /* never read nor watched for reading (a terminal or
                              * file written only); with PIPE for write(2) */

/* Make a stream on connected descriptor `fd` (taken: closed on failure too)
 * for protocol p, and deliver connection_made.  Returns the stream or NULL
 * (p is then destroyed).  `domain` is a static string. */
tw__stream_t *tw__stream_open(tw_reactor_t *r, int fd, tw_protocol_t *p, tw_factory_t *f,
                              const char *domain, unsigned kind);

/* Abort the stream without telling its connector (tw_connector_free). */
void tw__stream_detach_connector(tw__stream_t *s);

/* Free the stream now, calling nothing (not its protocol, not its
 * producer): for a reactor being freed, whose soon calls -- a pending
 * finish among them -- are dropped.  Closes the descriptor. */
void tw__stream_discard(tw__stream_t *s);

/* connector side: called by the stream once its protocol is gone. */
void tw__connector_lost(tw_connector_t *c, const tw_failure_t *reason);

/* The list of open connections a factory keeps (tw_factory_t.conns), for
 * every transport kind. */
void tw__factory_track(tw_factory_t *f, tw_transport_t *t);
void tw__factory_untrack(tw_transport_t *t); /* from its list, if on one */

/* The producer ops of a transport's own reading side (t->as_producer). */
extern const tw_producer_ops_t tw__transport_producer_ops;

/* Factory start/stop bookkeeping (Twisted's doStart/doStop). */
void tw__factory_use(tw_factory_t *f);
void tw__factory_release(tw_factory_t *f);

#endif
