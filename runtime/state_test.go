package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

// A run killed between writing a temporary file and renaming it leaves the
// temporary file; the next run, once it holds the lock, removes it.
func TestLockRemovesTheTempFilesOfAKilledRun(t *testing.T) {
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := []string{filepath.Join(work, ".ca-key.pem.tmp-123"), filepath.Join(work, StateDir, ".state.json.tmp-9")}
	keep := []string{filepath.Join(work, ".profile"), filepath.Join(work, "ca-key.pem")}
	for _, p := range append(stale, keep...) {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Lock(); err != nil {
		t.Fatal(err)
	}
	defer st.Unlock()
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left", p)
		}
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", p)
		}
	}
}
