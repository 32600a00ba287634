#!/usr/bin/env bash
# An emulated arm64 Debian 12 userspace with Python 3.11 (the Raspberry Pi OS base): the stand-in for a Raspberry Pi
# in tests. Two slim device installs (aarch64 wheels only, no torch, no onnx) live side by side in it:
#   ROOT/opt/site            numpy 2, Pillow, click, tqdm, onnxruntime, ai-edge-litert (today's LiteRT)
#   ROOT/opt/site-tflite214  numpy<2, Pillow, click, tqdm, tflite-runtime 2.14 (what many Pi images still have)
# Two boards share that userspace: ROOT is a Raspberry Pi 4 (run with QEMU_CPU=cortex-a72), ROOT-pi5 a Raspberry Pi 5
# (QEMU_CPU=cortex-a76, whose dot-product instructions make XNNPACK take its other int8 kernels): symlinks to ROOT's
# directories and a Pi 5 /proc/cpuinfo of its own.
# Built once and cached (about a minute); each part is rebuilt only when its package list changes.
# Needs: qemu-user-static, debootstrap (apt-get), and a Python with pip on the host.
# Run a program in it:
#   QEMU_CPU=cortex-a72 PYTHONPATH=ROOT/opt/site qemu-aarch64-static -L ROOT ROOT/usr/bin/python3 ...
set -euo pipefail
ROOT="${1:-${EDGEKIT_ARM64_ROOT:-$HOME/.cache/edgekit/arm64-bookworm}}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE="debian-12 python3"
SITES=("site|numpy pillow click tqdm onnxruntime ai-edge-litert"
       "site-tflite214|tflite-runtime==2.14.0 numpy<2 pillow click tqdm")
command -v qemu-aarch64-static >/dev/null || { echo "error: qemu-aarch64-static missing: apt-get install qemu-user-static" >&2; exit 2; }

if [ ! -f "$ROOT/.edgekit-base" ] || [ "$(cat "$ROOT/.edgekit-base")" != "$BASE" ]; then
    command -v debootstrap >/dev/null || { echo "error: debootstrap missing: apt-get install debootstrap" >&2; exit 2; }
    TMP="$ROOT.tmp"
    rm -rf "$TMP"
    mkdir -p "$(dirname "$ROOT")"
    # First stage only (no emulated dpkg): download, then unpack every package ourselves.
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 bookworm "$TMP" "$MIRROR" >/dev/null
    for deb in "$TMP"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$TMP"; done
    rm -f "$TMP"/var/cache/apt/archives/*.deb
    # qemu shows the host's x86 /proc/cpuinfo, on which XNNPACK misdetects the CPU (and segfaults): show a Pi 4's.
    mkdir -p "$TMP/proc"
    printf 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' > "$TMP/proc/cpuinfo"
    echo "$BASE" > "$TMP/.edgekit-base"
    rm -rf "$ROOT"
    mv "$TMP" "$ROOT"
fi

for entry in "${SITES[@]}"; do
    site="${entry%%|*}"
    pkgs="${entry#*|}"
    marker="$ROOT/opt/.edgekit-$site"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$pkgs" ]; then continue; fi
    rm -rf "$ROOT/opt/$site.tmp"
    # shellcheck disable=SC2086  # the package list is meant to split
    bash "$(dirname "$0")/arm64_pip.sh" "$ROOT/opt/$site.tmp" $pkgs
    rm -rf "$ROOT/opt/$site"
    mv "$ROOT/opt/$site.tmp" "$ROOT/opt/$site"
    echo "$pkgs" > "$marker"
done
# what the fingerprint reads as the board model (the real file ends in a NUL byte)
mkdir -p "$ROOT/proc/device-tree" && printf 'Raspberry Pi 4 Model B (emulated: qemu cortex-a72)\0' > "$ROOT/proc/device-tree/model"
# The Pi 5 view: qemu -L reads /proc/cpuinfo from the prefix it is given, everything else through the symlinks.
PI5="$ROOT-pi5"
rm -rf "$PI5.tmp" && mkdir -p "$PI5.tmp/proc"
# The system's directories are symlinks; the ones that hold the host's own paths (tests' temporaries, the home) stay
# real and empty, so that qemu falls through to the host for them (a symlinked /tmp would resolve into ROOT/tmp).
for entry in "$ROOT"/*; do
    name="$(basename "$entry")"
    case "$name" in
        proc|tmp|root|home|dev|sys|run|mnt|media|srv) mkdir -p "$PI5.tmp/$name" ;;
        *) ln -s "$entry" "$PI5.tmp/$name" ;;
    esac
done
FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$i" "$FEATURES"
done > "$PI5.tmp/proc/cpuinfo"
printf 'Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n' >> "$PI5.tmp/proc/cpuinfo"
mkdir -p "$PI5.tmp/proc/device-tree" && printf 'Raspberry Pi 5 Model B (emulated: qemu cortex-a76)\0' > "$PI5.tmp/proc/device-tree/model"
rm -rf "$PI5" && mv "$PI5.tmp" "$PI5"
echo "arm64 userspace ready: $ROOT (Pi 4), $PI5 (Pi 5) ($(for e in "${SITES[@]}"; do printf 'opt/%s ' "${e%%|*}"; done))"
