package all

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/khw-dev/khw/plugins/sdk"
	khw "github.com/khw-dev/khw/runtime"
	"github.com/khw-dev/khw/runtime/pluginhost"
)

// buildPlugins builds every plugins/NAME that has a main package (as `make
// build` does) into a temporary directory as khw-plugin-NAME.
func buildPlugins(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	mains, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "main.go"))
	if len(mains) == 0 {
		t.Fatal("no plugins found under plugins/")
	}
	dir := t.TempDir()
	for _, m := range mains {
		name := filepath.Base(filepath.Dir(m))
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pluginhost.BinaryPrefix+name), "./plugins/"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building plugin %s: %v\n%s", name, err, out)
		}
	}
	return dir
}

// TestEveryDeclaredTypeHasOneProvider is the table of every resource type
// a builtin declares, the provider that serves it and whether a change of
// it is made in place, checked against the schema each provider reports at
// start-up: the plugins are built and launched as a run launches them, the
// in-process types served as a run serves them. Each type must be served
// by exactly the providers the table names (the recipe picks vm's among
// two), with the table's update rule. The schema is that rule's one source,
// so this table is where a change of it is noticed.
func TestEveryDeclaredTypeHasOneProvider(t *testing.T) {
	table := []struct {
		typ       string
		providers string // the providers found that serve it; several only where the recipe picks
		inPlace   bool
	}{
		{"artifact", "khw", true},
		{"docker.network", "docker", false},
		{"encryption.config", "khw", true},
		{"image.build", "image", true},
		{"k8s.apply", "kubernetes", true},
		{"kubeconfig", "khw", true},
		{"lb.nginx", "docker", true},
		{"net.bridge", "hostnet", false},
		{"net.hosts", "hostnet", true},
		{"net.nat", "hostnet", false},
		{"net.sysctl", "hostnet", true},
		{"node.copy", "ssh", true},
		{"node.host", "khw", true},
		{"node.run", "ssh", false},
		{"node.service", "ssh", true},
		{"pki.ca", "khw", false},
		{"pki.cert", "khw", false},
		{"pki.key", "khw", false},
		{"registry.run", "docker", false},
		{"ssh.key", "khw", false},
		{"vm", "docker libvirt", false},
	}
	reg := Registry()
	var declared, listed []string
	for _, ts := range reg.Types() {
		declared = append(declared, ts.Type)
	}
	for _, row := range table {
		listed = append(listed, row.typ)
	}
	if strings.Join(declared, " ") != strings.Join(listed, " ") {
		t.Fatalf("the builtins declare\n  %s\nthe table lists\n  %s", strings.Join(declared, " "), strings.Join(listed, " "))
	}

	host := pluginhost.New(reg.InProcess())
	host.SearchPath = []string{buildPlugins(t)}
	host.Check = reg.CheckSchema // as a run does, at each plugin's first use
	defer host.Close()
	ctx := context.Background()
	in, err := host.InProcess.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	schemas := []*sdk.Schema{in}
	for _, f := range host.List() {
		sc, err := host.Describe(ctx, f.Name)
		if err != nil {
			t.Fatalf("plugin %s at start-up: %v", f.Name, err)
		}
		schemas = append(schemas, sc)
	}
	if err := reg.CheckProviders(schemas); err != nil {
		t.Fatalf("the providers found do not serve what the builtins declare:\n%v", err)
	}

	for _, row := range table {
		var servers []string
		for _, sc := range schemas {
			for _, ti := range sc.Types {
				if ti.Type != row.typ {
					continue
				}
				servers = append(servers, sc.Name)
				if ti.UpdateInPlace != row.inPlace {
					t.Errorf("%s: %s says update_in_place=%v, the table %v", row.typ, sc.Name, ti.UpdateInPlace, row.inPlace)
				}
			}
		}
		sort.Strings(servers)
		if got := strings.Join(servers, " "); got != row.providers {
			t.Errorf("%s: served by %q, the table says %q", row.typ, got, row.providers)
		}
		want := row.providers
		if strings.Contains(want, " ") {
			want = khw.AnyPlugin
		}
		if p := reg.Type(row.typ).Provider; p != want {
			t.Errorf("%s: the builtins declare it for %q, the table for %q", row.typ, p, want)
		}
	}

	// A mismatch is an error naming the type: a plugin that lacks one of
	// its types, and a second provider for a type.
	var hostnet *sdk.Schema
	for _, sc := range schemas {
		if sc.Name == "hostnet" {
			hostnet = sc
		}
	}
	lacking := *hostnet
	lacking.Types = nil
	for _, ti := range hostnet.Types {
		if ti.Type != "net.nat" {
			lacking.Types = append(lacking.Types, ti)
		}
	}
	if err := reg.CheckSchema(&lacking); err == nil || !strings.Contains(err.Error(), `resource type "net.nat"`) {
		t.Errorf("a hostnet without net.nat: %v", err)
	}
	rogue := &sdk.Schema{Name: "rogue", Types: []sdk.TypeInfo{{Type: "pki.cert"}}}
	if err := reg.CheckProviders(append(schemas, rogue)); err == nil ||
		!strings.Contains(err.Error(), `resource type "pki.cert": served by khw (in process) and plugin "rogue"`) {
		t.Errorf("a second provider of pki.cert: %v", err)
	}
}
