# shellcheck shell=bash disable=SC2034
# Shared settings of the scripts under scripts/jaeger. Sourced, never run.
#
# Pinned version (one place to change it):
#   JAEGER_MODULE_VERSION  the github.com/jaegertracing/jaeger Go module release that `cmd/jaeger` (Jaeger v2, the
#                          OpenTelemetry-Collector-based binary) is built from. The module keeps its v1 path, so
#                          Jaeger v2.x releases are published on the module proxy as v1.(x+63).0:
#                          v1.76.0 is Jaeger v2.13.0.
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry). The binary goes to
#                    $KELEMETRY_CACHE/jaeger-$JAEGER_MODULE_VERSION/bin/jaeger; Go's module and build caches to
#                    $KELEMETRY_CACHE/jaeger-$JAEGER_MODULE_VERSION/go, so a version's whole build is one folder;
#                    the Go caches are removed once the binary is in (scripts/lib/go.sh).
#   KELEMETRY_JAEGER_RUN  run dir of one Jaeger: config, logs, pid, ports (default /tmp/kelemetry-jaeger)

# shellcheck source-path=SCRIPTDIR source=../lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/ports.sh"

JAEGER_MODULE_VERSION="v1.76.0"

JAEGER_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
JAEGER_DIR="$JAEGER_CACHE_ROOT/jaeger-$JAEGER_MODULE_VERSION"
JAEGER_BIN="$JAEGER_DIR/bin/jaeger"
JAEGER_RUN_DIR="${KELEMETRY_JAEGER_RUN:-/tmp/kelemetry-jaeger}"

jaeger_log() {
  printf '[jaeger %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

jaeger_die() {
  jaeger_log "error: $*"
  exit 1
}


# Pid of the Jaeger started by `up`, if its pid file exists and the process still runs.
jaeger_running_pid() {
  local pid_file="$JAEGER_RUN_DIR/jaeger.pid" pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

