#!/bin/sh
# run.sh CC RELDIR "BACKENDS" DEFAULT -- prove link-time backend selection.
#
# The same program is linked with each libtwine-<backend>, statically and
# against the shared libraries, and must report that backend.  A bare -ltwine
# must fail to link naming the missing backend symbol.  After a staged
# `make install`, `pkg-config --libs twine` must end with the default backend
# and `pkg-config --libs twine-<backend>` must select that one.
set -u
cc=$1 rel=$2 backends=$3 default=$4
src=tests/link/backend_name.c
out=$rel/linktest
rm -rf "$out" && mkdir -p "$out"
fails=0
ok() { printf 'PASS  link: %s\n' "$1"; }
bad() { printf 'FAIL  link: %s\n' "$1"; fails=$((fails + 1)); }
expect() { # expect NAME WANT PROGRAM [ENV...]
    name=$1 want=$2; shift 2
    got=$(env "$@" 2>&1)
    [ "$got" = "$want" ] && ok "$name -> $got" || bad "$name: wanted $want, got '$got'"
}

for b in $backends default; do
    want=$b; [ $b = default ] && want=$default
    # static: the archives, exactly as a user would name them
    if $cc -Icore -Itransports -Iprotocols -o "$out/static-$b" $src -L"$rel/lib" -Wl,-Bstatic -ltwine -ltwine-$b \
        -Wl,-Bdynamic -pthread -lm 2>"$out/static-$b.log"; then
        expect "static -ltwine -ltwine-$b" "$want" "$out/static-$b"
    else bad "static -ltwine -ltwine-$b did not link: $(head -c 300 "$out/static-$b.log")"; fi
    # shared: libtwine.so plus libtwine-<b>.so (also with --as-needed)
    for asn in "" "-Wl,--as-needed"; do
        if $cc -Icore -Itransports -Iprotocols -o "$out/shared-$b" $src -L"$rel/lib" $asn -ltwine -ltwine-$b \
            -pthread 2>"$out/shared-$b.log"; then
            expect "shared $asn -ltwine -ltwine-$b" "$want" LD_LIBRARY_PATH="$rel/lib" \
                "$out/shared-$b"
        else bad "shared $asn -ltwine -ltwine-$b did not link: $(head -c 300 "$out/shared-$b.log")"; fi
    done
done

# A backend named before the default on the line wins (static archives).
if $cc -Icore -Itransports -Iprotocols -o "$out/order" $src -L"$rel/lib" -Wl,-Bstatic -ltwine -ltwine-poll \
    -ltwine-default -Wl,-Bdynamic -pthread -lm 2>"$out/order.log"; then
    expect "static -ltwine -ltwine-poll -ltwine-default" poll "$out/order"
else bad "-ltwine -ltwine-poll -ltwine-default did not link"; fi

# A bare -ltwine must not link, and the error must name the backend symbol.
for kind in static shared; do
    [ $kind = static ] && flags="-Wl,-Bstatic -ltwine -Wl,-Bdynamic" || flags="-ltwine"
    if $cc -Icore -Itransports -Iprotocols -o "$out/bare" $src -L"$rel/lib" $flags -pthread -lm >"$out/bare.log" 2>&1; then
        bad "bare -ltwine ($kind) linked, but it must fail"
    elif grep -q 'tw__backend' "$out/bare.log"; then
        ok "bare -ltwine ($kind) fails: $(grep -m1 -o 'undefined reference to .tw__backend.' "$out/bare.log")"
    else bad "bare -ltwine ($kind) failed without naming tw__backend"; fi
done

# pkg-config, from a staged install.
stage=$(pwd)/$out/stage
make --no-print-directory -s install PREFIX="$stage" >"$out/install.log" 2>&1 ||
    bad "staged make install failed"
export PKG_CONFIG_PATH="$stage/lib/pkgconfig"
libs=$(pkg-config --libs twine | sed "s/ *$//")
case $libs in
*-ltwine-default) ok "pkg-config --libs twine = '$libs'" ;;
*) bad "pkg-config --libs twine = '$libs' does not end with -ltwine-default" ;;
esac
for b in default $backends; do
    pc=twine-$b; [ $b = default ] && pc=twine
    want=$b; [ $b = default ] && want=$default
    if $cc -o "$out/pc-$b" $src $(pkg-config --cflags --libs $pc) 2>"$out/pc-$b.log"; then
        expect "cc \$(pkg-config --cflags --libs $pc)" "$want" LD_LIBRARY_PATH="$stage/lib" \
            "$out/pc-$b"
    else bad "pkg-config $pc link failed: $(head -c 300 "$out/pc-$b.log")"; fi
    if $cc -o "$out/pcs-$b" $src $(pkg-config --cflags $pc) -L"$stage/lib" -Wl,-Bstatic \
        $(pkg-config --libs-only-l $pc) -Wl,-Bdynamic $(pkg-config --static --libs-only-other $pc) \
        -pthread -lm 2>"$out/pcs-$b.log"; then
        expect "static via pkg-config $pc" "$want" "$out/pcs-$b"
    else bad "static pkg-config $pc link failed: $(head -c 300 "$out/pcs-$b.log")"; fi
done
# the installed headers are flattened into include/twine
[ -f "$stage/include/twine/twine.h" ] && [ -f "$stage/include/twine/tw_reactor.h" ] &&
    [ ! -f "$stage/include/twine/internal.h" ] && ok "headers installed flat, private ones not" ||
    bad "installed header layout"
[ -L "$stage/lib/libtwine.so.0" ] && ok "versioned soname libtwine.so.0" || bad "soname link"
[ $fails = 0 ] || { echo "twine: $fails link checks failed" >&2; exit 1; }
