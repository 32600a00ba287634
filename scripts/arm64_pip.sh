#!/usr/bin/env bash
# pip install for the emulated board (Debian 12 arm64, CPython 3.11) from an x86 host: aarch64 wheels only, into a
# directory that the board's python gets on its PYTHONPATH. Usage: scripts/arm64_pip.sh DIR REQUIREMENT...
set -euo pipefail
DIR="$1"; shift
exec "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --target "$DIR" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_34_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux2014_aarch64 --platform linux_aarch64 --platform any "$@"
