# shellcheck shell=bash
# Go settings for building a service from its published module. Sourced, never run.

# go_build_env DIR: module and build caches under DIR (kept between runs, never in the work tree), module mode so
# that a throwaway module's go.sum is filled in, the local toolchain only, no cgo.
go_build_env() {
  export GOMODCACHE="$1/mod"
  export GOCACHE="$1/build"
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}

# go_caches_drop DIR: once the binaries are in the cache, removes the module and build caches go_build_env put
# under DIR (several GB per service; a cold CI run on a small disk ran out of space with them kept). They are only
# needed again when a pinned version changes, which rebuilds from scratch anyway. KELEMETRY_KEEP_GO_CACHES=1 keeps
# them. The module cache is read-only as Go writes it; `go clean -modcache` knows how to remove it.
go_caches_drop() {
  [[ "${KELEMETRY_KEEP_GO_CACHES:-0}" == 1 ]] && return 0
  GOMODCACHE="$1/mod" go clean -modcache >/dev/null 2>&1 || chmod -R u+w "$1/mod" 2>/dev/null || true
  rm -rf "$1/mod" "$1/build"
}
