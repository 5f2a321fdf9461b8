#!/bin/bash
# bench/stargz/build.sh [OUT] - builds the stargz snapshotter daemon (the cold-start peer) offline
# from Debian's sources: apt-get install golang-go golang-github-containerd-stargz-snapshotter-dev.
# main.go serves stargz's snapshotter on a unix socket (-address, -root, -log-level, and
# -plain-http-host for a registry reached over HTTP); Debian lacks k8s.io/cri-api, whose one type
# stargz's resolver uses is stubbed (cri-api-stub.go.txt). Prints the binary's path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-/tmp/dadi-stargz-build/containerd-stargz-grpc}
G=$(dirname "$OUT")/gopath
mkdir -p "$G/src/stargzd" "$G/src/k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
cp "$HERE/main.go" "$G/src/stargzd/main.go"
cp "$HERE/cri-api-stub.go.txt" "$G/src/k8s.io/cri-api/pkg/apis/runtime/v1alpha2/stub.go"
cd "$G/src/stargzd"
GO111MODULE=off GOPATH="$G:/usr/share/gocode" GOPROXY=off CGO_ENABLED=0 go build -o "$OUT" .
echo "$OUT"
