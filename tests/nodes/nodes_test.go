// Package nodes tests the post's copy steps end to end: khw runs the post's
// recipe with nodes you made yourself (hypervisor=none) against four real
// OpenSSH servers, each in its own network namespace on the lab bridge.
package nodes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// The post's per-role file lists (shared/reference/blog-part1.md).
var roleFiles = map[string][]string{
	"m1": {"ca.pem", "ca-key.pem", "kubernetes.pem", "kubernetes-key.pem", "service-account.pem", "service-account-key.pem",
		"admin.kubeconfig", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig", "encryption-config.yaml"},
	"n1": {"ca.pem", "n1.pem", "n1-key.pem", "n1.kubeconfig", "kube-proxy.kubeconfig"},
}

func filesFor(node string) []string {
	if strings.HasPrefix(node, "m") {
		return roleFiles["m1"]
	}
	return []string{"ca.pem", node + ".pem", node + "-key.pem", node + ".kubeconfig", "kube-proxy.kubeconfig"}
}

var secret = map[string]bool{}

func init() {
	for _, f := range []string{"ca-key.pem", "kubernetes-key.pem", "service-account-key.pem", "n1-key.pem", "n2-key.pem",
		"encryption-config.yaml", "admin.kubeconfig", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig",
		"n1.kubeconfig", "n2.kubeconfig", "kube-proxy.kubeconfig"} {
		secret[f] = true
	}
}

type env struct {
	lab       *labtest.Namespace
	bin, work string
	nodes     map[string]*labtest.SSHNode
}

func sum(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "missing"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (e *env) khw(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"netns", "exec", e.lab.Name, filepath.Join(e.bin, "khw")}, args...)
	full = append(full, filepath.Join(labtest.RepoRoot(), "recipes", "hardway.star"), "--workdir", e.work,
		"--set", "hypervisor=none", "--set", "user=root", "--set", "part=1")
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func setup(t *testing.T) *env {
	labtest.RequireRoot(t)
	e := &env{bin: labtest.Binaries(t), work: filepath.Join(t.TempDir(), "work")}
	if _, err := os.Stat(filepath.Join(e.bin, "khw-plugin-ssh")); err != nil {
		t.Fatal("khw-plugin-ssh was not built")
	}
	e.lab = labtest.NewNamespace(t, "khw-lab")
	labtest.Bridge(t, e.lab)
	auth := filepath.Join(t.TempDir(), "authorized_keys")
	e.nodes = labtest.StartSSHNodes(t, e.lab, auth, map[string]string{
		"m1": "10.200.1.10", "m2": "10.200.1.11", "n1": "10.200.1.13", "n2": "10.200.1.14"})
	// khw makes the workspace key; the nodes authorize it, as the post's
	// ssh-copy-id does.
	if out, err := e.khw(t, "run", "--target", "ssh.key"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pub, err := os.ReadFile(filepath.Join(e.work, "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auth, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// check verifies that each node holds exactly its role's files, with the
// workdir's content and the right modes.
func (e *env) check(t *testing.T, skip ...string) {
	t.Helper()
	for name, n := range e.nodes {
		if contains(skip, name) {
			continue
		}
		want := filesFor(name)
		ents, _ := os.ReadDir(n.Home)
		var got []string
		for _, ent := range ents {
			if !strings.HasPrefix(ent.Name(), ".") {
				got = append(got, ent.Name())
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s holds %v, want %v", name, got, want)
		}
		for _, f := range want {
			if a, b := sum(filepath.Join(n.Home, f)), sum(filepath.Join(e.work, f)); a != b {
				t.Errorf("%s:%s checksum %s, workdir %s", name, f, a[:8], b[:8])
			}
			st, err := os.Stat(filepath.Join(n.Home, f))
			if err != nil {
				continue
			}
			mode := os.FileMode(0o644)
			if secret[f] {
				mode = 0o600
			}
			if st.Mode().Perm() != mode {
				t.Errorf("%s:%s mode %v, want %v", name, f, st.Mode().Perm(), mode)
			}
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func mtimes(e *env) string {
	var b strings.Builder
	for _, name := range []string{"m1", "m2", "n1", "n2"} {
		for _, f := range filesFor(name) {
			st, err := os.Stat(filepath.Join(e.nodes[name].Home, f))
			if err == nil {
				fmt.Fprintf(&b, "%s:%s %d\n", name, f, st.ModTime().UnixNano())
			}
		}
	}
	return b.String()
}

func TestThePostsCopiesToFourSSHNodes(t *testing.T) {
	e := setup(t)
	start := time.Now()
	out, err := e.khw(t, "run", "--target", "node.copy")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	t.Logf("first run: %v", time.Since(start))
	if !strings.Contains(out, "node.copy.m1-certs: created") || !strings.Contains(out, "node.copy.n2-kubeconfigs: created") {
		t.Fatalf("run:\n%s", out)
	}
	e.check(t)
	if st, err := os.Stat(filepath.Join(e.work, "known_hosts")); err != nil || st.Size() == 0 {
		t.Fatal("no known_hosts recorded in the workdir")
	}

	// A re-run transfers nothing.
	before := mtimes(e)
	out, err = e.khw(t, "run", "--target", "node.copy")
	if err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	if mtimes(e) != before {
		t.Fatal("the re-run touched files on the nodes")
	}

	// n2's host key changes (the machine was swapped under the same IP): it
	// is refused, the others still get the new CA.
	e.nodes["n2"].NewHostKey()
	e.nodes["n2"].Restart()
	if err := os.Remove(filepath.Join(e.work, "ca.pem")); err != nil { // forces a new CA, so every node must be updated
		t.Fatal(err)
	}
	out, err = e.khw(t, "run", "--target", "node.copy")
	if err == nil {
		t.Fatalf("a changed host key was accepted:\n%s", out)
	}
	if !strings.Contains(out, "n2") || !strings.Contains(out, "10.200.1.14") || !strings.Contains(strings.ToLower(out), "host key") {
		t.Fatalf("the error does not name n2, its address and the host key:\n%s", out)
	}
	e.check(t, "n2")
	if sum(filepath.Join(e.nodes["n2"].Home, "ca.pem")) == sum(filepath.Join(e.work, "ca.pem")) {
		t.Fatal("n2 got files despite its changed host key")
	}
}

func TestUnreachableNodeIsNamedAndTheRestIsRecorded(t *testing.T) {
	e := setup(t)
	e.nodes["n2"].Stop()
	// A node that never answers: the bounded retry must end, naming it.
	start := time.Now()
	out, err := e.khw(t, "run", "--target", "node.copy.n2-certs", "--target", "node.copy.n1-certs", "--set", "ssh_timeout=4")
	if err == nil {
		t.Fatalf("an unreachable node succeeded:\n%s", out)
	}
	t.Logf("gave up after %v", time.Since(start))
	if !strings.Contains(out, "node.copy.n2-certs") || !strings.Contains(out, "10.200.1.14") {
		t.Fatalf("the error does not name the node and its address:\n%s", out)
	}
	// What did finish is recorded: n1's copy is done and not redone.
	// (A changed retry timeout is a setting, not an input: no change.)
	out, _ = e.khw(t, "plan", "--target", "node.copy.n1-certs")
	if !strings.Contains(out, "No changes.") {
		t.Fatalf("n1's finished copy was not recorded:\n%s", out)
	}
}
