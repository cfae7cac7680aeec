#!/usr/bin/env bash
# Builds khw/nginx-stream:local, an nginx image with the stream module, from
# this machine's Debian packages (nginx-light, libnginx-mod-stream), for
# machines with no registry. Real users pull the stock nginx image instead.
# The image carries a label telling khw to load the stream module.
set -euo pipefail
tag=${1:-khw/nginx-stream:local}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "lb-image: $tag exists"
  exit 0
fi
mod=/usr/lib/nginx/modules/ngx_stream_module.so
[ -x /usr/sbin/nginx ] && [ -f $mod ] || { echo "lb-image: apt-get install nginx-light libnginx-mod-stream" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{usr/sbin,usr/lib/nginx/modules,etc,tmp,var/log/nginx,var/lib/nginx,run}
chmod 1777 "$root/tmp"
cp /usr/sbin/nginx "$root/usr/sbin/"
cp $mod "$root/usr/lib/nginx/modules/"
for f in /usr/sbin/nginx $mod; do
  ldd "$f" | awk '/=>/ {print $3} !/=>/ && /^[ \t]*\// {print $1}' | while read -r lib; do
    [ -n "$lib" ] && mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
  done
done
echo 'root:x:0:0:root:/root:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false' > "$root/etc/passwd"
echo 'root:x:0:
nogroup:x:65534:
www-data:x:33:' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  -c 'CMD ["nginx", "-g", "daemon off;"]' \
  -c "LABEL dev.khw.nginx.load_module=$mod" - "$tag" >/dev/null
echo "lb-image: built $tag"
