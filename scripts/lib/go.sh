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
