#!/usr/bin/env bash
# Let edge-sdk.service reach exactly the [forward] endpoints of its config (the unit denies all but loopback).
# Renders the drop-in edge-sdk.service.d/network.conf (IPAddressAllow= the endpoints' addresses, and the
# nameservers when a host name must resolve), then reloads systemd. Re-run it when an endpoint's address changes.
#
#   sudo ./network-allowlist.sh [/etc/edge-sdk/edge-sdk.toml]
#
# Environment: EDGE_SDK_PREFIX (default /opt/edge-sdk, the venv's root); EDGE_SDK_DROPIN_DIR (default
# /etc/systemd/system/edge-sdk.service.d; when set, systemd is not reloaded: for staging and tests).
set -euo pipefail

PREFIX="${EDGE_SDK_PREFIX:-/opt/edge-sdk}"
CONFIG="${1:-/etc/edge-sdk/edge-sdk.toml}"
DROPIN_DIR="${EDGE_SDK_DROPIN_DIR:-/etc/systemd/system/edge-sdk.service.d}"

mkdir -p "$DROPIN_DIR"
"$PREFIX/venv/bin/python" -m edge_sdk.forward.allowlist --config "$CONFIG" >"$DROPIN_DIR/network.conf.new"
mv "$DROPIN_DIR/network.conf.new" "$DROPIN_DIR/network.conf"
printf '[edge-sdk allowlist] %s\n' "$(grep '^IPAddressAllow=' "$DROPIN_DIR/network.conf" || echo 'loopback only')"
if [[ -z "${EDGE_SDK_DROPIN_DIR:-}" ]]; then
    systemctl daemon-reload
    systemctl try-restart edge-sdk.service
fi
