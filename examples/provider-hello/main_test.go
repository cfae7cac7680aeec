package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test builds this provider as khw-plugin-hello in a directory of its
// own, builds khw from the repository this example sits in, puts the
// plugin's directory in KHW_PLUGIN_PATH and runs a recipe that uses it, as
// a person would: create, re-run, change in place, replace, drift, destroy.

type harness struct {
	t                   *testing.T
	khw, plugins, dir   string
	workdir, recipeFile string
}

func build(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, plugins: t.TempDir(), dir: t.TempDir()}
	build(t, ".", filepath.Join(h.plugins, "khw-plugin-hello"), ".")
	// khw in a directory of its own, so that only KHW_PLUGIN_PATH leads to
	// the plugin (khw also looks next to itself).
	h.khw = filepath.Join(t.TempDir(), "khw")
	build(t, filepath.Join("..", ".."), h.khw, "./cmd/khw")
	h.workdir = filepath.Join(h.dir, "work")
	h.recipeFile = filepath.Join(h.dir, "hello.star")
	recipe := `
who = param("who", "world", doc = "whom to greet")
file = param("file", "hello.txt", doc = "the greeting's file, in the workdir")
plugin.resource("hello.greeting", "world", config = {"file": file, "who": who})
`
	if err := os.WriteFile(h.recipeFile, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs khw with the recipe and the workdir; it fails the test when
// khw fails.
func (h *harness) run(args ...string) (stdout, stderr string) {
	h.t.Helper()
	args = append(args, h.recipeFile, "--workdir", h.workdir)
	cmd := exec.Command(h.khw, args...)
	cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH="+h.plugins, "XDG_DATA_HOME="+h.t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("khw %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// actions is the plan's action for each address (khw plan -o json).
func (h *harness) actions(sets ...string) map[string]string {
	h.t.Helper()
	out, _ := h.run(append([]string{"plan", "-o", "json"}, sets...)...)
	var plan struct {
		Changes []struct{ Address, Action string } `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		h.t.Fatalf("plan JSON: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, c := range plan.Changes {
		got[c.Address] = c.Action
	}
	return got
}

func (h *harness) file(name string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.workdir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "(none)"
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

const addr = "hello.greeting.world"

func TestARecipeUsesTheProvider(t *testing.T) {
	h := newHarness(t)

	// A file of that name already there: created all the same, with the
	// plugin's warning on standard error.
	if err := os.MkdirAll(h.workdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.workdir, "hello.txt"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut := h.run("run")
	if !strings.Contains(out, addr+": created") || h.file("hello.txt") != "Hello, world!\n" {
		t.Fatalf("first run:\n%s\nfile %q", out, h.file("hello.txt"))
	}
	if !strings.Contains(errOut, "Warning: "+addr+": hello.txt existed and was overwritten") {
		t.Fatalf("the plugin's warning is not shown:\n%s", errOut)
	}

	if out, _ := h.run("run"); !strings.Contains(out, "No changes.") {
		t.Fatalf("second run:\n%s", out)
	}

	// The schema says the type updates in place.
	if got := h.actions("--set", "who=khw"); got[addr] != "update" {
		t.Fatalf("a new greeting: %v", got)
	}
	h.run("run", "--set", "who=khw")
	if h.file("hello.txt") != "Hello, khw!\n" {
		t.Fatalf("after the update: %q", h.file("hello.txt"))
	}

	// The plugin's Plan says another file is a replacement: the old file
	// goes.
	if got := h.actions("--set", "who=khw", "--set", "file=greeting.txt"); got[addr] != "replace" {
		t.Fatalf("another file: %v", got)
	}
	h.run("run", "--set", "who=khw", "--set", "file=greeting.txt")
	if h.file("hello.txt") != "(none)" || h.file("greeting.txt") != "Hello, khw!\n" {
		t.Fatalf("after the replacement: hello.txt %q, greeting.txt %q", h.file("hello.txt"), h.file("greeting.txt"))
	}

	// Edited by hand: Read finds the drift, and the run puts it back.
	if err := os.WriteFile(filepath.Join(h.workdir, "greeting.txt"), []byte("Bye\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := h.actions("--set", "who=khw", "--set", "file=greeting.txt"); got[addr] != "update" {
		t.Fatalf("drift: %v", got)
	}
	h.run("run", "--set", "who=khw", "--set", "file=greeting.txt")
	if h.file("greeting.txt") != "Hello, khw!\n" {
		t.Fatalf("after the drift: %q", h.file("greeting.txt"))
	}

	h.run("destroy", "--set", "who=khw", "--set", "file=greeting.txt")
	if h.file("greeting.txt") != "(none)" {
		t.Fatal("destroy left the greeting")
	}
}
