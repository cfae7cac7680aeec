package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/khw-dev/khw/internal/version"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/khw-dev/khw/plugins/sdk"
)

// cluster is a connection to one API server through a kubeconfig.
type cluster struct {
	server     string // the kubeconfig's server URL
	kubeconfig string // the kubeconfig's path, for messages
	defaultNS  string // for namespaced objects that name none
	dyn        dynamic.Interface
	disc       discovery.CachedDiscoveryInterface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
	warnings   *warnings
}

// warnings passes the API server's warnings (a deprecated API, say) on to
// whoever listens: Apply's progress lines.
type warnings struct {
	mu sync.Mutex
	fn func(string)
}

func (w *warnings) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fn != nil {
		w.fn("warning from the API server: " + text)
	}
}

func (w *warnings) set(fn func(string)) {
	w.mu.Lock()
	w.fn = fn
	w.mu.Unlock()
}

// connect reads the kubeconfig and makes the clients; it does not dial.
func connect(path string) (*cluster, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, sdk.WithHint(fmt.Errorf("kubeconfig %s: %w", path, errors.Unwrap(err)),
			"khw writes it (kubeconfig.write) before k8s.apply runs: run khw again to make it")
	}
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		// clientcmd's message quotes no key material, only the file and
		// what is wrong with it.
		return nil, fmt.Errorf("kubeconfig %s is not readable: %v", path, err)
	}
	cc := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %v", path, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	c := &cluster{server: rc.Host, kubeconfig: path, defaultNS: ns, warnings: &warnings{}}
	rc.QPS, rc.Burst = 50, 100
	rc.Timeout = 30 * time.Second
	rc.WarningHandler = c.warnings
	rc.UserAgent = "khw-plugin-kubernetes/" + version.String()
	if c.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %v", path, err)
	}
	d, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %v", path, err)
	}
	c.disc = memory.NewMemCacheClient(d)
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(c.disc)
	return c, nil
}

// readyz asks the API server once whether it is ready.
func (c *cluster) readyz(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := c.disc.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		if checks := failedChecks(string(body)); len(checks) > 0 {
			return fmt.Errorf("not ready yet: %s", some(checks, 3))
		}
	}
	return err
}

// failedChecks are the names of the checks /readyz's body marks failed
// ("[-]poststarthook/rbac/bootstrap-roles failed: reason withheld").
func failedChecks(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, "[-]"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				out = append(out, f[0])
			}
		}
	}
	return out
}

// sayEvery is how often a wait says what it waits for.
var sayEvery = 5 * time.Second

// waitReady retries /readyz until the API server answers ready or within
// passes, reporting what it waits for every few seconds. A TLS or
// authentication failure is not waited out: it will not pass by itself.
func (c *cluster) waitReady(ctx context.Context, within time.Duration, progress func(string)) error {
	deadline := time.Now().Add(within)
	lastSaid := time.Time{}
	for {
		err := c.readyz(ctx)
		if err == nil {
			return nil
		}
		if fatal(err) {
			return c.explain(err, "reaching the API server at "+c.server)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return &notAnswering{server: c.server, within: within, last: err}
		}
		if progress != nil && time.Since(lastSaid) >= sayEvery {
			progress(fmt.Sprintf("waiting for the API server at %s: %s", c.server, short(err)))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// mapping finds the resource of a kind from discovery, asking again once
// when the kind is new (a CRD applied just before).
func (c *cluster) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("the API server at %s serves no %s in %s", c.server, gvk.Kind, gvk.GroupVersion())
	}
	return m, err
}

// resource is the client of obj's resource, with obj's namespace set as
// its scope wants (the kubeconfig's namespace when it names none, none for
// a cluster-scoped kind), and the ref that records it.
func (c *cluster) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, ref, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapping(gvk)
	if err != nil {
		return nil, ref{}, err
	}
	r := ref{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Resource: m.Resource.Resource, Name: obj.GetName()}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(c.defaultNS)
		}
		r.Namespace = obj.GetNamespace()
		return c.dyn.Resource(m.Resource).Namespace(r.Namespace), r, nil
	}
	obj.SetNamespace("")
	return c.dyn.Resource(m.Resource), r, nil
}

// client is the client of a recorded object.
func (c *cluster) client(r ref) dynamic.ResourceInterface {
	if r.Namespace != "" {
		return c.dyn.Resource(r.gvr()).Namespace(r.Namespace)
	}
	return c.dyn.Resource(r.gvr())
}

// fatal is an error that retrying will not fix: the server's certificate
// is not trusted, or it does not accept the client's.
func fatal(err error) bool {
	return tlsError(err) || apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
}

func tlsError(err error) bool {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "x509: ") || strings.Contains(s, "tls: ")
}

// notAnswering is an API server that did not answer ready in time.
type notAnswering struct {
	server string
	within time.Duration
	last   error
}

func (e *notAnswering) Error() string {
	return fmt.Sprintf("the API server at %s did not answer ready within %s: %s", e.server, e.within, short(e.last))
}

func (e *notAnswering) ErrorHint() string {
	return "check that kube-apiserver runs and that " + e.server + " reaches it (from where khw runs); a slow start needs a longer timeout"
}

// explained is an error worded for a person that keeps its cause.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// explain words an error of the API server for a person: what khw was
// doing, the server's own message, and for TLS and authentication
// failures which kubeconfig and which server to look at.
func (c *cluster) explain(err error, doing string) error {
	msg := &explained{msg: doing + ": " + message(err), err: err}
	switch {
	case tlsError(err):
		return sdk.WithHint(msg, fmt.Sprintf("the API server at %s does not present a certificate that kubeconfig %s trusts: "+
			"check that its certificate-authority-data is the CA that signed the API server's certificate and that the certificate names that host", c.server, c.kubeconfig))
	case apierrors.IsUnauthorized(err):
		return sdk.WithHint(msg, fmt.Sprintf("the API server at %s does not accept the client certificate in kubeconfig %s: "+
			"is it signed by the CA of the API server's --client-ca-file, and still valid?", c.server, c.kubeconfig))
	case apierrors.IsForbidden(err):
		return sdk.WithHint(msg, fmt.Sprintf("the user of kubeconfig %s may not do this: use the admin kubeconfig (a user in system:masters)", c.kubeconfig))
	}
	return msg
}

// message is the API server's own message when it gave one, or what
// went wrong on the way without the request's URL (the hint names the
// server).
func message(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		return st.Status().Message
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// short is an error's message on one line, without the readyz check list.
func short(err error) string {
	s := message(err)
	if i := strings.Index(s, "\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
