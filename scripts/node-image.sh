#!/usr/bin/env bash
# Builds khw/node:local, the image of container nodes (hypervisor=docker):
# the same Debian root as the VM guest image (make guest-image), with
# systemd, openssh-server, sudo and what Parts 2-3 need (iptables,
# conntrack, ipset, socat, ...). khw's docker plugin runs its entrypoint in
# each container (cgroups, the user, key and host key, masked units), which
# then boots systemd as PID 1. Uses $DOCKER_HOST if set.
# The image is labelled with the guest image's stamp (its package list) and
# rebuilt when that differs. (docker import takes no STOPSIGNAL: the plugin
# sets SIGRTMIN+3, the signal that halts systemd, on each container.)
set -euo pipefail
tag=${1:-khw/node:local}
dir=${KHW_IMAGE_DIR:-/var/lib/khw/images/debian-12}
guest="$(dirname "$0")/guest-image.sh"
stamp="node 2; $(bash "$guest" --stamp)"
have=$(docker image inspect -f '{{index .Config.Labels "dev.khw.image-stamp"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$stamp" ]; then
  echo "node-image: $tag exists"
  exit 0
fi
bash "$guest"
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
docker import \
  -c 'CMD ["/bin/bash", "/etc/khw/entrypoint.sh"]' \
  -c 'ENV container=docker' \
  -c "LABEL dev.khw.image-stamp=\"$stamp\"" \
  "$dir/rootfs.tar" "$tag" >/dev/null
if [ -n "$old" ]; then
  echo "node-image: $tag was built from another package list; rebuilt"
  docker rmi "$old" >/dev/null 2>&1 || true # still used by a container: kept
fi
echo "node-image: built $tag"
