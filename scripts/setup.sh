#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) for this project: system packages, a virtual
# environment with torch from the local wheel cache, and the package itself with its test tools.
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)  # the app's browser test drives Debian's Chromium
# the storage tests start a throwaway PostgreSQL cluster (initdb/pg_ctl)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_packages+=(postgresql)
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "setup: apt-get install ${apt_packages[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; $PY -m venv .venv; }
stamp=.venv/.study-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
    # torch's CUDA build and its libraries take about 7 GB in .venv; a full disk otherwise ends in
    # a half-installed environment and pip's mid-download errors
    free_gb=$(df --output=avail -BG . | tail -1 | tr -dc 0-9)
    if [ ! -d .venv/lib/python3*/site-packages/torch ] && [ "$free_gb" -lt 9 ]; then
        echo "setup: error: $free_gb GB free on $(df --output=target . | tail -1), the environment needs about 9 GB; free some space and re-run" >&2
        exit 1
    fi
    export PIP_RETRIES=10 PIP_RESUME_RETRIES=10  # a dropped download resumes instead of failing the setup
    echo "setup: installing torch 2.14.1 / torchvision 0.29.1 and the study package (a few minutes the first time)"
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, torchvision, ray, optuna, study" 
    echo "$want" > $stamp
fi
