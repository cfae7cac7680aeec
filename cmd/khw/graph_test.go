package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/runtime"
)

var (
	dotNode = regexp.MustCompile(`(?m)^\s*("(?:[^"\\]|\\.)*") \[label=<`)
	dotEdge = regexp.MustCompile(`(?m)^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*")`)
)

// parsedDOT is what a DOT graph from writeDOT declares.
type parsedDOT struct {
	nodes map[string]bool
	edges map[[2]string]bool
}

// parseDOT checks a DOT graph's structure (one digraph, braces balanced
// outside strings and HTML labels) and reads its nodes and edges.
func parseDOT(t *testing.T, src string) parsedDOT {
	t.Helper()
	if !strings.Contains(src, "digraph khw {") || !strings.HasSuffix(src, "}\n") {
		t.Fatalf("not one digraph:\n%.300s", src)
	}
	depth, html, inString := 0, 0, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case html > 0:
			if c == '<' {
				html++
			} else if c == '>' {
				html--
			}
		case c == '"':
			inString = true
		case c == '<':
			html++
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth < 0 {
				t.Fatalf("unbalanced '}' at byte %d", i)
			}
		}
	}
	if depth != 0 || html != 0 || inString {
		t.Fatalf("unbalanced DOT: depth %d, html %d, open string %v", depth, html, inString)
	}
	unquote := func(q string) string { return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`) }
	p := parsedDOT{nodes: map[string]bool{}, edges: map[[2]string]bool{}}
	for _, m := range dotNode.FindAllStringSubmatch(src, -1) {
		if p.nodes[unquote(m[1])] {
			t.Errorf("node %s drawn twice", m[1])
		}
		p.nodes[unquote(m[1])] = true
	}
	for _, m := range dotEdge.FindAllStringSubmatch(src, -1) {
		p.edges[[2]string{unquote(m[1]), unquote(m[2])}] = true
	}
	return p
}

func TestGraphDrawsEveryResourceAndDependency(t *testing.T) {
	for _, hv := range []string{"libvirt", "docker", "none"} {
		r := khw(t, "graph", "recipes/hardway.star", "--set", "hypervisor="+hv)
		if r.code != 0 {
			t.Fatalf("hypervisor=%s: exit %d\n%s", hv, r.code, r.all())
		}
		rec, err := all.Registry().Evaluate(filepath.Join(repoRoot, "recipes", "hardway.star"),
			runtime.Options{Params: map[string]string{"hypervisor": hv}})
		if err != nil {
			t.Fatal(err)
		}
		g := parseDOT(t, r.stdout)
		if len(g.nodes) != len(rec.Resources) {
			t.Errorf("hypervisor=%s: %d nodes for %d resources", hv, len(g.nodes), len(rec.Resources))
		}
		deps := 0
		for _, res := range rec.Resources {
			if !g.nodes[res.Addr()] {
				t.Errorf("hypervisor=%s: no node for %s", hv, res.Addr())
			}
			for _, d := range res.Deps {
				deps++
				if !g.edges[[2]string{d, res.Addr()}] && !g.edges[[2]string{res.Addr(), d}] {
					t.Errorf("hypervisor=%s: no edge between %s and its dependency %s", hv, res.Addr(), d)
				}
			}
		}
		if len(g.edges) != deps {
			t.Errorf("hypervisor=%s: %d edges for %d dependencies", hv, len(g.edges), deps)
		}
		for e := range g.edges {
			if !g.nodes[e[0]] || !g.nodes[e[1]] {
				t.Errorf("hypervisor=%s: edge %s -> %s leaves the graph", hv, e[0], e[1])
			}
		}
		// A copy points at its node: file -> copy -> node.
		if hv == "libvirt" && !g.edges[[2]string{"node.copy.m1-certs", "vm.m1"}] {
			t.Errorf("the copy to m1 does not point at vm.m1")
		}
		for _, secret := range []string{"PRIVATE KEY", "aescbc", "secret:", "stream {"} {
			if strings.Contains(r.stdout, secret) {
				t.Errorf("hypervisor=%s: the graph shows %q", hv, secret)
			}
		}
	}
}

func TestGraphIsDeterministic(t *testing.T) {
	a := khw(t, "graph", "recipes/hardway.star")
	b := khw(t, "graph", "recipes/hardway.star")
	if a.code != 0 || a.stdout != b.stdout {
		t.Fatalf("two graphs of one recipe differ (exit %d)", a.code)
	}
	for _, want := range []string{"cluster_hostnet", "cluster_pki", "cluster_kubeconfig", "cluster_encryption", "cluster_nodes", `label="m1"`} {
		if !strings.Contains(a.stdout, want) {
			t.Errorf("graph lacks %s", want)
		}
	}
}

// needDot finds Graphviz's dot; when KHW_REQUIRE_TOOLS is set, a missing
// dot fails the test instead of skipping it.
func needDot(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dot"); err != nil {
		if os.Getenv("KHW_REQUIRE_TOOLS") != "" {
			t.Fatal("Graphviz's dot is not installed (make deps, or: apt-get install graphviz)")
		}
		t.Skip("Graphviz's dot is not installed")
	}
}

func TestGraphRendersSVGAndPNG(t *testing.T) {
	needDot(t)
	r := khw(t, "graph", "recipes/hardway.star", "-o", "svg")
	if r.code != 0 || !strings.Contains(r.stdout, "<svg") {
		t.Fatalf("-o svg: exit %d\n%.300s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "vm.m1") || !strings.Contains(r.stdout, "pki.cert.admin") {
		t.Errorf("the svg lacks resources")
	}
	dir := t.TempDir()
	svg, png := filepath.Join(dir, "lab.svg"), filepath.Join(dir, "lab.png")
	if r := khw(t, "graph", "recipes/hardway.star", "--out", svg); r.code != 0 || r.stdout != "" {
		t.Fatalf("-o lab.svg: exit %d\n%s", r.code, r.all())
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Fatalf("-o lab.svg wrote no svg: %v", err)
	}
	if r := khw(t, "graph", "recipes/hardway.star", "--out", png); r.code != 0 {
		t.Fatalf("-o lab.png: exit %d\n%s", r.code, r.all())
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("-o lab.png wrote no png: %v", err)
	}
	// The DOT itself is what dot reads.
	dotSrc := khw(t, "graph", "recipes/hardway.star").stdout
	cmd := exec.Command("dot", "-Tcanon")
	cmd.Stdin = strings.NewReader(dotSrc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dot refuses the graph: %v\n%s", err, out)
	}
}

func TestGraphWithoutDotNamesGraphviz(t *testing.T) {
	out := filepath.Join(t.TempDir(), "lab.svg")
	cmd := exec.Command(khwBin, "graph", "recipes/hardway.star", "--out", out)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	b, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("rendered without dot on PATH:\n%s", b)
	}
	for _, want := range []string{"Graphviz's dot", "not on PATH", "graphviz package", "-o dot"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("error lacks %q:\n%s", want, b)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed render left %s", out)
	}
}

func TestGraphRejectsBadRecipesAndFlags(t *testing.T) {
	dir := copyRecipes(t)
	recipe := filepath.Join(dir, "hardway.star")
	b, _ := os.ReadFile(recipe)
	bad := strings.Replace(string(b), `"ip": "10.200.1.13"`, `"ip": "10.200.1.313"`, 1)
	if err := os.WriteFile(recipe, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r := khw(t, "graph", recipe)
	if r.code != 1 || r.stdout != "" || !regexp.MustCompile(`hardway\.star:\d+`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, `"10.200.1.313" is not an IP address`) {
		t.Errorf("bad recipe: exit %d\nstdout: %.200s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := khw(t, "graph", "recipes/hardway.star", "-o", "pdf"); r.code != 1 || !strings.Contains(r.stderr, "use dot, svg, png") {
		t.Errorf("-o pdf: exit %d: %s", r.code, r.stderr)
	}
	if r := khw(t, "graph", "recipes/hardway.star", "--set", "nope=1"); r.code != 1 || !strings.Contains(r.stderr, "declares no such parameter") {
		t.Errorf("--set nope: exit %d: %s", r.code, r.stderr)
	}
	r = khw(t, "graph", "--help")
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--out lab.svg") {
		t.Errorf("help: %s", r.stdout)
	}
}
