#!/usr/bin/env bash
# The system tools the full test suite runs for real, installed once (as root; run it with sudo otherwise):
#   openssh-server/-client  a remote board over ssh (edgekit bench --device)
#   docker-registry         the CNCF Distribution registry, for edgekit publish/pull/ls
#   qemu-user-static, debootstrap  the emulated Raspberry Pi (arm64 Debian 12 userspace, scripts/arm64_env.sh)
#   iproute2, util-linux    ip, unshare, nsenter: the Ray cluster tests run in a network namespace of their own
# Without them those tests skip; .ci/run calls this script, so CI runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/sshd ] || ! command -v docker-registry >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
        || ! command -v debootstrap >/dev/null || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client docker-registry \
        qemu-user-static debootstrap iproute2 util-linux >/dev/null
fi
# the emulated board needs a Python with pip on the host (for its aarch64 wheels): the project's venv if there is one
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
PATH="$(dirname "$PY"):$PATH" bash scripts/arm64_env.sh
