#!/usr/bin/env bash
# tests/interop/run.sh BUILD_DIR [PART...] -- twine against real Twisted
# programs and real tools (twine issue 6).  BUILD_DIR (e.g. build/asan) holds
# examples/{echo-server,chat-server} and interop/twine_peer.  PARTs (default
# all): twisted-clients (1), twine-clients (2, 3), echo (4), chat (5).
#
#  1. Twisted's LineReceiver, NetstringReceiver and Int32StringReceiver
#     clients (twisted_peer.py) against twine's receivers (twine_peer server):
#     empty frames, max length, max + 1 (the twine server must close, and log
#     why), frames split byte by byte, hundreds of frames in one write; at a
#     small maximum and at Twisted's defaults.  Each twine server then stops
#     on SIGTERM with exit 0 and no sanitizer report.
#  2. twine's receivers as clients (twine_peer client) against Twisted's echo
#     servers (twisted_peer.py server): the same edges, written frame by
#     frame, all at once, in chunks and byte by byte; a frame over Twisted's
#     limit must make Twisted close after the earlier echoes.
#  3. twine client against twine server, the same frame files.
#  4. nc and socat against examples/echo-server (lines, 1 MiB of binary,
#     clients in parallel).
#  5. examples/chat-server with two nc clients, with socat, and with Twisted
#     LineReceiver clients (twisted_chat.py): join, talk, /me, /msg, /quit,
#     shutdown notice.
#
# Everything listens on 127.0.0.1 with a port the kernel picks; every step is
# bounded by `timeout` and waits for conditions (output seen, process gone),
# not for fixed sleeps.  Prints PASS / FAIL / SKIP lines; exits 1 on any
# failure.  A missing python3-twisted, socat or nc gives SKIP lines, unless
# TWINE_INTEROP_STRICT or CI is set (CI installs them): then it is a failure.
set -u
dir=${1:?usage: tests/interop/run.sh BUILD_DIR [PART...]}
shift
parts=" $* "
want() { [ "$parts" = "  " ] || [[ $parts == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
peer=$dir/interop/twine_peer
echo_server=$dir/examples/echo-server
chat_server=$dir/examples/chat-server
strict=${TWINE_INTEROP_STRICT:-${CI:-}}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONDONTWRITEBYTECODE=1

fails=0
passes=0
ok() { printf 'PASS  interop: %s\n' "$1"; passes=$((passes + 1)); }
bad() { printf 'FAIL  interop: %s\n' "$1"; fails=$((fails + 1)); }
skip() {
    if [ -n "$strict" ]; then
        bad "$1: not installed (required: TWINE_INTEROP_STRICT or CI is set)"
    else
        printf 'SKIP  interop: %s: not installed (apt-get install python3-twisted socat netcat-openbsd)\n' "$1"
    fi
}
# Show the end of a log, indented, after a failure.
show() { tail -n "${2:-15}" "$1" | sed 's/^/      | /'; }

out=$(mktemp -d)
bg_pids=()
cleanup() {
    for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE   # so that cleanup runs then too

# ---- tools --------------------------------------------------------------------

have_twisted=0 have_socat=0 have_nc=0
"$py" -c 'import twisted.protocols.basic' 2>/dev/null && have_twisted=1
command -v socat >/dev/null && have_socat=1
# OpenBSD nc (Debian's netcat-openbsd): -N shuts the socket down at stdin EOF.
command -v nc >/dev/null && nc -h 2>&1 | grep -q -- '-N' && have_nc=1
for f in "$peer" "$echo_server" "$chat_server"; do
    [ -x "$f" ] || { bad "$f is not built"; }
done
[ $fails = 0 ] || exit 1
if [ $have_twisted = 1 ]; then
    printf 'info  interop: Twisted %s, %s\n' \
        "$("$py" -c 'import twisted; print(twisted.__version__)')" "$("$py" --version 2>&1)"
fi

# ---- background processes -----------------------------------------------------

# start NAME CMD...: run CMD in the background, output in $out/NAME.log; the
# pid in $bg.
start() {
    local name=$1
    shift
    "$@" >"$out/$name.log" 2>&1 &
    bg=$!
    bg_pids+=("$bg")
}

# port_of NAME PID [KEY]: wait (20 s at most) for "port N" in NAME's log, or
# for the line "KEY port N", and print N.  Fails if the process died.
port_of() {
    local name=$1 pid=$2 key=${3:-} p re='s/.*port \([0-9][0-9]*\).*/\1/p'
    [ -n "$key" ] && re="s/^$key port \\([0-9][0-9]*\\)\$/\\1/p"
    for _ in $(seq 400); do
        p=$(sed -n "$re" "$out/$name.log" | head -n 1)
        [ -n "$p" ] && { echo "$p"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# gone PID SECONDS: wait for a background process to exit; its status in $rc.
gone() {
    if timeout "$2" tail --pid="$1" -f /dev/null; then
        wait "$1"
        rc=$?
        return 0
    fi
    rc=124
    return 1
}

# stop NAME PID WHAT [signalled]: SIGTERM (unless already sent: a second one
# may land after the daemon's handler is gone, and kill it), then exit 0
# within 10 s and no sanitizer report.
stop() {
    local name=$1 pid=$2 what=$3
    [ -n "${4:-}" ] || kill -TERM "$pid" 2>/dev/null
    if ! gone "$pid" 10; then
        bad "$what: still running 10 s after SIGTERM"
        kill -KILL "$pid" 2>/dev/null
    elif [ "$rc" != 0 ] || grep -q 'Sanitizer\|runtime error' "$out/$name.log"; then
        bad "$what: exit $rc after SIGTERM"
        show "$out/$name.log" 30
    else
        ok "$what: stops on SIGTERM, exit 0, no sanitizer report"
    fi
}

# step WHAT SECONDS CMD...: run CMD; PASS if it exits 0 in time.
step() {
    local what=$1 secs=$2
    shift 2
    if timeout "$secs" "$@" >"$out/step.log" 2>&1; then
        ok "$what"
    else
        local r=$?
        [ $r = 124 ] && what="$what (timed out after $secs s)"
        bad "$what"
        show "$out/step.log"
    fi
}

# ---- 1. Twisted clients -> twine servers ----------------------------------------

tw_default() { case $1 in line) echo 16384 ;; *) echo 99999 ;; esac; }

scenarios="edge split bytes batch oversize oversize-early oversize-batch edge"
if ! want twisted-clients; then
    :
elif [ $have_twisted = 1 ]; then
    for framing in line netstring int32; do
        for max in 1000 default; do
            if [ $max = default ]; then opt=(); m=$(tw_default $framing); else opt=(--max "$max"); m=$max; fi
            what="twine $framing server (max $m)"
            start tsrv "$peer" server $framing tcp:0:interface=127.0.0.1 "${opt[@]}"
            srv=$bg
            if ! port=$(port_of tsrv $srv); then
                bad "$what did not start"; show "$out/tsrv.log"; continue
            fi
            # shellcheck disable=SC2086
            timeout 300 "$py" "$here/twisted_peer.py" client $framing --port "$port" \
                "${opt[@]}" $scenarios >"$out/tcli.log" 2>&1
            crc=$?
            for s in $scenarios; do
                line=$(grep -m1 "^\(ok\|FAIL\) $s:" "$out/tcli.log")
                sed -i "0,/^\(ok\|FAIL\) $s:/{/^\(ok\|FAIL\) $s:/d}" "$out/tcli.log"
                case $line in
                ok*) ok "Twisted $framing client -> $what: $s (${line#ok "$s": })" ;;
                FAIL*) bad "Twisted $framing client -> $what: $s (${line#FAIL "$s": })" ;;
                *) bad "Twisted $framing client -> $what: $s: no result (exit $crc)"
                   show "$out/tcli.log" ;;
                esac
            done
            # The three oversize scenarios: each refusal logged with its reason.
            n=$(grep -c 'connection lost: .*longer than' "$out/tsrv.log")
            [ "$n" = 3 ] && ok "$what: logged 3 refusals ($(grep -m1 'longer than' "$out/tsrv.log" |
                sed 's/^twine_peer: connection lost: //'))" ||
                { bad "$what: logged $n refusals, want 3"; show "$out/tsrv.log"; }
            stop tsrv $srv "$what"
        done
    done
else
    skip "Twisted clients against twine servers (python3-twisted)"
fi

# ---- 2 and 3. twine clients -> Twisted servers, and -> twine servers -----------

# frames FRAMING MAX DIR: write edge, small, batch and refuse frame files.
frames() {
    local framing=$1 max=$2 d=$3 i
    mkdir -p "$d"
    {
        printf 'size %s\n' 0 1 2 $((max - 1)) "$max"
        if [ "$framing" = line ]; then
            printf '%s\n' 'text lone\rcr' 'text lone\nlf' 'text trailing cr\r' \
                'text \nleading lf' 'text nul\0byte' 'text \xff\xfe high bytes' 'text  spaces  '
        else
            printf '%s\n' 'text \r\n' 'text ,' 'text 0:,' 'text \0\0\0\x05' 'text 12:' 'text \0'
        fi
    } >"$d/edge"
    printf 'size %s\n' 0 1 2 3 0 9 10 11 99 100 101 >"$d/small"
    # 300 frames, a few of them (not hundreds: Twisted is slow with many
    # 100 KB strings) at the maximum.
    for i in $(seq 0 299); do
        case $((i % 50)):$((i % 5)) in
        10:*) echo "size $max" ;; 20:*) echo "size $((max - 1))" ;;
        *:0) echo "size 0" ;; *:1) echo "size 1" ;; *:2) echo "size $((i % 97))" ;;
        *:3) echo "size $((i * 7 % max))" ;; *:4) printf '%s\n' 'text \r\0' ;;
        esac
    done >"$d/batch"
    printf 'size %s\n' 5 0 "$max" >"$d/refuse"
    printf 'refuse %s\n' $((max + 1)) >>"$d/refuse"
}

# twine_clients FRAMING MAX PORT TARGET: every frame file, every write mode.
twine_clients() {
    local framing=$1 max=$2 port=$3 target=$4 d=$out/frames-$1-$2
    local chunk=$((max / 10 + 7)) ep="tcp:host=127.0.0.1:port=$3"
    local c=("$peer" client "$framing" "$ep")
    frames "$framing" "$max" "$d"
    step "twine $framing client -> $target: edge frames, one send each" 30 \
        "${c[@]}" "$d/edge" --write frames
    step "twine $framing client -> $target: edge frames, one write" 30 \
        "${c[@]}" "$d/edge" --write one
    step "twine $framing client -> $target: edge frames, in $chunk-byte chunks" 60 \
        "${c[@]}" "$d/edge" --write chunk:$chunk
    step "twine $framing client -> $target: small frames, byte by byte" 60 \
        "${c[@]}" "$d/small" --write chunk:1
    step "twine $framing client -> $target: 300 frames in one write" 60 \
        "${c[@]}" "$d/batch" --write one
    step "twine $framing client -> $target: max + 1 refused after the echoes (frames)" 30 \
        "${c[@]}" "$d/refuse" --write frames
    step "twine $framing client -> $target: max + 1 refused after the echoes (one write)" 30 \
        "${c[@]}" "$d/refuse" --write one
}

if ! want twine-clients; then
    :
elif [ $have_twisted = 1 ]; then
    specs=()
    for framing in line netstring int32; do specs+=("$framing:1000" "$framing"); done
    start tysrv "$py" "$here/twisted_peer.py" server "${specs[@]}"
    tysrv=$bg
    for spec in "${specs[@]}"; do
        framing=${spec%%:*}
        case $spec in *:*) max=${spec#*:} ;; *) max=$(tw_default "$framing") ;; esac
        if ! port=$(port_of tysrv $tysrv "$spec"); then
            bad "Twisted $spec server did not start"; show "$out/tysrv.log"; break
        fi
        twine_clients "$framing" "$max" "$port" "Twisted $framing server (MAX_LENGTH $max)"
    done
    kill -TERM $tysrv 2>/dev/null
    gone $tysrv 10 || kill -KILL $tysrv 2>/dev/null
else
    skip "twine clients against Twisted servers (python3-twisted)"
fi

want twine-clients && for framing in line netstring int32; do
    what="twine $framing server (max 1000)"
    start tsrv "$peer" server $framing tcp:0:interface=127.0.0.1 --max 1000
    srv=$bg
    if ! port=$(port_of tsrv $srv); then
        bad "$what did not start"; show "$out/tsrv.log"; continue
    fi
    twine_clients "$framing" 1000 "$port" "$what"
    stop tsrv $srv "$what, after twine clients"
done

# ---- 4. nc and socat -> echo-server ---------------------------------------------

want echo && { start echo "$echo_server" tcp:0:interface=127.0.0.1; echo_pid=$bg; }
if ! want echo; then
    :
elif ! port=$(port_of echo "$echo_pid"); then
    bad "echo-server did not start"; show "$out/echo.log"
else
    printf 'hello\r\nworld\n\nno newline at the end' >"$out/lines.in"
    head -c 1048576 /dev/urandom >"$out/random.in"
    if [ $have_nc = 1 ]; then
        if timeout 10 nc -N 127.0.0.1 "$port" <"$out/lines.in" >"$out/lines.nc" &&
            cmp -s "$out/lines.in" "$out/lines.nc"; then
            ok "nc -> echo-server: lines (CRLF, LF, empty, unterminated) come back byte for byte"
        else
            bad "nc -> echo-server: lines: got $(od -c "$out/lines.nc" | head -n 3)"
        fi
        pids=()
        for i in 1 2 3 4 5 6 7 8; do
            head -c $((i * 50000)) "$out/random.in" >"$out/par$i.in"
            timeout 20 nc -N 127.0.0.1 "$port" <"$out/par$i.in" >"$out/par$i.out" &
            pids+=($!)
        done
        good=0
        for i in 1 2 3 4 5 6 7 8; do
            wait "${pids[$((i - 1))]}" && cmp -s "$out/par$i.in" "$out/par$i.out" && good=$((good + 1))
        done
        [ $good = 8 ] && ok "8 nc clients at once -> echo-server: 50-400 KB each, all echoed" ||
            bad "8 nc clients at once -> echo-server: $good of 8 echoed correctly"
    else
        skip "nc against echo-server (netcat-openbsd)"
    fi
    if [ $have_socat = 1 ]; then
        if timeout 10 socat -t 5 - "TCP:127.0.0.1:$port" <"$out/lines.in" >"$out/lines.socat" &&
            cmp -s "$out/lines.in" "$out/lines.socat"; then
            ok "socat -> echo-server: lines come back byte for byte"
        else
            bad "socat -> echo-server: lines: got $(od -c "$out/lines.socat" | head -n 3)"
        fi
        if timeout 30 socat -t 10 - "TCP:127.0.0.1:$port" <"$out/random.in" >"$out/random.out" &&
            cmp -s "$out/random.in" "$out/random.out"; then
            ok "socat -> echo-server: 1 MiB of random bytes comes back intact"
        else
            bad "socat -> echo-server: 1 MiB: got $(wc -c <"$out/random.out") bytes, differing"
        fi
    else
        skip "socat against echo-server (socat)"
    fi
    stop echo "$echo_pid" "echo-server after nc and socat"
fi

# ---- 5. chat-server ---------------------------------------------------------------

# A line client driven from this script: NAME's input is a FIFO held open on
# a descriptor (fd_NAME), its output $out/NAME.out, its pid pid_NAME.
# client NAME nc|socat: connect NAME to the chat server.  nc is run without
# -N: when its input ends it sends no FIN and keeps reading, so it exits only
# once the server has closed the connection -- which is how the tests see a
# close.  socat exits by itself when the server closes.
client() {
    local name=$1 tool=$2 fd
    mkfifo "$out/$name.in"
    if [ "$tool" = nc ]; then
        nc 127.0.0.1 "$chat_port" <"$out/$name.in" >"$out/$name.out" 2>&1 &
    else
        socat -t 5 - "TCP:127.0.0.1:$chat_port" <"$out/$name.in" >"$out/$name.out" 2>&1 &
    fi
    eval "pid_$name=$!"
    bg_pids+=($!)
    exec {fd}>"$out/$name.in"
    eval "fd_$name=$fd"
}
# say NAME TEXT: send TEXT and a LF (printf %b: '\r' at the end makes CRLF).
say() { local fd; eval "fd=\$fd_$1"; printf '%b\n' "$2" >&"$fd"; }
# saw NAME TEXT: wait (20 s at most) until NAME has received the line TEXT,
# exactly (the server ends lines with CRLF).
saw() {
    for _ in $(seq 400); do
        grep -qxF -- "$2"$'\r' "$out/$1.out" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# seen FILE TEXT: wait (20 s at most) until FILE contains TEXT.
seen() {
    for _ in $(seq 400); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# saw_text NAME TEXT: ... until NAME has received a line containing TEXT.
saw_text() { seen "$out/$1.out" "$2"; }
# join NAME NICK: answer the greeting with NICK, wait for the welcome.
join() {
    saw_text "$1" 'What is your nickname?' && say "$1" "$2" && saw_text "$1" "* Hello $2."
}
# hangup NAME: close NAME's input, then its tool must exit within 10 s.
hangup() {
    local fd pid
    eval "fd=\$fd_$1 pid=\$pid_$1"
    [ -n "$fd" ] && exec {fd}>&-
    eval "fd_$1="
    gone "$pid" 10
}

want chat && { start chat "$chat_server" tcp:0:interface=127.0.0.1; chat_pid=$bg; }
if ! want chat; then
    :
elif ! chat_port=$(port_of chat "$chat_pid"); then
    bad "chat-server did not start"; show "$out/chat.log"
else
    if [ $have_nc = 1 ]; then
        what="chat-server, two nc clients"
        client bob nc
        client carol nc
        if join bob bob && join carol carol && saw bob '* carol has joined'; then
            ok "$what: both join, bob is told \"* carol has joined\""
            say carol 'hi bob, from nc'
            saw bob '<carol> hi bob, from nc' &&
                ok "$what: carol talks (LF), bob gets \"<carol> hi bob, from nc\"" ||
                { bad "$what: bob never got carol's line"; show "$out/bob.out"; }
            say bob 'hello carol\r'
            saw carol '<bob> hello carol' &&
                ok "$what: bob talks (CRLF), carol gets \"<bob> hello carol\" (CR not kept)" ||
                { bad "$what: carol never got bob's line"; show "$out/carol.out"; }
            say bob "$(printf 'x%.0s' $(seq 600))"
            say bob 'still here'
            saw bob '! line too long (the limit is 512 bytes): ignored' &&
                saw carol '<bob> still here' && ! grep -q '<bob> xxx' "$out/carol.out" &&
                ok "$what: a 600-byte line is refused with a message, the connection stays" ||
                { bad "$what: long line"; show "$out/bob.out"; }
            say carol '/quit see you'
            if saw carol '* Bye.' && hangup carol && saw bob '* carol has left (quit: see you)'; then
                ok "$what: carol's /quit: \"* Bye.\", the server closes, bob is told"
            else
                bad "$what: carol's /quit"; show "$out/carol.out"; show "$out/bob.out"
            fi
            say bob '/quit'
            saw bob '* Bye.' && hangup bob && ok "$what: bob's /quit closes his connection" ||
                bad "$what: bob's /quit did not close his connection"
        else
            bad "$what: join failed"; show "$out/bob.out"; show "$out/carol.out"
        fi
        hangup carol
        hangup bob
    else
        skip "nc against chat-server (netcat-openbsd)"
    fi

    if [ $have_twisted = 1 ]; then
        step "chat-server, two Twisted LineReceiver clients: join, talk, /me, /msg, /quit" 60 \
            "$py" "$here/twisted_chat.py" pair --port "$chat_port"
        if [ $have_nc = 1 ]; then
            what="chat-server, Twisted client -> nc client"
            client frank nc
            if join frank frank; then
                step "$what: Twisted alice joins, talks, quits (the server closes)" 60 \
                    "$py" "$here/twisted_chat.py" talk --port "$chat_port" --nick alice \
                    --say 'hello from twisted' --quit bye
                saw frank '<alice> hello from twisted' && saw frank '* alice has left (quit: bye)' &&
                    ok "$what: nc frank gets \"<alice> hello from twisted\" and her leaving" ||
                    { bad "$what: frank never got alice's line"; show "$out/frank.out"; }
                say frank '/quit'
                saw frank '* Bye.' && hangup frank && ok "$what: nc frank's /quit closes it" ||
                    bad "$what: nc frank's /quit did not close it"
            else
                bad "$what: nc frank could not join"; show "$out/frank.out"
            fi
            hangup frank
        fi
        if [ $have_socat = 1 ]; then
            what="chat-server, socat client -> Twisted client"
            start tlisten "$py" "$here/twisted_chat.py" listen --port "$chat_port" --nick grace \
                --expect '<heidi> hi from socat' --timeout 60
            tl=$bg
            client heidi socat
            if seen "$out/tlisten.log" joined && join heidi heidi; then
                say heidi 'hi from socat'
                if gone $tl 60 && [ $rc = 0 ]; then
                    ok "$what: Twisted grace gets \"<heidi> hi from socat\", quits, is closed"
                else
                    bad "$what: Twisted grace (exit $rc)"; show "$out/tlisten.log"
                fi
                saw heidi '* grace has left (quit)' ||
                    bad "$what: socat heidi was not told grace left"
                say heidi '/quit'
                # shellcheck disable=SC2154 # pid_heidi: set by client, through eval
                saw heidi '* Bye.' && gone "$pid_heidi" 10 &&
                    ok "$what: socat heidi's /quit closes it (socat exits at the server's close)" ||
                    bad "$what: socat heidi still running after /quit"
            else
                bad "$what: join failed"; show "$out/tlisten.log"; show "$out/heidi.out"
            fi
            hangup heidi
            kill -KILL $tl 2>/dev/null && wait $tl 2>/dev/null
        else
            skip "socat against chat-server (socat)"
        fi
    else
        skip "Twisted clients against chat-server (python3-twisted)"
    fi

    # Shutdown with a client still connected: it is told, and let go.
    signalled=
    if [ $have_nc = 1 ]; then
        client ivan nc
        if join ivan ivan; then
            kill -TERM $chat_pid
            signalled=yes
            saw ivan '* server shutting down: goodbye' && hangup ivan &&
                ok "chat-server SIGTERM with nc ivan connected: ivan is told goodbye and closed" ||
                { bad "chat-server SIGTERM: ivan not told, or not closed"; show "$out/ivan.out"; }
        else
            bad "nc ivan could not join"; show "$out/ivan.out"
        fi
        hangup ivan
    fi
    stop chat $chat_pid "chat-server" $signalled
fi

printf 'interop: %d passed, %d failed\n' "$passes" "$fails"
[ $fails = 0 ] || exit 1
