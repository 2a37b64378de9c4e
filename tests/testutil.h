/* testutil.h -- shared helpers for the cmocka tests. */
#ifndef TW_TESTUTIL_H
#define TW_TESTUTIL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <twine.h>

/* Assert that the program was linked with the backend named by the
 * TWINE_TEST_BACKEND environment variable (set by tests/run-tests.sh); fails
 * when it is unset.  Every per-backend test program runs this first. */
void tw_test_backend_is_expected(void **state);

/* Raise the soft RLIMIT_NOFILE to at least `want` (capped at the hard
 * limit); returns the new soft limit. */
long tw_test_raise_nofile(long want);

/* pipe2 / socketpair with O_NONBLOCK | O_CLOEXEC; asserts on failure. */
void tw_test_pipe(int fds[2]);
void tw_test_socketpair(int fds[2]);

/* Iterate `r` until *counter >= want: at most max_iters passes, each waiting
 * at most 50 ms for something to happen, and at most 30 s in all (a guard
 * against a hang, never what decides a correct run).  Returns whether
 * *counter reached want. */
bool tw_test_iterate_until(tw_reactor_t *r, const int *counter, int want, int max_iters);

/* A new reactor; fails the test if it cannot be made. */
tw_reactor_t *tw_test_reactor_new(void);

/* tw_test_iterate_until, failing the test (with the counter's value) when
 * the count is not reached. */
void tw_test_run_until(tw_reactor_t *r, const int *counter, int want);

/* FNV-1a, 64 bits: a running hash for checking large transfers. */
#define TW_TEST_FNV_INIT 0xcbf29ce484222325ull
uint64_t tw_test_fnv(uint64_t h, const void *data, size_t len);

/* Write one byte to fd (a pipe or socket); asserts that it was written. */
void tw_test_poke(int fd);

/* Run `tests` after the backend check; use as main's body. */
#define TW_TEST_MAIN(tests)                                                                 \
    do {                                                                                    \
        const struct CMUnitTest tw__check[] = { cmocka_unit_test(tw_test_backend_is_expected) }; \
        int tw__rc = cmocka_run_group_tests_name("backend", tw__check, NULL, NULL);        \
        return tw__rc ? tw__rc : cmocka_run_group_tests(tests, NULL, NULL);                 \
    } while (0)

#endif
