// Package starconv converts Starlark values that recipes pass to builtins
// into plain Go values (JSON-like), with messages that name the argument.
package starconv

import (
	"fmt"
	"math"
	"sort"

	"go.starlark.net/starlark"
)

// MaxDepth is how deeply ToGo follows lists and dicts inside each other. It
// is far more than any configuration needs, and it stops a list or dict
// that contains itself.
const MaxDepth = 100

// ToGo converts None, bool, int, float, string, list, tuple and dict (with
// string keys) into nil, bool, int64, float64, string, []any and
// map[string]any.
func ToGo(v starlark.Value) (any, error) { return toGo(v, 0) }

func toGo(v starlark.Value, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("lists and dicts nested more than %d deep (does one contain itself?)", MaxDepth)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		n, ok := x.Int64()
		if !ok {
			return nil, fmt.Errorf("integer %s is too large", x)
		}
		return n, nil
	case starlark.Float:
		f := float64(x)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%v is not a number that can be stored", f)
		}
		return f, nil
	case starlark.String:
		return string(x), nil
	case *starlark.List, starlark.Tuple:
		it := x.(starlark.Indexable)
		out := make([]any, 0, it.Len())
		for i := 0; i < it.Len(); i++ {
			e, err := toGo(it.Index(i), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range x.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("dict key %s is not a string", kv[0])
			}
			e, err := toGo(kv[1], depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[string(k)] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %s cannot be used here", v.Type())
}

// FromGo converts JSON-like Go values back into Starlark values.
func FromGo(v any) starlark.Value {
	switch x := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(x)
	case int64:
		return starlark.MakeInt64(x)
	case int:
		return starlark.MakeInt(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return starlark.MakeInt64(int64(x))
		}
		return starlark.Float(x)
	case string:
		return starlark.String(x)
	case []any:
		out := make([]starlark.Value, len(x))
		for i, e := range x {
			out[i] = FromGo(e)
		}
		return starlark.NewList(out)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := starlark.NewDict(len(x))
		for _, k := range keys {
			_ = d.SetKey(starlark.String(k), FromGo(x[k]))
		}
		return d
	}
	return starlark.String(fmt.Sprint(v))
}

// Strings converts a list or tuple of strings (None is empty).
func Strings(what string, v starlark.Value) ([]string, error) {
	if v == nil || v == starlark.None {
		return nil, nil
	}
	var it starlark.Indexable
	switch x := v.(type) {
	case *starlark.List:
		it = x
	case starlark.Tuple:
		it = x
	case starlark.String:
		return nil, fmt.Errorf("%s must be a list of strings, not a single string (write [%s])", what, v)
	default: // a range is Indexable too, and may be too long to hold
		return nil, fmt.Errorf("%s must be a list of strings, not %s", what, v.Type())
	}
	out := make([]string, 0, it.Len())
	for i := 0; i < it.Len(); i++ {
		s, ok := starlark.AsString(it.Index(i))
		if !ok {
			return nil, fmt.Errorf("%s[%d] must be a string, not %s", what, i, it.Index(i).Type())
		}
		out = append(out, s)
	}
	return out, nil
}

// StringsToAny is []string as []any, for resource inputs.
func StringsToAny(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
