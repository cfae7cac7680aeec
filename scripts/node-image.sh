#!/usr/bin/env bash
# Builds khw/node:local, the image of container nodes (hypervisor=docker):
# the same Debian root as the VM guest image (make guest-image), with
# openssh-server and sudo. khw's docker plugin gives each container its user,
# key and host key, and runs sshd. Uses $DOCKER_HOST if set.
set -euo pipefail
tag=${1:-khw/node:local}
dir=${KHW_IMAGE_DIR:-/var/lib/khw/images/debian-12}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "node-image: $tag exists"
  exit 0
fi
bash "$(dirname "$0")/guest-image.sh"
docker import -c 'CMD ["/bin/sh", "/etc/khw/init.sh"]' "$dir/rootfs.tar" "$tag" >/dev/null
echo "node-image: built $tag"
