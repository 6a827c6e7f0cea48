#!/usr/bin/env bash
# Builds nsm-interop-peer, the Go peer that plays upstream NSM components (sdk v1.18.0 behaviour) against
# nsm-ts in test/interop/*.test.ts. Output: .cache/interop/nsm-interop-peer, or $NSM_INTEROP_BIN_DIR when set.
# The Go module is test/interop/peer (go.mod/go.sum committed); its protobuf/gRPC code is generated here from
# OUR proto/ files (buf + protoc-gen-go + protoc-gen-go-grpc, the plugins installed into .cache/interop/bin)
# into test/interop/peer/gen, which git ignores.
# Idempotent: exits at once when the binary is newer than every input (proto/, the module's sources, this
# script). --test also runs the module's Go unit tests (go test ./...), even when the binary is up to date.
# Cost (measured on a 2-core machine): cold, with empty Go module and build caches, 72 s (module downloads,
# the two plugins, ~40 s of compiling grpc and go-spiffe); warm caches, after a source change, ~2 s; up to
# date, under 0.1 s. --test adds ~3 s with warm caches.
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=false
[ "${1:-}" = "--test" ] && run_tests=true

src=test/interop/peer
bin_dir="${NSM_INTEROP_BIN_DIR:-$PWD/.cache/interop}"
out="$bin_dir/nsm-interop-peer"
tools="$PWD/.cache/interop/bin"
protoc_gen_go=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
protoc_gen_go_grpc=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "build-interop-peer.sh: the Go toolchain (1.26 or newer; see $src/go.mod) is needed to build the interop peer" >&2
  exit 1
fi
# Never fetch another toolchain: if the module needs a newer Go than this one, say so and stop.
export GOTOOLCHAIN=local

inputs_newer() {
  [ ! -x "$out" ] && return 0
  [ "$0" -nt "$out" ] && return 0
  [ -n "$(find proto "$src" -path "$src/gen" -prune -o -type f -newer "$out" -print -quit)" ]
}

if inputs_newer; then
  start=$(date +%s)
  echo "build-interop-peer.sh: building $out with $(go version)"
  mkdir -p "$tools" "$bin_dir"
  stamp="$tools/VERSIONS"
  want="$protoc_gen_go $protoc_gen_go_grpc"
  if [ ! -x "$tools/protoc-gen-go" ] || [ ! -x "$tools/protoc-gen-go-grpc" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    GOBIN="$tools" go install "$protoc_gen_go"
    GOBIN="$tools" go install "$protoc_gen_go_grpc"
    echo "$want" >"$stamp"
  fi
  if [ ! -x node_modules/.bin/buf ]; then
    echo "build-interop-peer.sh: node_modules/.bin/buf is missing: run npm ci first" >&2
    exit 1
  fi
  PATH="$tools:$PATH" node_modules/.bin/buf generate --template "$src/buf.gen.yaml" \
    --path proto/connectioncontext.proto --path proto/connection.proto \
    --path proto/networkservice.proto --path proto/registry.proto
  (cd "$src" && go build -trimpath -o "$out" .)
  echo "build-interop-peer.sh: done in $(($(date +%s) - start)) s"
else
  echo "build-interop-peer.sh: $out is up to date"
fi

if $run_tests; then
  (cd "$src" && go vet ./... && go test -count=1 ./...)
fi
