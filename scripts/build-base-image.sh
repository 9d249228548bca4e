#!/usr/bin/env bash
# Build a Debian base image that looks like a fresh cloud host (systemd as
# PID 1, python3, sudo) without pulling from any registry: debootstrap from
# the Debian mirror, then `docker import`. Does nothing if the tag exists.
#
# usage: build-base-image.sh SUITE TAG     e.g. bookworm pypi-index/debian:12
set -euo pipefail

suite=${1:?suite, e.g. bookworm}
tag=${2:?image tag, e.g. pypi-index/debian:12}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/rootfs-${suite}.XXXXXX")
trap '$sudo rm -rf "$root"' EXIT

echo "build-base-image: debootstrap $suite from $mirror (a few minutes)"
$sudo debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,iproute2,procps \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2
  exit 1
}
rm -f "$root.log"

# A container has no consoles, udev or hardware clock: these units only fail
# or wait there. machine-id is left empty so each container gets its own.
$sudo chroot "$root" systemctl mask \
  getty.target console-getty.service systemd-udevd.service \
  systemd-udev-trigger.service systemd-firstboot.service \
  systemd-remount-fs.service sys-kernel-debug.mount >/dev/null 2>&1
$sudo truncate -s 0 "$root/etc/machine-id"
$sudo rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

$sudo tar -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/sbin/init"]' \
  - "$tag" >/dev/null
echo "build-base-image: built $tag"
