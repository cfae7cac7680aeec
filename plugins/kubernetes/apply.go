package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/khw-dev/khw/plugins/sdk"
)

type handler struct{}

// open decodes a request's configuration and recorded outputs and
// connects, with dial (connect, or a read's shared session), to the API
// server its kubeconfig names.
func open(r *sdk.Resource, priorOutputs json.RawMessage, workdir string, dial func(kubeconfig string) (*cluster, error)) (*config, *outputs, *cluster, error) {
	cfg, err := decode(r)
	if err != nil {
		return nil, nil, nil, err
	}
	prior, err := decodeOutputs(priorOutputs)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := dial(cfg.kubeconfigPath(workdir))
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, prior, c, nil
}

// firstKinds are applied before everything else, in this order, so that
// what lives in a namespace (or is of a custom kind) finds it there.
var firstKinds = map[string]int{"Namespace": 0, "CustomResourceDefinition": 1}

// applyOrder is the objects' indexes in the order they are applied:
// Namespaces, then CRDs, then the rest as the manifest lists them.
func applyOrder(objs []*unstructured.Unstructured) []int {
	idx := make([]int, len(objs))
	for i := range idx {
		idx[i] = i
	}
	rank := func(i int) int {
		if r, ok := firstKinds[objs[i].GetKind()]; ok {
			return r
		}
		return len(firstKinds)
	}
	sort.SliceStable(idx, func(a, b int) bool { return rank(idx[a]) < rank(idx[b]) })
	return idx
}

func (handler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	cfg, prior, c, err := open(&req.Resource, req.PriorOutputs, req.Workdir, connect)
	if err != nil {
		return nil, err
	}
	c.warnings.set(progress)
	if err := c.waitReady(ctx, cfg.timeout(), progress); err != nil {
		return nil, err
	}

	objs := cfg.objects()
	if err := c.distinct(objs); err != nil {
		return nil, err
	}
	refs := make([]ref, len(objs))
	applied := make([]*unstructured.Unstructured, len(objs))
	for _, i := range applyOrder(objs) {
		obj := objs[i]
		ri, r, err := c.resource(obj)
		if err != nil {
			return nil, c.explain(err, "applying "+describe(obj.GetKind(), obj.GetNamespace(), obj.GetName()))
		}
		var out *unstructured.Unstructured
		err = retry(ctx, "applying "+r.String(), progress, func(ctx context.Context) (err error) {
			out, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
			return err
		})
		if err != nil {
			return nil, c.explain(err, "applying "+r.String())
		}
		r.UID, r.ResourceVersion = string(out.GetUID()), out.GetResourceVersion()
		refs[i], applied[i] = r, out
		progress("applied " + r.String())
	}

	// What a previous apply made and this manifest no longer has goes.
	keep := map[string]bool{}
	for _, r := range refs {
		keep[r.key()] = true
	}
	for i := len(prior.Objects) - 1; i >= 0; i-- {
		r := prior.Objects[i]
		if keep[r.key()] {
			continue
		}
		if err := c.delete(ctx, r, progress); err != nil {
			return nil, err
		}
		progress("deleted " + r.String() + " (no longer in the manifest)")
	}

	if *cfg.Wait {
		ready, err := c.waitObjects(ctx, refs, cfg.timeout(), progress)
		if err != nil {
			return nil, err
		}
		// Getting ready writes the object's status, and with it a new
		// resourceVersion; the ready one is recorded when what khw sets
		// is still as applied.
		for i, r := range refs {
			if l := ready[r.key()]; l != nil && len(changed(objs[i], applied[i], l)) == 0 {
				refs[i].ResourceVersion = l.GetResourceVersion()
			}
		}
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(outputs{Objects: refs}), Digest: cfg.digest()}, nil
}

// distinct refuses, before anything is applied, two objects that are one:
// one without a namespace and one in the default namespace, which only
// the API server's scope for the kind tells apart. Kinds it does not serve
// yet (a CRD's, applied with it) are left to the apply.
func (c *cluster) distinct(objs []*unstructured.Unstructured) error {
	seen := map[string]int{}
	for i, o := range objs {
		_, r, err := c.resource(o.DeepCopy())
		if err != nil {
			continue
		}
		if j, dup := seen[r.key()]; dup {
			return fmt.Errorf("manifest objects %d and %d are both %s", j+1, i+1, r)
		}
		seen[r.key()] = i
	}
	return nil
}

// delete deletes one object (its dependents in the background); one that
// is already gone is fine. say hears of retries.
func (c *cluster) delete(ctx context.Context, r ref, say func(string)) error {
	bg := metav1.DeletePropagationBackground
	err := retry(ctx, "deleting "+r.String(), say, func(ctx context.Context) error {
		return c.client(r).Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return c.explain(err, "deleting "+r.String())
	}
	return nil
}

func (handler) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return read(ctx, req, &sessions{})
}

// read reads one k8s.apply back: a recorded object that is gone means the
// resource is gone; a field khw sets that differs from what an apply would
// give is drift. The objects are read in parallel, through the session's
// shared connection to the API server.
func read(ctx context.Context, req *sdk.ReadRequest, ss *sessions) (*sdk.ReadResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*shortBound)
	defer cancel()
	start := time.Now()
	cfg, prior, c, err := open(&req.Resource, req.PriorOutputs, req.Workdir, func(kubeconfig string) (*cluster, error) {
		return ss.ready(ctx, kubeconfig)
	})
	if err != nil {
		return nil, err
	}
	ready := time.Since(start)
	live := make([]*unstructured.Unstructured, len(prior.Objects))
	var gone atomic.Bool
	err = each(ctx, len(prior.Objects), func(ctx context.Context, i int) error {
		r := prior.Objects[i]
		var obj *unstructured.Unstructured
		err := retry(ctx, "reading "+r.String(), nil, func(ctx context.Context) (err error) {
			obj, err = c.client(r).Get(ctx, r.Name, metav1.GetOptions{})
			return err
		})
		if apierrors.IsNotFound(err) {
			gone.Store(true)
			return nil
		}
		if err != nil {
			return c.explain(err, "reading "+r.String())
		}
		live[i] = obj
		return nil
	})
	if err != nil {
		return nil, err
	}
	if gone.Load() {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	got := time.Since(start)
	// An object whose resourceVersion is the one recorded was not written
	// since khw saw it as wanted: no drift.
	byKey := map[string]*unstructured.Unstructured{}
	for i, r := range prior.Objects {
		if r.ResourceVersion != "" && live[i].GetResourceVersion() == r.ResourceVersion {
			continue
		}
		byKey[r.key()] = live[i]
	}
	objs := cfg.objects()
	// A read's configuration is the one applied, so its objects are the
	// recorded ones, in order: one not written since needs neither a dry
	// run nor the discovery that finds its resource.
	unwritten := func(i int) bool {
		if len(objs) != len(prior.Objects) {
			return false
		}
		r := prior.Objects[i]
		return r.Kind == objs[i].GetKind() && r.Name == objs[i].GetName() && byKey[r.key()] == nil
	}
	// Drift, in what was written since: what a server-side apply of the
	// same objects would change in the fields khw sets. (An apply that
	// changes nothing keeps the object's resourceVersion, but a dry run
	// returns the live resourceVersion whether it would change something
	// or not: the content has to be compared.)
	drift := make([]string, len(objs))
	err = each(ctx, len(objs), func(ctx context.Context, i int) error {
		if unwritten(i) {
			return nil
		}
		obj := objs[i]
		ri, r, err := c.resource(obj)
		if err != nil {
			return c.explain(err, "reading "+describe(obj.GetKind(), obj.GetNamespace(), obj.GetName()))
		}
		l := byKey[r.key()]
		if l == nil {
			return nil // unchanged, or not recorded (the next apply makes it)
		}
		var want *unstructured.Unstructured
		err = retry(ctx, "checking "+r.String(), nil, func(ctx context.Context) (err error) {
			want, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			return err
		})
		if err != nil {
			return c.explain(err, "checking "+r.String()+" with a dry run")
		}
		if fields := changed(obj, want, l); len(fields) > 0 {
			drift[i] = fmt.Sprintf("%s was changed: %s", r, some(fields, maxFields))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// KHW_LOG=debug: where a read's time went, and how many objects
	// needed a dry run.
	sdk.Logger().Debug("manifest checked", "resource", req.Resource.Address, "objects", len(prior.Objects), "dry_runs", len(byKey),
		"ready", ms(ready), "get", ms(got-ready), "check", ms(time.Since(start)-got))
	return &sdk.ReadResponse{Exists: true, Drift: strings.Join(slices.DeleteFunc(drift, func(d string) bool { return d == "" }), "; "), Outputs: req.PriorOutputs}, nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// maxFields is how many changed fields a drift names.
const maxFields = 4

// some joins the first n items, and says how many more there are.
func some(items []string, n int) string {
	if len(items) > n {
		return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
	}
	return strings.Join(items, ", ")
}

// changed lists the fields the manifest sets (top-level fields, and
// metadata's labels and annotations) in which want, what applying the
// manifest gives, differs from live.
func changed(manifest, want, live *unstructured.Unstructured) []string {
	var out []string
	for _, k := range sortedKeys(manifest.Object) {
		switch k {
		case "apiVersion", "kind", "status":
		case "metadata":
			for _, mk := range []string{"labels", "annotations"} {
				if _, set := manifest.Object["metadata"].(map[string]any)[mk]; !set {
					continue
				}
				w, _, _ := unstructured.NestedFieldNoCopy(want.Object, "metadata", mk)
				l, _, _ := unstructured.NestedFieldNoCopy(live.Object, "metadata", mk)
				if !reflect.DeepEqual(w, l) {
					out = append(out, "metadata."+mk)
				}
			}
		default:
			out = append(out, differ(k, want.Object[k], live.Object[k])...)
		}
	}
	return out
}

// differ lists where a and b differ: the paths of the map keys, down to
// the first list or value that differs ("spec.replicas", "rules").
func differ(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if reflect.DeepEqual(a, b) {
			return nil
		}
		return []string{path}
	}
	keys := map[string]any{}
	for k := range am {
		keys[k] = nil
	}
	for k := range bm {
		keys[k] = nil
	}
	var out []string
	for _, k := range sortedKeys(keys) {
		out = append(out, differ(path+"."+k, am[k], bm[k])...)
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (handler) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	_, prior, c, err := open(&req.Resource, req.PriorOutputs, req.Workdir, connect)
	if err != nil || len(prior.Objects) == 0 {
		return err
	}
	// A cluster that does not answer is being destroyed with the lab (or
	// is gone): its objects go with it.
	rctx, cancel := context.WithTimeout(ctx, 2*shortBound)
	err = c.waitReady(rctx, shortBound, nil)
	cancel()
	var gone *notAnswering
	if errors.As(err, &gone) && ctx.Err() == nil {
		return nil
	}
	if err != nil {
		return err
	}
	for i := len(prior.Objects) - 1; i >= 0; i-- {
		if err := c.delete(ctx, prior.Objects[i], nil); err != nil {
			return err
		}
	}
	return nil
}
