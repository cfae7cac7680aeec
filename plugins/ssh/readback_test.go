package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBatchScriptRoundTrip runs batchScript's script in a local shell and
// cuts its output back with splitBatch: each probe gets exactly its own
// stdout, stderr and status, including a probe that exits early, one that
// prints no final newline and one that prints nothing.
func TestBatchScriptRoundTrip(t *testing.T) {
	probes := []*probe{
		{script: "echo one; echo two"},
		{script: "printf 'no newline'; echo oops >&2; exit 4"},
		{script: "cd /nonexistent 2>/dev/null || exit 0; echo not reached"},
		{script: "true"},
		{script: "echo \"home $HOME\"; cat", units: []string{"kubelet", "etcd"}},
		{script: "echo failing >&2; false", units: []string{"containerd"}},
	}
	mark := "@@khw-0123456789abcdef"
	cmd, script := batchScript("someone", mark, probes)
	if cmd != "sh -s" {
		t.Errorf("no probe needs root, yet the command is %q", cmd)
	}
	// systemctl as the nodes answer it, one line per unit.
	bin := t.TempDir()
	fake := "#!/bin/sh\nshift; for u; do case $u in --) ;; etcd) echo failed ;; *) echo active ;; esac; done\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("sh", "-s")
	c.Env = []string{"HOME=/home/someone", "PATH=" + bin + ":/usr/bin:/bin"}
	c.Stdin = strings.NewReader(script)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, script)
	}
	rs, err := splitBatch(mark, string(out), probes)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []result{
		{stdout: "one\ntwo\n"},
		{stdout: "no newline", stderr: "oops\n", status: 4},
		{},
		{},
		// cat reads the probe's stdin, which is not the script's.
		{stdout: "home /home/someone\n"},
		{stderr: "failing\n", status: 1},
	}
	for i, r := range rs {
		units := r.units
		if r.stdout != want[i].stdout || r.stderr != want[i].stderr || r.status != want[i].status {
			t.Errorf("probe %d: %+v, want %+v", i, *r, want[i])
		}
		if len(units) != len(probes[i].units) {
			t.Errorf("probe %d: units %v, want %v", i, units, probes[i].units)
		}
	}
	if u := rs[4].units; u["kubelet"] != "active" || u["etcd"] != "failed" || rs[5].units["containerd"] != "active" {
		t.Errorf("unit states %v and %v", rs[4].units, rs[5].units)
	}
	// Nothing at all (sudo refused before the script ran): an error, not
	// a panic.
	if _, err := splitBatch(mark, "", probes); err == nil {
		t.Error("an empty output was accepted")
	}
	if _, err := splitBatch(mark, string(out[:len(out)/2]), probes); err == nil {
		t.Error("half the output was accepted")
	}
	if cmd, _ := batchScript("someone", mark, []*probe{{root: true}}); !strings.HasPrefix(cmd, "sudo -n ") {
		t.Errorf("a root probe as a user: %q", cmd)
	}
	if cmd, _ := batchScript("root", mark, []*probe{{root: true}}); cmd != "sh -s" {
		t.Errorf("a root probe as root: %q", cmd)
	}
}

// TestListScriptHashesOnlyWhatChanged runs a copy's listing in a local
// shell: a file whose stat is the recorded one is not hashed, one whose
// stat differs or was never recorded is; a link and a missing file have
// no line.
func TestListScriptHashesOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	for n, body := range map[string]string{"same": "one\n", "edited": "two\n", "new file": "three\n", "empty": ""} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("same", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	statOf := func(n string) string {
		out, err := exec.Command("stat", "-c", "%s %i %Z %Y", filepath.Join(dir, n)).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	known := map[string]string{"same": statOf("same"), "edited": "4 1 2 3", "link": statOf("same")}
	names := []string{"same", "edited", "new file", "empty", "link", "missing"}
	out, err := exec.Command("sh", "-c", listScript(dir, names, known)).Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	l, err := parseListing(dir, string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := map[string]string{"same": "", "edited": sum("two\n"), "new file": sum("three\n"), "empty": sum("")}
	if len(l.files) != len(want) {
		t.Errorf("listed %v, want %v", l.files, want)
	}
	for n, sha := range want {
		f, ok := l.files[n]
		if !ok || f.sha != sha || f.mode != 0o640 || f.stat != statOf(n) {
			t.Errorf("%s: %+v (listed %v), want sha %q, mode 640, stat %q", n, f, ok, sha, statOf(n))
		}
	}
	if l.dir != dir {
		t.Errorf("dir %q, want %q", l.dir, dir)
	}
}
