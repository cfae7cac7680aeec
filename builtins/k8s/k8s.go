// Package k8s is the recipe module `k8s`: Kubernetes objects (the post's
// RBAC, the add-ons) applied through the API server with server-side apply,
// served by the kubernetes plugin.
package k8s

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"go.starlark.net/starlark"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the k8s module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "k8s.apply", Provider: "kubernetes"})
	r.Add(&runtime.Builtin{Module: "k8s", Name: "apply", Creates: "k8s.apply", Provider: "kubernetes", Fn: apply,
		Doc: "Declares Kubernetes objects applied through the API server with server-side apply " +
			"(field manager khw): the post's RBAC, the add-ons. It waits for the API server to answer; " +
			"objects dropped from the manifest are deleted; an object edited or deleted by hand is drift " +
			"and applied again.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "resource name (address k8s.apply.NAME)"},
			{Name: "manifest", Type: "string or list of dicts", Doc: "YAML (one or more `---`-separated documents), or the objects as Starlark data"},
			{Name: "kubeconfig", Type: "kubeconfig", Doc: "the kubeconfig khw connects with (kubeconfig.write's handle, or a file)"},
			{Name: "after", Type: "list", Default: "[]", Doc: "resources that must be applied first (the API servers, the load balancer in front of them); deleted after this one, and their changes do not re-apply it"},
			{Name: "uses", Type: "list", Default: "[]", Doc: "resources whose change re-applies the objects: the etcd members that hold them (a member made anew holds none)"},
			{Name: "wait", Type: "bool", Default: "True", Doc: "wait until every Deployment is Available, every DaemonSet's pods are ready and every Namespace is Active"},
			{Name: "timeout", Type: "int", Default: "300", Doc: "seconds to wait for the API server to answer, and then for the objects to be ready"},
		},
		Example: `k8s.apply("rbac", manifest = rbac_yaml, kubeconfig = admin_kubeconfig, after = [apiserver])`,
	})
}

// Object is one manifest object as it was declared.
type Object = map[string]any

// ParseYAML splits a YAML stream into its documents and decodes each one.
// Empty documents (only comments, or nothing between two `---`) are skipped.
func ParseYAML(src string) ([]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(src)))
	var out []any
	for doc := 1; ; doc++ {
		b, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading document %d: %v", doc, err)
		}
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("document %d is not valid YAML: %v", doc, err)
		}
		if v == nil {
			continue
		}
		out = append(out, v)
	}
}

// Objects checks the manifest's objects: each is a mapping with apiVersion,
// kind and metadata.name, no two share kind, namespace and name, and none is
// a Secret with data (khw keeps manifests in its state and plan). A `kind:
// List` is replaced by its items.
func Objects(docs []any) ([]Object, error) {
	var flat []any
	for _, d := range docs {
		if m, ok := d.(map[string]any); ok && m["kind"] == "List" {
			items, ok := m["items"].([]any)
			if !ok && m["items"] != nil {
				return nil, fmt.Errorf("manifest object %d (List) has items that are not a list", len(flat)+1)
			}
			flat = append(flat, items...)
			continue
		}
		flat = append(flat, d)
	}
	if len(flat) == 0 {
		return nil, fmt.Errorf("manifest has no objects")
	}
	var objs []Object
	first := map[string]int{}
	for i, d := range flat {
		n := i + 1
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("manifest object %d is a %s, not a mapping with apiVersion, kind and metadata", n, kindOf(d))
		}
		kind, _ := m["kind"].(string)
		what := fmt.Sprintf("manifest object %d", n)
		if kind != "" {
			what += " (" + kind + ")"
		}
		if kind == "" {
			return nil, fmt.Errorf("%s has no kind", what)
		}
		if v, _ := m["apiVersion"].(string); v == "" {
			return nil, fmt.Errorf("%s has no apiVersion", what)
		}
		meta, ok := m["metadata"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s has no metadata.name", what)
		}
		name, _ := meta["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("%s has no metadata.name", what)
		}
		ns, isStr := meta["namespace"].(string)
		if meta["namespace"] != nil && !isStr {
			return nil, fmt.Errorf("%s named %s: metadata.namespace is not a string", what, name)
		}
		if kind == "Secret" && (m["data"] != nil || m["stringData"] != nil) {
			return nil, fmt.Errorf("%s named %s holds data: khw shows manifests in its plan and keeps them in its state, so secrets do not belong in a recipe", what, name)
		}
		key := kind + "/" + ns + "/" + name
		if j, dup := first[key]; dup {
			return nil, fmt.Errorf("manifest objects %d and %d are both %s", j, n, describe(kind, ns, name))
		}
		first[key] = n
		objs = append(objs, m)
	}
	return objs, nil
}

func describe(kind, ns, name string) string {
	if ns != "" {
		return kind + " " + ns + "/" + name
	}
	return kind + " " + name
}

func kindOf(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case nil:
		return "null"
	case bool:
		return "bool"
	default:
		return "number"
	}
}

// manifestDocs turns the manifest argument into decoded documents.
func manifestDocs(v starlark.Value) ([]any, error) {
	switch x := v.(type) {
	case starlark.String:
		docs, err := ParseYAML(string(x))
		if err != nil {
			return nil, fmt.Errorf("manifest: %v", err)
		}
		return docs, nil
	case *starlark.List, starlark.Tuple:
		it := x.(starlark.Indexable)
		docs := make([]any, 0, it.Len())
		for i := 0; i < it.Len(); i++ {
			if _, ok := it.Index(i).(*starlark.Dict); !ok {
				return nil, fmt.Errorf("manifest object %d must be a dict, not %s", i+1, it.Index(i).Type())
			}
			g, err := starconv.ToGo(it.Index(i))
			if err != nil {
				return nil, fmt.Errorf("manifest object %d: %v", i+1, err)
			}
			docs = append(docs, g)
		}
		return docs, nil
	}
	return nil, fmt.Errorf("manifest must be a YAML string or a list of dicts, not %s", v.Type())
}

func apply(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var manifest, kc starlark.Value
	after := starlark.NewList(nil)
	uses := starlark.NewList(nil)
	wait := true
	timeout := 300
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "manifest", &manifest, "kubeconfig", &kc,
		"after?", &after, "wait?", &wait, "timeout?", &timeout, "uses?", &uses); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, runtime.Errorf(b, "name is empty")
	}
	file, server, err := kubeconfigFile(kc)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	if timeout < 1 || timeout > 3600 {
		return nil, runtime.Errorf(b, "timeout %d must be from 1 to 3600 seconds", timeout)
	}
	docs, err := manifestDocs(manifest)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	objs, err := Objects(docs)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	list := make([]any, len(objs))
	names := make([]string, len(objs))
	for i, o := range objs {
		list[i] = o
		meta := o["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		n := meta["name"].(string)
		if ns != "" {
			n = ns + "/" + n
		}
		names[i] = o["kind"].(string) + "/" + n
	}
	show := []runtime.Field{{Key: "objects", Value: strings.Join(names, ", ")}}
	if server != "" {
		show = append(show, runtime.Field{Key: "server", Value: server})
	}
	res := &runtime.Resource{Type: "k8s.apply", Name: name, Provider: "kubernetes",
		Inputs:   map[string]any{"kubeconfig": file.Path, "objects": list},
		Settings: map[string]any{"wait": wait, "timeout_s": timeout},
		Deps:     runtime.Refs(kc, uses),
		After:    runtime.Refs(after),
		Show:     show,
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}

// kubeconfigFile is the workdir file of a kubeconfig handle (or a file
// passed as it is), and the server the handle names, if any.
func kubeconfigFile(v starlark.Value) (*runtime.File, string, error) {
	switch x := v.(type) {
	case *runtime.File:
		return x, "", nil
	case *runtime.Handle:
		f, _ := x.Attr("file")
		file, ok := f.(*runtime.File)
		if !ok {
			break
		}
		server := ""
		if s, _ := x.Attr("server"); s != nil {
			server, _ = starlark.AsString(s)
		}
		return file, server, nil
	}
	return nil, "", fmt.Errorf("kubeconfig must be a kubeconfig (kubeconfig.write's handle) or a file, not %s", v.Type())
}
