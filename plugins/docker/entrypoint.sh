#!/bin/bash
# khw's container node entrypoint (copied in as /etc/khw/entrypoint.sh and
# run as the container's command). It readies a container for systemd and
# for a kubelet and containerd inside it, the way kind's entrypoint does,
# then execs /sbin/init as PID 1, so that container nodes run the same
# systemd units as VMs. It runs again, as is, on every start of the
# container. KHW_USER names the login user.
set -euo pipefail

log() { echo "khw-entrypoint: $*" >&2; }

# With a private cgroup namespace Docker mounts the cgroup v1 controllers
# read-only (and `mount -o remount,rw` says "mount point is busy"), so each
# is mounted again, read-write, at the same place. Its root is this
# container's cgroup. Then the kubelet's cgroupRoot, /kubelet, is made in
# every controller (without it: "cgroup [kubelet] has some missing paths"),
# and bind-mounted onto itself so that systemd does not remove it.
fix_cgroup_v1() {
  local line target opts mounts
  mapfile -t mounts < <(findmnt -rn -t cgroup -o TARGET,FS-OPTIONS)
  for line in "${mounts[@]}"; do
    target=${line%% *}
    # FS-OPTIONS are the hierarchy's: rw,memory or rw,xattr,name=systemd.
    opts=$(tr , '\n' <<<"${line#* }" | grep -vx -e rw -e ro | paste -sd, -)
    case ",$opts," in
      *,name=*) [[ $opts == *none* ]] || opts="none,$opts" ;;
    esac
    umount "$target"
    mount -t cgroup -o "$opts" cgroup "$target"
  done
  mount --make-rprivate /sys/fs/cgroup
  for line in "${mounts[@]}"; do
    target=${line%% *}
    mkdir -p "$target/kubelet"
    if [ -f "$target/cpuset.cpus" ]; then
      # A cpuset cgroup takes no task until it has cpus and mems.
      cat "$target/cpuset.cpus" >"$target/kubelet/cpuset.cpus"
      cat "$target/cpuset.mems" >"$target/kubelet/cpuset.mems"
    fi
    mount --bind "$target/kubelet" "$target/kubelet"
  done
}

# cgroup v2 (unified): the namespace's root is this container's cgroup. As
# kind does, /kubelet is made once systemd has moved every process out of
# the root (a oneshot unit), since the root's subtree_control cannot be
# written while the root holds processes.
fix_cgroup_v2() {
  if findmnt -rn -o OPTIONS /sys/fs/cgroup | grep -qE '(^|,)ro(,|$)'; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null ||
      { umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup; }
  fi
  cat >/etc/systemd/system/khw-kubelet-cgroup.service <<'UNIT'
[Unit]
Description=The kubelet's cgroup root, /kubelet, with every controller (khw)
DefaultDependencies=no
After=sysinit.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'sub() { sed -e "s/ / +/g" -e "s/^/+/" "/sys/fs/cgroup/$1/cgroup.controllers" >"/sys/fs/cgroup/$1/cgroup.subtree_control"; }; sub /; mkdir -p /sys/fs/cgroup/kubelet; sub /kubelet'
[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p /etc/systemd/system/multi-user.target.wants
  ln -sf /etc/systemd/system/khw-kubelet-cgroup.service /etc/systemd/system/multi-user.target.wants/
}

fix_cgroup() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    log "cgroup v2"
    fix_cgroup_v2
  else
    log "cgroup v1"
    fix_cgroup_v1
  fi
}

# Each node its own machine-id (the image carries one; the kubelet and
# journald tell nodes apart by it). Made once; kept across restarts. dbus's
# copy goes too, or systemd-machine-id-setup would take the image's again.
fix_machine_id() {
  if [ ! -f /etc/khw/machine-id.made ]; then
    rm -f /etc/machine-id /var/lib/dbus/machine-id
    systemd-machine-id-setup >/dev/null 2>&1
    if [ -d /var/lib/dbus ]; then ln -sf /etc/machine-id /var/lib/dbus/machine-id; fi
    touch /etc/khw/machine-id.made
  fi
}

# The login user with the workspace key and passwordless sudo, and the host
# key khw made for this node: ssh.service (Debian's) with that key only.
setup_ssh() {
  local u=$KHW_USER
  id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
  install -d -m 700 -o "$u" -g "$u" "/home/$u/.ssh"
  install -m 600 -o "$u" -g "$u" /etc/khw/authorized_keys "/home/$u/.ssh/authorized_keys"
  echo "$u ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/khw
  chmod 440 /etc/sudoers.d/khw
  if [ -f /etc/khw/ssh_host_ed25519_key ]; then
    rm -f /etc/ssh/ssh_host_*
    install -m 600 /etc/khw/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
    install -m 644 /etc/khw/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
    rm -f /etc/khw/ssh_host_ed25519_key
  fi
  mkdir -p /etc/ssh/sshd_config.d
  cat >/etc/ssh/sshd_config.d/khw.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
CONF
  mkdir -p /etc/systemd/system/multi-user.target.wants
  ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
}

# What a container node must not run. Its address comes from Docker, but
# cloud-init's fallback config has ifupdown (networking.service) wait for
# DHCP on eth0: with cloud-init unmasked, boot never finishes (seen:
# ssh.service waits behind networking.service). networking and ifup@ are
# masked too, in case an image names eth0 in /etc/network/interfaces.
# The rest are not for a container and skip or pass here only by luck of
# a condition (no /dev/console without a tty, /sys read-only): ttys,
# udev, kernel modules (there are none), the root filesystem's remount
# and fsck, binfmt, kernel pseudo-filesystems, and timers that want a
# network or a disk (apt, e2scrub, fstrim) and would leave the node
# degraded one day. journald keeps running, without the host's kmsg.
mask_units() {
  local u
  for u in cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service \
    cloud-init-hotplugd.service cloud-init-hotplugd.socket cloud-init.target cloud-config.target \
    networking.service ifup@.service ifupdown-wait-online.service \
    systemd-networkd-wait-online.service \
    getty@.service serial-getty@.service console-getty.service container-getty@.service getty-static.service \
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-udev-trigger.service systemd-udev-settle.service \
    kmod-static-nodes.service systemd-modules-load.service \
    systemd-remount-fs.service systemd-fsck-root.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "/etc/systemd/system/$u"
  done
  touch /etc/cloud/cloud-init.disabled 2>/dev/null || true
  mkdir -p /etc/systemd/journald.conf.d
  printf '[Journal]\nReadKMsg=no\n' >/etc/systemd/journald.conf.d/khw.conf
}

# Mounts made under / (containerd's, the kubelet's volumes) propagate.
mount --make-rshared /
fix_cgroup
fix_machine_id
setup_ssh
mask_units
log "starting systemd"
exec /sbin/init
