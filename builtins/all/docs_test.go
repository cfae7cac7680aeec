package all

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	khw "github.com/khw-dev/khw/runtime"
)

// TestEveryBuiltinIsDocumented fails when a registered builtin lacks a doc,
// an example, or the type and doc of an argument, and when the reference
// (khw docs, the README's section) leaves one out.
func TestEveryBuiltinIsDocumented(t *testing.T) {
	bs := Registry().Builtins()
	if len(bs) < 20 {
		t.Fatalf("only %d builtins registered", len(bs))
	}
	for _, b := range bs {
		name := b.FullName()
		if strings.TrimSpace(b.Doc) == "" {
			t.Errorf("%s has no Doc", name)
		}
		if strings.TrimSpace(b.Example) == "" {
			t.Errorf("%s has no Example", name)
		} else if _, err := (&syntax.FileOptions{}).Parse(name+" example", b.Example, 0); err != nil {
			t.Errorf("%s's Example is not Starlark: %v", name, err)
		} else if !strings.Contains(b.Example, name+"(") {
			t.Errorf("%s's Example does not call it: %s", name, b.Example)
		}
		if b.Creates != "" && b.Provider == "" {
			t.Errorf("%s declares %s but does not say which provider serves it (Provider)", name, b.Creates)
		}
		if b.Creates == "" && b.Provider != "" {
			t.Errorf("%s declares nothing but names a Provider", name)
		}
		seen := map[string]bool{}
		optional := false
		for i, a := range b.Args {
			if a.Name == "" || a.Type == "" || strings.TrimSpace(a.Doc) == "" {
				t.Errorf("%s argument %d (%q) lacks a name, type or doc", name, i, a.Name)
			}
			if seen[a.Name] {
				t.Errorf("%s documents argument %s twice", name, a.Name)
			}
			seen[a.Name] = true
			if a.Default == "" && optional {
				t.Errorf("%s: required argument %s is documented after an optional one", name, a.Name)
			}
			optional = optional || a.Default != ""
		}
	}

	for _, format := range khw.ReferenceFormats {
		var out bytes.Buffer
		if err := khw.WriteReference(&out, khw.ReferenceOrder(bs), format); err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if !strings.Contains(out.String(), b.Signature()) {
				t.Errorf("the %s reference leaves out %s", format, b.Signature())
			}
			if !strings.Contains(out.String(), b.Example) {
				t.Errorf("the %s reference leaves out %s's example", format, b.FullName())
			}
		}
	}
}

// probe is an argument no builtin accepts (but as a starlark.Value).
type probe struct{}

func (probe) String() string        { return "probe" }
func (probe) Type() string          { return "probe" }
func (probe) Freeze()               {}
func (probe) Truth() starlark.Bool  { return true }
func (probe) Hash() (uint32, error) { return 0, nil }

// call runs a builtin outside any evaluation: its argument checks answer,
// and a builtin that gets past them panics (no evaluation), which is fine.
func call(b *khw.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (err error) {
	defer func() {
		if recover() != nil {
			err = nil
		}
	}()
	_, err = b.Fn(&starlark.Thread{}, starlark.NewBuiltin(b.FullName(), b.Fn), args, kwargs)
	return err
}

// TestDocumentedArgumentsAreTheRealOnes asks each builtin's own argument
// checks whether the documented arguments are its arguments: the same
// number, every documented name accepted, and the first required one
// missing when called without arguments.
func TestDocumentedArgumentsAreTheRealOnes(t *testing.T) {
	for _, b := range Registry().Builtins() {
		name := b.FullName()
		n := len(b.Args)
		too := make(starlark.Tuple, n+1)
		for i := range too {
			too[i] = probe{}
		}
		if err := call(b, too, nil); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("want at most %d", n)) {
			t.Errorf("%s documents %d arguments, but called with %d it says: %v", name, n, n+1, err)
		}
		for _, a := range b.Args {
			err := call(b, nil, []starlark.Tuple{{starlark.String(a.Name), probe{}}})
			if err != nil && strings.Contains(err.Error(), "unexpected keyword argument") {
				t.Errorf("%s documents argument %s, which it does not take: %v", name, a.Name, err)
			}
		}
		first := ""
		for _, a := range b.Args {
			if a.Default == "" {
				first = a.Name
				break
			}
		}
		err := call(b, nil, nil)
		switch {
		case first != "" && (err == nil || !strings.Contains(err.Error(), "missing argument for "+first)):
			t.Errorf("%s documents %s as its first required argument, but called without arguments it says: %v", name, first, err)
		case first == "" && err != nil && strings.Contains(err.Error(), "missing argument"):
			t.Errorf("%s documents every argument as optional, but: %v", name, err)
		}
	}
}

// TestDocumentedProvidersServeTheResources evaluates the post's recipe for
// each hypervisor and checks that every resource a builtin declares is
// served by the provider its documentation names.
func TestDocumentedProvidersServeTheResources(t *testing.T) {
	reg := Registry()
	byType := map[string]*khw.Builtin{}
	for _, b := range reg.Builtins() {
		if b.Creates != "" {
			byType[b.Creates] = b
			if reg.Type(b.Creates) == nil {
				t.Errorf("%s declares %s, which its module does not register (Registry.AddType)", b.FullName(), b.Creates)
			}
		}
	}
	_, file, _, _ := runtime.Caller(0)
	recipe := filepath.Join(filepath.Dir(file), "..", "..", "recipes", "hardway.star")
	covered := map[string]bool{}
	for _, hv := range []string{"libvirt", "docker", "none"} {
		rec, err := reg.Evaluate(recipe, khw.Options{Params: map[string]string{"hypervisor": hv}})
		if err != nil {
			t.Fatalf("hypervisor=%s: %v", hv, err)
		}
		for _, r := range rec.Resources {
			b := byType[r.Type]
			if b == nil {
				continue // pki.key: declared by pki.ca and pki.cert, documented there
			}
			covered[r.Type] = true
			if !strings.Contains(b.Provider, r.Provider) {
				t.Errorf("hypervisor=%s: %s is served by %s, but %s's docs say %q", hv, r.Addr(), r.Provider, b.FullName(), b.Provider)
			}
		}
	}
	if len(covered) < 10 {
		t.Errorf("the recipe covered only %d documented resource types", len(covered))
	}
}
