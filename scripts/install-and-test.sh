#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it. This is the README's test
# command and exactly what CI (.ci/run) runs:
#
#   bash scripts/install-and-test.sh              # the default suite (pytest -q; soak tests: -q -m soak)
#   bash scripts/install-and-test.sh -k deploy    # other pytest arguments replace the defaults
#
# 1. prints the CPU and its ISA flags (INT8 results depend on them);
# 2. installs the system tools the tests call (Debian packages; needs root or password-less sudo);
# 3. installs torch pinned (first: an unpinned torch pulls GBs of CUDA wheels), then this project with
#    its export and dev extras, into whatever `python3` is (use a venv for a workstation);
# 4. runs pytest; "no tests collected" is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
# command the tests run -> Debian package that provides it (tests fail, never skip, without them)
SYSTEM_TOOLS=(
    "shellcheck:shellcheck"
    "systemd-analyze:systemd"
    "qemu-x86_64:qemu-user"  # tests/test_int8_isa.py runs onnxruntime's AVX2 (non-VNNI) int8 kernels under qemu
    "mosquitto:mosquitto"  # forwarder and ward station tests start a real broker on 127.0.0.1
    "mosquitto_pub:mosquitto-clients"  # the station recipe clears retained states with it
    "chromium:chromium"  # the ward page is tested in a real headless browser
    "chromedriver:chromium-driver"
)

say() { printf '[install-and-test] %s\n' "$*"; }

print_machine() {
    local model flags
    model="$(grep -m1 -E '^(model name|Model|Hardware)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
    flags="$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- \
        | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_int8|asimd|asimddp|i8mm)$' \
        | tr '\n' ' ' || true)"
    say "machine: ${model:-unknown CPU} ($(uname -m)), $(nproc) cores; ISA: ${flags:-none of avx2/avx512/vnni/neon}"
}

install_system_tools() {
    local missing=() entry
    for entry in "${SYSTEM_TOOLS[@]}"; do
        command -v "${entry%%:*}" >/dev/null || missing+=("${entry#*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            say "error: the tests need: ${missing[*]}; install them: sudo apt-get install -y ${missing[*]}"
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        say "error: the tests need the Debian packages ${missing[*]} (or your system's equivalents); no apt-get here"
        exit 1
    fi
    say "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
    say "pip install $TORCH_PIN, then -e .[export,forward,station,data,ray,dev] into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$PYTHON" -m pip install -q "$TORCH_PIN"
    "$PYTHON" -m pip install -q -e ".[export,forward,station,data,ray,dev]"
}

run_tests() {
    local args=("$@")
    [[ ${#args[@]} -eq 0 ]] && args=(-q)
    say "pytest ${args[*]}"
    local status=0
    PYTHONUNBUFFERED=1 "$PYTHON" -m pytest "${args[@]}" || status=$?
    if [[ $status -eq 5 ]]; then
        say "failure: pytest collected no tests"
        return 1
    fi
    return "$status"
}

print_machine
install_system_tools
install_python_packages
run_tests "$@"
