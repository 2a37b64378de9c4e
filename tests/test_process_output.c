/* test_process_output.c -- tw_get_process_output, tw_get_process_value and
 * tw_get_process_output_and_value (Twisted's getProcessOutput and friends):
 * output and exit codes, stderr as a failure or merged, a child killed by a
 * signal, output over the limit (the child is killed), a program that does
 * not exist, the spawn options that are kept (environment, directory) and
 * the one that is not (the fd map), cancelling (the child is killed and
 * reaped), and a caller that drops its reference early. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- catching what a Deferred fires with ------------------------------------ */

typedef struct catch {
    int fired;
    tw_outcome_t o; /* owned: discarded by catch_done */
} catch_t;

static tw_outcome_t catch_cb(tw_outcome_t in, void *a1, void *a2)
{
    (void)a2;
    catch_t *c = a1;
    c->fired++;
    c->o = in;
    return TW_OK(NULL, NULL);
}

/* Wait for d to fire; drop our reference. */
static void wait_for(tw_reactor_t *r, tw_deferred_t *d, catch_t *c)
{
    assert_non_null(d);
    memset(c, 0, sizeof *c);
    assert_int_equal(tw_deferred_add_both(d, catch_cb, c, NULL), 0);
    tw_deferred_unref(d);
    tw_test_run_until(r, &c->fired, 1);
    assert_int_equal(c->fired, 1);
}

static const tw_process_result_t *result_of(const catch_t *c)
{
    if (c->o.kind != TW_OUTCOME_OK)
        fail_msg("failed: %s (%s)", c->o.failure ? c->o.failure->message : "?",
                 c->o.failure ? tw_strerror(c->o.failure->code) : "");
    assert_non_null(c->o.ptr);
    return c->o.ptr;
}

static const tw_failure_t *failure_of(const catch_t *c)
{
    assert_int_equal(c->o.kind, TW_OUTCOME_FAIL);
    assert_non_null(c->o.failure);
    return c->o.failure;
}

static void catch_done(catch_t *c)
{
    tw_outcome_discard(c->o);
    memset(c, 0, sizeof *c);
}

#define ARGV(...) ((char *const[]){ __VA_ARGS__, NULL })

/* ---- output and values ---------------------------------------------------------- */

static void output_of_echo(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r, tw_get_process_output(r, "echo", ARGV("echo", "hello"), NULL, false, 0), &c);
    const tw_process_result_t *res = result_of(&c);
    assert_string_equal(res->out, "hello\n");
    assert_int_equal(res->out_len, 6);
    assert_string_equal(res->err, "");
    assert_int_equal(res->err_len, 0);
    assert_int_equal(res->exit_code, 0);
    assert_int_equal(res->signal, 0);
    catch_done(&c);
    tw_reactor_free(r);
}

/* Whatever the exit code, output fires with the output (Twisted's
 * getProcessOutput ignores it); nothing written is an empty string. */
static void output_ignores_the_exit_code(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r, tw_get_process_output(r, "/bin/sh", ARGV("sh", "-c", "exit 4"), NULL, false, 0),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_non_null(res->out);
    assert_string_equal(res->out, "");
    assert_int_equal(res->exit_code, 4);
    catch_done(&c);
    tw_reactor_free(r);
}

static void value_of_an_exit_code(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r, tw_get_process_value(r, "sh", ARGV("sh", "-c", "echo discarded; exit 3"), NULL),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_int_equal(res->exit_code, 3);
    assert_int_equal(res->signal, 0);
    assert_string_equal(res->out, "");
    assert_int_equal(res->out_len, 0);
    assert_string_equal(res->err, "");
    catch_done(&c);
    tw_reactor_free(r);
}

static void stderr_output_is_a_failure_unless_errors_too(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r,
             tw_get_process_output(r, "sh", ARGV("sh", "-c", "echo out; echo oops >&2"), NULL,
                                   false, 0),
             &c);
    const tw_failure_t *f = failure_of(&c);
    assert_string_equal(f->domain, "process");
    assert_int_equal(f->code, -EIO);
    assert_non_null(strstr(f->message, "got stderr output"));
    assert_non_null(strstr(f->message, "oops"));
    catch_done(&c);

    /* errors_too: merged into out (the two pipes race, so no order) */
    wait_for(r,
             tw_get_process_output(r, "sh", ARGV("sh", "-c", "echo out; echo oops >&2"), NULL,
                                   true, 0),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_int_equal(res->out_len, 9);
    assert_non_null(strstr(res->out, "out\n"));
    assert_non_null(strstr(res->out, "oops\n"));
    assert_string_equal(res->err, "");
    assert_int_equal(res->exit_code, 0);
    catch_done(&c);
    tw_reactor_free(r);
}

static void output_and_value_keeps_both_streams_and_the_code(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r,
             tw_get_process_output_and_value(
                 r, "sh", ARGV("sh", "-c", "printf 'abc\\0d'; printf def >&2; exit 5"), NULL, 0),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_int_equal(res->out_len, 5); /* binary-safe: a NUL inside */
    assert_memory_equal(res->out, "abc\0d", 6);
    assert_int_equal(res->err_len, 3);
    assert_string_equal(res->err, "def");
    assert_int_equal(res->exit_code, 5);
    assert_int_equal(res->signal, 0);
    catch_done(&c);
    tw_reactor_free(r);
}

static void killed_by_a_signal(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r,
             tw_get_process_output_and_value(r, "sh", ARGV("sh", "-c", "echo before; kill -9 $$"),
                                             NULL, 0),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_string_equal(res->out, "before\n");
    assert_int_equal(res->signal, SIGKILL);
    assert_int_equal(res->exit_code, -1);
    catch_done(&c);

    wait_for(r, tw_get_process_value(r, "sh", ARGV("sh", "-c", "kill -TERM $$"), NULL), &c);
    res = result_of(&c);
    assert_int_equal(res->signal, SIGTERM);
    assert_int_equal(res->exit_code, -1);
    catch_done(&c);
    tw_reactor_free(r);
}

/* ---- limits and failures -------------------------------------------------------- */

static void output_over_the_limit_kills_the_child_with_efbig(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    /* yes never stops by itself: only the kill ends it */
    wait_for(r, tw_get_process_output(r, "yes", ARGV("yes"), NULL, false, 4096), &c);
    const tw_failure_t *f = failure_of(&c);
    assert_string_equal(f->domain, "process");
    assert_int_equal(f->code, -EFBIG);
    catch_done(&c);

    wait_for(r,
             tw_get_process_output_and_value(r, "sh",
                                             ARGV("sh", "-c", "head -c 100000 /dev/zero >&2"),
                                             NULL, 1000),
             &c);
    assert_int_equal(failure_of(&c)->code, -EFBIG);
    catch_done(&c);

    /* exactly at the limit is fine */
    wait_for(r,
             tw_get_process_output(r, "head", ARGV("head", "-c", "1000", "/dev/zero"), NULL,
                                   false, 1000),
             &c);
    assert_int_equal(result_of(&c)->out_len, 1000);
    catch_done(&c);
    tw_reactor_free(r);
}

static void a_missing_program_fails_with_enoent(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    wait_for(r, tw_get_process_output(r, "/no/such/program", ARGV("x"), NULL, false, 0), &c);
    const tw_failure_t *f = failure_of(&c);
    assert_string_equal(f->domain, "process");
    assert_int_equal(f->code, -ENOENT);
    catch_done(&c);

    wait_for(r, tw_get_process_value(r, "no-such-program-twine", ARGV("x"), NULL), &c);
    assert_int_equal(failure_of(&c)->code, -ENOENT);
    catch_done(&c);

    /* bad arguments: no Deferred, errno says why */
    errno = 0;
    assert_null(tw_get_process_output(r, "echo", NULL, NULL, false, 0));
    assert_int_equal(errno, EINVAL);
    tw_reactor_free(r);
}

/* The environment and directory are kept; the fd map and TW_SPAWN_PTY are
 * not (stdin is /dev/null, stdout and stderr are collected). */
static void spawn_options_env_and_cwd_are_used_fd_map_ignored(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char *env[] = { "TWINE_TEST_VAR=from-env", "PATH=/usr/bin:/bin", NULL };
    tw_child_fd_t bogus[] = { { 5, TW_FD_READ, -1 } };
    tw_spawn_options_t opt = { .env = env, .cwd = "/", .fds = bogus, .nfds = 1,
                               .flags = TW_SPAWN_PTY };
    catch_t c;
    wait_for(r,
             tw_get_process_output_and_value(
                 r, "sh", ARGV("sh", "-c", "echo $TWINE_TEST_VAR; pwd; cat; echo e >&2"), &opt,
                 0),
             &c);
    const tw_process_result_t *res = result_of(&c);
    assert_string_equal(res->out, "from-env\n/\n");
    assert_string_equal(res->err, "e\n");
    assert_int_equal(res->exit_code, 0);
    catch_done(&c);
    tw_reactor_free(r);
}

/* ---- cancelling ------------------------------------------------------------------- */

static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* The child writes its pid to a file, then sleeps: cancelling errbacks at
 * once with the cancelled failure, kills it, and it is reaped (its pid goes
 * away) by the protocol that lives on until process_ended. */
static void cancel_kills_the_child(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char dir[] = "/tmp/twine-po-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], script[256];
    snprintf(path, sizeof path, "%s/pid", dir);
    snprintf(script, sizeof script, "echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 60", path,
             path, path);
    tw_deferred_t *d = tw_get_process_output(r, "sh", ARGV("sh", "-c", script), NULL, false, 0);
    assert_non_null(d);
    catch_t c = { 0 };
    assert_int_equal(tw_deferred_add_both(d, catch_cb, &c, NULL), 0);
    pid_t pid = 0;
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (!(pid = read_pid(path)) && tw_time_now() < give_up)
        tw_reactor_iterate(r, TW_MSEC(10));
    assert_true(pid > 0);
    assert_int_equal(c.fired, 0);

    tw_deferred_cancel(d);
    assert_int_equal(c.fired, 1);
    const tw_failure_t *f = failure_of(&c);
    assert_int_equal(f->code, -ECANCELED);
    catch_done(&c);
    tw_deferred_unref(d);

    /* until reaped it is a zombie, and kill(pid, 0) still finds it */
    give_up = tw_time_now() + TW_SEC(30);
    while (kill(pid, 0) == 0 && tw_time_now() < give_up)
        tw_reactor_iterate(r, TW_MSEC(10));
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    /* let process_ended and destroy run, for the leak check */
    for (int i = 0; i < 10; i++)
        tw_reactor_iterate(r, TW_MSEC(1));
    unlink(path);
    rmdir(dir);
    tw_reactor_free(r);
}

/* The reactor freed with the child running: the child becomes ours (not
 * reaped, not killed), the Deferred never fires by itself, and cancelling it
 * afterwards is safe (the collector is gone: only the Deferred errbacks). */
static void reactor_freed_with_the_child_running(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    char dir[] = "/tmp/twine-po-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], script[256];
    snprintf(path, sizeof path, "%s/pid", dir);
    snprintf(script, sizeof script, "echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 60", path,
             path, path);
    tw_deferred_t *d = tw_get_process_value(r, "sh", ARGV("sh", "-c", script), NULL);
    assert_non_null(d);
    catch_t c = { 0 };
    assert_int_equal(tw_deferred_add_both(d, catch_cb, &c, NULL), 0);
    pid_t pid = 0;
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (!(pid = read_pid(path)) && tw_time_now() < give_up)
        tw_reactor_iterate(r, TW_MSEC(10));
    assert_true(pid > 0);
    tw_reactor_free(r);
    assert_int_equal(c.fired, 0);
    assert_int_equal(kill(pid, 0), 0); /* still running, and ours */
    tw_deferred_cancel(d);
    assert_int_equal(c.fired, 1);
    assert_int_equal(failure_of(&c)->code, -ECANCELED);
    catch_done(&c);
    tw_deferred_unref(d);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    unlink(path);
    rmdir(dir);
}

/* The caller may drop its reference at once: the collector keeps its own
 * until the child has ended, and the chain still runs. */
static void dropping_the_reference_early_is_fine(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c;
    tw_deferred_t *d = tw_get_process_output(r, "echo", ARGV("echo", "late"), NULL, false, 0);
    wait_for(r, d, &c); /* adds the step, then drops the only reference we had */
    assert_string_equal(result_of(&c)->out, "late\n");
    catch_done(&c);
    /* and without any step at all: nothing leaks, nothing is reported (its
     * end is seen as the reactor watching what it watched before) */
    int watched = tw_reactor_watched_count(r);
    tw_deferred_unref(tw_get_process_value(r, "true", ARGV("true"), NULL));
    assert_true(tw_reactor_watched_count(r) > watched);
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (tw_reactor_watched_count(r) > watched && tw_time_now() < give_up)
        tw_reactor_iterate(r, TW_MSEC(10));
    assert_int_equal(tw_reactor_watched_count(r), watched);
    for (int i = 0; i < 10; i++)
        tw_reactor_iterate(r, TW_MSEC(1));
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(output_of_echo),
        cmocka_unit_test(output_ignores_the_exit_code),
        cmocka_unit_test(value_of_an_exit_code),
        cmocka_unit_test(stderr_output_is_a_failure_unless_errors_too),
        cmocka_unit_test(output_and_value_keeps_both_streams_and_the_code),
        cmocka_unit_test(killed_by_a_signal),
        cmocka_unit_test(output_over_the_limit_kills_the_child_with_efbig),
        cmocka_unit_test(a_missing_program_fails_with_enoent),
        cmocka_unit_test(spawn_options_env_and_cwd_are_used_fd_map_ignored),
        cmocka_unit_test(cancel_kills_the_child),
        cmocka_unit_test(reactor_freed_with_the_child_running),
        cmocka_unit_test(dropping_the_reference_early_is_fine),
    };
    TW_TEST_MAIN(tests);
}
