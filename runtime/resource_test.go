package runtime_test

import (
	"reflect"
	"testing"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// TestRefsWalksOnlyContainers: a string refers to nothing (it used to be
// walked as a list of one-character strings, each of itself, for ever) and
// a list or dict that contains itself is walked once.
func TestRefsWalksOnlyContainers(t *testing.T) {
	h := &runtime.Handle{Res: &runtime.Resource{Type: "fake.thing", Name: "a"}}
	f := &runtime.File{Path: "ca.pem", Producer: "pki.ca.ca"}
	l := starlark.NewList([]starlark.Value{starlark.String("fake.thing.b"), h})
	if err := l.Append(l); err != nil {
		t.Fatal(err)
	}
	d := starlark.NewDict(2)
	_ = d.SetKey(starlark.String("self"), d)
	_ = d.SetKey(f, l)
	got := runtime.Refs(starlark.String("x"), starlark.Tuple{d, starlark.String("s")}, starlark.MakeInt(1))
	if want := []string{"fake.thing.a", "pki.ca.ca"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Refs = %v, want %v", got, want)
	}
}
