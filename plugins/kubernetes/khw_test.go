package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
)

// recipe is a recipe that makes a CA, the admin's certificate and
// kubeconfig, and applies the post's RBAC with them.
const recipe = `
server = param("server", "https://127.0.0.1:6443", doc = "the API server")
ca = pki.ca("ca", csr = {"CN": "Kubernetes", "key": {"algo": "ecdsa", "size": 256}})
config = {"signing": {"default": {"expiry": "24h", "usages": ["signing", "key encipherment", "client auth"]}}}
admin = pki.cert("admin", ca = ca, csr = {"CN": "admin", "key": {"algo": "ecdsa", "size": 256}, "names": [{"O": "system:masters"}]}, config = config)
kc = kubeconfig.write("admin", server = server, ca = ca, cert = admin, user = "admin")
k8s.apply("rbac", manifest = RBAC, kubeconfig = kc, timeout = 30)
`

// TestKhwAppliesTheRecipesRBAC runs the khw binary on a recipe: its PKI
// first, then an API server that trusts that CA, then the whole recipe,
// a plan that finds nothing to do, an edit found as drift and repaired,
// and khw destroy.
func TestKhwAppliesTheRecipesRBAC(t *testing.T) {
	bin := labtest.Binaries(t)
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	src := "RBAC = '''" + readRBAC(t) + "'''\n" + recipe
	if err := os.MkdirAll(filepath.Join(dir, "recipes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recipes", "rbac.star"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var server string
	khw := func(wantCode int, args ...string) string {
		t.Helper()
		args = append(args, "recipes/rbac.star", "--workdir", work)
		if server != "" {
			args = append(args, "--set", "server="+server)
		}
		cmd := exec.Command(filepath.Join(bin, "khw"), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("khw %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		return string(out)
	}

	khw(0, "run", "--target", "pki")
	caPEM, err1 := os.ReadFile(filepath.Join(work, "ca.pem"))
	keyPEM, err2 := os.ReadFile(filepath.Join(work, "ca-key.pem"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	a := labtest.StartAPIServerWithCA(t, caPEM, keyPEM)
	server = a.URL

	plan := khw(2, "plan", "--detailed-exitcode")
	for _, want := range []string{"+ k8s.apply.rbac", "objects = ClusterRole/system:kube-apiserver-to-kubelet, ClusterRoleBinding/system:kube-apiserver",
		"server  = " + a.URL} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q:\n%s", want, plan)
		}
	}
	out := khw(0, "run")
	if !strings.Contains(out, "k8s.apply.rbac") {
		t.Errorf("khw run:\n%s", out)
	}
	canI(t, a, "kubernetes", "get", "yes")
	if out := khw(0, "plan", "--detailed-exitcode"); !strings.Contains(out, "No changes.") {
		t.Fatalf("plan after run:\n%s", out)
	}

	a.MustKubectl("patch", "clusterrole", "system:kube-apiserver-to-kubelet", "--type=json",
		`-p=[{"op":"replace","path":"/rules/0/verbs","value":["get"]}]`)
	plan = khw(2, "plan", "--detailed-exitcode")
	if !strings.Contains(plan, "~ k8s.apply.rbac") || !strings.Contains(plan, "drift: ClusterRole system:kube-apiserver-to-kubelet was changed: rules") {
		t.Fatalf("plan after an edit:\n%s", plan)
	}
	t.Logf("plan after an edit:\n%s", plan)
	khw(0, "run")
	canI(t, a, "kubernetes", "create", "yes")

	out = khw(0, "destroy")
	if o, err := a.Kubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet"); err == nil || !strings.Contains(o, "NotFound") {
		t.Fatalf("khw destroy left the ClusterRole:\n%s\n%s", out, o)
	}
	for _, s := range []string{"PRIVATE KEY", "client-key-data"} {
		if strings.Contains(out+plan, s) {
			t.Fatalf("khw's output shows %s", s)
		}
	}
}
