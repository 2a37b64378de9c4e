#!/usr/bin/env bash
# tests/bench/chat/run.sh REL_DIR [RAW_FILE] -- chat fan-out benchmark (issue 6):
# twine's examples/chat-server against the same chat written on Twisted
# (chat_twisted.py, run with /usr/bin/python3 on the epoll reactor).
#
# Called by tests/bench/run.sh (BENCH_PARTS=chat), which passes RAW_FILE: the
# RESULT lines are appended to it and the tables printed on stdout.  Run alone,
# it writes REL_DIR/bench/chat-results-<stamp>.txt and the tables next to it
# (.md) as well.  Progress goes to stderr.
#
# chatload.c (built here into REL_DIR/bench/chat/) connects 100 clients, names
# them, waits for every join notice, and then every client sends lines that
# the server delivers to the 99 others; every client reads everything and checks
# each line arrives exactly once and in order from each sender (see its
# header).  Each sender has at most K = 8 lines not yet delivered to everyone,
# so the server never owes a client more than 100 * 8 lines (well under the
# 256 KiB at which twine's chat drops a slow reader).  Two workloads, each on a
# fresh server, the servers one after the other (order rotating every round):
#   max    every sender keeps 8 lines in flight: delivered lines per second
#          (one line received by one client) and the delivery latency at
#          saturation (which is mostly queueing: 800 lines in flight)
#   rate   300 lines per second in total (BENCH_CHAT_RATE; each delivered 99
#          times), within what both servers sustain: p50/p99 delivery
#          latency.  Few lines arrive per iteration at this rate, so little
#          coalesces and nearly every delivery is a system call of its own:
#          on the 2-vCPU development VM Twisted needed 55-85% of a CPU for 300
#          lines/s and all of it for 1000, twine 25-35% and 50-57%.
# and for both the server's CPU use (utime + stime from /proc over the window)
# and, for max, its CPU time per delivered line, which other load on the
# machine disturbs less than the rates (the server cannot go faster than the
# CPU share it gets; it still pays about the same per line).  chatload's busy
# share tells whether the load generator, not the server, was the limit.
# Latency = the time the load generator read a line - the send time written
# in it.  Server pinned to CPU $BENCH_SERVER_CPU (0), load generator to
# $BENCH_LOAD_CPU (1), as tests/bench/echo/run.sh does (what the two scripts
# share is in tests/bench/lib.sh).  The target (issue 6): twine delivers >= 5x
# the lines per second Twisted does.
#
# The system-call check.  The target: no more than one write-type system call
# per recipient per reactor iteration, however many lines it is owed (the chat
# gathers a client's lines during an iteration and writes them with one
# writev).  Each server is started under
#   strace -f -C --seccomp-bpf -s 0 -e trace=epoll_wait,epoll_pwait,write,writev,sendmsg,sendto
# (-C: the `strace -c` table and the trace itself) for one `max` run of
# $SYS_SECS s.  From them:
#   writes        write-type calls on sockets (fd > 2: the server's own log
#                 lines on stderr and the "listening" line are left out)
#   iterations    epoll_wait calls (one per reactor iteration, for twine's
#                 epoll backend and Twisted's epollreactor alike)
#   writes / iterations / clients
#                 the issue's simple bound: with at most one write per
#                 recipient per iteration it cannot exceed 1 (target <= 1)
#   max per (iteration, client)
#                 the exact check, from the trace: the trace is cut at each
#                 epoll_wait, and within each piece the writes to each socket
#                 are counted; the largest count (target <= 1; a short write
#                 that leaves the rest for the next writable event is still
#                 one write in this iteration) and how many (iteration,
#                 socket) pairs had more than one
#   writes per delivered line
#                 writes / lines delivered (chatload's total, warm-up and
#                 drain included): far below 1 when each write carries many
#                 lines.  Under strace the server runs several times slower,
#                 so more lines pile up per iteration and this figure is
#                 lower than without it; when perf can count system calls
#                 here, the same `max` run is repeated under `perf stat -e
#                 syscalls:sys_enter_*` (which barely slows the server), and
#                 that figure is given too.
# A missing strace, perf or python3-twisted makes those cells n/a, not a failure.
#
#   BENCH_REPS=n            rounds (default 3)
#   BENCH_QUICK=1           1 round, 1 s runs (about 30 s)
#   BENCH_CHAT_IMPLS        servers (default "twine twisted")
#   BENCH_CHAT_CLIENTS      clients (default 100)
#   BENCH_CHAT_SECS, BENCH_CHAT_WARMUP   measured and warm-up seconds (5, 1)
#   BENCH_CHAT_RATE         total lines/s of the rate workload (default 300)
#   BENCH_CHAT_INFLIGHT     lines in flight per sender (default 8)
#   BENCH_CHAT_SYS=0        skip the system-call check
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU
#
# Full default run: about 2 minutes on 2 vCPUs.  Every process runs under a
# timeout and is stopped by its PID; nothing else is started or killed.  Exit
# status 1 when a run failed its checks (chatload errors, a server that died
# or, for twine, did not exit 0 on SIGTERM, twine's server missing); a missed
# target is not a failure.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$here/../lib.sh"
bench_init chat "$@"

SECS=${BENCH_CHAT_SECS:-5}
WARMUP=${BENCH_CHAT_WARMUP:-1}
SYS_SECS=2
if ((quick)); then
    SECS=${BENCH_CHAT_SECS:-1}
    WARMUP=${BENCH_CHAT_WARMUP:-0.3}
    SYS_SECS=1
fi
CLIENTS=${BENCH_CHAT_CLIENTS:-100}
RATE=${BENCH_CHAT_RATE:-300}
INFLIGHT=${BENCH_CHAT_INFLIGHT:-8}
SYS=${BENCH_CHAT_SYS:-1}
IMPLS=${BENCH_CHAT_IMPLS:-"twine twisted"}
CL=$out/chatload

# ---- build ----------------------------------------------------------------------
$CC -O2 -g -Wall -Wextra -Werror -o "$CL" "$here/chatload.c" ||
    { echo "chat/run.sh: building chatload failed" >&2; exit 2; }
twine_server chat-server
choose_impls "" "twisted.internet.epollreactor, twisted.protocols.basic"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
have_strace=0
command -v strace >/dev/null && have_strace=1
have_perf=0
if command -v perf >/dev/null &&
   perf stat -e syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait -o /dev/null -- true 2>/dev/null; then
    have_perf=1
fi
((SYS)) || { have_strace=0; have_perf=0; }

# ---- servers ----------------------------------------------------------------------
SPID=""     # the server
WPID=""     # what was started (the server, or strace / perf around it)
PORT=""

port_in() { # FILE: sets PORT from the server's "port N" line in FILE; 1 while there is none
    PORT=$(grep -oE 'port [0-9]+' "$1" | head -n1 | cut -d' ' -f2)
    [[ -n $PORT ]]
}

start_server() { # IMPL [WRAPPER...]: sets SPID, WPID and PORT; 1 when it does not come up
    local impl=$1 so=$out/server.out
    shift
    local cmd
    case $impl in
        twine) cmd=("$TWINE" "tcp:0:interface=127.0.0.1") ;;
        twisted) cmd=("$PY" "$here/chat_twisted.py" 0) ;;
    esac
    : >"$so"
    echo "== $impl: $* ${cmd[*]}" >>"$log"
    taskset -c "$SERVER_CPU" "$@" "${cmd[@]}" >"$so" 2>>"$log" </dev/null &
    WPID=$!
    SPID=$WPID
    PORT=""
    wait_for "$WPID" 200 port_in "$so"   # 20 s
    cat "$so" >>"$log"
    if [[ -n $PORT && $# -gt 0 ]]; then   # wrapped: the server is the wrapper's child
        SPID=$(awk '{ print $1 }' "/proc/$WPID/task/$WPID/children" 2>/dev/null)
        [[ -n $SPID ]] || SPID=$WPID
    fi
    if [[ -n $PORT ]] && "$CL" probe --port "$PORT"; then
        return 0
    fi
    echo "chat/run.sh: $impl did not start listening (see $log)" >&2
    stop_server
    return 1
}

trap 'stop_server' EXIT
trap 'exit 130' INT TERM

chatload() { # IMPL ARGS...: on the load CPU against the current server
    local impl=$1
    shift
    taskset -c "$LOAD_CPU" timeout -k 5 120 "$CL" --port "$PORT" --pid "$SPID" --impl "$impl" \
        --clients "$CLIENTS" --inflight "$INFLIGHT" --timeout 100 "$@" 2>>"$log"
}

# ---- results ------------------------------------------------------------------------
open_raw chat "twine chat fan-out benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')$( ((quick)) && echo ' (BENCH_QUICK)')"
mark="# chat: tests/bench/chat/run.sh, pid $$, started $(date -u +%H:%M:%S.%N)"   # the tables read from here on
{
    echo "$mark"
    echo "# chat: reps=$REPS clients=$CLIENTS inflight=$INFLIGHT per sender, warm-up ${WARMUP} s + ${SECS} s;" \
         "rate workload $RATE lines/s; server on CPU $SERVER_CPU, chatload on CPU $LOAD_CPU; servers [${impls[*]}]"
    echo "# chat: $( ((have_twisted)) && echo "Twisted $($PY -c 'import twisted; print(twisted.__version__)') on Python $($PY -c 'import platform; print(platform.python_version())')" || echo 'no Twisted')$( [[ -x $TWINE ]] && echo "; twine $TWINE")"
    echo "# chat: system calls: $( ((have_strace)) && strace -V | head -n1 || echo 'no strace')$( ((have_perf)) && echo '; perf stat' )"
} >>"$raw"
((twine_missing)) && echo "FAILED rep=0: chat twine: $TWINE missing (did not build)" >>"$raw"

n=${#impls[@]}
n_jobs=$((REPS * 2 * n))
((have_strace)) && n_jobs=$((n_jobs + n))
((have_perf)) && [[ " ${impls[*]} " == *" twine "* ]] && n_jobs=$((n_jobs + 1))
job=0
t_start=$(date +%s)

run_workload() { # REP WORKLOAD IMPL
    local rep=$1 w=$2 impl=$3 res rc=0 ok why
    progress "chat rep $rep/$REPS $w $impl"
    if ! start_server "$impl"; then
        failures=$((failures + 1))
        echo "FAILED rep=$rep: chat $w $impl: server did not start" >>"$raw"
        done_msg "FAILED (server did not start)"
        return 0
    fi
    case $w in
        max) res=$(chatload "$impl" --secs "$SECS" --warmup "$WARMUP") || rc=$? ;;
        rate) res=$(chatload "$impl" --secs "$SECS" --warmup "$WARMUP" --rate "$RATE") || rc=$? ;;
    esac
    check_run "$impl" "$rc" "$res" '* ok=1*' chatload "chatload's checks failed"
    res=${res:-RESULT bench=chat impl=$impl status=no_output}
    res=${res% ok=[01]}
    echo "$res workload=$w srv_rc=$SRV_RC ok=$ok rep=$rep" >>"$raw"
    run_done "$(grep -oE 'delivered_per_s=[0-9]+' <<<"$res") $(grep -oE ' p99_us=[0-9.]+' <<<"$res")" "$res"
}

# The system-call check (see the header): strace -C around one max run.
count_syscalls() { # IMPL
    local impl=$1 f=$out/strace-$1.txt res rc=0 ok=1 calls
    progress "chat syscalls $impl (strace)"
    rm -f "$f"
    if ! start_server "$impl" strace -f -C --seccomp-bpf -s 0 -o "$f" \
            -e trace=epoll_wait,epoll_pwait,write,writev,sendmsg,sendto; then
        failures=$((failures + 1))
        done_msg "FAILED (server did not start under strace)"
        return 0
    fi
    res=$(chatload "$impl" --secs "$SYS_SECS" --warmup 0.3) || rc=$?
    stop_server
    [[ $rc == 0 && $res == *" ok=1"* ]] || ok=0
    calls=$($PY - "$f" "$CLIENTS" "$(grep -oE 'total_delivered=[0-9]+' <<<"$res" | cut -d= -f2)" <<'EOF'
import re, sys
from collections import Counter
path, clients, delivered = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0)
WRITES = {"write", "writev", "sendmsg", "sendto"}
call = re.compile(r"^(?:\d+\s+)?([a-z_0-9]+)\((\d+)?")
ret = re.compile(r"\)\s+=\s+(-?\d+)")
summary = {}
iters = iters_ev = writes = other_writes = pairs = multi = maxw = 0
per_fd = Counter()
def close_iteration():
    global pairs, multi, maxw
    pairs += len(per_fd)
    multi += sum(1 for v in per_fd.values() if v > 1)
    maxw = max([maxw] + list(per_fd.values()))
    per_fd.clear()
in_summary = False
for line in open(path, errors="replace"):
    if line.startswith("% time"):
        in_summary = True
        continue
    if in_summary:   # the strace -c table: % time, seconds, usecs/call, calls, [errors], syscall
        p = line.split()
        if len(p) >= 5 and re.match(r"^[\d.]+$", p[0]) and p[3].isdigit():
            summary[p[-1]] = int(p[3])
        continue
    m = call.match(line)
    if not m:
        continue   # "<... resumed>" and signal lines: the call was counted where it started
    name, fd = m.group(1), m.group(2)
    if name.startswith("epoll"):
        close_iteration()
        iters += 1
        r = ret.search(line)
        if r and int(r.group(1)) > 0:
            iters_ev += 1
    elif name in WRITES:
        if fd is not None and int(fd) > 2:
            writes += 1
            per_fd[int(fd)] += 1
        else:
            other_writes += 1
close_iteration()
c_writes = sum(v for k, v in summary.items() if k in WRITES)
c_iters = sum(v for k, v in summary.items() if k.startswith("epoll"))
ok = iters > 0 and writes > 0 and delivered > 0
print(f"writes={writes} log_writes={other_writes} iterations={iters} iterations_with_events={iters_ev} "
      f"c_writes={c_writes} c_epoll_wait={c_iters} "
      f"writes_per_iter_per_client={writes / iters / clients if iters else 0:.4f} "
      f"recipient_iterations={pairs} multi_write_pairs={multi} max_writes_per_client_iter={maxw} "
      f"clients_written_per_iter={pairs / iters if iters else 0:.2f} "
      f"writes_per_line={writes / delivered if delivered else 0:.5f} "
      f"lines_per_write={delivered / writes if writes else 0:.1f} sys_ok={int(ok)}")
EOF
) || ok=0
    [[ $calls == *sys_ok=1* ]] || ok=0
    echo "RESULT bench=chat_sys impl=$impl tool=strace clients=$CLIENTS secs=$SYS_SECS" \
         "$(grep -oE '(total_delivered|delivered_per_s)=[0-9]+' <<<"$res" | tr '\n' ' ')${calls:-} ok=$ok rep=1" >>"$raw"
    if ((ok)); then
        done_msg "$(grep -oE 'max_writes_per_client_iter=[0-9]+|writes_per_line=[0-9.]+' <<<"$calls" | tr '\n' ' ')"
        gzip -f "$f"   # kept for a closer look (strace-IMPL.txt.gz)
    else
        failures=$((failures + 1))
        done_msg "FAILED: $(tail -c 300 <<<"$res $calls")"
    fi
}

# The same ratios without strace's slowdown: perf counts system calls in the kernel.
count_syscalls_perf() { # IMPL
    local impl=$1 f=$out/perf-$1.txt res rc=0 ok=1 calls
    progress "chat syscalls $impl (perf)"
    # TWINE_LOG=warn: no log line per join and leave (perf cannot tell a socket's writes from stderr's)
    start_server "$impl" env TWINE_LOG=warn ||
        { failures=$((failures + 1)); done_msg "FAILED (server did not start)"; return 0; }
    # shellcheck disable=SC2016
    res=$(perf stat -x, -o "$f" -e syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait \
          -p "$SPID" -- bash -c 'taskset -c "$1" timeout -k 5 120 "$2" --port "$3" --pid "$4" --impl "$5" \
          --clients "$6" --inflight "$7" --secs "$8" --warmup 0.3 --timeout 100' \
          - "$LOAD_CPU" "$CL" "$PORT" "$SPID" "$impl" "$CLIENTS" "$INFLIGHT" "$SYS_SECS" 2>>"$log") || rc=$?
    stop_server
    [[ $rc == 0 && $res == *" ok=1"* ]] || ok=0
    local d w e
    d=$(grep -oE 'total_delivered=[0-9]+' <<<"$res" | cut -d= -f2)
    w=$(awk -F, '$3 ~ /sys_enter_(write|writev|sendmsg|sendto)$/ { s += $1 } END { print s + 0 }' "$f" 2>/dev/null)
    e=$(awk -F, '$3 ~ /sys_enter_epoll_wait$/ { s += $1 } END { print s + 0 }' "$f" 2>/dev/null)
    if ((ok)) && [[ -n $d && $d -gt 0 && $w -gt 0 && $e -gt 0 ]]; then
        calls=$(awk -v w="$w" -v e="$e" -v d="$d" -v c="$CLIENTS" 'BEGIN {
            printf "writes=%d iterations=%d writes_per_iter_per_client=%.4f clients_written_per_iter=%.2f writes_per_line=%.5f lines_per_write=%.1f",
                   w, e, w / e / c, w / e, w / d, d / w }')
    else
        ok=0
    fi
    echo "RESULT bench=chat_sys impl=$impl tool=perf clients=$CLIENTS secs=$SYS_SECS" \
         "$(grep -oE '(total_delivered|delivered_per_s)=[0-9]+' <<<"$res" | tr '\n' ' ')${calls:-} ok=$ok rep=1" >>"$raw"
    if ((ok)); then
        done_msg "$(grep -oE 'writes_per_line=[0-9.]+' <<<"$calls")"
        rm -f "$f"
    else
        failures=$((failures + 1))
        done_msg "FAILED: $(tail -c 300 <<<"$res") (counts: $f)"
    fi
}

# ---- run ------------------------------------------------------------------------------
warn_one_cpu chatload
for rep in $(seq 1 "$REPS"); do
    for w in max rate; do
        for i in $(rotated "$rep"); do
            run_workload "$rep" "$w" "$i"
        done
    done
done
if ((have_strace)); then
    for i in "${impls[@]}"; do count_syscalls "$i"; done
elif ((SYS)); then
    echo "chat/run.sh: strace not installed: no system-call check" >&2
fi
if ((have_perf)) && [[ " ${impls[*]} " == *" twine "* ]]; then
    count_syscalls_perf twine
fi
echo "chat/run.sh: $job runs in $(($(date +%s) - t_start)) s, $failures failed; raw results: $raw" >&2

# ---- tables ---------------------------------------------------------------------------
((own_raw)) && echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
tables() {
$PY - "$raw" "$mark" <<'EOF'
import statistics, sys
path, mark = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
if mark in lines:
    lines = lines[lines.index(mark):]
rows, failed = [], []
for line in lines:
    if line.startswith("RESULT bench=chat"):
        rows.append(dict(t.partition("=")[::2] for t in line.split()[1:]))
    elif line.startswith("FAILED") and " chat" in line:
        failed.append(line)
good = [r for r in rows if r.get("ok") == "1"]
bench = [r for r in good if r["bench"] == "chat"]
for r in bench:   # the server's CPU time per delivered line: less sensitive to other load than rates
    if float(r.get("srv_cpu", 0)) > 0 and float(r.get("delivered_per_s", 0)) > 0:
        r["srv_ns_per_line"] = float(r["srv_cpu"]) / 100 / float(r["delivered_per_s"]) * 1e9
sysr = [r for r in good if r["bench"] == "chat_sys"]
out = []
conf = next((r for r in bench), None)
clients = conf["clients"] if conf else "?"
reps = len({r.get("rep") for r in bench}) or 0
out.append(f"### Chat fan-out: {clients} clients, every line delivered to all the others "
           f"(tests/bench/chat/run.sh)")
out.append("")
if failed or len(good) != len(rows):
    out.append(f"**{len(failed)} failed runs, {len(rows) - len(good)} RESULT lines with ok=0 (excluded)**")
    out += [f"- `{f}`" for f in failed]
    out.append("")

def vals(impl, wl, key):
    return [float(r[key]) for r in bench if r["impl"] == impl and r.get("workload") == wl and key in r]

def cell(v, fmt):
    if not v:
        return "n/a"
    m = statistics.median(v)
    return fmt.format(m) + (f" ({fmt.format(min(v))}–{fmt.format(max(v))})" if len(v) > 1 else "")

rate = next((r["rate"] for r in bench if r.get("workload") == "rate"), "?")
inflight = conf["inflight"] if conf else "?"
spec = [
    ("max", "delivered_per_s", f"delivered lines/s, as fast as possible ({inflight} in flight per sender)",
     1e-3, "{:,.0f}k", False, 5.0),
    ("max", "p99_us", "p99 delivery latency, as fast as possible (ms)", 1e-3, "{:,.1f}", True, None),
    ("max", "srv_cpu", "server CPU %, as fast as possible", 1, "{:.0f}", None, None),
    ("max", "srv_ns_per_line", "server CPU time per delivered line, as fast as possible (ns)", 1, "{:,.0f}",
     True, None),
    ("max", "lg_busy", "chatload busy %, as fast as possible (near 100: chatload is the limit)",
     1, "{:.0f}", None, None),
    ("rate", "p50_us", f"p50 delivery latency at {float(rate):,.0f} lines/s (µs)", 1, "{:,.0f}", True, None),
    ("rate", "p99_us", f"p99 delivery latency at {float(rate):,.0f} lines/s (µs)", 1, "{:,.0f}", True, None),
    ("rate", "srv_cpu", f"server CPU % at {float(rate):,.0f} lines/s", 1, "{:.0f}", True, None),
]
out.append(f"Median over {reps} round(s) (min–max); twine ÷ Twisted: how many times better twine is "
           "(for latency and CPU: Twisted's figure ÷ twine's).")
out.append("")
out.append("| measure | twine | Twisted | twine ÷ Twisted | target | |")
out.append("|---|---:|---:|---:|---|---|")
for wl, key, label, scale, fmt, lower, target in spec:
    tw = [v * scale for v in vals("twine", wl, key)]
    tx = [v * scale for v in vals("twisted", wl, key)]
    ratio, verdict, tgt = "n/a", "", "—"
    if tw and tx and lower is not None:
        a, b = statistics.median(tw), statistics.median(tx)
        r = (b / a if a else float("inf")) if lower else (a / b if b else float("inf"))
        ratio = f"{r:.2f}×"
        if target:
            tgt = f"≥ {target:g}×"
            verdict = "PASS" if r >= target else "MISS"
    out.append(f"| {label} | {cell(tw, fmt)} | {cell(tx, fmt)} | {ratio} | {tgt} | {verdict} |")
out.append("")
if sysr:
    out.append("System calls during one as-fast-as-possible run: write-type calls on the clients' sockets "
               "(write, writev, sendmsg, sendto; not the log) and epoll_wait calls (one per reactor "
               "iteration). Target: at most one write per recipient per iteration.")
    out.append("")
    out.append("| server (tool) | lines delivered | writes | iterations | writes ÷ iterations ÷ clients "
               "(≤ 1) | most writes to one client in one iteration (≤ 1) | (iteration, client) pairs with > 1 write "
               "| clients written per iteration | writes per delivered line | |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(sysr, key=lambda r: (r["impl"] != "twine", r["tool"] != "strace")):
        exact = r.get("max_writes_per_client_iter")
        simple = float(r["writes_per_iter_per_client"])
        verdict = ""
        if r["impl"] == "twine":
            okv = simple <= 1 and (exact is None or int(exact) <= 1)
            verdict = "PASS" if okv else "MISS"
        out.append(f"| {r['impl']} ({r['tool']}) | {int(r['total_delivered']):,} | {int(r['writes']):,} | "
                   f"{int(r['iterations']):,} | {simple:.3f} | {exact if exact is not None else 'n/a'} | "
                   f"{r.get('multi_write_pairs', 'n/a')} | {float(r['clients_written_per_iter']):.1f} | "
                   f"{float(r['writes_per_line']):.4f} (1 per {float(r['lines_per_write']):,.0f}) | {verdict} |")
    out.append("")
    out.append("Under strace the servers run several times slower, so more lines are owed per iteration "
               "and fewer writes are needed per line; the perf row (if any) is the unperturbed figure.")
    out.append("")
print("\n".join(out))
EOF
}
if ((own_raw)); then
    tables | tee "${raw%.txt}.md"
else
    tables
fi
((failures == 0))
