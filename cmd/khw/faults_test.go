package main

import (
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/runtime"
)

// TestFullDisk: the workdir is a tmpfs too small for the post's PKI. The
// run fails with a clear error naming what it was writing, the state stays
// readable and true to the files, and once there is room the next run
// finishes the job.
func TestFullDisk(t *testing.T) {
	labtest.RequireRootTo(t, "mount a tmpfs")
	work := filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40k", "khw-full", work).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", work).Run() })

	r := runLocal(t, work)
	if r.code == 0 {
		t.Fatalf("a run on a full disk succeeded:\n%s", r.all())
	}
	t.Logf("khw said:\n%s", labtest.Tail(r.stderr, 4))
	if !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("the error does not say the disk is full:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "panic") {
		t.Errorf("khw panicked:\n%s", r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(work, ".khw", "state.json"))
	if err == nil {
		st, err := runtime.ParseState(b)
		if err != nil {
			t.Fatalf("the state is corrupt after the disk filled up: %v", err)
		}
		// Every recorded key and certificate is on disk in full.
		for addr := range st.Resources {
			file := ""
			if n, ok := strings.CutPrefix(addr, "pki.key."); ok {
				file = n + "-key.pem"
			} else if n, ok := strings.CutPrefix(addr, "pki.cert."); ok {
				file = n + ".pem"
			} else if n, ok := strings.CutPrefix(addr, "pki.ca."); ok {
				file = n + ".pem"
			}
			if file == "" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(work, file))
			if blk, _ := pem.Decode(b); err != nil || blk == nil {
				t.Errorf("the state records %s, but %s is missing or cut short", addr, file)
			}
		}
		t.Logf("%d resources recorded before the disk filled up", len(st.Resources))
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(work, ".*.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("half-written files left: %v", leftovers)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=4m", work).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	if r := runLocal(t, work); r.code != 0 {
		t.Fatalf("the run after making room: %s", r.all())
	}
	checkConsistent(t, work)
	if r := runLocal(t, work); !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("third run is not a no-op:\n%s", r.stdout)
	}
}
