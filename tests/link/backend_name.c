/* backend_name.c -- prints the reactor backend this program was linked with,
 * after checking that a reactor on it actually runs. */
#include <stdio.h>

#include <twine.h>

static void on_timer(tw_timer_t *t, void *arg)
{
    (void)t;
    tw_reactor_stop(arg);
}

int main(void)
{
    tw_reactor_t *r;
    if (tw_reactor_new(&r) != 0 || !tw_reactor_call_later(r, TW_MSEC(1), on_timer, r))
        return 1;
    int rc = tw_reactor_run(r, TW_RUN_DEFAULT);
    tw_reactor_free(r);
    printf("%s\n", tw_reactor_backend_name());
    return rc != 0;
}
