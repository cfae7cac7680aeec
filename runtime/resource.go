// Package runtime is khw's engine: it evaluates a recipe in a hermetic
// Starlark thread (eval.go, load.go, params.go), collects the resources the
// builtins declare (resource.go), compares them with the recorded state and
// the world into a plan (plan.go, state.go), prints the plan (printer.go) and
// carries it out in dependency order (apply.go).
package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// InProcess is the provider name of resources served inside khw.
const InProcess = "khw"

// Field is one input shown to a person in the plan.
type Field struct {
	Key, Value string
}

// Resource is one thing a recipe declared.
type Resource struct {
	Type string // e.g. "pki.cert"
	Name string // e.g. "admin"
	// Provider is InProcess or the name of a plugin (khw-plugin-NAME).
	Provider string
	// Inputs are the resource's configuration. They are JSON values and
	// never hold a secret: keys are made at apply time.
	Inputs map[string]any
	// Settings travel to the provider with the inputs but are not part of
	// the resource's identity: changing one (a retry timeout) redoes
	// nothing.
	Settings map[string]any
	// Deps are the addresses of the resources this one refers to: it is
	// applied after them, and redone when one of them changes.
	Deps []string
	// After are addresses that must be applied first but whose changes do
	// not redo this one: kube-scheduler starts after kube-apiserver, yet a
	// new apiserver flag restarts kube-apiserver alone. Deletion runs the
	// other way: this one goes first.
	After []string
	// Pos is the recipe position of the call that declared it; From is the
	// line of the recipe itself that led there, when Pos is in a loaded
	// library.
	Pos, From syntax.Position
	// Show lists the inputs a person wants to see in the plan.
	Show []Field
	// Whether a change of inputs is applied in place (~) or by replacement
	// (-/+) is not the resource's to say: its provider's schema says it for
	// the type (sdk.TypeInfo.UpdateInPlace), and the planner asks there.
}

// Addr is the resource's address, TYPE.NAME.
func (r *Resource) Addr() string { return r.Type + "." + r.Name }

// Where is the recipe position as file:line.
func (r *Resource) Where() string {
	if !r.Pos.IsValid() {
		return ""
	}
	w := fmt.Sprintf("%s:%d", r.Pos.Filename(), r.Pos.Line)
	if r.From.IsValid() && r.From.Filename() != r.Pos.Filename() {
		w += fmt.Sprintf(" (from %s:%d)", r.From.Filename(), r.From.Line)
	}
	return w
}

// ConfigJSON is the inputs and settings as the JSON object sent to
// providers.
func (r *Resource) ConfigJSON() json.RawMessage {
	all := r.Inputs
	if len(r.Settings) > 0 {
		all = make(map[string]any, len(r.Inputs)+len(r.Settings))
		for k, v := range r.Inputs {
			all[k] = v
		}
		for k, v := range r.Settings {
			all[k] = v
		}
	}
	b, err := json.Marshal(all)
	if err != nil {
		panic(fmt.Sprintf("%s: inputs are not JSON: %v", r.Addr(), err))
	}
	return b
}

// Hash identifies the resource's configuration: provider, type and inputs
// (not settings).
func (r *Resource) Hash() string {
	b, err := json.Marshal(r.Inputs)
	if err != nil {
		panic(fmt.Sprintf("%s: inputs are not JSON: %v", r.Addr(), err))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.Provider, r.Type)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// ---- Starlark values that builtins hand back ----

// Handle is the Starlark value a builtin returns for a resource it declared.
// Its attributes are known at evaluation time (names, IPs, file names);
// values that exist only after apply travel as references (Deps).
type Handle struct {
	Res   *Resource
	Attrs starlark.StringDict
}

var _ starlark.HasAttrs = (*Handle)(nil)

func (h *Handle) String() string        { return "<" + h.Res.Addr() + ">" }
func (h *Handle) Type() string          { return h.Res.Type }
func (h *Handle) Freeze()               { h.Attrs.Freeze() }
func (h *Handle) Truth() starlark.Bool  { return true }
func (h *Handle) Hash() (uint32, error) { return starlark.String(h.Res.Addr()).Hash() }
func (h *Handle) Attr(name string) (starlark.Value, error) {
	switch name {
	case "address":
		return starlark.String(h.Res.Addr()), nil
	case "name":
		return starlark.String(h.Res.Name), nil
	}
	v, ok := h.Attrs[name]
	if !ok {
		return nil, nil // "has no .x field or method"
	}
	return v, nil
}
func (h *Handle) AttrNames() []string {
	names := append([]string{"address", "name"}, h.Attrs.Keys()...)
	sort.Strings(names)
	return names
}

// File is a file that a resource produces, such as admin.pem in the
// workspace or kube-apiserver in the machine's artifact cache. Passing it
// to another builtin makes that resource depend on the producer.
type File struct {
	Path     string // relative to the workdir, or absolute (the artifact cache)
	Producer string // address of the resource that writes it
	Secret   bool   // private keys and the encryption config: mode 0600
	Exec     bool   // a program: mode 0755 where it is copied
}

var _ starlark.HasAttrs = (*File)(nil)

func (f *File) String() string        { return fmt.Sprintf("<file %s>", f.Path) }
func (f *File) Type() string          { return "file" }
func (f *File) Freeze()               {}
func (f *File) Truth() starlark.Bool  { return true }
func (f *File) Hash() (uint32, error) { return starlark.String(f.Path).Hash() }
func (f *File) Attr(name string) (starlark.Value, error) {
	switch name {
	case "path":
		return starlark.String(f.Path), nil
	case "producer":
		return starlark.String(f.Producer), nil
	case "secret":
		return starlark.Bool(f.Secret), nil
	case "exec":
		return starlark.Bool(f.Exec), nil
	}
	return nil, nil
}
func (f *File) AttrNames() []string { return []string{"exec", "path", "producer", "secret"} }

// Refs returns the addresses v refers to (handles and files, inside lists,
// tuples and dicts), sorted and without repeats. Strings and other values
// refer to nothing; a list or dict that contains itself is walked once.
func Refs(vs ...starlark.Value) []string {
	seen := map[string]bool{}
	walked := map[starlark.Value]bool{} // lists and dicts
	todo := append([]starlark.Value(nil), vs...)
	for len(todo) > 0 {
		v := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch x := v.(type) {
		case *Handle:
			seen[x.Res.Addr()] = true
		case *File:
			seen[x.Producer] = true
		case *starlark.List:
			if !walked[x] {
				walked[x] = true
				for i := 0; i < x.Len(); i++ {
					todo = append(todo, x.Index(i))
				}
			}
		case starlark.Tuple:
			todo = append(todo, x...)
		case *starlark.Dict:
			if !walked[x] {
				walked[x] = true
				for _, it := range x.Items() {
					todo = append(todo, it[0], it[1])
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
