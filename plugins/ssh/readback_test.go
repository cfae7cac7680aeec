package main

import (
	"os/exec"
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
		{script: "echo \"home $HOME\"; cat"},
	}
	mark := "@@khw-0123456789abcdef"
	cmd, script := batchScript("someone", mark, probes)
	if cmd != "sh -s" {
		t.Errorf("no probe needs root, yet the command is %q", cmd)
	}
	c := exec.Command("sh", "-s")
	c.Env = []string{"HOME=/home/someone", "PATH=/usr/bin:/bin"}
	c.Stdin = strings.NewReader(script)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, script)
	}
	rs, err := splitBatch(mark, string(out), len(probes))
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
	}
	for i, r := range rs {
		if *r != want[i] {
			t.Errorf("probe %d: %+v, want %+v", i, *r, want[i])
		}
	}
	if _, err := splitBatch(mark, string(out[:len(out)/2]), len(probes)); err == nil {
		t.Error("half the output was accepted")
	}
	if cmd, _ := batchScript("someone", mark, []*probe{{root: true}}); !strings.HasPrefix(cmd, "sudo -n ") {
		t.Errorf("a root probe as a user: %q", cmd)
	}
	if cmd, _ := batchScript("root", mark, []*probe{{root: true}}); cmd != "sh -s" {
		t.Errorf("a root probe as root: %q", cmd)
	}
}
