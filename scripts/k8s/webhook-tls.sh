#!/usr/bin/env bash
# Writes the admission webhook's TLS files: a CA (ca.crt, the registration's caBundle) and a serving
# certificate signed by it (tls.crt, tls.key) for the webhook Service's DNS names, EC P-256, valid one year.
# kustomize's secretGenerator in deploy/k8s/apps/admission-webhook-k8s reads them into the Secret
# admission-webhook-tls. The CA key is thrown away: to rotate, delete the files and run this again.
# Idempotent: keeps the files while they belong together, name the Service and are valid for 30 more days.
# Usage: scripts/k8s/webhook-tls.sh [dir]   (default deploy/k8s/apps/admission-webhook-k8s/tls)
# Env: NSM_SERVICE_NAME (admission-webhook-svc), NSM_NAMESPACE (nsm-system).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/deploy/k8s/apps/admission-webhook-k8s/tls}
svc=${NSM_SERVICE_NAME:-admission-webhook-svc}
ns=${NSM_NAMESPACE:-nsm-system}
command -v openssl >/dev/null || { echo "webhook-tls.sh: the openssl CLI is needed (apt-get install -y openssl)" >&2; exit 1; }

up_to_date() {
  local f
  for f in ca.crt tls.crt tls.key; do [ -s "$dir/$f" ] || return 1; done
  openssl x509 -in "$dir/tls.crt" -noout -checkend $((30 * 86400)) >/dev/null &&
    openssl x509 -in "$dir/ca.crt" -noout -checkend $((30 * 86400)) >/dev/null &&
    openssl verify -CAfile "$dir/ca.crt" "$dir/tls.crt" >/dev/null 2>&1 &&
    openssl x509 -in "$dir/tls.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:$svc.$ns.svc\b" &&
    [ "$(openssl x509 -in "$dir/tls.crt" -noout -pubkey)" = "$(openssl pkey -in "$dir/tls.key" -pubout)" ]
}

if up_to_date; then
  echo "webhook-tls.sh: $dir holds a valid CA and serving certificate for $svc.$ns.svc"
  exit 0
fi

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.crt" -days 365 \
  -subj "/CN=$svc.$ns CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new "${ec[@]}" -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$svc.$ns.svc" 2>/dev/null
cat >"$work/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc
EOF
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 365 -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

mkdir -p "$dir"
# The key first and the CA last: a reader that sees the new ca.crt sees the whole new set.
for f in tls.key tls.crt ca.crt; do
  cp "$work/$f" "$dir/.$f.tmp"
  mv -f "$dir/.$f.tmp" "$dir/$f"
done
chmod 644 "$dir/ca.crt" "$dir/tls.crt"
echo "webhook-tls.sh: wrote $dir/{ca.crt,tls.crt,tls.key} for $svc, $svc.$ns, $svc.$ns.svc (1 year)"
