#!/usr/bin/env bash
# Validates deploy/kubernetes offline: every manifest against the Kubernetes
# schemas (kubernetes-validate --strict: unknown fields are errors), and
# every file a kustomization.yaml lists exists and is validated.
set -euo pipefail
cd "$(dirname "$0")/../deploy/kubernetes"

manifests=()
while IFS= read -r -d '' kustomization; do
  dir=$(dirname "$kustomization")
  while IFS= read -r entry; do
    path="$dir/$entry"
    if [[ -d "$path" ]]; then
      [[ -f "$path/kustomization.yaml" ]] || { echo "$kustomization: $entry has no kustomization.yaml" >&2; exit 1; }
    elif [[ -f "$path" ]]; then
      manifests+=("$path")
    else
      echo "$kustomization lists $entry, which does not exist" >&2
      exit 1
    fi
  done < <(python3 -c '
import sys, yaml
k = yaml.safe_load(open(sys.argv[1]))
for e in k.get("resources", []):
    print(e)
' "$kustomization")
done < <(find . -name kustomization.yaml -print0)

[[ ${#manifests[@]} -gt 0 ]] || { echo "no manifests found" >&2; exit 1; }
kubernetes-validate --strict --quiet "${manifests[@]}"
echo "${#manifests[@]} manifests valid"
