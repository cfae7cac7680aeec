package kubeconfig_test

import (
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

// pki is a CA and a client certificate it signs: what a kubeconfig embeds.
const pki = `ca = pki.ca("ca", csr = {"CN": "Kubernetes", "key": {"algo": "rsa", "size": 2048}})
config = {"signing": {"default": {"expiry": "8760h", "usages": ["client auth"]}}}
admin = pki.cert("admin", ca = ca, csr = {"CN": "admin", "names": [{"O": "system:masters"}]}, config = config)
`

func TestAKubeconfigEmbedsTheCAAndTheCertificate(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.File("kc.star", pki+`kc = kubeconfig.write("admin", server = "https://10.200.1.15:6443", ca = ca, cert = admin, user = "admin")
kubeconfig.write("m1", server = "https://127.0.0.1:6443", ca = ca, cert = admin, user = "system:node:m1", cluster = "lab", context = "m1")
if (kc.file.path, kc.file.producer, kc.file.secret, kc.server, kc.user) != ("admin.kubeconfig", "kubeconfig.admin", True, "https://10.200.1.15:6443", "admin"):
    fail(kc.file, kc.server, kc.user)
`)
	rec := f.MustEval("kc.star", nil)
	f.AssertResource(rec, "kubeconfig.admin", startest.Want{Type: "kubeconfig", Provider: "khw",
		Inputs: map[string]any{"server": "https://10.200.1.15:6443", "user": "admin", "cluster": "kubernetes-the-hard-way",
			"context": "default", "ca": "ca.pem", "cert": "admin.pem", "key": "admin-key.pem"},
		Deps: []string{"pki.ca.ca", "pki.cert.admin"}})
	f.AssertResource(rec, "kubeconfig.m1", startest.Want{
		Inputs: map[string]any{"server": "https://127.0.0.1:6443", "user": "system:node:m1", "cluster": "lab", "context": "m1"}})
}

func TestBadKubeconfigArgumentsNameTheLine(t *testing.T) {
	args := `server = "https://10.200.1.15:6443", ca = ca, cert = admin, user = "admin"`
	startest.NewFixture(t, all.Registry()).AssertCallErrors("kc.star", pki, map[string]string{
		`kubeconfig.write("admin", server = "https://x:6443", ca = admin, cert = admin, user = "admin")`:   "kubeconfig.write: ca must be a pki.ca, not pki.cert.admin",
		`kubeconfig.write("admin", server = "https://x:6443", ca = ca, cert = ca, user = "admin")`:         "kubeconfig.write: cert must be a pki.cert, not pki.ca.ca",
		`kubeconfig.write("admin", server = "https://x:6443", ca = "ca.pem", cert = admin, user = "a")`:    `kubeconfig.write: for parameter "ca": got string, want`,
		`kubeconfig.write("admin", server = "http://10.200.1.15:6443", ca = ca, cert = admin, user = "a")`: `kubeconfig.write: server "http://10.200.1.15:6443" must be an https URL such as https://10.200.1.15:6443`,
		`kubeconfig.write("admin", server = "https://", ca = ca, cert = admin, user = "a")`:                `server "https://" must be an https URL`,
		`kubeconfig.write("admin", server = "10.200.1.15:6443", ca = ca, cert = admin, user = "a")`:        `server "10.200.1.15:6443" must be an https URL`,
		`kubeconfig.write("admin", server = "https://x:6443", ca = ca, cert = admin, user = "")`:           "kubeconfig.write: user is empty",
		`kubeconfig.write("", ` + args + `)`:                                          `kubeconfig.write: name "" must be a file name: letters, digits, '.', '_' and '-'`,
		`kubeconfig.write("../admin", ` + args + `)`:                                  `name "../admin" must be a file name`,
		`kubeconfig.write(".admin", ` + args + `)`:                                    `name ".admin" must be a file name`,
		`kubeconfig.write("admin", ` + args + `, cluster = "")`:                       "kubeconfig.write: cluster is empty",
		`kubeconfig.write("admin", ` + args + `, context = "")`:                       "kubeconfig.write: context is empty",
		`kubeconfig.write("admin", server = "https://x:6443", ca = ca, cert = admin)`: "kubeconfig.write: missing argument for user",
		`kubeconfig.write("a", ` + args + `); kubeconfig.write("a", ` + args + `)`:    "kubeconfig.a is declared twice",
	})
}
