#!/usr/bin/env bash
# Smoke-test the wirelab chart on a real cluster (kind, minikube, or any), before a release.
#
#   scripts/cluster-smoke.sh --image ghcr.io/wirelab/wirelab:0.1.0
#   scripts/cluster-smoke.sh --build --load kind          # build the image here, load it into kind
#   scripts/cluster-smoke.sh --build --load minikube --keep
#
# Uses the current kubectl context. In a fresh namespace it:
#   1. installs the lab (targets, Redis, InfluxDB, Grafana, master, workers) and waits;
#   2. runs `helm test` (every target answers its readiness check through its Service);
#   3. checks the master's RBAC: it may patch target Deployments and delete pods, nothing else;
#   4. rolls the WebSocket target with wirelab's KubernetesOrchestrator from this machine
#      (the same code the rolling-deploy scenario runs in the master) and kills one SSE pod;
#   5. runs a short headless smoke run as a second release in job mode against the lab's
#      targets, and checks that its Job exits with code 0 (wirelab's verdict);
#   6. uninstalls both releases and deletes the namespace (unless --keep).
# Exits 0 when every step passed; otherwise prints which step failed and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image=""
build=false
load=""
keep=false
namespace="wirelab-smoke-$(date +%s)"
timeout="10m"

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --image) image="$2"; shift 2 ;;
        --build) build=true; shift ;;
        --load) load="$2"; shift 2 ;;
        --namespace) namespace="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --keep) keep=true; shift ;;
        -h | --help) usage ;;
        *) echo "cluster-smoke: unknown option $1" >&2; usage ;;
    esac
done

step() { printf '\n== %s\n' "$*"; }
fail() { printf '\ncluster-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# Tools: the ones on PATH, else the pinned ones from scripts/k8s-tools.sh.
helm="$(command -v helm || "$root/scripts/k8s-tools.sh" helm)"
kubectl="$(command -v kubectl || "$root/scripts/k8s-tools.sh" kubectl)"
python="$root/.venv/bin/python"
[[ -x $python ]] || python="$(command -v python3)"

chart_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/wirelab/Chart.yaml")"
image="${image:-ghcr.io/wirelab/wirelab:$chart_version}"
repository="${image%:*}"
tag="${image##*:}"

context="$("$kubectl" config current-context)" || fail "no current kubectl context"
step "cluster: $context, namespace: $namespace, image: $image"
"$kubectl" version >/dev/null || fail "the cluster does not answer"

if $build; then
    step "building $image"
    docker build -t "$image" "$root"
fi
case "$load" in
    "") ;;
    kind) kind load docker-image "$image" ;;
    minikube) minikube image load "$image" ;;
    *) fail "--load takes kind or minikube" ;;
esac

cleanup() {
    if $keep; then
        echo "kept namespace $namespace (delete it with: kubectl delete namespace $namespace)"
        return
    fi
    "$helm" uninstall smoke-job -n "$namespace" --wait >/dev/null 2>&1 || true
    "$helm" uninstall lab -n "$namespace" --wait >/dev/null 2>&1 || true
    "$kubectl" delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

image_args=(--set "image.repository=$repository" --set "image.tag=$tag")
if [[ -n $load ]]; then
    image_args+=(--set image.pullPolicy=IfNotPresent)
fi

step "1. install the lab"
"$kubectl" create namespace "$namespace" >/dev/null
"$helm" install lab "$root/helm/wirelab" -n "$namespace" "${image_args[@]}" \
    --set influxdb.persistence.enabled=false \
    --wait --timeout "$timeout" || fail "helm install lab"

step "2. helm test"
"$helm" test lab -n "$namespace" --logs || fail "helm test: a target did not answer"

step "3. the master's RBAC is the Role's list, nothing more"
sa="system:serviceaccount:$namespace:lab-wirelab"
can() { "$kubectl" auth can-i "$@" -n "$namespace" --as "$sa"; }
[[ $(can patch deployment/lab-wirelab-ws) == yes ]] || fail "cannot patch the ws Deployment"
[[ $(can delete pods) == yes ]] || fail "cannot delete pods"
[[ $(can patch deployment/lab-wirelab-master) == no ]] || fail "may patch a non-target Deployment"
[[ $(can get secrets) == no ]] || fail "may read Secrets"
[[ $(can delete deployments) == no ]] || fail "may delete Deployments"
[[ $("$kubectl" auth can-i list pods -A --as "$sa") == no ]] || fail "may list pods cluster-wide"

step "4. rolling restart of ws and a killed sse pod, through KubernetesOrchestrator"
WIRELAB_K8S_NAMESPACE="$namespace" WIRELAB_K8S_INSTANCE=lab WIRELAB_K8S_NAME_PREFIX=lab-wirelab- \
    "$python" - <<'PY' || fail "KubernetesOrchestrator"
from wirelab.lab.kubernetes import KubernetesOrchestrator

lab = KubernetesOrchestrator.from_environment()
result = lab.rolling_restart("ws", timeout=300)
print(f"rolling_restart ws: {result.duration_s:.1f}s, replaced {result.affected}")
killed = lab.kill("sse", 1)
print(f"kill sse: {killed.affected}")
lab.wait_ready("sse", timeout=180)
print("sse ready again")
PY

step "5. a headless smoke run in job mode against the lab's targets"
"$helm" install smoke-job "$root/helm/wirelab" -n "$namespace" "${image_args[@]}" \
    --set mode=job --set run.scenario=smoke --set run.duration=30s --set workers.replicas=2 \
    --set targets.rest.enabled=false --set targets.sse.enabled=false \
    --set targets.ws.enabled=false --set targets.grpc.enabled=false \
    --set redis.enabled=false --set influxdb.enabled=false --set grafana.enabled=false \
    --set tests.enabled=false \
    --set run.targetUrls.rest=http://lab-wirelab-rest:8080 \
    --set run.targetUrls.sse=http://lab-wirelab-sse:8081 \
    --set run.targetUrls.ws=ws://lab-wirelab-ws:8082 \
    --set run.targetUrls.grpc=dns:///lab-wirelab-grpc-headless:8083 \
    --wait --wait-for-jobs --timeout "$timeout" || true
"$kubectl" -n "$namespace" logs --tail=40 job/smoke-job-wirelab-run || true
code="$("$kubectl" -n "$namespace" get pods -l batch.kubernetes.io/job-name=smoke-job-wirelab-run \
    -o jsonpath='{.items[-1].status.containerStatuses[0].state.terminated.exitCode}')"
[[ $code == 0 ]] || fail "the job-mode run exited with ${code:-no exit code} (0 expected)"

step "passed: lab installed, helm test, RBAC, rolling restart, kill, job-mode verdict 0"
