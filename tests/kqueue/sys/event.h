/* sys/event.h -- the subset of BSD <sys/event.h> that tests/kqueue/kqueue_emu.c
 * emulates on Linux, so that reactors/kqueue.c can be built and tested there
 * (compile with -Itests/kqueue).  Test use only; see kqueue_emu.c for what is
 * and is not emulated.  Names and values are those of FreeBSD/macOS.
 */
#ifndef TW_TEST_SYS_EVENT_H
#define TW_TEST_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#define EVFILT_READ   (-1)
#define EVFILT_WRITE  (-2)

#define EV_ADD        0x0001
#define EV_DELETE     0x0002
#define EV_ENABLE     0x0004
#define EV_DISABLE    0x0008
#define EV_ONESHOT    0x0010 /* refused with EINVAL */
#define EV_CLEAR      0x0020 /* refused with EINVAL */
#define EV_RECEIPT    0x0040
#define EV_DISPATCH   0x0080 /* refused with EINVAL */
#define EV_ERROR      0x4000
#define EV_EOF        0x8000

struct kevent {
    uintptr_t ident;      /* file descriptor */
    short filter;         /* EVFILT_READ or EVFILT_WRITE */
    unsigned short flags; /* EV_* */
    unsigned int fflags;  /* always 0 on output */
    intptr_t data;        /* errno for EV_ERROR entries, else 0 */
    void *udata;          /* returned as given with EV_ADD */
};

#define EV_SET(kevp, a, b, c, d, e, f) do {  \
        struct kevent *ev_set_p__ = (kevp);  \
        ev_set_p__->ident = (a);             \
        ev_set_p__->filter = (b);            \
        ev_set_p__->flags = (c);             \
        ev_set_p__->fflags = (d);            \
        ev_set_p__->data = (e);              \
        ev_set_p__->udata = (f);             \
    } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout);

#endif
