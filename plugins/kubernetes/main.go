// Command khw-plugin-kubernetes is the provider of k8s.apply: Kubernetes
// objects applied through the API server with client-go's server-side apply
// under the field manager "khw" (force: khw's recipe is the truth for the
// fields it sets). It waits for the API server to answer, applies the
// objects (Namespaces first), deletes those a previous apply had and the
// manifest no longer has, and waits until Deployments, DaemonSets and
// Namespaces are ready. Read finds an object deleted by hand (gone) or a
// field khw sets that was changed by hand (drift, from a server-side dry
// run); Delete removes the objects, and takes an API server that does not
// answer as a cluster already gone.
//
// Configuration, as builtins/k8s declares it:
//
//	k8s.apply: {"kubeconfig", "objects": [...], "wait", "timeout_s"}
//
// kubeconfig is relative to the workdir; it is a secret and is never shown.
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func newMux() *sdk.Mux {
	m := sdk.NewMux("kubernetes", version.String())
	m.Handle(sdk.TypeInfo{Type: "k8s.apply", UpdateInPlace: true,
		Doc: "Kubernetes objects applied with server-side apply (field manager khw); objects dropped from the " +
			"manifest are deleted; Deployments, DaemonSets and Namespaces are waited for"}, handler{})
	return m
}

func main() {
	sdk.Serve(provider{Mux: newMux()})
}
