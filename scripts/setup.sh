#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine, then builds.
# Each Debian package is checked by its name in dpkg's database (never by guessing from files:
# a stock image ships libclang-cpp14, which is not the libclang bindgen needs); what is missing
# is installed in one apt-get call. Idempotent: nothing is reinstalled.
# Usage: scripts/setup.sh [--no-build] [extra-package ...]
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
extra=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        *) extra+=("$a") ;;
    esac
done

packages=(
    apache2 apache2-dev         # httpd itself, apxs and the headers the bindings are generated from
    libclang-dev                # bindgen's libclang
    pkg-config
    libapache2-mod-perl2        # the Apache::Test suite (Perl, as httpd's own)
    libanyevent-websocket-client-perl   # its WebSocket client
    chromium                    # the browser test (headless)
    dpkg-dev debhelper          # scripts/deb.sh: the Debian package
    iproute2                    # tests/frame_rules.rs: a client cut off inside a network namespace
)
packages+=("${extra[@]}")

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

need=()
for p in "${packages[@]}"; do
    installed "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Debian's apache2 package starts its system service on install; we never use it (tests
    # start their own httpd on free loopback ports), so policy-rc.d is left as it is.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required" >&2; exit 1; }
if [ $build -eq 1 ]; then
    cargo build --release --workspace
fi
