#!/usr/bin/env bash
# Installs Debian's prometheus package (/usr/bin/prometheus and /usr/bin/promtool) for the
# metrics, alert-rule and scrape tests. Idempotent: does nothing when both are on PATH.
# Needs root (or sudo) and a Debian-based system.
set -euo pipefail

log() { echo "install-prometheus.sh: $*" >&2; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "error: run as root or install sudo"; exit 1; }
  SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || { log "error: apt-get not found; install Prometheus 2.x so that promtool and prometheus are on PATH"; exit 1; }

# Keep the package's post-install script from starting a system service: the tests run
# their own Prometheus on a free port. Removed again afterwards unless it was there before.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
  log "refreshing the package lists"
  $SUDO apt-get update -qq
fi
log "installing Debian's prometheus package"
if ! $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
  log "install failed; refreshing the package lists and trying once more"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

command -v promtool >/dev/null 2>&1 || { log "error: promtool still not on PATH"; exit 1; }
command -v prometheus >/dev/null 2>&1 || { log "error: prometheus still not on PATH"; exit 1; }
log "$(prometheus --version 2>&1 | head -n 1)"
