#!/usr/bin/env bash
# Builds the Docker Compose v2 CLI plugin from its Go module and installs it as
# ~/.docker/cli-plugins/docker-compose, so that `docker compose config` can validate
# deploy/compose/compose.yaml (no Docker daemon needed). Idempotent: does nothing when
# `docker compose version` already works. Needs Go 1.24 or later and the Go module proxy.
set -euo pipefail

VERSION="${KNNSTREAM_COMPOSE_VERSION:-v2.40.3}"
MODULE="github.com/docker/compose/v2"
DEST="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose"

log() { echo "install-compose-plugin.sh: $*" >&2; }

if docker compose version >/dev/null 2>&1; then
  exit 0
fi
command -v go >/dev/null 2>&1 || { log "error: go is not on PATH"; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

log "building Docker Compose $VERSION from $MODULE (takes a few minutes the first time)"
# `go install module@version` refuses modules with exclude directives, as Compose's has:
# build it from a wrapper module that carries the same excludes and replacements.
GOMOD="$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[ -f "$GOMOD" ] || { log "error: cannot download $MODULE@$VERSION"; exit 1; }
{
  echo "module knnstream.local/composeplugin"
  echo
  grep -m1 '^go ' "$GOMOD"
  echo
  echo "require $MODULE $VERSION"
  echo
  sed -n '/^exclude (/,/^)/p; /^exclude [^(]/p; /^replace (/,/^)/p; /^replace [^(]/p' "$GOMOD"
} >go.mod
cat >tools.go <<EOF
//go:build tools

package tools

import _ "$MODULE/cmd"
EOF
go mod tidy >/dev/null 2>&1
mkdir -p "$(dirname "$DEST")"
go build -trimpath -ldflags "-s -w -X $MODULE/internal.Version=$VERSION" -o "$DEST" "$MODULE/cmd"
docker compose version >&2
