#!/usr/bin/env bash
# The whole test suite: unit tests of the pure logic, then integration tests that start real
# httpd servers (event MPM) with the freshly built module, a real WebSocket backend and real
# clients; then the whole integration suite again under the worker and prefork MPMs, the
# Apache::Test suite under all three, and a short run of every fuzz target. rustfmt and clippy
# check the sources first (tests/layering.rs checks what it cannot: where `unsafe` and `ffi::` may be).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
echo "== rustfmt (rustfmt.toml: max_width 100)"
rustfmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all --check
(cd fuzz && cargo fmt --check)
echo "== clippy on the module (warnings are errors)"
cargo clippy --release --lib -- -D warnings
cargo test --release --workspace -- --test-threads="${WST_TEST_THREADS:-4}"
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
