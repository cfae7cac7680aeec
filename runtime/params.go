package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
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
	Set     bool // given (--set, a values file, recorded), not the default
	// Raw is the text given when Set. From says where the value came
	// from: "--set", a values file's FILE:LINE, "recorded", or "default".
	Raw, From string
	Pos       string
}

// Value is a parameter's value as text, and where it came from (FILE:LINE
// of a values file, "recorded").
type Value struct {
	Raw, From string
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
	p := &Param{Name: name, Doc: doc, Default: def, Value: def, From: "default", Pos: callerPos(thread).String()}
	given, ok := ev.values[name]
	if raw, set := ev.sets[name]; set {
		given, ok = Value{Raw: raw, From: "--set"}, true
		ev.used[name] = true
	}
	if ok {
		v, err := convertParam(def, given.Raw)
		if err != nil {
			switch given.From {
			case "--set":
				return nil, fmt.Errorf("--set %s=%s: %v", name, given.Raw, err)
			case "recorded":
				return nil, fmt.Errorf("%s=%s, recorded by the last run: %v; give it with --set, or forget the recorded values with --reset-params", name, given.Raw, err)
			}
			return nil, fmt.Errorf("%s: %s=%s: %v", given.From, name, given.Raw, err)
		}
		p.Value, p.Set, p.Raw, p.From = v, true, given.Raw, given.From
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

// ValuesFile is the values file read from beside a recipe without being
// named: recipes/khw.values for recipes/hardway.star.
const ValuesFile = "khw.values"

// ReadValues reads a values file: one NAME=VALUE a line, the value as
// --set takes it (a list comma-separated, no quotes); blank lines and lines
// starting with # are skipped. Each value's From is FILE:LINE.
func ReadValues(path string) (map[string]Value, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]Value{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s: want NAME=VALUE, as --set takes it", where)
		}
		if prev, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: %s is given again (first at %s)", where, k, prev.From)
		}
		out[k] = Value{Raw: v, From: where}
	}
	return out, sc.Err()
}
