package all

import (
	"path/filepath"
	"testing"

	"github.com/khw-dev/khw/internal/startest"
)

// TestThePostsRecipeWiresValuesThrough evaluates recipes/hardway.star and
// checks the values that cross from one builtin to another: the bridge's
// address is every node's and the Docker network's gateway, the load
// balancer's upstreams are the controllers.
func TestThePostsRecipeWiresValuesThrough(t *testing.T) {
	rec := startest.NewFixture(t, Registry()).UseRoot(filepath.Join("..", "..", "recipes")).MustEval("hardway.star", nil)
	in := func(addr, key string) any {
		r := rec.Resource(addr)
		if r == nil {
			t.Fatalf("%s not declared", addr)
		}
		return r.Inputs[key]
	}
	for _, vm := range []string{"vm.m1", "vm.m2", "vm.n1", "vm.n2"} {
		if g := in(vm, "gateway"); g != "10.200.1.1" {
			t.Errorf("%s gateway = %v", vm, g)
		}
	}
	if g := in("docker.network.br0", "gateway"); g != "10.200.1.1" {
		t.Errorf("docker network gateway = %v", g)
	}
	ups := in("lb.nginx.proxy", "upstreams").([]any)
	if len(ups) != 2 || ups[0] != "10.200.1.10" || ups[1] != "10.200.1.11" {
		t.Errorf("upstreams = %v", ups)
	}
	if ip := in("node.copy.n2-certs", "host"); ip != "10.200.1.14" {
		t.Errorf("n2's copy goes to %v", ip)
	}
}
