#!/usr/bin/env bash
# The post's sections 3-5 as the post runs them: cfssl + cfssljson for the CA
# and the 9 certificates, kubectl for the 6 kubeconfigs, head/base64 for the
# encryption key. One command after another, as in the post, with its bugs
# fixed (the right worker names, `$instance` instead of `$line`) so that it
# runs. khw's tests compare against its output and `make bench` times it.
#
#   bench/post-pipeline.sh DIR            # everything, into DIR
#   bench/post-pipeline.sh DIR kubeconfigs  # only the kubeconfigs, from DIR's pems
#
# The post's topology (2 controllers, 2 workers, the load balancer) unless
# KHW_POST_CONTROLLERS, KHW_POST_WORKERS ("name:ip name:ip ...") and
# KHW_POST_LB (its IP) say otherwise: `make bench` scales the same commands
# to 3 controllers and 100 workers that way.
set -euo pipefail
dir=$1
what=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
cd "$dir"

CONTROLLERS=${KHW_POST_CONTROLLERS:-"m1:10.200.1.10 m2:10.200.1.11"}
WORKERS=${KHW_POST_WORKERS:-"n1:10.200.1.13 n2:10.200.1.14"}
KUBERNETES_PUBLIC_ADDRESS=${KHW_POST_LB:-10.200.1.15}

csr() { # file CN O [OU]
  cat > "$1-csr.json" <<JSON
{
  "CN": "$2",
  "key": {"algo": "rsa", "size": 2048},
  "names": [{"C": "Westeros", "L": "The North", "O": "$3", "OU": "${4:-Kubernetes The Hard Way}", "ST": "Winterfell"}]
}
JSON
}

gencert() { # name [hostnames]
  cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json ${2:+-hostname=$2} \
    -profile=kubernetes "$1-csr.json" 2>/dev/null | cfssljson -bare "$1"
}

certs() {
  cp "$here/../recipes/hardway/ca-config.json" "$here/../recipes/hardway/ca-csr.json" .
  cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
  csr admin admin system:masters
  gencert admin
  for w in $WORKERS; do
    instance=${w%%:*} INTERNAL_IP=${w#*:}
    csr "$instance" "system:node:$instance" system:nodes
    gencert "$instance" "$instance,$INTERNAL_IP"
  done
  csr kube-controller-manager system:kube-controller-manager system:kube-controller-manager
  gencert kube-controller-manager
  csr kube-proxy system:kube-proxy system:node-proxier
  gencert kube-proxy
  csr kube-scheduler system:kube-scheduler system:kube-scheduler
  gencert kube-scheduler
  # The post's list, 10.32.0.1,m1,10.200.1.10,m2,10.200.1.11,proxy,..., from the node table.
  CERT_HOSTNAME=10.32.0.1
  for c in $CONTROLLERS; do CERT_HOSTNAME+=",${c%%:*},${c#*:}"; done
  CERT_HOSTNAME+=",proxy,$KUBERNETES_PUBLIC_ADDRESS,127.0.0.1,localhost,kubernetes.default"
  csr kubernetes kubernetes Kubernetes
  gencert kubernetes "$CERT_HOSTNAME"
  csr service-account service-accounts Kubernetes
  gencert service-account
}

kubeconfig() { # name user server
  kubectl config set-cluster kubernetes-the-hard-way --certificate-authority=ca.pem --embed-certs=true \
    --server="$3" --kubeconfig="$1.kubeconfig" >/dev/null
  kubectl config set-credentials "$2" --client-certificate="$1.pem" --client-key="$1-key.pem" \
    --embed-certs=true --kubeconfig="$1.kubeconfig" >/dev/null
  kubectl config set-context default --cluster=kubernetes-the-hard-way --user="$2" --kubeconfig="$1.kubeconfig" >/dev/null
  kubectl config use-context default --kubeconfig="$1.kubeconfig" >/dev/null
}

kubeconfigs() {
  for w in $WORKERS; do
    instance=${w%%:*}
    kubeconfig "$instance" "system:node:$instance" "https://$KUBERNETES_PUBLIC_ADDRESS:6443"
  done
  kubeconfig kube-proxy system:kube-proxy "https://$KUBERNETES_PUBLIC_ADDRESS:6443"
  kubeconfig kube-controller-manager system:kube-controller-manager https://127.0.0.1:6443
  kubeconfig kube-scheduler system:kube-scheduler https://127.0.0.1:6443
  kubeconfig admin admin https://127.0.0.1:6443
}

encryption() {
  ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
  cat > encryption-config.yaml <<YAML
kind: EncryptionConfig
apiVersion: v1
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ${ENCRYPTION_KEY}
      - identity: {}
YAML
}

case $what in
  all) certs; kubeconfigs; encryption ;;
  certs) certs ;;
  kubeconfigs) kubeconfigs ;;
  *) echo "unknown step $what" >&2; exit 2 ;;
esac
