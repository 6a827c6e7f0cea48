#!/usr/bin/env bash
# A throw-away PKI for the local cluster (openssl): a CA, the API server's serving certificate, client
# certificates for the control plane, kube-proxy, each kubelet and an admin, the service-account key pair,
# and a kubeconfig per client. Usage: pki.sh DIR API_IP NODE...
set -euo pipefail
dir=$1 api_ip=$2
shift 2
mkdir -p "$dir"
cd "$dir"
[ -f ca.crt ] && exit 0

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=nsm-ts-local-ca" 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

# cert NAME CN [ORG] [SANS]: a leaf signed by the CA; with SANs it also serves.
cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-} subj
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 30 \
    -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
# kubeconfig NAME SERVER: a kubeconfig with NAME's client certificate.
kubeconfig() {
  cat >"$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {certificate-authority: $dir/ca.crt, server: "$2"}}]
users: [{name: $1, user: {client-certificate: $dir/$1.crt, client-key: $dir/$1.key}}]
contexts: [{name: local, context: {cluster: local, user: $1}}]
current-context: local
KC
}

cert apiserver kube-apiserver "" \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$api_ip,IP:198.18.0.1"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert admin nsm-ts-admin system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy
kubeconfig admin "https://$api_ip:6443"
kubeconfig controller-manager "https://127.0.0.1:6443"
kubeconfig scheduler "https://127.0.0.1:6443"
kubeconfig kube-proxy "https://$api_ip:6443"
for n in "$@"; do
  cert "$n" "system:node:$n" system:nodes
  kubeconfig "$n" "https://$api_ip:6443"
done
