package k8s_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
	khw "github.com/khw-dev/khw/runtime"
)

// prelude declares a CA, the admin certificate and its kubeconfig: what a
// k8s.apply needs to refer to.
const prelude = `
ca = pki.ca("ca", csr = {"CN": "Kubernetes", "key": {"algo": "rsa", "size": 2048}})
config = {"signing": {"default": {"expiry": "8760h", "usages": ["client auth"]}}}
admin = pki.cert("admin", ca = ca, csr = {"CN": "admin", "names": [{"O": "system:masters"}]}, config = config)
kc = kubeconfig.write("admin", server = "https://10.200.1.15:6443", ca = ca, cert = admin, user = "admin")
`

// rbac is the post's RBAC manifest, with comments and empty documents.
var rbac = func() string {
	b, err := os.ReadFile("testdata/rbac.yaml")
	if err != nil {
		panic(err)
	}
	return string(b) + "---\n# the end\n"
}()

// recipe is a recipe root whose test.star is src.
func recipe(t *testing.T, src string) *startest.Fixture {
	f := startest.NewFixture(t, all.Registry())
	f.File("test.star", src)
	return f
}

func mustEval(t *testing.T, src string) *khw.Recipe {
	t.Helper()
	return recipe(t, src).MustEval("test.star", nil)
}

func TestApplyYAML(t *testing.T) {
	rec := mustEval(t, prelude+"RBAC = '''"+rbac+"'''\nk8s.apply('rbac', RBAC, kc)\n")
	r := rec.Resource("k8s.apply.rbac")
	if r == nil {
		t.Fatal("k8s.apply.rbac not declared")
	}
	if r.Provider != "kubernetes" {
		t.Errorf("provider %q", r.Provider)
	}
	if r.Inputs["kubeconfig"] != "admin.kubeconfig" {
		t.Errorf("kubeconfig = %v", r.Inputs["kubeconfig"])
	}
	objs := r.Inputs["objects"].([]any)
	if len(objs) != 2 {
		t.Fatalf("%d objects, want 2 (the empty documents are skipped)", len(objs))
	}
	o := objs[1].(map[string]any)
	if o["kind"] != "ClusterRoleBinding" || o["subjects"].([]any)[0].(map[string]any)["name"] != "kubernetes" {
		t.Errorf("second object = %v", o)
	}
	if r.Settings["wait"] != true || r.Settings["timeout_s"] != 300 {
		t.Errorf("settings = %v", r.Settings)
	}
	if strings.Join(r.Deps, " ") != "kubeconfig.admin" {
		t.Errorf("deps = %v", r.Deps)
	}
	want := "ClusterRole/system:kube-apiserver-to-kubelet, ClusterRoleBinding/system:kube-apiserver"
	if r.Show[0].Value != want || r.Show[1].Value != "https://10.200.1.15:6443" {
		t.Errorf("show = %v", r.Show)
	}
}

// The same objects as YAML and as Starlark data are the same inputs, byte
// for byte: the plan does not depend on how the recipe spells them.
func TestYAMLAndStarlarkDataAreTheSameInputs(t *testing.T) {
	y := mustEval(t, prelude+"k8s.apply('a', '''"+rbac+"''', kc)\n").Resource("k8s.apply.a")
	d := mustEval(t, prelude+`
k8s.apply("a", [
    {"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
     "metadata": {"name": "system:kube-apiserver-to-kubelet",
                  "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                  "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
     "rules": [{"verbs": ["*"], "apiGroups": [""],
                "resources": ["nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "system:kube-apiserver", "namespace": ""},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kube-apiserver-to-kubelet"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubernetes"}]},
], kc)
`).Resource("k8s.apply.a")
	yj, _ := json.Marshal(y.Inputs)
	dj, _ := json.Marshal(d.Inputs)
	if string(yj) != string(dj) {
		t.Fatalf("inputs differ:\nyaml:     %s\nstarlark: %s", yj, dj)
	}
	if y.Hash() != d.Hash() {
		t.Fatal("hashes differ")
	}
	// And evaluating again gives the same hash.
	again := mustEval(t, prelude+"k8s.apply('a', '''"+rbac+"''', kc)\n").Resource("k8s.apply.a")
	if again.Hash() != y.Hash() {
		t.Fatal("two evaluations give two hashes")
	}
}

func TestAfterAndSettings(t *testing.T) {
	rec := mustEval(t, prelude+`
ns = k8s.apply("ns", "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-flannel}\n", kc)
k8s.apply("flannel", [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "flannel", "namespace": "kube-flannel"}}],
    kubeconfig = kc.file, after = [ns, admin], wait = False, timeout = 20)
`)
	r := rec.Resource("k8s.apply.flannel")
	// The kubeconfig is what it applies with: a new one re-applies. after
	// only orders: a restarted API server does not.
	if got := strings.Join(r.Deps, " "); got != "kubeconfig.admin" {
		t.Errorf("deps = %s", got)
	}
	if got := strings.Join(r.After, " "); got != "k8s.apply.ns pki.cert.admin" {
		t.Errorf("after = %s", got)
	}
	if r.Settings["wait"] != false || r.Settings["timeout_s"] != 20 {
		t.Errorf("settings = %v", r.Settings)
	}
	if len(r.Show) != 1 || r.Show[0].Value != "ServiceAccount/kube-flannel/flannel" {
		t.Errorf("show = %v (a file names no server)", r.Show)
	}
	// A setting is not part of the identity.
	other := mustEval(t, prelude+`
ns = k8s.apply("ns", "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-flannel}\n", kc)
k8s.apply("flannel", [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "flannel", "namespace": "kube-flannel"}}],
    kubeconfig = kc.file, after = [ns, admin])
`).Resource("k8s.apply.flannel")
	if other.Hash() != r.Hash() {
		t.Error("changing wait and timeout changes the resource's hash")
	}
}

func TestListIsFlattened(t *testing.T) {
	r := mustEval(t, prelude+`k8s.apply("l", """
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: Namespace, metadata: {name: b}}
""", kc)
`).Resource("k8s.apply.l")
	if n := len(r.Inputs["objects"].([]any)); n != 2 {
		t.Fatalf("%d objects, want 2", n)
	}
}

func TestBadManifests(t *testing.T) {
	for _, tc := range []struct{ name, call, want string }{
		{"no name", `k8s.apply("x", """
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {labels: {a: b}}
""", kc)`, "test.star:6:10: k8s.apply: manifest object 3 (ClusterRoleBinding) has no metadata.name"},
		{"no metadata", `k8s.apply("x", [{"apiVersion": "v1", "kind": "Namespace"}], kc)`, "manifest object 1 (Namespace) has no metadata.name"},
		{"no kind", `k8s.apply("x", "apiVersion: v1\nmetadata: {name: a}\n", kc)`, "manifest object 1 has no kind"},
		{"no apiVersion", `k8s.apply("x", "kind: Pod\nmetadata: {name: a}\n", kc)`, "manifest object 1 (Pod) has no apiVersion"},
		{"duplicate", `k8s.apply("x", [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "namespace": "kube-system"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "namespace": "default"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "namespace": "kube-system"}},
], kc)`, "manifest objects 1 and 3 are both ServiceAccount kube-system/a"},
		{"bad yaml", `k8s.apply("x", "kind: Namespace\nmetadata: {name: a}\n---\nkind: [\n", kc)`, "manifest: document 2 is not valid YAML"},
		{"scalar", `k8s.apply("x", "just words\n", kc)`, "manifest object 1 is a string, not a mapping"},
		{"empty", `k8s.apply("x", "# nothing\n---\n", kc)`, "manifest has no objects"},
		{"not a dict", `k8s.apply("x", ["kind: Namespace"], kc)`, "manifest object 1 must be a dict, not string"},
		{"not data", `k8s.apply("x", [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"ca": ca}}], kc)`, "manifest object 1: \"data\": \"ca\": a pki.ca cannot be used here"},
		{"secret", `k8s.apply("x", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {token: hunter2}\n", kc)`, "manifest object 1 (Secret) named s holds data"},
		{"manifest type", `k8s.apply("x", 3, kc)`, "manifest must be a YAML string or a list of dicts, not int"},
		{"kubeconfig type", `k8s.apply("x", "kind: Namespace\n", ca)`, "kubeconfig must be a kubeconfig (kubeconfig.write's handle) or a file, not pki.ca"},
		{"timeout", `k8s.apply("x", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", kc, timeout = 0)`, "timeout 0 must be from 1 to 3600 seconds"},
		{"after undeclared", `k8s.apply("x", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", kc, after = ["pki.ca.ca"])`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := recipe(t, prelude+tc.call+"\n").Eval("test.star", nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a string in after refers to nothing and is fine: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}
