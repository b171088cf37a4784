#!/usr/bin/env bash
# Installs the module into the httpd that `apxs` (or $APXS) describes, as
# mod_proxy_wstunnel.so in its module directory, the way `apxs -i` installs any module: for
# httpds built from source or packaged without dpkg. It OVERWRITES the stock
# mod_proxy_wstunnel.so there (kept next to it as mod_proxy_wstunnel.so.stock). On Debian use
# the package instead (scripts/deb.sh): a file overwritten here belongs to apache2-bin, and
# its next upgrade or reinstall silently puts the stock module back.
# DESTDIR is honoured for staged installs. On Debian, `a2enmod proxy_wstunnel` then works
# with the proxy_wstunnel.load/.conf shipped here (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
APXS=${APXS:-$(command -v apxs || command -v apxs2)}
libexec=$("$APXS" -q LIBEXECDIR)
sysconf=$("$APXS" -q SYSCONFDIR)
dest="${DESTDIR:-}$libexec"
[ -f target/release/libmod_proxy_wstunnel.so ] || cargo build --release
if [ -z "${DESTDIR:-}" ] && command -v dpkg >/dev/null 2>&1 \
   && owner=$(dpkg -S "$libexec/mod_proxy_wstunnel.so" 2>/dev/null); then
    echo "warning: $libexec/mod_proxy_wstunnel.so belongs to ${owner%%:*}; its next upgrade will put the stock module back." >&2
    echo "warning: on Debian, install the package instead: scripts/deb.sh, then apt-get install ./target/debian/*.deb" >&2
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp target/release/libmod_proxy_wstunnel.so "$stage/mod_proxy_wstunnel.so"
mkdir -p "$dest"
if [ -f "$dest/mod_proxy_wstunnel.so" ] && [ ! -f "$dest/mod_proxy_wstunnel.so.stock" ] \
   && ! nm -D --defined-only "$dest/mod_proxy_wstunnel.so" | grep -q wst_rs_handler; then
    cp -p "$dest/mod_proxy_wstunnel.so" "$dest/mod_proxy_wstunnel.so.stock"
    echo "kept the stock module as $dest/mod_proxy_wstunnel.so.stock"
fi
"$APXS" -i -S LIBEXECDIR="$dest" -n proxy_wstunnel "$stage/mod_proxy_wstunnel.so"
# Debian layout: mods-available/proxy_wstunnel.{load,conf} for a2enmod.
if [ -n "${DESTDIR:-}" ] || [ -d "$sysconf/mods-available" ]; then
    avail="${DESTDIR:-}$sysconf/mods-available"
    mkdir -p "$avail"
    [ -f "$avail/proxy_wstunnel.load" ] || sed "s|@LIBEXECDIR@|$libexec|" apxs/proxy_wstunnel.load.in > "$avail/proxy_wstunnel.load"
    [ -f "$avail/proxy_wstunnel.conf" ] || cp apxs/proxy_wstunnel.conf "$avail/proxy_wstunnel.conf"
fi
echo "installed $dest/mod_proxy_wstunnel.so (overwrote what was there)"
