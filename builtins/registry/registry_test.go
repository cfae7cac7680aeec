package registry_test

import (
	"strings"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

const lab = `br0 = net.bridge("br0", address = "10.200.1.1/24")
nw = docker.network(br0)
`

// recipe is a recipe root whose test.star is the lab and then src.
func recipe(t *testing.T, src string) *startest.Fixture {
	f := startest.NewFixture(t, all.Registry())
	f.File("test.star", lab+src)
	return f
}

func TestTheRegistryOnTheLabNetwork(t *testing.T) {
	rec := recipe(t, `reg = registry.run("registry", ip = "10.200.1.5", network = nw, port = 5001)
if reg.endpoint != "10.200.1.5:5001" or reg.ip != "10.200.1.5" or reg.port != 5001:
    fail(reg.endpoint)
`).MustEval("test.star", nil)
	r := rec.Resource("registry.run.registry")
	if r.Inputs["volume"] != "khw-registry-registry" || r.Inputs["image"] != "registry:2" || r.Inputs["network"] != "br0" ||
		r.Provider != "docker" || strings.Join(r.Deps, " ") != "docker.network.br0" {
		t.Errorf("%+v", r)
	}
}

func TestBadRegistryInputIsRefusedWithTheRecipeLine(t *testing.T) {
	startest.NewFixture(t, all.Registry()).AssertCallErrors("test.star", lab, map[string]string{
		`registry.run("registry", ip = "10.200.2.5", network = nw)`:             `ip "10.200.2.5" must be an address inside the network's subnet 10.200.1.0/24`,
		`registry.run("registry", ip = "10.200.1.0", network = nw)`:             "is the network address",
		`registry.run("registry", ip = "x", network = nw)`:                      `ip "x" must be an address`,
		`registry.run("registry", ip = "10.200.1.5", network = br0)`:            "network must be a docker.network, not net.bridge.br0",
		`registry.run("registry", ip = "10.200.1.5", network = nw, port = 0)`:   "port 0 is not a port number",
		`registry.run("Reg_1", ip = "10.200.1.5", network = nw)`:                `name "Reg_1" must be lower-case letters`,
		`registry.run("registry", ip = "10.200.1.5", network = nw, image = "")`: `image "" is not an image name`,
	})
}
