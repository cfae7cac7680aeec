package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/runtime"
)

// writeState records a VM and a machine of the user's in a workdir, as a
// run would.
func writeState(t *testing.T, workdir string) {
	t.Helper()
	st := runtime.State{Format: 1, Resources: map[string]*runtime.ResourceState{
		"vm.m1": {Type: "vm", Name: "m1", Provider: "libvirt", Digest: "x",
			Inputs: map[string]any{"ip": "10.200.1.10", "user": "veeru", "ssh_public_key": "id_ed25519.pub"}},
		"node.host.n1": {Type: "node.host", Name: "n1", Provider: "khw", Digest: "y",
			Inputs: map[string]any{"host": "10.200.1.13", "user": "root", "port": 2222},
			Deps:   map[string]string{"ssh.key.lab-key": "z"}},
	}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(workdir, runtime.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(workdir, runtime.StateDir, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSSHReachesNodesWithThePinnedKey(t *testing.T) {
	w := t.TempDir()
	writeState(t, w)
	r := khw(t, "ssh", "--workdir", w, "--print", "m1", "--", "sudo", "systemctl", "status", "kubelet")
	want := "ssh -i " + w + "/id_ed25519 -p 22 -o UserKnownHostsFile=" + w + "/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes veeru@10.200.1.10 -- sudo systemctl status kubelet\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("khw ssh --print m1: %d\n%q\nwant\n%q", r.code, r.all(), want)
	}
	r = khw(t, "ssh-config", "--workdir", w)
	for _, s := range []string{"Host m1\n  HostName 10.200.1.10\n  Port 22\n  User veeru\n  IdentityFile " + w + "/id_ed25519\n",
		"Host n1\n  HostName 10.200.1.13\n  Port 2222\n  User root\n  IdentityFile " + w + "/lab-key\n",
		"UserKnownHostsFile " + w + "/known_hosts\n  StrictHostKeyChecking yes"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("ssh-config lacks %q:\n%s", s, r.stdout)
		}
	}
	r = khw(t, "ssh", "--workdir", w, "m9")
	if r.code != 1 || !strings.Contains(r.stderr, `no node "m9" in `+w+" (the nodes are: m1, n1)") {
		t.Errorf("unknown node: %d %s", r.code, r.all())
	}
	r = khw(t, "ssh", "--workdir", t.TempDir(), "m1")
	if r.code != 1 || !strings.Contains(r.stderr, "records no node: run khw run first") {
		t.Errorf("empty workdir: %d %s", r.code, r.all())
	}
}
