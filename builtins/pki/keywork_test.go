package pki

import (
	"errors"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/csr"
)

// KeyWork counts the keys made and their CPU time, measured on the
// generating thread: at most the wall time a key took, and more than
// nothing; a failed generation does not count.
func TestKeyWork(t *testing.T) {
	n0, cpu0 := KeyWork()
	start := time.Now()
	if _, err := timedOnThread((&csr.KeyRequest{A: "rsa", S: 2048}).Generate); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	n1, cpu1 := KeyWork()
	if n1 != n0+1 || cpu1-cpu0 <= 0 || cpu1-cpu0 > wall {
		t.Errorf("after one RSA-2048 key in %s: %d keys, %s of CPU (before: %d, %s)", wall, n1, cpu1, n0, cpu0)
	}
	if _, err := timedOnThread(func() (int, error) { return 0, errors.New("no") }); err == nil {
		t.Fatal("the error was lost")
	}
	if n2, cpu2 := KeyWork(); n2 != n1 || cpu2 != cpu1 {
		t.Errorf("a failed generation counted: %d keys, %s", n2, cpu2)
	}
}
