#!/usr/bin/env bash
# Imports the images of $NSM_K8S_DIR/images (scripts/k8s/images.sh) into every node of the running local
# cluster, e.g. after a rebuild; pods pick them up when recreated (imagePullPolicy IfNotPresent, local tags).
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ -n "$(prefix)" ] || { echo "load-images.sh: no local cluster is up" >&2; exit 1; }
for sock in "$state"/node*/containerd.sock; do
  for t in "${@:-$k8s_dir/images/*.tar}"; do
    for f in $t; do ctr -a "$sock" -n k8s.io images import "$f" >/dev/null; done
  done
done
echo "load-images.sh: imported into $(ls -d "$state"/node*/ | wc -l) nodes"
