#!/usr/bin/env bash
# Build the control-plane binaries the tests and the demo run: kube-apiserver,
# kubectl and etcd, from the Go module proxy at pinned versions, into
# .cache/k8s/<version>/. A second run with the binaries present does nothing.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points every
# k8s.io/* staging module at ./staging/..., and a dependency's replace lines
# are ignored. So each binary is built from a throwaway module that requires
# it and maps every staging module to its published v0.x twin.
#
# Go's download chatter goes to a log that is shown only when a step fails;
# missing prerequisites are reported in one line naming what to install.
# Concurrent runs serialise on a lock, and each binary is renamed into place
# only when complete, so an interrupted build never leaves a half binary.
set -euo pipefail

# Pins from devcluster/versions.env; K8S_VERSION / ETCD_VERSION in the environment override them.
while IFS='=' read -r name value; do
  case $name in K8S_VERSION|ETCD_VERSION) [ -n "${!name:-}" ] || declare "$name=$value" ;; esac
done <"$(dirname "$0")/versions.env"
GO_MIN_MINOR=26                        # k8s v1.37 go.mod says go 1.26.0
root=$(cd "$(dirname "$0")/.." && pwd)
out=${K8S_CACHE:-$root/.cache/k8s}/$K8S_VERSION
bins=(kube-apiserver kubectl etcd)

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then exit 0; fi

die() { echo "devcluster/build.sh: $*" >&2; exit 1; }
command -v go >/dev/null ||
  die "no Go toolchain on PATH: install Go >= 1.$GO_MIN_MINOR (https://go.dev/dl/) and run again"
go_version=$(go env GOVERSION)         # e.g. go1.26.8
go_minor=$(echo "$go_version" | sed -nE 's/^go1\.([0-9]+).*/\1/p')
[ "${go_minor:-0}" -ge "$GO_MIN_MINOR" ] ||
  die "$go_version is too old: install Go >= 1.$GO_MIN_MINOR (https://go.dev/dl/) and run again"
command -v curl >/dev/null || die "curl is missing: install it (apt-get install curl ca-certificates)"
command -v flock >/dev/null || die "flock is missing: install util-linux"
proxy=$(go env GOPROXY | cut -d, -f1)
[ "$proxy" != off ] || die "GOPROXY=off: set GOPROXY to a reachable module proxy"
[ "$proxy" != direct ] || proxy=https://proxy.golang.org
status=$(curl -sS -m 20 -o /dev/null -w '%{http_code}' "$proxy/k8s.io/kubernetes/@v/$K8S_VERSION.info" 2>/dev/null) || true
case $status in
  200) ;;
  000|'') die "cannot reach the Go module proxy at $proxy: allow HTTPS to it, or set GOPROXY to a reachable mirror" ;;
  403|404|410) die "k8s.io/kubernetes $K8S_VERSION is not available from $proxy (HTTP $status): check K8S_VERSION" ;;
  *) die "the Go module proxy at $proxy answered HTTP $status: retry later, or set GOPROXY to another mirror" ;;
esac

mkdir -p "$out"
exec 9>"$out/.build.lock"
flock 9                                # another build may have finished meanwhile
if have_all; then exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
minor=${K8S_VERSION#v1.}    # 37.2 -> staging modules are v0.37.2
started=$SECONDS

# quiet DESCRIPTION CMD...: run CMD with its output in a log; show the log on failure.
quiet() {
  local what=$1; shift
  "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log" >&2; die "$what failed (output above)"; }
}
# build_to NAME PACKAGE LDFLAGS: go build into a temp name, then rename into place.
build_to() {
  quiet "go build $1" go build -trimpath -ldflags "$3" -o "$out/.$1.partial" "$2"
  mv -f "$out/.$1.partial" "$out/$1"
}

echo "building kube-apiserver and kubectl $K8S_VERSION (cold: 10-20 minutes)" >&2
mkdir -p "$work/k8s"
(
  cd "$work/k8s"
  curl -fsS -m 60 "$proxy/k8s.io/kubernetes/@v/$K8S_VERSION.mod" >upstream.mod ||
    die "cannot download k8s.io/kubernetes $K8S_VERSION go.mod from $proxy"
  {
    echo "module mysocketd.local/k8sbuild"
    echo "go 1.$GO_MIN_MINOR.0"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9/-]+ v0\.0\.0$' upstream.mod | awk '{print $1}' |
      sort -u | while read -r m; do echo "replace $m => $m v0.$minor"; done
  } >go.mod
  quiet "go get k8s.io/kubernetes $K8S_VERSION" \
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  build_to kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
  build_to kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"
)

echo "building etcd $ETCD_VERSION" >&2
mkdir -p "$work/etcd"
(
  cd "$work/etcd"
  printf 'module mysocketd.local/etcdbuild\ngo 1.%s.0\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$GO_MIN_MINOR" "$ETCD_VERSION" >go.mod
  quiet "go get etcd $ETCD_VERSION" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  build_to etcd go.etcd.io/etcd/server/v3 "-s -w"
)
have_all || die "build finished but a binary is missing under $out"
echo "control-plane binaries ready in $out ($((SECONDS - started))s)" >&2
