/* tw_basic.h -- framing receivers: lines, netstrings and length-prefixed
 * strings, after Twisted's twisted.protocols.basic (LineReceiver,
 * NetstringReceiver, Int8/Int16/Int32StringReceiver), wire-compatible with
 * them.
 *
 * A receiver is a mixin.  Embed it *first* in your protocol struct (it
 * embeds tw_protocol_t first, so a pointer to your struct is a pointer to the
 * receiver and to the protocol), point your tw_protocol_ops_t's data_received
 * at the receiver's function, and keep your own connection_made,
 * connection_lost and destroy:
 *
 *     typedef struct upper { tw_line_receiver_t lr; int lines; } upper_t;
 *     static const tw_protocol_ops_t upper_proto_ops = {
 *         .data_received = tw_line_receiver_data_received,
 *         .destroy = upper_destroy,           // calls tw_line_receiver_fini
 *     };
 *     static const tw_line_receiver_ops_t upper_ops = { .line_received = upper_line };
 *     ...
 *     tw_line_receiver_init(&u->lr, &upper_proto_ops, &upper_ops);
 *
 * The receiver turns the byte stream into calls of its own small ops table
 * (line_received, string_received, ...).
 *
 * Ownership, lifetime and threads (read these first):
 *
 *  1. The receiver lives inside your protocol and is freed with it: call its
 *     _fini from your destroy (it frees the receiver's buffer; nothing else
 *     is owned).  _init may be called before the protocol is handed to a
 *     transport; the setters (delimiter, maximum length, mode) at any time,
 *     including from inside the receiver's own callbacks.
 *  2. What a callback is given (`line`, `data`) is a copy in the receiver's
 *     buffer: writable (tokenize it in place), NUL-terminated after `len`
 *     bytes (it may also contain NULs), and valid until the callback
 *     returns.  It is copied because the bytes handed to data_received are
 *     borrowed and read-only: the receivers scan them in place and copy each
 *     line or frame exactly once, into a buffer that grows only as large as
 *     the largest line or frame actually received (never past the maximum
 *     length; a buffer larger than 4 KiB is freed when the connection goes
 *     idle).  Raw data (line receiver, raw mode) and the `partial` of
 *     line_length_exceeded are *not* copied: they are const and borrowed for
 *     the call, and not NUL-terminated.
 *  3. Callbacks come in the order of the bytes, from inside data_received.
 *     A callback may write, pause the transport, change the receiver's
 *     settings or mode (the rest of the bytes already received are handled
 *     under the new ones: nothing is lost or reordered), and close the
 *     connection.  Pausing the transport stops further reads; what was
 *     already read in this call is still delivered, as with Twisted.
 *  4. Stopping.  After a receiver closes the connection itself (a line or
 *     frame too long, a malformed netstring) it is *stopped*: it delivers
 *     nothing more and ignores all further data.  A callback that loses or
 *     aborts the connection itself must call the receiver's _stop too,
 *     otherwise the lines or frames that follow in the same read are still
 *     delivered (Twisted checks transport.disconnecting; twine transports do
 *     not expose it).  Stopping is for good.
 *  5. Do not call a receiver's data_received from inside its own callbacks
 *     (debug builds assert): to hand raw bytes back to line parsing, use
 *     tw_line_receiver_set_line_mode_extra.
 *  6. Failures.  When a receiver closes a connection it gives
 *     tw_transport_lose_connection_with a failure (see each receiver for the
 *     domain, code and message), so connection_lost says why; what was
 *     queued for the peer is still sent first.
 *  7. Reactor-thread-only, like everything attached to a transport.
 */
#ifndef TW_BASIC_H
#define TW_BASIC_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_transport.h"

/* Twisted's defaults (LineReceiver.MAX_LENGTH, NetstringReceiver.MAX_LENGTH,
 * IntNStringReceiver.MAX_LENGTH). */
#define TW_LINE_MAX_LENGTH      16384
#define TW_NETSTRING_MAX_LENGTH 99999
#define TW_INTN_MAX_LENGTH      99999

/* The longest delimiter tw_line_receiver_set_delimiter accepts. */
#define TW_LINE_DELIMITER_MAX 16

/* ---- line receiver (Twisted's LineReceiver) ------------------------------ */

typedef struct tw_line_receiver tw_line_receiver_t;

typedef struct tw_line_receiver_ops {
    /* A line, without its delimiter (see rule 2: a writable, NUL-terminated
     * copy, valid for the call).  Required. */
    void (*line_received)(tw_line_receiver_t *lr, char *line, size_t len);
    /* Raw mode: bytes as they come, borrowed for the call (at least one
     * byte each time).  NULL: raw bytes are dropped. */
    void (*raw_data_received)(tw_line_receiver_t *lr, const void *data, size_t len);
    /* A line is longer than the maximum length: called as soon as that is
     * certain -- once max_length + 1 bytes of the line have arrived and no
     * delimiter can still start within the first max_length + 1 (so at most
     * max_length + len(delimiter) - 1 bytes are ever buffered).  `partial`
     * is the line's first max_length + 1 bytes, borrowed for the call.
     * NULL: the receiver stops (rule 4) and loses the connection with a
     * failure in domain "line", code -EMSGSIZE, "line longer than N bytes".
     * When set, the callback decides: unless it stops the receiver, the rest
     * of that line, up to and including its delimiter, is skipped (not
     * buffered) and parsing goes on with the next line.  (Twisted parses the
     * rest of the line as new lines, which depends on how reads were split.) */
    void (*line_length_exceeded)(tw_line_receiver_t *lr, const char *partial, size_t len);
} tw_line_receiver_ops_t;

/* Embed first in your protocol struct.  Fields after `ops` are private. */
struct tw_line_receiver {
    tw_protocol_t base;
    const tw_line_receiver_ops_t *ops;

    char *buf;          /* a partial line between reads; the line being delivered */
    size_t blen, cap;   /* bytes of partial line held; the buffer's size */
    size_t max;         /* longest line accepted */
    size_t raw_len;     /* inside raw_data_received: bytes it was given, else 0 */
    size_t extra;       /* ... of which set_line_mode_extra handed back */
    unsigned char dlen; /* delimiter length, 1 .. TW_LINE_DELIMITER_MAX */
    bool raw;           /* raw mode */
    bool stopped;       /* rule 4 */
    bool busy;          /* inside data_received (rule 5) */
    bool discarding;    /* skipping a too-long line; buf keeps its last dlen - 1 bytes */
    bool rescan;        /* settings changed while a partial line was held */
    char delim[TW_LINE_DELIMITER_MAX];
};

/* Make lr a line receiver in line mode, with delimiter "\r\n" and maximum
 * length TW_LINE_MAX_LENGTH; base.ops = proto_ops (whose data_received
 * should be tw_line_receiver_data_received), and the other base fields
 * zeroed.  Both tables are borrowed and must outlive the receiver. */
void tw_line_receiver_init(tw_line_receiver_t *lr, const tw_protocol_ops_t *proto_ops,
                           const tw_line_receiver_ops_t *ops);

/* Free the receiver's buffer: call from your protocol's destroy. */
void tw_line_receiver_fini(tw_line_receiver_t *lr);

/* The delimiter ending lines, and sent by send_line (copied).  Default
 * "\r\n"; "\n" is common.  Returns 0, or -EINVAL (nothing changes) for an
 * empty delimiter or one longer than TW_LINE_DELIMITER_MAX. */
int tw_line_receiver_set_delimiter(tw_line_receiver_t *lr, const char *delim, size_t len);

/* The longest line accepted, without its delimiter (default
 * TW_LINE_MAX_LENGTH; values above SIZE_MAX / 4 are clamped to it).  A line
 * of exactly `max` bytes is delivered; one of max + 1 is refused. */
void tw_line_receiver_set_max_length(tw_line_receiver_t *lr, size_t max);

/* Raw mode: the bytes not yet parsed -- the rest of the current read when
 * called from a callback; a partial line held from earlier reads, then what
 * comes next, when called between reads -- go to raw_data_received as they
 * come, until line mode is set again. */
void tw_line_receiver_set_raw_mode(tw_line_receiver_t *lr);

/* Line mode again: the bytes that follow are parsed as lines. */
void tw_line_receiver_set_line_mode(tw_line_receiver_t *lr);

/* From inside raw_data_received only: line mode, and the last `extra` bytes
 * of the data that call was given were not consumed: they are parsed as
 * lines, before the bytes that follow (Twisted's setLineMode(extra)).  This
 * is how a protocol reads "RAW 5\r\nhello" and goes back to lines for what
 * follows "hello" in the same read.  `extra` larger than what the call was
 * given is misuse (debug builds assert; it is clamped). */
void tw_line_receiver_set_line_mode_extra(tw_line_receiver_t *lr, size_t extra);

/* Deliver nothing more, ever (rule 4). */
void tw_line_receiver_stop(tw_line_receiver_t *lr);

/* Send `line` then the delimiter, in one writev.  Returns what
 * tw_transport_writev returns (0, or -EPIPE once closing, ...). */
int tw_line_receiver_send_line(tw_line_receiver_t *lr, const void *line, size_t len);

/* The protocol's data_received: put it in your tw_protocol_ops_t. */
void tw_line_receiver_data_received(tw_protocol_t *p, const void *data, size_t len);

/* ---- netstring receiver (Twisted's NetstringReceiver) --------------------- */

/* Netstrings (http://cr.yp.to/proto/netstrings.txt): "<len>:<data>,", where
 * <len> is the decimal length of <data>.  As Twisted, the receiver accepts
 * exactly "0" or a digit 1-9 followed by digits: no sign, no spaces, no
 * leading zero ("007:" is refused).  The connection is lost, with a failure
 * in domain "netstring", when:
 *  - the length is malformed (a byte other than a digit or the ':' after at
 *    least one digit, or a leading zero): -EPROTO, "malformed netstring
 *    length (...)";
 *  - the length exceeds the maximum: -EMSGSIZE, "netstring longer than N
 *    bytes" -- as soon as the digits received show it, before any payload is
 *    read or any memory set aside for it;
 *  - the byte after the payload is not ',': -EPROTO, "netstring not
 *    terminated by a comma".
 * The string is delivered once its comma has arrived. */

typedef struct tw_netstring_receiver tw_netstring_receiver_t;

typedef struct tw_netstring_receiver_ops {
    /* One string (rule 2: a writable, NUL-terminated copy).  Required. */
    void (*string_received)(tw_netstring_receiver_t *ns, char *data, size_t len);
} tw_netstring_receiver_ops_t;

struct tw_netstring_receiver {
    tw_protocol_t base;
    const tw_netstring_receiver_ops_t *ops;

    char *buf;
    size_t cap;
    size_t max;     /* longest string accepted */
    size_t len;     /* the length being read, then announced */
    size_t have;    /* payload bytes received */
    int state;      /* reading the length, the payload, the comma */
    bool digits;    /* at least one digit of the length was read */
    bool stopped, busy;
};

/* Make ns a netstring receiver with maximum length TW_NETSTRING_MAX_LENGTH;
 * as tw_line_receiver_init otherwise. */
void tw_netstring_receiver_init(tw_netstring_receiver_t *ns, const tw_protocol_ops_t *proto_ops,
                                const tw_netstring_receiver_ops_t *ops);
void tw_netstring_receiver_fini(tw_netstring_receiver_t *ns);

/* The longest string accepted (values above SIZE_MAX / 16 are clamped). */
void tw_netstring_receiver_set_max_length(tw_netstring_receiver_t *ns, size_t max);

void tw_netstring_receiver_stop(tw_netstring_receiver_t *ns);

/* Send "<len>:<data>," in one writev.  Returns what tw_transport_writev
 * returns.  (Like Twisted, the receiver's maximum does not apply.) */
int tw_netstring_send_string(tw_netstring_receiver_t *ns, const void *data, size_t len);

void tw_netstring_receiver_data_received(tw_protocol_t *p, const void *data, size_t len);

/* ---- length-prefixed receivers (Twisted's Int8/16/32StringReceiver) ------- */

/* Each string is preceded by its length as an unsigned big-endian integer of
 * 1, 2 or 4 bytes.  A prefix announcing more than the maximum length is
 * refused as soon as it is complete, before any of the payload is read or
 * any memory set aside for it. */

typedef struct tw_intn_receiver tw_intn_receiver_t;

typedef struct tw_intn_receiver_ops {
    /* One string (rule 2: a writable, NUL-terminated copy).  Required. */
    void (*string_received)(tw_intn_receiver_t *ir, char *data, size_t len);
    /* A prefix announced `length` bytes, more than the maximum.  NULL: the
     * receiver stops (rule 4) and loses the connection with a failure in
     * domain "intn", code -EMSGSIZE, "string of L bytes is longer than the
     * maximum of N".  When set, the callback decides: unless it stops the
     * receiver, the announced bytes are skipped (not buffered) and parsing
     * goes on after them.  (Twisted calls it again on every later read.) */
    void (*length_limit_exceeded)(tw_intn_receiver_t *ir, size_t length);
} tw_intn_receiver_ops_t;

struct tw_intn_receiver {
    tw_protocol_t base;
    const tw_intn_receiver_ops_t *ops;

    char *buf;
    size_t cap;
    size_t max;           /* longest string accepted */
    size_t len;           /* the current string's announced length */
    size_t have;          /* ... bytes of it received (or skipped) */
    unsigned char psize;  /* prefix size: 1, 2 or 4 */
    unsigned char pfill;  /* prefix bytes received */
    unsigned char prefix[4];
    bool in_payload;      /* the prefix is complete */
    bool skipping;        /* ... and the payload is being skipped */
    bool stopped, busy;
};

/* Make ir a receiver of strings with a `prefix_size`-byte prefix (1, 2 or
 * 4), with maximum length TW_INTN_MAX_LENGTH, or what the prefix can
 * express if less (255 for 1 byte, 65535 for 2).  As tw_line_receiver_init
 * otherwise.  Returns 0, or -EINVAL (ir untouched) for another size. */
int tw_intn_receiver_init(tw_intn_receiver_t *ir, const tw_protocol_ops_t *proto_ops,
                          const tw_intn_receiver_ops_t *ops, int prefix_size);
void tw_intn_receiver_fini(tw_intn_receiver_t *ir);

/* The longest string accepted, clamped to what the prefix can express. */
void tw_intn_receiver_set_max_length(tw_intn_receiver_t *ir, size_t max);

void tw_intn_receiver_stop(tw_intn_receiver_t *ir);

/* Send the prefix and `data` in one writev.  Returns what
 * tw_transport_writev returns, or -EMSGSIZE (nothing sent) when `len` does
 * not fit in the prefix (256 bytes or more for a 1-byte prefix, ...).  The
 * receiver's maximum does not apply, as in Twisted. */
int tw_intn_send_string(tw_intn_receiver_t *ir, const void *data, size_t len);

void tw_intn_receiver_data_received(tw_protocol_t *p, const void *data, size_t len);

#endif
