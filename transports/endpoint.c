/* endpoint.c -- endpoint strings (Twisted's serverFromString and
 * clientFromString grammar) and the glue that listens or connects on them.
 *
 * A string is read in three steps: the type before the first ':' picks the
 * role (tcp server, unix client, ...); the rest is split into parts, each
 * either positional or key=value, with Twisted's backslash escapes; then the
 * parts are checked and stored one by one, positional ones last.  All of it
 * works in a parser struct on the stack: nothing is allocated, and *ep is
 * written only once everything has been checked.
 */
#define _GNU_SOURCE
#include "tw_endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stream.h" /* tw__factory_use, tw__factory_release */

#define ENDPOINT_MAX_LEN   1024 /* longest endpoint string accepted */
#define ENDPOINT_MAX_PARTS 64   /* most ':'-separated parts */
#define ENDPOINT_ADDR_MAX  64   /* sizeof tw_endpoint_t.host and .bind_host */
#define ENDPOINT_PATH_MAX  108  /* sizeof tw_endpoint_t.path: sun_path's size */
#define ENDPOINT_MAX_SECS  1000000000L /* longest timeout, in seconds (~31 years) */
#define ENDPOINT_TIMEOUT   TW_SEC(30)  /* default client timeout */

/* A user's value in an error message: quoted, cut at 80 bytes. */
#define ENDPOINT_Q "'%.80s'"

/* Roles: which type of endpoint, listening or connecting. */
enum {
    ROLE_TCP_SERVER  = 1u << 0,
    ROLE_TCP6_SERVER = 1u << 1,
    ROLE_UNIX_SERVER = 1u << 2,
    ROLE_TCP_CLIENT  = 1u << 3,
    ROLE_TCP6_CLIENT = 1u << 4,
    ROLE_UNIX_CLIENT = 1u << 5,
};
#define ROLE_TCP_ANY (ROLE_TCP_SERVER | ROLE_TCP6_SERVER | ROLE_TCP_CLIENT | ROLE_TCP6_CLIENT)
#define ROLE_TCP_SRV (ROLE_TCP_SERVER | ROLE_TCP6_SERVER)
#define ROLE_TCP_CLI (ROLE_TCP_CLIENT | ROLE_TCP6_CLIENT)

typedef enum endpoint_opt {
    OPT_PORT, OPT_INTERFACE, OPT_BACKLOG, OPT_REUSEPORT, OPT_V6ONLY,
    OPT_ADDRESS, OPT_MODE, OPT_LOCKFILE, OPT_WANTPID,
    OPT_HOST, OPT_TIMEOUT, OPT_BIND, OPT_PATH, OPT_CHECKPID,
    OPT_COUNT
} endpoint_opt_t;

/* Option names are Twisted's (camelCase included), plus twine's reuseport
 * and v6only.  Error messages list them in the order of the enum above. */
static const struct {
    const char *name;
    unsigned roles;
} endpoint_opts[OPT_COUNT] = {
    [OPT_PORT]      = { "port", ROLE_TCP_ANY },
    [OPT_HOST]      = { "host", ROLE_TCP_CLI },
    [OPT_INTERFACE] = { "interface", ROLE_TCP_SRV },
    [OPT_ADDRESS]   = { "address", ROLE_UNIX_SERVER },
    [OPT_PATH]      = { "path", ROLE_UNIX_CLIENT },
    [OPT_MODE]      = { "mode", ROLE_UNIX_SERVER },
    [OPT_BACKLOG]   = { "backlog", ROLE_TCP_SRV | ROLE_UNIX_SERVER },
    [OPT_REUSEPORT] = { "reuseport", ROLE_TCP_SRV },
    [OPT_V6ONLY]    = { "v6only", ROLE_TCP6_SERVER },
    [OPT_TIMEOUT]   = { "timeout", ROLE_TCP_CLI | ROLE_UNIX_CLIENT },
    [OPT_BIND]      = { "bindAddress", ROLE_TCP_CLI },
    [OPT_LOCKFILE]  = { "lockfile", ROLE_UNIX_SERVER },
    [OPT_WANTPID]   = { "wantPID", ROLE_UNIX_SERVER },
    [OPT_CHECKPID]  = { "checkPID", ROLE_UNIX_CLIENT },
};

typedef struct endpoint_part {
    char *key; /* NULL for a positional part */
    char *val; /* unescaped, NUL-terminated, in parser.text */
    bool used; /* read as part of an earlier option's address */
} endpoint_part_t;

typedef struct endpoint_parser {
    tw_endpoint_t ep;
    unsigned role;
    const char *type; /* "tcp", "tcp6" or "unix" */
    const char *what; /* "tcp server", ... for messages */
    char *err;
    size_t errlen;
    unsigned seen;    /* options given, 1 << endpoint_opt_t */
    bool absorbed;    /* an address option took the parts after it */
    bool split;       /* an address option is followed by positional parts */
    int nparts;
    endpoint_part_t part[ENDPOINT_MAX_PARTS];
    int npos;
    const char *pos[ENDPOINT_MAX_PARTS];
    char text[ENDPOINT_MAX_LEN + 2];
    char joined[2][ENDPOINT_ADDR_MAX]; /* addresses put together from parts */
} endpoint_parser_t;

static const char endpoint_v6_hint[] =
    " (write IPv6 addresses in [brackets] or with each ':' escaped as '\\:')";

/* ---- messages ------------------------------------------------------------ */

static void endpoint_vmessage(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
}

static void endpoint_message(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void endpoint_message(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    endpoint_vmessage(err, errlen, fmt, ap);
    va_end(ap);
}

static int endpoint_fail(endpoint_parser_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record why the string is refused; returns -EINVAL for the caller to pass up. */
static int endpoint_fail(endpoint_parser_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    endpoint_vmessage(p->err, p->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- values ------------------------------------------------------------- */

/* 4 or 6 for a literal IPv4 or IPv6 address, else 0. */
static int endpoint_family(const char *s)
{
    struct in6_addr a;
    if (inet_pton(AF_INET, s, &a) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, &a) == 1)
        return 6;
    return 0;
}

/* A decimal (base 10) or octal (base 8) number of digits only, at most max:
 * 0 and *out; -1 when it is not such a number; -2 when it is too large. */
static int endpoint_number(const char *s, int base, long max, long *out)
{
    long n = 0;
    bool big = false;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s >= '0' + base)
            return -1;
        if (!big)
            n = n * base + (*s - '0');
        big = big || n > max;
    }
    if (big)
        return -2;
    *out = n;
    return 0;
}

static int endpoint_port(endpoint_parser_t *p, const char *name, const char *v, int *out)
{
    long min = p->ep.server ? 0 : 1, n = 0;
    int rc = endpoint_number(v, 10, 65535, &n);
    if (rc == -1)
        return endpoint_fail(p, "%s " ENDPOINT_Q " is not a number", name, v);
    if (rc == -2 || n < min)
        return endpoint_fail(p, "%s %.80s is out of range (%ld..65535%s)", name, v, min,
                             min ? " for a client" : "");
    *out = (int)n;
    return 0;
}

/* A literal address for host= or interface= (optionally "[IPv6]"), copied
 * unbracketed into out. */
static int endpoint_address(endpoint_parser_t *p, const char *name, const char *v, char *out)
{
    char inner[ENDPOINT_ADDR_MAX];
    size_t n = strlen(v);
    const char *a = v;
    if (n == 0)
        return endpoint_fail(p, "%s is empty", name);
    if (v[0] == '[') {
        if (n < 2 || v[n - 1] != ']' || n - 2 >= sizeof inner)
            return endpoint_fail(p, "%s " ENDPOINT_Q " is not an address in brackets ([::1])",
                                 name, v);
        memcpy(inner, v + 1, n - 2);
        inner[n - 2] = '\0';
        if (endpoint_family(inner) != 6)
            return endpoint_fail(p, "%s " ENDPOINT_Q " is not an IPv6 address (brackets are "
                                 "for IPv6)", name, v);
        a = inner;
    }
    int family = endpoint_family(a);
    const char *hint = strchr(v, ':') || p->split ? endpoint_v6_hint : "";
    if (family == 0 && p->ep.server)
        return endpoint_fail(p, "%s " ENDPOINT_Q " is not a literal IPv4 or IPv6 address%s",
                             name, v, hint);
    if (family == 0)
        return endpoint_fail(p, "%s " ENDPOINT_Q " is not a literal IPv4 or IPv6 address: "
                             "host names need DNS support, which twine does not have yet%s",
                             name, v, hint);
    if (family != 6 && p->ep.kind == TW_ENDPOINT_TCP6)
        return endpoint_fail(p, "%s " ENDPOINT_Q " is not an IPv6 address, which tcp6 needs "
                             "(use tcp for IPv4)", name, v);
    snprintf(out, ENDPOINT_ADDR_MAX, "%s", a);
    return 0;
}

/* bindAddress: ADDR, IPv4:PORT, [IPv6] or [IPv6]:PORT.  With p NULL, only
 * says whether v is one (0) or not (-EINVAL), quietly. */
static int endpoint_bind_split(endpoint_parser_t *p, const char *v, char *host, int *port)
{
    char h[ENDPOINT_ADDR_MAX];
    const char *portstr = NULL;
    size_t n;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        n = close ? (size_t)(close - v - 1) : 0;
        if (!close || n >= sizeof h || (close[1] && close[1] != ':'))
            goto bad;
        memcpy(h, v + 1, n);
        h[n] = '\0';
        if (endpoint_family(h) != 6)
            goto bad;
        portstr = close[1] ? close + 2 : NULL;
    } else if (endpoint_family(v)) {
        if (strlen(v) >= sizeof h)
            goto bad;
        strcpy(h, v);
    } else {
        const char *colon = strrchr(v, ':');
        n = colon ? (size_t)(colon - v) : 0;
        if (!colon || n >= sizeof h)
            goto bad;
        memcpy(h, v, n);
        h[n] = '\0';
        if (endpoint_family(h) != 4)
            goto bad;
        portstr = colon + 1;
    }
    long pn = 0;
    if (portstr) {
        int rc = endpoint_number(portstr, 10, 65535, &pn);
        if (rc < 0 && !p)
            return -EINVAL;
        if (rc == -1)
            return endpoint_fail(p, "bindAddress port " ENDPOINT_Q " is not a number", portstr);
        if (rc == -2)
            return endpoint_fail(p, "bindAddress port %.80s is out of range (0..65535)",
                                 portstr);
    }
    if (host)
        snprintf(host, ENDPOINT_ADDR_MAX, "%s", h);
    if (port)
        *port = (int)pn;
    return 0;
bad:
    if (!p)
        return -EINVAL;
    if (!*v)
        return endpoint_fail(p, "bindAddress is empty");
    return endpoint_fail(p, "bindAddress " ENDPOINT_Q " is not a literal address, IPv4:port or "
                         "[IPv6]:port (host names need DNS support, which twine does not "
                         "have yet)", v);
}

static bool endpoint_addr_ok(const char *v, bool bind)
{
    if (bind)
        return endpoint_bind_split(NULL, v, NULL, NULL) == 0;
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '[' && v[n - 1] == ']' && n - 2 < ENDPOINT_ADDR_MAX) {
        char inner[ENDPOINT_ADDR_MAX];
        memcpy(inner, v + 1, n - 2);
        inner[n - 2] = '\0';
        return endpoint_family(inner) == 6;
    }
    return endpoint_family(v) != 0;
}

static bool endpoint_all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* The value of the address option in part i.  An unescaped IPv6 address was
 * split at its colons: when the value is not an address by itself, put it
 * back together from the positional parts that follow, as many as make the
 * longest address.  After bindAddress=ADDR, an all-digit part is its port. */
static const char *endpoint_absorb(endpoint_parser_t *p, int i, bool bind)
{
    const char *v = p->part[i].val;
    char *buf = p->joined[bind];
    size_t len = strlen(v);
    int best = i;
    size_t bestlen = 0;
    if (len >= ENDPOINT_ADDR_MAX)
        return v;
    memcpy(buf, v, len + 1);
    if (endpoint_addr_ok(v, bind)) {
        if (!bind || i + 1 >= p->nparts || p->part[i + 1].key)
            return v;
        /* Only IPv4 and [IPv6] without a port yet: "::1:80" is an address. */
        const char *next = p->part[i + 1].val;
        bool takes_port = v[0] == '[' ? strstr(v, "]:") == NULL : endpoint_family(v) == 4;
        size_t nl = strlen(next);
        if (!takes_port || !endpoint_all_digits(next) || len + 1 + nl >= ENDPOINT_ADDR_MAX)
            return v;
        buf[len] = ':';
        memcpy(buf + len + 1, next, nl + 1);
        p->part[i + 1].used = true;
        return buf;
    }
    for (int j = i + 1; j < p->nparts && !p->part[j].key; j++) {
        size_t vl = strlen(p->part[j].val);
        if (len + 1 + vl >= ENDPOINT_ADDR_MAX)
            break;
        buf[len++] = ':';
        memcpy(buf + len, p->part[j].val, vl + 1);
        len += vl;
        if (endpoint_addr_ok(buf, bind)) {
            best = j;
            bestlen = len;
        }
    }
    /* No address either way: the value is refused, so show it with its colons
     * ("fe80::1%eth0", not "fe80"). */
    if (best == i) {
        p->split = len > strlen(v);
        return p->split && *v ? buf : v;
    }
    buf[bestlen] = '\0';
    for (int j = i + 1; j <= best; j++)
        p->part[j].used = true;
    p->absorbed = true;
    return buf;
}

static int endpoint_bool(endpoint_parser_t *p, const char *name, const char *v, bool *out)
{
    if (strcmp(v, "yes") == 0 || strcmp(v, "no") == 0) {
        *out = v[0] == 'y';
        return 0;
    }
    return endpoint_fail(p, "%s must be yes or no, not " ENDPOINT_Q, name, v);
}

/* Twisted's lockfile, wantPID and checkPID: 0 or 1, and ignored here. */
static int endpoint_ignored_flag(endpoint_parser_t *p, const char *name, const char *v)
{
    if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)
        return 0;
    return endpoint_fail(p, "%s must be 0 or 1, not " ENDPOINT_Q " (twine accepts and ignores it)",
                         name, v);
}

static int endpoint_path(endpoint_parser_t *p, const char *name, const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return endpoint_fail(p, "%s is empty", name);
    if (strcmp(v, "@") == 0)
        return endpoint_fail(p, "%s '@' has no abstract socket name after the '@'", name);
    if (n >= ENDPOINT_PATH_MAX)
        return endpoint_fail(p, "%s '%.40s...' is too long (%zu bytes; at most %d)", name, v,
                             n, ENDPOINT_PATH_MAX - 1);
    memcpy(p->ep.path, v, n + 1);
    return 0;
}

/* Seconds as a decimal ("5", "0.5", ".25"), to the nanosecond, or "none". */
static int endpoint_timeout(endpoint_parser_t *p, const char *v)
{
    int64_t secs = 0, frac = 0;
    int digits = 0, decimals = 0;
    const char *s = v;
    if (strcmp(v, "none") == 0) {
        p->ep.timeout = TW_TIME_MAX;
        return 0;
    }
    for (; *s >= '0' && *s <= '9'; s++, digits++)
        if (secs <= ENDPOINT_MAX_SECS)
            secs = secs * 10 + (*s - '0');
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++, digits++, decimals++)
            if (decimals < 9)
                frac = frac * 10 + (*s - '0');
    if (*s || digits == 0)
        return endpoint_fail(p, "timeout " ENDPOINT_Q " is not a number of seconds (e.g. 5 or "
                             "0.5, or none)", v);
    if (decimals > 9)
        return endpoint_fail(p, "timeout " ENDPOINT_Q " has more than 9 decimals", v);
    for (int d = decimals; d < 9; d++)
        frac *= 10;
    if (secs > ENDPOINT_MAX_SECS || (secs == ENDPOINT_MAX_SECS && frac))
        return endpoint_fail(p, "timeout %.80s is too long (at most %ld seconds; none: no "
                             "limit)", v, ENDPOINT_MAX_SECS);
    if (secs == 0 && frac == 0)
        return endpoint_fail(p, "timeout %.80s is not more than 0 seconds (none: no limit)", v);
    p->ep.timeout = TW_SEC(secs) + frac;
    return 0;
}

/* ---- parsing ------------------------------------------------------------ */

static bool endpoint_is_address_key(const char *key)
{
    return strcmp(key, "host") == 0 || strcmp(key, "interface") == 0 ||
           strcmp(key, "bindAddress") == 0;
}

/* Split s into parts at unescaped ':'s; a part's first unescaped '=' makes it
 * key=value.  For TCP, a positional part or an address value that starts
 * with '[' runs to its ']', colons and all. */
static int endpoint_split(endpoint_parser_t *p, const char *s)
{
    char *o = p->text;
    bool tcp = (p->role & ROLE_TCP_ANY) != 0;
    for (;;) {
        if (p->nparts == ENDPOINT_MAX_PARTS)
            return endpoint_fail(p, "too many ':'-separated parts (at most %d)",
                                 ENDPOINT_MAX_PARTS);
        endpoint_part_t *pt = &p->part[p->nparts++];
        pt->key = NULL;
        pt->val = o;
        pt->used = false;
        bool value_start = true, brackets = tcp;
        for (;;) {
            if (value_start && brackets && *s == '[') {
                const char *open = s;
                *o++ = *s++;
                while (*s && *s != ']') {
                    if (*s == '\\' && !*++s)
                        break;
                    *o++ = *s++;
                }
                if (*s != ']')
                    return endpoint_fail(p, "'[' without its ']' in " ENDPOINT_Q, open);
                *o++ = *s++;
            }
            value_start = false;
            if (*s == '\0' || *s == ':')
                break;
            if (*s == '=' && !pt->key) {
                *o++ = '\0';
                pt->key = pt->val;
                pt->val = o;
                s++;
                value_start = true;
                brackets = tcp && endpoint_is_address_key(pt->key);
                continue;
            }
            if (*s == '\\' && !*++s)
                return endpoint_fail(p, "the string ends in a lone backslash (write a "
                                     "backslash as '\\\\')");
            *o++ = *s++;
        }
        *o++ = '\0';
        if (*s == '\0')
            return 0;
        s++;
    }
}

static int endpoint_unknown_option(endpoint_parser_t *p, const char *key)
{
    char list[160] = "";
    size_t n = 0;
    bool elsewhere = false;
    for (int i = 0; i < OPT_COUNT; i++) {
        if (strcmp(key, endpoint_opts[i].name) == 0)
            elsewhere = true;
        if ((endpoint_opts[i].roles & p->role) && n < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "",
                                  endpoint_opts[i].name);
    }
    if (!*key)
        return endpoint_fail(p, "an option has no name before its '=' (options of %ss: %s)",
                             p->what, list);
    if (elsewhere)
        return endpoint_fail(p, "option " ENDPOINT_Q " does not apply to %ss (options of %ss: "
                             "%s)", key, p->what, p->what, list);
    return endpoint_fail(p, "unknown option " ENDPOINT_Q " for %ss (options of %ss: %s)", key,
                         p->what, p->what, list);
}

static int endpoint_option(endpoint_parser_t *p, int i)
{
    const char *key = p->part[i].key, *v = p->part[i].val;
    int opt = 0;
    while (opt < OPT_COUNT &&
           !(strcmp(key, endpoint_opts[opt].name) == 0 && (endpoint_opts[opt].roles & p->role)))
        opt++;
    if (opt == OPT_COUNT)
        return endpoint_unknown_option(p, key);
    if (p->seen & (1u << opt))
        return endpoint_fail(p, "option " ENDPOINT_Q " is given twice", key);
    p->seen |= 1u << opt;
    if (opt == OPT_HOST || opt == OPT_INTERFACE || opt == OPT_BIND)
        v = endpoint_absorb(p, i, opt == OPT_BIND);
    if (!*v)
        return endpoint_fail(p, "option " ENDPOINT_Q " has an empty value", key);

    long n = 0;
    int rc;
    switch ((endpoint_opt_t)opt) {
    case OPT_PORT:
        return endpoint_port(p, key, v, &p->ep.port);
    case OPT_HOST:
    case OPT_INTERFACE:
        return endpoint_address(p, key, v, p->ep.host);
    case OPT_BIND:
        return endpoint_bind_split(p, v, p->ep.bind_host, &p->ep.bind_port);
    case OPT_BACKLOG:
        rc = endpoint_number(v, 10, 65535, &n);
        if (rc == -1)
            return endpoint_fail(p, "backlog " ENDPOINT_Q " is not a number", v);
        if (rc == -2 || n < 1)
            return endpoint_fail(p, "backlog %.80s is out of range (1..65535)", v);
        p->ep.backlog = (int)n;
        return 0;
    case OPT_REUSEPORT:
        return endpoint_bool(p, key, v, &p->ep.reuseport);
    case OPT_V6ONLY:
        return endpoint_bool(p, key, v, &p->ep.v6only);
    case OPT_ADDRESS:
    case OPT_PATH:
        return endpoint_path(p, key, v);
    case OPT_MODE:
        rc = endpoint_number(v, 8, 0777, &n);
        if (rc == -1)
            return endpoint_fail(p, "mode " ENDPOINT_Q " is not an octal number (e.g. 660)", v);
        if (rc == -2 || n == 0)
            return endpoint_fail(p, "mode %.80s is out of range (1..777, octal)", v);
        p->ep.mode = (int)n;
        return 0;
    case OPT_TIMEOUT:
        return endpoint_timeout(p, v);
    case OPT_LOCKFILE:
    case OPT_WANTPID:
    case OPT_CHECKPID:
        return endpoint_ignored_flag(p, key, v);
    case OPT_COUNT:
        break;
    }
    return endpoint_fail(p, "option " ENDPOINT_Q " is not handled", key);
}

static int endpoint_extra(endpoint_parser_t *p, const char *arg, const char *why)
{
    return endpoint_fail(p, "unexpected argument " ENDPOINT_Q ": %s", arg, why);
}

/* Give the positional arguments their meaning, then check what is missing. */
static int endpoint_positional(endpoint_parser_t *p)
{
    const char *hint = p->absorbed ? " (the ':' parts after an unescaped address were read as "
                                     "part of it: put the address in [brackets] or escape "
                                     "its ':' as '\\:')" : "";
    bool has_port = p->seen & (1u << OPT_PORT), has_host = p->seen & (1u << OPT_HOST);
    int rc = 0;
    if (p->role & ROLE_TCP_SRV) {
        if (p->npos > 1)
            return endpoint_extra(p, p->pos[1], "a tcp server takes only its port "
                                  "positionally; give the rest as key=value");
        if (p->npos == 1 && has_port)
            return endpoint_fail(p, "port given twice: " ENDPOINT_Q " and port=", p->pos[0]);
        if (p->npos == 1)
            return endpoint_port(p, "port", p->pos[0], &p->ep.port);
        if (!has_port)
            return endpoint_fail(p, "missing port (e.g. %s:8000)%s", p->type, hint);
        return 0;
    }
    if (p->role & (ROLE_UNIX_SERVER | ROLE_UNIX_CLIENT)) {
        const char *name = p->ep.server ? "address" : "path";
        bool has_path = p->seen & (1u << (p->ep.server ? OPT_ADDRESS : OPT_PATH));
        if (p->npos > 1)
            return endpoint_extra(p, p->pos[1], "a path is the only positional argument "
                                  "(escape ':' in paths as '\\:')");
        if (p->npos == 1 && has_path)
            return endpoint_fail(p, "path given twice: " ENDPOINT_Q " and %s=", p->pos[0], name);
        if (p->npos == 1)
            return endpoint_path(p, "path", p->pos[0]);
        if (!has_path)
            return endpoint_fail(p, "missing path (e.g. unix:/run/x.sock)");
        return 0;
    }
    /* TCP clients, Twisted's rule: HOST:PORT, or one of them beside host=/port=. */
    if (p->npos > 2)
        return endpoint_extra(p, p->pos[2], "a tcp client takes at most HOST:PORT "
                              "positionally (write IPv6 addresses in [brackets] or with ':' "
                              "escaped as '\\:')");
    if (p->npos == 2 && has_host)
        return endpoint_fail(p, "host given twice: " ENDPOINT_Q " and host=", p->pos[0]);
    if (p->npos == 2 && has_port)
        return endpoint_fail(p, "port given twice: " ENDPOINT_Q " and port=", p->pos[1]);
    if (p->npos == 1 && has_host && has_port)
        return endpoint_extra(p, p->pos[0], "host and port are already given");
    if (p->npos == 2) {
        rc = endpoint_address(p, "host", p->pos[0], p->ep.host);
        if (rc == 0)
            rc = endpoint_port(p, "port", p->pos[1], &p->ep.port);
        has_host = has_port = true;
    } else if (p->npos == 1 && has_host) {
        rc = endpoint_port(p, "port", p->pos[0], &p->ep.port);
        has_port = true;
    } else if (p->npos == 1) {
        rc = endpoint_address(p, "host", p->pos[0], p->ep.host);
        has_host = true;
    }
    if (rc < 0)
        return rc;
    if (!has_host)
        return endpoint_fail(p, "missing host (e.g. %s:host=%s:port=80)", p->type,
                             p->ep.kind == TW_ENDPOINT_TCP6 ? "[::1]" : "127.0.0.1");
    if (!has_port)
        return endpoint_fail(p, "missing port (e.g. %s:host=%s:port=80)%s", p->type,
                             p->ep.kind == TW_ENDPOINT_TCP6 ? "[::1]" : "127.0.0.1", hint);
    return 0;
}

/* Checks that involve several options. */
static int endpoint_finish(endpoint_parser_t *p)
{
    tw_endpoint_t *ep = &p->ep;
    if (ep->kind == TW_ENDPOINT_UNIX && ep->mode && ep->path[0] == '@')
        return endpoint_fail(p, "mode does not apply to the abstract socket " ENDPOINT_Q,
                             ep->path);
    if (ep->bind_host[0] && endpoint_family(ep->bind_host) != endpoint_family(ep->host))
        return endpoint_fail(p, "bindAddress " ENDPOINT_Q " and host " ENDPOINT_Q " are not of "
                             "the same family (IPv4, IPv6)", ep->bind_host, ep->host);
    return 0;
}

static int endpoint_parse(const char *s, tw_endpoint_t *ep, bool server, char *err,
                          size_t errlen)
{
    endpoint_parser_t p;
    memset(&p, 0, sizeof p);
    p.err = err;
    p.errlen = errlen;
    p.ep.server = server;
    if (err && errlen > 0)
        err[0] = '\0';
    if (!s || !*s)
        return endpoint_fail(&p, "empty endpoint string (e.g. %s)",
                             server ? "tcp:8000" : "tcp:host=127.0.0.1:port=8000");
    size_t len = strnlen(s, ENDPOINT_MAX_LEN + 1);
    if (len > ENDPOINT_MAX_LEN)
        return endpoint_fail(&p, "endpoint string is too long (over %d bytes)",
                             ENDPOINT_MAX_LEN);

    const char *colon = strchr(s, ':');
    size_t tlen = colon ? (size_t)(colon - s) : len;
    if (tlen == 3 && memcmp(s, "tcp", 3) == 0) {
        p.ep.kind = TW_ENDPOINT_TCP;
        p.type = "tcp";
        p.role = server ? ROLE_TCP_SERVER : ROLE_TCP_CLIENT;
        p.what = server ? "tcp server" : "tcp client";
    } else if (tlen == 4 && memcmp(s, "tcp6", 4) == 0) {
        p.ep.kind = TW_ENDPOINT_TCP6;
        p.type = "tcp6";
        p.role = server ? ROLE_TCP6_SERVER : ROLE_TCP6_CLIENT;
        p.what = server ? "tcp6 server" : "tcp6 client";
    } else if (tlen == 4 && memcmp(s, "unix", 4) == 0) {
        p.ep.kind = TW_ENDPOINT_UNIX;
        p.type = "unix";
        p.role = server ? ROLE_UNIX_SERVER : ROLE_UNIX_CLIENT;
        p.what = server ? "unix server" : "unix client";
    } else if (tlen == 0) {
        return endpoint_fail(&p, "missing endpoint type before the first ':' (tcp, tcp6 or "
                             "unix)");
    } else {
        return endpoint_fail(&p, "unknown endpoint type '%.*s' (expected tcp, tcp6 or unix)",
                             (int)(tlen > 80 ? 80 : tlen), s);
    }
    if (!server)
        p.ep.timeout = ENDPOINT_TIMEOUT;

    int rc = colon ? endpoint_split(&p, colon + 1) : 0;
    for (int i = 0; rc == 0 && i < p.nparts; i++) {
        endpoint_part_t *pt = &p.part[i];
        if (pt->used)
            continue;
        pt->used = true;
        if (pt->key)
            rc = endpoint_option(&p, i);
        else if (*pt->val)
            p.pos[p.npos++] = pt->val;
        else
            rc = endpoint_fail(&p, "%s%s", i == p.nparts - 1
                               ? "trailing ':' with nothing after it"
                               : "empty argument between two ':'",
                               (p.role & ROLE_TCP_ANY) && i < p.nparts - 1
                                   ? endpoint_v6_hint : "");
    }
    if (rc == 0)
        rc = endpoint_positional(&p);
    if (rc == 0)
        rc = endpoint_finish(&p);
    if (rc == 0)
        *ep = p.ep;
    return rc;
}

int tw_endpoint_parse_server(const char *s, tw_endpoint_t *ep, char *err, size_t errlen)
{
    return endpoint_parse(s, ep, true, err, errlen);
}

int tw_endpoint_parse_client(const char *s, tw_endpoint_t *ep, char *err, size_t errlen)
{
    return endpoint_parse(s, ep, false, err, errlen);
}

/* ---- formatting --------------------------------------------------------- */

typedef struct endpoint_out {
    char *buf;
    size_t len; /* size of buf */
    size_t n;   /* length of the whole string, written or not */
} endpoint_out_t;

static void endpoint_put(endpoint_out_t *o, char c)
{
    if (o->n + 1 < o->len)
        o->buf[o->n] = c;
    o->n++;
}

static void endpoint_puts(endpoint_out_t *o, const char *s)
{
    for (; *s; s++)
        endpoint_put(o, *s);
}

/* A value with Twisted's escapes: ':', '=' and '\' get a backslash. */
static void endpoint_put_escaped(endpoint_out_t *o, const char *s)
{
    for (; *s; s++) {
        if (*s == ':' || *s == '=' || *s == '\\')
            endpoint_put(o, '\\');
        endpoint_put(o, *s);
    }
}

static void endpoint_printf(endpoint_out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void endpoint_printf(endpoint_out_t *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    endpoint_puts(o, tmp);
}

static void endpoint_put_timeout(endpoint_out_t *o, tw_time_t t)
{
    if (t == TW_TIME_MAX) {
        endpoint_puts(o, ":timeout=none");
        return;
    }
    char frac[16];
    snprintf(frac, sizeof frac, ".%09lld", (long long)(t % TW_SEC(1)));
    size_t n = strlen(frac);
    while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    endpoint_printf(o, ":timeout=%lld%s", (long long)(t / TW_SEC(1)), n > 1 ? frac : "");
}

int tw_endpoint_format(const tw_endpoint_t *ep, char *buf, size_t len)
{
    endpoint_out_t o = { buf, len, 0 };
    static const char *const types[] = { "tcp", "tcp6", "unix" };
    if ((unsigned)ep->kind > TW_ENDPOINT_UNIX || !memchr(ep->host, 0, sizeof ep->host) ||
        !memchr(ep->path, 0, sizeof ep->path) ||
        !memchr(ep->bind_host, 0, sizeof ep->bind_host) || ep->timeout < 0) {
        if (buf && len > 0)
            buf[0] = '\0';
        return -EINVAL;
    }
    endpoint_puts(&o, types[ep->kind]);
    endpoint_put(&o, ':');
    if (ep->kind == TW_ENDPOINT_UNIX) {
        if (!ep->server)
            endpoint_puts(&o, "path=");
        endpoint_put_escaped(&o, ep->path);
        if (ep->mode)
            endpoint_printf(&o, ":mode=%o", (unsigned)ep->mode);
    } else if (ep->server) {
        endpoint_printf(&o, "%d", ep->port);
        if (ep->host[0]) {
            endpoint_puts(&o, ":interface=");
            endpoint_put_escaped(&o, ep->host);
        }
    } else {
        endpoint_puts(&o, "host=");
        endpoint_put_escaped(&o, ep->host);
        endpoint_printf(&o, ":port=%d", ep->port);
    }
    if (ep->server) {
        if (ep->backlog)
            endpoint_printf(&o, ":backlog=%d", ep->backlog);
        if (ep->reuseport)
            endpoint_puts(&o, ":reuseport=yes");
        if (ep->v6only)
            endpoint_puts(&o, ":v6only=yes");
    } else {
        if (ep->timeout && ep->timeout != ENDPOINT_TIMEOUT)
            endpoint_put_timeout(&o, ep->timeout);
        if (ep->bind_host[0]) {
            bool v6 = strchr(ep->bind_host, ':') != NULL;
            endpoint_puts(&o, ":bindAddress=");
            if (v6 && ep->bind_port) {
                endpoint_put(&o, '[');
                endpoint_puts(&o, ep->bind_host);
                endpoint_put(&o, ']');
            } else {
                endpoint_put_escaped(&o, ep->bind_host);
            }
            if (ep->bind_port)
                endpoint_printf(&o, "\\:%d", ep->bind_port);
        }
    }
    if (len > 0)
        buf[o.n < len ? o.n : len - 1] = '\0';
    return o.n < len ? (int)o.n : -ENOSPC;
}

/* ---- listen and connect ------------------------------------------------- */

static const char *endpoint_domain(const tw_endpoint_t *ep)
{
    return ep->kind == TW_ENDPOINT_UNIX ? "unix" : "tcp";
}

static int endpoint_listen_ep(tw_reactor_t *r, const tw_endpoint_t *ep, tw_factory_t *f,
                              tw_listener_t **out)
{
    if (ep->kind == TW_ENDPOINT_UNIX) {
        tw_unix_listen_opts_t o = { .path = ep->path, .mode = ep->mode,
                                    .backlog = ep->backlog };
        return tw_unix_listen(r, f, &o, out);
    }
    bool six = ep->kind == TW_ENDPOINT_TCP6;
    tw_tcp_listen_opts_t o = {
        .interface = ep->host[0] ? ep->host : six ? "::" : NULL,
        .port = ep->port,
        .backlog = ep->backlog,
        .family = six ? AF_INET6 : 0,
        .v6only = ep->v6only,
        .reuseport = ep->reuseport,
    };
    return tw_tcp_listen(r, f, &o, out);
}

static int endpoint_connect_ep(tw_reactor_t *r, const tw_endpoint_t *ep, tw_factory_t *f,
                               tw_connector_t **out)
{
    if (ep->kind == TW_ENDPOINT_UNIX)
        return tw_unix_connect(r, f, ep->path, ep->timeout, out);
    tw_tcp_connect_opts_t o = {
        .host = ep->host,
        .port = ep->port,
        .timeout = ep->timeout,
        .bind_address = ep->bind_host[0] ? ep->bind_host : NULL,
        .bind_port = ep->bind_port,
    };
    return tw_tcp_connect(r, f, &o, out);
}

int tw_endpoint_listen(tw_reactor_t *r, const char *s, tw_factory_t *f, tw_listener_t **out,
                       char *err, size_t errlen)
{
    tw_endpoint_t ep;
    int rc = tw_endpoint_parse_server(s, &ep, err, errlen);
    if (rc < 0)
        return rc;
    rc = endpoint_listen_ep(r, &ep, f, out);
    if (rc < 0)
        endpoint_message(err, errlen, "listen on %s: %s", s, tw_strerror(rc));
    return rc;
}

int tw_endpoint_connect(tw_reactor_t *r, const char *s, tw_factory_t *f, tw_connector_t **out,
                        char *err, size_t errlen)
{
    tw_endpoint_t ep;
    int rc = tw_endpoint_parse_client(s, &ep, err, errlen);
    if (rc < 0)
        return rc;
    rc = endpoint_connect_ep(r, &ep, f, out);
    if (rc < 0)
        endpoint_message(err, errlen, "connect to %s: %s", s, tw_strerror(rc));
    return rc;
}

/* ---- listen and connect with Deferreds ---------------------------------- */

/* A Deferred that has already failed with (domain, code, msg); msg is also
 * the caller's err. */
static tw_deferred_t *endpoint_failed(const char *domain, int code, const char *msg, char *err,
                                      size_t errlen)
{
    endpoint_message(err, errlen, "%s", msg);
    return tw_deferred_fail(tw_failure_new(domain, code, "%s", msg));
}

static void endpoint_listener_free(void *l)
{
    tw_listener_close(l);
}

tw_deferred_t *tw_endpoint_listen_deferred(tw_reactor_t *r, const char *s, tw_factory_t *f,
                                           char *err, size_t errlen)
{
    char msg[512];
    tw_endpoint_t ep;
    tw_listener_t *l = NULL;
    int rc = tw_endpoint_parse_server(s, &ep, msg, sizeof msg);
    if (rc < 0)
        return endpoint_failed("endpoint", rc, msg, err, errlen);
    rc = endpoint_listen_ep(r, &ep, f, &l);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "listen on %.400s: %s", s, tw_strerror(rc));
        return endpoint_failed(endpoint_domain(&ep), rc, msg, err, errlen);
    }
    endpoint_message(err, errlen, "%s", "");
    return tw_deferred_succeed(l, endpoint_listener_free);
}

/* connect: Twisted's _WrappingFactory.  The connector is made with a factory
 * of ours that gets protocols from the user's and learns the outcome: the
 * attempt failed (errback), or the protocol's connection_made ran (callback,
 * right after it), and later the connection ended.  The record owns the
 * connector and frees it, and itself, when the attempt fails or the
 * connection ends.
 *
 * To fire right after connection_made, the protocol's ops are swapped, from
 * build_protocol until connection_made, for a copy whose connection_made is
 * ours; ours puts the user's ops back first.  The stream records our factory
 * as the protocol's and lists the connection under it: ours gives both to
 * the user's factory before the user's connection_made runs, so p->factory,
 * tw_factory_connection_count and tw_factory_lose_connections are the user's
 * as with tw_endpoint_connect. */
typedef struct endpoint_connect {
    tw_factory_t base;        /* first: the connector's factory */
    tw_factory_t *user;       /* builds the protocols */
    tw_connector_t *c;        /* owned */
    tw_deferred_t *d;         /* a reference, until it fires */
    tw_protocol_t *p;         /* built (not yet connected, or connected) */
    const tw_protocol_ops_t *user_ops;
    tw_protocol_ops_t ops;    /* user_ops with our connection_made */
    bool in_build, cancelled;
} endpoint_connect_t;


static void econn_free(endpoint_connect_t *h)
{
    tw_connector_free(h->c); /* releases our factory, and so the user's */
    tw_deferred_unref(h->d);
    free(h);
}

static void econn_made(tw_protocol_t *p, tw_transport_t *t)
{
    endpoint_connect_t *h = TW_CONTAINER_OF(p->ops, endpoint_connect_t, ops);
    p->ops = h->user_ops;
    if (p->factory == &h->base) {
        tw__factory_untrack(t); /* from our factory's list to the user's */
        tw__factory_track(h->user, t);
        p->factory = h->user;
    }
    tw_deferred_t *d = h->d; /* ours now: h may go if the connection ends */
    h->d = NULL;
    if (p->ops->connection_made)
        p->ops->connection_made(p, t);
    if (!tw_deferred_called(d)) /* else cancelled from connection_made */
        tw_deferred_callback(d, p, NULL);
    tw_deferred_unref(d);
}

static tw_protocol_t *econn_build(tw_factory_t *f, const struct sockaddr *addr,
                                  socklen_t addrlen)
{
    endpoint_connect_t *h = (endpoint_connect_t *)f;
    h->in_build = true;
    tw_protocol_t *p = h->user->ops->build_protocol(h->user, addr, addrlen);
    h->in_build = false;
    if (p && h->cancelled) { /* cancelled from the user's build_protocol */
        if (p->ops->destroy)
            p->ops->destroy(p);
        return NULL;
    }
    if (!p)
        return NULL;
    h->p = p;
    h->user_ops = p->ops;
    h->ops = *p->ops;
    h->ops.connection_made = econn_made;
    p->ops = &h->ops;
    return p;
}

static void econn_start(tw_factory_t *f)
{
    tw__factory_use(((endpoint_connect_t *)f)->user);
}

static void econn_stop(tw_factory_t *f)
{
    tw__factory_release(((endpoint_connect_t *)f)->user);
}

static void econn_failed(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *reason)
{
    endpoint_connect_t *h = (endpoint_connect_t *)f;
    tw_deferred_t *d = h->d;
    h->d = NULL;
    if (d && !h->cancelled)
        tw_deferred_errback(d, tw_failure_copy(reason));
    tw_deferred_unref(d);
    econn_free(h);
}

static void econn_lost(tw_factory_t *f, tw_connector_t *c, const tw_failure_t *reason)
{
    econn_free((endpoint_connect_t *)f);
}

static const tw_factory_ops_t econn_ops = {
    .build_protocol = econn_build,
    .start = econn_start,
    .stop = econn_stop,
    .connection_failed = econn_failed,
    .connection_lost = econn_lost,
};

/* Cancelled before it fired: stop the attempt (its failure is not reported:
 * the Deferred gets the cancelled failure), or abort the connection whose
 * connection_made is running (once built, a protocol is connected at once:
 * no callback runs in between). */
static void econn_cancel(tw_deferred_t *d, void *arg)
{
    endpoint_connect_t *h = arg;
    h->cancelled = true;
    if (h->in_build)
        return; /* econn_build refuses the protocol */
    if (h->p)
        tw_transport_abort_connection(h->p->transport);
    else
        tw_connector_stop_connecting(h->c); /* econn_failed frees h */
}

tw_deferred_t *tw_endpoint_connect_deferred(tw_reactor_t *r, const char *s, tw_factory_t *f,
                                            char *err, size_t errlen)
{
    char msg[512];
    tw_endpoint_t ep;
    int rc = tw_endpoint_parse_client(s, &ep, msg, sizeof msg);
    if (rc < 0)
        return endpoint_failed("endpoint", rc, msg, err, errlen);
    if (!f || !f->ops || !f->ops->build_protocol) {
        snprintf(msg, sizeof msg, "connect to %.400s: no factory to build protocols", s);
        return endpoint_failed(endpoint_domain(&ep), -EINVAL, msg, err, errlen);
    }
    endpoint_connect_t *h = calloc(1, sizeof *h);
    tw_deferred_t *d = h ? tw_deferred_new(econn_cancel, h) : NULL;
    if (!d) {
        free(h);
        return NULL;
    }
    h->base.ops = &econn_ops;
    h->user = f;
    h->d = tw_deferred_ref(d);
    rc = endpoint_connect_ep(r, &ep, &h->base, &h->c);
    if (rc < 0) { /* no connector was made, nothing was called */
        snprintf(msg, sizeof msg, "connect to %.400s: %s", s, tw_strerror(rc));
        endpoint_message(err, errlen, "%s", msg);
        h->d = NULL;
        tw_deferred_unref(d);
        free(h);
        tw_deferred_errback(d, tw_failure_new(endpoint_domain(&ep), rc, "%s", msg));
        return d;
    }
    endpoint_message(err, errlen, "%s", "");
    return d;
}
