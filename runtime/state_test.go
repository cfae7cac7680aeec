package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run killed between writing a temporary file and renaming it leaves the
// temporary file; the next run, once it holds the lock, removes it.
func TestLockRemovesTheTempFilesOfAKilledRun(t *testing.T) {
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := []string{filepath.Join(work, ".ca-key.pem5577006791947779410"), filepath.Join(work, StateDir, ".state.json8674665223082153551")}
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

func rs(i int) *ResourceState {
	return &ResourceState{Type: "pki.key", Name: fmt.Sprintf("node-%03d", i), Provider: InProcess, Hash: strings.Repeat("ab", 32),
		Inputs: map[string]any{"algo": "rsa", "size": 2048}, Outputs: []byte(`{"fingerprint":"` + strings.Repeat("cd", 32) + `"}`), Digest: strings.Repeat("ef", 32)}
}

func putN(t *testing.T, st *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := st.Put(rs(i).Addr(), rs(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func snapshotCount(t *testing.T, work string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(work, StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	return len(st.Resources)
}

// TestJournalKeepsEveryPutAndCompacts: what Put returned is in the state a
// new reader opens, whether it is in state.json yet or still in the
// journal; state.json alone is at most half behind; Compact folds the
// journal in and removes it.
func TestJournalKeepsEveryPutAndCompacts(t *testing.T) {
	work := t.TempDir()
	st, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	putN(t, st, 0, 100)
	again, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(again.Addrs()); n != 100 {
		t.Fatalf("a new reader sees %d resources, want 100", n)
	}
	if n := snapshotCount(t, work); n < 50 || n == 100 {
		t.Errorf("state.json holds %d of 100 during the run, want at least half and the journal in use", n)
	}
	if err := st.Put(rs(7).Addr(), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, work); n != 99 {
		t.Errorf("state.json holds %d after Compact, want 99", n)
	}
	if _, err := os.Stat(filepath.Join(work, StateDir, "state.journal")); !os.IsNotExist(err) {
		t.Errorf("the journal is still there after Compact: %v", err)
	}
}

// TestJournalCutShortByAKill: a last line without its newline (a write a
// kill cut short) is not part of the state, and the next run, once it holds
// the lock, folds the rest in and goes on; a damaged line before the last
// is an error that names the journal and the line.
func TestJournalCutShortByAKill(t *testing.T) {
	work := t.TempDir()
	st, _ := OpenStore(work)
	putN(t, st, 0, 10)
	journal := filepath.Join(work, StateDir, "state.journal")
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatalf("no journal after 10 puts: %v", err)
	}
	lines := strings.Count(string(b), "\n")
	want := 10 // every Put so far is kept
	torn := append(b, `{"serial":99,"addr":"pki.key.node-500","state":{"ty`...)
	if err := os.WriteFile(journal, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	next, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(next.Addrs()); n != want {
		t.Fatalf("%d resources after a torn last line, want %d", n, want)
	}
	if err := next.Lock(); err != nil {
		t.Fatal(err)
	}
	putN(t, next, 10, 12)
	if err := next.Compact(); err != nil {
		t.Fatal(err)
	}
	next.Unlock()
	if n := snapshotCount(t, work); n != 12 {
		t.Errorf("state.json holds %d, want 12", n)
	}

	// A damaged line in the middle.
	st2, _ := OpenStore(work)
	putN(t, st2, 20, 40)
	b, _ = os.ReadFile(journal)
	if strings.Count(string(b), "\n") < 2 {
		t.Fatalf("the journal holds %d lines (of %d before), want 2 or more", strings.Count(string(b), "\n"), lines)
	}
	damaged := strings.Replace(string(b), `"addr"`, `"adr"`, 1)
	if err := os.WriteFile(journal, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(work); err == nil || !strings.Contains(err.Error(), "state.journal, line 1") {
		t.Errorf("a damaged journal: %v", err)
	}
}

// TestStateBytesGrowLinearly: recording n resources writes O(n) bytes, not
// O(n²) (the whole state after each), checked at 100, 200 and 400.
func TestStateBytesGrowLinearly(t *testing.T) {
	var per []float64
	for _, n := range []int{100, 200, 400} {
		st, _ := OpenStore(t.TempDir())
		putN(t, st, 0, n)
		if err := st.Compact(); err != nil {
			t.Fatal(err)
		}
		per = append(per, float64(st.Written())/float64(n))
	}
	t.Logf("bytes written per resource at 100, 200, 400: %.0f %.0f %.0f", per[0], per[1], per[2])
	if per[2] > 1.3*per[0] {
		t.Errorf("bytes per resource grow with the lab: %.0f at 100, %.0f at 400", per[0], per[2])
	}
}

// TestParamsAreJournalled: the parameters a run was given are journalled
// like a resource, read back by a new reader, kept by Compact, and the
// same parameters again write nothing.
func TestParamsAreJournalled(t *testing.T) {
	work := t.TempDir()
	st, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	putN(t, st, 0, 10)
	want := map[string]string{"hypervisor": "docker", "workers": "3"}
	if err := st.SetParams(want); err != nil {
		t.Fatal(err)
	}
	before := st.Written()
	if err := st.SetParams(map[string]string{"workers": "3", "hypervisor": "docker"}); err != nil {
		t.Fatal(err)
	}
	if st.Written() != before {
		t.Errorf("the same parameters again wrote %d bytes", st.Written()-before)
	}
	again, err := OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Params(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("a new reader sees params %v, want %v", got, want)
	}
	if err := st.Compact(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(work, StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"hypervisor": "docker"`) {
		t.Errorf("state.json after Compact lacks the parameters:\n%s", b)
	}
	if err := st.SetParams(nil); err != nil {
		t.Fatal(err)
	}
	again, err = OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Params(); got != nil {
		t.Errorf("after SetParams(nil) a new reader sees %v", got)
	}
	if n := len(again.Addrs()); n != 10 {
		t.Errorf("%d resources, want 10", n)
	}
}

// A state written by an older khw, which recorded each resource's
// update_in_place, is still read: the field is ignored, the provider's
// schema being the rule's one source now.
func TestStateWithUpdateInPlaceIsRead(t *testing.T) {
	st, err := ParseState([]byte(`{"format": 1, "serial": 3, "resources": {"net.hosts.lab": {"type": "net.hosts", "name": "lab",
		"provider": "hostnet", "hash": "h", "inputs": {"file": "/etc/hosts"}, "digest": "d", "update_in_place": true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Resources["net.hosts.lab"]; r == nil || r.Provider != "hostnet" || r.Inputs["file"] != "/etc/hosts" {
		t.Fatalf("resource = %+v", r)
	}
}
