# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the scripts under scripts/helm. Sourced, never run.
#
# Pinned version (one place to change it):
#   HELM_MODULE_VERSION  the helm.sh/helm/v4 Go module release that `cmd/helm` is built from.
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry). The binary goes to
#                    $KELEMETRY_CACHE/helm-$HELM_MODULE_VERSION/bin/helm; Go's module and build caches to
#                    $KELEMETRY_CACHE/helm-$HELM_MODULE_VERSION/go, so a version's whole build is one folder.

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

# Go settings for the build: caches under the version's cache folder (kept between runs, never in the work tree),
# module mode so that the throwaway module's go.sum is filled in, the local toolchain only, no cgo.
helm_go_env() {
  export GOMODCACHE="$HELM_DIR/go/mod"
  export GOCACHE="$HELM_DIR/go/build"
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}
