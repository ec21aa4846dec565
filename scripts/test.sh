#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing, then runs
# every test of the workspace (none is skipped).
#
# Needed besides the Rust toolchain:
# - etcd (Debian's etcd-server), which the tests of the highly available mode start as real
#   processes on loopback ports;
# - Chromium (Debian's chromium), which the dashboard test runs headless;
# - promtool (Debian's prometheus), which checks the /metrics text;
# - schemathesis (from PyPI, into a virtualenv under ~/.cache/meridian), which fuzzes the
#   HTTP API against its OpenAPI document; Debian's python3-venv when venv is missing.
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

# schemathesis, pinned, in its own virtualenv: the OpenAPI test runs it as
# $MERIDIAN_SCHEMATHESIS_BIN and fails without it.
SCHEMATHESIS_VERSION=4.32.5
if [ -z "${MERIDIAN_SCHEMATHESIS_BIN:-}" ]; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/meridian/schemathesis-$SCHEMATHESIS_VERSION"
    if ! "$venv/bin/st" --version >/dev/null 2>&1; then
        echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
            sudo=""
            if [ "$(id -u)" -ne 0 ]; then
                sudo="sudo"
            fi
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        fi
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    export MERIDIAN_SCHEMATHESIS_BIN="$venv/bin/st"
fi

cargo test --workspace --locked "$@"
