#!/usr/bin/env bash
# tests/examples/run.sh DIR -- the examples, end to end, built with ASan+UBSan
# in DIR: echo-server answers echo-client, and on SIGTERM with a connection
# still open it stops listening, closes, frees everything and exits 0 with no
# leak report; reactor-demo stops on SIGINT and exits 0; two clients talk
# through chat-server, which tells them goodbye on SIGTERM; portforward relays
# echo-client to echo-server; threads, dict-service, spawn and stdio-echo run
# to their documented exit status.
set -u
dir=$1
fails=0
ok() { printf 'PASS  example: %s\n' "$1"; }
bad() { printf 'FAIL  example: %s\n' "$1"; fails=$((fails + 1)); }
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$dir/echo-server" tcp:0:interface=127.0.0.1 >"$out/server.log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$out/server.log")
    [ -n "$port" ] && break
    sleep 0.05
done
if [ -z "$port" ]; then
    bad "echo-server did not start: $(cat "$out/server.log")"
    kill "$server" 2>/dev/null
    exit 1
fi
got=$(timeout 10 "$dir/echo-client" "tcp:host=127.0.0.1:port=$port" hello twine 2>&1)
[ "$got" = "$(printf 'hello\ntwine')" ] && ok "echo-client gets its lines back" ||
    bad "echo-client got '$got'"
exec 3<>"/dev/tcp/127.0.0.1/$port"           # a connection left open at shutdown
printf 'pending\n' >&3
sleep 0.2
kill -TERM "$server"
if timeout 10 tail --pid="$server" -f /dev/null; then
    wait "$server"; rc=$?
    if [ $rc = 0 ] && ! grep -q 'Sanitizer' "$out/server.log"; then
        ok "echo-server stops on SIGTERM with a connection open: exit 0, no leaks"
    else
        bad "echo-server exit $rc: $(tail -n 20 "$out/server.log")"
    fi
else
    bad "echo-server did not stop within 10 s of SIGTERM"
    kill -KILL "$server" 2>/dev/null
fi
exec 3>&-

"$dir/reactor-demo" >"$out/demo.log" 2>&1 &
demo=$!
sleep 1.2
kill -INT "$demo"
if timeout 10 tail --pid="$demo" -f /dev/null; then
    wait "$demo"; rc=$?
    [ $rc = 0 ] && grep -q '^stopped after' "$out/demo.log" &&
        ! grep -q 'Sanitizer' "$out/demo.log" &&
        ok "reactor-demo stops on SIGINT: exit 0, no leaks" ||
        bad "reactor-demo exit $rc: $(tail -n 20 "$out/demo.log")"
else
    bad "reactor-demo did not stop within 10 s of SIGINT"
    kill -KILL "$demo" 2>/dev/null
fi

# A daemon's port, from its "(port N)" line; empty if it did not start.
port_of() {
    local log=$1 p=""
    for _ in $(seq 100); do
        p=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$log")
        [ -n "$p" ] && break
        sleep 0.05
    done
    printf '%s' "$p"
}

# Read lines from fd $1 until one equals $2 (at most 5 s).
expect_line() {
    local line
    while IFS= read -r -t 5 -u "$1" line; do
        [ "${line%$'\r'}" = "$2" ] && return 0
    done
    return 1
}

# Stop daemon $1 with SIGTERM; it must exit 0 without a sanitizer report.
stops_cleanly() {
    local pid=$1 log=$2 what=$3 rc
    kill -TERM "$pid"
    if timeout 10 tail --pid="$pid" -f /dev/null; then
        wait "$pid"; rc=$?
        if [ $rc = 0 ] && ! grep -q 'Sanitizer' "$log"; then
            ok "$what"
        else
            bad "$what: exit $rc: $(tail -n 20 "$log")"
        fi
    else
        bad "$what: did not stop within 10 s of SIGTERM"
        kill -KILL "$pid" 2>/dev/null
    fi
}

"$dir/chat-server" tcp:0:interface=127.0.0.1 >"$out/chat.log" 2>&1 &
chat=$!
port=$(port_of "$out/chat.log")
if [ -z "$port" ]; then
    bad "chat-server did not start: $(cat "$out/chat.log")"
    kill "$chat" 2>/dev/null
else
    exec 4<>"/dev/tcp/127.0.0.1/$port" 5<>"/dev/tcp/127.0.0.1/$port"
    printf 'alice\r\n' >&4
    expect_line 4 "* Hello alice. Type /help for the commands." &&
        printf 'bob\n' >&5 &&
        expect_line 5 "* Hello bob. Type /help for the commands." &&
        expect_line 4 "* bob has joined" &&
        printf 'hi bob\n' >&4 && expect_line 5 "<alice> hi bob" &&
        printf '/msg alice psst\n' >&5 && expect_line 4 "*bob* psst" &&
        ok "chat-server: two clients join and talk" ||
        bad "chat-server: the conversation went wrong: $(tail -n 5 "$out/chat.log")"
    kill -TERM "$chat"
    expect_line 5 "* server shutting down: goodbye" &&
        ok "chat-server tells its clients goodbye on SIGTERM" ||
        bad "chat-server: no goodbye"
    exec 4>&- 5>&-
    if timeout 10 tail --pid="$chat" -f /dev/null; then
        wait "$chat"; rc=$?
        [ $rc = 0 ] && ! grep -q 'Sanitizer' "$out/chat.log" &&
            ok "chat-server stops on SIGTERM: exit 0, no leaks" ||
            bad "chat-server exit $rc: $(tail -n 20 "$out/chat.log")"
    else
        bad "chat-server did not stop within 10 s of SIGTERM"
        kill -KILL "$chat" 2>/dev/null
    fi
fi

"$dir/echo-server" tcp:0:interface=127.0.0.1 >"$out/echo2.log" 2>&1 &
echo2=$!
port=$(port_of "$out/echo2.log")
"$dir/portforward" "unix:$out/fw.sock" "tcp:host=127.0.0.1:port=$port" >"$out/fw.log" 2>&1 &
fw=$!
for _ in $(seq 100); do [ -S "$out/fw.sock" ] && break; sleep 0.05; done
got=$(timeout 10 "$dir/echo-client" "unix:$out/fw.sock" hello forwarder 2>&1)
[ "$got" = "$(printf 'hello\nforwarder')" ] && ok "portforward relays echo-client to echo-server" ||
    bad "portforward: echo-client got '$got': $(tail -n 5 "$out/fw.log")"
stops_cleanly "$fw" "$out/fw.log" "portforward stops on SIGTERM: exit 0, no leaks"
stops_cleanly "$echo2" "$out/echo2.log" "echo-server behind it stops too"

if timeout 60 "$dir/threads" >"$out/threads.log" 2>&1 && ! grep -q 'Sanitizer' "$out/threads.log"; then
    ok "threads: CPU work in the pool while the loop serves, exit 0"
else
    bad "threads: $(tail -n 20 "$out/threads.log")"
fi
if timeout 60 "$dir/dict-service" >"$out/dict.log" 2>&1 && ! grep -q 'Sanitizer' "$out/dict.log"; then
    ok "dict-service: one thread owns the table, exit 0"
else
    bad "dict-service: $(tail -n 20 "$out/dict.log")"
fi

timeout 20 "$dir/spawn" /bin/sh -c 'echo hi; echo oops >&2; exit 3' >"$out/spawn.log" 2>&1
rc=$?
[ $rc = 3 ] && grep -qx 'out| hi' "$out/spawn.log" && grep -qx 'err| oops' "$out/spawn.log" &&
    ! grep -q 'Sanitizer' "$out/spawn.log" &&
    ok "spawn: streams a child's output and passes its exit code on" ||
    bad "spawn: exit $rc: $(cat "$out/spawn.log")"
timeout 20 "$dir/spawn" /no/such/program >"$out/spawn2.log" 2>&1
rc=$?
[ $rc = 127 ] && grep -q 'exec /no/such/program: No such file or directory' "$out/spawn2.log" &&
    ok "spawn: a missing program is reported as ENOENT" ||
    bad "spawn /no/such/program: exit $rc: $(cat "$out/spawn2.log")"

got=$(printf 'abc\nHello, World\n' | timeout 20 "$dir/stdio-echo" 2>"$out/stdio.log")
rc=$?
[ $rc = 0 ] && [ "$got" = "$(printf 'ABC\nHELLO, WORLD')" ] && ! grep -q 'Sanitizer' "$out/stdio.log" &&
    ok "stdio-echo: standard input and output as a transport" ||
    bad "stdio-echo: exit $rc, got '$got': $(cat "$out/stdio.log")"

[ $fails = 0 ] || exit 1
