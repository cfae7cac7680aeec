#!/usr/bin/env bash
# Builds the lab's guest image from Debian's packages: a Debian 12 root with
# openssh-server and cloud-init, configured only through a NoCloud seed, as
# an Ubuntu cloud image would be. Output (cached; a second run reuses it):
#   $KHW_IMAGE_DIR/base.qcow2   the root filesystem (ext4, no partition table)
#   $KHW_IMAGE_DIR/vmlinuz      the Debian cloud kernel, for direct boot
#   $KHW_IMAGE_DIR/initrd.img
#   $KHW_IMAGE_DIR/rootfs.tar   the same root as a tarball, for the container
#                               node image (make node-image)
#   $KHW_IMAGE_DIR/stamp        what the root was built from (the package
#                               list); a cache with another stamp is rebuilt
# Default KHW_IMAGE_DIR: /var/lib/khw/images/debian-12. Needs root,
# debootstrap, e2fsprogs and qemu-utils (make deps).
#   guest-image.sh --stamp      prints the stamp this script builds, and exits
set -euo pipefail
out=${KHW_IMAGE_DIR:-/var/lib/khw/images/debian-12}

# What the root holds. The first line boots a VM (cloud-init, ifupdown,
# udev, the cloud kernel) and a container node alike (systemd, sshd, sudo).
# The rest is what Parts 2-3 of the post need from the OS, carried in the
# image because nodes have no internet: the post's workers run
# `apt-get install socat conntrack ipset`; kube-proxy needs iptables;
# kmod, procps, curl, less for the units and for a person on the node
# (bsdextrautils: hexdump, which Kubernetes The Hard Way's encryption test
# runs on a controller);
# dbus for hostnamectl and friends.
# python3-cffi-backend: without it debootstrap cannot resolve a virtual
# dependency and cloud-init stays unconfigured.
packages=systemd-sysv,openssh-server,cloud-init,python3-cffi-backend,ifupdown,iproute2,netbase,udev,sudo,linux-image-cloud-amd64
packages+=,dbus,iptables,conntrack,socat,ipset,curl,ca-certificates,kmod,procps,less,bsdextrautils
# Bump when the build changes the root in another way than its packages.
stamp="bookworm 3 $packages"
if [ "${1:-}" = --stamp ]; then
  echo "$stamp"
  exit 0
fi
cached() {
  [ -s "$out/base.qcow2" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/rootfs.tar" ] &&
    [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]
}
if cached; then
  echo "guest-image: cached in $out"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "guest-image: run as root" >&2; exit 1; }
# One build at a time per cache: a second caller waits, then finds it built.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if cached; then
  echo "guest-image: cached in $out"
  exit 0
fi
if [ -e "$out/stamp" ] || [ -e "$out/rootfs.tar" ]; then
  # VMs' qcow2 overlays name base.qcow2 by path: one made on the old base
  # reads the new one under it after a restart, which corrupts its disk.
  echo "guest-image: $out was built from another package list; rebuilding"
  echo "guest-image: VMs made on the old base.qcow2 must be made again (khw destroy, then khw run)" >&2
fi

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
debootstrap --variant=minbase --include="$packages" \
  bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "/dev/vda / ext4 defaults 0 1" > "$root/etc/fstab"
# Only the NoCloud seed configures the guest; no network look-ups at boot.
cat > "$root/etc/cloud/cloud.cfg.d/90_khw.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
CFG
# The host keys come from the seed; none are baked into the image. No
# machine-id either: each VM makes its own at first boot (container nodes
# get theirs from their entrypoint), as cloud images ship.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo "khw-guest" > "$root/etc/hostname"
apt_clean() { rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*; }
apt_clean

mkdir -p "$out"
rm -f "$out/stamp"
cp "$(ls "$root"/boot/vmlinuz-* | tail -1)" "$work/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | tail -1)" "$work/initrd.img"
tar -C "$root" -cf "$work/rootfs.tar" --exclude=./boot --exclude=./lib/modules --exclude=./usr/lib/modules .
mke2fs -q -t ext4 -d "$root" -L root "$work/guest.raw" 3G
qemu-img convert -O qcow2 "$work/guest.raw" "$work/base.qcow2"
chmod 0644 "$work/base.qcow2" "$work/vmlinuz" "$work/initrd.img"
mv "$work/vmlinuz" "$work/initrd.img" "$out/"
mv "$work/rootfs.tar" "$out/rootfs.tar"
mv "$work/base.qcow2" "$out/base.qcow2"
echo "$stamp" > "$out/stamp"
chmod 0755 "$out"
echo "guest-image: built $out/base.qcow2 ($(du -h "$out/base.qcow2" | cut -f1)) in $(( $(date +%s) - start ))s"
