package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/khw-dev/khw/plugins/sdk"
)

var (
	podsGVR        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	eventsGVR      = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	replicaSetsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
)

// pollEvery is how often readiness is asked again.
var pollEvery = 2 * time.Second

// waitable reports whether khw waits for an object of this kind to be
// ready: Deployments, DaemonSets and Namespaces. Other kinds are done when
// applied.
func waitable(r ref) bool {
	switch {
	case r.Group == "apps" && (r.Kind == "Deployment" || r.Kind == "DaemonSet"):
		return true
	case r.Group == "" && r.Kind == "Namespace":
		return true
	}
	return false
}

// readiness is where one object stands: ready, or what it still lacks.
type readiness struct {
	ready bool
	state string // "0 of 2 replicas available", for a person
	// selector picks the object's pods, when it has any.
	selector labels.Selector
	// live is the object as read.
	live *unstructured.Unstructured
}

// check asks the API server how obj stands now.
func (c *cluster) check(ctx context.Context, r ref) (*readiness, error) {
	u, err := c.client(r).Get(ctx, r.Name, metav1.GetOptions{})
	if err != nil {
		return nil, c.explain(err, "reading "+r.String())
	}
	st, err := readinessOf(r, u)
	if st != nil {
		st.live = u
	}
	return st, err
}

func readinessOf(r ref, u *unstructured.Unstructured) (*readiness, error) {
	switch r.Kind {
	case "Namespace":
		var ns corev1.Namespace
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ns); err != nil {
			return nil, err
		}
		return &readiness{ready: ns.Status.Phase == corev1.NamespaceActive, state: "phase " + phase(string(ns.Status.Phase))}, nil
	case "Deployment":
		var d appsv1.Deployment
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return nil, err
		}
		return deploymentReadiness(&d), nil
	case "DaemonSet":
		var d appsv1.DaemonSet
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return nil, err
		}
		return daemonSetReadiness(&d), nil
	}
	return &readiness{ready: true}, nil
}

func phase(p string) string {
	if p == "" {
		return "unknown"
	}
	return p
}

// deploymentReadiness is kubectl rollout status's test: the controller has
// seen this generation, and every wanted replica is updated and available.
func deploymentReadiness(d *appsv1.Deployment) *readiness {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	st := d.Status
	r := &readiness{selector: sel}
	switch {
	case st.ObservedGeneration < d.Generation:
		r.state = unobserved(d.Generation, st.ObservedGeneration)
	case st.UpdatedReplicas < want || st.Replicas > st.UpdatedReplicas || st.AvailableReplicas < want:
		r.state = fmt.Sprintf("%d of %d replicas updated, %d available", st.UpdatedReplicas, want, st.AvailableReplicas)
		for _, cond := range st.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Status == corev1.ConditionFalse {
				r.state += fmt.Sprintf(" (%s: %s)", cond.Reason, cond.Message)
			}
		}
	default:
		r.ready = true
		r.state = fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return r
}

func unobserved(gen, observed int64) string {
	return fmt.Sprintf("its controller has not seen generation %d yet (observed %d: does kube-controller-manager run?)", gen, observed)
}

// daemonSetReadiness: the controller has seen this generation, and a pod
// is updated and available on every node that should run one.
func daemonSetReadiness(d *appsv1.DaemonSet) *readiness {
	sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	st := d.Status
	r := &readiness{selector: sel}
	switch {
	case st.ObservedGeneration < d.Generation:
		r.state = unobserved(d.Generation, st.ObservedGeneration)
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled || st.NumberAvailable < st.DesiredNumberScheduled || st.NumberReady < st.DesiredNumberScheduled:
		r.state = fmt.Sprintf("%d of %d pods ready, %d updated", st.NumberReady, st.DesiredNumberScheduled, st.UpdatedNumberScheduled)
	default:
		r.ready = true
		r.state = fmt.Sprintf("%d of %d pods ready", st.NumberReady, st.DesiredNumberScheduled)
	}
	return r
}

// waitObjects waits until every waitable object is ready, or within
// passes; then the error names each object that is not, and why. It
// returns each waitable object as last read, ready, by key.
func (c *cluster) waitObjects(ctx context.Context, refs []ref, within time.Duration, progress func(string)) (map[string]*unstructured.Unstructured, error) {
	var todo []ref
	for _, r := range refs {
		if waitable(r) {
			todo = append(todo, r)
		}
	}
	ready := map[string]*unstructured.Unstructured{}
	if len(todo) == 0 {
		return ready, nil
	}
	deadline := time.Now().Add(within)
	lastSaid := time.Now()
	for {
		var pending []ref
		var states []*readiness
		for _, r := range todo {
			st, err := c.check(ctx, r)
			if transient(err) && time.Now().Before(deadline) {
				// Asked again at the next poll.
				st, err = &readiness{state: "not read: " + short(err)}, nil
			}
			if err != nil {
				return nil, err
			}
			if !st.ready {
				pending = append(pending, r)
				states = append(states, st)
				continue
			}
			ready[r.key()] = st.live
		}
		if len(pending) == 0 {
			return ready, nil
		}
		todo = pending
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, r := range pending {
				if i > 0 {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "%s is not ready after %s: %s", r, within, states[i].state)
				c.describePods(ctx, &b, r, states[i].selector)
			}
			first := pending[0]
			ns := ""
			if first.Namespace != "" {
				ns = " -n " + first.Namespace
			}
			return nil, sdk.WithHint(&explained{msg: b.String()}, fmt.Sprintf("look closer with kubectl --kubeconfig %s%s describe %s %s; "+
				"if it is only slow, give k8s.apply a longer timeout", c.kubeconfig, ns, strings.ToLower(first.Kind), first.Name))
		}
		if time.Since(lastSaid) >= 2*sayEvery {
			var parts []string
			for i, r := range pending {
				parts = append(parts, fmt.Sprintf("%s: %s", r, states[i].state))
			}
			progress("waiting for " + strings.Join(parts, "; "))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// maxPods and maxEvents bound what an error tells of an object's pods.
const (
	maxPods   = 3
	maxEvents = 5
)

// describePods writes, for an object that is not ready, its pods' phases
// and waiting reasons and the last events of the object, its ReplicaSets
// and its pods: what `kubectl describe` would show first.
func (c *cluster) describePods(ctx context.Context, b *strings.Builder, r ref, sel labels.Selector) {
	names := map[string]bool{r.Name: true}
	if sel != nil && !sel.Empty() {
		opts := metav1.ListOptions{LabelSelector: sel.String()}
		if pods, err := c.dyn.Resource(podsGVR).Namespace(r.Namespace).List(ctx, opts); err == nil {
			if len(pods.Items) == 0 {
				b.WriteString("\n  no pods")
			}
			for i, u := range pods.Items {
				names[u.GetName()] = true
				if i >= maxPods {
					continue
				}
				var p corev1.Pod
				if kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p) == nil {
					fmt.Fprintf(b, "\n  pod %s: %s", p.Name, podState(&p))
				}
			}
			if len(pods.Items) > maxPods {
				fmt.Fprintf(b, "\n  ... and %d more pods", len(pods.Items)-maxPods)
			}
		}
		if r.Kind == "Deployment" {
			if rss, err := c.dyn.Resource(replicaSetsGVR).Namespace(r.Namespace).List(ctx, opts); err == nil {
				for _, u := range rss.Items {
					names[u.GetName()] = true
				}
			}
		}
	}
	evs, err := c.dyn.Resource(eventsGVR).Namespace(r.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	var mine []corev1.Event
	for _, u := range evs.Items {
		var e corev1.Event
		if kruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &e) == nil && names[e.InvolvedObject.Name] {
			mine = append(mine, e)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return eventTime(&mine[i]).Before(eventTime(&mine[j])) })
	var lines []string
	for _, e := range mine {
		l := fmt.Sprintf("\n    %s %s/%s: %s: %s", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, oneLine(e.Message))
		if len(lines) == 0 || lines[len(lines)-1] != l { // a series of one event says it once
			lines = append(lines, l)
		}
	}
	if len(lines) > maxEvents {
		lines = lines[len(lines)-maxEvents:]
	}
	if len(lines) > 0 {
		b.WriteString("\n  last events:" + strings.Join(lines, ""))
	}
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// podState is a pod's phase and why it is not running: the scheduler's
// reason, or each waiting container's.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			s += fmt.Sprintf(" (%s: %s)", cond.Reason, oneLine(cond.Message))
		}
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(", container %s waiting: %s", cs.Name, w.Reason)
			if w.Message != "" {
				s += " (" + oneLine(w.Message) + ")"
			}
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			s += fmt.Sprintf(", container %s exited %d: %s", cs.Name, t.ExitCode, t.Reason)
		}
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
