# tests/bench/lib.sh -- shell functions shared by the server benchmarks,
# tests/bench/echo/run.sh and tests/bench/chat/run.sh, which source it:
#
#   here=$(cd "$(dirname "$0")" && pwd)
#   . "$here/../lib.sh"
#   bench_init NAME "$@"
#
# Both start each server for one run, pinned to one CPU with the load
# generator on another, stop it by its PID, and judge the run the same way;
# the functions below are that common part.  They use and set the scripts'
# globals, named at each function.
# shellcheck shell=bash disable=SC2034,SC2153,SC2154  # those globals

# bench_init NAME REL_DIR [RAW_FILE]: the command line and the settings both
# benchmarks take.  Sets me (NAME/run.sh, for messages), root, rel, out
# (REL_DIR/bench/NAME, created), raw (RAW_FILE or empty), log (the servers'
# log, emptied), REPS and quick (BENCH_REPS, BENCH_QUICK), SERVER_CPU and
# LOAD_CPU (BENCH_SERVER_CPU, BENCH_LOAD_CPU), PY, CC and failures; cd to root.
bench_init() {
    local name=$1
    shift
    me=$name/run.sh
    [[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 REL_DIR [RAW_FILE]" >&2; exit 2; }
    root=$(cd "$here/../../.." && pwd)
    rel=$(cd "$1" && pwd)
    out=$rel/bench/$name
    raw=${2:-}
    cd "$root" || exit 2
    REPS=${BENCH_REPS:-3}
    quick=0
    if [[ ${BENCH_QUICK:-0} == 1 ]]; then
        quick=1
        REPS=${BENCH_REPS:-1}
    fi
    # the server on one CPU, the load generator on another: neither steals
    # the other's time, and the server's CPU use is its own
    SERVER_CPU=${BENCH_SERVER_CPU:-0}
    LOAD_CPU=${BENCH_LOAD_CPU:-1}
    PY=/usr/bin/python3
    CC=${CC:-cc}
    mkdir -p "$out"
    log=$out/servers.log
    : >"$log"
    failures=0
}

# twine_server PROG: brings REL_DIR/examples/PROG up to date with make when
# REL_DIR is inside the tree.  Sets TWINE (its path) and twine_missing (1, and
# a failure counted, when it is not there).
twine_server() {
    local rel_in_tree=${rel#"$root"/}
    TWINE=$rel/examples/$1
    twine_missing=0
    if [[ $rel_in_tree != "$rel" ]]; then
        make -s -C "$root" --no-print-directory "$rel_in_tree/examples/$1" >&2 || true
    fi
    if [[ ! -x $TWINE ]]; then
        echo "$me: $TWINE is missing or did not build; twine's results will be empty" >&2
        twine_missing=1
        failures=$((failures + 1))
    fi
}

# choose_impls PEERS MODULES: impls (an array) = the servers named in $IMPLS
# that can run here: twine unless twine_missing, twisted if $PY imports
# MODULES (sets have_twisted), and the PEERS (more names, always there).
# Exit 2 on an unknown name, 1 when none is left.
choose_impls() {
    local i list=""
    have_twisted=1
    $PY -c "import $2" 2>/dev/null || have_twisted=0
    for i in $IMPLS; do
        case " twine twisted $1 " in
            *" $i "*) ;;
            *) echo "$me: unknown server '$i'" >&2; exit 2 ;;
        esac
        case $i in
            twine) ((twine_missing)) && continue ;;
            twisted) ((have_twisted)) || { echo "$me: python3-twisted not importable; Twisted skipped" >&2; continue; } ;;
        esac
        list="$list $i"
    done
    read -r -a impls <<<"$list"
    ((${#impls[@]})) || { echo "$me: no server to run" >&2; exit 1; }
}

# rotated REP: the servers in the order they run in round REP; the order
# rotates every round so that none always runs first (or right after another).
rotated() {
    local k n=${#impls[@]}
    for k in $(seq 0 $((n - 1))); do
        echo "${impls[$(((k + $1 - 1) % n))]}"
    done
}

warn_one_cpu() { # CLIENT: the server and CLIENT are meant to have a CPU each
    (($(nproc) >= 2)) || echo "$me: warning: one CPU; server and $1 share it" >&2
}

# open_raw NAME TITLE: unless the caller was given RAW_FILE, raw becomes
# REL_DIR/bench/NAME-results-<stamp>.txt, begun with TITLE, the host and the
# load average.  Sets own_raw (1 when it made the file).
open_raw() {
    local stamp
    own_raw=0
    [[ -z $raw ]] || return 0
    own_raw=1
    stamp=$(date -u +%Y%m%d-%H%M%S)
    ((quick)) && stamp="quick-$stamp"
    raw=$rel/bench/$1-results-$stamp.txt
    {
        echo "# $2"
        echo "# host: $(uname -srm); $(nproc) CPUs;$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- || true)"
        echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$raw"
}

# ---- servers ------------------------------------------------------------------
# SPID is the server's PID, WPID what was started: the server itself, or a
# wrapper (strace, perf) whose child it is.

alive() { # PID: running (a zombie is not)
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# wait_for PID TRIES CMD...: runs CMD every 0.1 s, at most TRIES times, while
# PID is alive; 0 as soon as CMD succeeds, 1 otherwise.
wait_for() {
    local pid=$1 tries=$2 _
    shift 2
    for _ in $(seq 1 "$tries"); do
        alive "$pid" || return 1
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

stop_server() { # SIGTERM to the server, up to 8 s to drain (twine: 5 s), then SIGKILL; sets SRV_RC
    SRV_RC=""
    [[ -n $WPID ]] || return 0
    kill -TERM "$SPID" 2>/dev/null || true
    for _ in $(seq 1 80); do
        alive "$WPID" || break
        sleep 0.1
    done
    if alive "$WPID"; then
        echo "$me: pid $SPID ignored SIGTERM for 8 s; killed" >&2
        kill -KILL "$SPID" 2>/dev/null || true
        [[ $SPID != "$WPID" ]] && kill -TERM "$WPID" 2>/dev/null
    fi
    SRV_RC=0
    wait "$WPID" 2>/dev/null || SRV_RC=$?
    SPID=""
    WPID=""
}

# check_run IMPL RC RES GOOD CLIENT WHY: after a run on the current server,
# stops it and sets the caller's ok (1 or 0) and why: the load generator
# CLIENT must have exited 0 (RC) with output RES matching the pattern GOOD
# (else WHY), the server must still have been alive, and twine's must then
# exit 0 on SIGTERM.
check_run() {
    local was_alive=1
    alive "$SPID" || was_alive=0
    stop_server
    ok=1
    why=""
    (($2 == 0)) || { ok=0; why="$5 exit $2"; }
    # shellcheck disable=SC2053  # GOOD is a pattern
    [[ $3 == $4 ]] || { ok=0; why="${why:+$why, }$6"; }
    ((was_alive)) || { ok=0; why="${why:+$why, }server died"; }
    if [[ $1 == twine && $SRV_RC != 0 ]]; then
        ok=0
        why="${why:+$why, }exit status $SRV_RC after SIGTERM (expected 0)"
    fi
}

# ---- progress on stderr ---------------------------------------------------------
# "[job/n_jobs] what ... seconds  result", one line per run; uses job, n_jobs, T0.

progress() { job=$((job + 1)); T0=$(date +%s%N); printf '[%2d/%d] %-36s' "$job" "$n_jobs" "$*" >&2; }
done_msg() {
    local ms=$((($(date +%s%N) - T0) / 1000000))
    printf ' %4d.%02d s  %s\n' $((ms / 1000)) $((ms % 1000 / 10)) "$*" >&2
}

# run_done SUMMARY RES: ends the progress line of a run that check_run judged:
# SUMMARY when it passed; else why, the output RES, and one more failure.
run_done() {
    if ((ok)); then
        done_msg "$1"
    else
        failures=$((failures + 1))
        done_msg "FAILED: $why"
        echo "    $2" >&2
    fi
}
