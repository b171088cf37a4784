#!/usr/bin/env bash
# Runs the Apache::Test suite (tests/apache-test/t/*.t) the way httpd's own suite is run,
# `t/TEST -apxs ... -httpd ...`, with our freshly built module loaded in place of the stock
# mod_proxy_wstunnel, on a free port (-port select), under $WST_MPM (default event).
# Apache::Test refuses to run as root; as root, the suite runs as an unprivileged user
# (wsttest, created when missing) in a copy of the suite it owns. Extra arguments go to t/TEST.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
module=${WSTUNNEL_SO:-$root/target/release/libmod_proxy_wstunnel.so}
backends=$root/target/release/wst-backends
apxs=${APXS:-$(command -v apxs)}
httpd=${HTTPD:-/usr/sbin/apache2}
mpm=${WST_MPM:-event}
moddir=$("$apxs" -q LIBEXECDIR)
for f in "$module" "$backends"; do
    [ -e "$f" ] || { echo "apache-test: $f is missing: build first (cargo build --release --workspace)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/wst-apache-test.XXXXXX")
cp -r "$here/t" "$work/t"
mkdir -p "$work/t/conf"
cp "$root/httpd-test-conf/apache-test/extra.conf.in" "$work/t/conf/extra.conf.in"
cp "$module" "$work/mod_proxy_wstunnel.so"
cp "$backends" "$work/wst-backends"
sed -e "s|@MPM@|$mpm|g" -e "s|@MODDIR@|$moddir|g" -e "s|@WSTUNNEL@|$work/mod_proxy_wstunnel.so|g" \
    "$root/httpd-test-conf/apache-test/modules.conf.in" > "$work/modules.conf"

as_user=()
if [ "$(id -u)" -eq 0 ]; then
    id wsttest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin wsttest
    chown -R wsttest "$work"
    chmod 755 "$work"
    as_user=(runuser -u wsttest --)
fi

cd "$work"
status=0
"${as_user[@]}" env WST_BACKENDS_BIN="$work/wst-backends" HOME="$work" \
    perl t/TEST -apxs "$apxs" -httpd "$httpd" -httpd_conf "$work/modules.conf" -port select "$@" || status=$?
log=t/logs/error_log
if [ -f "$log" ] && grep -E "Segmentation fault|exit signal|WST00001|panicked" "$log"; then
    echo "apache-test: crash or panic in $work/$log" >&2
    status=1
fi
if [ $status -ne 0 ]; then
    echo "apache-test: FAILED (status $status); last lines of $work/$log:" >&2
    tail -n 40 "$log" >&2 || true
    exit $status
fi
[ -n "${WST_KEEP:-}" ] && echo "apache-test: kept $work" || rm -rf "$work"
