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
#                    (removed once the binaries are in; see go_caches_drop in scripts/lib/go.sh)
#   KELEMETRY_RUN    run dir of one cluster: certs, configs, data, logs, pids (default /tmp/kelemetry-cluster)

# shellcheck source-path=SCRIPTDIR source=ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

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

# True while the process of pids/NAME.pid exists and has not exited (a zombie has): what `up` checks of what it has
# just started. It does not read the command line as cluster_running_pid does: that is the script's own until the
# background job has executed setsid.
cluster_pid_alive() {
  local pid_file="$CLUSTER_RUN_DIR/pids/$1.pid" pid stat state
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"
  state="${state%% *}"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Pid of a component started by `up`, if its pid file exists and that process still runs and is that component
# (its command line names it, so a pid reused by an unrelated process is never taken for it).
cluster_running_pid() {
  local pid
  cluster_pid_alive "$1" || return 1
  pid="$(cat "$CLUSTER_RUN_DIR/pids/$1.pid")"
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1" || return 1
  printf '%s\n' "$pid"
}

# True when DIR is missing, empty, or was made by `up` (it has pids/ or cluster.env): only such a dir may be wiped.
cluster_run_dir_is_ours() {
  local dir="$1"
  [[ ! -e "$dir" ]] && return 0
  [[ -d "$dir" ]] || return 1
  [[ -z "$(ls -A "$dir")" || -d "$dir/pids" || -f "$dir/cluster.env" ]]
}

# ---- recordings: the shared steps of scripts/cluster/record-* ----

# The current UTC time in the audit log's form (RFC 3339, microseconds).
cluster_timestamp() {
  date -u +%Y-%m-%dT%H:%M:%S.%6NZ
}

# cluster_recording_up: builds the binaries when the cache lacks them, starts a fresh cluster in a new temporary dir
# (no audit webhook) and sources its cluster.env (KUBECTL, KUBECONFIG, AUDIT_LOG, versions...). Sets
# CLUSTER_RECORDING_DIR, the temporary dir the watches write to. Installs an EXIT trap that stops the watches and
# the cluster and removes that dir (cluster_recording_down). Environment for scripts/cluster/up passes through
# (e.g. KELEMETRY_APISERVER_FEATURES).
cluster_recording_up() {
  local scripts
  scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/../cluster" && pwd)"
  "$scripts/build"
  CLUSTER_RECORDING_SCRIPTS="$scripts"
  CLUSTER_RECORDING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kelemetry-record.XXXXXX")"
  CLUSTER_WATCHERS=()
  export KELEMETRY_RUN="$CLUSTER_RECORDING_DIR/cluster"
  export KELEMETRY_AUDIT_WEBHOOK_URL=off
  export KELEMETRY_OWNER_PID=$$
  trap cluster_recording_down EXIT
  "$scripts/up" >/dev/null
  # shellcheck disable=SC1091
  source "$KELEMETRY_RUN/cluster.env"
}

# cluster_recording_down: the EXIT trap of cluster_recording_up.
cluster_recording_down() {
  cluster_stop_watches
  "$CLUSTER_RECORDING_SCRIPTS/down" >/dev/null 2>&1 || true
  rm -rf "$CLUSTER_RECORDING_DIR"
}

# cluster_watch NAME KUBECTL_ARGS...: runs `kubectl --namespace default KUBECTL_ARGS... -o json
# --output-watch-events` in its own session (stopped as a group by cluster_stop_watches) and writes one line per
# watch event to $CLUSTER_RECORDING_DIR/NAME.tsv: the UTC time it arrived, a tab, the event as compact JSON.
cluster_watch() {
  local name="$1"
  shift
  # shellcheck disable=SC2016  # expanded by the watcher's shell
  setsid bash -c '
    "$@" --output=json --output-watch-events 2>"$0.err" | jq -c --unbuffered . |
      while IFS= read -r line; do printf "%s\t%s\n" "$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)" "$line"; done
  ' "$CLUSTER_RECORDING_DIR/$name" "$KUBECTL" --kubeconfig "$KUBECONFIG" --namespace default "$@" \
    >"$CLUSTER_RECORDING_DIR/$name.tsv" </dev/null &
  CLUSTER_WATCHERS+=("$!")
}

# cluster_stop_watches: stops the watches of cluster_watch and waits for them.
cluster_stop_watches() {
  local pid
  for pid in "${CLUSTER_WATCHERS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  wait "${CLUSTER_WATCHERS[@]}" 2>/dev/null || true
  CLUSTER_WATCHERS=()
}

# cluster_filter_audit FROM TO NAMESPACED CLUSTER_SCOPED [FAILED]: prints the events of $AUDIT_LOG (JSON lines,
# stage ResponseComplete or Panic) of requests received from FROM to TO that wrote (create, update, patch, delete,
# deletecollection) one of the NAMESPACED resources (plural names separated by spaces, any API group, with their
# subresources) in namespace default, or one of the CLUSTER_SCOPED ones. With FAILED=failed, also the other
# requests on those resources that failed (code >= 400), except the 404s of reads (how clients ask whether an
# object exists). Secrets and service-account tokens (logged at Metadata level by the policy) are always dropped.
cluster_filter_audit() {
  local from="$1" to="$2" namespaced="$3" cluster_scoped="$4" failed="${5:-}"
  jq -c --arg from "$from" --arg to "$to" --arg namespaced "$namespaced" --arg cluster_scoped "$cluster_scoped" \
    --arg failed "$failed" '
    def names: [splits(" +") | select(. != "")];
    ($namespaced | names) as $namespaced_names
    | ($cluster_scoped | names) as $cluster_names
    | select(.stage == "ResponseComplete" or .stage == "Panic")
    | select(.requestReceivedTimestamp >= $from and .requestReceivedTimestamp <= $to)
    | select(
        (.verb as $v | ["create", "update", "patch", "delete", "deletecollection"] | index($v))
        or ($failed == "failed" and (.responseStatus.code // 0) >= 400
          and ((.responseStatus.code == 404 and (.verb == "get" or .verb == "list" or .verb == "watch")) | not)))
    | select(.objectRef != null)
    | select(
        (.objectRef.namespace == "default"
          and ((.objectRef.resource // "") as $r | $namespaced_names | index($r)))
        or ((.objectRef.namespace // "") == ""
          and ((.objectRef.resource // "") as $r | $cluster_names | index($r))))
    | select((.objectRef.resource == "secrets" or .objectRef.subresource == "token") | not)
  ' "$AUDIT_LOG"
}

# cluster_stamped_stream TSV_FILES...: the lines of cluster_watch's files as one YAML stream of JSON documents in
# arrival order, each after a comment with its arrival time (`# {"time": ...}`, the form kspan's recordings use),
# so a replay places each observation when it was seen.
cluster_stamped_stream() {
  sort -s -t $'\t' -k1,1 "$@" | while IFS=$'\t' read -r time json; do
    printf '# {"time":"%s"}\n%s\n---\n' "$time" "$json"
  done
}

# cluster_check_no_credentials FILES...: fails (naming the files) when one holds a private key, a bearer token
# (JWTs start with eyJ) or a Secret body: no credential may leave the machine.
cluster_check_no_credentials() {
  if grep -l -E 'PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}\.|"kind":"Secret"' "$@"; then
    cluster_die "the recording above holds a credential; nothing should, check the audit policy and filter"
  fi
}
