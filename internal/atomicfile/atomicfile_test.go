package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileModeExactlyAndNoTempLeft(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts")
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "new\n" || st.Mode().Perm() != 0o644 {
		t.Errorf("after WriteFile: %q, mode %v; want \"new\\n\", 0644 (umask 077 must not matter, nor the old mode)", b, st.Mode().Perm())
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("%d files in the directory, want 1", len(es))
	}
}

// A symlinked file (NixOS's /etc/hosts) keeps its link: the file it points
// to is replaced.
func TestWriteFileKeepsASymlink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "static", "hosts")
	if err := os.WriteFile(real, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hosts")
	if err := os.Symlink("static/hosts", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("10.200.1.10 m1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symlink: %v %v", link, fi.Mode(), err)
	}
	if b, _ := os.ReadFile(real); string(b) != "10.200.1.10 m1\n" {
		t.Errorf("the link's target holds %q", b)
	}
}

// A killed writer's temporary file is found again; other hidden files are not.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".ca-key.pem4839201948372615")
	keep := []string{filepath.Join(dir, ".profile"), filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, ".x1")}
	for _, p := range append(keep, stale) {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStale(dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s is left", stale)
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", p)
		}
	}
}
