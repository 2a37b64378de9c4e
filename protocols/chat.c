/* chat.c -- the chat server (tw_chat.h).
 *
 * Fan-out is the hot path: a line said by one client is owed to every other.
 * It is appended to each recipient's `out` buffer and the recipient is put on
 * the dirty list; one soon call per iteration then writes each dirty
 * client's buffer with one tw_transport_write (one send(2) when its socket
 * has room).  Per-sender order is kept because every line goes through the
 * same FIFO buffers in the order it was said. */
#define _GNU_SOURCE
#include "tw_chat.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tw_basic.h"
#include "tw_log.h"

#define LOG_DOMAIN "chat"
#define NICK_MAX 16
#define KEEP_OUT 16384          /* a client's out buffer above this is freed once traffic is light */
#define LIGHT_TURNS 64          /* ... that is, after this many small flushes in a row */
#define SLOW_KILL TW_SEC(2)     /* a dropped client that does not take its notice: abort */

typedef struct client client_t;

struct client {
    tw_line_receiver_t lr; /* first: a client_t * is a tw_protocol_t * */
    tw_chat_server_t *srv;
    client_t *next, *prev;             /* every connection */
    client_t *dnext, *dprev;           /* the dirty list */
    bool dirty, named, refused, dropping, lost;
    char nick[NICK_MAX + 1];
    char *out;                         /* lines gathered this iteration */
    size_t out_len, out_cap;
    unsigned light;                    /* flushes in a row that were small */
    tw_timer_t slow;                   /* runs while owed more than max_queue */
    tw_timer_t kill;                   /* runs once dropped */
};

struct tw_chat_server {
    tw_factory_t base; /* first */
    tw_reactor_t *r;
    tw_chat_options_t opt;
    char name[64];
    client_t *clients;
    int nconn, nusers;
    client_t *dirty;
    bool flush_soon, shutting_down, freeing;
};

/* ---- parsing ------------------------------------------------------------- */

bool tw_chat_valid_nick(const char *nick, size_t len)
{
    if (len < 1 || len > NICK_MAX || !isalpha((unsigned char)nick[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char ch = (unsigned char)nick[i];
        if (!isalnum(ch) && ch != '_' && ch != '-')
            return false;
    }
    return true;
}

static size_t skip_blanks(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

static size_t word_end(const char *s, size_t i, size_t len)
{
    while (i < len && s[i] != ' ' && s[i] != '\t')
        i++;
    return i;
}

static bool is_cmd(const char *w, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(w, name, n) == 0;
}

void tw_chat_parse(const char *line, size_t len, tw_chat_cmd_t *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    if (len && line[len - 1] == '\r')
        len--;
    size_t i = skip_blanks(line, 0, len);
    if (i == len) {
        cmd->kind = TW_CHAT_EMPTY;
        return;
    }
    if (line[0] != '/' || (len > 1 && line[1] == '/')) {
        cmd->kind = TW_CHAT_SAY;
        cmd->text = line + (line[0] == '/'); /* "//x" says "/x" */
        cmd->text_len = len - (line[0] == '/');
        return;
    }
    size_t ws = 1, we = word_end(line, ws, len);
    const char *w = line + ws;
    size_t wn = we - ws;
    size_t a = skip_blanks(line, we, len); /* the arguments */
    cmd->nick = w; /* the command's name, for UNKNOWN and USAGE */
    cmd->nick_len = wn;
    if (is_cmd(w, wn, "me")) {
        cmd->kind = a < len ? TW_CHAT_ME : TW_CHAT_USAGE;
        cmd->text = line + a;
        cmd->text_len = len - a;
    } else if (is_cmd(w, wn, "msg")) {
        size_t ne = word_end(line, a, len), t = skip_blanks(line, ne, len);
        if (ne == a || t == len) {
            cmd->kind = TW_CHAT_USAGE;
            return;
        }
        cmd->kind = TW_CHAT_MSG;
        cmd->nick = line + a;
        cmd->nick_len = ne - a;
        cmd->text = line + t;
        cmd->text_len = len - t;
    } else if (is_cmd(w, wn, "nick")) {
        size_t ne = word_end(line, a, len);
        if (ne == a || skip_blanks(line, ne, len) != len) {
            cmd->kind = TW_CHAT_USAGE;
            return;
        }
        cmd->kind = TW_CHAT_NICK;
        cmd->nick = line + a;
        cmd->nick_len = ne - a;
    } else if (is_cmd(w, wn, "who")) {
        cmd->kind = TW_CHAT_WHO;
    } else if (is_cmd(w, wn, "quit")) {
        cmd->kind = TW_CHAT_QUIT;
        cmd->text = line + a;
        cmd->text_len = len - a;
    } else if (is_cmd(w, wn, "help")) {
        cmd->kind = TW_CHAT_HELP;
    } else {
        cmd->kind = TW_CHAT_UNKNOWN;
    }
    if (cmd->kind != TW_CHAT_MSG && cmd->kind != TW_CHAT_NICK &&
        cmd->kind != TW_CHAT_UNKNOWN && cmd->kind != TW_CHAT_USAGE) {
        cmd->nick = NULL;
        cmd->nick_len = 0;
    }
}

/* ---- sending ------------------------------------------------------------- */

static void flush_cb(tw_reactor_t *r, void *arg);
static void client_drop(client_t *c);

static tw_transport_t *transport_of(client_t *c)
{
    return c->lr.base.transport;
}

static size_t owed(client_t *c)
{
    return c->out_len + tw_transport_queued(transport_of(c));
}

static void dirty_remove(client_t *c)
{
    if (!c->dirty)
        return;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        c->srv->dirty = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    c->dnext = c->dprev = NULL;
    c->dirty = false;
}

/* Owed too much: start the grace period, or drop at once past the hard limit. */
static void check_owed(client_t *c)
{
    size_t n = owed(c), max = c->srv->opt.max_queue;
    if (n <= max || c->dropping)
        return;
    if (n > 4 * max)
        client_drop(c);
    else if (!tw_timer_active(&c->slow))
        tw_timer_start(&c->slow, c->srv->opt.grace);
}

/* Append bytes to c's buffer; written at the end of the iteration. */
static void put(client_t *c, const char *data, size_t len)
{
    if (c->dropping || c->lost)
        return;
    if (c->out_cap - c->out_len < len) {
        size_t cap = c->out_cap ? c->out_cap : 512;
        while (cap - c->out_len < len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            client_drop(c);
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (!c->dirty) {
        tw_chat_server_t *s = c->srv;
        c->dirty = true;
        c->dprev = NULL;
        c->dnext = s->dirty;
        if (s->dirty)
            s->dirty->dprev = c;
        s->dirty = c;
        if (!s->flush_soon && tw_reactor_call_soon(s->r, flush_cb, s) == 0)
            s->flush_soon = true;
    }
    check_owed(c);
}

/* A formatted line (CRLF added) to one client. */
static void say_to(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_to(client_t *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof buf - 2 ? (size_t)n : sizeof buf - 3;
    buf[len++] = '\r';
    buf[len++] = '\n';
    put(c, buf, len);
}

/* One line to every named client but `except` (which may be NULL). */
static void broadcast(tw_chat_server_t *s, client_t *except, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void broadcast(tw_chat_server_t *s, client_t *except, const char *fmt, ...)
{
    char small[1024], *buf = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof small - 2) { /* a long line: format it again, whole */
        buf = malloc((size_t)n + 3);
        if (!buf)
            return;
        va_start(ap, fmt);
        vsnprintf(buf, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    size_t len = (size_t)n;
    buf[len++] = '\r';
    buf[len++] = '\n';
    for (client_t *c = s->clients, *next; c; c = next) {
        next = c->next; /* put may drop c (it stays on the list until lost) */
        if (c != except && c->named)
            put(c, buf, len);
    }
    if (buf != small)
        free(buf);
}

static void server_maybe_free(tw_chat_server_t *s);

/* Write what every dirty client is owed: one write each. */
static void flush_all(tw_chat_server_t *s)
{
    while (s->dirty) {
        client_t *c = s->dirty;
        dirty_remove(c);
        size_t n = c->out_len;
        if (n && !c->dropping && !c->lost) {
            tw_transport_write(transport_of(c), c->out, n);
            c->out_len = 0;
            check_owed(c);
        }
        /* A big buffer is kept while the room is busy -- freeing and
         * growing it again, with glibc giving the heap top back to the
         * kernel in between, cost more than the fan-out itself -- and given
         * back after LIGHT_TURNS small flushes in a row. */
        c->light = n <= KEEP_OUT / 4 ? c->light + 1 : 0;
        if (c->out_cap > KEEP_OUT && c->light >= LIGHT_TURNS) {
            free(c->out);
            c->out = NULL;
            c->out_cap = c->out_len = 0;
        }
    }
}

static void flush_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    tw_chat_server_t *s = arg;
    s->flush_soon = false;
    if (s->freeing)
        server_maybe_free(s);
    else
        flush_all(s);
}

/* ---- users ----------------------------------------------------------------- */

static client_t *find_nick(tw_chat_server_t *s, const char *nick, size_t len)
{
    for (client_t *c = s->clients; c; c = c->next)
        if (c->named && strlen(c->nick) == len && strncasecmp(c->nick, nick, len) == 0)
            return c;
    return NULL;
}

static void who(client_t *c)
{
    tw_chat_server_t *s = c->srv;
    char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof buf, "* %d user%s online:", s->nusers,
                                s->nusers == 1 ? "" : "s");
    for (client_t *u = s->clients; u; u = u->next) {
        if (!u->named)
            continue;
        size_t k = strlen(u->nick);
        if (n + k + 4 >= sizeof buf) { /* a long list goes on several lines */
            say_to(c, "%.*s", (int)n, buf);
            n = (size_t)snprintf(buf, sizeof buf, "*  ");
        }
        n += (size_t)snprintf(buf + n, sizeof buf - n, " %s", u->nick);
    }
    say_to(c, "%.*s", (int)n, buf);
}

static void help(client_t *c)
{
    static const char *const lines[] = {
        "* Commands:",
        "*   /me ACTION        tell everyone what you do",
        "*   /msg NICK TEXT    a private message",
        "*   /nick NEW         change your nickname",
        "*   /who              who is here",
        "*   /quit [MESSAGE]   leave",
        "*   /help             this text",
        "* Anything else is said to everyone (start with // to say a line beginning with /).",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        say_to(c, "%s", lines[i]);
}

static const char bad_nick[] =
    "! invalid nickname: 1-16 letters, digits, '_' or '-', starting with a letter";

static void choose_nick(client_t *c, const char *nick, size_t len)
{
    tw_chat_server_t *s = c->srv;
    if (!tw_chat_valid_nick(nick, len)) {
        say_to(c, "%s", bad_nick);
        return;
    }
    client_t *other = find_nick(s, nick, len);
    if (other && other != c) {
        say_to(c, "! the nickname %.*s is taken; choose another", (int)len, nick);
        return;
    }
    if (c->named) {
        char old[NICK_MAX + 1];
        memcpy(old, c->nick, sizeof old);
        memcpy(c->nick, nick, len);
        c->nick[len] = '\0';
        broadcast(s, NULL, "* %s is now known as %s", old, c->nick);
        return;
    }
    memcpy(c->nick, nick, len);
    c->nick[len] = '\0';
    c->named = true;
    s->nusers++;
    tw_log(TW_LOG_INFO, LOG_DOMAIN, "%s joined (%d users)", c->nick, s->nusers);
    say_to(c, "* Hello %s. Type /help for the commands.", c->nick);
    who(c);
    broadcast(s, c, "* %s has joined", c->nick);
}

static void leave(client_t *c, const char *why)
{
    if (!c->named)
        return;
    tw_chat_server_t *s = c->srv;
    c->named = false;
    s->nusers--;
    tw_log(TW_LOG_INFO, LOG_DOMAIN, "%s left%s%s (%d users)", c->nick, why ? ": " : "",
           why ? why : "", s->nusers);
    if (why)
        broadcast(s, c, "* %s has left (%s)", c->nick, why);
    else
        broadcast(s, c, "* %s has left", c->nick);
}

static void kill_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    client_t *c = arg;
    tw_transport_abort_connection(transport_of(c));
}

/* Too slow: forget what it is owed, tell it and the others, close. */
static void client_drop(client_t *c)
{
    if (c->dropping || c->lost)
        return;
    size_t n = owed(c);
    c->dropping = true;
    tw_timer_cancel(&c->slow);
    dirty_remove(c);
    c->out_len = 0;
    char why[96];
    snprintf(why, sizeof why, "too slow: %zu bytes unread", n);
    leave(c, why);
    tw_transport_t *t = transport_of(c);
    static const char notice[] = "! you are not reading fast enough: disconnecting\r\n";
    tw_transport_write(t, notice, sizeof notice - 1);
    tw_transport_lose_connection_with(t, tw_failure_new(LOG_DOMAIN, -ENOBUFS, "%s", why));
    tw_timer_start(&c->kill, SLOW_KILL);
}

static void slow_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    client_t *c = arg;
    if (owed(c) > c->srv->opt.max_queue)
        client_drop(c);
}

/* ---- the protocol ------------------------------------------------------------ */

static void on_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    client_t *c = (client_t *)lr;
    if (c->dropping || c->refused)
        return;
    tw_chat_cmd_t cmd;
    tw_chat_parse(line, len, &cmd);
    if (!c->named) {
        switch (cmd.kind) {
        case TW_CHAT_EMPTY: return;
        case TW_CHAT_QUIT: break;
        case TW_CHAT_HELP: say_to(c, "* First choose a nickname: type it and press enter."); return;
        case TW_CHAT_SAY: {
            size_t a = skip_blanks(cmd.text, 0, cmd.text_len), b = cmd.text_len;
            while (b > a && (cmd.text[b - 1] == ' ' || cmd.text[b - 1] == '\t'))
                b--;
            choose_nick(c, cmd.text + a, b - a);
            return;
        }
        default: say_to(c, "%s", bad_nick); return;
        }
    }
    tw_chat_server_t *s = c->srv;
    switch (cmd.kind) {
    case TW_CHAT_EMPTY:
        break;
    case TW_CHAT_SAY:
        broadcast(s, c, "<%s> %.*s", c->nick, (int)cmd.text_len, cmd.text);
        break;
    case TW_CHAT_ME:
        broadcast(s, c, "* %s %.*s", c->nick, (int)cmd.text_len, cmd.text);
        break;
    case TW_CHAT_MSG: {
        client_t *to = find_nick(s, cmd.nick, cmd.nick_len);
        if (!to) {
            say_to(c, "! no such user: %.*s", (int)cmd.nick_len, cmd.nick);
        } else {
            say_to(to, "*%s* %.*s", c->nick, (int)cmd.text_len, cmd.text);
            say_to(c, "-> *%s* %.*s", to->nick, (int)cmd.text_len, cmd.text);
        }
        break;
    }
    case TW_CHAT_NICK:
        choose_nick(c, cmd.nick, cmd.nick_len);
        break;
    case TW_CHAT_WHO:
        who(c);
        break;
    case TW_CHAT_QUIT: {
        char why[300];
        snprintf(why, sizeof why, "quit%s%.*s", cmd.text_len ? ": " : "",
                 (int)(cmd.text_len > 256 ? 256 : cmd.text_len), cmd.text);
        leave(c, why);
        say_to(c, "* Bye.");
        flush_all(s); /* the goodbye goes before the close */
        tw_line_receiver_stop(&c->lr);
        tw_transport_lose_connection(transport_of(c));
        break;
    }
    case TW_CHAT_HELP:
        help(c);
        break;
    case TW_CHAT_UNKNOWN:
        say_to(c, "! unknown command /%.*s; try /help", (int)(cmd.nick_len > 32 ? 32 : cmd.nick_len),
               cmd.nick);
        break;
    case TW_CHAT_USAGE:
        say_to(c, "! usage: /%.*s %s", (int)cmd.nick_len, cmd.nick,
               is_cmd(cmd.nick, cmd.nick_len, "msg")    ? "NICK TEXT"
               : is_cmd(cmd.nick, cmd.nick_len, "nick") ? "NEW"
                                                        : "ACTION");
        break;
    }
}

static void on_too_long(tw_line_receiver_t *lr, const char *partial, size_t len)
{
    (void)partial, (void)len;
    client_t *c = (client_t *)lr;
    /* The receiver skips the rest of the line: the connection stays. */
    say_to(c, "! line too long (the limit is %zu bytes): ignored", c->srv->opt.max_line);
}

static const tw_line_receiver_ops_t chat_lr_ops = {
    .line_received = on_line,
    .line_length_exceeded = on_too_long,
};

static void on_made(tw_protocol_t *p, tw_transport_t *t)
{
    client_t *c = (client_t *)p;
    tw_chat_server_t *s = c->srv;
    if (s->shutting_down || s->nconn > s->opt.max_clients) {
        c->refused = true;
        static const char full[] = "! the server is full or shutting down; try again later\r\n";
        tw_transport_write(t, full, sizeof full - 1);
        tw_transport_lose_connection(t);
        return;
    }
    say_to(c, "* Welcome to %s. What is your nickname?", s->name);
}

static void on_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    client_t *c = (client_t *)p;
    if (c->named)
        leave(c, reason ? reason->message : NULL);
    c->lost = true;
    dirty_remove(c);
    tw_timer_cancel(&c->slow);
    tw_timer_cancel(&c->kill);
}

static void on_destroy(tw_protocol_t *p)
{
    client_t *c = (client_t *)p;
    tw_chat_server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconn--;
    tw_line_receiver_fini(&c->lr);
    free(c->out);
    free(c);
    server_maybe_free(s);
}

static const tw_protocol_ops_t chat_proto_ops = {
    .connection_made = on_made,
    .data_received = tw_line_receiver_data_received,
    .connection_lost = on_lost,
    .destroy = on_destroy,
};

static tw_protocol_t *build(tw_factory_t *f, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr, (void)addrlen;
    tw_chat_server_t *s = (tw_chat_server_t *)f;
    client_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    tw_line_receiver_init(&c->lr, &chat_proto_ops, &chat_lr_ops);
    /* Accept LF and CRLF: split on LF, the parser drops a trailing CR. */
    tw_line_receiver_set_delimiter(&c->lr, "\n", 1);
    tw_line_receiver_set_max_length(&c->lr, s->opt.max_line + 1); /* + a CR */
    c->srv = s;
    tw_timer_init(&c->slow, s->r, slow_cb, c);
    tw_timer_init(&c->kill, s->r, kill_cb, c);
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->nconn++;
    return &c->lr.base;
}

static const tw_factory_ops_t chat_factory_ops = {
    .build_protocol = build,
};

/* ---- the server ---------------------------------------------------------------- */

tw_chat_server_t *tw_chat_server_new(tw_reactor_t *r, const tw_chat_options_t *opt)
{
    tw_chat_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->base.ops = &chat_factory_ops;
    s->r = r;
    if (opt)
        s->opt = *opt;
    if (!s->opt.max_line)
        s->opt.max_line = 512;
    if (!s->opt.max_queue)
        s->opt.max_queue = 256 * 1024;
    if (!s->opt.grace)
        s->opt.grace = TW_SEC(5);
    if (s->opt.max_clients <= 0)
        s->opt.max_clients = 10000;
    snprintf(s->name, sizeof s->name, "%s", s->opt.name ? s->opt.name : "twine chat");
    s->opt.name = s->name;
    return s;
}

tw_factory_t *tw_chat_server_factory(tw_chat_server_t *s)
{
    return &s->base;
}

int tw_chat_server_connections(const tw_chat_server_t *s)
{
    return s->nconn;
}

int tw_chat_server_users(const tw_chat_server_t *s)
{
    return s->nusers;
}

void tw_chat_server_shutdown(tw_chat_server_t *s, const char *notice)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    for (client_t *c = s->clients; c; c = c->next) {
        if (c->lost || c->refused || c->dropping)
            continue;
        say_to(c, "* %s", notice ? notice : "server shutting down");
        c->named = false; /* nobody is told of the others leaving */
    }
    s->nusers = 0;
    flush_all(s);
    for (client_t *c = s->clients; c; c = c->next) {
        tw_line_receiver_stop(&c->lr);
        tw_transport_lose_connection(transport_of(c));
    }
}

static void server_maybe_free(tw_chat_server_t *s)
{
    if (s->freeing && s->nconn == 0 && !s->flush_soon)
        free(s);
}

void tw_chat_server_free(tw_chat_server_t *s)
{
    if (!s)
        return;
    s->freeing = true;
    s->shutting_down = true;
    while (s->dirty)
        dirty_remove(s->dirty);
    for (client_t *c = s->clients; c; c = c->next)
        if (!c->lost)
            tw_transport_abort_connection(transport_of(c));
    server_maybe_free(s); /* else the last destroy, or the pending flush, frees it */
}
