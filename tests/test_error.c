/* test_error.c -- tw_strerror, failures and logging. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void strerror_covers_errno_and_twine_codes(void **state)
{
    (void)state;
    assert_string_equal(tw_strerror(0), "success");
    assert_string_equal(tw_strerror(-ENOENT), "No such file or directory");
    assert_non_null(strstr(tw_strerror(TW_EFDSETSIZE), "FD_SETSIZE"));
    assert_non_null(strstr(tw_strerror(TW_ENOTRUNNING), "not running"));
    assert_string_equal(tw_strerror(-30000), "unknown error");
}

static void strerror_covers_every_twine_code_and_range(void **state)
{
    (void)state;
    static const int codes[] = { TW_ENOTRUNNING, TW_EALREADY, TW_EFDSETSIZE, TW_ENOTACTIVE,
                                 TW_ENOSIGSLOT };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        const char *m = tw_strerror(codes[i]);
        assert_non_null(m);
        assert_string_not_equal(m, "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m, tw_strerror(codes[j]));
    }
    assert_non_null(strstr(tw_strerror(TW_ENOTACTIVE), "cancelled"));
    assert_string_equal(tw_strerror(-EPIPE), "Broken pipe");
    assert_string_equal(tw_strerror(5), "success");
    assert_string_equal(tw_strerror(TW_EARES_BASE - 4), "DNS resolver error");
    assert_string_equal(tw_strerror(TW_ESSL_BASE - 1), "TLS error");
    assert_string_equal(tw_strerror(TW_EHTTP_BASE - 999), "HTTP parser error");
    assert_string_equal(tw_strerror(TW_EHTTP_BASE - 1000), "unknown error");
    assert_string_equal(tw_strerror(TW_EBASE - 999), "unknown error");
    assert_non_null(tw_strerror(-4095));
    assert_non_null(tw_strerror(-2147483647 - 1));
}

/* ---- failures ----------------------------------------------------------- */

static void failure_new_formats_message(void **state)
{
    (void)state;
    tw_failure_t *f = tw_failure_new("tcp", -ECONNRESET, "peer %s:%d reset after %zu bytes",
                                     "10.0.0.1", 443, (size_t)1234);
    assert_non_null(f);
    assert_string_equal(f->domain, "tcp");
    assert_int_equal(f->code, -ECONNRESET);
    assert_string_equal(f->message, "peer 10.0.0.1:443 reset after 1234 bytes");
    assert_null(f->cause);
    tw_failure_free(f);

    /* A long message is not truncated. */
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    f = tw_failure_new("dns", -EIO, "[%s]", big);
    assert_non_null(f);
    assert_int_equal(strlen(f->message), sizeof big + 1);
    tw_failure_free(f);
}

static void failure_new_without_format_uses_strerror(void **state)
{
    (void)state;
    tw_failure_t *f = tw_failure_new("reactor", TW_ENOTRUNNING, NULL);
    assert_non_null(f);
    assert_string_equal(f->message, tw_strerror(TW_ENOTRUNNING));
    assert_ptr_not_equal(f->message, tw_strerror(TW_ENOTRUNNING)); /* owned copy */
    tw_failure_free(f);
    f = tw_failure_new("tcp", -ENOENT, NULL);
    assert_non_null(f);
    assert_string_equal(f->message, "No such file or directory");
    tw_failure_free(f);
    tw_failure_free(NULL);
}

static tw_failure_t *failure_vnew(const char *domain, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_failure_t *f = tw_failure_newv(domain, code, fmt, ap);
    va_end(ap);
    return f;
}

static void failure_newv_takes_a_va_list(void **state)
{
    (void)state;
    tw_failure_t *f = failure_vnew("tls", TW_ESSL_BASE - 1, "%s/%d", "handshake", 7);
    assert_non_null(f);
    assert_string_equal(f->message, "handshake/7");
    assert_int_equal(f->code, TW_ESSL_BASE - 1);
    tw_failure_free(f);
}

static void failure_wrap_chains_and_frees_earlier_cause(void **state)
{
    (void)state;
    tw_failure_t *root = tw_failure_new("dns", -ETIMEDOUT, "lookup of %s timed out", "x.test");
    tw_failure_t *mid = tw_failure_new("tcp", -EHOSTUNREACH, NULL);
    tw_failure_t *top = tw_failure_new("http", -EIO, "request failed");
    assert_non_null(root);
    assert_non_null(mid);
    assert_non_null(top);
    assert_ptr_equal(tw_failure_wrap(mid, root), mid);
    assert_ptr_equal(tw_failure_wrap(top, mid), top);
    assert_ptr_equal(top->cause, mid);
    assert_ptr_equal(top->cause->cause, root);
    assert_null(root->cause);

    /* Wrapping again replaces (and frees) the earlier cause: ASan checks. */
    tw_failure_t *other = tw_failure_new("tcp", -ECONNREFUSED, NULL);
    assert_non_null(other);
    assert_ptr_equal(tw_failure_wrap(top, other), top);
    assert_ptr_equal(top->cause, other);
    /* Wrapping with the cause it already has keeps it. */
    assert_ptr_equal(tw_failure_wrap(top, other), top);
    assert_ptr_equal(top->cause, other);
    assert_string_equal(top->cause->message, tw_strerror(-ECONNREFUSED));
    /* Wrapping into nothing frees the cause (a failed allocation upstream). */
    tw_failure_t *lost = tw_failure_new("x", -1, "lost");
    assert_null(tw_failure_wrap(NULL, lost));
    tw_failure_free(top); /* and its whole chain */
}

static void failure_copy_is_deep(void **state)
{
    (void)state;
    tw_failure_t *f = tw_failure_wrap(tw_failure_new("http", -EIO, "outer %d", 1),
                                      tw_failure_wrap(tw_failure_new("tcp", -EPIPE, NULL),
                                                      tw_failure_new("tls", -EPROTO, "inner")));
    assert_non_null(f);
    tw_failure_t *c = tw_failure_copy(f);
    assert_non_null(c);
    const tw_failure_t *a = f, *b = c;
    int depth = 0;
    for (; a; a = a->cause, b = b->cause, depth++) {
        assert_non_null(b);
        assert_ptr_not_equal(a, b);
        assert_ptr_not_equal(a->message, b->message);
        assert_string_equal(a->message, b->message);
        assert_string_equal(a->domain, b->domain);
        assert_int_equal(a->code, b->code);
    }
    assert_null(b);
    assert_int_equal(depth, 3);
    tw_failure_free(f); /* the copy outlives the original */
    assert_string_equal(c->cause->cause->message, "inner");
    /* A message with a percent sign is copied verbatim. */
    tw_failure_t *p = tw_failure_new("x", -1, "100%% %s", "done");
    tw_failure_t *pc = tw_failure_copy(p);
    assert_string_equal(pc->message, "100% done");
    tw_failure_free(p);
    tw_failure_free(pc);
    tw_failure_free(c);
    assert_null(tw_failure_copy(NULL));
}

/* ---- logging ------------------------------------------------------------ */

typedef struct captured {
    int n;
    tw_log_level_t level[8];
    char domain[8][32];
    char msg[8][1100];
    void *arg;
} captured_t;

static void capture_sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    captured_t *c = arg;
    c->arg = arg;
    if (c->n >= 8)
        return;
    c->level[c->n] = level;
    snprintf(c->domain[c->n], sizeof c->domain[0], "%s", domain);
    snprintf(c->msg[c->n], sizeof c->msg[0], "%s", msg);
    c->n++;
}

static void log_levels_filter_messages_to_custom_sink(void **state)
{
    (void)state;
    captured_t c = { 0 };
    tw_log_set_sink(capture_sink, &c);
    tw_log_set_level(TW_LOG_WARN);
    assert_int_equal(tw_log_get_level(), TW_LOG_WARN);
    tw_log(TW_LOG_DEBUG, "reactor", "debug %d", 1);
    tw_log(TW_LOG_INFO, "reactor", "info %d", 2);
    tw_log(TW_LOG_WARN, "tcp", "warn %d", 3);
    tw_log(TW_LOG_ERROR, "dns", "error %s", "four");
    assert_int_equal(c.n, 2);
    assert_ptr_equal(c.arg, &c);
    assert_int_equal(c.level[0], TW_LOG_WARN);
    assert_string_equal(c.domain[0], "tcp");
    assert_string_equal(c.msg[0], "warn 3"); /* no trailing newline */
    assert_int_equal(c.level[1], TW_LOG_ERROR);
    assert_string_equal(c.domain[1], "dns");
    assert_string_equal(c.msg[1], "error four");

    tw_log_set_level(TW_LOG_DEBUG);
    tw_log(TW_LOG_DEBUG, "reactor", "now %s", "seen");
    assert_int_equal(c.n, 3);
    assert_int_equal(c.level[2], TW_LOG_DEBUG);
    assert_string_equal(c.msg[2], "now seen");

    /* NONE logs nothing, and is not a level messages can be logged at. */
    tw_log(TW_LOG_NONE, "reactor", "never");
    assert_int_equal(c.n, 3);
    tw_log_set_level(TW_LOG_NONE);
    tw_log(TW_LOG_ERROR, "reactor", "dropped");
    assert_int_equal(c.n, 3);

    /* A long message reaches the sink cut short, not overflowing. */
    tw_log_set_level(TW_LOG_INFO);
    char big[3000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    tw_log(TW_LOG_INFO, "x", "%s", big);
    assert_int_equal(c.n, 4);
    assert_true(strlen(c.msg[3]) > 100 && strlen(c.msg[3]) < sizeof big - 1);

    /* NULL restores the stderr sink: nothing more reaches ours. */
    tw_log_set_sink(NULL, NULL);
    tw_log_set_level(TW_LOG_NONE); /* keep the test output quiet */
    tw_log(TW_LOG_ERROR, "reactor", "to stderr, filtered");
    assert_int_equal(c.n, 4);
    tw_log_set_level(TW_LOG_INFO);
}

static void log_through_valist(tw_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_logv(level, "reactor", fmt, ap);
    va_end(ap);
}

static void logv_takes_a_va_list(void **state)
{
    (void)state;
    captured_t c = { 0 };
    tw_log_set_sink(capture_sink, &c);
    tw_log_set_level(TW_LOG_INFO);
    log_through_valist(TW_LOG_INFO, "%s-%d-%c", "a", 2, 'c');
    log_through_valist(TW_LOG_DEBUG, "%s", "filtered");
    assert_int_equal(c.n, 1);
    assert_string_equal(c.msg[0], "a-2-c");
    assert_string_equal(c.domain[0], "reactor");
    assert_int_equal(c.level[0], TW_LOG_INFO);
    tw_log_set_sink(NULL, NULL);
}

int main(void)
{
    /* The tests set the level explicitly; whatever TWINE_LOG says must not
     * matter, so make it say something else. */
    setenv("TWINE_LOG", "none", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_covers_errno_and_twine_codes),
        cmocka_unit_test(strerror_covers_every_twine_code_and_range),
        cmocka_unit_test(failure_new_formats_message),
        cmocka_unit_test(failure_new_without_format_uses_strerror),
        cmocka_unit_test(failure_newv_takes_a_va_list),
        cmocka_unit_test(failure_wrap_chains_and_frees_earlier_cause),
        cmocka_unit_test(failure_copy_is_deep),
        cmocka_unit_test(log_levels_filter_messages_to_custom_sink),
        cmocka_unit_test(logv_takes_a_va_list),
    };
    TW_TEST_MAIN(tests);
}
