#!/usr/bin/env bash
# An emulated arm64 Debian 12 userspace with Python 3.11 (the Raspberry Pi OS base) and the slim device install
# (aarch64 wheels of numpy, Pillow, click, tqdm, onnxruntime): the stand-in for a Raspberry Pi in tests.
# Built once and cached (about a minute): ROOT/.edgekit-ready marks a finished build.
# Needs: qemu-user-static, debootstrap (apt-get), and a Python with pip on the host.
# Run a program in it:  QEMU_CPU=cortex-a72 PYTHONPATH=ROOT/opt/site qemu-aarch64-static -L ROOT ROOT/usr/bin/python3
set -euo pipefail
ROOT="${1:-${EDGEKIT_ARM64_ROOT:-$HOME/.cache/edgekit/arm64-bookworm}}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WHEELS="numpy pillow click tqdm onnxruntime"
if [ -f "$ROOT/.edgekit-ready" ] && [ "$(cat "$ROOT/.edgekit-ready")" = "$WHEELS" ]; then
    echo "arm64 userspace ready: $ROOT"; exit 0
fi
command -v qemu-aarch64-static >/dev/null || { echo "error: qemu-aarch64-static missing: apt-get install qemu-user-static" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: debootstrap missing: apt-get install debootstrap" >&2; exit 2; }
TMP="$ROOT.tmp"
rm -rf "$TMP"
mkdir -p "$(dirname "$ROOT")"
# First stage only (no emulated dpkg): download, then unpack every package ourselves.
debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 bookworm "$TMP" "$MIRROR" >/dev/null
for deb in "$TMP"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$TMP"; done
rm -f "$TMP"/var/cache/apt/archives/*.deb
# qemu shows the host's x86 /proc/cpuinfo, on which XNNPACK and friends misdetect the CPU: show a Pi 4's.
mkdir -p "$TMP/proc"
printf 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' > "$TMP/proc/cpuinfo"
python3 -m pip install -q --target "$TMP/opt/site" --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 --platform manylinux_2_34_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 --platform any $WHEELS
echo "$WHEELS" > "$TMP/.edgekit-ready"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
echo "arm64 userspace ready: $ROOT"
