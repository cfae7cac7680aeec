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

// TestValidityWindowBackwards: cfssl's LoadConfig panicked ("Wrap needs a
// supplied error") on a profile whose not_after is before its not_before.
// Found by FuzzConfigJSON (testdata/fuzz/FuzzConfigJSON/9a80995da28f4bb1).
func TestValidityWindowBackwards(t *testing.T) {
	data := []byte(`{"signing": {"profiles": {"k": {"expiry": "1h", "usages": ["server auth"],
		"not_before": "2070-01-01T00:00:00Z", "not_after": "2030-01-01T00:00:00Z"}}}}`)
	d, err := jsonDict(data)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = parseConfig(d)
	want := `not a valid cfssl signing config: profile "k": not_after 2030-01-01T00:00:00Z is before not_before 2070-01-01T00:00:00Z`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}
