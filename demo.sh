#!/usr/bin/env bash
# The demo: a private httpd on loopback with this module loaded and configured with the
# manual's first example, a real WebSocket echo backend behind it, and a visible round trip.
# It prints the URL to try (a browser page is served too) and runs until Ctrl-C.
# Pass --once to exit after the round trip.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec target/release/wst-demo "$@"
