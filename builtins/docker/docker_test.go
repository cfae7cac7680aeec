package docker_test

import (
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

const bridges = `br0 = net.bridge("br0", address = "10.200.1.1/24")
lab = net.bridge("khw-lab", address = "10.240.0.1/16")
key = ssh.key()
`

// The network adopts the bridge: its name, its subnet and, as the
// gateway, the bridge's own address; ip_range narrows what Docker hands
// out.
func TestTheNetworkAdoptsTheBridge(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.File("net.star", bridges+`nw = docker.network(br0)
docker.network(lab, ip_range = "10.240.8.0/21")
if nw.subnet != "10.200.1.0/24" or nw.address != "docker.network.br0":
    fail(nw.subnet, nw.address)
`)
	rec := f.MustEval("net.star", nil)
	f.AssertResource(rec, "docker.network.br0", startest.Want{Type: "docker.network", Provider: "docker",
		Inputs: map[string]any{"name": "br0", "bridge": "br0", "subnet": "10.200.1.0/24", "gateway": "10.200.1.1", "ip_range": "10.200.1.0/24"},
		Deps:   []string{"net.bridge.br0"}})
	f.AssertResource(rec, "docker.network.khw-lab", startest.Want{
		Inputs: map[string]any{"name": "khw-lab", "subnet": "10.240.0.0/16", "gateway": "10.240.0.1", "ip_range": "10.240.8.0/21"},
		Deps:   []string{"net.bridge.khw-lab"}})
}

func TestBadNetworkArgumentsNameTheLine(t *testing.T) {
	startest.NewFixture(t, all.Registry()).AssertCallErrors("net.star", bridges, map[string]string{
		`docker.network(key)`:                               "docker.network: bridge must be a net.bridge, not ssh.key.id_ed25519",
		`docker.network("br0")`:                             "docker.network: for parameter bridge: got string, want",
		`docker.network()`:                                  "docker.network: missing argument for bridge",
		`docker.network(br0, ip_range = "10.200.2.0/24")`:   `docker.network: ip_range "10.200.2.0/24" must be a network inside 10.200.1.0/24`,
		`docker.network(br0, ip_range = "10.200.0.0/16")`:   `ip_range "10.200.0.0/16" must be a network inside 10.200.1.0/24`,
		`docker.network(br0, ip_range = "10.200.1.7")`:      `ip_range "10.200.1.7" must be a network inside 10.200.1.0/24`,
		`docker.network(br0, ip_range = 24)`:                `docker.network: for parameter "ip_range": got int, want string`,
		`docker.network(br0); docker.network(bridge = br0)`: "docker.network.br0 is declared twice",
	})
}
