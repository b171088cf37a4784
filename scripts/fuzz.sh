#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time each, starting from the
# seed inputs in fuzz/seeds/<target>; new inputs go to fuzz/corpus/<target> (not committed),
# crashes to fuzz/artifacts/<target>. Usage: scripts/fuzz.sh [seconds per target, default 30]
# cargo-fuzz needs nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain,
# the only one on these machines, accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in $(ls fuzz/fuzz_targets | sed 's/\.rs$//'); do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${secs}s"
    log="fuzz/target/$t.log"
    mkdir -p fuzz/target
    status=0
    (cd fuzz && cargo fuzz run --release "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1) \
        >"$log" 2>&1 || status=$?
    grep -E "^(Done|stat::number_of_executed_units|SUMMARY)|panicked|ERROR" "$log" || true
    if [ $status -ne 0 ]; then
        tail -n 40 "$log"
        echo "fuzz: $t failed (status $status); the input is in fuzz/artifacts/$t"
        exit 1
    fi
done
