#!/usr/bin/env bash
# Installs what `make run` and `make test` need on a fresh Debian machine with
# only Rust installed. Idempotent: every step checks before it acts, so a
# second run changes nothing and prints one line per item.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

# Rust targets: PDs build for aarch64-unknown-none.
for t in aarch64-unknown-none; do
    if rustup target list --installed | grep -qx "$t"; then
        say "rust target $t present"
    else
        say "adding rust target $t"
        rustup target add "$t"
    fi
done

# Debian packages: command -> package.
#   spin: model checker for the ring/notification Promela models (proofs/)
#   dot:  graphviz, renders `bulkhead graph -o X.svg`
#   dtc:  device-tree compiler, used to parse back generated device trees
need=()
declare -A pkg_of=([spin]=spin [dot]=graphviz [dtc]=device-tree-compiler)
for cmd in "${!pkg_of[@]}"; do
    if command -v "$cmd" >/dev/null 2>&1; then
        say "$cmd present"
    else
        need+=("${pkg_of[$cmd]}")
    fi
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
            say "missing Debian packages: ${need[*]} (run as root, or install them yourself)"
            exit 1
        fi
    else
        SUDO=
    fi
    say "installing Debian packages: ${need[*]}"
    # apt-cache is empty until the first update on a fresh machine.
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# QEMU >= 10 (bookworm-backports): runs the bare-metal ABI and EL3-shim
# tests without an SDK, and boots images with one.
scripts/sdk.sh setup-qemu
