package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/khw-dev/khw/plugins/sdk"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "awaiting headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransient(t *testing.T) {
	cm := schema.GroupResource{Resource: "configmaps"}
	for err, want := range map[error]bool{
		apierrors.NewInternalError(errors.New("etcdserver: request timed out")):                                                                                                 true,
		apierrors.NewInternalError(errors.New("etcdserver: leader changed")):                                                                                                    true,
		&apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonUnknown, Message: "etcdserver: request timed out"}}: true,
		apierrors.NewServerTimeout(cm, "delete", 1):                                                                                                                             true,
		apierrors.NewTimeoutError("the server was unable to respond in time", 1):                                                                                                true,
		apierrors.NewTooManyRequests("busy", 1):                                                                                                                                 true,
		apierrors.NewServiceUnavailable("starting"):                                                                                                                             true,
		&url.Error{Op: "Delete", URL: "https://10.200.1.11:6443", Err: timeoutErr{}}:                                                                                            true,
		&explained{msg: "deleting", err: apierrors.NewInternalError(errors.New("etcdserver: request timed out"))}:                                                               true,
		apierrors.NewInternalError(errors.New("something else broke")):                                                                                                          false,
		apierrors.NewNotFound(cm, "coredns"):                                                                                                                                    false,
		apierrors.NewForbidden(cm, "coredns", errors.New("no")):                                                                                                                 false,
		apierrors.NewBadRequest("invalid"):                                                                                                                                      false,
		&url.Error{Op: "Get", URL: "https://10.200.1.11:6443", Err: errors.New("x509: certificate signed by unknown authority")}:                                                false,
		nil: false,
	} {
		if got := transient(err); got != want {
			t.Errorf("transient(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestRetry(t *testing.T) {
	defer func(b wait.Backoff) { backoff = b }(backoff)
	backoff = wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3}
	etcd := apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	run := func(errs ...error) (int, []string, error) {
		n := 0
		var said []string
		err := retry(context.Background(), "deleting ConfigMap kube-system/coredns", func(s string) { said = append(said, s) }, func(context.Context) error {
			n++
			if n <= len(errs) {
				return errs[n-1]
			}
			return nil
		})
		return n, said, err
	}
	// Passes on the second try, saying why it asked again.
	n, said, err := run(etcd)
	if err != nil || n != 2 || len(said) != 1 || !strings.HasPrefix(said[0], "deleting ConfigMap kube-system/coredns: ") || !strings.HasSuffix(said[0], "etcdserver: request timed out; asking again") {
		t.Errorf("one timeout: %d tries, said %q, err %v", n, said, err)
	}
	// Gives up after the backoff's steps with the last error.
	n, _, err = run(etcd, etcd, etcd, etcd)
	if n != 3 || !apierrors.IsInternalError(err) {
		t.Errorf("always timing out: %d tries, err %v", n, err)
	}
	// What is not transient is not asked again.
	n, said, err = run(apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "coredns", errors.New("no")))
	if n != 1 || len(said) != 0 || !apierrors.IsForbidden(err) {
		t.Errorf("forbidden: %d tries, said %q, err %v", n, said, err)
	}
	// Cancelled: stops.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retry(ctx, "x", nil, func(context.Context) error { t.Error("ran after cancel"); return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestEtcdTimeoutsAreRetried puts a proxy between the plugin and a real
// kube-apiserver that answers the first apply, GET and delete of the
// post's RBAC objects as an API server does when its etcd timed out; the
// plugin asks again, says so, and apply, read and Delete pass.
func TestEtcdTimeoutsAreRetried(t *testing.T) {
	a, r, _ := setup(t)
	rc, err := clientcmd.BuildConfigFromFlags("", a.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	upstream, _ := url.Parse(a.URL)
	var mu sync.Mutex
	faults := map[string]int{}
	failed := map[string]int{}
	var paths []string // every request's method and path
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) }, Transport: rt}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		paths = append(paths, req.Method+" "+req.URL.Path)
		fail := strings.HasPrefix(req.URL.Path, "/apis/rbac.authorization.k8s.io/") && faults[req.Method] > 0
		if fail {
			faults[req.Method]--
			failed[req.Method]++
		}
		mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcdserver: request timed out","code":500}`))
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	defer srv.Close()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q}}]
users: [{name: admin, user: {}}]
contexts: [{name: lab, context: {cluster: lab, user: admin}}]
current-context: lab
`, srv.URL)
	if err := os.WriteFile(filepath.Join(r.workdir, "proxied.kubeconfig"), []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	res := resource(t, "rbac", "proxied.kubeconfig", readRBAC(t), 30)
	inject := func(method string, n int) {
		mu.Lock()
		faults[method], failed[method] = n, 0
		mu.Unlock()
	}
	injected := func(method string) int {
		mu.Lock()
		defer mu.Unlock()
		return failed[method]
	}

	inject("PATCH", 1)
	out := r.mustApply(res, nil)
	if injected("PATCH") != 1 || !strings.Contains(strings.Join(r.progress, "\n"), "applying ClusterRole system:kube-apiserver-to-kubelet: etcdserver: request timed out; asking again") {
		t.Errorf("apply: %d failed, progress %q", injected("PATCH"), r.progress)
	}
	a.MustKubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet")

	// discovered says whether API discovery was asked for since the mark.
	mark := func() int { mu.Lock(); defer mu.Unlock(); return len(paths) }
	discovered := func(since int) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(paths[since:], "GET /api") || slices.Contains(paths[since:], "GET /apis")
	}
	if !discovered(0) {
		t.Errorf("apply did not ask for discovery: %q", paths)
	}

	// Reading objects nobody wrote to needs neither a dry run nor
	// discovery: only /readyz and a GET of each.
	inject("GET", 2)
	since := mark()
	if rr := r.read(res, out.Outputs); !rr.Exists || rr.Drift != "" || injected("GET") != 2 {
		t.Errorf("read through 2 timeouts: exists %v, drift %q, %d failed", rr.Exists, rr.Drift, injected("GET"))
	}
	if discovered(since) {
		t.Errorf("a read of unwritten objects asked for discovery: %q", paths[since:])
	}

	inject("DELETE", 1)
	if err := r.p.Delete(context.Background(), &sdk.DeleteRequest{Resource: res, PriorOutputs: out.Outputs, Workdir: r.workdir}); err != nil || injected("DELETE") != 1 {
		t.Fatalf("delete through a timeout: %v (%d failed)", err, injected("DELETE"))
	}
	if out, err := a.Kubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("Delete left the ClusterRole: %s", out)
	}
}
