package pki

import (
	"testing"

	"go.starlark.net/starlark"
)

// TestNullKeyIsTheDefaultKey: "key": null used to leave the key request
// nil, and checking it panicked. cfssl reads it as its default key.
func TestNullKeyIsTheDefaultKey(t *testing.T) {
	d := starlark.NewDict(2)
	_ = d.SetKey(starlark.String("CN"), starlark.String("admin"))
	_ = d.SetKey(starlark.String("key"), starlark.None)
	req, _, err := parseCSR(d)
	if err != nil {
		t.Fatal(err)
	}
	if req.KeyRequest.Algo() != "ecdsa" || req.KeyRequest.Size() != 256 {
		t.Fatalf("key = %s %d", req.KeyRequest.Algo(), req.KeyRequest.Size())
	}
}
