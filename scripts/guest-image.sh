#!/usr/bin/env bash
# Builds the Linux test guest from Debian packages: Debian's arm64 kernel as
# a raw arm64 `Image` and a busybox initramfs that loads the virtio modules.
#
#   scripts/guest-image.sh      build, or say the outputs are up to date
#   scripts/guest-image.sh --vmlinuz-to-image VMLINUZ IMAGE
#                               only turn a vmlinuz into a raw Image
#
# Outputs (stable paths; the seL4 VMM and tests/linux load them):
#   build/guest/Image            raw arm64 Image (header magic "ARM\x64"), to
#                                be loaded at RAM + 2 MiB (text_offset 0)
#   build/guest/initrd.cpio.gz   gzip'd newc cpio: busybox, guest/rootfs/,
#                                the modules of guest/modules.list (+ deps)
#   build/guest/VERSION          key=value: the Debian packages and versions
#                                used, the kernel release, hashes
#   build/guest/initramfs.list   every path in the initramfs (for review)
#
# Everything comes from Debian's archive through apt (which checks each
# package against the archive's signed index) and is unpacked with dpkg-deb;
# nothing is fetched from anywhere else and nothing here is committed. The
# kernel is whatever the `linux-image-arm64` metapackage's candidate version
# depends on; VERSION records it. Downloads are cached in build/guest/debs
# and unpacked packages in build/guest/pkgs, so a second run with the same
# package versions and the same guest/ files does nothing. Needs apt-get,
# dpkg-deb, cpio and gzip; as root (or through sudo) it adds the arm64
# architecture to dpkg and installs cpio when they are missing.
#
# GUEST_OUT overrides the output directory (default build/guest).
set -euo pipefail
say() { printf 'guest-image: %s\n' "$*"; }
die() { printf 'guest-image: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
# Privileged steps run as root, through sudo when not root (as setup.sh does).
can_admin() { is_root || command -v sudo >/dev/null 2>&1; }
admin() { if is_root; then "$@"; else sudo "$@"; fi; }

le() { # file offset bytes -> unsigned little-endian integer
    od -An -v --endian=little -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' '
}
hexat() { # file offset bytes -> hex string
    od -An -v -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}
decompress() { # compression name -> filter command on stdin/stdout
    case "$1" in
    gzip) gzip -dc ;;
    xz) xz -dc ;;
    lzma) xz --format=lzma -dc ;;
    zstd) zstd -dcq ;;
    lz4) lz4 -dc ;;
    bzip2) bzip2 -dc ;;
    *) die "unknown compression '$1'" ;;
    esac
}
# Debian's vmlinuz is, depending on the release, the Image itself (an EFI
# stub PE file with the arm64 header), a gzip'd Image, or an EFI "zboot"
# image (a small PE decompressor with the compressed Image as payload).
vmlinuz_to_image() { # vmlinuz image -> writes the raw Image, sets $format
    local in=$1 out=$2 off size comp
    if [ "$(hexat "$in" 56 4)" = 41524d64 ]; then
        format=raw
        cp "$in" "$out"
    elif [ "$(hexat "$in" 0 2)" = 1f8b ]; then
        format=gzip
        gzip -dc "$in" >"$out" || die "cannot decompress $in (gzip)"
    elif [ "$(hexat "$in" 0 2)" = 4d5a ] && [ "$(hexat "$in" 4 4)" = 7a696d67 ]; then
        # zboot header: "MZ\0\0", "zimg", le32 payload offset, le32 payload
        # size, 8 reserved bytes, the compression name (NUL-terminated) at
        # 0x18 (Linux drivers/firmware/efi/libstub/zboot-header.S).
        off=$(le "$in" 8 4)
        size=$(le "$in" 12 4)
        comp=$(dd if="$in" bs=1 skip=24 count=32 status=none | tr '\0' '\n' | sed -n 1p)
        format="zboot-$comp"
        # One reader of exactly the payload (a `tail | head` pipe would fail
        # on the SIGPIPE head gives tail).
        dd if="$in" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none |
            decompress "$comp" >"$out" ||
            die "cannot decompress the $comp payload of $in"
    else
        die "$in is none of: raw arm64 Image, gzip, EFI zboot (starts $(hexat "$in" 0 8))"
    fi
    [ "$(hexat "$out" 56 4)" = 41524d64 ] || die "the Image unpacked from $in ($format) has no arm64 magic"
}

# scripts/guest-image.sh --vmlinuz-to-image VMLINUZ IMAGE: only that step
# (tests/linux feeds it each format).
if [ "${1:-}" = --vmlinuz-to-image ]; then
    [ $# -eq 3 ] || die "usage: guest-image.sh --vmlinuz-to-image VMLINUZ IMAGE"
    vmlinuz_to_image "$2" "$3"
    say "$2: $format, raw Image written to $3"
    exit 0
fi
[ $# -eq 0 ] || die "usage: guest-image.sh [--vmlinuz-to-image VMLINUZ IMAGE]"

cd "$(dirname "$0")/.."

OUT=${GUEST_OUT:-build/guest}
META=linux-image-arm64
BUSYBOX=busybox-static
ARCH=arm64

mkdir -p "$OUT"
# Two builds at once (a test and a developer, say) would share the work
# directories: one at a time.
exec 9>"$OUT/.lock"
flock 9

# --- tools and the arm64 package index --------------------------------------
for t in apt-get apt-cache dpkg dpkg-deb gzip sha256sum od flock; do
    command -v "$t" >/dev/null 2>&1 || die "needs '$t' (a Debian system with apt)"
done
if ! command -v cpio >/dev/null 2>&1; then
    can_admin || die "needs cpio: run 'apt-get install cpio' as root"
    say "installing cpio (packs the initramfs)"
    admin env DEBIAN_FRONTEND=noninteractive apt-get install -y -q cpio >/dev/null
fi

apt_updated=
apt_update() {
    can_admin || die "the arm64 package index is missing or stale: as root run 'dpkg --add-architecture arm64 && apt-get update'"
    say "apt-get update (arm64 package index)"
    admin apt-get update -q >/dev/null
    apt_updated=1
}
if ! dpkg --print-foreign-architectures | grep -x "$ARCH" >/dev/null; then
    can_admin || die "dpkg has no $ARCH architecture: as root run 'dpkg --add-architecture $ARCH && apt-get update'"
    say "adding the $ARCH architecture to dpkg"
    admin dpkg --add-architecture "$ARCH"
    apt_update
fi

# One apt-cache call per question: without a saved package cache (Debian's
# container images disable it) each call parses every index, ~1.5 s here.
policy=
read_policy() { policy=$(apt-cache policy "$META:$ARCH" "$BUSYBOX:$ARCH" 2>/dev/null || true); }
candidate() { # package -> its candidate version in $policy, empty if none
    printf '%s\n' "$policy" |
        awk -v p="$1:$ARCH:" '$0 == p { f = 1; next } /^[^ ]/ { f = 0 } f && $1 == "Candidate:" { print $2; exit }' |
        grep -v '^(none)$' || true
}

# --- resolve the versions ----------------------------------------------------
read_policy
meta_ver=$(candidate "$META")
if [ -z "$meta_ver" ] && [ -z "$apt_updated" ]; then
    apt_update
    read_policy
    meta_ver=$(candidate "$META")
fi
[ -n "$meta_ver" ] || die "apt knows no $META:$ARCH"
# The metapackage depends on exactly one versioned image package, e.g.
# "linux-image-6.1.0-56-arm64 (= 6.1.192-2)".
# (Every reader below reads to the end: with pipefail, a reader that stops
# early would fail the pipe with the writer's SIGPIPE.)
dep=$(apt-cache show "$META:$ARCH=$meta_ver" |
    awk '/^Depends:/ && !done { done = 1; sub(/^Depends: */, ""); n = split($0, d, / *, */)
        for (i = 1; i <= n; i++) if (d[i] ~ /^linux-image-/ && !found) { found = 1; print d[i] } }')
kpkg=${dep%% *}
kver=$(printf '%s' "$dep" | sed -n 's/.*(= *\([^)]*\)).*/\1/p')
if [ -z "$kpkg" ] || [ -z "$kver" ]; then
    die "cannot read the kernel package from $META $meta_ver's Depends: '$dep'"
fi
krel=${kpkg#linux-image-}
bb_ver=$(candidate "$BUSYBOX")
[ -n "$bb_ver" ] || die "apt knows no $BUSYBOX:$ARCH"

# The outputs depend on the package versions, this script and guest/.
inputs=$(
    {
        printf '%s\n' "$META=$meta_ver" "$kpkg=$kver" "$BUSYBOX=$bb_ver"
        sha256sum scripts/guest-image.sh guest/modules.list
        find guest/rootfs -type f -o -type l | LC_ALL=C sort | while read -r f; do
            printf '%s %s %s\n' "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -d' ' -f1
)
if [ -f "$OUT/Image" ] && [ -f "$OUT/initrd.cpio.gz" ] && [ -f "$OUT/VERSION" ] &&
    grep -qx "inputs=$inputs" "$OUT/VERSION"; then
    say "up to date: kernel $krel (Debian $kpkg $kver via $META $meta_ver), $BUSYBOX $bb_ver"
    say "outputs: $OUT/Image $OUT/initrd.cpio.gz $OUT/VERSION"
    exit 0
fi

# --- download (cached) and unpack -------------------------------------------
mkdir -p "$OUT/debs" "$OUT/pkgs"
fetch() { # package version -> $deb, the path of the .deb
    local pkg=$1 ver=$2
    # apt-get download's file name: the epoch's ':' is written '%3a'.
    deb="$OUT/debs/${pkg}_${ver//:/%3a}_${ARCH}.deb"
    if [ ! -f "$deb" ]; then
        say "downloading $pkg:$ARCH $ver from the Debian archive"
        # Other versions of the package are stale now.
        rm -f "$OUT/debs/${pkg}_"*.deb
        local sandbox=()
        # Root's apt drops to the _apt user, who may not write into $OUT.
        is_root && sandbox=(-o APT::Sandbox::User=root)
        if ! (cd "$OUT/debs" && apt-get download -q "${sandbox[@]}" "$pkg:$ARCH=$ver" >/dev/null); then
            # The archive keeps only current versions (security updates
            # replace them): with a stale index, update it and resolve again.
            if [ -z "$apt_updated" ] && [ -z "${GUEST_IMAGE_RETRIED:-}" ] && can_admin; then
                say "download failed; updating the package index and resolving again"
                apt_update
                exec 9>&- # the lock: the new run takes it afresh
                GUEST_IMAGE_RETRIED=1 exec scripts/guest-image.sh
            fi
            die "cannot download $pkg:$ARCH $ver (a stale package index? as root: apt-get update)"
        fi
    fi
    if [ "$(dpkg-deb -f "$deb" Package)" != "$pkg" ] || [ "$(dpkg-deb -f "$deb" Version)" != "$ver" ]; then
        die "$deb is not $pkg $ver"
    fi
}
unpack() { # $deb -> $dir, where it is unpacked (once per version)
    dir="$OUT/pkgs/$(basename "$deb" .deb)"
    if [ ! -f "$dir/.unpacked" ]; then
        say "unpacking $(basename "$deb") with dpkg-deb"
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
        touch "$dir/.unpacked"
    fi
}
fetch "$kpkg" "$kver"
unpack
kdir=$dir
fetch "$BUSYBOX" "$bb_ver"
unpack
bbdir=$dir
# Drop unpacked trees of versions no longer used.
for d in "$OUT/pkgs"/*/; do
    case "${d%/}" in "$kdir" | "$bbdir") ;; *) rm -rf "$d" ;; esac
done

vmlinuz="$kdir/boot/vmlinuz-$krel"
moddir="$kdir/lib/modules/$krel"
[ -f "$vmlinuz" ] || die "$kpkg has no boot/vmlinuz-$krel"
[ -d "$moddir/kernel" ] || die "$kpkg has no lib/modules/$krel"
[ -x "$bbdir/bin/busybox" ] || die "$BUSYBOX has no bin/busybox"

# --- the kernel: a raw arm64 Image -------------------------------------------
tmp="$OUT/Image.tmp"
vmlinuz_to_image "$vmlinuz" "$tmp"
text_offset=$(le "$tmp" 8 8)
image_size=$(le "$tmp" 16 8)
mv "$tmp" "$OUT/Image"

# --- modules: guest/modules.list plus their dependencies, in load order ------
modinfo_field() { # .ko field -> value (the .modinfo section holds NUL-separated key=value)
    tr '\0' '\n' <"$1" | sed -n "s/^$2=//p" | sed -n 1p
}
declare -A ko_of=()
while read -r f; do
    n=${f##*/}
    n=${n%.ko}
    ko_of[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko')
# Two load phases: before the shell, and after it ("@after-shell").
boot_order=()
later_order=()
phase=boot
declare -A placed=()
place() { # module name: its dependencies first, then itself
    local n=${1//-/_} f d
    [ -n "${placed[$n]:-}" ] && return
    f=${ko_of[$n]:-}
    [ -n "$f" ] || die "guest/modules.list: no module '$1' in $kpkg (compressed modules are not supported)"
    case "$(modinfo_field "$f" vermagic)" in
    "$krel "*) ;;
    *) die "$f was built for another kernel: $(modinfo_field "$f" vermagic)" ;;
    esac
    placed[$n]=1
    for d in $(modinfo_field "$f" depends | tr ',' ' '); do place "$d"; done
    if [ "$phase" = boot ]; then boot_order+=("$f"); else later_order+=("$f"); fi
}
while read -r line; do
    line=${line%%#*}
    for m in $line; do
        case "$m" in
        @after-shell) phase=later ;;
        @*) die "guest/modules.list: unknown directive '$m'" ;;
        *) place "$m" ;;
        esac
    done
done <guest/modules.list

# --- the initramfs -----------------------------------------------------------
root="$OUT/initramfs"
rm -rf "$root"
mkdir -p "$root/bin" "$root/etc/bulkhead" "$root/lib/modules/$krel"
cp "$bbdir/bin/busybox" "$root/bin/busybox"
# /init is a shell script: /bin/sh must exist before busybox --install.
ln -s busybox "$root/bin/sh"
cp -R guest/rootfs/. "$root/"
install_modules() { # order file, then the modules; appends their names to $names
    local list=$1 f rel
    shift
    : >"$root/etc/bulkhead/$list"
    for f in "$@"; do
        rel=${f#"$moddir/"}
        mkdir -p "$root/lib/modules/$krel/$(dirname "$rel")"
        cp "$f" "$root/lib/modules/$krel/$rel"
        printf '/lib/modules/%s/%s\n' "$krel" "$rel" >>"$root/etc/bulkhead/$list"
        names+=("$(basename "$f" .ko)")
    done
}
names=()
install_modules modules.order "${boot_order[@]}"
boot_names=("${names[@]}")
names=()
install_modules modules-after-shell.order "${later_order[@]}"
later_names=("${names[@]}")
printf '%s\n' "$krel" >"$root/etc/bulkhead/kernel-release"
# Same inputs, same bytes: fixed owner, modes without group/other write,
# one timestamp, sorted entries, no gzip name or time.
chmod -R go-w "$root"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort) >"$OUT/initramfs.list"
(cd "$root" && cpio --quiet -o -H newc -R 0:0 --reproducible) <"$OUT/initramfs.list" |
    gzip -9 -n >"$OUT/initrd.cpio.gz.tmp"
mv "$OUT/initrd.cpio.gz.tmp" "$OUT/initrd.cpio.gz"

# --- VERSION -------------------------------------------------------------------
{
    echo "# Bulkhead Linux test guest, written by scripts/guest-image.sh"
    echo "metapackage=$META $meta_ver"
    echo "kernel-package=$kpkg $kver"
    echo "kernel-release=$krel"
    echo "busybox-package=$BUSYBOX $bb_ver"
    echo "vmlinuz-format=$format"
    echo "image-text-offset=$text_offset"
    echo "image-size=$image_size"
    echo "modules=${boot_names[*]}"
    echo "modules-after-shell=${later_names[*]}"
    echo "image-sha256=$(sha256sum <"$OUT/Image" | cut -d' ' -f1)"
    echo "initrd-sha256=$(sha256sum <"$OUT/initrd.cpio.gz" | cut -d' ' -f1)"
    echo "inputs=$inputs"
} >"$OUT/VERSION.tmp"
mv "$OUT/VERSION.tmp" "$OUT/VERSION"

say "built kernel $krel (Debian $kpkg $kver via $META $meta_ver; vmlinuz was $format)"
say "  $OUT/Image: $(stat -c %s "$OUT/Image") bytes, text_offset $text_offset, image_size $image_size"
say "  $OUT/initrd.cpio.gz: $(stat -c %s "$OUT/initrd.cpio.gz") bytes, $BUSYBOX $bb_ver, modules: ${boot_names[*]} (after the shell: ${later_names[*]})"
say "  $OUT/VERSION"
