/* test_chat.c -- the chat server with in-memory clients (tw_loopback): the
 * nickname dialogue, every command, long lines, slow consumers dropped, a
 * full server, shutdown, 500 clients each getting every line exactly once in
 * per-sender order, one write per recipient per iteration, and the parser. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tw_basic.h>
#include <tw_chat.h>

/* ---- an in-memory client --------------------------------------------------- */

typedef struct client {
    tw_line_receiver_t lr;
    char **lines;
    size_t n, cap;
    bool lost;
    int lost_code;
} client_t;

static void client_line(tw_line_receiver_t *lr, char *line, size_t len)
{
    client_t *c = (client_t *)lr;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->lines = realloc(c->lines, c->cap * sizeof *c->lines);
        assert_non_null(c->lines);
    }
    c->lines[c->n++] = strndup(line, len);
}

static void client_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    client_t *c = (client_t *)p;
    c->lost = true;
    c->lost_code = reason ? reason->code : 0;
}

static void client_destroy(tw_protocol_t *p)
{
    tw_line_receiver_fini(&((client_t *)p)->lr);
    /* the lines stay for the test: freed by world_free */
}

static const tw_protocol_ops_t client_proto = {
    .data_received = tw_line_receiver_data_received,
    .connection_lost = client_lost,
    .destroy = client_destroy,
};
static const tw_line_receiver_ops_t client_lr = { .line_received = client_line };

typedef struct world {
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_chat_server_t *chat;
    int n;
    client_t **c;
    tw_loopback_t **lb;
} world_t;

static world_t *world_new(int n, const tw_chat_options_t *opt)
{
    world_t *w = calloc(1, sizeof *w);
    w->r = tw_test_reactor_new();
    tw_fake_clock_attach(&w->clock, w->r, 0);
    w->chat = tw_chat_server_new(w->r, opt);
    assert_non_null(w->chat);
    w->n = n;
    w->c = calloc((size_t)n, sizeof *w->c);
    w->lb = calloc((size_t)n, sizeof *w->lb);
    tw_factory_t *f = tw_chat_server_factory(w->chat);
    for (int i = 0; i < n; i++) {
        client_t *c = calloc(1, sizeof *c);
        tw_line_receiver_init(&c->lr, &client_proto, &client_lr);
        w->c[i] = c;
        tw_protocol_t *server = f->ops->build_protocol(f, NULL, 0);
        assert_non_null(server);
        w->lb[i] = tw_loopback_new(w->r, &c->lr.base, server);
        assert_non_null(w->lb[i]);
    }
    return w;
}

/* Pump every connection and run the reactor's soon calls until quiet. */
static void settle(world_t *w)
{
    for (int round = 0; round < 10000; round++) {
        bool moved = false;
        for (int i = 0; i < w->n; i++)
            if (w->lb[i] && tw_loopback_pump(w->lb[i]))
                moved = true;
        if (tw_reactor_iterate(w->r, 0) > 0)
            moved = true;
        if (!moved)
            return;
    }
    fail_msg("the chat never settled");
}

static void world_free(world_t *w)
{
    for (int i = 0; i < w->n; i++) {
        tw_loopback_free(w->lb[i]);
        w->lb[i] = NULL;
    }
    settle(w);
    tw_chat_server_free(w->chat);
    tw_reactor_iterate(w->r, 0);
    for (int i = 0; i < w->n; i++) {
        for (size_t k = 0; k < w->c[i]->n; k++)
            free(w->c[i]->lines[k]);
        free(w->c[i]->lines);
        free(w->c[i]);
    }
    free(w->c);
    free(w->lb);
    tw_fake_clock_detach(&w->clock);
    tw_reactor_free(w->r);
    free(w);
}

static void send_line(world_t *w, int i, const char *line)
{
    assert_int_equal(tw_line_receiver_send_line(&w->c[i]->lr, line, strlen(line)), 0);
}

/* Forget what client i received so far. */
static void clear(world_t *w, int i)
{
    client_t *c = w->c[i];
    for (size_t k = 0; k < c->n; k++)
        free(c->lines[k]);
    c->n = 0;
}

static const char *last(world_t *w, int i)
{
    client_t *c = w->c[i];
    assert_true(c->n > 0);
    return c->lines[c->n - 1];
}

static bool got_prefix(world_t *w, int i, const char *prefix)
{
    client_t *c = w->c[i];
    for (size_t k = 0; k < c->n; k++)
        if (strncmp(c->lines[k], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static bool got(world_t *w, int i, const char *line)
{
    client_t *c = w->c[i];
    for (size_t k = 0; k < c->n; k++)
        if (strcmp(c->lines[k], line) == 0)
            return true;
    return false;
}

/* Connect n clients and name them a0, a1, ... */
static world_t *named_world(int n, const tw_chat_options_t *opt)
{
    world_t *w = world_new(n, opt);
    settle(w);
    for (int i = 0; i < n; i++) {
        char nick[16];
        snprintf(nick, sizeof nick, "a%d", i);
        send_line(w, i, nick);
        settle(w);
    }
    for (int i = 0; i < n; i++)
        clear(w, i);
    return w;
}

/* ---- the dialogue ---------------------------------------------------------- */

static void test_nickname_dialogue(void **state)
{
    (void)state;
    world_t *w = world_new(3, NULL);
    settle(w);
    assert_string_equal(w->c[0]->lines[0], "* Welcome to twine chat. What is your nickname?");
    send_line(w, 0, "9lives");
    settle(w);
    assert_true(strncmp(last(w, 0), "! invalid nickname", 18) == 0);
    send_line(w, 0, "alice");
    settle(w);
    assert_true(got(w, 0, "* Hello alice. Type /help for the commands."));
    assert_true(got(w, 0, "* 1 user online: alice"));
    assert_int_equal(tw_chat_server_users(w->chat), 1);

    send_line(w, 1, "ALICE"); /* taken, whatever the case */
    settle(w);
    assert_string_equal(last(w, 1), "! the nickname ALICE is taken; choose another");
    send_line(w, 1, "  bob \t"); /* blanks around it are fine */
    settle(w);
    assert_true(got(w, 1, "* 2 users online: bob alice") ||
                got(w, 1, "* 2 users online: alice bob"));
    assert_string_equal(last(w, 0), "* bob has joined");
    /* the one still choosing hears nothing of the others */
    assert_int_equal(w->c[2]->n, 1);
    world_free(w);
}

static void test_say_me_msg(void **state)
{
    (void)state;
    world_t *w = named_world(3, NULL);
    send_line(w, 0, "hello there");
    settle(w);
    assert_string_equal(last(w, 1), "<a0> hello there");
    assert_string_equal(last(w, 2), "<a0> hello there");
    assert_int_equal(w->c[0]->n, 0); /* not echoed to the sender */

    send_line(w, 1, "/me waves");
    settle(w);
    assert_string_equal(last(w, 0), "* a1 waves");
    assert_string_equal(last(w, 2), "* a1 waves");

    clear(w, 0), clear(w, 1), clear(w, 2);
    send_line(w, 0, "/msg A2 psst, secret");
    settle(w);
    assert_string_equal(last(w, 2), "*a0* psst, secret");
    assert_string_equal(last(w, 0), "-> *a2* psst, secret");
    assert_int_equal(w->c[1]->n, 0);

    send_line(w, 0, "/msg nobody hi");
    settle(w);
    assert_string_equal(last(w, 0), "! no such user: nobody");
    send_line(w, 0, "/msg a1");
    settle(w);
    assert_string_equal(last(w, 0), "! usage: /msg NICK TEXT");
    send_line(w, 0, "//slash");
    settle(w);
    assert_string_equal(last(w, 1), "<a0> /slash");
    send_line(w, 0, "/dance");
    settle(w);
    assert_string_equal(last(w, 0), "! unknown command /dance; try /help");
    world_free(w);
}

static void test_nick_who_help_quit(void **state)
{
    (void)state;
    world_t *w = named_world(3, NULL);
    send_line(w, 0, "/nick a1");
    settle(w);
    assert_string_equal(last(w, 0), "! the nickname a1 is taken; choose another");
    send_line(w, 0, "/nick zed");
    settle(w);
    assert_string_equal(last(w, 0), "* a0 is now known as zed");
    assert_string_equal(last(w, 1), "* a0 is now known as zed");
    send_line(w, 0, "/nick 12");
    settle(w);
    assert_true(strncmp(last(w, 0), "! invalid nickname", 18) == 0);

    clear(w, 1);
    send_line(w, 1, "/who");
    settle(w);
    assert_int_equal(w->c[1]->n, 1);
    assert_true(strncmp(last(w, 1), "* 3 users online:", 17) == 0);
    assert_non_null(strstr(last(w, 1), "zed"));

    clear(w, 1);
    send_line(w, 1, "/help");
    settle(w);
    assert_true(w->c[1]->n >= 7);
    assert_string_equal(w->c[1]->lines[0], "* Commands:");

    send_line(w, 2, "/quit see you");
    settle(w);
    assert_string_equal(last(w, 2), "* Bye.");
    assert_true(w->c[2]->lost);
    assert_string_equal(last(w, 0), "* a2 has left (quit: see you)");
    assert_int_equal(tw_chat_server_users(w->chat), 2);
    assert_int_equal(tw_chat_server_connections(w->chat), 2);

    /* a client that just goes away */
    tw_transport_lose_connection(&tw_loopback_client(w->lb[1])->base);
    settle(w);
    assert_string_equal(last(w, 0), "* a1 has left");
    world_free(w);
}

static void test_long_line_refused(void **state)
{
    (void)state;
    tw_chat_options_t opt = { .max_line = 64 };
    world_t *w = named_world(2, &opt);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    send_line(w, 0, big);
    send_line(w, 0, "after");
    settle(w);
    assert_string_equal(w->c[0]->lines[0], "! line too long (the limit is 64 bytes): ignored");
    assert_int_equal(w->c[0]->n, 1);
    assert_int_equal(w->c[1]->n, 1);
    assert_string_equal(last(w, 1), "<a0> after");
    assert_false(w->c[0]->lost);
    char exact[65];
    memset(exact, 'y', 64);
    exact[64] = '\0';
    send_line(w, 0, exact);
    settle(w);
    assert_int_equal(strlen(last(w, 1)), 64 + 5);
    world_free(w);
}

/* ---- slow consumers ----------------------------------------------------------- */

static void test_slow_consumer_dropped_at_hard_limit(void **state)
{
    (void)state;
    tw_chat_options_t opt = { .max_queue = 4096 };
    world_t *w = named_world(3, &opt);
    tw_transport_pause_reading(&tw_loopback_client(w->lb[2])->base); /* a2 stops reading */
    char line[200];
    for (int i = 0; i < 1000 && !w->c[2]->lost; i++) {
        snprintf(line, sizeof line, "line %d %0150d", i, 0);
        send_line(w, 0, line);
        settle(w);
    }
    settle(w);
    assert_true(got_prefix(w, 1, "* a2 has left (too slow: "));
    assert_false(w->c[2]->lost); /* it does not read: it is not even told yet */
    assert_int_equal(tw_chat_server_users(w->chat), 2);
    /* the others got everything: the lines and the notice */
    assert_int_equal(w->c[1]->n, 1001);
    tw_transport_resume_reading(&tw_loopback_client(w->lb[2])->base);
    settle(w);
    tw_fake_clock_advance(&w->clock, TW_SEC(3)); /* the kill timer, if it did not read */
    settle(w);
    assert_true(w->c[2]->lost);
    world_free(w);
}

/* Two clients, max_queue 4 KiB, grace 5 s; a1 stops reading and is owed
 * 15 lines of 400 bytes: about 6 KiB, over max_queue and under 4x. */
static world_t *owing_world(void)
{
    tw_chat_options_t opt = { .max_queue = 4096, .grace = TW_SEC(5) };
    world_t *w = named_world(2, &opt);
    tw_transport_pause_reading(&tw_loopback_client(w->lb[1])->base);
    char line[401];
    memset(line, 'z', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    for (int i = 0; i < 15; i++)
        send_line(w, 0, line);
    settle(w);
    return w;
}

static void test_slow_consumer_dropped_after_grace(void **state)
{
    (void)state;
    world_t *w = owing_world();
    assert_int_equal(tw_chat_server_users(w->chat), 2);
    tw_fake_clock_advance(&w->clock, TW_SEC(4));
    settle(w);
    assert_int_equal(tw_chat_server_users(w->chat), 2); /* still in grace */
    tw_fake_clock_advance(&w->clock, TW_SEC(2));
    settle(w);
    assert_int_equal(tw_chat_server_users(w->chat), 1);
    world_free(w);
}

static void test_slow_reader_that_catches_up_stays(void **state)
{
    (void)state;
    world_t *w = owing_world();
    tw_fake_clock_advance(&w->clock, TW_SEC(4));
    tw_transport_resume_reading(&tw_loopback_client(w->lb[1])->base);
    settle(w);
    tw_fake_clock_advance(&w->clock, TW_SEC(2));
    settle(w);
    assert_int_equal(tw_chat_server_users(w->chat), 2);
    assert_int_equal(w->c[1]->n, 15);
    world_free(w);
}

/* ---- limits and shutdown -------------------------------------------------------- */

static void test_full_server_refuses(void **state)
{
    (void)state;
    tw_chat_options_t opt = { .max_clients = 2 };
    world_t *w = world_new(3, &opt);
    settle(w);
    assert_true(w->c[2]->lost);
    assert_true(strncmp(w->c[2]->lines[0], "! the server is full", 20) == 0);
    assert_false(w->c[0]->lost);
    world_free(w);
}

static void test_shutdown_tells_everyone(void **state)
{
    (void)state;
    world_t *w = named_world(3, NULL);
    tw_chat_server_shutdown(w->chat, "bye all");
    settle(w);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(last(w, i), "* bye all");
        assert_true(w->c[i]->lost);
        assert_int_equal(w->c[i]->lost_code, 0);
    }
    assert_int_equal(tw_chat_server_connections(w->chat), 0);
    world_free(w);
}

/* ---- fan-out ------------------------------------------------------------------- */

enum { FAN_CLIENTS = 500, FAN_SENDERS = 20, FAN_LINES = 10 };

static void test_500_clients_every_line_once_in_order(void **state)
{
    (void)state;
    world_t *w = named_world(FAN_CLIENTS, NULL);
    char line[64];
    for (int k = 0; k < FAN_LINES; k++) {
        for (int s = 0; s < FAN_SENDERS; s++) {
            snprintf(line, sizeof line, "m %d %d", s, k);
            send_line(w, s * (FAN_CLIENTS / FAN_SENDERS), line);
        }
        if (k % 3 == 0)
            settle(w); /* some rounds pile up, some do not */
    }
    settle(w);
    for (int i = 0; i < FAN_CLIENTS; i++) {
        client_t *c = w->c[i];
        int next[FAN_SENDERS] = { 0 };
        int mine = i % (FAN_CLIENTS / FAN_SENDERS) == 0;
        for (size_t j = 0; j < c->n; j++) {
            int s, k;
            char nick[16];
            assert_int_equal(sscanf(c->lines[j], "<%15[^>]> m %d %d", nick, &s, &k), 3);
            assert_true(s >= 0 && s < FAN_SENDERS);
            assert_int_equal(k, next[s]); /* exactly once, in the sender's order */
            next[s]++;
        }
        for (int s = 0; s < FAN_SENDERS; s++)
            assert_int_equal(next[s], mine && s == i / (FAN_CLIENTS / FAN_SENDERS) ? 0 : FAN_LINES);
    }
    world_free(w);
}

static void test_one_write_per_recipient_per_iteration(void **state)
{
    (void)state;
    world_t *w = named_world(5, NULL);
    int before[5];
    for (int i = 0; i < 5; i++)
        before[i] = tw_loopback_server(w->lb[i])->writes;
    for (int k = 0; k < 50; k++) /* 50 lines from each of two senders, one pump */
        send_line(w, 0, "from zero"), send_line(w, 1, "from one");
    tw_loopback_pump(w->lb[0]);
    tw_loopback_pump(w->lb[1]);
    tw_reactor_iterate(w->r, 0); /* the flush */
    for (int i = 2; i < 5; i++)
        assert_int_equal(tw_loopback_server(w->lb[i])->writes - before[i], 1);
    settle(w);
    for (int i = 2; i < 5; i++)
        assert_int_equal(w->c[i]->n, 100);
    world_free(w);
}

/* ---- the parser ---------------------------------------------------------------- */

static void test_parser(void **state)
{
    (void)state;
    tw_chat_cmd_t c;
    tw_chat_parse("", 0, &c);
    assert_int_equal(c.kind, TW_CHAT_EMPTY);
    tw_chat_parse("  \t\r", 4, &c);
    assert_int_equal(c.kind, TW_CHAT_EMPTY);
    tw_chat_parse("hi\r", 3, &c);
    assert_int_equal(c.kind, TW_CHAT_SAY);
    assert_int_equal(c.text_len, 2);
    tw_chat_parse("/MSG bob  hello  you", 20, &c);
    assert_int_equal(c.kind, TW_CHAT_MSG);
    assert_memory_equal(c.nick, "bob", 3);
    assert_int_equal(c.nick_len, 3);
    assert_memory_equal(c.text, "hello  you", 10);
    tw_chat_parse("/nick a b", 9, &c);
    assert_int_equal(c.kind, TW_CHAT_USAGE);
    tw_chat_parse("/nick", 5, &c);
    assert_int_equal(c.kind, TW_CHAT_USAGE);
    tw_chat_parse("/me", 3, &c);
    assert_int_equal(c.kind, TW_CHAT_USAGE);
    tw_chat_parse("/quit", 5, &c);
    assert_int_equal(c.kind, TW_CHAT_QUIT);
    assert_int_equal(c.text_len, 0);
    tw_chat_parse("/", 1, &c);
    assert_int_equal(c.kind, TW_CHAT_UNKNOWN);
    assert_int_equal(c.nick_len, 0);
    tw_chat_parse("/who extra", 10, &c);
    assert_int_equal(c.kind, TW_CHAT_WHO);
    assert_true(tw_chat_valid_nick("a-b_9", 5));
    assert_false(tw_chat_valid_nick("", 0));
    assert_false(tw_chat_valid_nick("abcdefghijklmnopq", 17));
    assert_false(tw_chat_valid_nick("a b", 3));
    assert_false(tw_chat_valid_nick("_a", 2));
}

int main(void)
{
    tw_log_set_level(TW_LOG_WARN); /* joins and leaves are logged at info */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nickname_dialogue),
        cmocka_unit_test(test_say_me_msg),
        cmocka_unit_test(test_nick_who_help_quit),
        cmocka_unit_test(test_long_line_refused),
        cmocka_unit_test(test_slow_consumer_dropped_at_hard_limit),
        cmocka_unit_test(test_slow_consumer_dropped_after_grace),
        cmocka_unit_test(test_slow_reader_that_catches_up_stays),
        cmocka_unit_test(test_full_server_refuses),
        cmocka_unit_test(test_shutdown_tells_everyone),
        cmocka_unit_test(test_500_clients_every_line_once_in_order),
        cmocka_unit_test(test_one_write_per_recipient_per_iteration),
        cmocka_unit_test(test_parser),
    };
    TW_TEST_MAIN(tests);
}
