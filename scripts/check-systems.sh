#!/usr/bin/env bash
# Check every .system file under system/ against its board(s) with the
# `bulkhead check` command, and that the files `bulkhead compose` generates
# from system/automotive/automotive.toml are up to date.
#
#   scripts/check-systems.sh path/to/bulkhead     (make check-systems)
#
# system/automotive/<board>.system is checked against <board>;
# system/examples/*.system against every board; each under the debug and
# smp-debug configs. Any other .system file is
# an error (nobody would know which board it is for). Every file is checked
# even after a failure; the script exits non-zero if any check failed.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 path/to/bulkhead" >&2
    exit 2
fi
bulkhead=$1
case $bulkhead in
    /*) ;;
    *) bulkhead="$PWD/$bulkhead" ;;
esac
if [ ! -x "$bulkhead" ]; then
    echo "check-systems: $bulkhead is not an executable (build it: cargo build --release -p bulkhead)" >&2
    exit 2
fi

cd "$(dirname "$0")/.."

# Mirrors BOARDS in board-support/boards/src/lib.rs.
boards="qemu_virt_aarch64 imx8mp_evk imx8mm_evk host"

failed=()
checked=0

# Every file must hold for the single-core and the SMP kernel configs
# (cores, `cpu` attributes and `<domains>` differ between them).
configs="debug smp-debug"

check() { # file board
    local config
    for config in $configs; do
        checked=$((checked + 1))
        if ! "$bulkhead" check "$1" --board "$2" --config "$config"; then
            failed+=("$1 --board $2 --config $config")
        fi
    done
}

while IFS= read -r file; do
    case $file in
        system/automotive/*.system)
            board=$(basename "$file" .system)
            if [[ " $boards " == *" $board "* ]]; then
                check "$file" "$board"
            else
                echo "check-systems: $file: no board named '$board'" >&2
                failed+=("$file (unknown board)")
            fi
            ;;
        system/examples/*.system)
            for board in $boards; do
                check "$file" "$board"
            done
            ;;
        *)
            echo "check-systems: $file: not under system/automotive/ or system/examples/, so no board to check it against" >&2
            failed+=("$file (no board)")
            ;;
    esac
done < <(find system -name '*.system' -type f | LC_ALL=C sort)

if [ "$checked" -eq 0 ]; then
    echo "check-systems: no .system files found under system/" >&2
    exit 1
fi

# The automotive files are generated from their description; a committed
# file that differs from what compose writes now is stale.
if ! "$bulkhead" compose system/automotive/automotive.toml -o system/automotive --check; then
    failed+=("system/automotive/ is stale: run bulkhead compose system/automotive/automotive.toml -o system/automotive")
fi

if [ ${#failed[@]} -ne 0 ]; then
    echo >&2
    echo "check-systems: ${#failed[@]} FAILED of $checked checks:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "check-systems: all $checked checks passed"
