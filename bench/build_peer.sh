#!/usr/bin/env bash
# Build the benchmark's Go peer (Caddy) from the Go module proxy into .cache/peer/.
# Not committed, not needed by the tests; a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .cache/peer/caddy ] && exit 0
command -v go >/dev/null || { echo "bench/build_peer.sh: no go on PATH; the peer column is skipped" >&2; exit 0; }
mkdir -p .cache/peer
GOBIN="$PWD/.cache/peer" go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9
