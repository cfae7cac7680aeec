package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khw-dev/khw/builtins/k8s"
	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime/pluginhost"
)

// rbacFile is the post's RBAC for the API server's requests to kubelets.
const rbacFile = "../../builtins/k8s/testdata/rbac.yaml"

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "khw/none:local"}]
`

// objects parses a manifest as builtins/k8s does at evaluation.
func objects(t *testing.T, manifest string) []any {
	t.Helper()
	docs, err := k8s.ParseYAML(manifest)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := k8s.Objects(docs)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]any, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

func resource(t *testing.T, name, kubeconfig, manifest string, timeout int) sdk.Resource {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"kubeconfig": kubeconfig, "objects": objects(t, manifest), "wait": true, "timeout_s": timeout})
	return sdk.Resource{Type: "k8s.apply", Name: name, Address: "k8s.apply." + name, Config: cfg}
}

// plugin builds khw-plugin-kubernetes and launches it through khw's plugin
// host, as khw does.
func plugin(t *testing.T) sdk.Provider {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pluginhost.BinaryPrefix+"kubernetes"), ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	h := pluginhost.New(sdk.NewMux("khw", "test"))
	h.SearchPath = []string{dir}
	t.Cleanup(h.Close)
	p, err := h.Provider(context.Background(), "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type run struct {
	t        *testing.T
	p        sdk.Provider
	workdir  string
	progress []string
}

func (r *run) apply(res sdk.Resource, prior json.RawMessage) (*sdk.ApplyResponse, error) {
	r.progress = nil
	var mu sync.Mutex
	return r.p.Apply(context.Background(), &sdk.ApplyRequest{Resource: res, PriorOutputs: prior, Workdir: r.workdir},
		func(m string) { mu.Lock(); r.progress = append(r.progress, m); mu.Unlock() })
}

func (r *run) mustApply(res sdk.Resource, prior json.RawMessage) *sdk.ApplyResponse {
	r.t.Helper()
	resp, err := r.apply(res, prior)
	if err != nil {
		r.t.Fatalf("apply: %v\n  hint: %s", err, sdk.HintOf(err))
	}
	return resp
}

// read reads res back twice: with Read, and in a ReadMany batch of two
// (one shared connection to the API server); all three answers must agree.
func (r *run) read(res sdk.Resource, prior json.RawMessage) *sdk.ReadResponse {
	r.t.Helper()
	req := &sdk.ReadRequest{Resource: res, PriorOutputs: prior, Workdir: r.workdir}
	resp, err := r.p.Read(context.Background(), req)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	many, err := sdk.ReadAll(context.Background(), r.p, []*sdk.ReadRequest{req, req})
	if err != nil {
		r.t.Fatalf("read many: %v", err)
	}
	for i, m := range many {
		if m.Err != nil {
			r.t.Fatalf("read many, %d: %v", i, m.Err)
		}
		if m.Response.Exists != resp.Exists || m.Response.Drift != resp.Drift {
			r.t.Fatalf("ReadMany's answer %d (exists %v, drift %q) is not Read's (exists %v, drift %q)", i, m.Response.Exists, m.Response.Drift, resp.Exists, resp.Drift)
		}
	}
	return resp
}

func refs(t *testing.T, b json.RawMessage) []ref {
	t.Helper()
	o, err := decodeOutputs(b)
	if err != nil {
		t.Fatal(err)
	}
	return o.Objects
}

// noSecret fails when an error or its hint shows key material.
func noSecret(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{err.Error(), sdk.HintOf(err)} {
		if strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, "client-key-data") || strings.Contains(s, "LS0t") {
			t.Fatalf("the error shows key material: %s", s)
		}
	}
}

// canI asks kubectl auth can-i whether user may verb nodes/proxy, until it
// answers want: the API server's RBAC authorizer follows changes within a
// moment.
func canI(t *testing.T, a *labtest.APIServer, user, verb, want string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ = a.Kubectl("auth", "can-i", "--as", user, verb, "nodes", "--subresource", "proxy")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); lines[len(lines)-1] == want {
			return
		}
	}
	t.Fatalf("kubectl auth can-i --as %s %s nodes --subresource proxy: %s, want %s", user, verb, out, want)
}

// setup starts an API server and the plugin, with the admin kubeconfig
// in the workdir as admin.kubeconfig; it returns the kubeconfig's text too.
func setup(t *testing.T) (*labtest.APIServer, *run, string) {
	t.Helper()
	a := labtest.StartAPIServer(t)
	r := &run{t: t, p: plugin(t), workdir: t.TempDir()}
	kc, err := os.ReadFile(a.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.workdir, "admin.kubeconfig"), kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return a, r, string(kc)
}

func readRBAC(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestThePostsRBAC applies the post's RBAC to a real kube-apiserver through
// the plugin binary, and follows it through re-apply, drift, repair, an
// object deleted by hand, one removed from the manifest, and Delete.
func TestThePostsRBAC(t *testing.T) {
	a, r, _ := setup(t)
	p := r.p
	rbac := readRBAC(t)
	res := resource(t, "rbac", "admin.kubeconfig", rbac, 30)

	start := time.Now()
	first := r.mustApply(res, nil)
	t.Logf("applied in %s: %v", time.Since(start), r.progress)
	got := refs(t, first.Outputs)
	if len(got) != 2 || got[0].String() != "ClusterRole system:kube-apiserver-to-kubelet" || got[0].Resource != "clusterroles" ||
		got[0].Group != "rbac.authorization.k8s.io" || got[0].UID == "" || got[1].Kind != "ClusterRoleBinding" || got[1].Namespace != "" {
		t.Fatalf("outputs = %+v", got)
	}
	if !strings.Contains(strings.Join(r.progress, "\n"), "applied ClusterRoleBinding system:kube-apiserver") {
		t.Errorf("progress = %q", r.progress)
	}

	// The API says what the post wants: kubernetes may reach the kubelets.
	canI(t, a, "kubernetes", "get", "yes")
	canI(t, a, "somebody", "get", "no")
	mf := a.MustKubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet", "-o", "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}")
	if mf != "khw/Apply" {
		t.Errorf("managed by %s, want khw/Apply", mf)
	}
	rvs := func() string {
		return a.MustKubectl("get", "clusterrole/system:kube-apiserver-to-kubelet", "clusterrolebinding/system:kube-apiserver",
			"-o", "jsonpath={.items[*].metadata.resourceVersion}")
	}
	before := rvs()

	// Applying again changes nothing, not even a resourceVersion.
	again := r.mustApply(res, first.Outputs)
	if after := rvs(); after != before {
		t.Errorf("re-apply changed resourceVersions %s -> %s", before, after)
	}
	if again.Digest != first.Digest || again.Digest == "" {
		t.Errorf("digest %q then %q", first.Digest, again.Digest)
	}
	// An object whose resourceVersion is the one recorded is not checked
	// with a dry run: r.read reads three times (Read, and ReadMany twice).
	dry := dryRuns(t, a)
	if rr := r.read(res, again.Outputs); !rr.Exists || rr.Drift != "" {
		t.Fatalf("read after apply: exists %v, drift %q", rr.Exists, rr.Drift)
	}
	if n := dryRuns(t, a) - dry; n != 0 {
		t.Errorf("reading objects nobody wrote to made %d dry runs, want 0", n)
	}
	// A state recorded without resourceVersions is checked object by object.
	dry = dryRuns(t, a)
	if rr := r.read(res, withoutVersions(t, again.Outputs)); !rr.Exists || rr.Drift != "" {
		t.Fatalf("read without resourceVersions: exists %v, drift %q", rr.Exists, rr.Drift)
	}
	if n := dryRuns(t, a) - dry; n != 6 {
		t.Errorf("reading 2 objects without recorded resourceVersions 3 times made %d dry runs, want 6", n)
	}

	// Edited by hand: drift, named; apply repairs it.
	a.MustKubectl("patch", "clusterrole", "system:kube-apiserver-to-kubelet", "--type=json",
		`-p=[{"op":"replace","path":"/rules/0/verbs","value":["get"]}]`)
	dry = dryRuns(t, a)
	if rr := r.read(res, again.Outputs); !rr.Exists || rr.Drift != "ClusterRole system:kube-apiserver-to-kubelet was changed: rules" {
		t.Fatalf("read after an edit: exists %v, drift %q", rr.Exists, rr.Drift)
	}
	if n := dryRuns(t, a) - dry; n != 3 {
		t.Errorf("reading with one object edited 3 times made %d dry runs, want 3 (the edited one's)", n)
	}
	canI(t, a, "kubernetes", "create", "no")
	repaired := r.mustApply(res, again.Outputs)
	if rr := r.read(res, repaired.Outputs); rr.Drift != "" {
		t.Fatalf("drift after repair: %q", rr.Drift)
	}
	canI(t, a, "kubernetes", "create", "yes")
	a.MustKubectl("label", "clusterrole", "system:kube-apiserver-to-kubelet", "kubernetes.io/bootstrapping-")
	if rr := r.read(res, repaired.Outputs); rr.Drift != "ClusterRole system:kube-apiserver-to-kubelet was changed: metadata.labels" {
		t.Fatalf("read after a label was removed: drift %q", rr.Drift)
	}
	// A label khw does not set is not drift.
	repaired = r.mustApply(res, repaired.Outputs)
	a.MustKubectl("label", "clusterrole", "system:kube-apiserver-to-kubelet", "team=lab")
	if rr := r.read(res, repaired.Outputs); rr.Drift != "" {
		t.Fatalf("a label khw does not manage is drift: %q", rr.Drift)
	}

	// Deleted by hand: gone, and apply makes it again.
	a.MustKubectl("delete", "clusterrolebinding", "system:kube-apiserver")
	if rr := r.read(res, repaired.Outputs); rr.Exists {
		t.Fatal("read says the binding deleted by hand exists")
	}
	remade := r.mustApply(res, repaired.Outputs)
	if got := refs(t, remade.Outputs); got[1].UID == refs(t, repaired.Outputs)[1].UID {
		t.Error("the binding made again has the old uid")
	}
	if remade.Digest != first.Digest {
		t.Error("the digest follows the uids")
	}

	// Dropped from the manifest: deleted.
	roleOnly := resource(t, "rbac", "admin.kubeconfig", strings.Split(rbac, "---")[0], 30)
	less := r.mustApply(roleOnly, remade.Outputs)
	if got := refs(t, less.Outputs); len(got) != 1 {
		t.Fatalf("outputs = %+v", got)
	}
	if out, err := a.Kubectl("get", "clusterrolebinding", "system:kube-apiserver"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("the binding dropped from the manifest is still there: %s", out)
	}
	if !strings.Contains(strings.Join(r.progress, "\n"), "deleted ClusterRoleBinding system:kube-apiserver (no longer in the manifest)") {
		t.Errorf("progress = %q", r.progress)
	}
	if less.Digest == first.Digest {
		t.Error("the digest did not change with the manifest")
	}

	// Delete removes everything.
	if err := p.Delete(context.Background(), &sdk.DeleteRequest{Resource: roleOnly, PriorOutputs: less.Outputs, Workdir: r.workdir}); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Kubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("Delete left the ClusterRole: %s", out)
	}
	// And deleting what is gone is fine.
	if err := p.Delete(context.Background(), &sdk.DeleteRequest{Resource: roleOnly, PriorOutputs: less.Outputs, Workdir: r.workdir}); err != nil {
		t.Fatal(err)
	}
}

// dryRuns is how many dry-run requests the API server has answered, from
// its own metrics.
func dryRuns(t *testing.T, a *labtest.APIServer) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(a.MustKubectl("get", "--raw", "/metrics"), "\n") {
		if !strings.HasPrefix(l, "apiserver_request_total{") || !strings.Contains(l, `dry_run="All"`) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.Atoi(f[len(f)-1])
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		n += v
	}
	return n
}

// withoutVersions is outputs as an older khw recorded them: no
// resourceVersions.
func withoutVersions(t *testing.T, b json.RawMessage) json.RawMessage {
	t.Helper()
	o := outputs{Objects: refs(t, b)}
	for i := range o.Objects {
		o.Objects[i].ResourceVersion = ""
	}
	out, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWaitAndFailures: a Deployment that cannot run times out with the
// reason; a Namespace listed after what lives in it is made first; an API
// server that starts late is waited for; TLS and auth failures say which
// kubeconfig and server; an API server that is gone lets Delete pass.
func TestWaitAndFailures(t *testing.T) {
	a, r, kc := setup(t)
	p := r.p
	rbac := readRBAC(t)

	// No controller-manager: the Deployment is never even looked at.
	web := resource(t, "web", "admin.kubeconfig", deployment, 3)
	_, err := r.apply(web, nil)
	if err == nil || !strings.Contains(err.Error(), "Deployment default/web is not ready after 3s: its controller has not seen generation 1 yet") ||
		!strings.Contains(sdk.HintOf(err), "describe deployment web") {
		t.Fatalf("err = %v\nhint: %s", err, sdk.HintOf(err))
	}
	t.Logf("without controllers:\n%v", err)

	// With the controllers but no node: the pod stays Pending, and the
	// message says why.
	a.StartControllers(t)
	web = resource(t, "web", "admin.kubeconfig", deployment, 10)
	_, err = r.apply(web, nil)
	if err == nil {
		t.Fatal("a Deployment without nodes was Available")
	}
	t.Logf("without nodes:\n%v\nhint: %s", err, sdk.HintOf(err))
	for _, want := range []string{"Deployment default/web is not ready after 10s: 1 of 1 replicas updated, 0 available",
		"\n  pod web-", ": Pending (Unschedulable: no nodes available to schedule pods)",
		"\n    Warning Pod/web-", ": FailedScheduling: no nodes available to schedule pods"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message lacks %q", want)
		}
	}
	if !strings.Contains(strings.Join(r.progress, "\n"), "applied Deployment default/web") {
		t.Errorf("progress = %q", r.progress)
	}
	// wait=False: done when applied.
	cfg := map[string]any{"kubeconfig": "admin.kubeconfig", "objects": objects(t, deployment), "wait": false, "timeout_s": 10}
	noWait := web
	noWait.Config, _ = json.Marshal(cfg)
	webOut, err := r.apply(noWait, nil)
	if err != nil {
		t.Fatalf("wait=False: %v", err)
	}
	// A Deployment that its controller and the scheduler have worked on
	// is no drift.
	if rr := r.read(noWait, webOut.Outputs); !rr.Exists || rr.Drift != "" {
		t.Fatalf("read of the Deployment: exists %v, drift %q", rr.Exists, rr.Drift)
	}
	a.MustKubectl("scale", "deployment", "web", "--replicas", "3")
	if rr := r.read(noWait, webOut.Outputs); rr.Drift != "Deployment default/web was changed: spec.replicas" {
		t.Fatalf("read of the scaled Deployment: drift %q", rr.Drift)
	}

	// A Namespace listed after the ServiceAccount that lives in it, and a
	// DaemonSet with no node to run on: both ready.
	ns := resource(t, "flannel", "admin.kubeconfig", `apiVersion: v1
kind: ServiceAccount
metadata: {name: flannel, namespace: kube-flannel}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-flannel-ds, namespace: kube-flannel}
spec:
  selector: {matchLabels: {app: flannel}}
  template:
    metadata: {labels: {app: flannel}}
    spec: {containers: [{name: flannel, image: "khw/none:local"}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-flannel}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-flannel, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: 10.32.0.10
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
`, 60)
	nsOut := r.mustApply(ns, nil)
	if got := refs(t, nsOut.Outputs); got[0].Namespace != "kube-flannel" || got[2].Kind != "Namespace" || got[3].Resource != "services" {
		t.Fatalf("outputs = %+v", got)
	}
	// The DaemonSet's controller wrote its status on the way to ready:
	// the version recorded is that one, and reading makes no dry run.
	if live := a.MustKubectl("-n", "kube-flannel", "get", "daemonset", "kube-flannel-ds", "-o", "jsonpath={.metadata.resourceVersion}"); refs(t, nsOut.Outputs)[1].ResourceVersion != live {
		t.Errorf("the DaemonSet's recorded resourceVersion is %q, live %q", refs(t, nsOut.Outputs)[1].ResourceVersion, live)
	}
	dry := dryRuns(t, a)
	if rr := r.read(ns, nsOut.Outputs); !rr.Exists || rr.Drift != "" {
		t.Fatalf("read of the namespace's objects: exists %v, drift %q", rr.Exists, rr.Drift)
	}
	if n := dryRuns(t, a) - dry; n != 0 {
		t.Errorf("reading objects as they were when ready made %d dry runs, want 0", n)
	}
	if err := p.Delete(context.Background(), &sdk.DeleteRequest{Resource: ns, PriorOutputs: nsOut.Outputs, Workdir: r.workdir}); err != nil {
		t.Fatal(err)
	}

	// An API server that is still starting: apply waits for it, saying so.
	second := a.StartAnotherAPIServer(t)
	if err := os.WriteFile(filepath.Join(r.workdir, "late.kubeconfig"), []byte(strings.Replace(kc, a.URL, second, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	sayEvery = 0 // in the test process only: the plugin still says it every 5s
	defer func() { sayEvery = 5 * time.Second }()
	var said []string
	start := time.Now()
	if _, err := (handler{}).Apply(context.Background(), &sdk.ApplyRequest{Resource: resource(t, "late", "late.kubeconfig", rbac, 60),
		Workdir: r.workdir}, func(m string) { said = append(said, m) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("applied through an API server starting, after %s:\n%s", time.Since(start), strings.Join(said, "\n"))
	all := strings.Join(said, "\n")
	if !strings.Contains(all, "waiting for the API server at "+second+": ") || !strings.Contains(all, "applied ClusterRoleBinding") {
		t.Errorf("progress:\n%s", all)
	}
	if !strings.Contains(all, "not ready yet: ") { // it was ready within the second between two tries
		t.Log("the API server was never seen answering not ready")
	}

	// TLS: the kubeconfig's CA did not sign the API server's certificate.
	a.UntrustingKubeconfig(t, r.workdir, "other-ca.kubeconfig")
	_, err = r.apply(resource(t, "tls", "other-ca.kubeconfig", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", 30), nil)
	if err == nil || !strings.Contains(err.Error(), "x509") || !strings.Contains(sdk.HintOf(err), filepath.Join(r.workdir, "other-ca.kubeconfig")) ||
		!strings.Contains(sdk.HintOf(err), a.URL) {
		t.Fatalf("err = %v\nhint: %s", err, sdk.HintOf(err))
	}
	noSecret(t, err)
	t.Logf("TLS: %v\n  hint: %s", err, sdk.HintOf(err))

	// Auth: a user with no rights.
	a.ClientKubeconfig(t, r.workdir, "nobody.kubeconfig", "nobody")
	_, err = r.apply(resource(t, "auth", "nobody.kubeconfig", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", 30), nil)
	if err == nil || !strings.Contains(err.Error(), `applying ConfigMap default/x: configmaps "x" is forbidden: User "nobody" cannot patch resource "configmaps"`) ||
		!strings.Contains(sdk.HintOf(err), "nobody.kubeconfig may not do this") {
		t.Fatalf("err = %v\nhint: %s", err, sdk.HintOf(err))
	}
	noSecret(t, err)

	// The same object twice, once in the kubeconfig's namespace by default.
	_, err = r.apply(resource(t, "twice", "admin.kubeconfig", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n", 30), nil)
	if err == nil || !strings.Contains(err.Error(), "manifest objects 1 and 2 are both ConfigMap default/x") {
		t.Fatalf("err = %v", err)
	}
	if out, err := a.Kubectl("get", "configmap", "x"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("a manifest refused was applied: %s", out)
	}

	// A missing kubeconfig.
	_, err = r.apply(resource(t, "none", "gone.kubeconfig", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", 30), nil)
	if err == nil || !strings.Contains(err.Error(), "gone.kubeconfig: no such file or directory") {
		t.Fatalf("err = %v", err)
	}

	// An API server that is gone: Delete takes its objects as gone (in
	// process, to shorten the bound).
	shortBound = time.Second
	defer func() { shortBound = 10 * time.Second }()
	deadKC := strings.Replace(kc, a.URL, "https://127.0.0.1:"+strconv.Itoa(labtest.FreePort(t)), 1)
	if err := os.WriteFile(filepath.Join(r.workdir, "dead.kubeconfig"), []byte(deadKC), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := resource(t, "dead", "dead.kubeconfig", rbac, 30)
	prior := sdk.Outputs(outputs{Objects: []ref{{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Resource: "clusterroles", Name: "x"}}})
	start = time.Now()
	if err := (handler{}).Delete(context.Background(), &sdk.DeleteRequest{Resource: dead, PriorOutputs: prior, Workdir: r.workdir}); err != nil {
		t.Fatalf("Delete with the API server gone: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Delete took %s", took)
	}
	// But Read says it cannot tell.
	if _, err := (handler{}).Read(context.Background(), &sdk.ReadRequest{Resource: dead, PriorOutputs: prior, Workdir: r.workdir}); err == nil ||
		!strings.Contains(err.Error(), "did not answer ready within 1s") {
		t.Fatalf("Read with the API server gone: %v", err)
	}
	// And a TLS failure is no reason to think the cluster gone.
	tls := resource(t, "tls", "other-ca.kubeconfig", rbac, 30)
	if err := (handler{}).Delete(context.Background(), &sdk.DeleteRequest{Resource: tls, PriorOutputs: prior, Workdir: r.workdir}); err == nil {
		t.Fatal("Delete passed through a TLS failure")
	}
}
