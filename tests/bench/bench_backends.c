/* bench_backends.c -- what each readiness backend costs as the number of
 * watched-but-idle descriptors grows.
 *
 *   usage: bench_backends-<backend> IDLE ROUNDS
 *
 * The same source is linked once per backend (libtwine.a + libtwine-<b>.a);
 * the backend is whatever the program was linked with
 * (tw_reactor_backend_name()).  One process:
 *
 *   setup   raise RLIMIT_NOFILE as needed, make ceil(IDLE/2) socketpairs and
 *           register a reader on IDLE of their ends (both ends of each pair:
 *           nothing is ever written, and every peer stays open, so none ever
 *           becomes ready; one descriptor per idle watcher keeps IDLE = 10000
 *           within a 20000-descriptor hard limit, and the highest fd close to
 *           IDLE, which is what select scans), then one active socketpair
 *           (a, b) with a reader on both ends, and one extra socketpair for
 *           phase 2.
 *   1. ping-pong  one byte bounces between a and b: the reader callback reads
 *           the byte from its end and writes the next one back through the
 *           same socket, which makes the other end ready on the next
 *           iteration.  So every loop iteration has exactly one ready
 *           descriptor among IDLE + 2 watched ones.  Driven by tw_reactor_run,
 *           stopped from the callback after ROUNDS reads (a short untimed
 *           warm-up run first).  Elapsed / ROUNDS -> round_ns (ns per loop
 *           iteration, including the callback's read + write).
 *   2. add+remove  ADDRM (100k) x { tw_reactor_add_reader; tw_reactor_remove_reader }
 *           on the extra socket, with the IDLE + 2 others still watched, outside
 *           the loop -> addrm_ns (ns per pair).
 *
 * Checks (exit 1 when one fails): exactly ROUNDS bytes read, each the value
 * expected; no idle reader ever called; every add/remove call returned 0; the
 * watched count is IDLE + 2 before and after phase 2.
 *
 * Prints: RESULT bench=backend impl=<backend> idle=N round_ns=.. addrm_ns=.. rounds=..
 *         addrm=.. setup_ms=.. ok=1
 * Exit 77 (and no RESULT line) when RLIMIT_NOFILE cannot be raised far enough,
 * or when a descriptor is refused with TW_EFDSETSIZE (select, fd >= FD_SETSIZE).
 * Diagnosis: BENCH_ADDRM=n pairs instead of 100k.
 */
#include "bench_common.h"

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tw_reactor.h"

#define EXIT_SKIP 77

static uint64_t ROUNDS;
static uint64_t ADDRM = 100000;

/* ping-pong state */
static uint64_t n_read;      /* bytes read so far (all runs) */
static uint64_t stop_at;     /* stop the reactor after this many reads */
static uint64_t bad_bytes;   /* reads that failed or returned the wrong value */
static uint64_t idle_called; /* idle readers that fired (must stay 0) */

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        DIE("fcntl: %s", strerror(errno));
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        DIE("socketpair: %s", strerror(errno));
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
}

/* Room for IDLE pairs plus the reactor's own descriptors and ours. */
static void raise_nofile(uint64_t idle)
{
    rlim_t need = (rlim_t)(idle + 64);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        DIE("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need)
        return;
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
        rl.rlim_cur = need;
    } else {
        rl.rlim_cur = rl.rlim_max = need; /* raising the hard limit needs privilege */
    }
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "bench_backends: idle=%llu needs %llu descriptors and RLIMIT_NOFILE "
                "cannot be raised that far (%s); skipped\n",
                (unsigned long long)idle, (unsigned long long)need, strerror(errno));
        exit(EXIT_SKIP);
    }
}

static void watch(tw_reactor_t *r, int fd, tw_io_cb cb, const char *impl, uint64_t idle)
{
    int rc = tw_reactor_add_reader(r, fd, cb, NULL);
    if (rc == TW_EFDSETSIZE) {
        fprintf(stderr, "bench_backends: %s: idle=%llu needs fd %d, beyond FD_SETSIZE (%d); "
                "skipped\n", impl, (unsigned long long)idle, fd, FD_SETSIZE);
        exit(EXIT_SKIP);
    }
    if (rc < 0)
        DIE("%s: add_reader(fd %d): %d", impl, fd, rc);
}

static void idle_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)arg;
    idle_called++;
    tw_reactor_remove_reader(r, fd);
    tw_reactor_stop(r);
}

/* Read the byte on this end, write the next one back through the same socket:
 * the other end is ready on the next iteration. */
static void pong_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)arg;
    unsigned char c;
    ssize_t n = read(fd, &c, 1);
    if (n != 1) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return; /* spurious: not counted */
        bad_bytes++;
        tw_reactor_stop(r);
        return;
    }
    if (c != (unsigned char)n_read)
        bad_bytes++;
    n_read++;
    if (n_read == stop_at) {
        tw_reactor_stop(r); /* the next byte is written by the next run's kick */
        return;
    }
    c = (unsigned char)n_read;
    if (write(fd, &c, 1) != 1) {
        bad_bytes++;
        tw_reactor_stop(r);
    }
}

/* Run the loop until `rounds` more bytes have been read; returns elapsed ns. */
static uint64_t pingpong(tw_reactor_t *r, int kick_fd, uint64_t rounds)
{
    unsigned char c = (unsigned char)n_read;
    stop_at = n_read + rounds;
    if (write(kick_fd, &c, 1) != 1)
        DIE("write: %s", strerror(errno));
    uint64_t t0 = now_ns();
    int rc = tw_reactor_run(r, TW_RUN_DEFAULT);
    uint64_t t1 = now_ns();
    if (rc < 0)
        DIE("tw_reactor_run: %d", rc);
    return t1 - t0;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        DIE("usage: %s IDLE ROUNDS", argv[0]);
    uint64_t idle = strtoull(argv[1], NULL, 10);
    ROUNDS = strtoull(argv[2], NULL, 10);
    ADDRM = env_u64("BENCH_ADDRM", ADDRM);
    if (ROUNDS == 0 || ADDRM == 0 || idle > 10000000)
        DIE("ROUNDS and BENCH_ADDRM must be positive, IDLE at most 10M");
    const char *impl = tw_reactor_backend_name();

    raise_nofile(idle);
    uint64_t s0 = now_ns();
    tw_reactor_t *r;
    int rc = tw_reactor_new(&r);
    if (rc < 0)
        DIE("tw_reactor_new: %d", rc);

    uint64_t npairs = (idle + 1) / 2;
    int *idle_fds = calloc(npairs ? 2 * npairs : 1, sizeof *idle_fds);
    if (!idle_fds)
        DIE("out of memory");
    for (uint64_t i = 0; i < npairs; i++)
        make_pair(&idle_fds[2 * i]);
    for (uint64_t i = 0; i < idle; i++)
        watch(r, idle_fds[i], idle_cb, impl, idle);
    /* Made last, as a new connection among old ones: the highest descriptors. */
    int act[2], extra[2];
    make_pair(act);
    make_pair(extra);
    for (int i = 0; i < 2; i++)
        watch(r, act[i], pong_cb, impl, idle);
    uint64_t s1 = now_ns();
    int watched0 = tw_reactor_watched_count(r);

    /* 1. ping-pong: warm-up, then the timed run. */
    uint64_t warm = ROUNDS / 20 < 1000 ? ROUNDS / 20 + 1 : 1000;
    pingpong(r, act[0], warm);
    uint64_t read0 = n_read;
    uint64_t el = pingpong(r, act[0], ROUNDS);
    uint64_t rounds_done = n_read - read0;
    double round_ns = rounds_done ? (double)el / (double)rounds_done : 0.0;

    /* 2. add + remove one reader on the extra socket, IDLE + 2 watched. */
    uint64_t addrm_fail = 0;
    uint64_t warm_pairs = ADDRM / 100 + 1;
    for (uint64_t i = 0; i < warm_pairs; i++) {
        addrm_fail += tw_reactor_add_reader(r, extra[0], idle_cb, NULL) != 0;
        addrm_fail += tw_reactor_remove_reader(r, extra[0]) != 0;
    }
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ADDRM; i++) {
        addrm_fail += tw_reactor_add_reader(r, extra[0], idle_cb, NULL) != 0;
        addrm_fail += tw_reactor_remove_reader(r, extra[0]) != 0;
    }
    uint64_t t1 = now_ns();
    double addrm_ns = (double)(t1 - t0) / (double)ADDRM;
    int watched1 = tw_reactor_watched_count(r);

    int ok = rounds_done == ROUNDS && bad_bytes == 0 && idle_called == 0 && addrm_fail == 0 &&
             watched0 == (int)idle + 2 && watched1 == watched0;
    printf("RESULT bench=backend impl=%s idle=%llu round_ns=%.1f addrm_ns=%.1f rounds=%llu "
           "addrm=%llu setup_ms=%.1f ok=%d\n",
           impl, (unsigned long long)idle, round_ns, addrm_ns, (unsigned long long)ROUNDS,
           (unsigned long long)ADDRM, (double)(s1 - s0) / 1e6, ok);
    if (!ok)
        fprintf(stderr, "bench_backends %s idle=%llu: check failed (rounds %llu/%llu, bad bytes "
                "%llu, idle callbacks %llu, add/remove failures %llu, watched %d/%d, want %llu)\n",
                impl, (unsigned long long)idle, (unsigned long long)rounds_done,
                (unsigned long long)ROUNDS, (unsigned long long)bad_bytes,
                (unsigned long long)idle_called, (unsigned long long)addrm_fail, watched0,
                watched1, (unsigned long long)idle + 2);

    for (int i = 0; i < 2; i++) {
        tw_reactor_remove_all(r, act[i]);
        close(act[i]);
        close(extra[i]);
    }
    for (uint64_t i = 0; i < idle; i++)
        tw_reactor_remove_all(r, idle_fds[i]);
    for (uint64_t i = 0; i < 2 * npairs; i++)
        close(idle_fds[i]);
    free(idle_fds);
    tw_reactor_free(r);
    return ok ? 0 : 1;
}
