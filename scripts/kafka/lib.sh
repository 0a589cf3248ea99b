# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the scripts under scripts/kafka. Sourced, never run.
#
# Pinned version (one place to change it):
#   KAFKA_VERSION        the Apache Kafka release, as published on Maven Central
#   KAFKA_SCALA_VERSION  the Scala binary version of its broker artifact (org.apache.kafka:kafka_<scala>)
#
# Environment a caller may set:
#   KELEMETRY_CACHE      root of the build cache (default ~/.cache/kelemetry). The jars go to
#                        $KELEMETRY_CACHE/kafka-$KAFKA_VERSION/libs, Maven's local repository for them to
#                        $KELEMETRY_CACHE/kafka-$KAFKA_VERSION/m2, so a version's whole download is one folder.
#   KELEMETRY_KAFKA_RUN  run dir of one broker: server.properties, data, log, pid, kafka.env
#                        (default /tmp/kelemetry-kafka; `--name NAME` appends -NAME)
#   KELEMETRY_KAFKA_HEAP the broker's -Xmx (default 512m)

# shellcheck source-path=SCRIPTDIR source=../lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/ports.sh"

KAFKA_VERSION="4.1.1"
KAFKA_SCALA_VERSION="2.13"

KAFKA_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
KAFKA_DIR="$KAFKA_CACHE_ROOT/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_DIR/libs"
# Written last by `build`: the jars in $KAFKA_LIBS are complete for this version.
KAFKA_STAMP="$KAFKA_LIBS/.complete"
KAFKA_RUN_DIR="${KELEMETRY_KAFKA_RUN:-/tmp/kelemetry-kafka}"
KAFKA_HEAP="${KELEMETRY_KAFKA_HEAP:-512m}"

kafka_log() {
  printf '[kafka %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

kafka_die() {
  kafka_log "error: $*"
  exit 1
}

# True when `build` finished for the pinned version.
kafka_is_built() {
  [[ -f "$KAFKA_STAMP" && "$(cat "$KAFKA_STAMP")" == "$KAFKA_VERSION" ]]
}

# The java class path of the broker: every cached jar.
kafka_classpath() {
  printf '%s/*\n' "$KAFKA_LIBS"
}

# Pid of the broker started by `up` in the run dir, if its pid file exists and that process still runs and is a
# Kafka broker of that run dir (a pid reused by another process is never taken for it).
kafka_running_pid() {
  local pid_file="$KAFKA_RUN_DIR/kafka.pid" pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$KAFKA_RUN_DIR/server.properties" || return 1
  printf '%s\n' "$pid"
}

# True when DIR is missing, empty, or was made by `up` (it has server.properties or kafka.env): only such a dir
# may be wiped.
kafka_run_dir_is_ours() {
  local dir="$1"
  [[ ! -e "$dir" ]] && return 0
  [[ -d "$dir" ]] || return 1
  [[ -z "$(ls -A "$dir")" || -f "$dir/server.properties" || -f "$dir/kafka.env" ]]
}

