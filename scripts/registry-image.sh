#!/usr/bin/env bash
# Builds khw/registry:local, the distribution registry image, from Debian's
# package docker-registry, for machines with no registry to pull from.
# Online users run the stock registry:2 instead. The package is downloaded
# and unpacked, not installed: installing it would start a registry service
# on the host's port 5000. khw passes its settings as REGISTRY_* variables,
# which both images honour; the config file here only gives the same
# defaults as registry:2's.
set -euo pipefail
tag=${1:-khw/registry:local}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "registry-image: $tag exists"
  exit 0
fi
root=$(mktemp -d)
deb=$(mktemp -d)
trap 'rm -rf "$root" "$deb"' EXIT
bin=/usr/bin/docker-registry
if [ ! -x $bin ]; then
  (cd "$deb" && apt-get download -qq docker-registry) ||
    { echo "registry-image: cannot download Debian's docker-registry (apt-get update first?)" >&2; exit 1; }
  dpkg-deb -x "$deb"/docker-registry_*.deb "$deb/x"
  bin=$deb/x/usr/bin/docker-registry
fi
mkdir -p "$root"/{usr/bin,etc/docker/registry,var/lib/registry,tmp}
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/bin/docker-registry"
ldd "$bin" | awk '/=>/ {print $3} !/=>/ && /^[ \t]*\// {print $1}' | while read -r lib; do
  [ -n "$lib" ] && mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
done
cat > "$root/etc/docker/registry/config.yml" <<'YML'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YML
echo 'root:x:0:0:root:/root:/bin/false' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/bin/docker-registry", "serve"]' \
  -c 'CMD ["/etc/docker/registry/config.yml"]' \
  -c 'EXPOSE 5000' -c 'VOLUME ["/var/lib/registry"]' - "$tag" >/dev/null
echo "registry-image: built $tag"
