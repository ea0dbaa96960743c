#!/usr/bin/env bash
# Packs and boots seL4 images with a Microkit SDK the user provides.
#
#   scripts/sdk.sh image      SDK BOARD CONFIG SYSTEM   build PDs, check ELFs, pack build/BOARD/CONFIG/loader.img
#   scripts/sdk.sh qemu       SDK BOARD CONFIG SYSTEM   image, then boot it under QEMU (replaces this shell)
#   scripts/sdk.sh setup-qemu                           make sure QEMU >= 10 is installed (Debian bookworm-backports)
#
# Called by the Makefile as `scripts/sdk.sh image|qemu "$(MICROKIT_SDK)"
# "$(MICROKIT_BOARD)" "$(MICROKIT_CONFIG)" "$(SYSTEM)"`. Outputs are keyed by
# board and config (invocation labels differ between configs), so switching
# either never mixes ELFs. PD_PACKAGES (env) lists the cargo packages whose
# binaries are PDs; each binary becomes build/BOARD/CONFIG/<bin>.elf, the
# name a .system file's <program_image path=…> refers to. The SDK itself is
# never copied into the tree or committed.
#
# Per-system sidecar files (optional), beside SYSTEM with its `.system`
# replaced: `<name>.pd-packages` (one line: the cargo packages to build when
# PD_PACKAGES is not set), `<name>.qemu-args` (one line: extra QEMU
# arguments, e.g. the devices a test system drives; QEMU_EXTRA_ARGS from
# the environment come after them) and `<name>.pd-aliases` (one line of
# `image=bin` pairs: the system's `<program_image path="image.elf">` is the
# PD binary `bin`, e.g. `can_driver=flexcan_driver` on the i.MX8M Plus).
#
# SDK_BUILD_DIR (env, optional; relative to the repository root) replaces
# build/BOARD/CONFIG as the output directory, so a test can pack and boot
# its image without racing other runs that use the default one.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PD_PACKAGES_FROM_ENV=${PD_PACKAGES:-}
PD_PACKAGES=${PD_PACKAGES:-bulkhead-hello-pd bulkhead-example-pds}
CARGO=${CARGO:-cargo}

say() { printf 'sdk.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- QEMU -----------------------------------------------------------------
qemu_major() {
    command -v qemu-system-aarch64 >/dev/null 2>&1 || { echo 0; return; }
    qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1
}

qemu_ok() { # $1 = board
    local major; major=$(qemu_major)
    [ "${major:-0}" -ge 1 ] || return 1
    case "$1" in
        imx8mp_evk) [ "$major" -ge 10 ] && qemu-system-aarch64 -machine help | grep -q '^imx8mp-evk' ;;
        *) return 0 ;;
    esac
}

setup_qemu() {
    if qemu_ok imx8mp_evk; then
        say "qemu-system-aarch64 $(qemu_major).x present (models imx8mp-evk)"
        return 0
    fi
    local codename
    # shellcheck disable=SC1091 # the running system's file, read at run time
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root to install QEMU >= 10 (package qemu-system-arm)"
        sudo=sudo
    fi
    case "$codename" in
        bookworm)
            # QEMU 10 (the first with -M imx8mp-evk) is in bookworm-backports.
            if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
                say "adding the bookworm-backports apt source"
                printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
                    'Suites: bookworm-backports' 'Components: main' \
                    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
                    $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
            fi
            say "installing qemu-system-arm from bookworm-backports"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
                -t bookworm-backports qemu-system-arm >/dev/null
            ;;
        trixie|forky|sid)
            say "installing qemu-system-arm"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
            ;;
        *)
            die "cannot install QEMU >= 10 automatically on '${codename:-unknown}'; install qemu-system-aarch64 >= 10 yourself"
            ;;
    esac
    qemu_ok imx8mp_evk || die "installed QEMU $(qemu_major).x still does not model imx8mp-evk"
    say "qemu-system-aarch64 $(qemu_major).x installed"
}

# --- image ----------------------------------------------------------------
list_dirs() {
    local d
    for d in "$1"/*/; do [ -d "$d" ] && printf '  %s\n' "$(basename "$d")" >&2; done
    return 0
}

check_sdk() {
    if [ -z "$SDK" ]; then
        say "make $1 needs MICROKIT_SDK=/path/to/microkit-sdk-2.3.x (an unpacked Microkit SDK;"
        say "it is not in any package registry and is never committed here), e.g."
        say "  make $1 MICROKIT_SDK=~/microkit-sdk-2.3.0 MICROKIT_BOARD=$BOARD MICROKIT_CONFIG=$CONFIG"
        exit 2
    fi
    [ -d "$SDK" ] || die "MICROKIT_SDK=$SDK is not a directory"
    [ -x "$SDK/bin/microkit" ] || die "$SDK/bin/microkit not found or not executable: is $SDK a Microkit SDK?"
    if [ ! -d "$SDK/board/$BOARD" ]; then
        say "board '$BOARD' is not in this SDK; valid MICROKIT_BOARD values:"
        list_dirs "$SDK/board"
        exit 1
    fi
    if [ ! -d "$SDK/board/$BOARD/$CONFIG" ]; then
        say "config '$CONFIG' is not in this SDK for $BOARD; valid MICROKIT_CONFIG values:"
        list_dirs "$SDK/board/$BOARD"
        exit 1
    fi
    [ -f "$SYSTEM" ] || die "SYSTEM=$SYSTEM not found"
}

image() {
    check_sdk image
    local out="${SDK_BUILD_DIR:-build/$BOARD/$CONFIG}"
    mkdir -p "$out"
    if [ -z "$PD_PACKAGES_FROM_ENV" ] && [ -f "${SYSTEM%.system}.pd-packages" ]; then
        read -r PD_PACKAGES <"${SYSTEM%.system}.pd-packages"
    fi
    local pkgs=()
    for p in $PD_PACKAGES; do pkgs+=(-p "$p"); done
    say "building PDs (${PD_PACKAGES}) for $BOARD/$CONFIG"
    # The labels build.rs reads come from these three variables.
    MICROKIT_SDK="$SDK" MICROKIT_BOARD="$BOARD" MICROKIT_CONFIG="$CONFIG" \
        CARGO_TARGET_DIR="$ROOT/$out/target" \
        "$CARGO" build --release --target aarch64-unknown-none "${pkgs[@]}" >&2
    local rel="$out/target/aarch64-unknown-none/release"
    local elfs=()
    for f in "$rel"/*; do
        if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
        [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
        cp "$f" "$out/$(basename "$f").elf"
        elfs+=("$out/$(basename "$f").elf")
    done
    [ "${#elfs[@]}" -gt 0 ] || die "no PD ELFs were built"
    if [ -f "${SYSTEM%.system}.pd-aliases" ]; then
        local aliases=() a
        read -r -a aliases <"${SYSTEM%.system}.pd-aliases"
        for a in "${aliases[@]}"; do
            [[ "$a" == *=* ]] || die "${SYSTEM%.system}.pd-aliases: '$a' is not image=bin"
            [ -f "$out/${a#*=}.elf" ] || die "${SYSTEM%.system}.pd-aliases: no PD binary ${a#*=} was built"
            cp "$out/${a#*=}.elf" "$out/${a%%=*}.elf"
            say "$SYSTEM: ${a%%=*}.elf is ${a#*=}"
        done
    fi
    # Bare-metal guests (not PDs, so not ELF-checked as PDs) named by the
    # `<name>.guest-packages` sidecar: each binary becomes $out/<bin>.elf,
    # the name a `prefill_path` refers to.
    if [ -f "${SYSTEM%.system}.guest-packages" ]; then
        local guests=() gpkgs=()
        read -r -a guests <"${SYSTEM%.system}.guest-packages"
        for p in "${guests[@]}"; do gpkgs+=(-p "$p"); done
        say "building guests (${guests[*]})"
        CARGO_TARGET_DIR="$ROOT/$out/guest-target" \
            "$CARGO" build --release --target aarch64-unknown-none "${gpkgs[@]}" >&2
        for f in "$out/guest-target/aarch64-unknown-none/release"/*; do
            if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
            [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
            cp "$f" "$out/$(basename "$f").elf"
        done
    fi
    # Catch an ABI slip (missing/mis-sized patched symbol, stripped ELF...)
    # with a named problem before the tool panics on it.
    CARGO_TARGET_DIR="$ROOT/build/tools" "$CARGO" build -q -p bulkhead-sel4-tests --bin sel4-elf-check >&2
    local checker="build/tools/debug/sel4-elf-check"
    for e in "${elfs[@]}"; do "$checker" "$e" >&2; done
    say "packing $SYSTEM"
    "$SDK/bin/microkit" "$SYSTEM" --board "$BOARD" --config "$CONFIG" \
        -o "$out/loader.img" -r "$out/report.txt" \
        --search-path "$out" "$(dirname "$SYSTEM")" >&2
    say "image: $out/loader.img (report: $out/report.txt)"
}

# --- qemu -----------------------------------------------------------------
qemu() {
    image
    local extra=() sys_args=()
    if [ -f "${SYSTEM%.system}.qemu-args" ]; then
        read -r -a sys_args <"${SYSTEM%.system}.qemu-args"
    fi
    read -r -a extra <<<"${QEMU_EXTRA_ARGS:-}"
    local img="${SDK_BUILD_DIR:-build/$BOARD/$CONFIG}/loader.img"
    qemu_ok "$BOARD" || setup_qemu
    case "$BOARD" in
        qemu_virt_aarch64)
            # -nic none: no default NIC, whose option ROM Debian ships in a
            # separate package (ipxe-qemu) that a minimal install lacks.
            exec qemu-system-aarch64 -machine virt,virtualization=on -cpu cortex-a53 \
                -m size=2G -nographic -serial mon:stdio -nic none \
                -device "loader,file=$img,addr=0x70000000,cpu-num=0" "${sys_args[@]}" "${extra[@]}"
            ;;
        imx8mp_evk)
            # No firmware on QEMU's imx8mp-evk: our EL3 shim starts first
            # (cpu-num=0 points the CPU at its ELF entry) and enters the
            # loader at EL2. seL4's device tree claims RAM up to
            # 0x1_C000_0000, hence 6G. The debug UART is UART2 = serial 1.
            CARGO_TARGET_DIR="$ROOT/build/shim" "$CARGO" build -q --release \
                --target aarch64-unknown-none -p bulkhead-imx8mp-evk-shim --bin imx8mp-evk-shim >&2
            local shim="build/shim/aarch64-unknown-none/release/imx8mp-evk-shim"
            exec qemu-system-aarch64 -machine imx8mp-evk -m 6G -nographic \
                -serial null -serial mon:stdio \
                -device "loader,file=$img,addr=0x41000000" \
                -device "loader,file=$shim,cpu-num=0" "${sys_args[@]}" "${extra[@]}"
            ;;
        *)
            die "no QEMU model for $BOARD: boot build/$BOARD/$CONFIG/loader.img on the board (U-Boot: load it at 0x41000000, go 0x41000000)"
            ;;
    esac
}

cmd=${1:-}
SDK=${2:-}
BOARD=${3:-qemu_virt_aarch64}
CONFIG=${4:-debug}
SYSTEM=${5:-tests/sel4/hello.system}
case "$cmd" in
    image) image ;;
    qemu) qemu ;;
    setup-qemu) setup_qemu ;;
    *) echo "usage: $0 image|qemu SDK BOARD CONFIG SYSTEM | $0 setup-qemu" >&2; exit 2 ;;
esac
