#!/usr/bin/env bash
# Brings up a two-node Kubernetes (v1.34) on this machine, entirely inside network namespaces of its own:
#   <prefix>-n1  etcd, kube-apiserver, controller-manager, scheduler, and node1 (containerd, kubelet,
#                kube-proxy); a bridge with the underlay 198.18.100.1/24
#   <prefix>-n2  node2 (containerd, kubelet, kube-proxy), 198.18.100.2 over a veth into that bridge
#   <prefix>-inet an "internet" (203.0.113.10) on that bridge at 198.18.100.254, for the TF example: it
#                answers only the nodes' underlay addresses (what TF's SNAT gives pods), never pods directly
# Each node also gets its own mount namespace in which /var/lib/networkservicemesh, /run/spire,
# /var/lib/contrail and /var/log/containers are the node's own directories (two nodes on one host would
# otherwise share the hostPath directories NSM, SPIRE and TF use). Pods: 100.64.<node>.0/24; Services:
# 198.18.0.0/24.
# Nothing is added to the root network namespace. Images: every tar in $NSM_K8S_DIR/images is imported.
# Binaries: scripts/k8s/build.sh. Afterwards: scripts/k8s/kubectl …; scripts/k8s/down.sh removes it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [ -x "$k8s_bin/$b" ] || { echo "up.sh: $k8s_bin/$b is missing: run scripts/k8s/build.sh" >&2; exit 1; }
done
for c in containerd runc etcd ctr nsenter unshare iptables; do
  command -v "$c" >/dev/null || { echo "up.sh: $c is missing (scripts/k8s/install-deps.sh)" >&2; exit 1; }
done
if [ -f "$state/prefix" ]; then
  echo "up.sh: a cluster ($(prefix)) is already up in $state: scripts/k8s/down.sh first" >&2
  exit 1
fi

t0=$(date +%s.%N)
ts() { printf 'up [%5.1fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
mkdir -p "$state/pids" "$state/logs"
p=nk$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
echo "$p" >"$state/prefix"
api_ip=$node_net.1
n1=/run/netns/$p-n1

# start NAME CMD...: in the background, logged, its PID recorded for down.sh.
start() {
  local name=$1
  shift
  "$@" >"$state/logs/$name.log" 2>&1 &
  echo $! >"$state/pids/$name.pid"
}
wait_for() { # DESCRIPTION SECONDS CMD...
  local what=$1 secs=$2
  shift 2
  for _ in $(seq $((secs * 4))); do
    "$@" >/dev/null 2>&1 && { ts "$what"; return 0; }
    sleep 0.25
  done
  echo "up.sh: timed out waiting for $what (logs: $state/logs)" >&2
  return 1
}

bash "$here/pki.sh" "$state/pki" "$api_ip" node1 node2
pki=$state/pki

# ---- the underlay ----
ip netns add "$p-n1"
ip netns add "$p-n2"
ip netns add "$p-inet"
ip -n "$p-n1" link set lo up
ip -n "$p-n2" link set lo up
ip -n "$p-inet" link set lo up
ip -n "$p-n1" link add "$p-br" type bridge
ip -n "$p-n1" addr add "$api_ip/24" dev "$p-br"
ip -n "$p-n1" link set "$p-br" up
ip -n "$p-n1" link add "$p-v2" type veth peer name eth0 netns "$p-n2"
ip -n "$p-n1" link set "$p-v2" master "$p-br" up
ip -n "$p-n2" addr add "$node_net.2/24" dev eth0
ip -n "$p-n2" link set eth0 up
ip -n "$p-n2" route add default via "$api_ip"
ip -n "$p-n1" route add 100.64.2.0/24 via "$node_net.2"
# Service addresses must be routable for kube-proxy's DNAT to see the packets (node 2 has its default route).
ip -n "$p-n1" route add "$svc_cidr" dev "$p-br"
for n in 1 2; do ip netns exec "$p-n$n" sysctl -qw net.ipv4.ip_forward=1; done
ip -n "$p-n1" link add "$p-vi" type veth peer name eth0 netns "$p-inet"
ip -n "$p-n1" link set "$p-vi" master "$p-br" up
ip -n "$p-inet" addr add "$node_net.254/24" dev eth0
ip -n "$p-inet" addr add 203.0.113.10/32 dev lo
ip -n "$p-inet" link set eth0 up
for n in 1 2; do ip -n "$p-n$n" route add 203.0.113.0/24 via "$node_net.254"; done
ts "network namespaces $p-n1, $p-n2, $p-inet"

# ---- control plane (in node 1's network namespace) ----
in_n1=(nsenter --net="$n1")
start etcd "${in_n1[@]}" etcd --name "$p" --data-dir "$state/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$p=http://127.0.0.1:2380" --quota-backend-bytes 2147483648
wait_for etcd 30 "${in_n1[@]}" curl -sf http://127.0.0.1:2379/health
start kube-apiserver "${in_n1[@]}" "$k8s_bin/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$api_ip" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range="$svc_cidr" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-preferred-address-types=InternalIP,Hostname --allow-privileged=true --profiling=false
wait_for kube-apiserver 120 "${in_n1[@]}" curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
  --key "$pki/admin.key" https://127.0.0.1:6443/readyz
start kube-controller-manager "${in_n1[@]}" "$k8s_bin/kube-controller-manager" \
  --kubeconfig="$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$pki/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$pki/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --service-cluster-ip-range="$svc_cidr" --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key"
start kube-scheduler "${in_n1[@]}" "$k8s_bin/kube-scheduler" --kubeconfig="$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig="$pki/scheduler.kubeconfig" --authorization-kubeconfig="$pki/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false

# ---- nodes ----
: >"$state/created-dirs"
for d in /var/lib/networkservicemesh /run/spire /var/lib/contrail /var/log/containers; do
  [ -d "$d" ] || { mkdir -p "$d"; echo "$d" >>"$state/created-dirs"; }
done
node_up() { # N
  local n=$1 name=node$1 ip=$node_net.$1 d=$state/node$1 holder
  mkdir -p "$d/cni" "$d/cni-ipam" "$d/kubelet" "$d/host/nsm" "$d/host/spire" "$d/host/contrail" \
    "$d/host/containers-log"
  # The node's mount namespace, held by a sleeping process: the node's own hostPath directories.
  start "mounts-$name" nsenter --net="/run/netns/$p-n$n" unshare --mount --propagation slave sh -c \
    "mount --bind $d/host/nsm /var/lib/networkservicemesh && mount --bind $d/host/spire /run/spire &&
     mount --bind $d/host/contrail /var/lib/contrail &&
     mount --bind $d/host/containers-log /var/log/containers && exec sleep infinity"
  holder=$(cat "$state/pids/mounts-$name.pid")
  wait_for "$name mount namespace" 10 sh -c "[ \"\$(readlink /proc/$holder/ns/mnt)\" != \"\$(readlink /proc/self/ns/mnt)\" ] && grep -q ' /run/spire ' /proc/$holder/mounts"
  readlink "/proc/$holder/ns/mnt" >"$state/node$n.mntns"
  local in_node=(nsenter -t "$holder" --mount --net)

  # The node's cgroup root in every v1 hierarchy (cpuset needs cpus/mems before tasks can join).
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c" ] || continue
    mkdir -p "$c/$p-$name"
    if [ -f "$c/cpuset.cpus" ]; then
      cat "$c/cpuset.cpus" >"$c/$p-$name/cpuset.cpus"
      cat "$c/cpuset.mems" >"$c/$p-$name/cpuset.mems"
    fi
  done

  cat >"$d/containerd.toml" <<EOF2
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$d/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:1"
  # This VM's root lacks CAP_SYS_RESOURCE: never lower a container's oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /var/run/netns: removed with it, invisible to others.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
EOF2
  cat >"$d/cni/10-nsm-ts-local.conflist" <<EOF2
{
  "cniVersion": "1.0.0",
  "name": "nsm-ts-local",
  "plugins": [
    {"type": "bridge", "bridge": "$p-c$n", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$d/cni-ipam",
              "ranges": [[{"subnet": "100.64.$n.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF2
  # Pods with dnsPolicy Default get no resolver: names outside the cluster fail at once, inside the namespaces.
  : >"$d/resolv.conf"
  cat >"$d/kubelet.yaml" <<EOF2
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$p-$name
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$d/containerd.sock
address: 0.0.0.0
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [198.18.0.10]
resolvConf: $d/resolv.conf
podLogsDir: $d/pod-logs
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 60
serializeImagePulls: false
# Config maps (SPIRE's bundle) reach mounted volumes within seconds, not a minute.
syncFrequency: 10s
EOF2
  start "containerd-$name" "${in_node[@]}" containerd --config "$d/containerd.toml"
  wait_for "containerd on $name" 30 ctr -a "$d/containerd.sock" version
  for t in "$k8s_dir"/images/*.tar; do
    ctr -a "$d/containerd.sock" -n k8s.io images import "$t" >/dev/null
  done
  ts "images imported into $name"
  start "kubelet-$name" "${in_node[@]}" "$k8s_bin/kubelet" --config="$d/kubelet.yaml" \
    --kubeconfig="$pki/$name.kubeconfig" --root-dir="$d/kubelet" --hostname-override="$name" --node-ip="$ip" \
    --cert-dir="$d/kubelet/pki"
  cat >"$d/kube-proxy.yaml" <<EOF2
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $pki/kube-proxy.kubeconfig}
hostnameOverride: $name
mode: iptables
clusterCIDR: $cluster_cidr
conntrack: {maxPerCore: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF2
  start "kube-proxy-$name" "${in_node[@]}" "$k8s_bin/kube-proxy" --config="$d/kube-proxy.yaml"
}
node_up 1
node_up 2

k=("$here/kubectl")
for n in 1 2; do
  wait_for "node$n Ready" 180 sh -c "${k[*]} get node node$n -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
done
# Pods cannot be created in a namespace before its "default" ServiceAccount exists.
wait_for "default service account" 60 "${k[@]}" -n default get serviceaccount default
"${k[@]}" apply -f "$here/cluster-dns.yaml" >/dev/null
"${k[@]}" -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null
ts "cluster DNS"
"${k[@]}" get nodes -o wide
ts "cluster $p up: scripts/k8s/kubectl get nodes"
