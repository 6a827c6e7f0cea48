#!/usr/bin/env bash
# Builds Jaeger (the all-in-one `jaeger` binary, Jaeger v2 = Go module github.com/jaegertracing/jaeger v1.75.0)
# from the Go module proxy with the local Go toolchain, for the observability tests that export real traces
# over OTLP and read them back from Jaeger's query API (test/helpers/jaeger.ts).
# Output: .cache/jaeger/bin/jaeger, or $NSM_JAEGER_BIN_DIR/jaeger when set.
# Idempotent: exits at once when the binary is there and was built from this module version.
# Cost of a first build (2-core machine, empty Go module and build caches, other tests running): 316 s, about
# 1.3 GB of module downloads and 1.6 GB of build cache; a re-run with the binary in place takes ~0.01 s.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.75.0
module=github.com/jaegertracing/jaeger
bin="${NSM_JAEGER_BIN_DIR:-$PWD/.cache/jaeger/bin}"
stamp="$bin/VERSION"

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi

# The binary's own build info names the Jaeger module version it was built from (go version -m); without Go,
# trust the stamp this script writes after a build.
built_version() {
  if command -v go >/dev/null; then
    go version -m "$bin/jaeger" 2>/dev/null | awk -v m="$module" '($1 == "dep" || $1 == "mod") && $2 == m { print $3 }'
  else
    cat "$stamp" 2>/dev/null
  fi
}
if [ -x "$bin/jaeger" ] && [ "$(built_version)" = "$version" ]; then
  echo "build-jaeger.sh: Jaeger $version already in $bin"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "build-jaeger.sh: the Go toolchain (1.24 or newer, for 'go get -tool') is needed to build Jaeger" >&2
  exit 1
fi
# Never fetch another toolchain: if Jaeger needs a newer Go than this one, say so and stop.
export GOTOOLCHAIN=local

echo "build-jaeger.sh: building Jaeger $version into $bin with $(go version)"
start=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
(
  cd "$work"
  go mod init jaeger-build >/dev/null 2>&1
  go get -tool "$module/cmd/jaeger@$version"
  GOBIN="$bin" go install tool
)
echo "$version" >"$stamp"
echo "build-jaeger.sh: done in $(($(date +%s) - start)) s"
