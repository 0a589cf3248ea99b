# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the test-cluster scripts under scripts/cluster. Sourced, never run.
#
# Pinned versions (one place to change them):
#   KUBE_VERSION  the k8s.io/kubernetes Go module release the control plane is built from
#   KWOK_VERSION  the sigs.k8s.io/kwok release that fakes the nodes and their pods
#   ETCD_VERSION  the go.etcd.io/etcd/server/v3 release (Debian's etcd-server 3.4.23 is older than the 3.4.29 the
#                 apiserver's etcd health checks need since Kubernetes 1.31, so etcd is built from its module)
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry); binaries go to
#                    $KELEMETRY_CACHE/k8s-$KUBE_VERSION/bin, Go's module and build caches to $KELEMETRY_CACHE/go
#   KELEMETRY_RUN    run dir of one cluster: certs, configs, data, logs, pids (default /tmp/kelemetry-cluster)

KUBE_VERSION="v1.34.4"
KWOK_VERSION="v0.8.0"
ETCD_VERSION="v3.6.16"

CLUSTER_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
CLUSTER_BIN_DIR="$CLUSTER_CACHE_ROOT/k8s-$KUBE_VERSION/bin"
# kwok's Stage configuration (how fake nodes and pods move through their lifecycle), taken from its module.
CLUSTER_KWOK_STAGES="$CLUSTER_CACHE_ROOT/k8s-$KUBE_VERSION/share/kwok-stages-$KWOK_VERSION.yaml"
CLUSTER_RUN_DIR="${KELEMETRY_RUN:-/tmp/kelemetry-cluster}"

# The components that run, in start order; `down` stops them in reverse.
CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

cluster_log() {
  printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

cluster_die() {
  cluster_log "error: $*"
  exit 1
}


# Path of one of the cached binaries; kubectl falls back to the one on PATH when it was not built.
cluster_bin() {
  local name="$1"
  if [[ -x "$CLUSTER_BIN_DIR/$name" ]]; then
    printf '%s\n' "$CLUSTER_BIN_DIR/$name"
  elif [[ "$name" == kubectl ]] && command -v kubectl >/dev/null; then
    command -v kubectl
  else
    cluster_die "$name is not built: run scripts/cluster/build"
  fi
}

# Pid of a component started by `up`, if its pid file exists and that process still runs and is that component
# (its command line names it, so a pid reused by an unrelated process is never taken for it).
cluster_running_pid() {
  local pid_file="$CLUSTER_RUN_DIR/pids/$1.pid" pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1" || return 1
  printf '%s\n' "$pid"
}

# A TCP port on 127.0.0.1 that nothing listens on now (picked at random in 20000-39999, checked with bash's
# /dev/tcp). Ports handed out earlier by this shell are skipped.
CLUSTER_PICKED_PORTS=" "
cluster_free_port() {
  local port tries=0
  while ((tries < 200)); do
    port=$((20000 + RANDOM % 20000))
    tries=$((tries + 1))
    [[ "$CLUSTER_PICKED_PORTS" == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      CLUSTER_PICKED_PORTS+="$port "
      printf '%s\n' "$port"
      return 0
    fi
  done
  cluster_die "no free port on 127.0.0.1 after $tries tries"
}

# True when DIR is missing, empty, or was made by `up` (it has pids/ or cluster.env): only such a dir may be wiped.
cluster_run_dir_is_ours() {
  local dir="$1"
  [[ ! -e "$dir" ]] && return 0
  [[ -d "$dir" ]] || return 1
  [[ -z "$(ls -A "$dir")" || -d "$dir/pids" || -f "$dir/cluster.env" ]]
}
