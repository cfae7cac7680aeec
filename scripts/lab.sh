#!/usr/bin/env bash
# The post's cluster on this machine, without touching the host's own network:
# everything (bridge, NAT, libvirtd, qemu and its taps, the nodes, the
# registry) lives in a network namespace, khw-lab, with an uplink to a second
# namespace, khw-wan, that stands in for the internet (all addresses 10.200.x).
#
#   scripts/lab.sh up [khw run flags...]   build, start, run the post's recipe
#   scripts/lab.sh down                    khw destroy, stop daemons, remove namespaces
#                                          (destroy failed: the lab goes anyway, its state is set aside)
#   scripts/lab.sh kubectl ARGS...         kubectl (the cluster's version) as admin, through the load balancer
#   scripts/lab.sh ssh NODE [-- CMD...]    log in to a node (khw ssh)
#   scripts/lab.sh exec CMD...             run CMD inside the lab (curl, virsh, ...)
#   scripts/lab.sh khw ARGS...             run khw inside the lab on the lab's workdir
#   scripts/lab.sh docker ARGS...          the lab's own dockerd
#   scripts/lab.sh virsh2 ARGS...          virsh on the second hypervisor host
#   scripts/lab.sh restart libvirtd        kill the lab's libvirtd and start it again (fault tests)
#
# Nodes: VMs where this machine runs KVM guests (a 10 s probe boots the
# guest kernel under KVM, once), containers where it cannot (then say so).
# KHW_ACCEL=kvm or KHW_ACCEL=qemu (emulation, slow) forces VMs;
# KHW_NODES=containers or KHW_NODES=vms chooses outright.
#
# A second hypervisor host (KHW_LAB_HOSTS=2): one more namespace, khw-hv2,
# with its own libvirtd (own mount namespace: /run/libvirt, /var/lib/libvirt,
# /etc/libvirt) listening on qemu+tcp://10.200.254.6/system over a management
# link, and its own br0 joined to the lab's br0 by the link hv2-link, which
# the recipe attaches (--set bridge_ports=hv2-link): one subnet on two hosts.
#   KHW_LAB_HOSTS=2 KHW_LAB_RECIPE=recipes/examples/two-hosts.star scripts/lab.sh up --set bridge_ports=hv2-link
#
# Settings: KHW_LAB_RECIPE (default recipes/hardway.star), KHW_LAB_HOSTS
# (1 or 2), KHW_LAB_WORKDIR (default /var/lib/khw/lab), KHW_IMAGE_DIR
# (default /var/lib/khw/images/debian-12), KHW_ACCEL and KHW_NODES (above),
# KHW_ARTIFACTS (default /var/lib/khw/artifacts: the binaries, built once
# from the Go module proxy and Debian's packages), KHW_LAB_PARAMS (more khw
# flags for every command, e.g. "--set part=1" for the post's Part 1 only),
# KHW_LAB_RECORDED=1 (khw gets --workdir only: the parameters the last run recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
NS=khw-lab
WAN=khw-wan
HV2=khw-hv2
HV2_URI=qemu+tcp://10.200.254.6/system
HV2_DIR=/var/lib/khw/hv2
RUN=/run/khw-lab
RECIPE=${KHW_LAB_RECIPE:-recipes/hardway.star}
WORKDIR=${KHW_LAB_WORKDIR:-/var/lib/khw/lab}
IMAGES=${KHW_IMAGE_DIR:-/var/lib/khw/images/debian-12}
ARTIFACTS=${KHW_ARTIFACTS:-/var/lib/khw/artifacts}
export PATH="/usr/local/go/bin:$PATH"

say() { printf '\033[1mlab:\033[0m %s\n' "$*"; }
in_ns() { ip netns exec "$NS" "$@"; }

DOCKER_SOCK=$RUN/docker.sock
LB_IMAGE=khw/nginx-stream:local
REGISTRY_IMAGE=khw/registry:local
NODE_IMAGE=khw/node:local

# kvm_works: does this machine run KVM guests? /dev/kvm can exist while
# guests die at their first instructions (nested virtualisation without the
# features a kernel needs), so boot the guest kernel under KVM for up to 10 s
# and look for its banner on the serial console. Cached per kernel.
kvm_works() {
  local cache=/var/lib/khw/kvm-probe kernel=$IMAGES/vmlinuz
  [ -r /dev/kvm ] || return 1
  command -v qemu-system-x86_64 >/dev/null || return 1
  [ -f "$kernel" ] || bash scripts/guest-image.sh >&2
  local key; key=$(sha256sum "$kernel" | cut -c1-16)
  if [ -f "$cache" ] && [ "$(cut -d' ' -f1 "$cache")" = "$key" ]; then
    [ "$(cut -d' ' -f2 "$cache")" = yes ]; return
  fi
  local out=no
  if timeout 10 qemu-system-x86_64 -accel kvm -m 256 -nographic -no-reboot -monitor none -serial stdio \
      -kernel "$kernel" -append "console=ttyS0 panic=-1" 2>/dev/null | grep -a -q -m1 "Linux version"; then
    out=yes
  fi
  mkdir -p /var/lib/khw; echo "$key $out" > "$cache"
  [ $out = yes ]
}

# choose_nodes sets NODES (vms or containers) and ACCEL, and says why. A
# lab that is up keeps what it was made with ($RUN/nodes), so that later
# commands plan against the same nodes.
choose_nodes() {
  NODES=${KHW_NODES:-}
  ACCEL=${KHW_ACCEL:-}
  if [ -z "$NODES$ACCEL" ] && [ -f "$RUN/nodes" ]; then
    read -r NODES ACCEL < "$RUN/nodes"
    return
  fi
  if [ -z "$NODES" ]; then
    if [ -n "$ACCEL" ]; then NODES=vms
    elif kvm_works; then NODES=vms ACCEL=kvm
    else
      NODES=containers
      say "this machine cannot run KVM guests (a guest kernel under KVM printed nothing in 10 s): the nodes are containers running systemd, like kind's; KHW_ACCEL=qemu uses emulated VMs instead (slow)"
    fi
  fi
  ACCEL=${ACCEL:-kvm}
  if [ "$NODES" = containers ] && [ "$ACCEL" = kvm ] && [ -z "${KHW_ACCEL:-}" ]; then ACCEL=qemu; fi
}

lab_params() {
  # KHW_LAB_RECORDED=1: the workdir alone, the parameters being those the
  # last run recorded in its state (khw plan says which it used).
  if [ -n "${KHW_LAB_RECORDED:-}" ]; then echo --workdir "$WORKDIR" "${KHW_LAB_PARAMS:-}"; return; fi
  echo --workdir "$WORKDIR" --set accel="$ACCEL" --set image="$IMAGES/base.qcow2" \
    --set kernel="$IMAGES/vmlinuz" --set initrd="$IMAGES/initrd.img" --set hosts_file="$WORKDIR/hosts" \
    --set lb_image="$LB_IMAGE" --set artifact_source=build --set artifacts_dir="$ARTIFACTS" \
    --set mirror=true --set registry_image="$REGISTRY_IMAGE"
  if [ "$NODES" = containers ]; then
    echo --set hypervisor=docker --set image="$NODE_IMAGE"
  fi
  echo "${KHW_LAB_PARAMS:-}"
}

khw_in_lab() { # khw subcommand [flags...]
  local sub=$1; shift
  [ -n "${NODES:-}" ] || choose_nodes
  # shellcheck disable=SC2046
  in_ns env KHW_PLUGIN_PATH="$repo/bin" DOCKER_HOST="unix://$DOCKER_SOCK" "$repo/bin/khw" "$sub" "$RECIPE" $(lab_params) "$@"
}

start_daemons() {
  mkdir -p "$RUN" /var/log/libvirt /run/libvirt
  if ! [ -f "$RUN/libvirtd.pid" ] || ! kill -0 "$(cat "$RUN/libvirtd.pid")" 2>/dev/null; then
    if virsh -c qemu:///system version >/dev/null 2>&1; then
      echo "lab: a libvirtd already serves /run/libvirt outside the lab; stop it first (the lab's libvirtd must live in $NS)" >&2
      exit 1
    fi
    if [ -e /etc/libvirt/qemu/networks/autostart/default.xml ]; then
      say "disabling the autostart of libvirt's own NAT network 'default' (192.168.122.0/24): the lab uses br0"
      rm -f /etc/libvirt/qemu/networks/autostart/default.xml
    fi
    if ! [ -f "$RUN/virtlogd.pid" ] || ! kill -0 "$(cat "$RUN/virtlogd.pid")" 2>/dev/null; then
      in_ns virtlogd -d -p "$RUN/virtlogd.pid"
    fi
    in_ns libvirtd -d -p "$RUN/libvirtd.pid"
    for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
    say "libvirtd and virtlogd run inside $NS"
  fi
}

# The lab's own dockerd, on its own socket and data root (a Docker you run
# yourself is left alone), inside the lab namespace: dockerd needs the
# host's cgroup mounts, so nsenter, not ip netns exec.
start_dockerd() {
  if [ -f "$RUN/dockerd.pid" ] && kill -0 "$(cat "$RUN/dockerd.pid")" 2>/dev/null; then return; fi
  mkdir -p "$RUN" /var/lib/khw/docker
  nsenter --net=/run/netns/"$NS" dockerd --bridge=none -H "unix://$DOCKER_SOCK" \
    --data-root /var/lib/khw/docker --exec-root "$RUN/docker" --pidfile "$RUN/dockerd.pid" \
    > /var/log/khw-lab-dockerd.log 2>&1 &
  for _ in $(seq 150); do docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1 && break; sleep 0.2; done
  docker -H "unix://$DOCKER_SOCK" version >/dev/null || { echo "lab: dockerd did not start: /var/log/khw-lab-dockerd.log" >&2; exit 1; }
  say "dockerd runs inside $NS"
  DOCKER_HOST="unix://$DOCKER_SOCK" bash scripts/lb-image.sh "$LB_IMAGE"
  DOCKER_HOST="unix://$DOCKER_SOCK" bash scripts/registry-image.sh "$REGISTRY_IMAGE"
  DOCKER_HOST="unix://$DOCKER_SOCK" bash scripts/node-image.sh "$NODE_IMAGE"
}

# docker_cleanup removes the containers and networks khw made that no
# state knows of any more (a lab torn down mid-run): dockerd keeps them in
# its data root and would bring a stale br0 back on its next start.
docker_cleanup() {
  local d="docker -H unix://$DOCKER_SOCK"
  for c in $($d ps -aq --filter label=dev.khw.managed=true); do $d rm -f "$c" >/dev/null; done
  for n in $($d network ls -q --filter label=dev.khw.managed=true); do $d network rm "$n" >/dev/null; done
  for v in $($d volume ls -q --filter label=dev.khw.managed=true); do $d volume rm "$v" >/dev/null; done
  # Volumes no container uses any more: this dockerd is the lab's own.
  $d volume prune -f >/dev/null
}

# libvirt_cleanup URI: when khw destroy failed (an add-on's API server
# timing out, say), the domains khw recorded in the lab's state, and their
# disks in the pool khw, are removed from the libvirtd at URI by hand: a
# libvirtd keeps its domains' definitions on disk, and the next lab would
# find them. Only the state's own vm names: the lab's libvirtd reads the
# host's /etc/libvirt, which may hold domains that are not the lab's.
libvirt_cleanup() {
  local v="virsh -q -c $1" names
  names=$(jq -r '.resources[] | select(.type == "vm") | .name' "$WORKDIR/.khw/state.json" 2>/dev/null) || return 0
  for d in $names; do
    in_ns $v destroy "$d" >/dev/null 2>&1 || true
    in_ns $v undefine "$d" >/dev/null 2>&1 || true
    for vol in "$d.qcow2" "$d-seed.iso"; do in_ns $v vol-delete "$vol" --pool khw >/dev/null 2>&1 || true; done
  done
}

# The second hypervisor host: its libvirtd and virtlogd run in namespace
# khw-hv2 and in a mount namespace of their own, so that their /run/libvirt,
# /var/lib/libvirt and /etc/libvirt are not the lab's.
start_hv2() {
  if ! ip netns list | grep -qw "$HV2"; then
    ip netns add "$HV2"
    ip -n "$HV2" link set lo up
    # management: the lab reaches libvirtd at 10.200.254.6
    ip link add hv2-mgmt type veth peer name hv2-mgmt-peer
    ip link set hv2-mgmt netns "$NS"; ip link set hv2-mgmt-peer netns "$HV2" name mgmt0
    ip -n "$NS" addr add 10.200.254.5/30 dev hv2-mgmt; ip -n "$NS" link set hv2-mgmt up
    ip -n "$HV2" addr add 10.200.254.6/30 dev mgmt0; ip -n "$HV2" link set mgmt0 up
    # the nodes' segment: hv2's br0 <-> hv2-link, which khw attaches to the lab's br0
    ip -n "$HV2" link add br0 type bridge; ip -n "$HV2" link set br0 up
    ip link add hv2-link type veth peer name hv2-link-peer
    ip link set hv2-link netns "$NS"; ip link set hv2-link-peer netns "$HV2" name uplink0
    ip -n "$HV2" link set uplink0 master br0; ip -n "$HV2" link set uplink0 up
    say "namespace $HV2 made (second hypervisor host)"
  fi
  if [ -f "$RUN/hv2-libvirtd.pid" ] && kill -0 "$(cat "$RUN/hv2-libvirtd.pid")" 2>/dev/null; then return; fi
  mkdir -p "$RUN" "$HV2_DIR"/lib "$HV2_DIR"/cache "$HV2_DIR"/log "$HV2_DIR"/run
  [ -d "$HV2_DIR/etc" ] || cp -a /etc/libvirt "$HV2_DIR/etc"
  rm -f "$HV2_DIR"/etc/qemu/*.xml "$HV2_DIR"/etc/storage/*.xml "$HV2_DIR"/etc/storage/autostart/*.xml
  printf '%s\n' 'listen_tls = 0' 'listen_tcp = 1' 'listen_addr = "10.200.254.6"' 'auth_tcp = "none"' > "$HV2_DIR/libvirtd.conf"
  ip netns exec "$HV2" unshare --mount --propagation private sh -ec "
    mount --bind $HV2_DIR/run /run/libvirt
    mount --bind $HV2_DIR/lib /var/lib/libvirt
    mount --bind $HV2_DIR/etc /etc/libvirt
    mount --bind $HV2_DIR/cache /var/cache/libvirt
    mount --bind $HV2_DIR/log /var/log/libvirt
    virtlogd -d -p $RUN/hv2-virtlogd.pid
    libvirtd -d --listen -f $HV2_DIR/libvirtd.conf -p $RUN/hv2-libvirtd.pid"
  for _ in $(seq 100); do in_ns virsh -c "$HV2_URI" version >/dev/null 2>&1 && break; sleep 0.1; done
  in_ns virsh -c "$HV2_URI" version >/dev/null || { echo "lab: the second libvirtd did not start" >&2; exit 1; }
  say "a second libvirtd runs in $HV2 at $HV2_URI"
}

stop_hv2() {
  for d in libvirtd virtlogd; do
    if [ -f "$RUN/hv2-$d.pid" ]; then kill "$(cat "$RUN/hv2-$d.pid")" 2>/dev/null || true; rm -f "$RUN/hv2-$d.pid"; fi
  done
  for pid in $(ip netns pids "$HV2" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  ip netns del "$HV2" 2>/dev/null || true
}

stop_daemons() {
  if [ -f "$RUN/dockerd.pid" ]; then
    kill "$(cat "$RUN/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$RUN/dockerd.pid" ] && kill -0 "$(cat "$RUN/dockerd.pid")" 2>/dev/null || break; sleep 0.2; done
    rm -f "$RUN/dockerd.pid"
  fi
  for d in libvirtd virtlogd; do
    if [ -f "$RUN/$d.pid" ]; then kill "$(cat "$RUN/$d.pid")" 2>/dev/null || true; rm -f "$RUN/$d.pid"; fi
  done
  # qemu processes of this lab (normally gone after destroy)
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
}

# phase NAME: the time since the last mark is NAME's; the phases go to
# WORKDIR/timings.json for make bench (the format is in bench/report/lab.go).
now() { date +%s.%N; }
phase() {
  local t; t=$(now)
  PHASES="${PHASES:+$PHASES, }{\"name\": \"$1\", \"seconds\": $(awk "BEGIN{printf \"%.1f\", $t - $MARK}")}"
  MARK=$t
}

up() {
  [ "$(id -u)" = 0 ] || { echo "lab: run as root (sudo)" >&2; exit 1; }
  local began started; began=$(now); started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  MARK=$began PHASES=""
  bash scripts/install-deps.sh
  phase deps
  make -s build
  phase build
  bash scripts/guest-image.sh
  phase image
  choose_nodes
  if ! ip netns list | grep -qw "$NS"; then
    ip netns add "$WAN"; ip netns add "$NS"
    ip link add khw-up type veth peer name khw-down
    ip link set khw-up netns "$NS" name up0
    ip link set khw-down netns "$WAN" name down0
    ip -n "$WAN" addr add 10.200.255.1/30 dev down0
    ip -n "$NS" addr add 10.200.255.2/30 dev up0
    for n in "$NS" "$WAN"; do ip -n "$n" link set lo up; done
    ip -n "$WAN" link set down0 up; ip -n "$NS" link set up0 up
    ip -n "$NS" route add default via 10.200.255.1
    say "namespaces $NS and $WAN made"
  fi
  start_daemons
  if [ "${KHW_LAB_HOSTS:-1}" = 2 ]; then start_hv2; fi
  if [ -x bin/khw-plugin-docker ]; then
    start_dockerd
    [ -f "$WORKDIR/.khw/state.json" ] || docker_cleanup
  fi
  mkdir -p "$WORKDIR"
  echo "$NODES $ACCEL" > "$RUN/nodes"
  phase daemons
  local start=$SECONDS rc=0
  # The binaries first, on their own (a cold build takes minutes; then
  # they are cached for every lab), when the recipe and its settings use any.
  if khw_in_lab plan --target artifact. "$@" >/dev/null 2>&1; then
    say "the cluster's binaries (built once into $ARTIFACTS, then reused)"
    khw_in_lab run --target artifact. "$@" || rc=$?
    phase artifacts
  fi
  if [ $rc = 0 ]; then
    say "khw run $RECIPE (nodes: $NODES, accel=$ACCEL)"
    start=$SECONDS
    khw_in_lab run "$@" || rc=$?
    say "khw run took $((SECONDS - start))s"
    phase "khw run"
  fi
  if [ $rc = 0 ]; then
    printf '{"started": "%s", "nodes": "%s", "phases": [%s], "total_seconds": %s}\n' "$started" "$NODES" "$PHASES" "$(awk "BEGIN{printf \"%.1f\", $(now) - $began}")" > "$WORKDIR/timings.json"
  fi
  if [ ! -x bin/khw-plugin-docker ]; then
    say "the docker plugin is not built: the load balancer and its Docker network are the steps reported missing"
  fi
  say "reach a node: scripts/lab.sh ssh m1 (or: bin/khw ssh --workdir $WORKDIR --print m1)"
  if [ $rc = 0 ] && [ -f "$WORKDIR/admin-remote.kubeconfig" ]; then
    say "the cluster, through the load balancer at https://10.200.1.15:6443 (inside the lab's namespace):"
    kubectl_in_lab get nodes -o wide || true
    say "use it: scripts/lab.sh kubectl get pods -A   (KUBECONFIG=$WORKDIR/admin-remote.kubeconfig, kubectl $(kubectl_path | sed 's|.*/kubernetes/||; s|/kubectl||'))"
  fi
  return $rc
}

# kubectl_path is the kubectl of the cluster's Kubernetes version, from
# the artifact cache (the host's own may be too far from the cluster's).
kubectl_path() {
  local p
  p=$(jq -r '.resources["artifact.kubernetes"].outputs.files.kubectl.path // empty' "$WORKDIR/.khw/state.json" 2>/dev/null || true)
  [ -n "$p" ] && [ -x "$p" ] || p=$(command -v kubectl)
  echo "$p"
}

kubectl_in_lab() {
  in_ns env KUBECONFIG="$WORKDIR/admin-remote.kubeconfig" "$(kubectl_path)" "$@"
}

down() {
  if ip netns list | grep -qw "$NS"; then
    if [ -f "$WORKDIR/.khw/state.json" ]; then
      start_daemons
      if ip netns list | grep -qw "$HV2"; then start_hv2; fi
      if [ -x bin/khw-plugin-docker ]; then start_dockerd; fi
      if ! khw_in_lab destroy; then
        say "khw destroy failed; removing the lab anyway"
        libvirt_cleanup qemu:///system
        if ip netns list | grep -qw "$HV2"; then libvirt_cleanup "$HV2_URI"; fi
        # The state now names VMs and containers that are gone: set it
        # aside, so that the next `up` starts from nothing instead of
        # reading back a lab that no longer exists.
        stamp=$(date -u +%Y%m%dT%H%M%SZ)
        for f in state.json state.journal; do
          if [ -f "$WORKDIR/.khw/$f" ]; then mv "$WORKDIR/.khw/$f" "$WORKDIR/.khw/$f.removed-$stamp"; fi
        done
        say "the lab's state is kept aside as $WORKDIR/.khw/state.json.removed-$stamp"
      fi
    fi
    if [ -f "$RUN/dockerd.pid" ]; then docker_cleanup || true; fi
    stop_hv2
    stop_daemons
    ip netns del "$NS" 2>/dev/null || true
  fi
  stop_hv2
  ip netns del "$WAN" 2>/dev/null || true
  rm -rf "$RUN" "$HV2_DIR"
  say "lab removed"
}

# restart kills a lab daemon as a crash would (SIGKILL) and starts it
# again; its VMs or containers are whatever the daemon makes of that.
restart() {
  case $1 in
    libvirtd) kill -9 "$(cat "$RUN/libvirtd.pid")"; rm -f "$RUN/libvirtd.pid"
      for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 || break; sleep 0.1; done
      start_daemons ;;
    *) echo "lab: restart libvirtd" >&2; exit 2 ;;
  esac
}

# Everything runs from main, called on the last line: bash has then read
# the whole script, so editing it while a lab runs cannot derail that run.
main() {
  case ${1:-} in
    up) shift; up "$@" ;;
    down) down ;;
    exec) shift; in_ns "$@" ;;
    kubectl) shift; kubectl_in_lab "$@" ;;
    ssh) shift; in_ns "$repo/bin/khw" ssh --workdir "$WORKDIR" "$@" ;;
    khw) shift; sub=$1; shift; khw_in_lab "$sub" "$@" ;;
    docker) shift; docker -H "unix://$DOCKER_SOCK" "$@" ;;
    virsh2) shift; in_ns virsh -c "$HV2_URI" "$@" ;;
    restart) restart "${2:-}" ;;
    *) sed -n '2,35p' "$0"; exit 2 ;;
  esac
}
main "$@"; exit $?
