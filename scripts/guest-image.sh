#!/usr/bin/env bash
# Builds the lab's guest image from Debian's packages: a Debian 12 root with
# openssh-server and cloud-init, configured only through a NoCloud seed, as
# an Ubuntu cloud image would be. Output (cached; a second run reuses it):
#   $KHW_IMAGE_DIR/base.qcow2   the root filesystem (ext4, no partition table)
#   $KHW_IMAGE_DIR/vmlinuz      the Debian cloud kernel, for direct boot
#   $KHW_IMAGE_DIR/initrd.img
#   $KHW_IMAGE_DIR/rootfs.tar   the same root as a tarball, for the container
#                               node image (make node-image)
# Default KHW_IMAGE_DIR: /var/lib/khw/images/debian-12. Needs root,
# debootstrap, e2fsprogs and qemu-utils (make deps).
set -euo pipefail
out=${KHW_IMAGE_DIR:-/var/lib/khw/images/debian-12}
if [ -s "$out/base.qcow2" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/rootfs.tar" ]; then
  echo "guest-image: cached in $out"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "guest-image: run as root" >&2; exit 1; }

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/khw-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
start=$(date +%s)
echo "guest-image: debootstrap bookworm from $mirror (a few minutes)"
# python3-cffi-backend: without it debootstrap cannot resolve a virtual
# dependency and cloud-init stays unconfigured.
debootstrap --variant=minbase \
  --include=systemd-sysv,openssh-server,cloud-init,python3-cffi-backend,ifupdown,iproute2,netbase,udev,sudo,linux-image-cloud-amd64 \
  bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "/dev/vda / ext4 defaults 0 1" > "$root/etc/fstab"
# Only the NoCloud seed configures the guest; no network look-ups at boot.
cat > "$root/etc/cloud/cloud.cfg.d/90_khw.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
CFG
# The host keys come from the seed; none are baked into the image.
rm -f "$root"/etc/ssh/ssh_host_*
echo "khw-guest" > "$root/etc/hostname"
apt_clean() { rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*; }
apt_clean

mkdir -p "$out"
cp "$(ls "$root"/boot/vmlinuz-* | tail -1)" "$work/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | tail -1)" "$work/initrd.img"
tar -C "$root" -cf "$work/rootfs.tar" --exclude=./boot --exclude=./lib/modules --exclude=./usr/lib/modules .
mke2fs -q -t ext4 -d "$root" -L root "$work/guest.raw" 3G
qemu-img convert -O qcow2 "$work/guest.raw" "$work/base.qcow2"
chmod 0644 "$work/base.qcow2" "$work/vmlinuz" "$work/initrd.img"
mv "$work/vmlinuz" "$work/initrd.img" "$out/"
mv "$work/rootfs.tar" "$out/rootfs.tar"
mv "$work/base.qcow2" "$out/base.qcow2"
chmod 0755 "$out"
echo "guest-image: built $out/base.qcow2 ($(du -h "$out/base.qcow2" | cut -f1)) in $(( $(date +%s) - start ))s"
