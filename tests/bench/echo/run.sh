#!/usr/bin/env bash
# tests/bench/echo/run.sh REL_DIR [RAW_FILE] -- echo-server benchmark: twine's
# examples/echo-server against a raw epoll loop, libevent, libuv and Twisted.
#
# Called by tests/bench/run.sh (make bench), which passes RAW_FILE and prints
# the tables; run alone, it writes REL_DIR/bench/echo-results-<stamp>.txt and
# prints the tables itself (tests/bench/summarize.py).
#
# The load generator and the peer servers are copies of the shared benchmark
# harness (shared/bench: loadgen.c, echo_epoll.c, echo_libevent.c, echo_libuv.c,
# echo_twisted.py; see their headers; loadgen.c shares some of its code with
# tests/bench/chat/chatload.c in tests/bench/loadgen_common.h); they are built
# here into REL_DIR/bench/echo/.  What this script shares with
# tests/bench/chat/run.sh is in tests/bench/lib.sh.  twine's server is REL_DIR/examples/echo-server, brought
# up to date with make when REL_DIR is inside the tree.
#
# Server pinned to CPU $BENCH_SERVER_CPU (0), loadgen to $BENCH_LOAD_CPU (1).
# Every workload runs on a fresh server process; within a round the servers
# run one after the other for each workload (the order rotates every round),
# so the cells compared in one row were measured seconds apart.  Workloads:
#   pp1 pp100 pp1000  ping-pong, 1/100/1000 connections, 64-byte messages
#                     (loadgen pingpong: msgs/s, p99 latency)
#   stream            10 connections streaming 64 KiB writes (MB/s echoed)
#   connect           32 concurrent connect + 64-byte echo + close (RST) loops
#   idle              server VmRSS growth per held idle connection (10,000)
# Then, once per server, two figures that do not depend on machine noise, in
# steady ping-pong with 100 connections of 64-byte messages:
#   system calls per echoed message: `perf stat -e raw_syscalls:sys_enter
#     (+ per-syscall tracepoints) -p PID` (or `strace -c -f -p PID` without
#     perf), attached around two loadgen runs (0.1 s and 1 s) on a warmed
#     server; (count(long) - count(short)) / (msgs(long) - msgs(short)), so
#     connection setup and teardown cancel out; once per round (how many
#     events one epoll_wait returns drifts with the machine's state), medians;
#   user-space instructions per echoed message (not for Twisted): the server
#     runs under valgrind --tool=callgrind --instr-atstart=no; after a warm-up
#     run, instrumentation is switched on (callgrind_control -i on) only
#     around each of the two runs, each dumped separately; same difference.
# A missing tool (perf/strace, valgrind, python3-twisted) makes those cells
# n/a, not a failure.
#
#   BENCH_REPS=n         rounds (default 3)
#   BENCH_QUICK=1        1 round, 0.5 s runs, 2,000 idle connections (about 80 s)
#   BENCH_ECHO_IMPLS     servers to run (default "twine epoll libevent libuv twisted")
#   BENCH_ECHO_SECS, BENCH_ECHO_WARMUP, BENCH_ECHO_IDLE_CONNS, BENCH_ECHO_IDLE_HOLD
#   BENCH_ECHO_WORKLOADS (default all six), BENCH_ECHO_COUNTS=0 (skip the counted figures)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU
#
# Full default run: about 5 minutes on 2 vCPUs.  Every process runs under a
# timeout and is stopped by its PID; nothing else is started or killed.
# Exit status 1 when a run failed its checks (loadgen errors, a server that
# died, twine's server not exiting 0 on SIGTERM, twine not built); a missed
# performance target is not a failure.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$here/../lib.sh"
bench_init echo "$@"

WARMUP=${BENCH_ECHO_WARMUP:-0.5}
SECS=${BENCH_ECHO_SECS:-1.5}
IDLE_CONNS=${BENCH_ECHO_IDLE_CONNS:-10000}
IDLE_HOLD=${BENCH_ECHO_IDLE_HOLD:-0.5}
CNT_SHORT=0.1   # the two counted runs (s): the short one measures connection setup and
CNT_LONG=1.0    # teardown, which the difference cancels (rates drift between runs here)
if ((quick)); then
    WARMUP=${BENCH_ECHO_WARMUP:-0.2}
    SECS=${BENCH_ECHO_SECS:-0.5}
    IDLE_CONNS=${BENCH_ECHO_IDLE_CONNS:-2000}
    IDLE_HOLD=${BENCH_ECHO_IDLE_HOLD:-0.3}
    CNT_LONG=0.6
fi
IMPLS=${BENCH_ECHO_IMPLS:-"twine epoll libevent libuv twisted"}
WORKLOADS=${BENCH_ECHO_WORKLOADS-"pp1 pp100 pp1000 stream connect idle"}
COUNTS=${BENCH_ECHO_COUNTS:-1}
LG=$out/loadgen

# ---- build --------------------------------------------------------------------
CF="-O2 -g -Wall -Wextra -Werror"
# shellcheck disable=SC2086,SC2046
{
    $CC $CF -o "$out/loadgen" "$here/loadgen.c" &&
    $CC $CF -o "$out/echo_epoll" "$here/echo_epoll.c" &&
    $CC $CF -o "$out/echo_libevent" "$here/echo_libevent.c" $(pkg-config --cflags --libs libevent) &&
    $CC $CF -o "$out/echo_libuv" "$here/echo_libuv.c" $(pkg-config --cflags --libs libuv)
} || { echo "echo/run.sh: building the load generator and the peer servers failed" >&2; exit 2; }
twine_server echo-server
choose_impls "epoll libevent libuv" twisted.internet.epollreactor

# 10,000 idle connections need as many descriptors in the server and in loadgen
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fdmax=$(ulimit -n)
if [[ $fdmax != unlimited ]] && ((IDLE_CONNS > fdmax - 100)); then
    echo "echo/run.sh: descriptor limit $fdmax: idle test with $((fdmax - 100)) connections" >&2
    IDLE_CONNS=$((fdmax - 100))
fi

# the syscall counter: perf (tracepoints) if it can count here, else strace -c
sys_tool=none
SYS_EVENTS=""
SYS_NAMES=""
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null; then
    sys_tool=perf
    avail=$(perf list tracepoint 2>/dev/null | grep -o 'syscalls:sys_enter_[a-z0-9_]*' || true)
    SYS_EVENTS=raw_syscalls:sys_enter
    for s in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_pwait2 \
             epoll_ctl ioctl brk mmap munmap madvise mprotect accept4 accept setsockopt getsockopt close \
             shutdown clock_gettime getpid futex poll select; do
        if grep -qx "syscalls:sys_enter_$s" <<<"$avail"; then
            SYS_EVENTS="$SYS_EVENTS,syscalls:sys_enter_$s"
            SYS_NAMES="$SYS_NAMES $s"
        fi
    done
elif command -v strace >/dev/null; then
    sys_tool=strace
fi
have_cg=0
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null && have_cg=1

# ---- servers --------------------------------------------------------------------
SPID=""
WPID=""
PORT=""

server_cmd() { # IMPL PORT: sets CMD
    case $1 in
        twine) CMD=("$TWINE" "tcp:$2:interface=127.0.0.1") ;;
        epoll | libevent | libuv) CMD=("$out/echo_$1" "$2") ;;
        twisted) CMD=("$PY" "$here/echo_twisted.py" "$2") ;;
    esac
}

start_server() { # IMPL [WRAPPER...]: sets SPID (= WPID: the wrappers exec it) and PORT; 1 when it does not come up
    local impl=$1
    shift
    PORT=$("$LG" freeport)
    server_cmd "$impl" "$PORT"
    echo "== $impl on port $PORT: $* ${CMD[*]}" >>"$log"
    taskset -c "$SERVER_CPU" "$@" "${CMD[@]}" >>"$log" 2>&1 </dev/null &
    SPID=$!
    WPID=$SPID
    # 30 s (valgrind starts slowly)
    wait_for "$SPID" 300 "$LG" probe --port "$PORT" && return 0
    echo "echo/run.sh: $impl did not start listening on port $PORT (see $log)" >&2
    stop_server
    return 1
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

lg() { # TIMEOUT ARGS...: loadgen on the load CPU against the current server
    local tmo=$1
    shift
    taskset -c "$LOAD_CPU" timeout -k 5 "$tmo" "$LG" "$@" --port "$PORT" --pid "$SPID" 2>>"$log"
}

emit() { [[ -n $raw ]] && echo "$*" >>"$raw"; return 0; }

# ---- progress -------------------------------------------------------------------
n_jobs=$((REPS * $(wc -w <<<"$WORKLOADS") * ${#impls[@]}))
((COUNTS)) || { sys_tool=none; have_cg=0; }
[[ $sys_tool != none ]] && n_jobs=$((n_jobs + REPS * ${#impls[@]}))
if ((have_cg)); then
    for i in "${impls[@]}"; do
        if [[ $i != twisted ]]; then n_jobs=$((n_jobs + 1)); fi
    done
fi
job=0
t_start=$(date +%s)

# ---- one throughput / memory workload on a fresh server ---------------------------
run_workload() { # REP WORKLOAD IMPL
    local rep=$1 w=$2 impl=$3 res rc=0 ok why tmo
    progress "echo rep $rep/$REPS $w $impl"
    if ! start_server "$impl"; then
        failures=$((failures + 1))
        emit "FAILED rep=$rep: echo $w $impl: server did not start"
        done_msg "FAILED (server did not start)"
        return 0
    fi
    tmo=$(awk -v a="$WARMUP" -v b="$SECS" 'BEGIN { print int(a + b + 60) }')
    case $w in
        pp1) res=$(lg "$tmo" pingpong --conns 1 --size 64 --secs "$SECS" --warmup "$WARMUP") || rc=$? ;;
        pp100) res=$(lg "$tmo" pingpong --conns 100 --size 64 --secs "$SECS" --warmup "$WARMUP") || rc=$? ;;
        pp1000) res=$(lg "$tmo" pingpong --conns 1000 --size 64 --secs "$SECS" --warmup "$WARMUP") || rc=$? ;;
        stream) res=$(lg "$tmo" stream --conns 10 --secs "$SECS" --warmup "$WARMUP") || rc=$? ;;
        connect) res=$(lg "$tmo" connect --conns 32 --size 64 --secs "$SECS" --warmup "$WARMUP" --close rst) || rc=$? ;;
        idle)
            # a short warm-up first for lazy initialisation, as shared/bench does
            lg 30 pingpong --conns 10 --size 64 --secs 0.3 --warmup 0 >/dev/null || true
            sleep 0.3
            res=$(lg 150 idle --conns "$IDLE_CONNS" --size 64 --secs "$IDLE_HOLD") || rc=$?
            ;;
    esac
    check_run "$impl" "$rc" "$res" '* errors=0 *' loadgen "loadgen counted errors"
    emit "RESULT bench=echo impl=$impl workload=$w ${res:-status=no_output} srv_rc=$SRV_RC ok=$ok rep=$rep"
    run_done "$(grep -oE '(msgs_per_s|mb_per_s|conns_per_s|rss_per_conn_b)=[0-9.]+' <<<"$res" | head -n1)" "$res"
}

# ---- the noise-free figures ---------------------------------------------------------
msgs_of() { grep -oE '(^| )msgs=[0-9]+' <<<"$1" | cut -d= -f2; }

count_syscalls() { # REP IMPL
    local rep=$1 impl=$2 s f pid res msgs=() ok=1
    progress "echo rep $rep/$REPS syscalls/msg $impl"
    rm -f "$out/sys-$impl-"*.txt
    start_server "$impl" || { failures=$((failures + 1)); done_msg "FAILED (server did not start)"; return 0; }
    lg 60 pingpong --conns 100 --size 64 --secs 0.3 --warmup 0 >/dev/null || ok=0
    for s in "$CNT_SHORT" "$CNT_LONG"; do
        f=$out/sys-$impl-$s.txt
        rm -f "$f"
        if [[ $sys_tool == perf ]]; then   # counts SPID while loadgen runs
            # (the sleep: the server has handled every close before counting stops)
            # shellcheck disable=SC2016
            res=$(perf stat -x, -o "$f" -e "$SYS_EVENTS" -p "$SPID" -- bash -c \
                  'taskset -c "$1" timeout -k 5 60 "$2" pingpong --conns 100 --size 64 --secs "$3" \
                   --warmup 0 --port "$4"; rc=$?; sleep 0.3; exit $rc' \
                  - "$LOAD_CPU" "$LG" "$s" "$PORT" 2>>"$log") || ok=0
        else
            strace -c -f -o "$f" -p "$SPID" 2>>"$log" &
            pid=$!
            sleep 0.5   # attached
            res=$(lg 60 pingpong --conns 100 --size 64 --secs "$s" --warmup 0) || ok=0
            sleep 0.3
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
        [[ $res == *" errors=0 "* ]] || ok=0
        msgs+=("$(msgs_of "$res")")
    done
    stop_server
    if ((ok)); then
        res=$(/usr/bin/python3 - "$sys_tool" "${msgs[0]}" "${msgs[1]}" \
            "$out/sys-$impl-$CNT_SHORT.txt" "$out/sys-$impl-$CNT_LONG.txt" <<'EOF'
import re, sys
tool, m0, m1, f0, f1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def counts(path):
    c = {}
    for line in open(path):
        if tool == "perf":
            p = line.strip().split(",")
            if len(p) > 2 and p[0].isdigit():
                ev = p[2]
                c["total" if ev == "raw_syscalls:sys_enter" else ev.rpartition("sys_enter_")[2]] = int(p[0])
        else:   # strace -c table: % time, seconds, usecs/call, calls, [errors], syscall
            p = line.split()
            if len(p) >= 5 and p[-1] == "total":
                c["total"] = int(p[3])
            elif len(p) >= 5 and re.match(r"^[\d.]+$", p[0]) and p[3].isdigit():
                c[p[-1]] = int(p[3])
    return c
a, b = counts(f0), counts(f1)
dm = m1 - m0
if m1 < 2 * m0 or "total" not in a or "total" not in b:
    print(f"msgs={m0}/{m1} counted={a.get('total')}/{b.get('total')} ok=0"); sys.exit()
per = {k: (b.get(k, 0) - a.get(k, 0)) / dm for k in set(a) | set(b)}
known = sum(v for k, v in per.items() if k != "total")
per["other"] = per["total"] - known if tool == "perf" else 0.0
parts = " ".join(f"n_{k}={v:.4f}" for k, v in sorted(per.items()) if k != "total" and abs(v) >= 0.0005)
print(f"msgs={dm} syscalls={b['total'] - a['total']} per_msg={per['total']:.4f} {parts} ok=1")
EOF
)
    else
        res="msgs=${msgs[0]:-}/${msgs[1]:-} ok=0"
    fi
    emit "RESULT bench=echo_sys impl=$impl tool=$sys_tool short_s=$CNT_SHORT long_s=$CNT_LONG $res rep=$rep"
    if [[ $res == *ok=1* ]]; then
        done_msg "$(grep -oE 'per_msg=[0-9.]+' <<<"$res")"
        rm -f "$out/sys-$impl-"*.txt
    else
        failures=$((failures + 1))
        done_msg "FAILED: $res (counts: $out/sys-$impl-*.txt)"
    fi
}

count_instructions() { # IMPL
    local impl=$1 s cg=$out/callgrind.$1 res ok=1 msgs=() irs=() d f ir
    progress "echo instructions/msg $impl (callgrind)"
    rm -f "$cg" "$cg".*
    start_server "$impl" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg" \
        || { failures=$((failures + 1)); done_msg "FAILED (server did not start under valgrind)"; return 0; }
    lg 60 pingpong --conns 100 --size 64 --secs 0.5 --warmup 0 >/dev/null || ok=0
    d=0
    for s in "$CNT_SHORT" "$CNT_LONG"; do
        d=$((d + 1))
        callgrind_control -i on "$SPID" >>"$log" 2>&1 || ok=0
        res=$(lg 120 pingpong --conns 100 --size 64 --secs "$s" --warmup 0) || ok=0
        [[ $res == *" errors=0 "* ]] || ok=0
        sleep 0.3   # the server has handled every close
        callgrind_control -i off "$SPID" >>"$log" 2>&1 || ok=0
        callgrind_control -d "window$d" "$SPID" >>"$log" 2>&1 || ok=0
        msgs+=("$(msgs_of "$res")")
    done
    stop_server
    for d in 1 2; do   # the dump files are cg.1, cg.2 (in order); find them by their trigger
        f=$(grep -l "^desc: Trigger: dump window$d\$" "$cg".* 2>/dev/null | head -n1)
        ir=""
        [[ -n $f ]] && ir=$(awk '/^totals:/ { print $2; exit }' "$f")
        irs+=("$ir")
    done
    if ((ok)) && [[ -n ${irs[0]} && -n ${irs[1]} && ${msgs[1]} -gt $((2 * msgs[0])) ]]; then
        res=$(awk -v i0="${irs[0]}" -v i1="${irs[1]}" -v m0="${msgs[0]}" -v m1="${msgs[1]}" \
            'BEGIN { printf "msgs=%d ir=%d per_msg=%.1f ok=1", m1 - m0, i1 - i0, (i1 - i0) / (m1 - m0) }')
    else
        res="msgs=${msgs[0]:-}/${msgs[1]:-} ir=${irs[0]:-}/${irs[1]:-} ok=0"
    fi
    emit "RESULT bench=echo_ir impl=$impl short_s=$CNT_SHORT long_s=$CNT_LONG $res rep=1"
    if [[ $res == *ok=1* ]]; then
        done_msg "$(grep -oE 'per_msg=[0-9.]+' <<<"$res")"
        # keep the longer window's profile for callgrind_annotate
        f=$(grep -l '^desc: Trigger: dump window2$' "$cg".* 2>/dev/null | head -n1)
        if [[ -n $f ]]; then mv "$f" "$out/callgrind-$impl.out"; fi
    else
        failures=$((failures + 1))
        done_msg "FAILED: $res"
    fi
    rm -f "$cg" "$cg".*
}

# ---- run ----------------------------------------------------------------------------
open_raw echo "twine echo-server benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
{
    echo "# echo: reps=$REPS, server on CPU $SERVER_CPU, loadgen on CPU $LOAD_CPU; ping-pong/stream/connect ${WARMUP} s warm-up + ${SECS} s;" \
         "idle $IDLE_CONNS connections held ${IDLE_HOLD} s; servers [${impls[*]}]"
    echo "# echo: libevent $(pkg-config --modversion libevent), libuv $(pkg-config --modversion libuv)$( ((have_twisted)) && echo ", Twisted $($PY -c 'import twisted; print(twisted.__version__)') on Python $($PY -c 'import platform; print(platform.python_version())')")$( [[ -x $TWINE ]] && echo "; twine $TWINE")"
    echo "# echo: counted figures: ping-pong 100 connections, difference of ${CNT_LONG} s and ${CNT_SHORT} s runs; syscalls: $sys_tool; instructions: $( ((have_cg)) && valgrind --version || echo 'n/a (no valgrind)')"
} >>"$raw"
((twine_missing)) && echo "FAILED rep=0: echo twine: $TWINE missing (did not build)" >>"$raw"

warn_one_cpu loadgen

[[ $sys_tool == none ]] && ((COUNTS)) && echo "echo/run.sh: neither perf nor strace: no system-call counts" >&2
for rep in $(seq 1 "$REPS"); do
    for w in $WORKLOADS; do
        for i in $(rotated "$rep"); do
            run_workload "$rep" "$w" "$i"
        done
    done
    # the system-call count depends on how many events one epoll_wait returns,
    # which drifts with the machine's state: one count per round, medians
    if [[ $sys_tool != none ]]; then
        for i in $(rotated "$rep"); do
            count_syscalls "$rep" "$i"
        done
    fi
done
if ((have_cg)); then
    for i in "${impls[@]}"; do
        if [[ $i != twisted ]]; then count_instructions "$i"; fi
    done
else
    echo "echo/run.sh: valgrind not installed: no instruction counts" >&2
fi
echo "echo/run.sh: $job runs in $(($(date +%s) - t_start)) s, $failures failed; raw results: $raw" >&2

if ((own_raw)); then
    echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
    /usr/bin/python3 "$here/../summarize.py" "$raw" | tee "${raw%.txt}.md"
fi
((failures == 0))
