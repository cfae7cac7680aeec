package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests run the real khw binary, built once, from the repository
// root, as a user would.

var (
	khwBin   string
	repoRoot string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "khw-cli-test")
	if err != nil {
		panic(err)
	}
	khwBin = filepath.Join(dir, "khw")
	if out, err := exec.Command("go", "build", "-o", khwBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building khw: %v\n%s", err, out)
		os.Exit(1)
	}
	repoRoot, _ = filepath.Abs("../..")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) all() string { return r.stdout + r.stderr }

// khw runs the binary in the repository root with no plugins reachable.
func khw(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(khwBin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH=", "XDG_DATA_HOME="+t.TempDir(), "KHW_WORKDIR=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// tool finds a program on PATH or in GOPATH/bin. When KHW_REQUIRE_TOOLS is
// set (CI sets it), a missing tool fails the test instead of skipping it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("KHW_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s is not installed (run .ci/run, or: go install github.com/cloudflare/cfssl/cmd/...@v1.6.5)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

var localTargets = []string{"--target", "pki", "--target", "kubeconfig", "--target", "encryption"}

func runLocal(t *testing.T, workdir string, extra ...string) result {
	t.Helper()
	args := append([]string{"run", "recipes/hardway.star", "--workdir", workdir}, localTargets...)
	return khw(t, append(args, extra...)...)
}

// every address the post's Part 1 declares.
var partOne = []string{
	"net.bridge.br0", "net.nat.br0", "net.sysctl.bridge-nf-call", "docker.network.br0", "ssh.key.id_ed25519",
	"net.hosts.hardway", "vm.m1", "vm.m2", "vm.n1", "vm.n2", "lb.nginx.proxy",
	"pki.ca.ca", "pki.cert.admin", "pki.cert.n1", "pki.cert.n2", "pki.cert.kube-controller-manager",
	"pki.cert.kube-proxy", "pki.cert.kube-scheduler", "pki.cert.kubernetes", "pki.cert.service-account",
	"node.copy.n1-certs", "node.copy.n2-certs", "node.copy.m1-certs", "node.copy.m2-certs",
	"kubeconfig.n1", "kubeconfig.n2", "kubeconfig.kube-proxy", "kubeconfig.kube-controller-manager",
	"kubeconfig.kube-scheduler", "kubeconfig.admin",
	"node.copy.n1-kubeconfigs", "node.copy.n2-kubeconfigs", "node.copy.m1-kubeconfigs", "node.copy.m2-kubeconfigs",
	"encryption.config.encryption-config", "node.copy.m1-encryption", "node.copy.m2-encryption",
	"pki.key.ca", "pki.key.admin", "pki.key.n1", "pki.key.n2", "pki.key.kube-controller-manager",
	"pki.key.kube-proxy", "pki.key.kube-scheduler", "pki.key.kubernetes", "pki.key.service-account",
}

// every address the post's Parts 2 and 3 add, for a sample.
var partsTwoAndThree = []string{
	"artifact.kubernetes", "artifact.etcd", "kubeconfig.admin-remote", "node.copy.m1-binaries", "node.copy.m1-etcd-certs",
	"node.service.m1-etcd", "node.service.m2-kube-apiserver", "node.service.m1-kube-controller-manager",
	"node.service.m2-kube-scheduler", "k8s.apply.kube-apiserver-to-kubelet", "pki.cert.flannel",
	"node.service.n1-containerd", "node.service.n2-kubelet", "node.service.n1-kube-proxy", "node.service.n2-flanneld",
	"k8s.apply.flannel-rbac", "k8s.apply.coredns",
}

func TestDryRunOnFreshWorkdirCreatesNothing(t *testing.T) {
	for _, args := range [][]string{{"plan"}, {"run", "--dry-run"}} {
		workdir := filepath.Join(t.TempDir(), "lab")
		r := khw(t, append(args, "recipes/hardway.star", "--workdir", workdir)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.all())
		}
		for _, addr := range append(append([]string(nil), partOne...), partsTwoAndThree...) {
			if !strings.Contains(r.stdout, "+ "+addr+" ") {
				t.Errorf("%v: the whole post's plan lacks %s", args, addr)
			}
		}
		if _, err := os.Stat(workdir); !os.IsNotExist(err) {
			t.Fatalf("%v: the dry run created %s", args, workdir)
		}
		// --set part=1: the post's Part 1, exactly.
		r = khw(t, append(args, "recipes/hardway.star", "--workdir", workdir, "--set", "part=1")...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.all())
		}
		for _, addr := range partOne {
			if !strings.Contains(r.stdout, "+ "+addr+" ") {
				t.Errorf("%v: plan lacks %s", args, addr)
			}
		}
		if !strings.Contains(r.stdout, fmt.Sprintf("Plan: %d to add, 0 to change, 0 to destroy.", len(partOne))) {
			t.Errorf("%v: summary wrong:\n%s", args, r.stdout)
		}
		if _, err := os.Stat(workdir); !os.IsNotExist(err) {
			t.Fatalf("%v: the dry run created %s", args, workdir)
		}
	}
}

func TestDetailedExitCode(t *testing.T) {
	workdir := t.TempDir()
	if r := khw(t, "plan", "--detailed-exitcode", "recipes/hardway.star", "--workdir", workdir); r.code != 2 {
		t.Fatalf("plan with changes: exit %d", r.code)
	}
	if r := runLocal(t, workdir); r.code != 0 {
		t.Fatalf("run: %s", r.all())
	}
	args := append([]string{"plan", "--detailed-exitcode", "recipes/hardway.star", "--workdir", workdir}, localTargets...)
	if r := khw(t, args...); r.code != 0 {
		t.Fatalf("plan without changes: exit %d\n%s", r.code, r.all())
	}
	if r := khw(t, "plan", "--detailed-exitcode", "recipes/nope.star"); r.code != 1 {
		t.Fatalf("plan with an error: exit %d", r.code)
	}
}

func TestMissingPluginIsNamed(t *testing.T) {
	workdir := t.TempDir()
	r := khw(t, "run", "recipes/hardway.star", "--workdir", workdir)
	if r.code != 1 {
		t.Fatalf("exit %d\n%s", r.code, r.all())
	}
	for _, want := range []string{
		`net.bridge.br0 (declared at recipes/lib/lab.star:`, `called from recipes/hardway.star:`, `plugin "hostnet" is not installed`, "khw-plugin-hostnet",
		"\n  hint: install the plugin", "run again to finish",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "not created (an earlier step failed)") {
		t.Errorf("steps not started are not reported as skipped:\n%s", r.stdout)
	}
	// What finished is recorded; the run that needs no plugin finishes the job.
	if r := runLocal(t, workdir); r.code != 0 {
		t.Fatalf("re-run: %s", r.all())
	}
	args := append([]string{"plan", "--detailed-exitcode", "recipes/hardway.star", "--workdir", workdir}, localTargets...)
	if r := khw(t, args...); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
}

func TestVersionAndPlugins(t *testing.T) {
	if r := khw(t, "version"); r.code != 0 || !strings.Contains(r.stdout, "provider protocol 2") {
		t.Fatalf("%+v", r)
	}
	r := khw(t, "plugins")
	if r.code != 0 || !strings.Contains(r.stdout, "pki.cert") || !strings.Contains(r.stdout, "searched:") {
		t.Fatalf("%+v", r)
	}
	r = khw(t, "run", "--help")
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--dry-run") {
		t.Fatalf("help: %s", r.stdout)
	}
	if r := khw(t, "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "__start_khw") {
		t.Fatalf("completion: %d", r.code)
	}
}
