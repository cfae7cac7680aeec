package all

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/startest"
	khwruntime "github.com/khw-dev/khw/runtime"
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

// evalSource evaluates a recipe given as text with every builtin.
func evalSource(t *testing.T, src string) (*khwruntime.Recipe, error) {
	t.Helper()
	return startest.NewFixture(t, Registry()).EvalSource("main.star", src, nil)
}

// A plugin's own type is declared with plugin.resource, its provider the
// type's first word; the types khw's builtins declare are refused there.
// vm.create takes any plugin's name: the plugins found answer whether it
// serves vm, not a list in khw.
func TestPluginsTypesNeedNoBuiltin(t *testing.T) {
	rec, err := evalSource(t, `
g = plugin.resource("hello.greeting", "world", config = {"file": "hello.txt", "n": 2, "tags": ["a"]})
plugin.resource("hello.greeting", "again", deps = [g])
br = net.bridge("br0", "10.0.0.1/24")
vm.create("m1", "10.0.0.2", br, ssh.key(), provider = "my-hypervisor")
`)
	if err != nil {
		t.Fatal(err)
	}
	g := rec.Resource("hello.greeting.world")
	if g == nil || g.Provider != "hello" || g.Inputs["file"] != "hello.txt" || len(g.Show) != 3 || g.Show[1].Value != "2" || g.Show[2].Value != `["a"]` {
		t.Fatalf("resource = %+v", g)
	}
	if a := rec.Resource("hello.greeting.again"); a == nil || len(a.Deps) != 1 || a.Deps[0] != "hello.greeting.world" {
		t.Fatalf("deps: %+v", a)
	}
	if m := rec.Resource("vm.m1"); m == nil || m.Provider != "my-hypervisor" {
		t.Fatalf("vm: %+v", m)
	}
	for src, want := range map[string]string{
		`plugin.resource("hello", "x")`:                               `type "hello" is not PROVIDER.KIND`,
		`plugin.resource("Hello.x", "x")`:                             `type "Hello.x" is not PROVIDER.KIND`,
		`plugin.resource("net.bridge", "x")`:                          "type net.bridge is declared by khw's builtins: use its builtin",
		`plugin.resource("khw.file", "x")`:                            "type khw.file is declared by khw's builtins",
		`plugin.resource("hello.greeting", "a b")`:                    `name "a b" is not a resource name`,
		`plugin.resource("hello.greeting", "x", config = {"f": len})`: `config: "f": a builtin_function_or_method cannot be used here`,
		`vm.create("m1", "10.0.0.2", net.bridge("br0", "10.0.0.1/24"), ssh.key(), provider = "Xen Server")`: `provider "Xen Server" is not a plugin's name`,
		`vm.create("m1", "10.0.0.2", net.bridge("br0", "10.0.0.1/24"), ssh.key(), provider = "khw")`:        `provider "khw" is not a plugin's name`,
	} {
		if _, err := evalSource(t, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", src, err, want)
		}
	}
}
