#!/usr/bin/env bash
# Builds the Kubernetes binaries the local test cluster runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl) and its cluster DNS (CoreDNS) from the Go module proxy, into a
# cache outside the repository.
# k8s.io/kubernetes replaces its staging modules with ./staging, so `go install …@v` is refused: a throw-away
# module requires it and points every staging module at its published v0.Y.Z twin instead.
# Idempotent: exits at once when this version's binaries are in the cache.
# Cold: ~8-9 min of compiling on 2 cores (3-4 GB of Go build cache) and ~3 min for CoreDNS; warm: ~20 s.
# Env: NSM_K8S_CACHE (default /var/cache/nsm-ts/k8s), K8S_VERSION (default v1.34.4), COREDNS_VERSION (v1.14.7).
set -euo pipefail
version=${K8S_VERSION:-v1.34.4}
coredns_version=${COREDNS_VERSION:-v1.14.7}
cache=${NSM_K8S_CACHE:-/var/cache/nsm-ts/k8s}
bin="$cache/$version/bin"
cmds="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
export GOTOOLCHAIN=local

coredns="$cache/coredns-$coredns_version/coredns"
if [ ! -x "$coredns" ]; then
  echo "k8s/build.sh: building CoreDNS $coredns_version into $(dirname "$coredns")"
  start=$(date +%s)
  CGO_ENABLED=0 GOBIN="$(dirname "$coredns")" go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$coredns_version"
  echo "k8s/build.sh: CoreDNS done in $(($(date +%s) - start)) s"
fi

have=1
for c in $cmds; do [ -x "$bin/$c" ] || have=0; done
if [ "$have" = 1 ]; then
  echo "k8s/build.sh: Kubernetes $version already in $bin"
  exit 0
fi
command -v go >/dev/null || { echo "k8s/build.sh: the Go toolchain is needed to build Kubernetes" >&2; exit 1; }

echo "k8s/build.sh: building Kubernetes $version into $bin with $(go version)"
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
cd "$work"

go mod download -json "k8s.io/kubernetes@$version" >/dev/null
upmod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$version.mod"
staging_version="v0.${version#v1.}"
{
  echo "module nsm-k8s-build"
  grep -m1 '^go ' "$upmod"
  grep -m1 '^godebug ' "$upmod" || true
  echo "require k8s.io/kubernetes $version"
  echo "replace ("
  sed -n '/^replace (/,/^)/p' "$upmod" | awk '/=> \.\/staging/{print $1}' | grep -v '^k8s.io/sample-' |
    while read -r m; do echo "	$m => $m $staging_version"; done
  echo ")"
} >go.mod
{
  echo "//go:build tools"
  echo "package build"
  echo "import ("
  for c in $cmds; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
  echo ")"
} >tools.go
GOFLAGS=-mod=mod go mod tidy -e

# Version stamping as Kubernetes' hack/lib/version.sh does, so `kubectl version` and the nodes say $version.
minor=$(echo "$version" | cut -d. -f2)
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  ld="$ld -X $p.buildDate=1970-01-01T00:00:00Z"
done
pkgs=""
for c in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
# shellcheck disable=SC2086
CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin/" $pkgs
echo "k8s/build.sh: done in $(($(date +%s) - start)) s"
