#!/usr/bin/env bash
# tests/bench/run.sh REL_DIR -- reactor benchmarks: twine against libuv and libevent,
# and twine's readiness backends against each other; then the thread-pool and
# process benchmarks against libuv; then the echo-server benchmark
# (tests/bench/echo/run.sh: twine's examples/echo-server against a raw epoll
# loop, libevent, libuv and Twisted; see that script).
#
# Builds bench_timers and bench_xthread from tests/bench/ against
# REL_DIR/lib/libtwine.a + libtwine-default.a (make bench does that first) into
# REL_DIR/bench/, runs every implementation interleaved within each repetition,
# and prints one Markdown table per metric (median (min–max), twine's speed-up
# over each peer, the target and PASS/MISS).
#
# It also builds bench_backends once per backend this platform has natively
# (Linux: select, poll, epoll; BSD/macOS: select, poll, kqueue), linked with
# REL_DIR/lib/libtwine.a + libtwine-<backend>.a (made here with make when
# REL_DIR is inside the tree) into REL_DIR/bench/bench_backends-<backend>, and
# runs each at IDLE = 10, 500, 1000, 10000 idle watched descriptors (select
# only up to 1000, below FD_SETSIZE), interleaved with the others in every
# repetition.  Two tables, no targets.  A run that exits 77 (descriptor limit
# too low, or an fd beyond FD_SETSIZE) is reported as skipped, not failed.
#
# The threads part builds bench_pool and bench_spawn (same libraries, and
# libuv) and runs twine and libuv interleaved in each repetition:
#   bench_pool IMPL tput N C  tw_defer_to_thread on a 4-thread pool against
#                             uv_queue_work (libuv's default 4 threads): N = 50k
#                             round trips of a tiny job (200k for C = 64), at
#                             most C = 1, 4, 64 in flight, each completion
#                             submitting the next
#   bench_pool IMPL lat N     N = 2000 round trips one at a time, 1 ms apart:
#                             submit -> completion in the loop, p50/p99
#   bench_spawn IMPL N C      N = 300 spawns of /bin/true, stdio on /dev/null,
#                             each reaped before the next of its slot starts,
#                             C = 1 (one after the other) and 4 at once
# Its tables give twine ÷ libuv with the issue's target, no worse than libuv
# (≥ 1.00×), and also list call_from_thread against libuv when the reactor
# part ran.  A spawn of /bin/true took about 4 ms of fork + exec on the 2-vCPU
# development VM, so the spawn rows mostly measure the kernel.
#
#   BENCH_REPS=n   repetitions (default 3; the echo benchmark's rounds too)
#   BENCH_QUICK=1  smoke run, about 10 s: 1 repetition, small sizes (N 1k/100k,
#                  200k fired timers, M = 300k, 1000 latency calls,
#                  backends: 1/5 of the rounds, 20k add+remove pairs; threads:
#                  5k/20k pool round trips, 300 latency ones, 100 spawns;
#                  echo: about 80 s more, see tests/bench/echo/run.sh)
#   BENCH_PARTS    which parts to run, any of "reactor threads echo chat" (the default)
#
# The chat part is tests/bench/chat/run.sh (chat fan-out to 100 clients, twine's
# examples/chat-server against the same chat on Twisted, and the system-call
# check; about 2 min, BENCH_QUICK=1: 30 s): its RESULT lines go to the same
# file and its tables follow the others.
#
# Files: REL_DIR/bench/results-<stamp>.txt (every RESULT line, tagged rep=) and
# REL_DIR/bench/tables-<stamp>.md.  Every benchmark process runs under
# `timeout 120`; nothing else is started or killed.  Exit status 1 when a
# benchmark failed its own checks (a missed performance target is not a failure).
# Full default run: about 100 s on 2 vCPUs for the reactor part, about 60 s for
# the threads part, about 5 min for the echo part (BENCH_QUICK=1: about 15 s +
# 10 s + 80 s).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 REL_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rel=$(cd "$1" && pwd)
out=$rel/bench
cd "$root"

PARTS=${BENCH_PARTS:-reactor threads echo chat}
part() { [[ " $PARTS " == *" $1 "* ]]; }
part reactor || part threads || part echo || part chat ||
    { echo "run.sh: BENCH_PARTS names none of reactor, threads, echo, chat" >&2; exit 2; }

for lib in "$rel/lib/libtwine.a" "$rel/lib/libtwine-default.a"; do
    [[ -f $lib ]] || { echo "run.sh: $lib is missing (make $lib)" >&2; exit 2; }
done

REPS=${BENCH_REPS:-3}
TIMER_NS="1000 1000000"
XT_KS="1 4"
M=1000000
LAT_N=3000
IMPLS="twine uv ev"
BE_IDLES="10 500 1000 10000"
BE_SELECT_MAX=1000   # select: idle + the reactor's and the bench's fds < FD_SETSIZE
BE_DIV=1
POOL_N=50000         # round trips for C < 16; 4 times as many from C = 16 on
POOL_CS="1 4 64"
POOL_LAT_N=2000
SPAWN_N=300
SPAWN_CS="1 4"
TH_IMPLS="twine uv"
case $(uname -s) in
    Linux) BE_IMPLS="select poll epoll" ;;
    Darwin | FreeBSD | OpenBSD | NetBSD | DragonFly) BE_IMPLS="select poll kqueue" ;;
    *) BE_IMPLS="select poll" ;;
esac
quick=0
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    quick=1
    REPS=${BENCH_REPS:-1}
    TIMER_NS="1000 100000"
    M=300000
    LAT_N=1000
    export BENCH_FIRE=200000
    export BENCH_ADDRM=20000
    BE_DIV=5
    POOL_N=5000
    POOL_LAT_N=300
    SPAWN_N=100
fi

# bench_backends rounds for BACKEND IDLE: about 0.5 s of ping-pong each on a
# 2-vCPU VM (select and poll cost grows with IDLE; epoll and kqueue do not).
be_rounds() {
    local r
    case $1:$2 in
        epoll:* | kqueue:*) r=60000 ;;
        *:10) r=60000 ;;
        *:500) r=8000 ;;
        *:1000) r=4000 ;;
        *) r=200 ;;
    esac
    echo $(( r / BE_DIV > 20 ? r / BE_DIV : 20 ))
}
be_runs() { # how many bench_backends processes one repetition starts
    local b n c=0
    for n in $BE_IDLES; do
        for b in $BE_IMPLS; do
            [[ $b == select && $n -gt $BE_SELECT_MAX ]] || c=$((c + 1))
        done
    done
    echo $c
}

# ---- build --------------------------------------------------------------------
CC=${CC:-cc}
mkdir -p "$out"
if part reactor; then
deps=$(pkg-config --cflags --libs libuv libevent libevent_pthreads)
for prog in bench_timers bench_xthread; do
    # shellcheck disable=SC2086
    $CC -O2 -g -pthread -Icore -Wall -Wextra -Werror -o "$out/$prog" "tests/bench/$prog.c" \
        "$rel/lib/libtwine.a" "$rel/lib/libtwine-default.a" -lm $deps
done
rel_in_tree=${rel#"$root"/}
if [[ $rel_in_tree != "$rel" ]]; then   # bring the backend archives up to date
    make -s -C "$root" --no-print-directory $(printf "$rel_in_tree/lib/libtwine-%s.a " $BE_IMPLS) >&2
fi
for b in $BE_IMPLS; do
    lib=$rel/lib/libtwine-$b.a
    [[ -f $lib ]] || { echo "run.sh: $lib is missing (make libs)" >&2; exit 2; }
    $CC -O2 -g -pthread -Icore -Wall -Wextra -Werror -o "$out/bench_backends-$b" \
        tests/bench/bench_backends.c "$rel/lib/libtwine.a" "$lib" -lm
done
fi
if part threads; then
uvdeps=$(pkg-config --cflags --libs libuv)
for prog in bench_pool bench_spawn; do
    # shellcheck disable=SC2086
    $CC -O2 -g -pthread -Icore -Itransports -Wall -Wextra -Werror -o "$out/$prog" \
        "tests/bench/$prog.c" "$rel/lib/libtwine.a" "$rel/lib/libtwine-default.a" -lm $uvdeps
done
fi

# ---- run ----------------------------------------------------------------------
stamp=$(date -u +%Y%m%d-%H%M%S)
((quick)) && stamp="quick-$stamp"
raw=$out/results-$stamp.txt
tables=$out/tables-$stamp.md
{
    echo "# twine reactor benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC')$( ((quick)) && echo ' (BENCH_QUICK: small sizes)')"
    echo "# host: $(uname -srm); $(nproc) CPUs;$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- || true)"
    echo "# $($CC --version | head -n1); libuv $(pkg-config --modversion libuv); libevent $(pkg-config --modversion libevent); twine backend epoll (libtwine-default)"
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew every number)"
    if part reactor; then
        echo "# reps=$REPS timers N=[$TIMER_NS] fired=${BENCH_FIRE:-1000000} xthread M=$M K=[$XT_KS] lat_n=$LAT_N"
        echo "# backends [$BE_IMPLS] idle=[$BE_IDLES] (select up to $BE_SELECT_MAX) add+remove pairs=${BENCH_ADDRM:-100000}"
    fi
    if part threads; then
        echo "# reps=$REPS pool N=$POOL_N (x4 from C=16) C=[$POOL_CS] lat_n=$POOL_LAT_N threads=${BENCH_POOL_THREADS:-4}; spawn /bin/true N=$SPAWN_N C=[$SPAWN_CS]"
    fi
} > "$raw"

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "run.sh: warning: load average is $load; other processes will skew the numbers" >&2
fi
n_jobs=0
if part reactor; then
    n_jobs=$(( REPS * 3 * ($(wc -w <<<"$TIMER_NS") + $(wc -w <<<"$XT_KS") + 1) ))
    n_jobs=$(( n_jobs + REPS * $(be_runs) ))
fi
if part threads; then
    n_jobs=$(( n_jobs + REPS * 2 * ($(wc -w <<<"$POOL_CS") + 1 + $(wc -w <<<"$SPAWN_CS")) ))
fi
job=0
failures=0
skipped=0
t_start=$(date +%s)

run() {   # run CMD...: one benchmark process; its RESULT line goes to $raw
    local label="$*" t0 rc=0 res
    label=${label#"$out/"}
    job=$((job + 1))
    t0=$(date +%s%N)
    printf '[%2d/%d] rep %d/%d  %-36s' "$job" "$n_jobs" "$rep" "$REPS" "$label" >&2
    res=$(timeout 120 "$@" 2>"$out/.stderr") || rc=$?
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf ' %4d.%02d s' $((ms / 1000)) $((ms % 1000 / 10)) >&2
    if ((rc == 77)); then   # the benchmark cannot run here (bench_backends: fd limits)
        skipped=$((skipped + 1))
        echo "  skipped" >&2
        sed 's/^/    /' "$out/.stderr" >&2
        echo "# skipped rep=$rep: $label: $(head -n1 "$out/.stderr")" >> "$raw"
        return 0
    fi
    if ((rc != 0)); then
        failures=$((failures + 1))
        ((rc == 124)) && echo "  TIMED OUT" >&2 || echo "  FAILED (exit $rc)" >&2
        sed 's/^/    /' "$out/.stderr" >&2
        echo "FAILED rc=$rc rep=$rep: $label" >> "$raw"
        grep '^RESULT' <<<"$res" | sed "s/\$/ rep=$rep/" >> "$raw" || true
        return 0
    fi
    echo >&2
    grep '^RESULT' <<<"$res" | sed "s/\$/ rep=$rep/" >> "$raw"
}

part reactor &&
for rep in $(seq 1 "$REPS"); do
    for n in $TIMER_NS; do
        for impl in $IMPLS; do
            run "$out/bench_timers" "$impl" "$n"
        done
    done
    for k in $XT_KS; do
        for impl in $IMPLS; do
            run "$out/bench_xthread" "$impl" tput "$k" "$M"
        done
    done
    for impl in $IMPLS; do
        run "$out/bench_xthread" "$impl" lat "$LAT_N"
    done
    for n in $BE_IDLES; do
        for b in $BE_IMPLS; do
            [[ $b == select && $n -gt $BE_SELECT_MAX ]] && continue
            run "$out/bench_backends-$b" "$n" "$(be_rounds "$b" "$n")"
        done
    done
done
part threads &&
for rep in $(seq 1 "$REPS"); do
    for c in $POOL_CS; do
        for impl in $TH_IMPLS; do
            run "$out/bench_pool" "$impl" tput $((c < 16 ? POOL_N : 4 * POOL_N)) "$c"
        done
    done
    for impl in $TH_IMPLS; do
        run "$out/bench_pool" "$impl" lat "$POOL_LAT_N"
    done
    for c in $SPAWN_CS; do
        for impl in $TH_IMPLS; do
            run "$out/bench_spawn" "$impl" "$SPAWN_N" "$c"
        done
    done
done
rm -f "$out/.stderr"
((job > 0)) &&
echo "run.sh: $job runs in $(( $(date +%s) - t_start )) s, $failures failed$( ((skipped)) && echo ", $skipped skipped"); raw results: $raw" >&2
if part echo; then   # appends its RESULT lines to $raw; exit 1: a run failed its checks
    echo "run.sh: echo-server benchmark (tests/bench/echo/run.sh)" >&2
    "$here/echo/run.sh" "$rel" "$raw" || failures=$((failures + 1))
fi
chat_md=""
if part chat; then   # appends its RESULT lines to $raw, prints its own tables; exit 1: a run failed
    echo "run.sh: chat fan-out benchmark (tests/bench/chat/run.sh)" >&2
    chat_md=$("$here/chat/run.sh" "$rel" "$raw") || failures=$((failures + 1))
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$raw"

{ /usr/bin/python3 "$here/summarize.py" "$raw"; [[ -z $chat_md ]] || printf '\n%s\n' "$chat_md"; } | tee "$tables"
echo "run.sh: tables saved to $tables" >&2
((failures == 0))
