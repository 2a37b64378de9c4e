/* tw_chat.h -- a line-based multi-user chat server: the classic Twisted chat
 * example, done properly (doc/chat.md).
 *
 * A client connects, is asked for a nickname (unique without regard to case,
 * 1-16 letters, digits, '_' or '-', starting with a letter), and from then on
 * every line it sends is shown to the others as "<nick> text".  Commands:
 * /me ACTION, /msg NICK TEXT, /nick NEW, /who, /quit [MESSAGE], /help.  Joins,
 * leaves and nickname changes are announced.  Lines end in LF or CRLF; the
 * server sends CRLF.
 *
 * A slow client never stalls the others: what a client is owed (lines not yet
 * written plus the transport's queue) is bounded.  A client owed more than
 * max_queue bytes for longer than `grace`, or more than 4 x max_queue at any
 * time, is disconnected ("too slow") and the others are told.  Lines are
 * gathered per client during a reactor iteration and written once at its end,
 * so a client owed many lines costs one write system call per iteration.  A
 * line longer than max_line is refused with a message; the connection stays.
 *
 * Lifetime and threads (read these first):
 *
 *  1. Reactor-thread-only.
 *  2. The server belongs to the caller: tw_chat_server_new() makes it,
 *     tw_chat_server_free() frees it (aborting connections still open: call
 *     tw_chat_server_shutdown() first and wait for them to go, for a clean
 *     stop).  Its factory (tw_chat_server_factory) is listened on with any
 *     listener (tw_endpoint_listen, tw_tcp_listen, ...) and must outlive them.
 *  3. Each connection's protocol belongs to its transport (tw_transport.h).
 */
#ifndef TW_CHAT_H
#define TW_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_reactor.h"
#include "tw_transport.h"

typedef struct tw_chat_server tw_chat_server_t;

typedef struct tw_chat_options {
    size_t max_line;   /* longest line accepted, without its end (default 512) */
    size_t max_queue;  /* bytes a client may be owed (default 256 KiB) */
    tw_time_t grace;   /* how long it may stay over max_queue (default 5 s) */
    int max_clients;   /* connections refused beyond this, with a message (0: 10,000) */
    const char *name;  /* shown in the greeting (default "twine chat"); copied */
} tw_chat_options_t;

/* A new server (NULL options: the defaults).  NULL with errno ENOMEM. */
tw_chat_server_t *tw_chat_server_new(tw_reactor_t *r, const tw_chat_options_t *opt);

/* The factory to listen with. */
tw_factory_t *tw_chat_server_factory(tw_chat_server_t *s);

/* Tell every client `notice` (NULL: "server shutting down"), then lose every
 * connection (flush, close).  New connections are refused from then on. */
void tw_chat_server_shutdown(tw_chat_server_t *s, const char *notice);

/* Connections open now, and how many of them have chosen a nickname. */
int tw_chat_server_connections(const tw_chat_server_t *s);
int tw_chat_server_users(const tw_chat_server_t *s);

/* Free the server; connections still open are aborted first. */
void tw_chat_server_free(tw_chat_server_t *s);

/* ---- the command parser (exposed for tests and fuzzing) ---------------- */

typedef enum tw_chat_cmd_kind {
    TW_CHAT_EMPTY = 0, /* an empty (or all-blank) line: ignored */
    TW_CHAT_SAY,       /* text: a message to everyone (also "//text": "/text") */
    TW_CHAT_ME,        /* /me text */
    TW_CHAT_MSG,       /* /msg nick text */
    TW_CHAT_NICK,      /* /nick nick */
    TW_CHAT_WHO,       /* /who */
    TW_CHAT_QUIT,      /* /quit [text] */
    TW_CHAT_HELP,      /* /help */
    TW_CHAT_UNKNOWN,   /* /anything-else: nick holds the command name */
    TW_CHAT_USAGE,     /* a known command with missing arguments: nick holds its name */
} tw_chat_cmd_kind_t;

typedef struct tw_chat_cmd {
    tw_chat_cmd_kind_t kind;
    const char *nick;  /* /msg, /nick: the nickname argument (not NUL-terminated) */
    size_t nick_len;
    const char *text;  /* say, /me, /msg, /quit: the text (may be empty) */
    size_t text_len;
} tw_chat_cmd_t;

/* Parse one line (without its end; a trailing CR is ignored).  Pointers in
 * cmd point into `line`.  Never fails: every line is some kind. */
void tw_chat_parse(const char *line, size_t len, tw_chat_cmd_t *cmd);

/* Whether nick is a valid nickname (rules above). */
bool tw_chat_valid_nick(const char *nick, size_t len);

#endif
