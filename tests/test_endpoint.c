/* test_endpoint.c -- endpoint strings: parsing, errors and formatting.
 *
 * Only the parser and the formatter are tested here: they need no reactor.
 * tw_endpoint_listen / tw_endpoint_connect are glue over tw_tcp.h and belong
 * with the TCP transport's tests. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tw_endpoint.h"

/* ---- helpers -------------------------------------------------------------- */

static void assert_same_endpoint(const tw_endpoint_t *a, const tw_endpoint_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->server, b->server);
    assert_string_equal(a->host, b->host);
    assert_int_equal(a->port, b->port);
    assert_int_equal(a->backlog, b->backlog);
    assert_int_equal(a->reuseport, b->reuseport);
    assert_int_equal(a->v6only, b->v6only);
    assert_string_equal(a->path, b->path);
    assert_int_equal(a->mode, b->mode);
    assert_true(a->timeout == b->timeout);
    assert_string_equal(a->bind_host, b->bind_host);
    assert_int_equal(a->bind_port, b->bind_port);
    /* A parse zeroes every byte first, so the whole struct compares too. */
    assert_memory_equal(a, b, sizeof *a);
}

static int parse(bool server, const char *s, tw_endpoint_t *ep, char *err, size_t errlen)
{
    return server ? tw_endpoint_parse_server(s, ep, err, errlen)
                  : tw_endpoint_parse_client(s, ep, err, errlen);
}

/* Parse s, which must be accepted, and check that formatting it and parsing
 * the result gives the same endpoint. */
static tw_endpoint_t parse_ok(bool server, const char *s)
{
    tw_endpoint_t ep, again;
    char err[256] = "", buf[TW_ENDPOINT_FORMAT_MAX], err2[256] = "";
    int rc = parse(server, s, &ep, err, sizeof err);
    if (rc != 0)
        fail_msg("'%s' refused: %s", s, err);
    assert_int_equal(ep.server, server);
    int n = tw_endpoint_format(&ep, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    rc = parse(server, buf, &again, err2, sizeof err2);
    if (rc != 0)
        fail_msg("'%s' formatted as '%s', which is refused: %s", s, buf, err2);
    assert_same_endpoint(&ep, &again);
    return ep;
}

static tw_endpoint_t server_ok(const char *s)
{
    return parse_ok(true, s);
}

static tw_endpoint_t client_ok(const char *s)
{
    return parse_ok(false, s);
}

/* The canonical string for s. */
static void assert_format(bool server, const char *s, const char *want)
{
    tw_endpoint_t ep = parse_ok(server, s);
    char buf[TW_ENDPOINT_FORMAT_MAX];
    assert_true(tw_endpoint_format(&ep, buf, sizeof buf) > 0);
    assert_string_equal(buf, want);
}

/* s must be refused with -EINVAL, a message naming `needle`, and *ep
 * untouched. */
static void refused(bool server, const char *s, const char *needle)
{
    tw_endpoint_t ep, before;
    char err[512];
    memset(&ep, 0xA5, sizeof ep);
    memcpy(&before, &ep, sizeof ep);
    memset(err, 'x', sizeof err);
    int rc = parse(server, s, &ep, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("'%s' should be refused (expected message with '%s'), rc %d", s, needle, rc);
    assert_non_null(memchr(err, '\0', sizeof err));
    if (!strstr(err, needle))
        fail_msg("'%s': message '%s' does not mention '%s'", s, err, needle);
    assert_memory_equal(&ep, &before, sizeof ep);
}

/* ---- servers -------------------------------------------------------------- */

static void server_tcp_port_alone_means_all_interfaces_and_defaults(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("tcp:8000");
    assert_int_equal(ep.kind, TW_ENDPOINT_TCP);
    assert_true(ep.server);
    assert_string_equal(ep.host, "");
    assert_int_equal(ep.port, 8000);
    assert_int_equal(ep.backlog, 0); /* tw_tcp.h's default, 128 */
    assert_false(ep.reuseport);
    assert_false(ep.v6only);
    assert_string_equal(ep.path, "");
    assert_int_equal(ep.mode, 0);
    assert_true(ep.timeout == 0);
    assert_string_equal(ep.bind_host, "");
    assert_int_equal(ep.bind_port, 0);
    /* Port 0: the kernel picks one; servers only. */
    assert_int_equal(server_ok("tcp:0").port, 0);
    assert_int_equal(server_ok("tcp:65535").port, 65535);
    assert_int_equal(server_ok("tcp:080").port, 80);
}

static void server_tcp_keywords_set_port_interface_backlog(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("tcp:8000:interface=127.0.0.1:backlog=128");
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 8000);
    assert_int_equal(ep.backlog, 128);
    ep = server_ok("tcp:port=8001:backlog=65535");
    assert_int_equal(ep.port, 8001);
    assert_int_equal(ep.backlog, 65535);
    assert_string_equal(ep.host, "");
    /* Any order. */
    ep = server_ok("tcp:interface=10.1.2.3:backlog=1:port=9");
    assert_string_equal(ep.host, "10.1.2.3");
    assert_int_equal(ep.port, 9);
    assert_int_equal(ep.backlog, 1);
}

static void server_tcp_ipv6_interface_escaped_unescaped_or_bracketed(void **state)
{
    (void)state;
    const char *forms[] = {
        "tcp:port=8000:interface=::1",   "tcp:8000:interface=\\:\\:1",
        "tcp:8000:interface=[::1]",      "tcp:interface=[::1]:port=8000",
        "tcp:interface=::1:port=8000",
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        tw_endpoint_t ep = server_ok(forms[i]);
        assert_int_equal(ep.kind, TW_ENDPOINT_TCP); /* the address says IPv6 */
        assert_string_equal(ep.host, "::1");
        assert_int_equal(ep.port, 8000);
    }
    tw_endpoint_t ep = server_ok("tcp:80:interface=2001:db8::7:backlog=5");
    assert_string_equal(ep.host, "2001:db8::7");
    assert_int_equal(ep.backlog, 5);
    ep = server_ok("tcp:80:interface=::ffff:10.0.0.1");
    assert_string_equal(ep.host, "::ffff:10.0.0.1");
    ep = server_ok("tcp:80:interface=::");
    assert_string_equal(ep.host, "::");
}

static void server_tcp6_is_ipv6_with_v6only_and_reuseport(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("tcp6:8000:interface=::1");
    assert_int_equal(ep.kind, TW_ENDPOINT_TCP6);
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 8000);
    /* No interface: "" (the listen glue passes "::" with AF_INET6). */
    ep = server_ok("tcp6:8000");
    assert_int_equal(ep.kind, TW_ENDPOINT_TCP6);
    assert_string_equal(ep.host, "");
    ep = server_ok("tcp6:8000:v6only=yes:reuseport=yes");
    assert_true(ep.v6only);
    assert_true(ep.reuseport);
    ep = server_ok("tcp6:8000:v6only=no:reuseport=no");
    assert_false(ep.v6only);
    assert_false(ep.reuseport);
    assert_true(server_ok("tcp:1:reuseport=yes").reuseport);
}

static void server_unix_takes_path_mode_and_backlog(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("unix:/run/x.sock:mode=660:backlog=50");
    assert_int_equal(ep.kind, TW_ENDPOINT_UNIX);
    assert_string_equal(ep.path, "/run/x.sock");
    assert_int_equal(ep.mode, 0660); /* octal */
    assert_int_equal(ep.backlog, 50);
    assert_string_equal(ep.host, "");
    assert_int_equal(ep.port, 0);
    ep = server_ok("unix:address=/run/x.sock");
    assert_string_equal(ep.path, "/run/x.sock");
    assert_int_equal(ep.mode, 0); /* left as created */
    assert_int_equal(server_ok("unix:/a:mode=0777").mode, 0777);
    assert_int_equal(server_ok("unix:/a:mode=1").mode, 1);
    assert_string_equal(server_ok("unix:relative.sock").path, "relative.sock");
}

static void server_unix_at_sign_is_the_abstract_namespace(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("unix:@abstract");
    assert_string_equal(ep.path, "@abstract");
    assert_string_equal(server_ok("unix:address=@x:backlog=3").path, "@x");
    assert_string_equal(client_ok("unix:@abstract").path, "@abstract");
}

static void server_unix_accepts_and_ignores_lockfile_and_wantpid(void **state)
{
    (void)state;
    tw_endpoint_t a = server_ok("unix:/run/x.sock");
    tw_endpoint_t b = server_ok("unix:/run/x.sock:lockfile=1:wantPID=1");
    assert_same_endpoint(&a, &b);
    b = server_ok("unix:lockfile=0:/run/x.sock:wantPID=0");
    assert_same_endpoint(&a, &b);
}

/* ---- clients -------------------------------------------------------------- */

static void client_tcp_keyword_and_positional_forms(void **state)
{
    (void)state;
    tw_endpoint_t ep = client_ok("tcp:host=127.0.0.1:port=8000:timeout=5");
    assert_int_equal(ep.kind, TW_ENDPOINT_TCP);
    assert_false(ep.server);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 8000);
    assert_true(ep.timeout == TW_SEC(5));
    assert_int_equal(ep.backlog, 0);
    tw_endpoint_t pos = client_ok("tcp:127.0.0.1:8000:timeout=5");
    assert_same_endpoint(&ep, &pos);
    pos = client_ok("tcp:port=8000:timeout=5:host=127.0.0.1");
    assert_same_endpoint(&ep, &pos);
    assert_int_equal(client_ok("tcp:1.2.3.4:65535").port, 65535);
}

static void client_one_positional_is_host_or_port_as_in_twisted(void **state)
{
    (void)state;
    /* Twisted: with host= given, a lone positional argument is the port. */
    tw_endpoint_t ep = client_ok("tcp:host=10.0.0.1:80");
    assert_string_equal(ep.host, "10.0.0.1");
    assert_int_equal(ep.port, 80);
    ep = client_ok("tcp:80:host=10.0.0.1");
    assert_int_equal(ep.port, 80);
    /* Without host=, it is the host. */
    ep = client_ok("tcp:10.0.0.2:port=81");
    assert_string_equal(ep.host, "10.0.0.2");
    assert_int_equal(ep.port, 81);
}

static void client_tcp_ipv6_host_escaped_bracketed_or_unescaped(void **state)
{
    (void)state;
    const char *forms[] = {
        "tcp:\\:\\:1:80",       "tcp:[::1]:80",          "tcp:host=::1:port=80",
        "tcp:host=\\:\\:1:port=80", "tcp:host=[::1]:port=80", "tcp:port=80:host=::1",
        "tcp:host=\\:\\:1:80",  "tcp:host=[::1]:80",
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        tw_endpoint_t ep = client_ok(forms[i]);
        assert_string_equal(ep.host, "::1");
        assert_int_equal(ep.port, 80);
        assert_int_equal(ep.kind, TW_ENDPOINT_TCP);
    }
    tw_endpoint_t ep = client_ok("tcp:host=fe80::1:2:port=443");
    assert_string_equal(ep.host, "fe80::1:2");
    ep = client_ok("tcp6:[2001:db8::1]:443");
    assert_int_equal(ep.kind, TW_ENDPOINT_TCP6);
    assert_string_equal(ep.host, "2001:db8::1");
    assert_int_equal(ep.port, 443);
}

static void client_timeout_is_decimal_seconds_default_30(void **state)
{
    (void)state;
    assert_true(client_ok("tcp:1.2.3.4:80").timeout == TW_SEC(30));
    assert_true(client_ok("unix:/x").timeout == TW_SEC(30));
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=0.5").timeout == TW_MSEC(500));
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=.25").timeout == TW_MSEC(250));
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=2.").timeout == TW_SEC(2));
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=0.000000001").timeout == 1);
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=1.123456789").timeout == 1123456789);
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=1000000000").timeout == TW_SEC(1000000000));
    assert_true(client_ok("tcp:1.2.3.4:80:timeout=none").timeout == TW_TIME_MAX);
    assert_true(client_ok("unix:/x:timeout=7").timeout == TW_SEC(7));
}

static void client_bind_address_takes_host_or_host_and_port(void **state)
{
    (void)state;
    tw_endpoint_t ep = client_ok("tcp:1.2.3.4:80:bindAddress=127.0.0.1");
    assert_string_equal(ep.bind_host, "127.0.0.1");
    assert_int_equal(ep.bind_port, 0);
    ep = client_ok("tcp:1.2.3.4:80:bindAddress=127.0.0.1:5000");
    assert_string_equal(ep.bind_host, "127.0.0.1");
    assert_int_equal(ep.bind_port, 5000);
    ep = client_ok("tcp:1.2.3.4:80:bindAddress=127.0.0.1\\:5001");
    assert_int_equal(ep.bind_port, 5001);
    ep = client_ok("tcp:bindAddress=10.0.0.9:5002:host=1.2.3.4:port=80");
    assert_string_equal(ep.bind_host, "10.0.0.9");
    assert_int_equal(ep.bind_port, 5002);
    ep = client_ok("tcp:[::1]:80:bindAddress=[::2]:5003");
    assert_string_equal(ep.bind_host, "::2");
    assert_int_equal(ep.bind_port, 5003);
    ep = client_ok("tcp:[::1]:80:bindAddress=::2");
    assert_string_equal(ep.bind_host, "::2");
    assert_int_equal(ep.bind_port, 0);
    ep = client_ok("tcp:[::1]:80:bindAddress=[::2]");
    assert_string_equal(ep.bind_host, "::2");
    /* Unbracketed IPv6 never takes a port: "::2:5004" is an address. */
    ep = client_ok("tcp:[::1]:80:bindAddress=::2:5004");
    assert_string_equal(ep.bind_host, "::2:5004");
    assert_int_equal(ep.bind_port, 0);
}

static void client_unix_path_positional_or_keyword(void **state)
{
    (void)state;
    tw_endpoint_t ep = client_ok("unix:path=/run/x.sock");
    assert_int_equal(ep.kind, TW_ENDPOINT_UNIX);
    assert_false(ep.server);
    assert_string_equal(ep.path, "/run/x.sock");
    tw_endpoint_t pos = client_ok("unix:/run/x.sock");
    assert_same_endpoint(&ep, &pos);
    pos = client_ok("unix:/run/x.sock:checkPID=1");
    assert_same_endpoint(&ep, &pos);
    ep = client_ok("unix:/run/x.sock:timeout=1.5");
    assert_true(ep.timeout == TW_MSEC(1500));
}

static void client_refuses_host_names_until_dns_support(void **state)
{
    (void)state;
    refused(false, "tcp:localhost:80", "'localhost' is not a literal");
    refused(false, "tcp:host=example.com:port=80", "DNS");
    refused(false, "tcp:host=example.com:port=80", "'example.com'");
    refused(false, "tcp:1.2.3.4:80:bindAddress=myhost", "'myhost'");
    refused(false, "tcp:256.1.1.1:80", "'256.1.1.1'");
    refused(false, "tcp:1.2.3:80", "'1.2.3'");
    refused(false, "tcp:host=fe80::1%eth0:port=80", "'fe80::1%eth0'");
}

/* ---- escapes -------------------------------------------------------------- */

static void backslash_makes_colon_equals_and_backslash_literal(void **state)
{
    (void)state;
    assert_string_equal(server_ok("unix:/tmp/a\\:b").path, "/tmp/a:b");
    assert_string_equal(server_ok("unix:/tmp/a\\=b").path, "/tmp/a=b");
    assert_string_equal(server_ok("unix:/tmp/a\\\\b").path, "/tmp/a\\b");
    assert_string_equal(server_ok("unix:/tmp/\\x").path, "/tmp/x"); /* any char */
    /* Twisted: after a part's first '=', another '=' is literal. */
    assert_string_equal(server_ok("unix:address=/tmp/a=b").path, "/tmp/a=b");
    assert_string_equal(client_ok("unix:path=/a\\:b\\=c:timeout=1").path, "/a:b=c");
    /* An escaped key is still that key. */
    assert_int_equal(server_ok("tcp:p\\ort=81").port, 81);
    /* A '[' only groups TCP addresses; in a UNIX path it is a character. */
    assert_string_equal(server_ok("unix:/tmp/[weird").path, "/tmp/[weird");
    assert_format(true, "unix:/tmp/a\\:b\\=", "unix:/tmp/a\\:b\\=");
    /* An unescaped '=' makes the part an option, as in Twisted. */
    refused(true, "unix:/tmp/a\\:b=", "unknown option '/tmp/a:b'");
}

/* ---- refusals ------------------------------------------------------------- */

static void malformed_strings_are_refused_naming_the_fault(void **state)
{
    (void)state;
    /* empty, type */
    refused(true, "", "empty endpoint string");
    refused(false, "", "empty endpoint string");
    refused(true, NULL, "empty endpoint string");
    refused(true, "udp:53", "unknown endpoint type 'udp'");
    refused(false, "ssl:host=1.2.3.4:port=443", "unknown endpoint type 'ssl'");
    refused(true, "TCP:80", "unknown endpoint type 'TCP'");
    refused(true, ":80", "missing endpoint type");
    refused(true, "8000", "unknown endpoint type '8000'");
    /* options */
    refused(true, "tcp:80:foo=1", "unknown option 'foo'");
    refused(true, "tcp:80:v6only=yes", "'v6only' does not apply to tcp servers");
    refused(false, "tcp:1.2.3.4:80:backlog=5", "'backlog' does not apply to tcp clients");
    refused(true, "tcp:80:host=1.2.3.4", "'host' does not apply");
    refused(true, "unix:/x:path=/y", "'path' does not apply to unix servers");
    refused(false, "unix:/x:mode=600", "'mode' does not apply to unix clients");
    refused(true, "tcp:80:=1", "no name before its '='");
    refused(true, "tcp:80:backlog=1:backlog=2", "'backlog' is given twice");
    refused(true, "tcp:80:port=81", "port given twice: '80'");
    refused(true, "unix:/x:address=/y", "path given twice: '/x'");
    refused(false, "tcp:1.2.3.4:80:host=1.2.3.4", "host given twice: '1.2.3.4'");
    refused(false, "tcp:1.2.3.4:80:port=80", "port given twice: '80'");
    refused(true, "tcp:80:backlog=", "'backlog' has an empty value");
    /* missing parts */
    refused(true, "tcp", "missing port");
    refused(true, "tcp:backlog=5", "missing port");
    refused(true, "unix", "missing path");
    refused(true, "unix:mode=600", "missing path");
    refused(false, "tcp:port=80", "missing host");
    refused(false, "tcp:1.2.3.4", "missing port");
    refused(false, "unix:timeout=1", "missing path");
    refused(true, "tcp6:interface=::1:8000", "missing port");
    refused(true, "tcp6:interface=::1:8000", "[brackets]");
    /* numbers */
    refused(true, "tcp:70000", "port 70000 is out of range");
    refused(true, "tcp:65536", "65536");
    refused(true, "tcp:99999999999999999999", "out of range");
    refused(false, "tcp:1.2.3.4:0", "port 0 is out of range (1..65535 for a client)");
    refused(true, "tcp:-1", "port '-1' is not a number");
    refused(true, "tcp:+80", "'+80' is not a number");
    refused(true, "tcp: 80", "' 80' is not a number");
    refused(true, "tcp:80x", "port '80x' is not a number");
    refused(true, "tcp:0x50", "'0x50'");
    refused(true, "tcp:80:backlog=0", "backlog 0 is out of range");
    refused(true, "tcp:80:backlog=65536", "backlog 65536");
    refused(true, "tcp:80:backlog=ten", "backlog 'ten' is not a number");
    refused(true, "tcp:80:reuseport=1", "reuseport must be yes or no, not '1'");
    refused(true, "tcp6:80:v6only=true", "v6only must be yes or no, not 'true'");
    refused(true, "unix:/x:mode=9", "mode '9' is not an octal number");
    refused(true, "unix:/x:mode=0x1ff", "mode '0x1ff'");
    refused(true, "unix:/x:mode=1000", "mode 1000 is out of range");
    refused(true, "unix:/x:mode=0", "mode 0 is out of range");
    refused(true, "unix:@x:mode=600", "abstract socket '@x'");
    refused(true, "unix:/x:lockfile=yes", "lockfile must be 0 or 1, not 'yes'");
    refused(false, "unix:/x:checkPID=2", "checkPID must be 0 or 1");
    refused(false, "tcp:1.2.3.4:80:timeout=0", "timeout 0 is not more than 0");
    refused(false, "tcp:1.2.3.4:80:timeout=-1", "timeout '-1' is not a number");
    refused(false, "tcp:1.2.3.4:80:timeout=1e3", "timeout '1e3'");
    refused(false, "tcp:1.2.3.4:80:timeout=.", "timeout '.'");
    refused(false, "tcp:1.2.3.4:80:timeout=1.2.3", "timeout '1.2.3'");
    refused(false, "tcp:1.2.3.4:80:timeout=0.0000000001", "more than 9 decimals");
    refused(false, "tcp:1.2.3.4:80:timeout=1000000000.5", "is too long");
    refused(false, "tcp:1.2.3.4:80:timeout=99999999999999999999999", "is too long");
    refused(false, "tcp:1.2.3.4:80:bindAddress=1.2.3.4:65536", "bindAddress port 65536");
    refused(false, "tcp:1.2.3.4:80:bindAddress=1.2.3.4\\:x", "port 'x' is not a number");
    refused(false, "tcp:1.2.3.4:80:bindAddress=[::1]", "not of the same family");
    refused(false, "tcp:[::1]:80:bindAddress=[::1]x", "'[::1]x'");
    /* positional arguments where none is allowed, trailing garbage */
    refused(true, "tcp:80:90", "unexpected argument '90'");
    refused(true, "tcp:80:127.0.0.1", "unexpected argument '127.0.0.1'");
    refused(true, "unix:/a:b", "unexpected argument 'b'");
    refused(false, "tcp:1.2.3.4:80:9", "unexpected argument '9'");
    refused(false, "tcp:host=1.2.3.4:port=80:9", "unexpected argument '9'");
    refused(false, "unix:/a:/b", "unexpected argument '/b'");
    refused(true, "tcp:80:", "trailing ':'");
    refused(true, "tcp:", "trailing ':'");
    refused(true, "tcp::80", "empty argument");
    refused(false, "tcp:::1:80", "[brackets]");
    refused(true, "tcp:80\\", "lone backslash");
    refused(true, "tcp:80:interface=[::1", "'[' without its ']'");
    /* addresses of the wrong kind */
    refused(true, "tcp:80:interface=eth0", "interface 'eth0' is not a literal");
    refused(true, "tcp:80:interface=[1.2.3.4]", "brackets are for IPv6");
    refused(true, "tcp:80:interface=[::1]x", "'[::1]x'");
    refused(true, "tcp6:80:interface=127.0.0.1", "'127.0.0.1' is not an IPv6 address");
    refused(false, "tcp6:1.2.3.4:80", "'1.2.3.4' is not an IPv6 address");
    refused(true, "unix:@", "no abstract socket name");
}

static void limits_on_lengths_and_parts(void **state)
{
    (void)state;
    char s[2100];
    /* sun_path: 107 bytes and the NUL. */
    memcpy(s, "unix:/", 6);
    memset(s + 6, 'p', 106);
    s[112] = '\0';
    assert_int_equal(strlen(server_ok(s).path), 107);
    s[112] = 'p';
    s[113] = '\0';
    refused(true, s, "is too long (108 bytes; at most 107)");
    /* The whole string. */
    memcpy(s, "unix:/", 6);
    memset(s + 6, 'p', 1100);
    s[1106] = '\0';
    refused(true, s, "endpoint string is too long");
    refused(false, s, "endpoint string is too long");
    /* Parts. */
    strcpy(s, "tcp:80");
    for (int i = 0; i < 70; i++)
        strcat(s, ":a");
    refused(true, s, "too many ':'-separated parts");
    /* A long address value is cut in the message, not overflowing. */
    strcpy(s, "tcp:80:interface=");
    memset(s + 17, '1', 300);
    s[317] = '\0';
    refused(true, s, "interface '1111");
    strcpy(s, "tcp:80:interface=[");
    memset(s + 18, ':', 300);
    strcpy(s + 318, "]");
    refused(true, s, "not an address in brackets");
}

static void error_buffer_may_be_null_or_tiny(void **state)
{
    (void)state;
    tw_endpoint_t ep;
    assert_int_equal(tw_endpoint_parse_server("bogus:1", &ep, NULL, 0), -EINVAL);
    assert_int_equal(tw_endpoint_parse_client("bogus:1", &ep, NULL, 100), -EINVAL);
    char err[8];
    memset(err, 'x', sizeof err);
    assert_int_equal(tw_endpoint_parse_server("bogus:1", &ep, err, 0), -EINVAL);
    assert_int_equal(err[0], 'x'); /* errlen 0: nothing written */
    assert_int_equal(tw_endpoint_parse_server("bogus:1", &ep, err, 1), -EINVAL);
    assert_int_equal(err[0], '\0');
    assert_int_equal(err[1], 'x');
    assert_int_equal(tw_endpoint_parse_server("bogus:1", &ep, err, 5), -EINVAL);
    assert_string_equal(err, "unkn");
    assert_int_equal(err[5], 'x');
    /* Success clears a message left in the buffer. */
    char big[64] = "stale";
    assert_int_equal(tw_endpoint_parse_server("tcp:1", &ep, big, sizeof big), 0);
    assert_string_equal(big, "");
}

/* ---- formatting ----------------------------------------------------------- */

static void format_writes_canonical_strings(void **state)
{
    (void)state;
    assert_format(true, "tcp:port=8000", "tcp:8000");
    assert_format(true, "tcp:8000:interface=::1:backlog=10:reuseport=yes",
                  "tcp:8000:interface=\\:\\:1:backlog=10:reuseport=yes");
    assert_format(true, "tcp6:80:v6only=yes:reuseport=no", "tcp6:80:v6only=yes");
    assert_format(true, "unix:address=/run/x.sock:mode=0660:lockfile=1",
                  "unix:/run/x.sock:mode=660");
    assert_format(false, "tcp:127.0.0.1:8000", "tcp:host=127.0.0.1:port=8000");
    assert_format(false, "tcp:[::1]:80:timeout=30", "tcp:host=\\:\\:1:port=80");
    assert_format(false, "tcp:1.2.3.4:80:timeout=0.250", "tcp:host=1.2.3.4:port=80:timeout=0.25");
    assert_format(false, "tcp:1.2.3.4:80:timeout=none", "tcp:host=1.2.3.4:port=80:timeout=none");
    assert_format(false, "tcp:1.2.3.4:80:bindAddress=5.6.7.8:9",
                  "tcp:host=1.2.3.4:port=80:bindAddress=5.6.7.8\\:9");
    assert_format(false, "tcp:[::1]:80:bindAddress=[::2]:9",
                  "tcp:host=\\:\\:1:port=80:bindAddress=[::2]\\:9");
    assert_format(false, "tcp:[::1]:80:bindAddress=[::2]",
                  "tcp:host=\\:\\:1:port=80:bindAddress=\\:\\:2");
    assert_format(false, "unix:/x:timeout=2", "unix:path=/x:timeout=2");
}

static void format_reports_short_buffers_and_bad_endpoints(void **state)
{
    (void)state;
    tw_endpoint_t ep = server_ok("tcp:8000:interface=127.0.0.1");
    char buf[64];
    int n = tw_endpoint_format(&ep, buf, sizeof buf);
    assert_int_equal(n, (int)strlen("tcp:8000:interface=127.0.0.1"));
    assert_int_equal(tw_endpoint_format(&ep, buf, (size_t)n + 1), n);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(tw_endpoint_format(&ep, buf, (size_t)n), -ENOSPC);
    assert_int_equal(strlen(buf), (size_t)n - 1); /* truncated, terminated */
    assert_int_equal(tw_endpoint_format(&ep, buf, 4), -ENOSPC);
    assert_string_equal(buf, "tcp");
    assert_int_equal(tw_endpoint_format(&ep, NULL, 0), -ENOSPC);

    tw_endpoint_t bad = ep;
    bad.kind = (tw_endpoint_kind_t)7;
    assert_int_equal(tw_endpoint_format(&bad, buf, sizeof buf), -EINVAL);
    assert_string_equal(buf, "");
    bad = ep;
    memset(bad.host, 'a', sizeof bad.host); /* no NUL */
    assert_int_equal(tw_endpoint_format(&bad, buf, sizeof buf), -EINVAL);

    /* The longest endpoint fits TW_ENDPOINT_FORMAT_MAX. */
    char s[400] = "unix:/";
    for (int i = 0; i < 106; i++)
        strcat(s, "\\\\");
    strcat(s, ":mode=777:backlog=65535");
    ep = server_ok(s);
    char big[TW_ENDPOINT_FORMAT_MAX];
    n = tw_endpoint_format(&ep, big, sizeof big);
    assert_true(n > 212 && n < TW_ENDPOINT_FORMAT_MAX);
}

/* ---- the table -------------------------------------------------------------- */

typedef struct endpoint_case {
    bool server;
    const char *in;
    const char *out; /* canonical form, or NULL: refused */
    const char *msg; /* for refusals, a part of the message */
} endpoint_case_t;

static const endpoint_case_t cases[] = {
    { true, "tcp:80", "tcp:80", NULL },
    { true, "tcp:port=80", "tcp:80", NULL },
    { true, "tcp:0:interface=0.0.0.0", "tcp:0:interface=0.0.0.0", NULL },
    { true, "tcp:80:interface=127.0.0.1:backlog=128", "tcp:80:interface=127.0.0.1:backlog=128",
      NULL },
    { true, "tcp:port=8000:interface=::1", "tcp:8000:interface=\\:\\:1", NULL },
    { true, "tcp:8000:interface=\\:\\:1", "tcp:8000:interface=\\:\\:1", NULL },
    { true, "tcp6:8000:interface=::1", "tcp6:8000:interface=\\:\\:1", NULL },
    { true, "tcp6:8000", "tcp6:8000", NULL },
    { true, "tcp6:8000:interface=[fe80::1]:v6only=yes",
      "tcp6:8000:interface=fe80\\:\\:1:v6only=yes", NULL },
    { true, "tcp:8000:reuseport=yes", "tcp:8000:reuseport=yes", NULL },
    { true, "tcp:8000:reuseport=no", "tcp:8000", NULL },
    { true, "unix:/run/x.sock:mode=660:backlog=50", "unix:/run/x.sock:mode=660:backlog=50", NULL },
    { true, "unix:address=/run/x.sock", "unix:/run/x.sock", NULL },
    { true, "unix:@abstract", "unix:@abstract", NULL },
    { true, "unix:/run/x.sock:lockfile=1", "unix:/run/x.sock", NULL },
    { true, "unix:/a\\:b", "unix:/a\\:b", NULL },
    { false, "tcp:host=127.0.0.1:port=8000:timeout=5", "tcp:host=127.0.0.1:port=8000:timeout=5",
      NULL },
    { false, "tcp:127.0.0.1:8000", "tcp:host=127.0.0.1:port=8000", NULL },
    { false, "tcp:host=::1:port=80", "tcp:host=\\:\\:1:port=80", NULL },
    { false, "tcp:\\:\\:1:80", "tcp:host=\\:\\:1:port=80", NULL },
    { false, "tcp:[::1]:80", "tcp:host=\\:\\:1:port=80", NULL },
    { false, "tcp6:[::1]:80", "tcp6:host=\\:\\:1:port=80", NULL },
    { false, "tcp:1.2.3.4:80:bindAddress=127.0.0.1",
      "tcp:host=1.2.3.4:port=80:bindAddress=127.0.0.1", NULL },
    { false, "tcp:1.2.3.4:80:timeout=0.5", "tcp:host=1.2.3.4:port=80:timeout=0.5", NULL },
    { false, "unix:path=/run/x.sock", "unix:path=/run/x.sock", NULL },
    { false, "unix:/run/x.sock:timeout=3", "unix:path=/run/x.sock:timeout=3", NULL },
    { true, "", NULL, "empty" },
    { true, "http:80", NULL, "unknown endpoint type 'http'" },
    { true, "tcp:80:nodelay=yes", NULL, "unknown option 'nodelay'" },
    { true, "tcp", NULL, "missing port" },
    { true, "tcp:100000", NULL, "100000 is out of range" },
    { false, "tcp:1.2.3.4:0", NULL, "out of range" },
    { true, "tcp:8o", NULL, "'8o' is not a number" },
    { true, "tcp:1:reuseport=yes:reuseport=yes", NULL, "'reuseport' is given twice" },
    { true, "tcp:1:x", NULL, "unexpected argument 'x'" },
    { true, "unix:/x:mode=8", NULL, "not an octal number" },
    { false, "unix:/x:y", NULL, "unexpected argument 'y'" },
    { false, "tcp:www.example.com:80", NULL, "host names need DNS" },
    { false, "tcp:1.2.3.4:80:timeout=soon", NULL, "timeout 'soon'" },
    { true, "tcp:80\\", NULL, "backslash" },
    { true, "tcp6:80:interface=1.2.3.4", NULL, "not an IPv6 address" },
    { true, "unix:", NULL, "trailing ':'" },
    { false, "tcp::80", NULL, "empty argument" },
    { false, "tcp:[::1:80", NULL, "without its ']'" },
};

static void table_of_endpoint_strings(void **state)
{
    (void)state;
    assert_true(sizeof cases / sizeof *cases >= 40);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const endpoint_case_t *c = &cases[i];
        if (!c->out) {
            refused(c->server, c->in, c->msg);
            continue;
        }
        tw_endpoint_t ep = parse_ok(c->server, c->in);
        char buf[TW_ENDPOINT_FORMAT_MAX];
        assert_true(tw_endpoint_format(&ep, buf, sizeof buf) > 0);
        if (strcmp(buf, c->out) != 0)
            fail_msg("'%s' formats as '%s', expected '%s'", c->in, buf, c->out);
        /* The canonical form is a fixed point. */
        tw_endpoint_t again = parse_ok(c->server, buf);
        assert_same_endpoint(&ep, &again);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_tcp_port_alone_means_all_interfaces_and_defaults),
        cmocka_unit_test(server_tcp_keywords_set_port_interface_backlog),
        cmocka_unit_test(server_tcp_ipv6_interface_escaped_unescaped_or_bracketed),
        cmocka_unit_test(server_tcp6_is_ipv6_with_v6only_and_reuseport),
        cmocka_unit_test(server_unix_takes_path_mode_and_backlog),
        cmocka_unit_test(server_unix_at_sign_is_the_abstract_namespace),
        cmocka_unit_test(server_unix_accepts_and_ignores_lockfile_and_wantpid),
        cmocka_unit_test(client_tcp_keyword_and_positional_forms),
        cmocka_unit_test(client_one_positional_is_host_or_port_as_in_twisted),
        cmocka_unit_test(client_tcp_ipv6_host_escaped_bracketed_or_unescaped),
        cmocka_unit_test(client_timeout_is_decimal_seconds_default_30),
        cmocka_unit_test(client_bind_address_takes_host_or_host_and_port),
        cmocka_unit_test(client_unix_path_positional_or_keyword),
        cmocka_unit_test(client_refuses_host_names_until_dns_support),
        cmocka_unit_test(backslash_makes_colon_equals_and_backslash_literal),
        cmocka_unit_test(malformed_strings_are_refused_naming_the_fault),
        cmocka_unit_test(limits_on_lengths_and_parts),
        cmocka_unit_test(error_buffer_may_be_null_or_tiny),
        cmocka_unit_test(format_writes_canonical_strings),
        cmocka_unit_test(format_reports_short_buffers_and_bad_endpoints),
        cmocka_unit_test(table_of_endpoint_strings),
    };
    TW_TEST_MAIN(tests);
}
