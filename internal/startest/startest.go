// Package startest is the fixture of tests that evaluate recipes, after
// Tilt's starkit fixture: a recipe root (a temporary directory, or an
// existing one), the registry of builtins to evaluate with, and checks of
// the errors a recipe gets, down to the recipe line.
//
//	f := startest.NewFixture(t, all.Registry())
//	f.File("lib/x.star", `x = 1`)
//	f.File("main.star", `load("lib/x.star", "x")`+"\nvm.create(...)\n")
//	rec := f.MustEval("main.star", nil)
//	f.AssertError("main.star", nil, "main.star:2", "ip ... is outside the subnet")
package startest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/khw-dev/khw/runtime"
)

// Fixture is a recipe root and a registry.
type Fixture struct {
	t     testing.TB
	reg   *runtime.Registry
	root  string
	real  bool              // the root is a directory of the tree, not the fixture's
	given map[string]string // what EvalSource evaluated, by file
	// MaxSteps bounds each recipe file's Starlark steps; 0 is the
	// runtime's default.
	MaxSteps uint64
}

// NewFixture is an empty recipe root in a temporary directory, evaluated
// with reg.
func NewFixture(t testing.TB, reg *runtime.Registry) *Fixture {
	return &Fixture{t: t, reg: reg, root: t.TempDir()}
}

// UseRoot makes dir (the repository's recipes/, say) the root, instead of
// the temporary directory: the tests evaluate its files, and File and
// CopyDir refuse to write there.
func (f *Fixture) UseRoot(dir string) *Fixture {
	f.root, f.real = dir, true
	return f
}

// Registry is the registry the fixture evaluates with.
func (f *Fixture) Registry() *runtime.Registry { return f.reg }

// Root is the recipe root.
func (f *Fixture) Root() string { return f.root }

// Path is the path of name, relative to the root.
func (f *Fixture) Path(name string) string { return filepath.Join(f.root, filepath.FromSlash(name)) }

// File writes src to name in the root, making its directories, and
// returns its path.
func (f *Fixture) File(name, src string) string {
	f.t.Helper()
	f.writable()
	p := f.Path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// CopyDir copies the files under dir (the repository's recipes/, say) into
// the root, so that a test can add to them.
func (f *Fixture) CopyDir(dir string) {
	f.t.Helper()
	f.writable()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f.File(filepath.ToSlash(rel), string(b))
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *Fixture) writable() {
	f.t.Helper()
	if f.real {
		f.t.Fatalf("startest: the root %s is a directory of the tree (UseRoot): write to a fixture of its own", f.root)
	}
}

// Eval evaluates the recipe file (a path relative to the root) with
// params as --set overrides.
func (f *Fixture) Eval(file string, params map[string]string) (*runtime.Recipe, error) {
	return f.reg.Evaluate(f.Path(file), runtime.Options{Root: f.root, Params: params, MaxSteps: f.MaxSteps})
}

// EvalSource evaluates src as the recipe file, which it does not write
// (for a recipe tried once, or a fuzzer's thousands).
func (f *Fixture) EvalSource(file, src string, params map[string]string) (*runtime.Recipe, error) {
	if f.given == nil {
		f.given = map[string]string{}
	}
	f.given[file] = src
	return f.reg.Evaluate(f.Path(file), runtime.Options{Root: f.root, Params: params, MaxSteps: f.MaxSteps, Source: []byte(src)})
}

// MustEval is Eval that fails the test on an error.
func (f *Fixture) MustEval(file string, params map[string]string) *runtime.Recipe {
	f.t.Helper()
	rec, err := f.Eval(file, params)
	if err != nil {
		f.t.Fatalf("%s %v: %v", file, params, err)
	}
	return rec
}

// Pos is where err says the recipe went wrong, file:line:column with the
// file relative to the root, or "" when err names no recipe position
// (a --set error, say).
func (f *Fixture) Pos(err error) string {
	var re *runtime.RecipeError
	if !errors.As(err, &re) {
		return ""
	}
	return strings.TrimPrefix(re.Pos, f.root+string(filepath.Separator))
}

// AssertError evaluates the recipe file and fails the test unless it fails
// at the position at, and with an error that contains each of want. at is
// a path relative to the root with a line, and a column if given:
// "main.star:3" or "main.star:3:10"; "" checks no position. It returns the
// error.
func (f *Fixture) AssertError(file string, params map[string]string, at string, want ...string) error {
	f.t.Helper()
	_, err := f.Eval(file, params)
	return f.CheckError(err, at, want...)
}

// CheckError is AssertError for an error the test got itself (from
// EvalSource, say).
func (f *Fixture) CheckError(err error, at string, want ...string) error {
	f.t.Helper()
	line := f.line(at)
	if err == nil {
		f.t.Errorf("%s%s: evaluated, want an error that says %q", at, line, want)
		return nil
	}
	if pos := f.Pos(err); at != "" && pos != at && !strings.HasPrefix(pos, at+":") {
		f.t.Errorf("%s%s: the error is at %q, want %s:\n%v", at, line, pos, at, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			f.t.Errorf("%s%s: the error does not say %q:\n%v", at, line, w, err)
		}
	}
	return err
}

// AssertCallErrors checks a builtin's argument checks: for each call (one
// line) file is written as prelude and then the call, and its evaluation
// must fail on the call's line with an error that says want.
func (f *Fixture) AssertCallErrors(file, prelude string, calls map[string]string) {
	f.t.Helper()
	if prelude != "" && !strings.HasSuffix(prelude, "\n") {
		prelude += "\n"
	}
	at := fmt.Sprintf("%s:%d", file, strings.Count(prelude, "\n")+1)
	for _, call := range slices.Sorted(maps.Keys(calls)) {
		f.File(file, prelude+call+"\n")
		f.AssertError(file, nil, at, calls[call])
	}
}

// Want is what a declared resource should be. A field left zero is not
// checked; Deps: []string{} checks that there are none.
type Want struct {
	Type, Provider string
	// Inputs and Settings name the values to check (not all of them),
	// compared as JSON: 1 and 1.0 are the same, "1" is not.
	Inputs, Settings map[string]any
	// Deps and After are all of them, in order (sorted, as runtime.Refs
	// gives them).
	Deps, After []string
}

// AssertResource fails the test unless rec declares a resource at addr
// that is as want says, and returns it (nil when there is none).
func (f *Fixture) AssertResource(rec *runtime.Recipe, addr string, want Want) *runtime.Resource {
	f.t.Helper()
	r := rec.Resource(addr)
	if r == nil {
		var have []string
		for _, r := range rec.Resources {
			have = append(have, r.Addr())
		}
		f.t.Errorf("%s is not declared; the recipe declares %s", addr, strings.Join(have, ", "))
		return nil
	}
	for what, got := range map[string][2]string{"type": {r.Type, want.Type}, "provider": {r.Provider, want.Provider}} {
		if got[1] != "" && got[0] != got[1] {
			f.t.Errorf("%s: %s %q, want %q", addr, what, got[0], got[1])
		}
	}
	for what, m := range map[string][2]map[string]any{"inputs": {r.Inputs, want.Inputs}, "settings": {r.Settings, want.Settings}} {
		for _, k := range slices.Sorted(maps.Keys(m[1])) {
			got, _ := json.Marshal(m[0][k])
			exp, _ := json.Marshal(m[1][k])
			if _, ok := m[0][k]; !ok || string(got) != string(exp) {
				f.t.Errorf("%s: %s[%q] = %s, want %s", addr, what, k, got, exp)
			}
		}
	}
	for what, l := range map[string][2][]string{"deps": {r.Deps, want.Deps}, "after": {r.After, want.After}} {
		if l[1] != nil && !slices.Equal(l[0], l[1]) {
			f.t.Errorf("%s: %s %q, want %q", addr, what, l[0], l[1])
		}
	}
	return r
}

// line is the recipe text at a position file:line, for a failing test's
// message: ": TEXT", or "" when there is none to show.
func (f *Fixture) line(at string) string {
	file, rest, ok := strings.Cut(at, ":")
	if !ok {
		return ""
	}
	num, _, _ := strings.Cut(rest, ":")
	n, err := strconv.Atoi(num)
	src, given := f.given[file]
	if !given {
		b, rerr := os.ReadFile(f.Path(file))
		src, err = string(b), errors.Join(err, rerr)
	}
	if err != nil {
		return ""
	}
	lines := strings.Split(src, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return ": " + strings.TrimSpace(lines[n-1])
}
