#!/usr/bin/env bash
# Make sure a Docker engine answers: reuse a running one, otherwise install
# Debian's docker.io and start dockerd (this kind of machine has no systemd).
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-engine: installing docker.io from the Debian mirror"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "ensure-engine: starting dockerd (log: $log)"
  # setsid: the daemon must outlive the make target that started it.
  $sudo setsid dockerd >"$log" 2>&1 < /dev/null &
fi

for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure-engine: dockerd did not answer within 60 s; see $log" >&2
exit 1
