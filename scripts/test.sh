#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing, then runs
# every test of the workspace (none is skipped).
#
# Needed besides the Rust toolchain:
# - etcd (Debian's etcd-server), which the tests of the highly available mode start as real
#   processes on loopback ports;
# - Chromium (Debian's chromium), which the dashboard test runs headless;
# - promtool (Debian's prometheus), which checks the /metrics text.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v "${MERIDIAN_ETCD_BIN:-etcd}" >/dev/null 2>&1; then
    missing+=(etcd-server)
fi
if ! command -v "${MERIDIAN_CHROMIUM_BIN:-chromium}" >/dev/null 2>&1; then
    missing+=(chromium)
fi
if ! command -v "${MERIDIAN_PROMTOOL_BIN:-promtool}" >/dev/null 2>&1; then
    missing+=(prometheus)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian's ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian's etcd and prometheus packages may start system services on their default
    # ports; the tests start what they need on free ports.
    if command -v systemctl >/dev/null 2>&1; then
        $sudo systemctl disable --now etcd prometheus >/dev/null 2>&1 || true
    fi
fi

cargo test --workspace --locked "$@"
