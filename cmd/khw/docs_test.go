package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeReferenceIsGenerated keeps README.md's builtin reference and
// `khw docs` in step.
func TestReadmeReferenceIsGenerated(t *testing.T) {
	r := khw(t, "docs")
	if r.code != 0 {
		t.Fatalf("khw docs: exit %d\n%s", r.code, r.stderr)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _, err := splitReadme("README.md", string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if section != r.stdout {
		got, want := strings.Split(section, "\n"), strings.Split(r.stdout, "\n")
		line := 0
		for line < len(got) && line < len(want) && got[line] == want[line] {
			line++
		}
		first := func(l []string) string {
			if line < len(l) {
				return l[line]
			}
			return "(end)"
		}
		t.Fatalf("README.md's builtin reference is out of date: run `make docs`.\n"+
			"first difference, line %d of the section:\n  README:   %s\n  khw docs: %s", line+1, first(got), first(want))
	}
	if r := khw(t, "docs", "--readme", "README.md", "--check"); r.code != 0 {
		t.Errorf("--check on an up-to-date README: exit %d\n%s", r.code, r.all())
	}
}

func TestDocsReadmeRewritesOnlyItsSection(t *testing.T) {
	file := filepath.Join(t.TempDir(), "README.md")
	stale := "# title\n\nprose before\n\n" + docsBegin + "\nold table\n" + docsEnd + "\n\nprose after\n"
	if err := os.WriteFile(file, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := khw(t, "docs", "--readme", file, "--check"); r.code != 1 || !strings.Contains(r.stderr, "run `make docs`") {
		t.Fatalf("--check on a stale README: exit %d\n%s", r.code, r.all())
	}
	if b, _ := os.ReadFile(file); string(b) != stale {
		t.Fatal("--check changed the file")
	}
	if r := khw(t, "docs", "--readme", file); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.all())
	}
	b, _ := os.ReadFile(file)
	docs := khw(t, "docs").stdout
	if want := "# title\n\nprose before\n\n" + docsBegin + "\n" + docs + docsEnd + "\n\nprose after\n"; string(b) != want {
		t.Fatalf("rewritten README:\n%s", b)
	}
	if r := khw(t, "docs", "--readme", file); r.code != 0 || !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("second rewrite: exit %d\n%s", r.code, r.all())
	}
	if err := os.WriteFile(file, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := khw(t, "docs", "--readme", file); r.code != 1 || !strings.Contains(r.stderr, docsBegin) {
		t.Fatalf("README without markers: exit %d\n%s", r.code, r.all())
	}
}

func TestDocsFormatsAndSelection(t *testing.T) {
	r := khw(t, "docs", "-o", "text", "pki.cert", "net")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		`pki.cert(name, ca, csr, config, profile = "", hosts = None)`, "Resource type pki.cert, served by khw (in process).",
		"net.bridge(name, address, ports = [])", "net.host(cidr, n)", "Example:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text reference lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "vm.create") {
		t.Errorf("asked for pki.cert and net, got vm.create too")
	}
	if r := khw(t, "docs", "pki.certs"); r.code != 1 || !strings.Contains(r.stderr, `no builtin or module "pki.certs"`) {
		t.Errorf("unknown builtin: exit %d: %s", r.code, r.stderr)
	}
	if r := khw(t, "docs", "-o", "html"); r.code != 1 || !strings.Contains(r.stderr, "use markdown or text") {
		t.Errorf("unknown format: exit %d: %s", r.code, r.stderr)
	}
	if r := khw(t, "docs", "--help"); !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--readme README.md") {
		t.Errorf("help: %s", r.stdout)
	}
}
