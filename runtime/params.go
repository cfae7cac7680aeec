package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// Param is one recipe parameter: declared with a default by param() and
// overridable from the command line with --set NAME=VALUE.
type Param struct {
	Name    string
	Doc     string
	Default starlark.Value
	Value   starlark.Value
	Set     bool // overridden by --set
	Pos     string
}

var paramBuiltin = &Builtin{
	Name: "param",
	Doc: "Declares a recipe parameter and returns its value: the default, or the value given " +
		"on the command line with --set NAME=VALUE, converted to the default's type " +
		"(int, bool, string, or a comma-separated list). A parameter without a default must be set.",
	Args: []Arg{
		{Name: "name", Type: "string", Doc: "the parameter's name"},
		{Name: "default", Type: "int|bool|string|list", Default: "None", Doc: "the value when not set; None makes the parameter required"},
		{Name: "doc", Type: "string", Default: `""`, Doc: "one line shown by `khw plan`"},
	},
	Example: `controllers = param("controllers", 2, doc = "number of controller VMs")`,
	Fn:      param,
}

func param(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, doc string
	var def starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "default?", &def, "doc?", &doc); err != nil {
		return nil, err
	}
	ev := current(thread)
	if p, ok := ev.params[name]; ok {
		if eq, err := starlark.Equal(p.Default, def); err != nil || !eq {
			return nil, Errorf(b, "parameter %q is declared again with another default (first at %s)", name, p.Pos)
		}
		return p.Value, nil
	}
	p := &Param{Name: name, Doc: doc, Default: def, Value: def, Pos: callerPos(thread).String()}
	if raw, ok := ev.sets[name]; ok {
		v, err := convertParam(def, raw)
		if err != nil {
			return nil, fmt.Errorf("--set %s=%s: %v", name, raw, err)
		}
		p.Value, p.Set = v, true
		ev.used[name] = true
	} else if def == starlark.None {
		return nil, Errorf(b, "parameter %q has no default and was not given: run with --set %s=VALUE", name, name)
	}
	p.Value.Freeze()
	ev.params[name] = p
	ev.recipe.Params = append(ev.recipe.Params, p)
	return p.Value, nil
}

func convertParam(def starlark.Value, raw string) (starlark.Value, error) {
	switch d := def.(type) {
	case starlark.NoneType, starlark.String:
		return starlark.String(raw), nil
	case starlark.Int:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parameter takes a whole number")
		}
		return starlark.MakeInt64(n), nil
	case starlark.Bool:
		v, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("parameter takes true or false")
		}
		return starlark.Bool(v), nil
	case *starlark.List:
		var elems []starlark.Value
		ints := d.Len() > 0 && d.Index(0).Type() == "int"
		if raw != "" {
			for _, s := range strings.Split(raw, ",") {
				s = strings.TrimSpace(s)
				if ints {
					n, err := strconv.ParseInt(s, 10, 64)
					if err != nil {
						return nil, fmt.Errorf("parameter takes a comma-separated list of whole numbers")
					}
					elems = append(elems, starlark.MakeInt64(n))
				} else {
					elems = append(elems, starlark.String(s))
				}
			}
		}
		return starlark.NewList(elems), nil
	}
	return nil, fmt.Errorf("a parameter whose default is a %s cannot be set from the command line", def.Type())
}
