#!/usr/bin/env bash
# Install edge-sdk as a systemd service on Raspberry Pi OS (bookworm or later).
#
#   sudo ./install.sh                          # from PyPI, models downloaded
#   sudo EDGE_SDK_PIP_SPEC=./edge_sdk-0.1.0-py3-none-any.whl EDGE_SDK_MODELS_FROM=/media/usb/models ./install.sh
#
# Environment (all optional):
#   EDGE_SDK_PREFIX       install root (default /opt/edge-sdk): venv in $PREFIX/venv, model cache in $PREFIX/home
#   EDGE_SDK_PIP_SPEC     what pip installs (default "edge-sdk[litert]"; a wheel path works offline)
#   EDGE_SDK_PIP_ARGS     extra pip arguments (e.g. "--no-index --find-links /media/usb/wheels"; such a
#                         folder also needs pip, setuptools>=70.1 and wheel, which the venv gets first)
#   EDGE_SDK_MODELS_FROM  folder with the model files, for air-gapped units (`edge-sdk models pull --from`)
#   EDGE_SDK_SYSTEM=0     skip the root-only steps (apt, user, /etc, systemd): only venv, pip, models
set -euo pipefail

PREFIX="${EDGE_SDK_PREFIX:-/opt/edge-sdk}"
PIP_SPEC="${EDGE_SDK_PIP_SPEC:-edge-sdk[litert]}"
PIP_ARGS="${EDGE_SDK_PIP_ARGS:-}"
MODELS_FROM="${EDGE_SDK_MODELS_FROM:-}"
SYSTEM="${EDGE_SDK_SYSTEM:-1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE_USER=edge-sdk
LOG_DIR=/var/lib/edge-sdk/log
CONF_DIR=/etc/edge-sdk

log() { printf '[edge-sdk install] %s\n' "$*"; }

system_packages() {
    log "apt: python3-picamera2 (libcamera bindings, not on PyPI) and python3-venv"
    apt-get update
    apt-get install -y --no-install-recommends python3-picamera2 python3-venv
}

python_environment() {
    log "venv $PREFIX/venv (--system-site-packages, so the apt picamera2 is importable)"
    mkdir -p "$PREFIX"
    python3 -m venv --system-site-packages "$PREFIX/venv"
    # The venv's own build tools first, whatever the system has: Python 3.11's bundled setuptools (65.x)
    # and older Debian ones build wheels only with the separate `wheel` package ("invalid command
    # 'bdist_wheel'"), and an old pip may not build pyproject packages without build isolation.
    log "pip, setuptools>=70.1 and wheel inside the venv"
    # shellcheck disable=SC2086  # PIP_ARGS is a list of arguments on purpose
    "$PREFIX/venv/bin/python" -m pip install $PIP_ARGS --upgrade pip "setuptools>=70.1" wheel
    # shellcheck disable=SC2086
    "$PREFIX/venv/bin/python" -m pip install $PIP_ARGS "$PIP_SPEC"
    "$PREFIX/venv/bin/python" -c 'import picamera2' \
        || { log "error: picamera2 does not import in the venv; is python3-picamera2 installed?"; exit 1; }
    "$PREFIX/venv/bin/python" -c 'import edge_sdk, ai_edge_litert; print("edge-sdk", edge_sdk.__version__)'
}

models() {
    log "models into $PREFIX/home (sha256-verified)"
    local from=()
    if [[ -n "$MODELS_FROM" ]]; then from=(--from "$MODELS_FROM"); fi
    EDGE_SDK_HOME="$PREFIX/home" "$PREFIX/venv/bin/edge-sdk" models pull yunet "${from[@]}"
}

service_user_and_files() {
    log "user $SERVICE_USER (groups video), $LOG_DIR, $CONF_DIR"
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/edge-sdk --shell /usr/sbin/nologin --groups video "$SERVICE_USER"
    fi
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$LOG_DIR"
    install -d -o root -g "$SERVICE_USER" -m 0750 "$CONF_DIR" "$CONF_DIR/edge-sdk"
    if [[ ! -e "$CONF_DIR/edge-sdk.toml" ]]; then
        install -o root -g "$SERVICE_USER" -m 0640 "$HERE/edge-sdk.toml" "$CONF_DIR/edge-sdk.toml"
    fi
    if [[ ! -e "$CONF_DIR/edge-sdk/log-key.json" ]]; then
        log "creating the log key $CONF_DIR/edge-sdk/log-key.json (back it up: without it the log is unreadable)"
        XDG_CONFIG_HOME="$CONF_DIR" "$PREFIX/venv/bin/edge-sdk" log init-key
        # the service reads it and edge-sdk refuses a key that is not its own and 0600
        chown "$SERVICE_USER":"$SERVICE_USER" "$CONF_DIR/edge-sdk/log-key.json"
        chmod 0600 "$CONF_DIR/edge-sdk/log-key.json"
    fi
}

service() {
    log "systemd unit edge-sdk.service"
    install -m 0644 "$HERE/edge-sdk.service" /etc/systemd/system/edge-sdk.service
    # the unit denies every address but loopback; allow exactly the config's [forward] endpoints
    EDGE_SDK_PREFIX="$PREFIX" EDGE_SDK_DROPIN_DIR=/etc/systemd/system/edge-sdk.service.d \
        "$HERE/network-allowlist.sh" "$CONF_DIR/edge-sdk.toml"
    systemctl daemon-reload
    systemctl enable edge-sdk.service
    if sudo -u "$SERVICE_USER" env EDGE_SDK_HOME="$PREFIX/home" XDG_CONFIG_HOME="$CONF_DIR" \
        "$PREFIX/venv/bin/edge-sdk" doctor --config "$CONF_DIR/edge-sdk.toml"; then
        systemctl restart edge-sdk.service
    else
        log "doctor found problems (above): fix them, then: sudo systemctl restart edge-sdk"
    fi
}

main() {
    if [[ "$SYSTEM" == 1 ]]; then
        [[ $EUID -eq 0 ]] || { log "error: run as root (sudo), or set EDGE_SDK_SYSTEM=0 for the venv only"; exit 1; }
        system_packages
    fi
    python_environment
    models
    if [[ "$SYSTEM" == 1 ]]; then
        service_user_and_files
        service
    fi
    log "done"
}

main "$@"
