#!/usr/bin/env sh
# make image: build deploy/Dockerfile with podman into $IMAGE (default localhost/sable:dev).
#
# BASE picks the base image, as in the Dockerfile. Unset, a local base is used: Debian bookworm
# with Python, made once with mmdebstrap from Debian's package mirror and imported as
# localhost/debian-py:bookworm, for machines that reach no image registry (this project's do
# not). Elsewhere, BASE=docker.io/library/python:3.12-slim-bookworm or your registry's mirror.
# Installs podman and mmdebstrap when root with apt-get and they are missing.
set -eu
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/sable:dev}
LOCAL_BASE=localhost/debian-py:bookworm

need() {  # need COMMAND PACKAGE...
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        shift
        echo "installing $* (about a minute)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "$@" >/dev/null
    else
        echo "make image needs $1 (Debian: apt-get install $*)" >&2
        exit 1
    fi
}

need podman podman uidmap
need runc runc  # the smoke test runs containers with runc (crun is refused on sandboxed hosts)
if [ -z "${BASE:-}" ]; then
    BASE=$LOCAL_BASE
    if ! podman image exists "$BASE"; then
        need mmdebstrap mmdebstrap
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        echo "making the local base image $BASE with mmdebstrap (about a minute)" >&2
        mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tmp/rootfs.tar"
        podman import --quiet "$tmp/rootfs.tar" "$BASE" >/dev/null
    fi
fi

# --format docker keeps HEALTHCHECK (OCI has none); chroot isolation and the host's network
# and CA bundle let pip reach the package index from inside the build on a sandboxed machine.
ca=/etc/ssl/certs/ca-certificates.crt
set -- --format docker --isolation chroot --network host
[ -f "$ca" ] && set -- "$@" --volume "$ca:$ca:ro"
echo "building $IMAGE from $BASE" >&2
podman build --quiet "$@" --build-arg "BASE=$BASE" -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
echo "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))" >&2
