#!/usr/bin/env bash
# Builds a second httpd 2.4 release from source into a private prefix, so that the module built
# against the installed httpd's headers can be run in another release (issue 28: one build
# serves every 2.4 release it may meet).
#
# The source is Debian's own apache2 source package (deb-src, read through private apt lists:
# the machine's own sources stay as they are), the release closest to the installed one that is
# not the installed one, newer releases first. Only the upstream tarball is built (Debian's
# patches left out): that is httpd as its project releases it.
#
# Prints the prefix on its last line: $prefix/bin/httpd and $prefix/bin/apxs (wskit's HTTPD and
# WST_HTTPD_APXS; not APXS, with which build.rs would build the module against these headers)
# run the suites there. Built once per release: a finished prefix is reused. The installed
# release's sources are fetched beside the second's (target/second-httpd/src-<release>/).
# Usage: scripts/second-httpd.sh [version]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="$root/target/second-httpd"
mkdir -p "$work/apt/lists/partial" "$work/apt/parts"

# What the build needs, by Debian package name.
scripts/setup.sh --no-build gcc make libapr1-dev libaprutil1-dev libpcre2-dev libssl-dev \
    zlib1g-dev libnghttp2-dev >&2

installed=$(dpkg-query -W -f='${Version}' apache2-bin)
installed_upstream=${installed%%-*}
cat > "$work/apt/parts/src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports trixie trixie-updates sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/parts"
    -o "Dir::State::Lists=$work/apt/lists")

# Every apache2 source version on offer: "upstream-release debian-version" per line.
versions() {
    apt-cache "${apt_private[@]}" showsrc apache2 2>/dev/null | sed -n 's/^Version: //p' | sort -u |
        while read -r v; do
            up=${v%%-*}; up=${up#*:}
            echo "$up $v"
        done
}

pick() {
    # Every 2.4 source version on offer whose upstream release differs from the installed one;
    # the newer ones first (closest first), then the older ones (closest first).
    versions |
        while read -r up v; do
            case "$up" in 2.4.*) ;; *) continue ;; esac
            [ "$up" = "$installed_upstream" ] && continue
            if dpkg --compare-versions "$up" gt "$installed_upstream"; then
                echo "0 $up $v"
            else
                echo "1 $up $v"
            fi
        done | sort -k1,1n -k2,2V | awk '$1 == 0 { print; next } { old[++n] = $0 } END { for (i = n; i > 0; i--) print old[i] }'
}

want=${1:-}
prefix_of() { echo "$work/httpd-$1"; }

# Debian's source of `v` (upstream release `up`), upstream tarball unpacked in
# $work/src-$up/httpd-$up; false if the mirror does not have it.
fetch_source() {
    local v=$1 up=$2 src="$work/src-$2"
    [ -f "$src/httpd-$up/server/core.c" ] && return 0
    rm -rf "$src" && mkdir -p "$src" && chmod 755 "$src"
    (cd "$src" && apt-get "${apt_private[@]}" source --download-only -qq "apache2=$v" >/dev/null 2>&1) || return 1
    tar -C "$src" -xf "$(ls "$src"/apache2_"$up".orig.tar.* | grep -v '\.asc$' | head -1)"
}

[ -n "$(ls "$work/apt/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${apt_private[@]}" update -qq >&2
# The installed release's sources too, for tests/httpd_sources.rs, when the mirror has them (a
# security update's sources may be only on security.debian.org, which the machine may not reach).
while read -r up v; do
    [ "$up" = "$installed_upstream" ] && fetch_source "$v" "$up" && break
done < <(versions)
[ -f "$work/src-$installed_upstream/httpd-$installed_upstream/server/core.c" ] ||
    echo "second-httpd: the installed release's sources ($installed_upstream) are not on this mirror" >&2

# The first candidate whose files the mirror still has (an index may name a version the pool
# no longer holds).
found=""
while read -r _ up v; do
    [ -n "$want" ] && [ "$up" != "$want" ] && continue
    prefix=$(prefix_of "$up")
    if [ -x "$prefix/bin/httpd" ] && [ -x "$prefix/bin/apxs" ] && [ -f "$work/src-$up/httpd-$up/server/core.c" ]; then
        echo "$prefix"
        exit 0
    fi
    if fetch_source "$v" "$up"; then
        found=$v
        break
    fi
    echo "second-httpd: apache2 $v is listed but not downloadable; trying the next" >&2
done < <(pick)
[ -n "$found" ] || { echo "second-httpd: no apache2 2.4 source besides $installed_upstream could be fetched" >&2; exit 1; }
echo "second-httpd: building httpd $up (Debian source $found; installed: $installed_upstream) into $prefix" >&2
rm -rf "$prefix"
cd "$work/src-$up/httpd-$up"
# The modules the suites load (httpd-test-conf/), shared, and those Debian links into httpd
# itself (the suites' configurations never load them), static; every MPM.
mods="authz_core authz_host headers rewrite proxy proxy_http proxy_wstunnel slotmem_shm
      proxy_balancer lbmethod_byrequests status ssl socache_shmcb http2 proxy_http2 mime dir
      alias setenvif env filter reqtimeout remoteip"
static="unixd logio watchdog version log_config"
./configure -q --prefix="$prefix" --with-apr="$(command -v apr-1-config)" \
    --with-apr-util="$(command -v apu-1-config)" --with-pcre="$(command -v pcre2-config)" \
    --enable-mpms-shared=all --enable-modules=none --enable-mods-shared="$(echo $mods)" \
    --enable-mods-static="$static" \
    >"$work/configure-$up.log" 2>&1 || { tail -30 "$work/configure-$up.log" >&2; exit 1; }
make -s -j"$(nproc)" >"$work/make-$up.log" 2>&1 || { tail -40 "$work/make-$up.log" >&2; exit 1; }
make -s install >>"$work/make-$up.log" 2>&1 || { tail -40 "$work/make-$up.log" >&2; exit 1; }
echo "$prefix"
