#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
#   - Python test dependencies (pinned) and clinvk itself (editable)
#   - the genuine claude / codex / gemini CLIs from npm (pinned), for the real-CLI end-to-end tests
#   - redis-server (Debian), for the rate-limit tests across gunicorn workers (they start their own)
#   - postgresql (Debian), for the PostgreSQL session store and the several-hosts tests (tests/services.py
#     starts its own server in a temp dir as the postgres user; the Debian cluster is not used)
#   - nginx, systemd-analyze, shellcheck, openssl (Debian) and hadolint (PyPI), for tests/test_deploy.py
#   - podman, runc, debootstrap (Debian), for tests/test_container.py (builds and runs deploy/Containerfile)
#   - bubblewrap (Debian), for the sandboxed runs (tests/test_sandbox.py, the real-CLI tests)
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k openai`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing Python dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
python3 -m pip install --quiet --disable-pip-version-check --no-deps -e .

echo "== installing redis-server (Debian)"
if ! command -v redis-server >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -qq redis-server >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq redis-server >/dev/null; }
fi
# The tests run their own redis-server on a free port; the Debian service is not needed.

echo "== installing postgresql (Debian)"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -qq postgresql >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq postgresql >/dev/null; }
fi
# tests/services.py runs initdb/pg_ctl from /usr/lib/postgresql/N/bin on a free port.

echo "== installing nginx, systemd-analyze, shellcheck, openssl (Debian) for tests/test_deploy.py"
deploy_pkgs=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || deploy_pkgs="$deploy_pkgs nginx"
command -v systemd-analyze >/dev/null 2>&1 || deploy_pkgs="$deploy_pkgs systemd"
command -v shellcheck >/dev/null 2>&1 || deploy_pkgs="$deploy_pkgs shellcheck"
command -v openssl >/dev/null 2>&1 || deploy_pkgs="$deploy_pkgs openssl"
if [ -n "$deploy_pkgs" ]; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # Like redis-server above: `apt-get update` only when the package lists are too old to install.
    # shellcheck disable=SC2086
    $sudo_cmd apt-get install -y -qq $deploy_pkgs >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq $deploy_pkgs >/dev/null; }
fi
# The tests start their own nginx on free 127.0.0.1 ports; the Debian service is not needed.

echo "== installing podman, runc, debootstrap (Debian) for tests/test_container.py"
container_pkgs=""
command -v podman >/dev/null 2>&1 || container_pkgs="$container_pkgs podman"
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || container_pkgs="$container_pkgs runc"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || container_pkgs="$container_pkgs debootstrap"
if [ -n "$container_pkgs" ]; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    $sudo_cmd apt-get install -y -qq $container_pkgs >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq $container_pkgs >/dev/null; }
fi
# The image's base images (debootstrap, ~3 min the first time on a machine) and the image itself are
# built by tests/test_container.py through scripts/build-base-images.sh; podman caches both.

echo "== installing bubblewrap (Debian) for the sandbox tests"
if ! command -v bwrap >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq bubblewrap >/dev/null; }
fi

echo "== installing the pinned backend CLIs (npm)"
bash scripts/install-clis.sh

echo "== running the tests"
python3 -m pytest -q -p no:cacheprovider "$@"
