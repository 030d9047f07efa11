#!/usr/bin/env bash
# Sets up this machine (as root) for `make test-cluster`: the packages the local node needs
# (debootstrap, crun, iproute2, containers-common's RuntimeDefault seccomp profile) and the image:
# k8s/Dockerfile's layers, built or found in the cache ($STUDY_IMAGE_CACHE, default
# /var/cache/lottery-study, outside the clone). Safe to re-run: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "setup_cluster: run as root (debootstrap, overlay mounts, crun, network namespaces)" >&2
    exit 2
fi
packages=()
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v crun >/dev/null || packages+=(crun)
command -v ip >/dev/null || packages+=(iproute2)
command -v unshare >/dev/null || packages+=(util-linux)
[ -f /usr/share/containers/seccomp.json ] || packages+=(golang-github-containers-common)
if [ ${#packages[@]} -gt 0 ]; then
    echo "setup_cluster: apt-get install ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
.venv/bin/python -m study.deploy.local.rootfs --dockerfile k8s/Dockerfile --context .
