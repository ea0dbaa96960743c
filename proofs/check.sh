#!/usr/bin/env bash
# Model-checks every Promela model in proofs/ with spin. Each correct model
# must pass each of its properties, and each seeded-bug variant must FAIL the
# property it breaks: a bug variant that passes means the check has lost its
# teeth, and this script fails. Run from anywhere; needs spin and a C compiler
# (scripts/setup.sh installs spin). Used by `make proofs` (part of `make test`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
command -v spin >/dev/null || { echo "proofs: spin not found (run scripts/setup.sh)" >&2; exit 1; }
CC="${CC:-cc}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# model | extra spin defines | property ("safety" = assertions + deadlocks,
# otherwise an ltl claim, checked under weak fairness) | expected: pass/fail
runs=(
    "ring/ring.pml||safety|pass"
    "ring/ring.pml||no_lost_wakeup|pass"
    "ring/ring.pml||all_delivered|pass"
    "ring/ring.pml|-DNITEMS=8 -DCAP=3|safety|pass"
    "ring/ring.pml|-DNITEMS=8 -DCAP=3|no_lost_wakeup|pass"
    "ring/ring.pml|-DNITEMS=8 -DCAP=3|all_delivered|pass"
    "ring/ring.pml|-DBUG_NO_RECHECK|no_lost_wakeup|fail"
    "ring/ring.pml|-DBUG_CHECK_FIRST|no_lost_wakeup|fail"
    "ring/ring.pml|-DBUG_NO_FENCE|no_lost_wakeup|fail"
    "notification/notification.pml||safety|pass"
    "notification/notification.pml||no_lost_signal|pass"
    "notification/notification.pml|-DSIGNALS=4|no_lost_signal|pass"
    "notification/notification.pml|-DBUG_UNCHECKED_SLEEP|no_lost_signal|fail"
)

status=0
n=0
for run in "${runs[@]}"; do
    IFS='|' read -r model defs prop expect <<<"$run"
    n=$((n + 1))
    dir="$work/$n"
    mkdir -p "$dir"
    cp "$here/$model" "$dir/"
    # shellcheck disable=SC2086 # $defs is a list of -D flags
    (cd "$dir" && spin $defs -a "$(basename "$model")" >spin.log 2>&1) || {
        echo "FAIL  $model $defs [$prop]: spin -a failed:" >&2
        cat "$dir/spin.log" >&2
        status=1
        continue
    }
    if [ "$prop" = safety ]; then
        (cd "$dir" && "$CC" -O2 -DSAFETY -DNOCLAIM -o pan pan.c && ./pan -m1000000) >"$dir/pan.log" 2>&1 || true
    else
        (cd "$dir" && "$CC" -O2 -o pan pan.c && ./pan -a -f -m1000000 -N "$prop") >"$dir/pan.log" 2>&1 || true
    fi
    log="$dir/pan.log"
    errors="$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | head -n1)"
    states="$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | head -n1)"
    secs="$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\) seconds.*/\1/p' "$log" | head -n1)"
    if grep -q 'max search depth too small' "$log"; then
        errors="${errors:-?} (search truncated)"
    fi
    case "$expect:$errors" in
        pass:0) verdict="ok   " ;;
        fail:[1-9]*) verdict="ok   " ;;
        *) verdict="FAIL "; status=1 ;;
    esac
    what="passes"
    [ "$errors" = 0 ] || what="fails (errors: $errors)"
    printf '%s %-30s %-22s %-16s %s, expected to %s; %s states, %ss\n' \
        "$verdict" "$model" "${defs:-(as written)}" "[$prop]" "$what" "$expect" "${states:-?}" "${secs:-?}"
    if [ "$verdict" = "FAIL " ]; then
        sed 's/^/    pan: /' "$log" | head -n 40 >&2
    fi
done

if [ "$status" -ne 0 ]; then
    echo "proofs: FAILED" >&2
else
    echo "proofs: all $n runs as expected (correct models pass, seeded bugs are caught)"
fi
exit "$status"
