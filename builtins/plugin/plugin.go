// Package plugin is the recipe module `plugin`: a resource of a type that
// no builtin declares, served by a plugin of its own. It is how a provider
// written outside khw (docs/plugins.md, examples/provider-hello) is used
// without editing khw: the plugin is found on the search path, and its
// schema says how its types change.
package plugin

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

// typeRE is PROVIDER.KIND: the plugin khw-plugin-PROVIDER serves the type,
// as a Terraform resource type begins with its provider's name. So a
// recipe needs to name nothing else, and one type has one provider.
var typeRE = regexp.MustCompile(`^([a-z][a-z0-9_-]*)\.([a-z][a-z0-9_.-]*)$`)

// nameRE is what a resource name may be: the end of its address.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// showWidth is how much of a configuration value the plan shows.
const showWidth = 60

// Register adds the plugin module.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "plugin", Name: "resource", Fn: resourceFn(r),
		Doc: "Declares a resource of a type that a plugin serves and no builtin declares, so that a provider " +
			"written outside khw is used without editing khw (docs/plugins.md). The type is PROVIDER.KIND: the " +
			"plugin khw-plugin-PROVIDER, found on the plugin search path, serves it, and its schema says whether a " +
			"change is made in place. The configuration goes to the plugin as JSON, unchecked by khw. A type that " +
			"a builtin declares (net.bridge, vm, ...) is refused: its builtin checks its arguments.",
		Args: []runtime.Arg{
			{Name: "type", Type: "string", Doc: "PROVIDER.KIND, e.g. \"hello.greeting\", served by the plugin PROVIDER"},
			{Name: "name", Type: "string", Doc: "resource name: the address is TYPE.NAME"},
			{Name: "config", Type: "dict", Default: "{}", Doc: "the resource's configuration: strings, numbers, booleans, None, lists and dicts"},
			{Name: "deps", Type: "list", Default: "[]", Doc: "resources (handles, files) it is applied after and redone with; their outputs reach the plugin"},
		},
		Example: `plugin.resource("hello.greeting", "world", config = {"file": "hello.txt", "who": "world"})`,
	})
}

func resourceFn(reg *runtime.Registry) runtime.BuiltinFunc {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var typ, name string
		config := starlark.NewDict(0)
		deps := starlark.NewList(nil)
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "type", &typ, "name", &name, "config?", &config, "deps?", &deps); err != nil {
			return nil, err
		}
		m := typeRE.FindStringSubmatch(typ)
		switch {
		case m == nil:
			return nil, runtime.Errorf(b, "type %q is not PROVIDER.KIND (lower-case letters, digits, '_' and '-'; the provider first)", typ)
		case m[1] == runtime.InProcess || reg.Type(typ) != nil:
			return nil, runtime.Errorf(b, "type %s is declared by khw's builtins: use its builtin (khw docs lists them)", typ)
		case !nameRE.MatchString(name):
			return nil, runtime.Errorf(b, "name %q is not a resource name (letters, digits, '_', '.', '-')", name)
		}
		v, err := starconv.ToGo(config)
		if err != nil {
			return nil, runtime.Errorf(b, "config: %v", err)
		}
		inputs := v.(map[string]any)
		res := &runtime.Resource{Type: typ, Name: name, Provider: m[1], Inputs: inputs, Deps: runtime.Refs(deps)}
		for _, k := range slices.Sorted(maps.Keys(inputs)) {
			res.Show = append(res.Show, runtime.Field{Key: k, Value: show(inputs[k])})
		}
		if err := runtime.Declare(thread, res); err != nil {
			return nil, err
		}
		return runtime.NewHandle(res, starlark.StringDict{"provider": starlark.String(m[1])}), nil
	}
}

// show is a configuration value as the plan shows it: a string as is, the
// rest as JSON, cut at showWidth.
func show(v any) string {
	s, ok := v.(string)
	if !ok {
		b, _ := json.Marshal(v)
		s = string(b)
	}
	if r := []rune(s); len(r) > showWidth {
		s = fmt.Sprintf("%s… (%d characters)", string(r[:showWidth]), len(r))
	}
	return s
}
