package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// A VM that khw rebuilt reports a new host key: the pinned key replaces the
// node's old known_hosts line, so that Read and Delete (which see no
// dependencies) accept the node afterwards. Other lines stay.
func TestPinnedKeyReplacesTheRebuiltNodesLine(t *testing.T) {
	work := t.TempDir()
	old, fresh, other := newKey(t), newKey(t), newKey(t)
	kh := filepath.Join(work, knownHostsFile)
	otherLine := knownhosts.Line([]string{"10.200.1.13"}, other)
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{"10.200.1.11"}, old)+"\n"+otherLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := &target{Node: "m2", Host: "10.200.1.11", Port: 22}
	deps := map[string]json.RawMessage{"vm.m2": json.RawMessage(`{"ip":"10.200.1.11","host_key":"` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fresh))) + `"}`)}
	v, err := newVerifier(tg, work, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.check(nil, fresh); err != nil {
		t.Fatalf("the pinned key was refused: %v", err)
	}
	// Without the dependency (as in Read and Delete) the new key is known.
	plain, _ := newVerifier(tg, work, nil)
	if err := plain.check(nil, fresh); err != nil {
		t.Fatalf("known_hosts was not updated: %v", err)
	}
	if err := plain.check(nil, old); err == nil {
		t.Fatal("the rebuilt node's old key is still accepted")
	}
	b, _ := os.ReadFile(kh)
	if !strings.Contains(string(b), otherLine) {
		t.Fatalf("another node's line was lost:\n%s", b)
	}
}
