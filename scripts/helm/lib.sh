# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the scripts under scripts/helm. Sourced, never run.
#
# Pinned version (one place to change it):
#   HELM_MODULE_VERSION  the helm.sh/helm/v4 Go module release that `cmd/helm` is built from.
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry). The binary goes to
#                    $KELEMETRY_CACHE/helm-$HELM_MODULE_VERSION/bin/helm; Go's module and build caches to
#                    $KELEMETRY_CACHE/helm-$HELM_MODULE_VERSION/go, so a version's whole build is one folder;
#                    the Go caches are removed once the binary is in (scripts/lib/go.sh).

HELM_MODULE_VERSION="v4.3.2"

HELM_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
HELM_DIR="$HELM_CACHE_ROOT/helm-$HELM_MODULE_VERSION"
HELM_BIN="$HELM_DIR/bin/helm"

helm_log() {
  printf '[helm %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

helm_die() {
  helm_log "error: $*"
  exit 1
}

