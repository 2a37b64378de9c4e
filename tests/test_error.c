/* test_error.c -- tw_strerror, failures and logging. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_covers_errno_and_twine_codes),
    };
    TW_TEST_MAIN(tests);
}
