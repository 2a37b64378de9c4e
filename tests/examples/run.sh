#!/usr/bin/env bash
# tests/examples/run.sh DIR -- the example daemons, end to end, built with
# ASan+UBSan in DIR: echo-server answers echo-client, and on SIGTERM with a
# connection still open it stops listening, closes, frees everything and exits
# 0 with no leak report; reactor-demo stops on SIGINT and exits 0.
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
[ $fails = 0 ] || exit 1
