package vm_test

import (
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

// lab is what a node needs: the bridge, the workspace key, and the Docker
// network on the bridge for container nodes.
const lab = `br0 = net.bridge("br0", address = "10.200.1.1/24")
key = ssh.key()
nw = docker.network(br0)
`

func TestANodeIsDeclaredWithItsInputs(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.File("lab.star", lab+`m1 = vm.create("m1", ip = "10.200.1.10", bridge = br0, ssh_key = key, role = "controller")
n1 = vm.create("n1", ip = "10.200.1.13", bridge = br0, ssh_key = key, role = "worker", user = "root",
    cpus = 2, memory = 2048, disk = 20, image = "khw/node:local", dns = ["1.1.1.1", "9.9.9.9"],
    provider = "docker", options = {"privileged": True}, network = nw)
if (m1.ip, m1.user, m1.role, m1.ssh_key.path) != ("10.200.1.10", "khw", "controller", "id_ed25519"):
    fail("m1's handle: %s %s %s %s" % (m1.ip, m1.user, m1.role, m1.ssh_key.path))
if (n1.user, n1.role) != ("root", "worker"):
    fail("n1's handle: %s %s" % (n1.user, n1.role))
`)
	rec := f.MustEval("lab.star", nil)
	f.AssertResource(rec, "vm.m1", startest.Want{Type: "vm", Provider: "libvirt",
		Inputs: map[string]any{"hostname": "m1", "ip": "10.200.1.10", "prefix": 24, "gateway": "10.200.1.1", "bridge": "br0",
			"role": "controller", "user": "khw", "cpus": 1, "memory_mib": 1024, "disk_gib": 10, "image": "",
			"dns": []string{}, "options": map[string]any{}, "ssh_public_key": "id_ed25519.pub"},
		Deps: []string{"net.bridge.br0", "ssh.key.id_ed25519"}})
	// A container node also waits for the Docker network it joins.
	f.AssertResource(rec, "vm.n1", startest.Want{Type: "vm", Provider: "docker",
		Inputs: map[string]any{"hostname": "n1", "ip": "10.200.1.13", "role": "worker", "user": "root", "cpus": 2,
			"memory_mib": 2048, "disk_gib": 20, "image": "khw/node:local", "dns": []string{"1.1.1.1", "9.9.9.9"},
			"options": map[string]any{"privileged": true}},
		Deps: []string{"docker.network.br0", "net.bridge.br0", "ssh.key.id_ed25519"}})
}

func TestBadNodeArgumentsNameTheLine(t *testing.T) {
	ok := `ip = "10.200.1.10", bridge = br0, ssh_key = key`
	startest.NewFixture(t, all.Registry()).AssertCallErrors("lab.star", lab, map[string]string{
		`vm.create("M1", ` + ok + `)`: `vm.create: name "M1" is not a valid hostname (lower-case letters, digits and '-')`,
		`vm.create("m-", ` + ok + `)`: `name "m-" is not a valid hostname`,

		`vm.create("m1", ip = "10.200.1.10", bridge = key, ssh_key = key)`: "vm.create: bridge must be a net.bridge, not ssh.key.id_ed25519",
		`vm.create("m1", ip = "x", bridge = br0, ssh_key = key)`:           `vm.create: ip "x" is not an IP address`,
		`vm.create("m1", ip = "10.200.2.10", bridge = br0, ssh_key = key)`: "vm.create: ip 10.200.2.10 is outside the subnet 10.200.1.0/24 of bridge br0",
		`vm.create("m1", ip = "10.200.1.1", bridge = br0, ssh_key = key)`:  "vm.create: ip 10.200.1.1 is the bridge's own address",
		`vm.create("m1", ip = "10.200.1.10", bridge = br0, ssh_key = br0)`: "vm.create: ssh_key must be an ssh.key, not net.bridge.br0",
		`vm.create("m1", ip = "10.200.1.10", bridge = br0)`:                "vm.create: missing argument for ssh_key",

		`vm.create("m1", ` + ok + `, cpus = 0)`:                 `vm.create: cpus (0), memory (1024 MiB) and disk (10 GiB) are too small: at least 1, 128 and 1`,
		`vm.create("m1", ` + ok + `, memory = 64)`:              "memory (64 MiB)",
		`vm.create("m1", ` + ok + `, disk = 0)`:                 "disk (0 GiB)",
		`vm.create("m1", ` + ok + `, cpus = "2")`:               `vm.create: for parameter "cpus": got string, want int`,
		`vm.create("m1", ` + ok + `, provider = "Virtual Box")`: `vm.create: provider "Virtual Box" is not a plugin's name`,
		`vm.create("m1", ` + ok + `, provider = "khw")`:         `vm.create: provider "khw" is not a plugin's name`,
		`vm.create("m1", ` + ok + `, dns = [1])`:                "vm.create: dns[0] must be a string, not int",
		`vm.create("m1", ` + ok + `, dns = "1.1.1.1")`:          `vm.create: dns must be a list of strings, not a single string (write ["1.1.1.1"])`,
		`vm.create("m1", ` + ok + `, options = {1: 2})`:         "vm.create: options: dict key 1 is not a string",
		`vm.create("m1", ` + ok + `, options = {"uri": key})`:   `vm.create: options: "uri": a ssh.key cannot be used here`,
		`vm.create("m1", ` + ok + `, network = br0)`:            "vm.create: network must be a docker.network, not net.bridge",
		`vm.create("m1", ` + ok + `, network = "br0")`:          "vm.create: network must be a docker.network, not string",
		`vm.create("m1", ` + ok + `, colour = "red")`:           `vm.create: unexpected keyword argument "colour"`,

		`vm.create("m1", ` + ok + `); vm.create("m1", ip = "10.200.1.11", bridge = br0, ssh_key = key)`: "vm.m1 is declared twice",
	})
}
