/* fuzz_endpoint.c -- libFuzzer target for the endpoint string parser.
 *
 * Each input is parsed as a server and as a client endpoint; whatever is
 * accepted must format, and the formatted string must parse back to the same
 * endpoint (parse(format(x)) == x).  Refusals must leave a NUL-terminated
 * message.  `make fuzz` builds it with clang (ASan+UBSan, linked with the
 * library's sources) and runs it for FUZZ_SECONDS over a scratch corpus
 * seeded from tests/fuzz/corpus/endpoint; `make check` replays that seed
 * corpus. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_endpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_same(const tw_endpoint_t *a, const tw_endpoint_t *b)
{
    assert(a->kind == b->kind && a->server == b->server);
    assert(strcmp(a->host, b->host) == 0 && a->port == b->port);
    assert(a->backlog == b->backlog && a->reuseport == b->reuseport);
    assert(a->v6only == b->v6only && strcmp(a->path, b->path) == 0 && a->mode == b->mode);
    assert(a->timeout == b->timeout && strcmp(a->bind_host, b->bind_host) == 0);
    assert(a->bind_port == b->bind_port);
    assert(memcmp(a, b, sizeof *a) == 0);
}

static void fuzz_one(const char *s, bool server)
{
    tw_endpoint_t ep, again;
    char err[128], buf[TW_ENDPOINT_FORMAT_MAX], small[16];
    memset(err, 'x', sizeof err);
    int rc = server ? tw_endpoint_parse_server(s, &ep, err, sizeof err)
                    : tw_endpoint_parse_client(s, &ep, err, sizeof err);
    assert(memchr(err, '\0', sizeof err));
    if (rc != 0) {
        assert(rc == -EINVAL && err[0] != '\0');
        return;
    }
    assert(err[0] == '\0' && ep.server == server);
    int n = tw_endpoint_format(&ep, buf, sizeof buf);
    assert(n > 0 && (size_t)n == strlen(buf));
    int m = tw_endpoint_format(&ep, small, sizeof small);
    assert(m == (n < (int)sizeof small ? n : -ENOSPC));
    assert(strncmp(small, buf, sizeof small - 1) == 0);
    rc = server ? tw_endpoint_parse_server(buf, &again, err, sizeof err)
                : tw_endpoint_parse_client(buf, &again, err, sizeof err);
    if (rc != 0)
        abort(); /* the canonical string of an accepted endpoint is refused */
    fuzz_check_same(&ep, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_one(s, true);
    fuzz_one(s, false);
    free(s);
    return 0;
}
