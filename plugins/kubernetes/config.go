package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/khw-dev/khw/plugins/sdk"
)

// FieldManager is the name khw applies under: the owner of every field a
// recipe sets.
const FieldManager = "khw"

const (
	defaultTimeout = 300
	maxTimeout     = 3600
)

// shortBound is how long Read and Delete wait for the API server: they
// must not hold a plan, or a destroy, for the whole timeout. 30 s: on
// emulated (qemu/TCG) controllers a plan that reads every node at once
// kept the API server from answering /readyz within 10 s. (A variable
// only so that tests can shorten it.)
var shortBound = 30 * time.Second

type config struct {
	Kubeconfig string           `json:"kubeconfig"`
	Objects    []map[string]any `json:"objects"`
	Wait       *bool            `json:"wait"`
	TimeoutS   int              `json:"timeout_s"`
}

func decode(r *sdk.Resource) (*config, error) {
	var c config
	if err := r.Decode(&c); err != nil {
		return nil, err
	}
	if c.TimeoutS == 0 {
		c.TimeoutS = defaultTimeout
	}
	if c.Wait == nil {
		t := true
		c.Wait = &t
	}
	switch {
	case c.Kubeconfig == "":
		return nil, fmt.Errorf("%s: kubeconfig is empty", r.Address)
	case len(c.Objects) == 0:
		return nil, fmt.Errorf("%s: objects is empty", r.Address)
	case c.TimeoutS < 1 || c.TimeoutS > maxTimeout:
		return nil, fmt.Errorf("%s: timeout_s %d must be from 1 to %d seconds", r.Address, c.TimeoutS, maxTimeout)
	}
	for i, o := range c.Objects {
		u := unstructured.Unstructured{Object: o}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: object %d lacks apiVersion, kind or metadata.name", r.Address, i+1)
		}
	}
	return &c, nil
}

func (c *config) timeout() time.Duration { return time.Duration(c.TimeoutS) * time.Second }

// kubeconfigPath resolves the kubeconfig against the workdir.
func (c *config) kubeconfigPath(workdir string) string {
	if filepath.IsAbs(c.Kubeconfig) {
		return c.Kubeconfig
	}
	return filepath.Join(workdir, c.Kubeconfig)
}

// objects are the configuration's objects as unstructured copies (applying
// fills in namespaces; the configuration stays as declared).
func (c *config) objects() []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(c.Objects))
	for i, o := range c.Objects {
		out[i] = (&unstructured.Unstructured{Object: o}).DeepCopy()
	}
	return out
}

// digest is a hash of the objects as declared: it changes only when what
// khw asks the API server for changes, not with uids or resourceVersions.
func (c *config) digest() string {
	b, _ := json.Marshal(c.Objects)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ref identifies an applied object.
type ref struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// ResourceVersion is the object's version when khw last saw it as
	// the manifest wants it: after its apply, or, for what khw waits on,
	// once it was ready. A read that finds the same version knows
	// nothing was written to the object since, and skips the dry run.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// outputs are what an apply records.
type outputs struct {
	Objects []ref `json:"objects"`
}

func decodeOutputs(b json.RawMessage) (*outputs, error) {
	var o outputs
	if len(b) == 0 {
		return &o, nil
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("the recorded outputs are not readable: %v", err)
	}
	return &o, nil
}

// key is the object's identity across versions of its API: group, kind,
// namespace and name.
func (r ref) key() string { return r.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name }

func (r ref) gvr() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
}

// String names the object as a person does: "ClusterRole
// system:kube-apiserver-to-kubelet", "Deployment kube-system/coredns".
func (r ref) String() string { return describe(r.Kind, r.Namespace, r.Name) }

func describe(kind, ns, name string) string {
	if ns != "" {
		return kind + " " + ns + "/" + name
	}
	return kind + " " + name
}
