#!/usr/bin/env bash
# Installs what khw's build and tests need on a Debian/Ubuntu machine.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
for pkg in protobuf-compiler iproute2 iptables openssh-server openssh-client \
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils genisoimage util-linux \
  debootstrap e2fsprogs docker.io nginx-light libnginx-mod-stream openssl graphviz \
  busybox-static wget dnsmasq-base jq bind9-dnsutils gcc libc6-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confnew "${need[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null; then
  echo "install-deps: kubectl is not installed; the tests compare khw's kubeconfigs with kubectl's." >&2
  echo "install-deps: install it from your distribution or https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: Go 1.26 or newer is needed (https://go.dev/dl/)" >&2
  exit 1
fi
echo "install-deps: ok"
