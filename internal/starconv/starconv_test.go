package starconv

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// TestToGoStopsAtDepth: a dict that contains itself used to recurse until
// the stack overflowed.
func TestToGoStopsAtDepth(t *testing.T) {
	d := starlark.NewDict(1)
	_ = d.SetKey(starlark.String("self"), d)
	if _, err := ToGo(d); err == nil || !strings.Contains(err.Error(), "contain itself") {
		t.Fatalf("self-containing dict: err = %v", err)
	}
	var v starlark.Value = starlark.String("x")
	for i := 0; i < MaxDepth; i++ {
		v = starlark.NewList([]starlark.Value{v})
	}
	if _, err := ToGo(v); err != nil {
		t.Fatalf("%d deep: %v", MaxDepth, err)
	}
	if _, err := ToGo(starlark.NewList([]starlark.Value{v})); err == nil {
		t.Fatalf("%d deep: no error", MaxDepth+1)
	}
}

// TestStringsTakesOnlyLists: a string is not a list of its characters, and
// a range (which may be too long to hold) is not a list of strings.
func TestStringsTakesOnlyLists(t *testing.T) {
	for _, c := range []struct {
		v    starlark.Value
		want string
	}{
		{starlark.String("m1"), `hosts must be a list of strings, not a single string (write ["m1"])`},
		{starlark.MakeInt(1), "hosts must be a list of strings, not int"},
		{mustEval(t, "range(1 << 62)"), "hosts must be a list of strings, not range"},
		{starlark.NewList([]starlark.Value{starlark.MakeInt(1)}), "hosts[0] must be a string, not int"},
	} {
		if _, err := Strings("hosts", c.v); err == nil || err.Error() != c.want {
			t.Errorf("%s: err = %v, want %q", c.v, err, c.want)
		}
	}
	got, err := Strings("hosts", starlark.Tuple{starlark.String("a"), starlark.String("b")})
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Errorf("tuple: %v %v", got, err)
	}
}

func mustEval(t *testing.T, expr string) starlark.Value {
	v, err := starlark.EvalOptions(&syntax.FileOptions{}, &starlark.Thread{}, "x", expr, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
