package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// plugged serves the in-process types and, as the plugin "box", the given
// Mux (nil: box is not installed).
type plugged struct {
	in  sdk.Provider
	box *sdk.Mux
}

func (p plugged) Provider(_ context.Context, name string) (sdk.Provider, error) {
	switch {
	case name == runtime.InProcess:
		return p.in, nil
	case name == "box" && p.box != nil:
		return p.box, nil
	}
	return nil, fmt.Errorf("plugin %q is not installed", name)
}

// boxBuiltin declares box.thing(name, value), served by the plugin box.
func boxBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, value string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "value", &value); err != nil {
		return nil, err
	}
	r := &runtime.Resource{Type: "box.thing", Name: name, Inputs: map[string]any{"value": value}}
	if err := runtime.Declare(thread, r); err != nil {
		return nil, err
	}
	return &runtime.Handle{Res: r}, nil
}

// TestUpdateRuleComesFromTheSchema: whether a change is ~ or -/+ is what
// the provider's schema says for the type; the resource and the builtin
// say nothing about it. A provider that cannot be asked makes it a
// replacement, with a warning that names the resource.
func TestUpdateRuleComesFromTheSchema(t *testing.T) {
	e := newEnv(t)
	e.Registry().Add(&runtime.Builtin{Module: "box", Name: "thing", Fn: boxBuiltin})
	e.Registry().AddType(runtime.TypeSpec{Type: "box.thing", Provider: "box"})
	box := newFake()
	plan := func(ps plugged, value string) *runtime.Plan {
		t.Helper()
		rec, err := e.Registry().Evaluate(e.File("main.star", `box.thing("a", "`+value+`")`), runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Resources[0].Provider != "box" {
			t.Fatalf("provider %q: not the declared one", rec.Resources[0].Provider)
		}
		if e.store, err = runtime.OpenStore(e.workdir); err != nil {
			t.Fatal(err)
		}
		p, err := (&runtime.Planner{Providers: ps, Workdir: e.workdir}).Plan(context.Background(), rec, e.store)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, inPlace := range []bool{true, false} {
		m := sdk.NewMux("box", "1")
		m.Handle(sdk.TypeInfo{Type: "box.thing", UpdateInPlace: inPlace}, box)
		ps := plugged{in: e.Registry().InProcess(), box: m}
		p := plan(ps, "1")
		ex := &runtime.Executor{Providers: ps, Workdir: e.workdir, Store: e.store}
		if err := ex.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{true: "update box.thing.a", false: "replace box.thing.a"}[inPlace]
		if got := summary(plan(ps, "2")); got != want {
			t.Fatalf("schema says update_in_place=%v: plan %q, want %q", inPlace, got, want)
		}
		// Not installed any more: planned as a replacement, and said so.
		p = plan(plugged{in: e.Registry().InProcess()}, "2")
		if summary(p) != "replace box.thing.a" || len(p.Warnings) != 1 ||
			!strings.Contains(p.Warnings[0], "box.thing.a (declared at") || !strings.Contains(p.Warnings[0], `plugin "box" is not installed`) {
			t.Fatalf("without the plugin: %q, warnings %q", summary(p), p.Warnings)
		}
		if err := (&runtime.Executor{Providers: ps, Workdir: e.workdir, Store: e.store}).Apply(context.Background(), mustDestroy(t, e.store)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustDestroy(t *testing.T, st *runtime.Store) *runtime.Plan {
	t.Helper()
	p, err := (&runtime.Planner{}).PlanDestroy(st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func schema(name string, types ...string) *sdk.Schema {
	sc := &sdk.Schema{Name: name}
	for _, t := range types {
		sc.Types = append(sc.Types, sdk.TypeInfo{Type: t})
	}
	return sc
}

// Each mismatch between what the builtins declare and what the providers
// found serve is an error that names the type and the providers.
func TestSchemasAreCheckedAgainstTheDeclaredTypes(t *testing.T) {
	reg := runtime.NewRegistry()
	reg.AddType(runtime.TypeSpec{Type: "disk.file", Handler: newFake()})
	reg.AddType(runtime.TypeSpec{Type: "net.link", Provider: "wire"})
	reg.AddType(runtime.TypeSpec{Type: "vm", Provider: runtime.AnyPlugin})
	in := schema(runtime.InProcess, "disk.file")

	if err := reg.CheckProviders([]*sdk.Schema{in, schema("wire", "net.link"), schema("hv1", "vm"), schema("hv2", "vm", "hv2.extra")}); err != nil {
		t.Fatalf("agreeing providers: %v", err)
	}
	cases := []struct {
		name    string
		schemas []*sdk.Schema
		want    []string // one error each, in type order
		missing bool
	}{
		{"the declared plugin is not found", []*sdk.Schema{in, schema("hv1", "vm")},
			[]string{`resource type "net.link": no provider found serves it; khw's builtins need plugin "wire"`}, true},
		{"no hypervisor", []*sdk.Schema{in, schema("wire", "net.link")},
			[]string{`resource type "vm": no provider found serves it; khw's builtins need the plugin the recipe names`}, true},
		{"two providers serve a type", []*sdk.Schema{in, schema("wire", "net.link"), schema("cable", "net.link"), schema("hv1", "vm")},
			[]string{`resource type "net.link": served by plugin "cable" and plugin "wire"; exactly one provider may serve it, plugin "wire", as khw's builtins declare`}, false},
		{"another provider serves it", []*sdk.Schema{in, schema("cable", "net.link"), schema("hv1", "vm")},
			[]string{`resource type "net.link": served by plugin "cable"; exactly one provider may serve it, plugin "wire", as khw's builtins declare`}, false},
		{"a plugin serves an in-process type", []*sdk.Schema{in, schema("wire", "net.link", "disk.file"), schema("hv1", "vm")},
			[]string{`resource type "disk.file": served by khw (in process) and plugin "wire"; exactly one provider may serve it, khw (in process), as khw's builtins declare`}, false},
	}
	for _, c := range cases {
		err := reg.CheckProviders(c.schemas)
		var got []string
		for _, e := range unjoin(err) {
			var te *runtime.TypeError
			if !errors.As(e, &te) || te.Missing != c.missing {
				t.Errorf("%s: %#v is not a TypeError with Missing %v", c.name, e, c.missing)
			}
			got = append(got, e.Error())
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}

	// At a plugin's first use, its own schema alone.
	if err := reg.CheckSchema(schema("wire", "net.link", "wire.more")); err != nil {
		t.Fatalf("wire: %v", err)
	}
	for sc, want := range map[*sdk.Schema]string{
		schema("wire"):              `resource type "net.link": plugin "wire" does not serve it, but khw's builtins need it from that provider`,
		schema("cable", "net.link"): `resource type "net.link": served by plugin "wire", which khw's builtins declare, and also by plugin "cable"; exactly one provider may serve a type`,
		schema("evil", "disk.file"): `resource type "disk.file": served by khw (in process), which khw's builtins declare, and also by plugin "evil"`,
	} {
		if err := reg.CheckSchema(sc); err == nil || !strings.HasPrefix(err.Error(), want) || sdk.HintOf(err) == "" {
			t.Errorf("%s: err = %v, hint %q; want %s", sc.Name, err, sdk.HintOf(err), want)
		}
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
