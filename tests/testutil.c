/* testutil.c -- shared helpers for the cmocka tests. */
#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

void tw_test_backend_is_expected(void **state)
{
    (void)state;
    const char *want = getenv("TWINE_TEST_BACKEND");
    if (!want)
        fail_msg("TWINE_TEST_BACKEND is not set (run the tests through tests/run-tests.sh)");
    assert_string_equal(tw_reactor_backend_name(), want);
}

long tw_test_raise_nofile(long want)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if ((long)rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max > want
                          ? (rlim_t)want : rl.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    return (long)rl.rlim_cur;
}

void tw_test_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

void tw_test_socketpair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

bool tw_test_iterate_until(tw_reactor_t *r, const int *counter, int want, int max_iters)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    for (int i = 0; i < max_iters && *counter < want && tw_time_now() < give_up; i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    return *counter >= want;
}

void tw_test_poke(int fd)
{
    char c = 'x';
    assert_int_equal(write(fd, &c, 1), 1);
}

tw_reactor_t *tw_test_reactor_new(void)
{
    tw_reactor_t *r = NULL;
    assert_int_equal(tw_reactor_new(&r), 0);
    assert_non_null(r);
    return r;
}

void tw_test_run_until(tw_reactor_t *r, const int *counter, int want)
{
    if (!tw_test_iterate_until(r, counter, want, 1000000))
        fail_msg("gave up waiting: counter is %d, want %d", *counter, want);
}

uint64_t tw_test_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
