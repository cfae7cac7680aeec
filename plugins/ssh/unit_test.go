package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/sdk"
)

// These tests need neither root nor a network.

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRemoteDir(t *testing.T) {
	for dest, want := range map[string]string{
		"~": "/home/veeru", "~/": "/home/veeru", "~/certs": "/home/veeru/certs", "~/a/../b": "/home/veeru/b",
		"certs": "/home/veeru/certs", "/etc/kubernetes/": "/etc/kubernetes",
	} {
		if got := remoteDir(dest, "/home/veeru"); got != want {
			t.Errorf("remoteDir(%q) = %q, want %q", dest, got, want)
		}
	}
	// The shell's words for a dest and a file in it name the same place
	// once the node's shell expands $HOME.
	for _, dest := range []string{"~", "~/", "~/certs", "~/a/../b", "certs", "/etc/kubernetes/", "/"} {
		want := remoteDir(dest, "/home/veeru")
		dir, err := exec.Command("sh", "-c", "HOME=/home/veeru; printf %s "+shellDir(dest)).Output()
		if err != nil || string(dir) != want {
			t.Errorf("shellDir(%q) expands to %q (%v), want %q", dest, dir, err, want)
		}
		f := fileIn(dest, "ca.pem", "")
		file, err := exec.Command("sh", "-c", "HOME=/home/veeru; printf %s "+f.word()).Output()
		if err != nil || string(file) != path.Join(want, "ca.pem") {
			t.Errorf("fileIn(%q) expands to %q (%v), want %q", dest, file, err, path.Join(want, "ca.pem"))
		}
	}
}

func TestDigest(t *testing.T) {
	a := digest(map[string]string{"ca.pem": "11", "ca-key.pem": "22"})
	if b := digest(map[string]string{"ca-key.pem": "22", "ca.pem": "11"}); a != b {
		t.Error("digest depends on map order")
	}
	if b := digest(map[string]string{"ca.pem": "11", "ca-key.pem": "23"}); a == b {
		t.Error("digest does not change with content")
	}
}

func TestDecodeCopy(t *testing.T) {
	dec := func(cfg map[string]any) (*copyConfig, []copyFile, error) {
		r := resource("node.copy", "x", cfg)
		return decodeCopy(&r, "/work")
	}
	base := func() map[string]any {
		return map[string]any{"node": "m1", "host": "10.200.1.10", "user": "veeru", "identity": "id_ed25519",
			"files": []any{map[string]any{"path": "pki/ca.pem", "mode": "0644"}, map[string]any{"path": "ca-key.pem", "mode": "0600"}}}
	}
	c, files, err := dec(base())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 22 || c.TimeoutS != 300 || c.Dest != "~" || c.addr() != "10.200.1.10:22" {
		t.Errorf("defaults: %+v", c)
	}
	if f := files[0]; f.name != "ca.pem" || f.local != "/work/pki/ca.pem" || f.mode != 0o644 || f.content != nil || files[1].mode != 0o600 {
		t.Errorf("files: %+v", files)
	}
	for what, change := range map[string]func(map[string]any){
		"node is empty":     func(m map[string]any) { delete(m, "node") },
		"user is empty":     func(m map[string]any) { m["user"] = "" },
		"identity is empty": func(m map[string]any) { delete(m, "identity") },
		"timeout_s 5000":    func(m map[string]any) { m["timeout_s"] = 5000 },
		"port 70000":        func(m map[string]any) { m["port"] = 70000 },
		"files is empty":    func(m map[string]any) { m["files"] = []any{} },
		"lists ca.pem twice": func(m map[string]any) {
			m["files"] = []any{map[string]any{"path": "a/ca.pem"}, map[string]any{"path": "b/ca.pem"}}
		},
		`mode "rw"`:              func(m map[string]any) { m["files"] = []any{map[string]any{"path": "ca.pem", "mode": "rw"}} },
		"bad configuration":      func(m map[string]any) { m["port"] = "twenty-two" },
		"is not a directory":     func(m map[string]any) { m["dest"] = "a\nb" },
		"host \"a b\" is not an": func(m map[string]any) { m["host"] = "a b" },
	} {
		m := base()
		change(m)
		if _, _, err := dec(m); err == nil || !strings.Contains(err.Error(), what) || !strings.Contains(err.Error(), "node.copy.x") {
			t.Errorf("%s: err = %v", what, err)
		}
	}
}

func TestDecodeRun(t *testing.T) {
	r := resource("node.run", "x", map[string]any{"node": "m1", "host": "10.200.1.10", "user": "u", "identity": "k", "command": "  "})
	if _, err := decodeRun(&r); err == nil || !strings.Contains(err.Error(), "command is empty") {
		t.Errorf("err = %v", err)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	out, errw := tl.stream(0), tl.stream(1)
	fmt.Fprint(errw, "warning: early\nfatal: the reason\n")
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(out, "line %d\r\n", i)
	}
	fmt.Fprint(out, "no newline at the end")
	got := tl.String()
	lines := strings.Split(got, "\n")
	want := []string{"last 40 lines of its output:", "line 4962", "line 5000", "no newline at the end",
		"and the last lines of its stderr, which arrived earlier:", "warning: early", "fatal: the reason"}
	if len(lines) != 44 || lines[0] != want[0] || lines[1] != want[1] || lines[39] != want[2] || lines[40] != want[3] ||
		lines[41] != want[4] || lines[42] != want[5] || lines[43] != want[6] {
		t.Errorf("tail:\n%s", got)
	}
	if len(tl.all) > tailLines {
		t.Errorf("tail keeps %d lines", len(tl.all))
	}

	// stderr inside the window is not repeated; a long line is cut.
	var t2 tail
	fmt.Fprint(t2.stream(0), "a\n")
	fmt.Fprint(t2.stream(1), "b\n"+strings.Repeat("x", 3*maxLineBytes))
	if got := t2.String(); got != "last 3 lines of its output:\na\nb\n"+strings.Repeat("x", maxLineBytes) {
		t.Errorf("tail: %q", got)
	}
	var t3 tail
	if t3.String() != "" {
		t.Error("no output is not empty")
	}
}

func TestSignerErrors(t *testing.T) {
	dir := t.TempDir()
	tg := &target{Node: "m1", Identity: "id"}
	if _, err := signer(tg, dir); err == nil || !strings.Contains(err.Error(), "reading identity") {
		t.Errorf("missing identity: %v", err)
	}
	secret := "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END OPENSSH PRIVATE KEY-----\n"
	os.WriteFile(filepath.Join(dir, "id"), []byte(secret), 0o600)
	_, err := signer(tg, dir)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("a broken key: %v", err)
	}
}

func TestKnownHostsTrustOnFirstUse(t *testing.T) {
	dir := t.TempDir()
	tg := &target{Node: "m1", Host: "10.200.1.10", Port: 22}
	v, err := newVerifier(tg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := newKey(t), newKey(t)
	remote := &net.TCPAddr{IP: net.ParseIP("10.200.1.10"), Port: 22}
	if err := v.check(remote, k1); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	kh := filepath.Join(dir, "known_hosts")
	b, _ := os.ReadFile(kh)
	if want := "10.200.1.10 " + authorizedKey(k1) + "\n"; string(b) != want {
		t.Errorf("known_hosts = %q, want %q", b, want)
	}
	if st, _ := os.Stat(kh); st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v", st.Mode())
	}
	if err := v.check(remote, k1); err != nil {
		t.Errorf("second contact: %v", err)
	}
	err = v.check(remote, k2)
	var hk *hostKeyError
	if !errors.As(err, &hk) {
		t.Fatalf("changed key: %v", err)
	}
	for _, want := range []string{"node m1 (10.200.1.10:22)", kh, "remove line 1", "rebuilt", ssh.FingerprintSHA256(k2), ssh.FingerprintSHA256(k1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
	if algos := v.algorithms(); algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms %v", algos)
	}

	// Another port is another host, written as OpenSSH does.
	v2, _ := newVerifier(&target{Node: "m2", Host: "10.200.1.10", Port: 2222}, dir, nil)
	if err := v2.check(nil, k2); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(kh)
	if !strings.Contains(string(b), "\n[10.200.1.10]:2222 "+authorizedKey(k2)+"\n") {
		t.Errorf("known_hosts = %q", b)
	}
}

func TestKnownHostsConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([]ssh.PublicKey, 40)
	for i := range keys {
		keys[i] = newKey(t)
	}
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _ := newVerifier(&target{Node: fmt.Sprint("n", i), Host: fmt.Sprintf("10.200.2.%d", i), Port: 22}, dir, nil)
			// Twice: the second must find the first.
			for j := 0; j < 2; j++ {
				if err := v.check(nil, keys[i]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if n := strings.Count(string(b), "\n"); n != len(keys) {
		t.Errorf("%d lines, want %d:\n%s", n, len(keys), b)
	}
}

func TestPinnedKey(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(t), newKey(t)
	tg := &target{Node: "m1", Host: "10.200.1.10", Port: 22}
	deps := map[string]json.RawMessage{
		"vm.m1":              sdk.Outputs(map[string]any{"host_key": authorizedKey(k1)}),
		"node.copy.m2-certs": sdk.Outputs(map[string]any{"host_key": authorizedKey(k2)}),
		"pki.cert.ca":        sdk.Outputs(map[string]any{"path": "ca.pem"}),
	}
	v, err := newVerifier(tg, dir, deps)
	if err != nil {
		t.Fatal(err)
	}
	if v.pinned == nil || !sameKey(v.pinned, k1) || v.pinnedFrom != "vm.m1" {
		t.Fatalf("pinned %v from %q", v.pinned, v.pinnedFrom)
	}
	if err := v.check(nil, k2); err == nil || !strings.Contains(err.Error(), "vm.m1 reports") {
		t.Errorf("other key: %v", err)
	}
	if err := v.check(nil, k1); err != nil {
		t.Errorf("pinned key: %v", err)
	}
	// The pinned key is recorded for Read and Delete, which see no deps.
	v2, _ := newVerifier(tg, dir, nil)
	if err := v2.check(nil, k1); err != nil {
		t.Errorf("after pinning: %v", err)
	}

	// A VM provider may report the address as "ip" under another name.
	v3, err := newVerifier(tg, dir, map[string]json.RawMessage{"vm.controller-1": sdk.Outputs(map[string]any{"ip": "10.200.1.10", "host_key": authorizedKey(k2)})})
	if err != nil || v3.pinned == nil || !sameKey(v3.pinned, k2) {
		t.Errorf("pinned by ip: %v %v", v3.pinned, err)
	}
	if _, err := newVerifier(tg, dir, map[string]json.RawMessage{"vm.m1": sdk.Outputs(map[string]any{"host_key": "not a key"})}); err == nil {
		t.Error("a bad host_key was accepted")
	}
	if _, err := newVerifier(tg, dir, map[string]json.RawMessage{
		"vm.m1":        sdk.Outputs(map[string]any{"host_key": authorizedKey(k1)}),
		"node.host.m1": sdk.Outputs(map[string]any{"host_key": authorizedKey(k2)}),
	}); err == nil || !strings.Contains(err.Error(), "different host keys") {
		t.Errorf("conflicting host keys: %v", err)
	}
}

// What a node that did not answer says about the next step, by the last
// attempt's failure.
func TestUnreachableHint(t *testing.T) {
	tg := &target{Node: "n1", Host: "10.200.1.13", Port: 22, User: "veeru", Identity: "id_ed25519"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for last, want := range map[error][]string{
		refused: {"something holds 10.200.1.13 but nothing listens on port 22", "try: ssh -i /w/id_ed25519 veeru@10.200.1.13"},
		errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey]"): {
			"n1 does not accept khw's key for veeru", "authorize /w/id_ed25519.pub"},
		errors.New("dial tcp 10.200.1.13:22: i/o timeout"): {"is n1 up", "ssh_timeout"},
	} {
		h := unreachableHint(&unreachableError{node: "n1", addr: tg.addr(), last: last}, tg, "/w")
		for _, w := range want {
			if !strings.Contains(h, w) {
				t.Errorf("%v: hint %q lacks %q", last, h, w)
			}
		}
	}
}

// TestServiceProbe reads a service back from what its node said: the
// recorded stats go with the files, a file not hashed again is taken as
// recorded, and a changed file, a missing unit or a stopped service is
// each told apart.
func TestServiceProbe(t *testing.T) {
	unitFile := unitPath("kubelet")
	r := resource("node.service", "n1-kubelet", map[string]any{"node": "n1", "host": "10.200.1.13", "user": "veeru", "identity": "id_ed25519",
		"service": "kubelet", "unit": "[Unit]\n", "files": map[string]any{"/etc/x.conf": "x"}})
	prior, _ := json.Marshal(serviceOutputs{Files: map[string]string{unitFile: "aaa", "/etc/x.conf": "bbb"}, Stats: map[string]string{unitFile: "1 2 3 4"}})
	pr, resp, err := serviceHandler{}.probe(&sdk.ReadRequest{Resource: r, PriorOutputs: prior})
	if err != nil || resp != nil || pr == nil {
		t.Fatalf("probe: %v, %v, %v", pr, resp, err)
	}
	if len(pr.files) != 2 || pr.files[0].path != unitFile || pr.files[0].known != "1 2 3 4" || pr.files[1].path != "/etc/x.conf" || pr.files[1].known != "" || !pr.root {
		t.Fatalf("probe asks for %+v", pr.files)
	}
	for what, c := range map[string]struct {
		conf, unit *remoteFile
		state      string
		exists     bool
		drift      string
	}{
		"as recorded": {&remoteFile{sha: "bbb"}, &remoteFile{stat: "1 2 3 4"}, "active", true, ""},
		"unit edited": {&remoteFile{sha: "bbb"}, &remoteFile{sha: "?"}, "active", true, unitFile + " changed on n1"},
		"conf edited": {&remoteFile{sha: "ccc"}, &remoteFile{}, "active", true, "/etc/x.conf changed on n1"},
		"conf gone":   {nil, &remoteFile{}, "active", true, "/etc/x.conf changed on n1"},
		"unit gone":   {&remoteFile{sha: "bbb"}, nil, "inactive", false, ""},
		"stopped":     {&remoteFile{sha: "bbb"}, &remoteFile{}, "failed", true, "kubelet is not running on n1 (failed)"},
	} {
		got, err := pr.parse(&reading{files: []*remoteFile{c.unit, c.conf}, units: map[string]string{"kubelet": c.state}})
		if err != nil || got.Exists != c.exists || got.Drift != c.drift {
			t.Errorf("%s: %+v, %v; want exists %v, drift %q", what, got, err, c.exists, c.drift)
		}
	}
	if _, err := pr.parse(&reading{files: make([]*remoteFile, 2), units: map[string]string{}}); err == nil {
		t.Error("no unit state was accepted")
	}
}

// TestServiceOutputsIn: an apply of a service hands place, per directory,
// the files it recorded there with their stats, so that only a file whose
// stat changed is hashed again; a file without a recorded stat (an older
// state) is not passed, and is hashed.
func TestServiceOutputsIn(t *testing.T) {
	unitFile := unitPath("kubelet")
	o := serviceOutputs{
		Files: map[string]string{unitFile: "aaa", "/etc/x.conf": "bbb", "/etc/y.conf": "ccc"},
		Stats: map[string]string{unitFile: "1 2 3 4", "/etc/x.conf": "5 6 7 8"},
	}
	got := o.in("/etc", []string{"x.conf", "y.conf", "z.conf"})
	if len(got.Files) != 1 || got.Files["x.conf"] != "bbb" || len(got.Stats) != 1 || got.Stats["x.conf"] != "5 6 7 8" {
		t.Errorf("in /etc: %+v", got)
	}
	got = o.in("/etc/systemd/system", []string{"kubelet.service"})
	if got.Files["kubelet.service"] != "aaa" || got.Stats["kubelet.service"] != "1 2 3 4" {
		t.Errorf("in the unit's directory: %+v", got)
	}
	if got := (serviceOutputs{}).in("/etc", []string{"x.conf"}); len(got.Files)+len(got.Stats) != 0 {
		t.Errorf("from nothing recorded: %+v", got)
	}
}
