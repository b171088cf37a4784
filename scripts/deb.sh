#!/usr/bin/env bash
# Builds the Debian package from the tree: target/debian/mod-proxy-wstunnel-rs_<version>_<arch>.deb
# (debian/: debhelper, dpkg-divert of apache2-bin's mod_proxy_wstunnel.so). Offline: the
# crates come from cargo's cache (scripts/setup.sh fetched them).
#   sudo apt-get install ./target/debian/mod-proxy-wstunnel-rs_*.deb && sudo a2enmod proxy_wstunnel
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
cargo fetch --quiet
# debhelper points HOME at a scratch directory: keep cargo's and rustup's own.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
dpkg-checkbuilddeps
mkdir -p target/debian
rm -f target/debian/mod-proxy-wstunnel-rs_*.deb
if [ "$(id -u)" -eq 0 ]; then debian/rules binary; else fakeroot debian/rules binary; fi
rm -rf debian/mod-proxy-wstunnel-rs debian/.debhelper debian/debhelper-build-stamp debian/files \
       debian/*.substvars debian/*.debhelper.log
ls target/debian/mod-proxy-wstunnel-rs_*.deb
