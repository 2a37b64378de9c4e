/* test_deferred.c -- Deferreds: step order and track switching as Twisted,
 * chaining, pause, cancel, timeouts with a real reactor, lists and gather,
 * unhandled failure reports, ownership of every value in every chain shape
 * (counted here, checked by ASan), and the lock, semaphore and queue.
 *
 * Every test runs with a hook that fails it on an unexpected unhandled
 * failure, and a teardown that fails it if a value is still alive. */
#define _GNU_SOURCE
#include "testutil.h"

#include "tw_deferred.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- counted values, a trace, the log and the unhandled hook ---------------- */

static int live; /* values made by val_new and not yet freed */

typedef struct val {
    int n;
} val_t;

static val_t *val_new(int n)
{
    val_t *v = malloc(sizeof *v);
    assert_non_null(v);
    v->n = n;
    live++;
    return v;
}

static void val_free(void *p)
{
    assert_non_null(p);
    live--;
    free(p);
}

#define VAL(n) TW_OK(val_new(n), val_free)
#define L(x) ((void *)(intptr_t)(x))

static char trace[4096];

static void trace_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace_add(const char *fmt, ...)
{
    size_t len = strlen(trace);
    if (len)
        trace[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace + len, sizeof trace - len, fmt, ap);
    va_end(ap);
}

static void trace_outcome(const char *label, tw_outcome_t in)
{
    if (in.kind == TW_OUTCOME_FAIL && in.failure->code == -ECANCELED)
        trace_add("%s:fail=ECANCELED", label);
    else if (in.kind == TW_OUTCOME_FAIL && in.failure->code == -EBUSY)
        trace_add("%s:fail=EBUSY", label);
    else if (in.kind == TW_OUTCOME_FAIL)
        trace_add("%s:fail=%d", label, in.failure->code);
    else if (in.ptr)
        trace_add("%s:ok=%d", label, ((val_t *)in.ptr)->n);
    else
        trace_add("%s:ok=null", label);
}

static int error_logs;
static char last_log[1024];

static void quiet_sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    if (level >= TW_LOG_ERROR) {
        error_logs++;
        snprintf(last_log, sizeof last_log, "[%s] %s", domain, msg);
    }
}

static void fail_on_unhandled(const tw_failure_t *f, void *arg)
{
    fail_msg("unexpected unhandled failure in a Deferred: [%s] %s", f->domain, f->message);
}

typedef struct unhandled {
    int count;
    int code;
    char message[256];
} unhandled_t;

static void count_unhandled(const tw_failure_t *f, void *arg)
{
    unhandled_t *u = arg;
    u->count++;
    u->code = f->code;
    snprintf(u->message, sizeof u->message, "%s", f->message);
}

static int setup(void **state)
{
    live = 0;
    trace[0] = '\0';
    error_logs = 0;
    last_log[0] = '\0';
    tw_log_set_sink(quiet_sink, NULL);
    tw_deferred_set_unhandled_hook(fail_on_unhandled, NULL);
    return 0;
}

static int teardown(void **state)
{
    tw_deferred_set_unhandled_hook(NULL, NULL);
    tw_log_set_sink(NULL, NULL);
    assert_int_equal(live, 0);
    return 0;
}

/* ---- steps (a1: a label; a2: an amount, a code or another Deferred) ----------- */

static tw_outcome_t add_step(tw_outcome_t in, void *label, void *amount)
{
    assert_int_equal(in.kind, TW_OUTCOME_OK);
    trace_outcome(label, in);
    ((val_t *)in.ptr)->n += (int)(intptr_t)amount;
    return in;
}

static tw_outcome_t record_step(tw_outcome_t in, void *label, void *unused)
{
    trace_outcome(label, in);
    return in;
}

static tw_outcome_t fail_step(tw_outcome_t in, void *label, void *code)
{
    trace_outcome(label, in);
    tw_outcome_discard(in);
    return TW_FAIL(tw_failure_new("test", (int)(intptr_t)code, "%s failed", (char *)label));
}

static tw_outcome_t recover_step(tw_outcome_t in, void *label, void *n)
{
    assert_int_equal(in.kind, TW_OUTCOME_FAIL);
    trace_outcome(label, in);
    tw_outcome_discard(in);
    return VAL((int)(intptr_t)n);
}

/* Wait for `next` (a2), taking a reference for the chain. */
static tw_outcome_t chain_step(tw_outcome_t in, void *label, void *next)
{
    if (label)
        trace_outcome(label, in);
    tw_outcome_discard(in);
    return TW_CHAIN(tw_deferred_ref(next));
}

static void trace_args_free(void *label, void *unused)
{
    trace_add("free(%s)", (char *)label);
}

static tw_failure_t *test_failure(int code)
{
    tw_failure_t *f = tw_failure_new("test", code, "test failure %d", code);
    assert_non_null(f);
    return f;
}

static tw_deferred_t *new_deferred(void)
{
    tw_deferred_t *d = tw_deferred_new(NULL, NULL);
    assert_non_null(d);
    return d;
}

static int result_value(tw_deferred_t *d)
{
    const tw_outcome_t *o = tw_deferred_result(d);
    assert_non_null(o);
    assert_int_equal(o->kind, TW_OUTCOME_OK);
    assert_non_null(o->ptr);
    return ((val_t *)o->ptr)->n;
}

static int result_code(tw_deferred_t *d)
{
    const tw_outcome_t *o = tw_deferred_result(d);
    assert_non_null(o);
    assert_int_equal(o->kind, TW_OUTCOME_FAIL);
    return o->failure->code;
}

/* ---- order and tracks ----------------------------------------------------------- */

static void callbacks_run_in_order_with_bound_arguments(void **state)
{
    tw_deferred_t *d = new_deferred();
    assert_int_equal(tw_deferred_add_callback(d, add_step, "a", L(1)), 0);
    assert_int_equal(tw_deferred_add_callback(d, add_step, "b", L(10)), 0);
    assert_int_equal(tw_deferred_add_callback(d, add_step, "c", L(100)), 0);
    assert_string_equal(trace, "");
    assert_false(tw_deferred_called(d));
    assert_null(tw_deferred_result(d));
    assert_int_equal(tw_deferred_callback(d, val_new(0), val_free), 0);
    assert_true(tw_deferred_called(d));
    assert_string_equal(trace, "a:ok=0 b:ok=1 c:ok=11");
    assert_int_equal(result_value(d), 111);
    tw_deferred_unref(d); /* frees the value it holds */
}

static void steps_added_after_firing_run_at_once(void **state)
{
    tw_deferred_t *d = tw_deferred_succeed(val_new(5), val_free);
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callback(d, add_step, "late", L(1)), 0);
    assert_string_equal(trace, "late:ok=5");
    assert_int_equal(tw_deferred_add_errback(d, record_step, "skipped", NULL), 0);
    assert_string_equal(trace, "late:ok=5");
    assert_int_equal(result_value(d), 6);
    tw_deferred_unref(d);
}

static void failing_callback_skips_callbacks_to_the_next_errback(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, fail_step, "a", L(-5));
    tw_deferred_add_callback(d, record_step, "b", NULL);         /* skipped */
    tw_deferred_add_callbacks(d, record_step, NULL, "c", NULL, NULL); /* skipped */
    tw_deferred_add_errback(d, record_step, "d", NULL);
    tw_deferred_add_callbacks(d, record_step, record_step, "e", NULL, NULL);
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "a:ok=0 d:fail=-5 e:fail=-5");
    assert_int_equal(result_code(d), -5);
    /* handle it, so that nothing is reported */
    tw_deferred_add_errback(d, recover_step, "f", L(1));
    tw_deferred_unref(d);
}

static void errback_returning_a_value_goes_back_to_callbacks(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, record_step, "skipped", NULL);
    tw_deferred_add_errback(d, recover_step, "recover", L(7));
    tw_deferred_add_errback(d, record_step, "skipped too", NULL);
    tw_deferred_add_callback(d, add_step, "after", L(1));
    tw_deferred_errback(d, test_failure(-3));
    assert_string_equal(trace, "recover:fail=-3 after:ok=7");
    assert_int_equal(result_value(d), 8);
    tw_deferred_unref(d);
}

static void pair_runs_only_one_of_its_callback_and_errback(void **state)
{
    /* Twisted: the errback of a pair does not see its own callback's failure. */
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callbacks(d, fail_step, record_step, "pair", L(-7), NULL);
    tw_deferred_add_callbacks(d, record_step, recover_step, "next", L(1), NULL);
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "pair:ok=0 next:fail=-7");
    assert_int_equal(result_value(d), 1);
    tw_deferred_unref(d);
}

static void add_both_sees_values_and_failures(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_both(d, record_step, "both1", NULL);
    tw_deferred_add_callback(d, fail_step, "fail", L(-9));
    tw_deferred_add_both(d, record_step, "both2", NULL);
    tw_deferred_add_both(d, recover_step, "both3", L(4));
    tw_deferred_callback(d, val_new(1), val_free);
    assert_string_equal(trace, "both1:ok=1 fail:ok=1 both2:fail=-9 both3:fail=-9");
    assert_int_equal(result_value(d), 4);
    tw_deferred_unref(d);
}

static void null_value_and_null_destructor_pass_through(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_both(d, record_step, "a", NULL);
    tw_deferred_callback(d, NULL, NULL);
    assert_string_equal(trace, "a:ok=null");
    const tw_outcome_t *o = tw_deferred_result(d);
    assert_non_null(o);
    assert_null(o->ptr);
    tw_deferred_unref(d);
}

static void args_free_runs_exactly_for_steps_that_never_called(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callbacks(d, record_step, NULL, "ran", NULL, trace_args_free);
    tw_deferred_add_callbacks(d, NULL, record_step, "skipped", NULL, trace_args_free);
    tw_deferred_add_callbacks(d, record_step, record_step, "ran2", NULL, trace_args_free);
    tw_deferred_callback(d, val_new(1), val_free);
    assert_string_equal(trace, "ran:ok=1 free(skipped) ran2:ok=1");
    tw_deferred_unref(d);

    trace[0] = '\0';
    d = new_deferred(); /* never fired: its steps are dropped with it */
    tw_deferred_add_callbacks(d, record_step, NULL, "x", NULL, trace_args_free);
    tw_deferred_add_callbacks(d, NULL, record_step, "y", NULL, trace_args_free);
    tw_deferred_unref(d);
    assert_string_equal(trace, "free(x) free(y)");
}

static void chain_deferred_fires_the_other_and_goes_on_with_null(void **state)
{
    tw_deferred_t *d1 = new_deferred(), *d2 = new_deferred();
    tw_deferred_add_callback(d2, add_step, "d2", L(1));
    assert_int_equal(tw_deferred_chain(d1, d2), 0);
    tw_deferred_add_callback(d1, record_step, "d1", NULL);
    tw_deferred_callback(d1, val_new(3), val_free);
    assert_string_equal(trace, "d2:ok=3 d1:ok=null");
    assert_int_equal(result_value(d2), 4);
    tw_deferred_unref(d1);
    tw_deferred_unref(d2);
}

/* ---- chaining ------------------------------------------------------------------- */

/* Each level's callback makes a new Deferred, keeps a reference to fire it
 * later, and returns it: three levels deep. */
typedef struct nest {
    tw_deferred_t *d[3];
} nest_t;

static tw_outcome_t nest_step(tw_outcome_t in, void *ctx, void *level)
{
    static const char *const labels[] = { "a", "b", "c" };
    static const int amounts[] = { 1, 10, 1000 };
    nest_t *c = ctx;
    int lv = (int)(intptr_t)level;
    trace_add("enter%d:%d", lv, ((val_t *)in.ptr)->n);
    tw_outcome_discard(in);
    tw_deferred_t *d = new_deferred();
    if (lv < 2)
        assert_int_equal(tw_deferred_add_callback(d, nest_step, ctx, L(lv + 1)), 0);
    assert_int_equal(tw_deferred_add_callback(d, add_step, (void *)labels[lv], L(amounts[lv])),
                     0);
    c->d[lv] = tw_deferred_ref(d);
    return TW_CHAIN(d);
}

static void chaining_three_deep_fires_in_order_and_passes_results(void **state)
{
    nest_t c = { { NULL } };
    tw_deferred_t *outer = new_deferred();
    tw_deferred_add_callback(outer, nest_step, &c, L(0));
    tw_deferred_add_callback(outer, add_step, "outer", L(100));
    tw_deferred_callback(outer, val_new(0), val_free);
    assert_non_null(c.d[0]);
    assert_null(tw_deferred_result(outer)); /* waiting */
    tw_deferred_callback(c.d[0], val_new(1), val_free);
    tw_deferred_callback(c.d[1], val_new(2), val_free);
    assert_string_equal(trace, "enter0:0 enter1:1 enter2:2");
    assert_null(tw_deferred_result(outer));
    tw_deferred_callback(c.d[2], val_new(5), val_free);
    assert_string_equal(trace, "enter0:0 enter1:1 enter2:2 c:ok=5 b:ok=1005 a:ok=1015 "
                               "outer:ok=1016");
    assert_int_equal(result_value(outer), 1116);
    /* Each inner gave its result on: it is left with NULL. */
    for (int i = 0; i < 3; i++) {
        const tw_outcome_t *o = tw_deferred_result(c.d[i]);
        assert_non_null(o);
        assert_int_equal(o->kind, TW_OUTCOME_OK);
        assert_null(o->ptr);
        tw_deferred_unref(c.d[i]);
    }
    tw_deferred_unref(outer);
}

static void chaining_to_a_fired_deferred_takes_its_result_at_once(void **state)
{
    tw_deferred_t *inner = tw_deferred_succeed(val_new(42), val_free);
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, "outer", inner);
    tw_deferred_add_callback(d, add_step, "after", L(1));
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "outer:ok=0 after:ok=42");
    assert_int_equal(result_value(d), 43);
    assert_null(tw_deferred_result(inner)->ptr);
    tw_deferred_unref(inner);
    tw_deferred_unref(d);

    /* A failed one: its failure moves to the outer chain, and the inner is
     * not reported when it goes. */
    trace[0] = '\0';
    inner = tw_deferred_fail(test_failure(-11));
    d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_errback(d, recover_step, "eb", L(2));
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "eb:fail=-11");
    tw_deferred_unref(inner);
    tw_deferred_unref(d);
}

static void chained_inner_failure_goes_to_outer_errbacks(void **state)
{
    tw_deferred_t *inner = new_deferred(), *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_callback(d, record_step, "skipped", NULL);
    tw_deferred_add_errback(d, recover_step, "eb", L(6));
    tw_deferred_callback(d, val_new(0), val_free);
    tw_deferred_errback(inner, test_failure(-12));
    assert_string_equal(trace, "eb:fail=-12");
    assert_int_equal(result_value(d), 6);
    tw_deferred_unref(inner);
    tw_deferred_unref(d);
}

static void inner_steps_after_the_handover_see_null(void **state)
{
    /* Twisted: the inner's later callbacks get None once the outer took
     * its result. */
    tw_deferred_t *inner = new_deferred(), *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_callback(d, record_step, "outer", NULL);
    tw_deferred_callback(d, val_new(0), val_free);
    tw_deferred_add_callback(inner, record_step, "inner-late", NULL);
    tw_deferred_callback(inner, val_new(9), val_free);
    assert_string_equal(trace, "outer:ok=9 inner-late:ok=null");
    tw_deferred_unref(inner);
    tw_deferred_unref(d);
}

static void deep_chain_of_a_hundred_thousand_deferreds_uses_no_stack(void **state)
{
    enum { N = 100000 };
    tw_deferred_t **d = malloc(N * sizeof *d);
    assert_non_null(d);
    for (int i = 0; i < N; i++)
        d[i] = new_deferred();
    for (int i = 0; i < N - 1; i++)
        tw_deferred_add_callback(d[i], chain_step, NULL, d[i + 1]);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_callback(d[i], NULL, NULL); /* each now waits on the next */
    tw_deferred_add_callback(d[0], add_step, "outermost", L(1));
    tw_deferred_callback(d[N - 1], val_new(7), val_free);
    assert_string_equal(trace, "outermost:ok=7");
    assert_int_equal(result_value(d[0]), 8);
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);

    /* The same chain never fired, dropped from the inside out. */
    for (int i = 0; i < N; i++)
        d[i] = new_deferred();
    for (int i = 0; i < N - 1; i++)
        tw_deferred_add_callback(d[i], chain_step, NULL, d[i + 1]);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_callback(d[i], NULL, NULL);
    tw_deferred_add_callbacks(d[0], record_step, NULL, "never", NULL, trace_args_free);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_unref(d[i]); /* each is kept by its continuation */
    assert_string_equal(trace, "outermost:ok=7");
    tw_deferred_unref(d[N - 1]); /* frees them all */
    assert_string_equal(trace, "outermost:ok=7 free(never)");
    free(d);
}

/* ---- pause ------------------------------------------------------------------------ */

static void pause_holds_steps_until_as_many_unpauses(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_pause(d);
    tw_deferred_add_callback(d, add_step, "a", L(1));
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "");
    assert_null(tw_deferred_result(d));
    tw_deferred_pause(d);
    tw_deferred_unpause(d);
    assert_string_equal(trace, "");
    tw_deferred_unpause(d);
    assert_string_equal(trace, "a:ok=0");
    tw_deferred_pause(d);
    tw_deferred_add_callback(d, add_step, "b", L(1));
    assert_string_equal(trace, "a:ok=0");
    tw_deferred_unpause(d);
    assert_string_equal(trace, "a:ok=0 b:ok=1");
    tw_deferred_unref(d);
}

static void paused_inner_holds_the_outer_chain(void **state)
{
    tw_deferred_t *inner = new_deferred(), *d = new_deferred();
    tw_deferred_pause(inner);
    tw_deferred_callback(inner, val_new(3), val_free);
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_callback(d, record_step, "outer", NULL);
    tw_deferred_callback(d, val_new(0), val_free);
    assert_string_equal(trace, "");
    tw_deferred_unpause(inner);
    assert_string_equal(trace, "outer:ok=3");
    tw_deferred_unref(inner);
    tw_deferred_unref(d);
}

static tw_outcome_t unref_step(tw_outcome_t in, void *d, void *unused)
{
    trace_add("unref");
    tw_deferred_unref(d);
    return in;
}

static void callback_may_drop_the_last_reference_to_its_deferred(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, unref_step, d, NULL);
    tw_deferred_add_callback(d, add_step, "after", L(1));
    tw_deferred_callback(d, val_new(0), val_free); /* d is freed as the chain ends */
    assert_string_equal(trace, "unref after:ok=0");
    assert_int_equal(live, 0);
}

/* ---- cancel ------------------------------------------------------------------------- */

static void cancel_without_canceller_errbacks_and_swallows_the_later_fire(void **state)
{
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_errback(d, record_step, "eb", NULL);
    tw_deferred_add_errback(d, recover_step, "handled", L(0));
    tw_deferred_cancel(d);
    assert_string_equal(trace, "eb:fail=ECANCELED handled:fail=ECANCELED");
    /* The operation fires later, as it does not know: eaten, value freed. */
    assert_int_equal(tw_deferred_callback(d, val_new(1), val_free), 0);
    assert_int_equal(result_value(d), 0);
    tw_deferred_unref(d);
}

static void canceller_with_its_own_failure(tw_deferred_t *d, void *arg)
{
    trace_add("canceller(%s)", (char *)arg);
    tw_deferred_errback(d, test_failure(-32));
}

static void canceller_that_does_nothing(tw_deferred_t *d, void *arg)
{
    trace_add("canceller(%s)", (char *)arg);
}

static void cancel_calls_the_canceller_which_may_fire_its_own_failure(void **state)
{
    tw_deferred_t *d = tw_deferred_new(canceller_with_its_own_failure, "x");
    assert_non_null(d);
    tw_deferred_add_errback(d, recover_step, "eb", L(0));
    tw_deferred_cancel(d);
    assert_string_equal(trace, "canceller(x) eb:fail=-32");
    tw_deferred_unref(d);

    trace[0] = '\0';
    d = tw_deferred_new(canceller_that_does_nothing, "y");
    assert_non_null(d);
    tw_deferred_add_errback(d, recover_step, "eb", L(0));
    tw_deferred_cancel(d);
    assert_string_equal(trace, "canceller(y) eb:fail=ECANCELED");
    tw_deferred_cancel(d); /* fired: nothing more */
    assert_string_equal(trace, "canceller(y) eb:fail=ECANCELED");
    tw_deferred_unref(d);
}

static void cancelling_the_outer_cancels_the_inner_it_waits_on(void **state)
{
    tw_deferred_t *inner = tw_deferred_new(canceller_that_does_nothing, "inner");
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_errback(d, recover_step, "outer-eb", L(1));
    tw_deferred_callback(d, val_new(0), val_free);
    tw_deferred_cancel(d);
    assert_string_equal(trace, "canceller(inner) outer-eb:fail=ECANCELED");
    assert_int_equal(result_value(d), 1);
    tw_deferred_unref(inner);
    tw_deferred_unref(d);

    /* The inner was freed unfired: the outer can still be cancelled. */
    trace[0] = '\0';
    inner = new_deferred();
    d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_add_errback(d, recover_step, "outer-eb", L(1));
    tw_deferred_callback(d, val_new(0), val_free);
    tw_deferred_unref(inner);
    assert_null(tw_deferred_result(d));
    tw_deferred_cancel(d);
    assert_string_equal(trace, "outer-eb:fail=ECANCELED");
    tw_deferred_unref(d);
}

/* ---- time ----------------------------------------------------------------------------- */

typedef struct catch {
    int fired;
    int code;
    int cause_code;
    char message[128];
} catch_t;

static tw_outcome_t catch_step(tw_outcome_t in, void *arg, void *unused)
{
    catch_t *c = arg;
    c->fired++;
    if (in.kind == TW_OUTCOME_FAIL) {
        c->code = in.failure->code;
        c->cause_code = in.failure->cause ? in.failure->cause->code : 0;
        snprintf(c->message, sizeof c->message, "%s", in.failure->message);
        tw_outcome_discard(in);
        return TW_OK(NULL, NULL);
    }
    c->code = in.ptr ? ((val_t *)in.ptr)->n : 0;
    return in;
}

static void timeout_errbacks_with_a_timeout_failure(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c = { 0 };
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, record_step, "covered", NULL);
    assert_int_equal(tw_deferred_add_timeout(d, r, TW_MSEC(5)), 0);
    tw_deferred_add_both(d, catch_step, &c, NULL);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_deferred_unref(d); /* the timer keeps it */
    assert_true(tw_test_iterate_until(r, &c.fired, 1, 1000));
    assert_int_equal(c.code, -ETIMEDOUT);
    assert_int_equal(c.cause_code, -ECANCELED);
    assert_string_equal(c.message, "timed out after 0.005 s");
    assert_string_equal(trace, ""); /* the callback track never ran */
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void firing_before_the_timeout_cancels_its_timer(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_deferred_t *d = new_deferred();
    assert_int_equal(tw_deferred_add_timeout(d, r, TW_SEC(10)), 0);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_deferred_callback(d, val_new(3), val_free);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_int_equal(result_value(d), 3);
    /* On a Deferred that has fired already, the timer goes at once. */
    assert_int_equal(tw_deferred_add_timeout(d, r, TW_SEC(10)), 0);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

static void timeout_keeps_a_cancellers_own_failure(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c = { 0 };
    tw_deferred_t *d = tw_deferred_new(canceller_with_its_own_failure, "op");
    assert_int_equal(tw_deferred_add_timeout(d, r, TW_MSEC(1)), 0);
    tw_deferred_add_both(d, catch_step, &c, NULL);
    assert_true(tw_test_iterate_until(r, &c.fired, 1, 1000));
    assert_int_equal(c.code, -32);
    assert_string_equal(trace, "canceller(op)");
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

static void timeout_of_a_deferred_waiting_on_another_cancels_that_one(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c = { 0 };
    tw_deferred_t *inner = tw_deferred_new(canceller_that_does_nothing, "inner");
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_callback(d, val_new(0), val_free);
    assert_int_equal(tw_deferred_add_timeout(d, r, TW_MSEC(2)), 0);
    tw_deferred_add_both(d, catch_step, &c, NULL);
    tw_deferred_unref(d);
    assert_true(tw_test_iterate_until(r, &c.fired, 1, 1000));
    assert_int_equal(c.code, -ETIMEDOUT);
    assert_string_equal(trace, "canceller(inner)");
    tw_deferred_unref(inner);
    tw_reactor_free(r);
}

static tw_outcome_t later_fn(tw_outcome_t in, void *label, void *n)
{
    assert_int_equal(in.kind, TW_OUTCOME_OK);
    assert_null(in.ptr);
    trace_add("%s", (char *)label);
    return VAL((int)(intptr_t)n);
}

static void defer_later_fires_with_the_function_outcome(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c = { 0 };
    tw_time_t start = tw_time_now();
    tw_deferred_t *d = tw_defer_later(r, TW_MSEC(3), later_fn, "fn", L(21));
    assert_non_null(d);
    tw_deferred_add_both(d, catch_step, &c, NULL);
    assert_int_equal(c.fired, 0);
    assert_true(tw_test_iterate_until(r, &c.fired, 1, 1000));
    assert_true(tw_time_now() - start >= TW_MSEC(3));
    assert_int_equal(c.code, 21);
    assert_string_equal(trace, "fn");
    assert_int_equal(result_value(d), 21);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_deferred_unref(d);

    /* No function: fires with NULL; the caller may drop its reference. */
    catch_t c2 = { 0 };
    d = tw_defer_later(r, 0, NULL, NULL, NULL);
    tw_deferred_add_both(d, catch_step, &c2, NULL);
    tw_deferred_unref(d);
    assert_true(tw_test_iterate_until(r, &c2.fired, 1, 1000));
    assert_int_equal(c2.code, 0);
    tw_reactor_free(r);
}

static void cancelling_defer_later_cancels_its_timer(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    catch_t c = { 0 };
    tw_deferred_t *d = tw_defer_later(r, TW_SEC(10), later_fn, "fn", L(1));
    tw_deferred_add_both(d, catch_step, &c, NULL);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_deferred_cancel(d);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_int_equal(c.fired, 1);
    assert_int_equal(c.code, -ECANCELED);
    assert_string_equal(trace, ""); /* fn never ran */
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

/* ---- lists and gather ------------------------------------------------------------------- */

static tw_deferred_list_result_t *list_result(tw_deferred_t *l)
{
    const tw_outcome_t *o = tw_deferred_result(l);
    assert_non_null(o);
    assert_int_equal(o->kind, TW_OUTCOME_OK);
    assert_ptr_equal(o->free, tw_deferred_list_result_free);
    return o->ptr;
}

static int item_value(const tw_deferred_list_result_t *res, size_t i)
{
    assert_int_equal(res->items[i].kind, TW_OUTCOME_OK);
    return ((val_t *)res->items[i].ptr)->n;
}

static void make3(tw_deferred_t *ds[3])
{
    for (int i = 0; i < 3; i++)
        ds[i] = new_deferred();
}

static void unref3(tw_deferred_t *ds[3])
{
    for (int i = 0; i < 3; i++)
        tw_deferred_unref(ds[i]);
}

static void list_waits_for_all_and_reports_mixed_outcomes(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_callback(ds[0], val_new(10), val_free); /* already fired: taken at once */
    tw_deferred_t *l = tw_deferred_list(ds, 3, 0);
    assert_non_null(l);
    tw_deferred_add_both(ds[0], record_step, "m0", NULL);
    assert_false(tw_deferred_called(l));
    tw_deferred_errback(ds[2], test_failure(-2));
    assert_false(tw_deferred_called(l));
    tw_deferred_callback(ds[1], val_new(11), val_free);
    assert_true(tw_deferred_called(l));
    tw_deferred_list_result_t *res = list_result(l);
    assert_int_equal(res->n, 3);
    assert_int_equal(res->index, 3);
    assert_int_equal(item_value(res, 0), 10);
    assert_int_equal(item_value(res, 1), 11);
    assert_int_equal(res->items[2].kind, TW_OUTCOME_FAIL);
    assert_int_equal(res->items[2].failure->code, -2);
    /* Members go on with NULL, or a copy of their failure (to be handled). */
    tw_deferred_add_both(ds[1], record_step, "m1", NULL);
    tw_deferred_add_both(ds[2], recover_step, "m2", L(0));
    assert_string_equal(trace, "m0:ok=null m1:ok=null m2:fail=-2");
    unref3(ds);
    tw_deferred_unref(l);
}

static void list_consume_errors_turns_member_failures_into_null(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *l = tw_deferred_list(ds, 3, TW_DL_CONSUME_ERRORS);
    tw_deferred_errback(ds[0], test_failure(-1));
    tw_deferred_errback(ds[1], test_failure(-2));
    tw_deferred_callback(ds[2], val_new(3), val_free);
    tw_deferred_list_result_t *res = list_result(l);
    assert_int_equal(res->items[0].failure->code, -1);
    assert_int_equal(res->items[1].failure->code, -2);
    assert_int_equal(item_value(res, 2), 3);
    for (int i = 0; i < 3; i++)
        tw_deferred_add_both(ds[i], record_step, "m", NULL);
    assert_string_equal(trace, "m:ok=null m:ok=null m:ok=null");
    unref3(ds); /* nothing reported */
    tw_deferred_unref(l);
}

static void list_fire_on_one_callback_fires_with_the_first_success(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *l = tw_deferred_list(ds, 3, TW_DL_FIRE_ON_ONE_CALLBACK |
                                        TW_DL_CONSUME_ERRORS);
    tw_deferred_errback(ds[0], test_failure(-1));
    assert_false(tw_deferred_called(l));
    tw_deferred_callback(ds[2], val_new(7), val_free);
    assert_true(tw_deferred_called(l));
    tw_deferred_list_result_t *res = list_result(l);
    assert_int_equal(res->index, 2);
    assert_int_equal(item_value(res, 2), 7);
    assert_int_equal(res->items[0].kind, TW_OUTCOME_FAIL);
    assert_int_equal(res->items[1].kind, TW_OUTCOME_PENDING);
    /* After the list fired, members' values pass through untouched. */
    tw_deferred_callback(ds[1], val_new(8), val_free);
    assert_int_equal(result_value(ds[1]), 8);
    unref3(ds);
    tw_deferred_unref(l);
}

static void list_fire_on_one_errback_wraps_the_first_failure(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *l = tw_deferred_list(ds, 3, TW_DL_FIRE_ON_ONE_ERRBACK |
                                        TW_DL_CONSUME_ERRORS);
    catch_t c = { 0 };
    tw_deferred_add_both(l, catch_step, &c, NULL);
    tw_deferred_callback(ds[0], val_new(1), val_free); /* taken, then freed on the errback */
    tw_deferred_errback(ds[1], test_failure(-4));
    assert_int_equal(c.fired, 1);
    assert_int_equal(c.code, -4);
    assert_int_equal(c.cause_code, -4);
    assert_string_equal(c.message, "Deferred 1 of 3 failed: test failure -4");
    assert_int_equal(live, 0);
    tw_deferred_errback(ds[2], test_failure(-5)); /* consumed after the list fired */
    assert_null(tw_deferred_result(ds[2])->ptr);
    unref3(ds);
    tw_deferred_unref(l);
}

static void empty_list_fires_at_once_unless_waiting_for_a_success(void **state)
{
    tw_deferred_t *l = tw_deferred_list(NULL, 0, 0);
    assert_non_null(l);
    assert_int_equal(list_result(l)->n, 0);
    tw_deferred_unref(l);
    l = tw_deferred_list(NULL, 0, TW_DL_FIRE_ON_ONE_CALLBACK);
    assert_false(tw_deferred_called(l));
    tw_deferred_unref(l);
}

static void cancelling_a_list_cancels_every_member(void **state)
{
    tw_deferred_t *ds[3];
    ds[0] = tw_deferred_new(canceller_that_does_nothing, "m0");
    ds[1] = new_deferred();
    ds[2] = tw_deferred_new(canceller_that_does_nothing, "m2");
    tw_deferred_callback(ds[1], val_new(1), val_free);
    tw_deferred_t *l = tw_deferred_list(ds, 3, TW_DL_CONSUME_ERRORS);
    tw_deferred_cancel(l);
    assert_string_equal(trace, "canceller(m0) canceller(m2)");
    tw_deferred_list_result_t *res = list_result(l);
    assert_int_equal(res->items[0].failure->code, -ECANCELED);
    assert_int_equal(item_value(res, 1), 1);
    assert_int_equal(res->items[2].failure->code, -ECANCELED);
    unref3(ds);
    tw_deferred_unref(l);
}

static void list_outlives_members_dropped_unfired_and_can_be_freed_first(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *l = tw_deferred_list(ds, 3, 0);
    tw_deferred_unref(l);             /* kept by the members' steps */
    tw_deferred_unref(ds[0]);         /* dropped unfired */
    tw_deferred_callback(ds[1], val_new(1), val_free);
    tw_deferred_unref(ds[1]);
    tw_deferred_unref(ds[2]);         /* the last: the list goes, with the value */
}

static void gather_collects_all_values_in_order(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *g = tw_deferred_gather(ds, 3, 0);
    tw_deferred_callback(ds[2], val_new(30), val_free);
    tw_deferred_callback(ds[0], val_new(10), val_free);
    tw_deferred_callback(ds[1], val_new(20), val_free);
    tw_deferred_list_result_t *res = list_result(g);
    for (int i = 0; i < 3; i++)
        assert_int_equal(item_value(res, (size_t)i), 10 * (i + 1));
    unref3(ds);
    tw_deferred_unref(g);
}

static void gather_fails_with_the_first_failure(void **state)
{
    tw_deferred_t *ds[3];
    make3(ds);
    tw_deferred_t *g = tw_deferred_gather(ds, 3, TW_DL_CONSUME_ERRORS);
    catch_t c = { 0 };
    tw_deferred_add_both(g, catch_step, &c, NULL);
    tw_deferred_callback(ds[0], val_new(10), val_free);
    tw_deferred_errback(ds[2], test_failure(-22));
    tw_deferred_errback(ds[1], test_failure(-23));
    assert_int_equal(c.fired, 1);
    assert_int_equal(c.code, -22);
    assert_int_equal(c.cause_code, -22);
    unref3(ds);
    tw_deferred_unref(g);
}

/* ---- unhandled failures --------------------------------------------------------------- */

static void unhandled_failure_is_reported_once_when_the_last_reference_goes(void **state)
{
    unhandled_t u = { 0 };
    tw_deferred_set_unhandled_hook(count_unhandled, &u);
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_callback(d, record_step, "skipped", NULL);
    tw_deferred_errback(d, test_failure(-77));
    tw_deferred_ref(d);
    tw_deferred_unref(d);
    assert_int_equal(u.count, 0);
    assert_int_equal(error_logs, 0);
    tw_deferred_unref(d);
    assert_int_equal(u.count, 1);
    assert_int_equal(u.code, -77);
    assert_string_equal(u.message, "test failure -77");
    assert_int_equal(error_logs, 1);
    assert_string_equal(last_log,
                        "[deferred] Unhandled error in Deferred: [test] test failure -77 (-77)");
    assert_string_equal(trace, "");
}

static void unhandled_report_names_the_causes(void **state)
{
    unhandled_t u = { 0 };
    tw_deferred_set_unhandled_hook(count_unhandled, &u);
    tw_failure_t *f = tw_failure_wrap(test_failure(-1), test_failure(-2));
    tw_deferred_unref(tw_deferred_fail(f));
    assert_int_equal(u.count, 1);
    assert_string_equal(last_log, "[deferred] Unhandled error in Deferred: [test] test failure "
                                  "-1 (-1); caused by [test] test failure -2 (-2)");
}

static void handled_or_passed_on_failures_are_not_reported(void **state)
{
    /* handled by an errback added before, or after, the failure */
    tw_deferred_t *d = new_deferred();
    tw_deferred_add_errback(d, recover_step, "before", L(0));
    tw_deferred_errback(d, test_failure(-1));
    tw_deferred_unref(d);
    d = tw_deferred_fail(test_failure(-2));
    tw_deferred_add_errback(d, recover_step, "after", L(0));
    tw_deferred_unref(d);
    /* a never-fired Deferred, a value dropped with its Deferred */
    tw_deferred_unref(new_deferred());
    tw_deferred_unref(tw_deferred_succeed(val_new(1), val_free));
    assert_string_equal(trace, "before:fail=-1 after:fail=-2");
    assert_int_equal(error_logs, 0);
}

static void unhandled_failure_of_a_chain_is_reported_by_the_outer_only(void **state)
{
    unhandled_t u = { 0 };
    tw_deferred_set_unhandled_hook(count_unhandled, &u);
    tw_deferred_t *inner = new_deferred(), *d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_callback(d, val_new(0), val_free);
    tw_deferred_errback(inner, test_failure(-5));
    tw_deferred_unref(inner);
    assert_int_equal(u.count, 0);
    tw_deferred_unref(d);
    assert_int_equal(u.count, 1);
    assert_int_equal(u.code, -5);
}

static void list_without_consume_errors_leaves_member_failures_to_report(void **state)
{
    unhandled_t u = { 0 };
    tw_deferred_set_unhandled_hook(count_unhandled, &u);
    tw_deferred_t *ds[1] = { new_deferred() };
    tw_deferred_t *l = tw_deferred_list(ds, 1, 0);
    tw_deferred_errback(ds[0], test_failure(-8));
    tw_deferred_unref(l); /* the list's copy: a list result, not a failure */
    assert_int_equal(u.count, 0);
    tw_deferred_unref(ds[0]);
    assert_int_equal(u.count, 1);
    assert_int_equal(u.code, -8);
}

/* ---- ownership: every value freed exactly once ------------------------------------------ */

static tw_outcome_t replace_step(tw_outcome_t in, void *n, void *unused)
{
    tw_outcome_discard(in);
    return VAL((int)(intptr_t)n);
}

static void every_chain_shape_frees_each_value_exactly_once(void **state)
{
    tw_deferred_t *d, *inner;

    /* 1. held at the end of the chain: freed with the Deferred */
    d = tw_deferred_succeed(val_new(1), val_free);
    assert_int_equal(live, 1);
    tw_deferred_unref(d);
    assert_int_equal(live, 0);

    /* 2. replaced by a step, passed through others */
    d = new_deferred();
    tw_deferred_add_callback(d, replace_step, L(2), NULL);
    tw_deferred_add_errback(d, record_step, "skipped", NULL);
    tw_deferred_add_both(d, replace_step, L(3), NULL);
    tw_deferred_callback(d, val_new(1), val_free);
    assert_int_equal(live, 1);
    assert_int_equal(result_value(d), 3);
    tw_deferred_unref(d);
    assert_int_equal(live, 0);

    /* 3. turned into a failure, back into a value */
    d = new_deferred();
    tw_deferred_add_callback(d, fail_step, "f", L(-1));
    tw_deferred_add_errback(d, recover_step, "r", L(4));
    tw_deferred_callback(d, val_new(1), val_free);
    assert_int_equal(live, 1);
    tw_deferred_unref(d);

    /* 4. fired while paused, dropped paused */
    d = new_deferred();
    tw_deferred_pause(d);
    tw_deferred_add_callback(d, replace_step, L(5), NULL);
    tw_deferred_callback(d, val_new(1), val_free);
    tw_deferred_unref(d);
    assert_int_equal(live, 0);

    /* 5. waiting on an inner that holds a value when the outer is dropped */
    inner = new_deferred();
    d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_callback(d, val_new(1), val_free);
    tw_deferred_unref(d); /* kept by inner's continuation */
    tw_deferred_pause(inner);
    tw_deferred_callback(inner, val_new(6), val_free);
    assert_int_equal(live, 1);
    tw_deferred_unref(inner); /* inner and outer go; the value with them */
    assert_int_equal(live, 0);

    /* 6. stolen from a fired inner; the outer frees it */
    inner = tw_deferred_succeed(val_new(7), val_free);
    d = new_deferred();
    tw_deferred_add_callback(d, chain_step, NULL, inner);
    tw_deferred_callback(d, val_new(1), val_free);
    tw_deferred_unref(inner);
    assert_int_equal(live, 1);
    tw_deferred_unref(d);
    assert_int_equal(live, 0);

    /* 7. a fire swallowed after a cancel */
    d = new_deferred();
    tw_deferred_add_errback(d, recover_step, "r", L(8));
    tw_deferred_cancel(d);
    tw_deferred_callback(d, val_new(1), val_free);
    assert_int_equal(live, 1);
    tw_deferred_unref(d);

    /* 8. list results: values moved in, freed with the result */
    tw_deferred_t *ds[2] = { new_deferred(), new_deferred() };
    tw_deferred_t *l = tw_deferred_list(ds, 2, 0);
    tw_deferred_callback(ds[0], val_new(1), val_free);
    tw_deferred_callback(ds[1], val_new(2), val_free);
    assert_int_equal(live, 2);
    tw_deferred_unref(ds[0]);
    tw_deferred_unref(ds[1]);
    tw_deferred_unref(l);
    assert_int_equal(live, 0);

    /* 9. a list result taken over by a step */
    ds[0] = new_deferred();
    l = tw_deferred_list(ds, 1, 0);
    tw_deferred_add_callback(l, replace_step, L(9), NULL);
    tw_deferred_callback(ds[0], val_new(1), val_free);
    assert_int_equal(live, 1);
    tw_deferred_unref(l);
    tw_deferred_unref(ds[0]);

    /* 10. chain_deferred: the value moves to the other Deferred */
    d = new_deferred();
    inner = new_deferred();
    tw_deferred_chain(d, inner);
    tw_deferred_unref(inner); /* kept by d's step */
    tw_deferred_callback(d, val_new(1), val_free);
    tw_deferred_unref(d);
    assert_int_equal(live, 0);
}

/* ---- misuse ------------------------------------------------------------------------------- */

#ifndef NDEBUG
static void expect_abort(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tw_log_set_level(TW_LOG_NONE);
        fn();
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
}

static void fire_twice(void)
{
    tw_deferred_t *d = tw_deferred_succeed(NULL, NULL);
    tw_deferred_errback(d, test_failure(-1));
}

static void unpause_unpaused(void)
{
    tw_deferred_unpause(tw_deferred_new(NULL, NULL));
}

static void release_unlocked(void)
{
    tw_deferred_lock_release(tw_deferred_lock_new());
}
#endif

static void misuse_aborts_in_debug_builds(void **state)
{
#ifndef NDEBUG
    expect_abort(fire_twice);
    expect_abort(unpause_unpaused);
    expect_abort(release_unlocked);
#else
    tw_deferred_t *d = tw_deferred_succeed(NULL, NULL);
    assert_int_equal(tw_deferred_callback(d, val_new(1), val_free), -EALREADY);
    tw_deferred_unref(d);
#endif
}

/* ---- lock, semaphore, queue --------------------------------------------------------------- */

static tw_outcome_t got_step(tw_outcome_t in, void *label, void *unused)
{
    assert_int_equal(in.kind, TW_OUTCOME_OK);
    trace_add("%s", (char *)label);
    return in;
}

static void lock_is_granted_in_fifo_order(void **state)
{
    tw_deferred_lock_t *lock = tw_deferred_lock_new();
    assert_non_null(lock);
    assert_false(tw_deferred_lock_locked(lock));
    tw_deferred_t *a = tw_deferred_lock_acquire(lock);
    tw_deferred_add_callback(a, got_step, "a", NULL);
    assert_true(tw_deferred_lock_locked(lock));
    assert_ptr_equal(tw_deferred_result(a)->ptr, lock);
    tw_deferred_t *b = tw_deferred_lock_acquire(lock), *c = tw_deferred_lock_acquire(lock);
    tw_deferred_add_callback(b, got_step, "b", NULL);
    tw_deferred_add_callback(c, got_step, "c", NULL);
    assert_int_equal(tw_deferred_semaphore_waiting(lock), 2);
    assert_string_equal(trace, "a");
    tw_deferred_lock_release(lock);
    assert_string_equal(trace, "a b");
    assert_true(tw_deferred_lock_locked(lock));
    tw_deferred_lock_release(lock);
    assert_string_equal(trace, "a b c");
    tw_deferred_lock_release(lock);
    assert_false(tw_deferred_lock_locked(lock));
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
    tw_deferred_lock_free(lock);
}

static void cancelled_acquire_leaves_the_queue(void **state)
{
    tw_deferred_lock_t *lock = tw_deferred_lock_new();
    tw_deferred_t *a = tw_deferred_lock_acquire(lock);
    tw_deferred_t *b = tw_deferred_lock_acquire(lock), *c = tw_deferred_lock_acquire(lock);
    tw_deferred_add_callbacks(b, got_step, recover_step, "b", NULL, NULL);
    tw_deferred_add_callback(c, got_step, "c", NULL);
    tw_deferred_cancel(b);
    assert_string_equal(trace, "b:fail=ECANCELED");
    assert_int_equal(tw_deferred_semaphore_waiting(lock), 1);
    tw_deferred_lock_release(lock);
    assert_string_equal(trace, "b:fail=ECANCELED c");
    tw_deferred_lock_release(lock);
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
    tw_deferred_lock_free(lock);
}

static tw_outcome_t run_fn(tw_outcome_t in, void *label, void *inner)
{
    trace_add("run(%s)", (char *)label);
    if (inner)
        return chain_step(in, NULL, inner);
    tw_outcome_discard(in);
    return VAL(1);
}

static void lock_run_releases_after_the_returned_deferred_fires(void **state)
{
    tw_deferred_lock_t *lock = tw_deferred_lock_new();
    tw_deferred_t *inner = new_deferred();
    tw_deferred_t *r1 = tw_deferred_lock_run(lock, run_fn, "1", inner);
    tw_deferred_t *r2 = tw_deferred_lock_run(lock, run_fn, "2", NULL);
    assert_string_equal(trace, "run(1)");
    assert_true(tw_deferred_lock_locked(lock));
    tw_deferred_callback(inner, val_new(5), val_free);
    assert_string_equal(trace, "run(1) run(2)");
    assert_false(tw_deferred_lock_locked(lock));
    assert_int_equal(result_value(r1), 5);
    assert_int_equal(result_value(r2), 1);
    /* cancelled before acquiring: fn never runs, nothing is released */
    tw_deferred_t *held = tw_deferred_lock_acquire(lock);
    tw_deferred_t *r3 = tw_deferred_lock_run(lock, run_fn, "3", NULL);
    tw_deferred_add_errback(r3, recover_step, "r3", L(0));
    tw_deferred_cancel(r3);
    assert_true(tw_deferred_lock_locked(lock));
    tw_deferred_lock_release(lock);
    assert_string_equal(trace, "run(1) run(2) r3:fail=ECANCELED");
    for (tw_deferred_t *v[] = { inner, r1, r2, held, r3 }, **p = v; p < v + 5; p++)
        tw_deferred_unref(*p);
    tw_deferred_lock_free(lock);
}

static void semaphore_admits_as_many_holders_as_tokens(void **state)
{
    assert_null(tw_deferred_semaphore_new(0));
    tw_deferred_semaphore_t *s = tw_deferred_semaphore_new(2);
    tw_deferred_t *d[4];
    for (int i = 0; i < 4; i++)
        d[i] = tw_deferred_semaphore_acquire(s);
    assert_true(tw_deferred_called(d[0]));
    assert_true(tw_deferred_called(d[1]));
    assert_false(tw_deferred_called(d[2]));
    assert_int_equal(tw_deferred_semaphore_tokens(s), 0);
    assert_int_equal(tw_deferred_semaphore_waiting(s), 2);
    tw_deferred_semaphore_release(s);
    assert_true(tw_deferred_called(d[2]));
    assert_false(tw_deferred_called(d[3]));
    tw_deferred_semaphore_release(s);
    assert_true(tw_deferred_called(d[3]));
    tw_deferred_semaphore_release(s);
    assert_int_equal(tw_deferred_semaphore_tokens(s), 1); /* d[3] still holds one */
    tw_deferred_semaphore_release(s);
    assert_int_equal(tw_deferred_semaphore_tokens(s), 2);
    for (int i = 0; i < 4; i++)
        tw_deferred_unref(d[i]);
    tw_deferred_semaphore_free(s);
}

static void freeing_a_semaphore_errbacks_its_waiters(void **state)
{
    tw_deferred_semaphore_t *s = tw_deferred_semaphore_new(1);
    tw_deferred_t *a = tw_deferred_semaphore_acquire(s), *b = tw_deferred_semaphore_acquire(s);
    tw_deferred_add_errback(b, recover_step, "b", L(0));
    tw_deferred_semaphore_free(s);
    assert_string_equal(trace, "b:fail=ECANCELED");
    tw_deferred_unref(a);
    tw_deferred_unref(b);
}

static void queue_hands_values_to_gets_in_order(void **state)
{
    tw_deferred_queue_t *q = tw_deferred_queue_new(TW_DQ_UNLIMITED, TW_DQ_UNLIMITED);
    assert_non_null(q);
    assert_int_equal(tw_deferred_queue_put(q, val_new(1), val_free), 0);
    assert_int_equal(tw_deferred_queue_put(q, val_new(2), val_free), 0);
    assert_int_equal(tw_deferred_queue_pending(q), 2);
    tw_deferred_t *g1 = tw_deferred_queue_get(q), *g2 = tw_deferred_queue_get(q);
    assert_int_equal(result_value(g1), 1);
    assert_int_equal(result_value(g2), 2);
    tw_deferred_t *g3 = tw_deferred_queue_get(q), *g4 = tw_deferred_queue_get(q);
    assert_false(tw_deferred_called(g3));
    assert_int_equal(tw_deferred_queue_waiting(q), 2);
    assert_int_equal(tw_deferred_queue_put(q, val_new(3), val_free), 0);
    assert_int_equal(tw_deferred_queue_put(q, val_new(4), val_free), 0);
    assert_int_equal(result_value(g3), 3);
    assert_int_equal(result_value(g4), 4);
    assert_int_equal(tw_deferred_queue_pending(q), 0);
    for (tw_deferred_t *v[] = { g1, g2, g3, g4 }, **p = v; p < v + 4; p++)
        tw_deferred_unref(*p);
    tw_deferred_queue_free(q);
}

static void queue_overflow_and_underflow_fail_as_twisted(void **state)
{
    tw_deferred_queue_t *q = tw_deferred_queue_new(1, 1);
    assert_int_equal(tw_deferred_queue_put(q, val_new(1), val_free), 0);
    val_t *extra = val_new(2);
    assert_int_equal(tw_deferred_queue_put(q, extra, val_free), -ENOBUFS);
    val_free(extra); /* still ours */
    tw_deferred_unref(tw_deferred_queue_get(q));
    tw_deferred_t *w = tw_deferred_queue_get(q);
    assert_false(tw_deferred_called(w));
    tw_deferred_t *under = tw_deferred_queue_get(q);
    assert_int_equal(result_code(under), -EBUSY);
    tw_deferred_add_errback(under, recover_step, "u", L(0));
    tw_deferred_unref(under);
    /* A cancelled get leaves: the next put queues. */
    tw_deferred_add_errback(w, recover_step, "w", L(0));
    tw_deferred_cancel(w);
    assert_int_equal(tw_deferred_queue_waiting(q), 0);
    assert_int_equal(tw_deferred_queue_put(q, val_new(3), val_free), 0);
    assert_int_equal(tw_deferred_queue_pending(q), 1);
    tw_deferred_unref(w);
    assert_string_equal(trace, "u:fail=EBUSY w:fail=ECANCELED");
    tw_deferred_queue_free(q); /* frees the queued value */
    assert_int_equal(live, 0);

    /* size 0: only hand-overs to waiting gets */
    q = tw_deferred_queue_new(0, TW_DQ_UNLIMITED);
    extra = val_new(4);
    assert_int_equal(tw_deferred_queue_put(q, extra, val_free), -ENOBUFS);
    w = tw_deferred_queue_get(q);
    assert_int_equal(tw_deferred_queue_put(q, extra, val_free), 0);
    assert_int_equal(result_value(w), 4);
    tw_deferred_unref(w);
    tw_deferred_queue_free(q);
}

static void freeing_a_queue_frees_values_and_errbacks_gets(void **state)
{
    tw_deferred_queue_t *q = tw_deferred_queue_new(TW_DQ_UNLIMITED, TW_DQ_UNLIMITED);
    tw_deferred_queue_put(q, val_new(1), val_free);
    tw_deferred_queue_put(q, val_new(2), val_free);
    tw_deferred_queue_free(q);
    assert_int_equal(live, 0);
    q = tw_deferred_queue_new(TW_DQ_UNLIMITED, TW_DQ_UNLIMITED);
    tw_deferred_t *g = tw_deferred_queue_get(q);
    tw_deferred_add_errback(g, recover_step, "g", L(0));
    tw_deferred_queue_free(q);
    assert_string_equal(trace, "g:fail=ECANCELED");
    tw_deferred_unref(g);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(callbacks_run_in_order_with_bound_arguments),
        T(steps_added_after_firing_run_at_once),
        T(failing_callback_skips_callbacks_to_the_next_errback),
        T(errback_returning_a_value_goes_back_to_callbacks),
        T(pair_runs_only_one_of_its_callback_and_errback),
        T(add_both_sees_values_and_failures),
        T(null_value_and_null_destructor_pass_through),
        T(args_free_runs_exactly_for_steps_that_never_called),
        T(chain_deferred_fires_the_other_and_goes_on_with_null),
        T(chaining_three_deep_fires_in_order_and_passes_results),
        T(chaining_to_a_fired_deferred_takes_its_result_at_once),
        T(chained_inner_failure_goes_to_outer_errbacks),
        T(inner_steps_after_the_handover_see_null),
        T(deep_chain_of_a_hundred_thousand_deferreds_uses_no_stack),
        T(pause_holds_steps_until_as_many_unpauses),
        T(paused_inner_holds_the_outer_chain),
        T(callback_may_drop_the_last_reference_to_its_deferred),
        T(cancel_without_canceller_errbacks_and_swallows_the_later_fire),
        T(cancel_calls_the_canceller_which_may_fire_its_own_failure),
        T(cancelling_the_outer_cancels_the_inner_it_waits_on),
        T(timeout_errbacks_with_a_timeout_failure),
        T(firing_before_the_timeout_cancels_its_timer),
        T(timeout_keeps_a_cancellers_own_failure),
        T(timeout_of_a_deferred_waiting_on_another_cancels_that_one),
        T(defer_later_fires_with_the_function_outcome),
        T(cancelling_defer_later_cancels_its_timer),
        T(list_waits_for_all_and_reports_mixed_outcomes),
        T(list_consume_errors_turns_member_failures_into_null),
        T(list_fire_on_one_callback_fires_with_the_first_success),
        T(list_fire_on_one_errback_wraps_the_first_failure),
        T(empty_list_fires_at_once_unless_waiting_for_a_success),
        T(cancelling_a_list_cancels_every_member),
        T(list_outlives_members_dropped_unfired_and_can_be_freed_first),
        T(gather_collects_all_values_in_order),
        T(gather_fails_with_the_first_failure),
        T(unhandled_failure_is_reported_once_when_the_last_reference_goes),
        T(unhandled_report_names_the_causes),
        T(handled_or_passed_on_failures_are_not_reported),
        T(unhandled_failure_of_a_chain_is_reported_by_the_outer_only),
        T(list_without_consume_errors_leaves_member_failures_to_report),
        T(every_chain_shape_frees_each_value_exactly_once),
        T(misuse_aborts_in_debug_builds),
        T(lock_is_granted_in_fifo_order),
        T(cancelled_acquire_leaves_the_queue),
        T(lock_run_releases_after_the_returned_deferred_fires),
        T(semaphore_admits_as_many_holders_as_tokens),
        T(freeing_a_semaphore_errbacks_its_waiters),
        T(queue_hands_values_to_gets_in_order),
        T(queue_overflow_and_underflow_fail_as_twisted),
        T(freeing_a_queue_frees_values_and_errbacks_gets),
    };
    TW_TEST_MAIN(tests);
}
