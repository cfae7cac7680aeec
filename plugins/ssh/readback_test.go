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

// TestBatchScriptRoundTrip runs batchScript's script in a local shell, as
// root would through sudo (HOME passed as $1), and reads its output back
// with splitBatch: each probe gets its own files, in its order, whether
// under the home or absolute, hashed only where the stat is not the
// recorded one, and the state of its units.
func TestBatchScriptRoundTrip(t *testing.T) {
	home, etc := t.TempDir(), t.TempDir()
	write := func(p, body string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, "ca.pem"), "ca\n")
	write(filepath.Join(home, "sub", "new file"), "new\n")
	write(filepath.Join(etc, "kubelet.service"), "[Unit]\n")
	write(filepath.Join(etc, "edited"), "edited\n")
	if err := os.Symlink("ca.pem", filepath.Join(home, "link")); err != nil {
		t.Fatal(err)
	}
	statOf := func(p string) string {
		out, err := exec.Command("stat", "-c", "%s %i %Z %Y", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	caStat := statOf(filepath.Join(home, "ca.pem"))
	probes := []*probe{
		{files: []probeFile{
			fileIn("~", "ca.pem", caStat),    // as recorded: not hashed
			fileIn("~/sub", "new file", ""),  // never recorded
			fileIn("~", "link", caStat),      // not a regular file
			fileIn("~", "missing", ""),       // missing
			fileIn(etc, "edited", "7 1 2 3"), // another stat
		}},
		{root: true, files: []probeFile{
			{path: filepath.Join(etc, "kubelet.service")},
			// The first probe's file under another name, with
			// another recorded stat: its own decides.
			{path: filepath.Join(home, "ca.pem"), known: "3 1 2 3"},
		}, units: []string{"kubelet", "etcd"}},
		{units: []string{"containerd"}},
		{},
	}
	mark := "@@khw-0123456789abcdef"
	script := batchScript("someone", mark, probes)
	// systemctl as the nodes answer it, one line per unit; sudo that
	// notes each command it runs.
	bin := t.TempDir()
	sudoLog := filepath.Join(bin, "sudo.log")
	for name, body := range map[string]string{
		"systemctl": "#!/bin/sh\nshift; for u; do case $u in --) ;; etcd) echo failed ;; *) echo active ;; esac; done\n",
		"sudo":      "#!/bin/sh\n[ \"$1\" = -n ] && shift; echo \"$1\" >>" + sudoLog + "; exec \"$@\"\n",
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(script string) string {
		t.Helper()
		_ = os.Remove(sudoLog)
		c := exec.Command("sh", "-c", batchShell) // as the node runs it
		c.Env = []string{"HOME=" + home, "PATH=" + bin + ":/usr/bin:/bin"}
		c.Stdin = strings.NewReader(script)
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, script)
		}
		return string(out)
	}
	sudoRan := func() string { b, _ := os.ReadFile(sudoLog); return strings.TrimSpace(string(b)) }
	out := run(script)
	// A file missing: the user's stat did not answer for all, so root's
	// is asked (here the same answer).
	if s := sudoRan(); s != "stat" {
		t.Errorf("with a file missing, sudo ran %q, want stat", s)
	}
	rs, err := splitBatch(mark, out, probes)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := [][]string{
		{"", sum("new\n"), "missing", "missing", sum("edited\n")},
		{sum("[Unit]\n"), "?"},
		{},
		{},
	}
	for i, r := range rs {
		if len(r.files) != len(want[i]) {
			t.Errorf("probe %d: %d files, want %d", i, len(r.files), len(want[i]))
			continue
		}
		for j, f := range r.files {
			got := "missing"
			if f != nil {
				got = f.sha
				if f.mode != 0o640 {
					t.Errorf("probe %d file %d: mode %o", i, j, f.mode)
				}
			}
			if got != want[i][j] {
				t.Errorf("probe %d file %d (%s): sha %q, want %q", i, j, probes[i].files[j].path, got, want[i][j])
			}
		}
	}
	if f := rs[0].files[0]; f == nil || f.stat != caStat {
		t.Errorf("ca.pem: %+v, want stat %q", f, caStat)
	}
	if u := rs[1].units; len(u) != 2 || u["kubelet"] != "active" || u["etcd"] != "failed" || rs[2].units["containerd"] != "active" || len(rs[3].units) != 0 {
		t.Errorf("unit states %v, %v, %v", rs[1].units, rs[2].units, rs[3].units)
	}
	// Without any unit to ask about, as on a node that holds only copies.
	script = batchScript("someone", mark, probes[:1])
	if out := run(script); sudoRan() != "" {
		t.Errorf("no probe needs root, yet sudo ran %q", sudoRan())
	} else if rs, err := splitBatch(mark, out, probes[:1]); err != nil || len(rs[0].files) != 5 || rs[0].files[1] == nil {
		t.Errorf("copies alone: %v\n%s", err, out)
	}
	// Nothing changed, nothing missing: no sudo at all, and one stat.
	steady := []*probe{{root: true, files: []probeFile{fileIn("~", "ca.pem", caStat)}, units: []string{"kubelet"}}}
	script = batchScript("someone", mark, steady)
	if c := strings.Count(script, "stat -c"); c != 2 {
		t.Errorf("%d stat commands in the script, want the user's and root's:\n%s", c, script)
	}
	if out := run(script); sudoRan() != "" {
		t.Errorf("a node where nothing changed cost sudo %q", sudoRan())
	} else if rs, err := splitBatch(mark, out, steady); err != nil || rs[0].files[0] == nil || rs[0].files[0].sha != "" {
		t.Errorf("steady: %v\n%s", err, out)
	}
	for stderr, want := range map[string]string{
		"": "",
		"stat: cannot statx 'x': No such file or directory\n":          "",
		"sudo: unable to resolve host n1: Name or service not known\n": "",
		"sudo: a password is required\n":                               "sudo: a password is required",
		"sh: 2: sudo: not found\n":                                     "sh: 2: sudo: not found",
	} {
		if got := sudoRefused(stderr); got != want {
			t.Errorf("sudoRefused(%q) = %q, want %q", stderr, got, want)
		}
	}
	// Nothing at all (sudo refused before the script ran), or half of
	// it: an error, not a panic.
	if _, err := splitBatch(mark, "", probes); err == nil {
		t.Error("an empty output was accepted")
	}
	if _, err := splitBatch(mark, out[:len(out)/2], probes); err == nil {
		t.Error("half the output was accepted")
	}
	if script := batchScript("root", mark, probes); strings.Contains(script, "sudo") {
		t.Errorf("root needs no sudo:\n%s", script)
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
