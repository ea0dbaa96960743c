#!/bin/sh
# Run every cargo-fuzz target in fuzz/fuzz_targets for $1 seconds each
# (default 60), seeded from its committed corpus (fuzz/corpus/<target>);
# new inputs go to fuzz/work/<target> (not committed: minimise with
# `cargo fuzz cmin` before adding any to the corpus).
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
set -eu

seconds="${1:-60}"
case "$seconds" in
    ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../fuzz"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz
fi

status=0
for src in fuzz_targets/*.rs; do
    target="$(basename "$src" .rs)"
    mkdir -p "corpus/$target" "work/$target"
    echo "fuzz.sh: $target for ${seconds}s" >&2
    # A crash leaves its input in artifacts/$target/; keep going so every
    # target runs, and fail at the end.
    if ! cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=16384; then
        echo "fuzz.sh: $target FAILED (see fuzz/artifacts/$target/)" >&2
        status=1
    fi
done
exit "$status"
