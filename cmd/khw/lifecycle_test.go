package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khw-dev/khw/runtime"
)

// snapshot records every file under dir with its size, mode and mtime.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %v %d", p, info.Size(), info.Mode(), info.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestRerunChangesNothing(t *testing.T) {
	work := t.TempDir()
	if r := runLocal(t, work); r.code != 0 {
		t.Fatal(r.all())
	}
	before := snapshot(t, work)
	sums := map[string][]byte{}
	for _, n := range certNames {
		sums[n], _ = os.ReadFile(filepath.Join(work, n+".pem"))
	}
	r := runLocal(t, work)
	if r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("second run: exit %d\n%s", r.code, r.all())
	}
	if after := snapshot(t, work); after != before {
		t.Fatalf("the second run touched the workdir:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, n := range certNames {
		if b, _ := os.ReadFile(filepath.Join(work, n+".pem")); string(b) != string(sums[n]) {
			t.Fatalf("%s.pem changed", n)
		}
	}
}

func TestAddingASANReplacesOnlyTheAPIServerCert(t *testing.T) {
	work := t.TempDir()
	if r := runLocal(t, work); r.code != 0 {
		t.Fatal(r.all())
	}
	args := append([]string{"plan", "-o", "json", "recipes/hardway.star", "--workdir", work, "--set", "extra_sans=api.lab.internal"}, localTargets...)
	r := khw(t, args...)
	if r.code != 0 {
		t.Fatal(r.all())
	}
	var changed []string
	for _, m := range regexp.MustCompile(`"address": "([^"]+)",\s*"type": "[^"]+",\s*"action": "([a-z-]+)"`).FindAllStringSubmatch(r.stdout, -1) {
		if m[2] != "no-op" {
			changed = append(changed, m[2]+" "+m[1])
		}
	}
	if strings.Join(changed, ",") != "replace pki.cert.kubernetes" {
		t.Fatalf("changes with the PKI targets: %v", changed)
	}
	// In the whole recipe, what depends on the certificate follows: the
	// controllers' copies (nothing else embeds kubernetes.pem).
	full := khw(t, "plan", "recipes/hardway.star", "--workdir", work, "--set", "extra_sans=api.lab.internal")
	if !strings.Contains(full.stdout, "-/+ pki.cert.kubernetes") {
		t.Fatalf("no replacement:\n%s", full.stdout)
	}
	for _, other := range []string{"pki.ca.ca", "pki.cert.admin", "kubeconfig.admin", "encryption.config"} {
		if strings.Contains(full.stdout, "-/+ "+other) || strings.Contains(full.stdout, "~ "+other) {
			t.Fatalf("%s changes too:\n%s", other, full.stdout)
		}
	}
	apply := runLocal(t, work, "--set", "extra_sans=api.lab.internal")
	if apply.code != 0 || !strings.Contains(apply.stdout, "1 added, 0 changed, 1 destroyed") {
		t.Fatalf("apply: %s", apply.all())
	}
	if c := readCert(t, filepath.Join(work, "kubernetes.pem")); !contains(c.DNSNames, "api.lab.internal") {
		t.Fatalf("SAN not in the new certificate: %v", c.DNSNames)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// checkConsistent verifies a complete, coherent local PKI: every certificate
// verifies against ca.pem and matches its key, every kubeconfig embeds the
// current CA and client pair, and the state agrees with the files.
func checkConsistent(t *testing.T, work string) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(work, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, n := range certNames {
		cp, err1 := os.ReadFile(filepath.Join(work, n+".pem"))
		kp, err2 := os.ReadFile(filepath.Join(work, n+"-key.pem"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: missing files", n)
		}
		if _, err := tls.X509KeyPair(cp, kp); err != nil {
			t.Fatalf("%s: key and certificate do not match", n)
		}
		blk, _ := pem.Decode(cp)
		c, _ := x509.ParseCertificate(blk.Bytes)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s: does not verify against ca.pem: %v", n, err)
		}
	}
	for _, n := range kubeconfigNames {
		b, err := os.ReadFile(filepath.Join(work, n+".kubeconfig"))
		if err != nil {
			t.Fatalf("%s.kubeconfig missing", n)
		}
		if !strings.Contains(string(b), base64.StdEncoding.EncodeToString(caPEM)) {
			t.Fatalf("%s.kubeconfig embeds another CA", n)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(work, ".*.tmp-*"))
	if len(leftovers) > 0 {
		t.Fatalf("half-written files left: %v", leftovers)
	}
}

func TestKilledDuringKeyGenerationThenRerun(t *testing.T) {
	var killedAt int
	var work string
	for attempt := 0; attempt < 10 && killedAt == 0; attempt++ {
		work = t.TempDir()
		args := append([]string{"run", "recipes/hardway.star", "--workdir", work}, localTargets...)
		cmd := exec.Command(khwBin, args...)
		cmd.Dir = repoRoot
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill as soon as the first key is recorded and the generation of
		// the others is under way.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(filepath.Join(work, ".khw", "state.json"))
			if st, err := runtime.ParseState(b); err == nil && len(st.Resources) > 0 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				if n := len(st.Resources); n < 26 {
					killedAt = n
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		_ = cmd.Wait()
	}
	if killedAt == 0 {
		t.Fatal("never caught the run in the middle of key generation")
	}
	t.Logf("killed with %d of 26 resources recorded", killedAt)
	if r := runLocal(t, work); r.code != 0 {
		t.Fatalf("re-run after SIGKILL: %s", r.all())
	}
	checkConsistent(t, work)
	if r := runLocal(t, work); !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("third run is not a no-op:\n%s", r.stdout)
	}
}

func TestSecondConcurrentRunIsRefused(t *testing.T) {
	work := t.TempDir()
	held, err := runtime.OpenStore(work)
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Lock(); err != nil {
		t.Fatal(err)
	}
	r := runLocal(t, work)
	held.Unlock()
	if r.code != 1 || !strings.Contains(r.stderr, "is locked by another khw run (pid ") || !strings.Contains(r.stderr, "wait for that run to end") {
		t.Fatalf("exit %d: %s", r.code, r.all())
	}
	if _, err := os.Stat(filepath.Join(work, "ca.pem")); err == nil {
		t.Fatal("the refused run wrote files")
	}
}

// TestSecretsNeverShown runs every command a user would and looks for any
// piece of a private key or the encryption key in what khw prints and in the
// state file; key files must be 0600 in a 0700 workdir.
func TestSecretsNeverShown(t *testing.T) {
	work := t.TempDir()
	var seen strings.Builder
	for _, args := range [][]string{
		append([]string{"run", "recipes/hardway.star", "--workdir", work}, localTargets...),
		append([]string{"run", "-o", "json", "recipes/hardway.star", "--workdir", work, "--set", "extra_sans=x.lab"}, localTargets...),
		{"plan", "recipes/hardway.star", "--workdir", work},
		{"plan", "-o", "json", "recipes/hardway.star", "--workdir", work},
		{"run", "recipes/hardway.star", "--workdir", work}, // fails on the missing plugins
		{"destroy", "--dry-run", "recipes/hardway.star", "--workdir", work},
	} {
		r := khw(t, args...)
		seen.WriteString(r.all())
	}
	state, _ := os.ReadFile(filepath.Join(work, ".khw", "state.json"))
	seen.Write(state)
	out := seen.String()

	var secrets []string
	keys, _ := filepath.Glob(filepath.Join(work, "*-key.pem"))
	if len(keys) != 10 { // the post's 9, and flanneld's
		t.Fatalf("%d key files", len(keys))
	}
	for _, k := range keys {
		b, _ := os.ReadFile(k)
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line[:40])
			}
		}
		if st, _ := os.Stat(k); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", k, st.Mode().Perm())
		}
	}
	enc, _ := os.ReadFile(filepath.Join(work, "encryption-config.yaml"))
	m := regexp.MustCompile(`secret: (\S+)`).FindSubmatch(enc)
	if m == nil {
		t.Fatal("no key in encryption-config.yaml")
	}
	secrets = append(secrets, string(m[1]))
	for _, f := range []string{"encryption-config.yaml", "admin.kubeconfig"} {
		if st, _ := os.Stat(filepath.Join(work, f)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(work); st.Mode().Perm() != 0o700 {
		t.Errorf("workdir mode %v", st.Mode().Perm())
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatal("a piece of a secret appears in khw's output or state") // the secret itself is not printed
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Fatal("PRIVATE KEY appears in khw's output or state")
	}
}

func TestEncryptionKeyIsKeptAcrossRuns(t *testing.T) {
	work := t.TempDir()
	if r := runLocal(t, work); r.code != 0 {
		t.Fatal(r.all())
	}
	first, _ := os.ReadFile(filepath.Join(work, "encryption-config.yaml"))
	// A changed resource list rewrites the file but keeps the key.
	src, _ := os.ReadFile(filepath.Join(repoRoot, "recipes", "hardway.star"))
	dir := copyRecipes(t)
	edited := strings.Replace(string(src), `encryption.config("encryption-config")`, `encryption.config("encryption-config", resources = ["secrets", "configmaps"])`, 1)
	if err := os.WriteFile(filepath.Join(dir, "hardway.star"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r := khw(t, append([]string{"run", filepath.Join(dir, "hardway.star"), "--workdir", work}, localTargets...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "~ encryption.config.encryption-config") {
		t.Fatalf("%s", r.all())
	}
	second, _ := os.ReadFile(filepath.Join(work, "encryption-config.yaml"))
	key := regexp.MustCompile(`secret: (\S+)`)
	if string(key.Find(first)) != string(key.Find(second)) || !strings.Contains(string(second), "configmaps") {
		t.Fatal("the encryption key was not kept, or the change not applied")
	}
}

// copyRecipes copies recipes/ to a temporary directory for editing.
func copyRecipes(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "recipes")
	if out, err := exec.Command("cp", "-r", filepath.Join(repoRoot, "recipes"), dst).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	return dst
}
