#!/usr/bin/env bash
# The whole test suite: unit tests of the pure logic, then integration tests that start real
# httpd servers (event MPM) with the freshly built module, a real WebSocket backend and real
# clients; then the whole integration suite again under the worker and prefork MPMs, the
# Apache::Test suite under all three, and a short run of every fuzz target. The suites of the
# asynchronous tunnels and their access-log records run again in a second httpd 2.4 release
# built from source (issue 28: one build serves every 2.4 release it may meet). rustfmt and clippy
# check the sources first (tests/layering.rs checks what it cannot: where `unsafe` and `ffi::` may be).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
echo "== rustfmt (rustfmt.toml: max_width 100)"
rustfmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all --check
(cd fuzz && cargo fmt --check)
echo "== clippy on the module, its tests and the test kit, every feature (warnings are errors)"
cargo clippy --release --workspace --all-targets --all-features -- -D warnings
echo "== a second httpd 2.4 release, built from Debian's source of it (scripts/second-httpd.sh)"
second=$(scripts/second-httpd.sh | tail -1)
cargo test --release --workspace -- --test-threads="${WST_TEST_THREADS:-4}"
release=$("$second/bin/httpd" -v | sed -n 's|^Server version: Apache/\([0-9.]*\).*|\1|p')
echo "== the module built against the installed httpd's headers, in httpd $release ($second)"
HTTPD="$second/bin/httpd" WST_HTTPD_APXS="$second/bin/apxs" WST_HTTPD_RELEASE="$release" \
    cargo test --release --test access_log --test async_tunnels --test tls_async --test drain \
    --test panic_probe -- --test-threads="${WST_TEST_THREADS:-4}"
for mpm in worker prefork; do
    echo "== integration suite under the $mpm MPM"
    WST_MPM=$mpm cargo test --release --tests -- --test-threads="${WST_TEST_THREADS:-4}"
done
for mpm in event worker prefork; do
    echo "== Apache::Test suite (tests/apache-test) under the $mpm MPM"
    WST_MPM=$mpm tests/apache-test/run.sh
done
echo "== fuzzing: every cargo-fuzz target for ${WST_FUZZ_SECS:-20}s"
scripts/fuzz.sh "${WST_FUZZ_SECS:-20}"
echo "== all tests passed"
