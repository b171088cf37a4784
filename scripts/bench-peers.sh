#!/usr/bin/env bash
# Installs the benchmark's peers, nginx and HAProxy, from Debian's packages, so that
# wst-bench measures them beside httpd. wst-bench starts each on its own configuration, port and
# directory; their system services are never used, so none is started by the install: while it
# runs, a policy-rc.d that refuses service starts is put in place (unless the machine has one).
# Usage: scripts/bench-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/bench-peers.sh: no service starts while it installs\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    ours=1
fi
trap '[ $ours -eq 0 ] || $SUDO rm -f "$policy"' EXIT
scripts/setup.sh --no-build nginx haproxy
