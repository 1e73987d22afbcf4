#!/usr/bin/env bash
# Build the binaries the tests and the demo run, from the Go module proxy at
# pinned versions: the control plane (kube-apiserver, kubectl, etcd,
# kube-controller-manager, kube-scheduler) and the node (kubelet, kube-proxy)
# into .cache/k8s/<k8s version>/, containerd 2.x (containerd, its runc shim,
# ctr) into .cache/containerd/<version>/, helm (the chart's tests lint,
# render and install charts/mysocketd with it) into .cache/helm/<version>/, and
# the Gateway API conformance suite (its test binary, its standard-channel CRDs
# and its echo-basic backend, from one module version) into
# .cache/gateway-api/<version>/ with CoreDNS (which the suite's base manifests
# run) into .cache/coredns/<version>/.
# A second run with the binaries present does nothing; a run that finds some
# of them builds only the others.
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

# Pins from devcluster/versions.env; the same names in the environment override them.
while IFS='=' read -r name value; do
  case $name in K8S_VERSION|ETCD_VERSION|CONTAINERD_VERSION|HELM_VERSION|GATEWAY_API_VERSION|COREDNS_VERSION|ZITADEL_OIDC_VERSION)
    [ -n "${!name:-}" ] || declare "$name=$value" ;;
  esac
done <"$(dirname "$0")/versions.env"
GO_MIN_MINOR=26                        # k8s v1.37 go.mod says go 1.26.0
root=$(cd "$(dirname "$0")/.." && pwd)
out=${K8S_CACHE:-$root/.cache/k8s}/$K8S_VERSION
ctr_out=${CONTAINERD_CACHE:-$root/.cache/containerd}/$CONTAINERD_VERSION
k8s_bins=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
ctr_bins=(containerd containerd-shim-runc-v2 ctr)
helm_out=${HELM_CACHE:-$root/.cache/helm}/$HELM_VERSION
gw_out=${GATEWAY_API_CACHE:-$root/.cache/gateway-api}/$GATEWAY_API_VERSION
gw_bins=(conformance.test echo-basic)
coredns_out=${COREDNS_CACHE:-$root/.cache/coredns}/$COREDNS_VERSION
idp_out=${IDP_CACHE:-$root/.cache/idp}/$ZITADEL_OIDC_VERSION

# missing DIR NAME...: print the names that are not executables in DIR.
missing() { local dir=$1 b; shift; for b in "$@"; do [ -x "$dir/$b" ] || echo "$b"; done; }
# have_gateway_api: the suite's binaries and its CRDs (a directory renamed into place when complete).
have_gateway_api() { [ -z "$(missing "$gw_out" "${gw_bins[@]}")" ] && [ -d "$gw_out/crds" ]; }
have_all() {
  [ -z "$(missing "$out" "${k8s_bins[@]}" etcd)$(missing "$ctr_out" "${ctr_bins[@]}")$(missing "$helm_out" helm)" ] &&
    have_gateway_api && [ -z "$(missing "$coredns_out" coredns)" ] && [ -z "$(missing "$idp_out" oidc-op)" ]
}
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
# available MODULE VERSION PIN: the proxy serves MODULE at VERSION, or one line saying what to do.
available() {
  local status
  status=$(curl -sS -m 20 -o /dev/null -w '%{http_code}' "$proxy/$1/@v/$2.info" 2>/dev/null) || true
  case $status in
    200) ;;
    000|'') die "cannot reach the Go module proxy at $proxy: allow HTTPS to it, or set GOPROXY to a reachable mirror" ;;
    403|404|410) die "$1 $2 is not available from $proxy (HTTP $status): check $3 in devcluster/versions.env" ;;
    *) die "the Go module proxy at $proxy answered HTTP $status: retry later, or set GOPROXY to another mirror" ;;
  esac
}
[ -z "$(missing "$out" "${k8s_bins[@]}")" ] || available k8s.io/kubernetes "$K8S_VERSION" K8S_VERSION
[ -z "$(missing "$helm_out" helm)" ] || available helm.sh/helm/v4 "$HELM_VERSION" HELM_VERSION
have_gateway_api || available sigs.k8s.io/gateway-api/conformance "$GATEWAY_API_VERSION" GATEWAY_API_VERSION
[ -z "$(missing "$coredns_out" coredns)" ] || available github.com/coredns/coredns "$COREDNS_VERSION" COREDNS_VERSION
[ -z "$(missing "$idp_out" oidc-op)" ] || available github.com/zitadel/oidc/v3 "$ZITADEL_OIDC_VERSION" ZITADEL_OIDC_VERSION

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
# build_to_dir DIR NAME PACKAGE LDFLAGS: go build into a temp name, then rename into place.
build_to_dir() {
  quiet "go build $2" go build -trimpath -ldflags "$4" -o "$1/.$2.partial" "$3"
  mv -f "$1/.$2.partial" "$1/$2"
}

# build_k8s NAME...: the named cmd/ binaries of k8s.io/kubernetes.
build_k8s() {
  echo "building $* $K8S_VERSION (cold: 10-20 minutes for all six)" >&2
  mkdir -p "$work/k8s" && cd "$work/k8s"
  curl -fsS -m 60 "$proxy/k8s.io/kubernetes/@v/$K8S_VERSION.mod" >upstream.mod ||
    die "cannot download k8s.io/kubernetes $K8S_VERSION go.mod from $proxy"
  {
    echo "module mysocketd.local/k8sbuild"
    echo "go 1.$GO_MIN_MINOR.0"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9/-]+ v0\.0\.0$' upstream.mod | awk '{print $1}' |
      sort -u | while read -r m; do echo "replace $m => $m v0.$minor"; done
  } >go.mod
  # shellcheck disable=SC2046  # one argument per binary
  quiet "go get k8s.io/kubernetes $K8S_VERSION" go get $(printf "k8s.io/kubernetes/cmd/%s@$K8S_VERSION " "$@")
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for b in "$@"; do timed build_to_dir "$out" "$b" "k8s.io/kubernetes/cmd/$b" "$ldflags"; done
}

build_etcd() {
  echo "building etcd $ETCD_VERSION" >&2
  mkdir -p "$work/etcd" && cd "$work/etcd"
  printf 'module mysocketd.local/etcdbuild\ngo 1.%s.0\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$GO_MIN_MINOR" "$ETCD_VERSION" >go.mod
  quiet "go get etcd $ETCD_VERSION" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  timed build_to_dir "$out" etcd go.etcd.io/etcd/server/v3 "-s -w"
}

# build_containerd NAME...: containerd's own Makefile builds these with CGO off
# too (the btrfs snapshotter, its only cgo part, drops out); runc is Debian's.
build_containerd() {
  echo "building $* $CONTAINERD_VERSION (cold: about 2 minutes)" >&2
  mkdir -p "$work/containerd" && cd "$work/containerd"
  printf 'module mysocketd.local/containerdbuild\ngo 1.%s.0\nrequire github.com/containerd/containerd/v2 %s\n' \
    "$GO_MIN_MINOR" "$CONTAINERD_VERSION" >go.mod
  # shellcheck disable=SC2046
  quiet "go get containerd $CONTAINERD_VERSION" \
    go get $(printf "github.com/containerd/containerd/v2/cmd/%s@$CONTAINERD_VERSION " "$@")
  local ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  for b in "$@"; do timed build_to_dir "$ctr_out" "$b" "github.com/containerd/containerd/v2/cmd/$b" "$ldflags"; done
}

# build_helm: helm from its own module (no replace lines, so a plain require works), stamped
# with its version as its Makefile does; CGO off, as its release builds are.
build_helm() {
  echo "building helm $HELM_VERSION (cold: about 2-4 minutes)" >&2
  mkdir -p "$work/helm" && cd "$work/helm"
  printf 'module mysocketd.local/helmbuild\ngo 1.%s.0\nrequire helm.sh/helm/v4 %s\n' \
    "$GO_MIN_MINOR" "$HELM_VERSION" >go.mod
  quiet "go get helm $HELM_VERSION" go get "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  local ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v4/internal/version.metadata="
  timed build_to_dir "$helm_out" helm helm.sh/helm/v4/cmd/helm "$ldflags"
}

# build_gateway_api: from one version of sigs.k8s.io/gateway-api, the official conformance test
# binary (`go test -c` of its conformance package: TestConformance with the suite's own flags and
# embedded manifests), the standard-channel CRDs it checks the cluster for, and the echo-basic backend
# its base manifests run. echo-basic is a module of its own inside conformance/, shipped with its
# go.mod renamed to .go.mod; its Dockerfile renames it back before `go build`, and so does this.
# The conformance module's go.mod replaces gateway-api with ../, which a dependent module ignores, so
# both modules are required at the same version.
build_gateway_api() {
  echo "building the Gateway API conformance suite $GATEWAY_API_VERSION (cold: about 4-6 minutes)" >&2
  mkdir -p "$work/gwapi" && cd "$work/gwapi"
  printf 'module mysocketd.local/gwapibuild\ngo 1.%s.0\nrequire (\n\tsigs.k8s.io/gateway-api %s\n\tsigs.k8s.io/gateway-api/conformance %s\n)\n' \
    "$GO_MIN_MINOR" "$GATEWAY_API_VERSION" "$GATEWAY_API_VERSION" >go.mod
  quiet "go get gateway-api $GATEWAY_API_VERSION" \
    go get "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" "sigs.k8s.io/gateway-api/conformance@$GATEWAY_API_VERSION"
  local api_dir conf_dir t=$SECONDS
  api_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
  conf_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api/conformance)
  quiet "go test -c gateway-api/conformance" go test -c -trimpath -ldflags "-s -w" \
    -o "$gw_out/.conformance.test.partial" sigs.k8s.io/gateway-api/conformance
  mv -f "$gw_out/.conformance.test.partial" "$gw_out/conformance.test"
  echo "  conformance.test: $((SECONDS - t))s" >&2
  rm -rf "$gw_out/.crds.partial" && mkdir -p "$gw_out/.crds.partial"
  cp "$api_dir"/config/crd/standard/*.yaml "$gw_out/.crds.partial/"
  chmod 0644 "$gw_out"/.crds.partial/*.yaml
  rm -rf "$gw_out/crds" && mv "$gw_out/.crds.partial" "$gw_out/crds"
  cp -r "$conf_dir/echo-basic" "$work/echo-basic" && chmod -R u+w "$work/echo-basic" && cd "$work/echo-basic"
  mv -f .go.mod go.mod && mv -f .go.sum go.sum
  quiet "go mod download echo-basic" go mod download
  timed build_to_dir "$gw_out" echo-basic . "-s -w -buildid="
}

# build_coredns: CoreDNS as its own release builds it (CGO off, every plugin of its plugin.cfg).
build_coredns() {
  echo "building coredns $COREDNS_VERSION (cold: about 3-5 minutes)" >&2
  mkdir -p "$work/coredns" && cd "$work/coredns"
  printf 'module mysocketd.local/corednsbuild\ngo 1.%s.0\nrequire github.com/coredns/coredns %s\n' \
    "$GO_MIN_MINOR" "$COREDNS_VERSION" >go.mod
  quiet "go get coredns $COREDNS_VERSION" go get "github.com/coredns/coredns@$COREDNS_VERSION"
  timed build_to_dir "$coredns_out" coredns github.com/coredns/coredns "-s -w"
}

# build_idp: the identity provider of the sign-in tests, zitadel/oidc's example OP (example/server) as it is.
build_idp() {
  echo "building the test identity provider (zitadel/oidc $ZITADEL_OIDC_VERSION example/server; cold: about 2 minutes)" >&2
  mkdir -p "$work/idp" && cd "$work/idp"
  printf 'module mysocketd.local/idpbuild\ngo 1.%s.0\nrequire github.com/zitadel/oidc/v3 %s\n' \
    "$GO_MIN_MINOR" "$ZITADEL_OIDC_VERSION" >go.mod
  quiet "go get zitadel/oidc $ZITADEL_OIDC_VERSION" go get "github.com/zitadel/oidc/v3/example/server@$ZITADEL_OIDC_VERSION"
  timed build_to_dir "$idp_out" oidc-op github.com/zitadel/oidc/v3/example/server "-s -w"
}

# timed CMD...: run a build_to_dir step and say how long it took (CI logs keep the figures).
timed() { local t=$SECONDS; "$@"; echo "  $3: $((SECONDS - t))s" >&2; }

# Each cache dir has its own lock: another build (another worktree sharing
# .cache) may be filling it; once the lock is ours, build only what is still missing.
mkdir -p "$out" "$ctr_out" "$helm_out" "$gw_out" "$coredns_out" "$idp_out"
(
  flock 8
  mapfile -t todo < <(missing "$out" "${k8s_bins[@]}")
  [ "${#todo[@]}" -eq 0 ] || build_k8s "${todo[@]}"
  [ -z "$(missing "$out" etcd)" ] || build_etcd
) 8>"$out/.build.lock"
(
  flock 9
  mapfile -t todo < <(missing "$ctr_out" "${ctr_bins[@]}")
  [ "${#todo[@]}" -eq 0 ] || build_containerd "${todo[@]}"
) 9>"$ctr_out/.build.lock"
(
  flock 7
  [ -z "$(missing "$helm_out" helm)" ] || build_helm
) 7>"$helm_out/.build.lock"
(
  flock 6
  have_gateway_api || build_gateway_api
) 6>"$gw_out/.build.lock"
(
  flock 5
  [ -z "$(missing "$coredns_out" coredns)" ] || build_coredns
) 5>"$coredns_out/.build.lock"
(
  flock 4
  [ -z "$(missing "$idp_out" oidc-op)" ] || build_idp
) 4>"$idp_out/.build.lock"
have_all || die "build finished but a binary is missing under $out, $ctr_out, $helm_out, $gw_out, $coredns_out or $idp_out"
echo "binaries ready in $out, $ctr_out, $helm_out, $gw_out, $coredns_out and $idp_out ($((SECONDS - started))s)" >&2
