#!/usr/bin/env bash
# Builds spire-server and spire-agent (SPIRE v1.13.3) from source with the local Go toolchain, for the SPIRE
# end-to-end test (test/e2e/spire.test.ts). Output: .cache/spire/bin, or $NSM_SPIRE_BIN_DIR when set.
# Idempotent: exits at once when both binaries of this version are already there.
# Cost of a first build: ~1 min of module downloads and ~9 min of compiling (one machine, cold caches);
# re-runs with a warm Go build cache take well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.13.3
bin="${NSM_SPIRE_BIN_DIR:-$PWD/.cache/spire/bin}"
stamp="$bin/VERSION"

if [ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "build-spire.sh: SPIRE $version already in $bin"
  exit 0
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "build-spire.sh: the Go toolchain (1.24 or newer, for 'go get -tool') is needed to build SPIRE" >&2
  exit 1
fi
# Never fetch another toolchain: if SPIRE needs a newer Go than this one, say so and stop.
export GOTOOLCHAIN=local

echo "build-spire.sh: building SPIRE $version into $bin with $(go version)"
start=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
(
  cd "$work"
  go mod init spire-build >/dev/null 2>&1
  go get -tool "github.com/spiffe/spire/cmd/spire-agent@$version" "github.com/spiffe/spire/cmd/spire-server@$version"
  GOBIN="$bin" go install tool
)
echo "$version" >"$stamp"
echo "build-spire.sh: done in $(($(date +%s) - start)) s"
