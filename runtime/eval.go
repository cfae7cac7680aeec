package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Options control one evaluation.
type Options struct {
	// Root is the directory load() and file reads resolve in. Empty means
	// DefaultRoot(recipe).
	Root string
	// Params are the --set overrides, by name. Setting a parameter the
	// recipe does not declare is an error.
	Params map[string]string
	// Values are parameter values with less weight than Params: from a
	// values file or recorded by the last run. A name the recipe does not
	// declare is skipped and listed in Recipe.Unused.
	Values map[string]Value
	// Print receives the recipe's print() output.
	Print io.Writer
	// Source, when not nil, is the recipe's text: file then only names the
	// recipe in positions and messages, and is not read.
	Source []byte
	// MaxSteps bounds the Starlark steps each file of the recipe (the recipe
	// and every module it loads) may take; 0 means DefaultMaxSteps.
	MaxSteps uint64
}

// DefaultMaxSteps is how many Starlark steps each recipe file may take,
// about a second's work. The post's recipe takes some 3,300; the limit
// turns a loop that never ends (for i in range(1 << 62)) into an error
// instead of a hang.
const DefaultMaxSteps = 10_000_000

// Recipe is the result of evaluating a recipe: its resources in declaration
// order (which is a dependency order, since a recipe can only refer to a
// resource it has already declared) and its parameters.
type Recipe struct {
	File      string
	Root      string
	Resources []*Resource
	Params    []*Param
	// Unused are the Options.Values names the recipe does not declare.
	Unused []string
	byAddr map[string]*Resource
}

// Resource returns the resource at addr, or nil.
func (r *Recipe) Resource(addr string) *Resource { return r.byAddr[addr] }

// DefaultRoot is the recipe root for a recipe file: the nearest enclosing
// directory named "recipes" (so recipes/examples/x.star loads lib/ like
// recipes/hardway.star does), else the recipe's own directory.
func DefaultRoot(recipe string) string {
	dir := filepath.Dir(recipe)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for d := abs; ; {
		if filepath.Base(d) == "recipes" {
			// Shown as given: relative when the recipe's path was.
			if !filepath.IsAbs(recipe) {
				if cwd, err := os.Getwd(); err == nil {
					if rel, err := filepath.Rel(cwd, d); err == nil {
						return rel
					}
				}
			}
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}

const threadKey = "khw.evaluation"

// evaluation is the state of one Evaluate call, kept on every thread.
type evaluation struct {
	reg             *Registry
	root, rootShown string
	recipe          *Recipe
	sets            map[string]string
	values          map[string]Value
	used            map[string]bool
	params          map[string]*Param
	predeclared     starlark.StringDict
	modules         map[string]*loadEntry
	print           io.Writer
	maxSteps        uint64
}

type loadEntry struct {
	globals starlark.StringDict
	err     error
	loading bool
}

var fileOptions = &syntax.FileOptions{Set: true, TopLevelControl: true}

// Evaluate runs a recipe and returns what it declared. Evaluation is
// hermetic: no clock, randomness, environment or network is reachable from
// a recipe, load() resolves only inside the root, and the same recipe and
// parameters always give the same resources.
func (reg *Registry) Evaluate(file string, opt Options) (*Recipe, error) {
	root := opt.Root
	if root == "" {
		root = DefaultRoot(file)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(absRoot); err == nil {
		absRoot = real
	}
	src := opt.Source
	if src == nil {
		if src, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("cannot read recipe: %w", err)
		}
	}
	ev := &evaluation{
		reg:  reg,
		root: absRoot, rootShown: root,
		recipe:   &Recipe{File: file, Root: root, byAddr: map[string]*Resource{}},
		sets:     opt.Params,
		values:   opt.Values,
		used:     map[string]bool{},
		params:   map[string]*Param{},
		modules:  map[string]*loadEntry{},
		print:    opt.Print,
		maxSteps: opt.MaxSteps,
	}
	if ev.print == nil {
		ev.print = io.Discard
	}
	if ev.maxSteps == 0 {
		ev.maxSteps = DefaultMaxSteps
	}
	ev.predeclared = reg.predeclared()
	ev.predeclared["json"] = json.Module
	ev.predeclared["struct"] = starlark.NewBuiltin("struct", starlarkstruct.Make)

	thread := ev.newThread(file)
	if _, err := starlark.ExecFileOptions(fileOptions, thread, file, src, ev.predeclared); err != nil {
		return nil, recipeError(err)
	}
	var unknown []string
	for k := range opt.Params {
		if !ev.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("--set %s: %s declares no such parameter (it has: %s)",
			unknown[0], file, strings.Join(ev.paramNames(), ", "))
	}
	for k := range opt.Values {
		if ev.params[k] == nil {
			ev.recipe.Unused = append(ev.recipe.Unused, k)
		}
	}
	sort.Strings(ev.recipe.Unused)
	return ev.recipe, nil
}

func (ev *evaluation) paramNames() []string {
	var names []string
	for _, p := range ev.recipe.Params {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

func (ev *evaluation) newThread(name string) *starlark.Thread {
	t := &starlark.Thread{
		Name: name,
		Load: ev.load,
		Print: func(t *starlark.Thread, msg string) {
			fmt.Fprintf(ev.print, "%s: %s\n", t.CallFrame(1).Pos, msg)
		},
	}
	t.SetMaxExecutionSteps(ev.maxSteps)
	t.OnMaxSteps = func(t *starlark.Thread) {
		t.Cancel(fmt.Sprintf("the recipe took more than %d steps: does a loop never end?", ev.maxSteps))
	}
	t.SetLocal(threadKey, ev)
	return t
}

// resolve maps a load() or file path to a path inside the root, refusing
// absolute paths, ".." and symlinks that leave the root.
func (ev *evaluation) resolve(what, p string) (full, shown string, err error) {
	clean := path.Clean(p)
	if p == "" || path.IsAbs(p) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", "", fmt.Errorf("%s %q is outside the recipe root %s: paths are relative to the root and may not leave it", what, p, ev.rootShown)
	}
	full = filepath.Join(ev.root, filepath.FromSlash(clean))
	if real, err := filepath.EvalSymlinks(full); err == nil {
		if rel, err := filepath.Rel(ev.root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "", "", fmt.Errorf("%s %q leads outside the recipe root %s through a symlink", what, p, ev.rootShown)
		}
	}
	return full, filepath.Join(ev.rootShown, filepath.FromSlash(clean)), nil
}

func (ev *evaluation) load(_ *starlark.Thread, module string) (starlark.StringDict, error) {
	full, shown, err := ev.resolve("load()", module)
	if err != nil {
		return nil, err
	}
	if e, ok := ev.modules[full]; ok {
		if e.loading {
			return nil, fmt.Errorf("load(%q): cycle in load() graph", module)
		}
		return e.globals, e.err
	}
	e := &loadEntry{loading: true}
	ev.modules[full] = e
	src, err := os.ReadFile(full)
	switch {
	case errors.Is(err, os.ErrNotExist):
		e.err = fmt.Errorf("load(%q): no such file in the recipe root (%s)", module, shown)
	case err != nil:
		e.err = fmt.Errorf("load(%q): %v", module, err)
	default:
		e.globals, e.err = starlark.ExecFileOptions(fileOptions, ev.newThread(shown), shown, src, ev.predeclared)
	}
	e.loading = false
	return e.globals, e.err
}

// ReadFile reads a file a builtin takes as input (a cfssl JSON file, say),
// relative to the recipe root and never outside it.
func ReadFile(thread *starlark.Thread, p string) ([]byte, error) {
	ev := current(thread)
	full, _, err := ev.resolve("file", p)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(full)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("file %q does not exist in the recipe root %s", p, ev.rootShown)
	}
	return b, err
}

func current(thread *starlark.Thread) *evaluation {
	ev, _ := thread.Local(threadKey).(*evaluation)
	if ev == nil {
		panic("runtime: builtin called outside an evaluation")
	}
	return ev
}

// Reserved handle attributes: every handle answers them itself.
var reserved = []string{"address", "name"}

// NewHandle returns the handle of a declared resource. A builtin may not
// shadow the attributes every handle has.
func NewHandle(r *Resource, attrs starlark.StringDict) *Handle {
	for _, k := range reserved {
		if _, clash := attrs[k]; clash {
			panic(fmt.Sprintf("runtime: %s handle sets reserved attribute %q", r.Type, k))
		}
	}
	return &Handle{Res: r, Attrs: attrs}
}

// Declare records a resource declared by the builtin that thread is
// running, at the recipe position of its call.
func Declare(thread *starlark.Thread, r *Resource) error {
	ev := current(thread)
	r.Pos = callerPos(thread)
	r.From = outerPos(thread)
	addr := r.Addr()
	if prev, dup := ev.recipe.byAddr[addr]; dup {
		return fmt.Errorf("%s is declared twice (first at %s); give each a different name", addr, prev.Where())
	}
	for _, d := range append(append([]string(nil), r.Deps...), r.After...) {
		if ev.recipe.byAddr[d] == nil {
			return fmt.Errorf("%s refers to %s, which this recipe does not declare", addr, d)
		}
	}
	if err := ev.reg.provide(r); err != nil {
		return err
	}
	if r.Inputs == nil {
		r.Inputs = map[string]any{}
	}
	ev.recipe.Resources = append(ev.recipe.Resources, r)
	ev.recipe.byAddr[addr] = r
	return nil
}

// callerPos is the position of the innermost recipe frame calling a builtin.
func callerPos(thread *starlark.Thread) syntax.Position {
	for i := 0; i < thread.CallStackDepth(); i++ {
		if p := thread.CallFrame(i).Pos; p.IsValid() && p.Filename() != "<builtin>" {
			return p
		}
	}
	return syntax.Position{}
}

// outerPos is the position of the outermost frame: the recipe's own line.
func outerPos(thread *starlark.Thread) syntax.Position {
	for i := thread.CallStackDepth() - 1; i >= 0; i-- {
		if p := thread.CallFrame(i).Pos; p.IsValid() && p.Filename() != "<builtin>" {
			return p
		}
	}
	return syntax.Position{}
}

func newModule(name string, members starlark.StringDict) starlark.Value {
	m := &starlarkstruct.Module{Name: name, Members: members}
	m.Freeze()
	return m
}
