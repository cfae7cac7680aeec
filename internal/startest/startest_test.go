package startest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// recorder is a testing.TB that keeps what the fixture reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

type fatal struct{}

// Fatalf records, and ends the call that catch runs.
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(fatal{})
}

func catch(fn func()) {
	defer func() {
		if p := recover(); p != nil && p != (fatal{}) {
			panic(p)
		}
	}()
	fn()
}

// registry has one builtin, t.thing(name, deps = []), that refuses the
// name "bad"; its input n is the name's length.
func registry() *runtime.Registry {
	reg := runtime.NewRegistry()
	reg.Add(&runtime.Builtin{Module: "t", Name: "thing", Fn: func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		deps := starlark.NewList(nil)
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "deps?", &deps); err != nil {
			return nil, err
		}
		if name == "bad" {
			return nil, runtime.Errorf(b, "name %q is bad", name)
		}
		r := &runtime.Resource{Type: "t.thing", Name: name, Inputs: map[string]any{"n": len(name)}, Deps: runtime.Refs(deps)}
		return &runtime.Handle{Res: r}, runtime.Declare(thread, r)
	}})
	return reg
}

func TestEvalFindsLoadsInTheRoot(t *testing.T) {
	f := NewFixture(t, registry())
	f.File("lib/x.star", "def make(n):\n    return t.thing(n)\n")
	f.File("main.star", "load(\"lib/x.star\", \"make\")\nmake(\"a\")\nt.thing(\"b\")\n")
	rec := f.MustEval("main.star", nil)
	if len(rec.Resources) != 2 || rec.Resource("t.thing.a") == nil || rec.Resource("t.thing.b") == nil {
		t.Fatalf("resources %v", rec.Resources)
	}
}

// AssertError passes only on the right position and message, and says
// which recipe line it looked at when it fails.
func TestAssertErrorChecksThePosition(t *testing.T) {
	src := "t.thing(\"a\")\n\nt.thing(\"bad\")\n"
	for _, c := range []struct {
		at, want string
		report   string // "" when the assertion holds
	}{
		{"main.star:3", `name "bad" is bad`, ""},
		{"main.star:3:8", "is bad", ""},
		{"main.star", "is bad", ""},
		{"", "is bad", ""},
		{"main.star:1", "is bad", `main.star:1: t.thing("a"): the error is at "main.star:3:8", want main.star:1`},
		{"main.star:30", "is bad", `the error is at "main.star:3:8"`},
		{"main.star:3", "is good", `main.star:3: t.thing("bad"): the error does not say "is good"`},
	} {
		rec := &recorder{TB: t}
		f := NewFixture(rec, registry())
		f.File("main.star", src)
		f.AssertError("main.star", nil, c.at, c.want)
		got := strings.Join(rec.errs, "\n")
		if c.report == "" && got != "" || c.report != "" && !strings.Contains(got, c.report) {
			t.Errorf("at %q, want %q: reported %q, want %q", c.at, c.want, got, c.report)
		}
	}
	rec := &recorder{TB: t}
	f := NewFixture(rec, registry())
	_, err := f.EvalSource("main.star", "t.thing(\"good\")\n", nil)
	f.CheckError(err, "main.star:1", "bad")
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], `main.star:1: t.thing("good"): evaluated, want an error`) {
		t.Errorf("a recipe that evaluates: reported %q", rec.errs)
	}
}

func TestUseRootRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{TB: t}
	f := NewFixture(rec, registry()).UseRoot(dir)
	if f.Root() != dir {
		t.Fatalf("root %s", f.Root())
	}
	catch(func() { f.File("x.star", "x = 1\n") })
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "is a directory of the tree (UseRoot)") {
		t.Errorf("reported %q", rec.errs)
	}
	if _, err := f.Eval("x.star", nil); err == nil {
		t.Error("File wrote into the tree")
	}
}

func TestAssertCallErrors(t *testing.T) {
	rec := &recorder{TB: t}
	f := NewFixture(rec, registry())
	f.AssertCallErrors("main.star", "t.thing(\"a\")", map[string]string{
		`t.thing("bad")`:    "is bad",
		`t.thing(1)`:        "for parameter name: got int, want string",
		`t.thing("b")`:      "anything",
		`t.thing(nope = 1)`: "is bad",
	})
	want := []string{
		`main.star:2: t.thing("b"): evaluated, want an error that says ["anything"]`,
		`main.star:2: t.thing(nope = 1): the error does not say "is bad":` + "\n" + f.Path("main.star") + `:2:8: t.thing: unexpected keyword argument "nope"`,
	}
	if !slices.Equal(rec.errs, want) {
		t.Errorf("reported %q\nwant %q", rec.errs, want)
	}
}

func TestAssertResource(t *testing.T) {
	rec := &recorder{TB: t}
	f := NewFixture(rec, registry())
	f.File("main.star", "a = t.thing(\"a\")\nt.thing(\"bb\", deps = [a])\n")
	r := f.MustEval("main.star", nil)
	f.AssertResource(r, "t.thing.bb", Want{Type: "t.thing", Provider: runtime.InProcess,
		Inputs: map[string]any{"n": 2}, Deps: []string{"t.thing.a"}, After: []string{}})
	f.AssertResource(r, "t.thing.a", Want{Deps: []string{}})
	if len(rec.errs) != 0 {
		t.Fatalf("reported %q for what holds", rec.errs)
	}
	for _, c := range []struct {
		addr   string
		want   Want
		report string
	}{
		{"t.thing.c", Want{}, "t.thing.c is not declared; the recipe declares t.thing.a, t.thing.bb"},
		{"t.thing.bb", Want{Type: "t.other"}, `t.thing.bb: type "t.thing", want "t.other"`},
		{"t.thing.bb", Want{Provider: "ssh"}, `t.thing.bb: provider "khw", want "ssh"`},
		{"t.thing.bb", Want{Inputs: map[string]any{"n": "2"}}, `t.thing.bb: inputs["n"] = 2, want "2"`},
		{"t.thing.bb", Want{Inputs: map[string]any{"m": nil}}, `t.thing.bb: inputs["m"] = null, want null`},
		{"t.thing.bb", Want{Settings: map[string]any{"s": 1}}, `t.thing.bb: settings["s"] = null, want 1`},
		{"t.thing.bb", Want{Deps: []string{}}, `t.thing.bb: deps ["t.thing.a"], want []`},
		{"t.thing.a", Want{Deps: []string{"t.thing.bb"}}, `t.thing.a: deps [], want ["t.thing.bb"]`},
		{"t.thing.a", Want{After: []string{"t.thing.bb"}}, `t.thing.a: after [], want ["t.thing.bb"]`},
	} {
		rec.errs = nil
		f.AssertResource(r, c.addr, c.want)
		if len(rec.errs) != 1 || rec.errs[0] != c.report {
			t.Errorf("%s %+v: reported %q, want %q", c.addr, c.want, rec.errs, c.report)
		}
	}
}
