#!/usr/bin/env bash
# Removes the local cluster up.sh made, and only it: every process in its cgroups (the pods), in its nodes'
# mount namespaces (kubelets, containerds, shims) and in its network namespaces (the control plane); then
# its network namespaces (and with them every link, route and iptables rule made inside), cgroups, the
# directories up.sh created, and its state. Safe to run twice; KEEP_LOGS=1 keeps $NSM_K8S_DIR/cluster/logs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
p=$(prefix)
if [ -z "$p" ]; then
  echo "down.sh: no local cluster in $state"
  exit 0
fi
t0=$(date +%s)
step() { echo "down [$(($(date +%s) - t0))s] $*"; }

# pids_of: processes in our pod cgroups, our node mount namespaces, or our network namespaces.
pids_of() {
  local inodes="" f n
  for f in "$state"/node*.mntns; do [ -f "$f" ] && inodes="$inodes $(tr -dc 0-9 <"$f")"; done
  find /sys/fs/cgroup/ -path "*/$p-node*" -name cgroup.procs -exec cat {} + 2>/dev/null
  for n in n1 n2 inet; do ip netns pids "$p-$n" 2>/dev/null; done
  [ -n "$inodes" ] && stat -L -c '%i %n' /proc/[0-9]*/ns/mnt 2>/dev/null |
    awk -v want="$inodes" 'BEGIN { split(want, w, " "); for (i in w) m[w[i]] = 1 } ($1 in m) { split($2, a, "/"); print a[3] }'
}
kill_all() { # SIGNAL
  local pids
  pids=$(pids_of | sort -un | grep -vx "$$")
  [ -n "$pids" ] && kill "-$1" $pids 2>/dev/null
  [ -n "$pids" ]
}

step "stop cluster $p"
if kill_all TERM; then
  for _ in $(seq 20); do
    [ -z "$(pids_of | sort -un | grep -vx "$$")" ] && break
    sleep 0.25
  done
  kill_all KILL && sleep 0.5
fi

step "network namespaces, cgroups"
for n in n1 n2 inet; do ip netns delete "$p-$n" 2>/dev/null; done
for c in /sys/fs/cgroup/*/"$p"-node*; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# Mounts of ours that outlived their namespace (none expected: the node mount namespaces died with their
# processes), deepest first.
grep -o " $state/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
if [ -f "$state/created-dirs" ]; then
  while read -r d; do rmdir "$d" 2>/dev/null; done <"$state/created-dirs"
fi
if [ "${KEEP_LOGS:-0}" = 1 ]; then
  find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
else
  rm -rf "$state"
fi
step "done"
