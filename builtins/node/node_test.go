package node_test

import (
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

// nodes are a VM khw makes and a machine it does not, and files to copy.
const nodes = `br0 = net.bridge("br0", address = "10.200.1.1/24")
key = ssh.key()
m1 = vm.create("m1", ip = "10.200.1.10", bridge = br0, ssh_key = key)
h1 = node.host("h1", ip = "192.0.2.7", ssh_key = key, user = "veeru", port = 2222)
ca = pki.ca("ca", csr = {"CN": "Kubernetes", "key": {"algo": "rsa", "size": 2048}})
`

const etcd = "[Unit]\nDescription=etcd\n[Service]\nExecStart=/usr/local/bin/etcd --name m1\n"

func TestNodeResourcesReachTheirNode(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.File("nodes.star", `ETCD = """`+etcd+`"""
`+nodes+`certs = node.copy(m1, [ca.cert, ca.key], name = "m1-certs")
node.copy(h1, [key.public], name = "h1-bin", dest = "/usr/local/bin", timeout = 60)
mv = node.run(m1, "sudo mv ~/ca.pem /var/lib/kubernetes/", name = "m1-install", after = [certs])
svc = node.service(m1, "etcd", unit = ETCD, files = {"/etc/etcd/etcd.conf": "a=b\n"}, uses = [certs], after = [mv],
    health = "etcdctl endpoint health", health_timeout = 30, timeout = 20)
if (svc.service, svc.node, svc.address) != ("etcd", "m1", "node.service.m1-etcd"):
    fail(svc.service, svc.node, svc.address)
`)
	rec := f.MustEval("nodes.star", nil)
	f.AssertResource(rec, "node.host.h1", startest.Want{Type: "node.host", Provider: "khw",
		Inputs: map[string]any{"host": "192.0.2.7", "user": "veeru", "port": 2222}, Deps: []string{"ssh.key.id_ed25519"}})
	// A VM's user is khw; keys are copied 0600; "~" is the user's home.
	f.AssertResource(rec, "node.copy.m1-certs", startest.Want{Type: "node.copy", Provider: "ssh",
		Inputs: map[string]any{"node": "m1", "host": "10.200.1.10", "port": 22, "user": "khw", "identity": "id_ed25519", "dest": "~",
			"files": []map[string]string{{"path": "ca.pem", "mode": "0644"}, {"path": "ca-key.pem", "mode": "0600"}}},
		Settings: map[string]any{"timeout_s": 300}, Deps: []string{"pki.ca.ca", "pki.key.ca", "vm.m1"}})
	// An absolute destination is written as root; the host's port and user
	// are the ones given.
	f.AssertResource(rec, "node.copy.h1-bin", startest.Want{
		Inputs:   map[string]any{"node": "h1", "host": "192.0.2.7", "port": 2222, "user": "veeru", "dest": "/usr/local/bin", "root": true},
		Settings: map[string]any{"timeout_s": 60}, Deps: []string{"node.host.h1", "ssh.key.id_ed25519"}})
	f.AssertResource(rec, "node.run.m1-install", startest.Want{Type: "node.run", Provider: "ssh",
		Inputs: map[string]any{"host": "10.200.1.10", "command": "sudo mv ~/ca.pem /var/lib/kubernetes/"},
		Deps:   []string{"node.copy.m1-certs", "vm.m1"}})
	// uses restart the service; after only orders it.
	f.AssertResource(rec, "node.service.m1-etcd", startest.Want{Type: "node.service", Provider: "ssh",
		Inputs: map[string]any{"service": "etcd", "unit": etcd, "files": map[string]string{"/etc/etcd/etcd.conf": "a=b\n"},
			"health": "etcdctl endpoint health"},
		Settings: map[string]any{"timeout_s": 20, "health_timeout_s": 30},
		Deps:     []string{"node.copy.m1-certs", "vm.m1"}, After: []string{"node.run.m1-install"}})
}

func TestBadNodeArgumentsNameTheLine(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.AssertCallErrors("nodes.star", nodes, map[string]string{
		`node.copy(br0, [ca.cert], name = "x")`:                 "node.copy: node must be a vm or a node.host, not net.bridge.br0",
		`node.copy(m1, [ca.cert], name = "x", timeout = 0)`:     "node.copy: timeout 0 must be from 1 to 3600 seconds",
		`node.copy(m1, [ca.cert], name = "x", timeout = 3601)`:  "node.copy: timeout 3601 must be from 1 to 3600 seconds",
		`node.copy(m1, [], name = "x")`:                         "node.copy: files is empty",
		`node.copy(m1, [ca.cert], name = "x", dest = "")`:       `node.copy: dest "" is not a directory path`,
		`node.copy(m1, [ca.cert], name = "x", dest = "a\nb")`:   `node.copy: dest "a\nb" is not a directory path`,
		`node.copy(m1, ["ca.pem"], name = "x")`:                 "node.copy: files[0] must be a workdir file such as ca.cert, not string",
		`node.copy(m1, [ca.cert, ca.key, ca.cert], name = "x")`: "node.copy: files lists ca.pem twice",
		`node.copy(m1, ca.cert, name = "x")`:                    "node.copy: for parameter files: got file, want list",
		`node.copy(m1, [ca.cert])`:                              "node.copy: missing argument for name",
	})
	f.AssertCallErrors("nodes.star", nodes, map[string]string{
		`node.run(h1, " \n ", name = "x")`:                                   "node.run: command is empty",
		`node.run(ca, "true", name = "x")`:                                   "node.run: node must be a vm or a node.host, not pki.ca.ca",
		`node.run(m1, "true", name = "x", timeout = -1)`:                     "node.run: timeout -1 must be from 1 to 3600 seconds",
		`node.run(m1, "true", name = "x", after = "vm.m1")`:                  `node.run: for parameter "after": got string, want list`,
		`node.run(m1, "true", name = "x"); node.run(h1, "true", name = "x")`: "node.run.x is declared twice",
	})
	// svc is a good etcd service on m1, but for args.
	svc := func(args string) string { return `node.service(m1, "etcd", unit = "[Service]\n", ` + args + `)` }
	f.AssertCallErrors("nodes.star", nodes, map[string]string{
		`node.service(m1, "etcd", unit = "[Unit]\n")`:           "node.service: unit of etcd has no [Service] section",
		`node.service(m1, "etcd d", unit = "[Service]\n")`:      `node.service: name "etcd d" is not a systemd service name (letters, digits, - _ . @)`,
		`node.service(m1, "", unit = "[Service]\n")`:            `node.service: name "" is not a systemd service name`,
		svc(`files = {"etc/x": "a"}`):                           `node.service: files: key "etc/x" must be an absolute, clean path`,
		svc(`files = {"/etc/../x": "a"}`):                       `files: key "/etc/../x" must be an absolute, clean path`,
		svc(`files = {1: "a"}`):                                 "files: key 1 must be an absolute, clean path",
		svc(`files = {"/etc/x": ca.cert}`):                      `node.service: files["/etc/x"] must be the file's text, not file`,
		svc(`files = {"/etc/systemd/system/etcd.service": ""}`): "node.service: files: /etc/systemd/system/etcd.service is the unit itself; give it as unit",
		svc(`health_timeout = 0`):                               "node.service: health_timeout 0 must be from 1 to 3600 seconds",
		svc(`timeout = 9999`):                                   "node.service: timeout 9999 must be from 1 to 3600 seconds",
		svc(`uses = certs`):                                     "undefined: certs",
	})
	f.AssertCallErrors("nodes.star", nodes, map[string]string{
		`node.host("h2", ip = "h2.example", ssh_key = key)`:              `node.host: ip "h2.example" is not an IP address`,
		`node.host("h2", ip = "192.0.2.8", ssh_key = ca)`:                "node.host: ssh_key must be an ssh.key, not pki.ca.ca",
		`node.host("h2", ip = "192.0.2.8", ssh_key = key, port = 0)`:     "node.host: port 0 is not a port number",
		`node.host("h2", ip = "192.0.2.8", ssh_key = key, port = 65536)`: "node.host: port 65536 is not a port number",
		`node.host("h2", ip = "192.0.2.8", ssh_key = key, user = "")`:    "node.host: user is empty",
		`node.host("h1", ip = "192.0.2.8", ssh_key = key)`:               "node.host.h1 is declared twice",
	})
}
