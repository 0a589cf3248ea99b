# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source this file
# Shared settings of the fuzzing scripts under scripts/fuzz. Sourced, never run.
#
# Pinned versions (one place to change them):
#   CARGO_FUZZ_VERSION  the cargo-fuzz release installed into the cache
#
# Environment a caller may set:
#   KELEMETRY_CACHE  root of the build cache (default ~/.cache/kelemetry); cargo-fuzz is installed into
#                    $KELEMETRY_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION and reused when present
#   FUZZ_TOOLCHAIN   the nightly toolchain cargo-fuzz builds with (default `nightly`)

CARGO_FUZZ_VERSION="0.13.1"
FUZZ_TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
FUZZ_CACHE_ROOT="${KELEMETRY_CACHE:-${HOME:-/root}/.cache/kelemetry}"
FUZZ_TOOL_DIR="$FUZZ_CACHE_ROOT/cargo-fuzz-$CARGO_FUZZ_VERSION"
FUZZ_REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FUZZ_DIR="$FUZZ_REPO_DIR/fuzz"

fuzz_log() {
  printf '[fuzz %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

fuzz_die() {
  fuzz_log "error: $*"
  exit 1
}

# The fuzz targets, one per file under fuzz/fuzz_targets.
fuzz_targets() {
  local file
  for file in "$FUZZ_DIR"/fuzz_targets/*.rs; do
    basename "$file" .rs
  done
}

# Installs cargo-fuzz into the cache unless it is there, and puts it first on PATH.
fuzz_install() {
  if [[ ! -x "$FUZZ_TOOL_DIR/bin/cargo-fuzz" ]]; then
    command -v rustup >/dev/null || fuzz_die "rustup is needed for the $FUZZ_TOOLCHAIN toolchain"
    rustup run "$FUZZ_TOOLCHAIN" rustc --version >/dev/null 2>&1 \
      || fuzz_die "the $FUZZ_TOOLCHAIN toolchain is not installed (rustup toolchain install $FUZZ_TOOLCHAIN)"
    fuzz_log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_TOOL_DIR"
    local started=$SECONDS
    nice -n 19 cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$FUZZ_TOOL_DIR" >&2
    fuzz_log "installed cargo-fuzz in $((SECONDS - started)) s"
  fi
  export PATH="$FUZZ_TOOL_DIR/bin:$PATH"
}

# Builds the fuzz targets named (every one when none is): release, debug assertions and overflow checks on, with
# the sanitizer of $FUZZ_SANITIZER (default none: the project's code forbids `unsafe`).
fuzz_build() {
  fuzz_install
  (cd "$FUZZ_REPO_DIR" && nice -n 19 cargo "+$FUZZ_TOOLCHAIN" fuzz build --sanitizer "${FUZZ_SANITIZER:-none}" "$@" >&2)
}

# The dictionary of a target (fuzz/dict/*.dict), empty when it has none.
fuzz_dict_of() {
  case "$1" in
    audit_document | webhook_body) echo "$FUZZ_DIR/dict/audit.dict" ;;
    audit_envelope) echo "$FUZZ_DIR/dict/envelopes.dict" ;;
    kube_event | object_stream | object_body) echo "$FUZZ_DIR/dict/objects.dict" ;;
    rules) echo "$FUZZ_DIR/dict/rules.dict" ;;
    id_codec | query_params) echo "$FUZZ_DIR/dict/query.dict" ;;
    *) echo "" ;;
  esac
}

# Whether $1 names a fuzz target.
fuzz_is_target() {
  [[ -f "$FUZZ_DIR/fuzz_targets/$1.rs" ]]
}
