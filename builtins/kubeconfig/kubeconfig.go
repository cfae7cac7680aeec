// Package kubeconfig is the recipe module `kubeconfig`: kubeconfig files
// written with client-go's clientcmd, as the post's four `kubectl config`
// commands write them (set-cluster, set-credentials, set-context and
// use-context, with embedded certificates).
package kubeconfig

import (
	"context"
	"fmt"
	"net/url"

	"go.starlark.net/starlark"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the kubeconfig module and its resource type.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "kubeconfig", Name: "write", Creates: "kubeconfig", Provider: "khw", Fn: write,
		Doc: "Declares NAME.kubeconfig (0600): one cluster with the CA embedded, one user with the " +
			"client certificate and key embedded, one context, made current.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "file name without .kubeconfig; address kubeconfig.NAME"},
			{Name: "server", Type: "string", Doc: "the API server URL, https://HOST:PORT"},
			{Name: "ca", Type: "pki.ca", Doc: "CA whose certificate is embedded as certificate-authority-data"},
			{Name: "cert", Type: "pki.cert", Doc: "client certificate and key to embed"},
			{Name: "user", Type: "string", Doc: "the user's name in the kubeconfig, e.g. system:node:n1"},
			{Name: "cluster", Type: "string", Default: `"kubernetes-the-hard-way"`, Doc: "the cluster's name"},
			{Name: "context", Type: "string", Default: `"default"`, Doc: "the context's name, made current"},
		},
		Example: `kubeconfig.write("admin", server = "https://127.0.0.1:6443", ca = ca, cert = admin, user = "admin")`,
	})
	r.AddType(runtime.TypeSpec{Type: "kubeconfig", Doc: "a kubeconfig file", UpdateInPlace: true,
		Handler: workspace.Handler{ApplyFn: apply}})
}

func write(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, server, user string
	cluster, ctxName := "kubernetes-the-hard-way", "default"
	var ca, cert *runtime.Handle
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "server", &server, "ca", &ca, "cert", &cert,
		"user", &user, "cluster?", &cluster, "context?", &ctxName); err != nil {
		return nil, err
	}
	if err := workspace.CheckName(b, name); err != nil {
		return nil, err
	}
	if ca.Res.Type != "pki.ca" {
		return nil, runtime.Errorf(b, "ca must be a pki.ca, not %s", ca.Res.Addr())
	}
	if cert.Res.Type != "pki.cert" {
		return nil, runtime.Errorf(b, "cert must be a pki.cert, not %s", cert.Res.Addr())
	}
	if u, err := url.Parse(server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, runtime.Errorf(b, "server %q must be an https URL such as https://10.200.1.15:6443", server)
	}
	for what, v := range map[string]string{"user": user, "cluster": cluster, "context": ctxName} {
		if v == "" {
			return nil, runtime.Errorf(b, "%s is empty", what)
		}
	}
	caCert, _ := ca.Attr("cert")
	crt, _ := cert.Attr("cert")
	key, _ := cert.Attr("key")
	res := &runtime.Resource{
		Type: "kubeconfig", Name: name,
		Inputs: map[string]any{
			"server": server, "user": user, "cluster": cluster, "context": ctxName,
			"ca": caCert.(*runtime.File).Path, "cert": crt.(*runtime.File).Path, "key": key.(*runtime.File).Path,
		},
		Deps: runtime.Refs(ca, cert),
		Show: []runtime.Field{
			{Key: "server", Value: server}, {Key: "user", Value: user},
			{Key: "cert", Value: cert.Res.Addr()}, {Key: "file", Value: name + ".kubeconfig"},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"file":   &runtime.File{Path: name + ".kubeconfig", Producer: res.Addr(), Secret: true},
		"server": starlark.String(server),
		"user":   starlark.String(user),
	}), nil
}

type inputs struct {
	Server, User, Cluster, Context, CA, Cert, Key string
}

// Render builds the kubeconfig bytes exactly as kubectl writes them.
func Render(in inputs, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[in.Cluster] = &clientcmdapi.Cluster{Server: in.Server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[in.User] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[in.Context] = &clientcmdapi.Context{Cluster: in.Cluster, AuthInfo: in.User}
	cfg.CurrentContext = in.Context
	return clientcmd.Write(*cfg)
}

func apply(_ context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	var in inputs
	if err := req.Resource.Decode(&in); err != nil {
		return nil, err
	}
	var pems [3][]byte
	for i, f := range []string{in.CA, in.Cert, in.Key} {
		b, err := workspace.Read(req.Workdir, f)
		if err != nil {
			return nil, err
		}
		pems[i] = b
	}
	data, err := Render(in, pems[0], pems[1], pems[2])
	if err != nil {
		return nil, fmt.Errorf("rendering the kubeconfig: %v", err)
	}
	return workspace.Write(req.Workdir, workspace.File{Name: req.Resource.Name + ".kubeconfig", Data: data, Secret: true})
}
