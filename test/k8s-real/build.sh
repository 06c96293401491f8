#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v1.20.2 for Ferry's real-API-server test tier.
#
# No Debian package ships these binaries, so they are compiled from Debian bookworm's `kubernetes`
# *source* package (the full upstream v1.20.2 tree with vendor/) using Debian's golang-go, as in
# shared/notes/kubernetes.md §3d. The source package is fetched through a private apt source list
# (own lists/cache dirs) so the system's apt state is left alone. Only the two binaries are kept:
#
#   ${FERRY_K8S_CACHE:-$HOME/.cache/ferry-k8s}/v1.20.2/bin/{kube-apiserver,kube-controller-manager}
#
# Idempotent: exits at once when both binaries are cached. A lock keeps two runs from building at
# the same time. Also installs the runtime packages test/k8s-real/control-plane.ts needs (etcd,
# openssl). Needs root (apt-get) and ~2.5 GB of temporary disk; takes ~8 min on 2 cores.
set -euo pipefail

readonly K8S_VERSION=1.20.2
readonly CACHE_ROOT="${FERRY_K8S_CACHE:-$HOME/.cache/ferry-k8s}"
readonly CACHE_DIR="$CACHE_ROOT/v$K8S_VERSION"
readonly BIN_DIR="$CACHE_DIR/bin"
readonly BINARIES=(kube-apiserver kube-controller-manager)
readonly BUILD_PACKAGES=(golang-go etcd-server etcd-client rsync openssl curl)
readonly RUNTIME_COMMANDS=(etcd openssl)

START=$SECONDS
log() { printf '[k8s-build %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
  log "ERROR: $*" >&2
  exit 1
}

binaries_cached() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "$BIN_DIR/$b" ]] || return 1
  done
}

runtime_present() {
  local c
  for c in "${RUNTIME_COMMANDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || return 1
  done
}

APT_UPDATED=0
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) for: $*"
  fi
}

install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "packages already installed: $*"
    return
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Fast path: nothing to do.
if binaries_cached && runtime_present; then
  log "cached: $BIN_DIR (${BINARIES[*]})"
  exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
if ! flock -n 9; then
  log "another build holds $CACHE_DIR/.build.lock; waiting"
  flock 9
fi

if binaries_cached; then
  # Built by someone else meanwhile, or only the runtime packages are missing on this machine.
  runtime_present || install_packages etcd-server etcd-client openssl
  log "cached: $BIN_DIR (${BINARIES[*]})"
  exit 0
fi

log "building kubernetes v$K8S_VERSION (${BINARIES[*]}) into $BIN_DIR"
install_packages "${BUILD_PACKAGES[@]}"
log "go: $(go version)"

WORK="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
cleanup() {
  local rc=$?
  # Go marks module cache files read-only; make them removable first.
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
  if [[ $rc -ne 0 ]]; then
    log "FAILED (exit $rc) after $((SECONDS - START))s" >&2
  fi
}
trap cleanup EXIT

# 1. Private apt configuration with deb-src lines only, so the system's lists stay untouched.
APT_DIR="$WORK/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d"
readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$APT_DIR/sources.list" <<SOURCES
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
SOURCES
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "APT::Sandbox::User=root"
)
log "apt-get update (private deb-src list)"
apt-get "${APT_OPTS[@]}" update -qq
log "apt-get source --download-only kubernetes"
(cd "$WORK" && apt-get "${APT_OPTS[@]}" source --download-only kubernetes >/dev/null)

shopt -s nullglob
ORIG=("$WORK"/kubernetes_*really"$K8S_VERSION".orig.tar.*)
shopt -u nullglob
if [[ ${#ORIG[@]} -ne 1 ]]; then
  die "expected one kubernetes_*really$K8S_VERSION.orig.tar.* from apt-get source, got: $(ls "$WORK")"
fi
log "source: $(basename "${ORIG[0]}") ($(du -h "${ORIG[0]}" | cut -f1))"

# 2. Extract and lay out a GOPATH as debian/rules does.
log "extracting"
tar -xf "${ORIG[0]}" -C "$WORK"
SRC="$WORK/kubernetes-$K8S_VERSION"
[[ -f "$SRC/Makefile" ]] || die "no $SRC/Makefile after extraction"
cd "$SRC"
export GOPATH="$SRC/.go" CGO_ENABLED=0
# Keep Go's build and module caches inside the temp dir so they are removed with it.
export GOCACHE="$WORK/go-build" GOMODCACHE="$WORK/go-mod" GOFLAGS=
mkdir -p .go/src/k8s.io
ln -s ../../.. .go/src/k8s.io/kubernetes

# 3. Build with the Makefile (a plain `go build` fails with "updates to go.mod needed").
for b in "${BINARIES[@]}"; do
  t0=$SECONDS
  log "make WHAT=cmd/$b"
  make WHAT="cmd/$b" >"$WORK/make-$b.log" 2>&1 || {
    tail -n 40 "$WORK/make-$b.log" >&2
    die "make WHAT=cmd/$b failed"
  }
  [[ -x "_output/bin/$b" ]] || die "_output/bin/$b missing after make"
  log "built $b in $((SECONDS - t0))s"
done

# 4. Install atomically into the cache.
mkdir -p "$BIN_DIR"
for b in "${BINARIES[@]}"; do
  cp "_output/bin/$b" "$BIN_DIR/.$b.tmp"
  mv -f "$BIN_DIR/.$b.tmp" "$BIN_DIR/$b"
done
cd /
log "$("$BIN_DIR/kube-apiserver" --version) -> $BIN_DIR"
log "done: total $((SECONDS - START))s"
