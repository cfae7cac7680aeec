package runtime

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

// BuiltinFunc is the Go side of a Starlark builtin.
type BuiltinFunc func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

// Arg documents one argument of a builtin.
type Arg struct {
	Name    string
	Type    string
	Default string // "" when the argument is required
	Doc     string
}

// Builtin is one function recipes can call, registered by dotted name
// ("pki.cert") into a frozen module, or at the top level ("param").
type Builtin struct {
	Module  string // "pki"; "" for a top-level function
	Name    string // "cert"
	Doc     string
	Args    []Arg
	Creates string // the resource type it declares, if any
	// Provider serves what it declares: "khw" (in process) or the plugins
	// that may ("libvirt or docker"); empty when it declares nothing.
	Provider string
	Example  string
	Fn       BuiltinFunc
}

// FullName is the dotted name a recipe calls, e.g. "pki.cert".
func (b *Builtin) FullName() string {
	if b.Module == "" {
		return b.Name
	}
	return b.Module + "." + b.Name
}

// TypeSpec says who serves a resource type and how it changes.
type TypeSpec struct {
	Type string
	Doc  string
	// Handler serves the type inside khw; nil for types served by plugins.
	Handler       sdk.Handler
	UpdateInPlace bool
}

// Registry holds every builtin and in-process resource type.
type Registry struct {
	builtins map[string]*Builtin
	types    map[string]*TypeSpec
}

// NewRegistry returns a registry holding the runtime's own top-level builtins.
func NewRegistry() *Registry {
	r := &Registry{builtins: map[string]*Builtin{}, types: map[string]*TypeSpec{}}
	r.Add(paramBuiltin)
	return r
}

// Add registers a builtin. Registering a name twice is a programming error.
func (r *Registry) Add(b *Builtin) {
	if _, dup := r.builtins[b.FullName()]; dup {
		panic("runtime: builtin registered twice: " + b.FullName())
	}
	r.builtins[b.FullName()] = b
}

// AddType registers an in-process resource type.
func (r *Registry) AddType(t TypeSpec) {
	if _, dup := r.types[t.Type]; dup {
		panic("runtime: type registered twice: " + t.Type)
	}
	r.types[t.Type] = &t
}

// Builtins lists every builtin, sorted by full name.
func (r *Registry) Builtins() []*Builtin {
	out := make([]*Builtin, 0, len(r.builtins))
	for _, b := range r.builtins {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out
}

// InProcess returns the provider that serves every in-process type.
func (r *Registry) InProcess() sdk.Provider {
	m := sdk.NewMux(InProcess, Version)
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := r.types[n]
		if t.Handler != nil {
			m.Handle(sdk.TypeInfo{Type: t.Type, Doc: t.Doc, UpdateInPlace: t.UpdateInPlace}, t.Handler)
		}
	}
	return m
}

// predeclared builds the recipe's global names: one frozen module per
// builtin module plus the top-level functions.
func (r *Registry) predeclared() starlark.StringDict {
	modules := map[string]starlark.StringDict{}
	out := starlark.StringDict{}
	for _, b := range r.Builtins() {
		fn := starlark.NewBuiltin(b.FullName(), b.Fn)
		if b.Module == "" {
			out[b.Name] = fn
			continue
		}
		if modules[b.Module] == nil {
			modules[b.Module] = starlark.StringDict{}
		}
		modules[b.Module][b.Name] = fn
	}
	for name, members := range modules {
		if _, clash := out[name]; clash {
			panic(fmt.Sprintf("runtime: module %s clashes with a top-level builtin", name))
		}
		out[name] = newModule(name, members)
	}
	return out
}

// Version is khw's version (internal/version: set by the linker).
var Version = version.String()
