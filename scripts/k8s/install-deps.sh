#!/usr/bin/env bash
# Debian packages the local Kubernetes cluster needs (run as root; installs only what is missing):
# containerd + runc (one runtime per node), etcd, the CNI plugins (bridge, host-local, portmap), iptables and
# conntrack (kube-proxy), busybox-static (the example client image), curl and bc (up.sh).
set -euo pipefail
packages=(containerd runc etcd-server containernetworking-plugins busybox-static iptables conntrack curl bc)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "k8s/install-deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
