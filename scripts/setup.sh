#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine, then builds.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || need+=(apache2)
command -v apxs >/dev/null 2>&1 || need+=(apache2-dev)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The Apache::Test suite (Perl, as httpd's own) and its WebSocket client.
perl -MApache::Test -e1 >/dev/null 2>&1 || need+=(libapache2-mod-perl2)
perl -MAnyEvent::WebSocket::Client -e1 >/dev/null 2>&1 || need+=(libanyevent-websocket-client-perl)
# The browser test (headless Chromium).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required" >&2; exit 1; }
# Debian's apache2 package starts its system service on install; we never use it, and our
# tests pick free ports, so it is left alone.
cargo build --release --workspace
