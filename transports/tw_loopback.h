/* tw_loopback.h -- the testing kit, part 2: a client protocol and a server
 * protocol connected in memory, with no socket (Twisted's iosim.IOPump and
 * protocols.loopback).
 *
 * Each side gets a tw_string_transport_t (tw_string_transport.h) whose peer
 * never reads on its own: what a side writes stays queued -- counting
 * towards its water marks, so a registered producer is paused above the
 * high mark -- until tw_loopback_pump() delivers it to the other side's
 * data_received, at most `chunk` bytes per direction per pump (64 KiB by
 * default, TW_READ_BUFFER_SIZE, as a socket read would; 1 delivers byte by
 * byte).  Delivered bytes drain the sender's queue: its producer resumes at
 * or below the low mark.  A side that paused reading receives nothing, so
 * its peer's queue grows: back-pressure works end to end.
 *
 * How connections end, as TCP would end them:
 *  - half-close (lose_write_connection): the other side gets eof_received
 *    after every byte written before it (and, if it paused reading, only
 *    once it reads again); the half-closed side keeps reading.
 *  - lose_connection: the queue is delivered first, then the side closes
 *    cleanly, and the other side gets EOF (eof_received, or the transport's
 *    default lose) and then connection_lost(NULL): bytes it still had queued
 *    are dropped, as they would be for a peer that has gone.
 *  - abort_connection (or the cap policy's abort): at once; undelivered
 *    bytes both ways are dropped; the aborting side's connection_lost gets a
 *    -ECONNABORTED failure, the other side's a -ECONNRESET one.
 * Bytes sent to a side that no longer reads (it asked to lose, or ended)
 * are dropped.  connection_lost then destroy come, as on every transport, at a
 * safe point: from a pump, never inside the call that asked.
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. The loopback belongs to the caller: tw_loopback_free frees it and its
 *     two transports.  The transports belong to the loopback and outlive the
 *     protocols: read them (counters, close_code, ...) until the free.  Do
 *     not feed, drain or disconnect them yourself: the pump does.
 *  2. Each transport owns its protocol (tw_transport.h, rule 1): destroy is
 *     called after connection_lost, at the latest by tw_loopback_free.
 *  3. Pumping is done by the caller (tw_loopback_pump, _pump_all) -- or, after
 *     tw_loopback_start_auto, by the reactor: a zero-delay delayed call pumps
 *     once each time either side does something, and again while things
 *     move (tw_fake_clock_advance(c, 0) runs it until quiet; as with Twisted's
 *     Clock, a pull producer that never ends keeps it going).
 *  4. Reactor-thread-only.  Never pump or free a loopback from inside one of
 *     its protocols' callbacks (a nested pump does nothing and returns
 *     false).  Free it before its reactor.
 */
#ifndef TW_LOOPBACK_H
#define TW_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_reactor.h"
#include "tw_string_transport.h"
#include "tw_transport.h"

typedef struct tw_loopback tw_loopback_t;

/* Pumps tw_loopback_pump_all makes at most (Twisted's IOPump.flush). */
#define TW_LOOPBACK_PUMP_MAX 1000

/* Connect client and server (both taken: see rule 2): connection_made is
 * delivered to the server, then to the client; nothing is pumped yet.  `r`
 * may be NULL (no automatic pumping); when given it is the transports'
 * base.reactor.  The server's host address, and the client's peer address,
 * are 127.0.0.1:12345; the client is 127.0.0.1:54321.  Returns NULL when
 * memory is exhausted (both protocols are then destroyed). */
tw_loopback_t *tw_loopback_new(tw_reactor_t *r, tw_protocol_t *client, tw_protocol_t *server);

/* End what is still open cleanly (connection_lost(NULL) then destroy, on
 * each side still connected), then free everything.  NULL is accepted. */
void tw_loopback_free(tw_loopback_t *lb);

/* The two transports (rule 1). */
tw_string_transport_t *tw_loopback_client(tw_loopback_t *lb);
tw_string_transport_t *tw_loopback_server(tw_loopback_t *lb);

/* Move data both ways once (what each side had queued when the pump began,
 * up to `chunk` bytes a side), then deliver EOFs and ends of connections
 * that are due.  Returns whether anything moved (Twisted's IOPump.pump). */
bool tw_loopback_pump(tw_loopback_t *lb);

/* Pump until nothing moves, at most TW_LOOPBACK_PUMP_MAX times.  Returns the
 * number of pumps that moved something, or -EAGAIN when it was still moving
 * after the last one (a producer that never ends). */
int tw_loopback_pump_all(tw_loopback_t *lb);

/* The most bytes one data_received gets (default TW_READ_BUFFER_SIZE; 1:
 * byte by byte).  Returns 0, -EINVAL for 0, or -ENOMEM. */
int tw_loopback_set_chunk(tw_loopback_t *lb, size_t chunk);

/* Pump from the reactor given to tw_loopback_new (rule 3) / stop doing so.
 * start returns 0, -EINVAL without a reactor, or -ENOMEM. */
int tw_loopback_start_auto(tw_loopback_t *lb);
void tw_loopback_stop_auto(tw_loopback_t *lb);

#endif
