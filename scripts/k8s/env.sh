# Shared by the scripts/k8s scripts (sourced): where the local cluster lives and what it is called.
# NSM_K8S_DIR        state, images, logs (default /var/lib/nsm-ts-k8s)
# NSM_K8S_CACHE      built Kubernetes binaries, kept across runs (default /var/cache/nsm-ts/k8s)
# K8S_VERSION        default v1.34.4
k8s_version=${K8S_VERSION:-v1.34.4}
k8s_dir=${NSM_K8S_DIR:-/var/lib/nsm-ts-k8s}
k8s_bin=${NSM_K8S_BIN:-${NSM_K8S_CACHE:-/var/cache/nsm-ts/k8s}/$k8s_version/bin}
state=$k8s_dir/cluster
# Underlay: the API server and node 1 at .1 on a bridge in node 1's network namespace, node 2 at .2.
node_net=198.18.100
svc_cidr=198.18.0.0/24
cluster_cidr=100.64.0.0/17
# The per-run prefix of every network namespace, link and cgroup the cluster makes (up.sh picks it).
prefix() { cat "$state/prefix" 2>/dev/null; }
