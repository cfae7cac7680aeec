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
	// Provider serves what it declares, for the reference: "khw" (in
	// process), a plugin's name, or a phrase when the recipe names the
	// plugin; empty when it declares nothing. (What khw checks is the
	// TypeSpec its module registers for the type.)
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

// AnyPlugin is the TypeSpec.Provider of a type whose provider the recipe
// names: vm.create's provider may be any plugin found that serves vm
// (libvirt and docker ship with khw).
const AnyPlugin = "*"

// TypeSpec is a resource type the builtins declare, and the provider that
// serves it. Each builtin module registers the types it declares
// (Registry.AddType), so that khw knows, before it launches anything,
// which provider each type needs, and can check that the providers found
// agree (CheckSchema, CheckProviders).
//
// Whether a change of the type is made in place is not part of this
// declaration for a plugin's type: the plugin's schema, as it reports it at
// start-up, is the one source (sdk.TypeInfo.UpdateInPlace), and the planner
// asks it there. For an in-process type, this TypeSpec is that schema:
// Registry.InProcess serves it as the in-process provider's TypeInfo.
type TypeSpec struct {
	Type string
	Doc  string
	// Provider serves the type: InProcess, a plugin's name, or AnyPlugin.
	// Empty means InProcess.
	Provider string
	// Handler serves an in-process type; nil for a plugin's.
	Handler sdk.Handler
	// UpdateInPlace is the in-process type's rule (sdk.TypeInfo); a
	// plugin's type has its rule in the plugin's schema, never here.
	UpdateInPlace bool
}

// Registry holds every builtin and the resource types they declare.
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

// AddType registers a resource type the builtins declare. Registering a
// type twice, an in-process type without a handler, or a plugin's type
// with a handler or an update rule of its own is a programming error.
func (r *Registry) AddType(t TypeSpec) {
	if _, dup := r.types[t.Type]; dup {
		panic("runtime: type registered twice: " + t.Type)
	}
	if t.Provider == "" {
		t.Provider = InProcess
	}
	switch {
	case t.Provider == InProcess && t.Handler == nil:
		panic("runtime: in-process type without a handler: " + t.Type)
	case t.Provider != InProcess && (t.Handler != nil || t.UpdateInPlace):
		panic("runtime: " + t.Type + " is served by " + t.Provider + ", whose schema says how it changes; no handler or UpdateInPlace here")
	}
	r.types[t.Type] = &t
}

// Type returns the declared type of that name, or nil.
func (r *Registry) Type(name string) *TypeSpec {
	if t := r.types[name]; t != nil {
		c := *t
		return &c
	}
	return nil
}

// Types lists every declared type, sorted by name.
func (r *Registry) Types() []TypeSpec {
	out := make([]TypeSpec, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// provide gives a declared resource its provider: the one its type is
// declared for. A builtin may name it too (it must then agree); it must
// name it when the recipe chooses (AnyPlugin), and for a type no builtin
// module declares (plugin.resource: a plugin's own type).
func (r *Registry) provide(res *Resource) error {
	t := r.types[res.Type]
	switch {
	case t == nil && res.Provider == "":
		res.Provider = InProcess
	case t == nil:
	case t.Provider == AnyPlugin:
		if res.Provider == "" || res.Provider == InProcess {
			return fmt.Errorf("%s: its type is served by the plugin the recipe names, and none was named", res.Addr())
		}
	case res.Provider == "":
		res.Provider = t.Provider
	case res.Provider != t.Provider:
		return fmt.Errorf("%s: type %s is served by %s, not %s", res.Addr(), res.Type, who(t.Provider), who(res.Provider))
	}
	return nil
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
		if t := r.types[n]; t.Provider == InProcess {
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
