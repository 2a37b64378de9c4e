/* fuzz_chat.c -- libFuzzer target for the chat server's command parser and
 * for the server itself.
 *
 * The input is parsed line by line (tw_chat_parse): every argument must lie
 * inside its line and every kind be one the parser documents.  Then the
 * whole input is played by three clients of a real chat server on string
 * transports, in pieces whose sizes come from the input, and the server must
 * end with every connection and user accounted for. */
#define _GNU_SOURCE
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tw_chat.h"
#include "tw_log.h"
#include "tw_reactor.h"
#include "tw_string_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parse(const char *line, size_t len)
{
    tw_chat_cmd_t c;
    tw_chat_parse(line, len, &c);
    assert(c.kind >= TW_CHAT_EMPTY && c.kind <= TW_CHAT_USAGE);
    if (c.nick)
        assert(c.nick >= line && c.nick + c.nick_len <= line + len);
    if (c.text)
        assert(c.text >= line && c.text + c.text_len <= line + len);
    if (c.kind == TW_CHAT_MSG || c.kind == TW_CHAT_NICK)
        assert(c.nick_len > 0);
    (void)tw_chat_valid_nick(line, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(s + i, '\n', size - i);
        size_t end = nl ? (size_t)(nl - s) : size;
        check_parse(s + i, end - i);
        i = end + 1;
    }

    static tw_reactor_t *r;
    if (!r) {
        tw_log_set_level(TW_LOG_WARN); /* joins and leaves are logged at info */
        if (tw_reactor_new(&r) != 0)
            abort();
    }
    tw_chat_options_t opt = { .max_line = 64, .max_queue = 2048 };
    tw_chat_server_t *chat = tw_chat_server_new(r, &opt);
    assert(chat);
    tw_factory_t *f = tw_chat_server_factory(chat);
    enum { N = 3 };
    tw_string_transport_t *t[N];
    for (int k = 0; k < N; k++) {
        t[k] = tw_string_transport_new(r, f->ops->build_protocol(f, NULL, 0));
        assert(t[k]);
    }
    /* Client k sends the pieces that start with a byte whose value mod 4 is k
     * (3: nobody reads for a while: client 2's output is left unconsumed). */
    for (size_t i = 0; i < size;) {
        size_t n = 1 + data[i] % 23;
        if (n > size - i)
            n = size - i;
        int k = data[i] % 4;
        if (k < N && !t[k]->closing)
            tw_string_transport_feed(t[k], data + i, n);
        else
            tw_string_transport_clear(t[0]);
        i += n;
        tw_reactor_iterate(r, 0);
    }
    assert(tw_chat_server_connections(chat) <= N);
    assert(tw_chat_server_users(chat) <= tw_chat_server_connections(chat));
    for (int k = 0; k < N; k++)
        tw_string_transport_free(t[k]);
    tw_reactor_iterate(r, 0);
    assert(tw_chat_server_connections(chat) == 0 && tw_chat_server_users(chat) == 0);
    tw_chat_server_free(chat);
    tw_reactor_iterate(r, 0);
    return 0;
}
