package runtime

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseState reads any bytes as a state file, as OpenStore does. It
// must give a clear error or a state that survives being saved and read
// again: what save writes, ParseState reads back as the same state.
func FuzzParseState(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			if st != nil {
				t.Fatalf("both a state and an error: %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "not a khw state file: ") && !strings.HasPrefix(msg, "state format ") &&
				!strings.HasPrefix(msg, "state entry ") {
				t.Fatalf("unclear error: %v", err)
			}
			return
		}
		if st.Format != stateFormat || st.Resources == nil {
			t.Fatalf("accepted format %d, resources %v", st.Format, st.Resources)
		}
		for addr, r := range st.Resources {
			if r == nil || r.Addr() != addr {
				t.Fatalf("accepted entry %q for %v", addr, r)
			}
		}
		saved, err := encodeState(st)
		if err != nil {
			t.Fatalf("cannot save a state it read: %v", err)
		}
		again, err := ParseState(saved)
		if err != nil {
			t.Fatalf("cannot read a state it saved: %v\n%s", err, saved)
		}
		// The first save normalises what a person may have written by
		// hand (spacing inside outputs, an empty map for an absent one),
		// so compare the two as JSON; after it, saving changes nothing.
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("the state changed when saved and read:\nread  %s\nagain %s", a, b)
		}
		resaved, err := encodeState(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(saved, resaved) {
			t.Fatalf("saving a saved state changed it:\n%s\n%s", saved, resaved)
		}
		third, err := ParseState(resaved)
		if err != nil || !reflect.DeepEqual(again, third) {
			t.Fatalf("reading a saved state twice differs: %v", err)
		}
	})
}
