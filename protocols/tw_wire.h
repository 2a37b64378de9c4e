/* tw_wire.h -- the classic "wire" services of inetd: echo (RFC 862), discard
 * (RFC 863), chargen (RFC 864), qotd (RFC 865) and daytime (RFC 867), after
 * Twisted's twisted.protocols.wire.
 *
 * Ownership and lifetime (read these first):
 *
 *  1. A tw_wire_factory_t belongs to the caller, who initialises it with one
 *     of the tw_wire_*_factory_init functions and keeps it alive (and
 *     unchanged) while any listener or connector uses it, as for every
 *     tw_factory_t.  It holds no resources: there is nothing to free.
 *  2. Each connection gets its own protocol, malloc'd by the factory's
 *     build_protocol (NULL, and so a refused connection, when memory is
 *     exhausted) and freed by the protocol's destroy, which the transport
 *     calls after connection_lost (tw_transport.h, rule 1).
 *  3. The qotd quote is borrowed, not copied: it must outlive the factory's
 *     connections.
 *  4. Reactor-thread-only, like everything attached to a transport.
 *
 * Memory stays bounded whatever the peer does: echo registers its transport's
 * own reading side as a streaming producer, so a peer that sends without
 * reading stops being read once its queue passes the high water mark;
 * chargen is a pull producer, writing one chunk each time the transport's
 * queue drains below the low water mark; daytime and qotd write one short
 * message and close.  Input to discard, chargen, daytime and qotd is thrown
 * away.  When the peer half-closes, every service loses the connection after
 * sending what is queued (the transport's default), so echo returns every
 * byte before its FIN.
 */
#ifndef TW_WIRE_H
#define TW_WIRE_H

#include <stddef.h>

#include "tw_transport.h"

/* RFC 865: "the quote ... should be less than 512 characters". */
#define TW_WIRE_QOTD_MAX 511

/* RFC 864's pattern: lines of 72 characters from the ring of the 95 printing
 * ASCII characters (' ' = 0 ... '~' = 94), line n starting at character
 * n mod 95, each ended by CRLF. */
#define TW_WIRE_CHARGEN_WIDTH 72

/* One factory type for all five services.  Embed it or use it as it is;
 * base comes first, so a tw_wire_factory_t * is a tw_factory_t *. */
typedef struct tw_wire_factory {
    tw_factory_t base;
    const char *quote; /* qotd only: borrowed, see rule 3 */
    size_t quote_len;
} tw_wire_factory_t;

/* The quote qotd sends when none is given (ends with CRLF). */
extern const char tw_wire_default_quote[];

/* Make `f` a factory for one service (any earlier content is overwritten). */
void tw_wire_echo_factory_init(tw_wire_factory_t *f);
void tw_wire_discard_factory_init(tw_wire_factory_t *f);
void tw_wire_chargen_factory_init(tw_wire_factory_t *f);
/* Daytime sends the local wall-clock time as "Tue Mar 05 14:03:27 2024\r\n"
 * (strftime "%a %b %d %H:%M:%S %Y", in the process's LC_TIME locale), then
 * closes. */
void tw_wire_daytime_factory_init(tw_wire_factory_t *f);

/* Qotd sends `quote` as it is (NULL: tw_wire_default_quote) and closes.
 * Returns 0, or -EINVAL (and leaves f untouched) when the quote is longer
 * than TW_WIRE_QOTD_MAX bytes. */
int tw_wire_qotd_factory_init(tw_wire_factory_t *f, const char *quote);

#endif
