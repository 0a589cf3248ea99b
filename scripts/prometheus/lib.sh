# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the scripts under scripts/prometheus. Sourced, never run.
#
# Pinned version (one place to change it):
#   PROMETHEUS_MODULE_VERSION  the github.com/prometheus/prometheus Go module release that `cmd/prometheus` and
#                              `cmd/promtool` are built from. Prometheus 3.x is published on the module proxy as
#                              v0.(300+minor).patch: v0.315.1 is Prometheus 3.15.1.
#
# Built without the `builtinassets` tag: the web UI's assets are not embedded (its pages answer an error), the HTTP
# API (/api/v1/...) and scraping are all there; that is what the tests use. Built with `remove_all_sd`: only the
# static, file and HTTP service discovery (the tests list their targets), which leaves out the cloud SDKs.
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry). The binaries go to
#                    $KELEMETRY_CACHE/prometheus-$PROMETHEUS_MODULE_VERSION/bin/{prometheus,promtool}; Go's module and
#                    build caches to .../go, so a version's whole build is one folder;
#                    the Go caches are removed once the binary is in (scripts/lib/go.sh).
#   KELEMETRY_PROMETHEUS_RUN  run dir of one Prometheus: config, data, log, pid, ports
#                    (default /tmp/kelemetry-prometheus; `--name NAME` appends -NAME)

# shellcheck source-path=SCRIPTDIR source=../lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/ports.sh"

PROMETHEUS_MODULE_VERSION="v0.315.1"

PROMETHEUS_BUILD_TAGS="remove_all_sd"

PROMETHEUS_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
PROMETHEUS_DIR="$PROMETHEUS_CACHE_ROOT/prometheus-$PROMETHEUS_MODULE_VERSION"
PROMETHEUS_BIN="$PROMETHEUS_DIR/bin/prometheus"
PROMTOOL_BIN="$PROMETHEUS_DIR/bin/promtool"
PROMETHEUS_RUN_DIR="${KELEMETRY_PROMETHEUS_RUN:-/tmp/kelemetry-prometheus}"

# The Prometheus release of the pinned module version (v0.315.1 -> 3.15.1), stamped into the binaries.
prometheus_release_version() {
  local rest="${PROMETHEUS_MODULE_VERSION#v0.}"
  local minor="${rest%%.*}"
  printf '%s.%s.%s\n' "$((minor / 100))" "$((minor % 100))" "${rest#*.}"
}

prometheus_log() {
  printf '[prometheus %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

prometheus_die() {
  prometheus_log "error: $*"
  exit 1
}

# True when both binaries of the pinned version are built.
prometheus_is_built() {
  [[ -x "$PROMETHEUS_BIN" && -x "$PROMTOOL_BIN" ]]
}


# Pid of the Prometheus started by `up`, if its pid file exists and the process still runs.
prometheus_running_pid() {
  local pid_file="$PROMETHEUS_RUN_DIR/prometheus.pid" pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

