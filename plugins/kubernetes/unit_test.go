package main

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/khw-dev/khw/plugins/sdk"
)

func obj(kind, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": kind, "metadata": map[string]any{"name": name}}}
}

func TestApplyOrderPutsNamespacesFirst(t *testing.T) {
	objs := []*unstructured.Unstructured{obj("ServiceAccount", "a"), obj("CustomResourceDefinition", "c"),
		obj("ConfigMap", "b"), obj("Namespace", "n"), obj("Namespace", "m")}
	var got []string
	for _, i := range applyOrder(objs) {
		got = append(got, objs[i].GetName())
	}
	if strings.Join(got, "") != "nmcab" {
		t.Fatalf("order = %v", got)
	}
}

func TestChangedLooksOnlyAtWhatTheManifestSets(t *testing.T) {
	manifest := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "a", "labels": map[string]any{"x": "1"}}, "data": map[string]any{"k": "v"}}}
	want := manifest.DeepCopy()
	want.SetResourceVersion("7")
	want.SetAnnotations(map[string]string{"someone": "else"})
	live := want.DeepCopy()
	live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
	live.Object["binaryData"] = map[string]any{"z": "eg=="} // not the manifest's
	if got := changed(manifest, want, live); len(got) != 0 {
		t.Fatalf("changed = %v", got)
	}
	live.Object["data"] = map[string]any{"k": "w", "new": "x"}
	live.SetLabels(nil)
	if got := strings.Join(changed(manifest, want, live), ","); got != "data.k,data.new,metadata.labels" {
		t.Fatalf("changed = %s", got)
	}
}

func TestDeploymentReadiness(t *testing.T) {
	two := int32(2)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.DeploymentSpec{Replicas: &two,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "dns"}}}}
	for _, tc := range []struct {
		st    appsv1.DeploymentStatus
		ready bool
		state string
	}{
		{appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 2, Replicas: 2, AvailableReplicas: 2}, false, "has not seen generation 2 yet (observed 1"},
		{appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 2, Replicas: 3, AvailableReplicas: 2}, false, "2 of 2 replicas updated, 2 available"},
		{appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 2, Replicas: 2, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "too slow"}}},
			false, "1 available (ProgressDeadlineExceeded: too slow)"},
		{appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 2, Replicas: 2, AvailableReplicas: 2}, true, "2 of 2 replicas available"},
	} {
		d.Status = tc.st
		r := deploymentReadiness(d)
		if r.ready != tc.ready || !strings.Contains(r.state, tc.state) || r.selector.String() != "app=dns" {
			t.Errorf("%+v: ready %v, %q, selector %s", tc.st, r.ready, r.state, r.selector)
		}
	}
}

func TestDaemonSetReadiness(t *testing.T) {
	d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	d.Status = appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 2}
	if r := daemonSetReadiness(d); r.ready || r.state != "1 of 2 pods ready, 2 updated" {
		t.Errorf("%+v", r)
	}
	d.Status = appsv1.DaemonSetStatus{ObservedGeneration: 1}
	if r := daemonSetReadiness(d); !r.ready {
		t.Errorf("a DaemonSet with no node to run on is not ready: %+v", r)
	}
}

func TestPodState(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
		{Name: "coredns", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling\n image"}}},
		{Name: "sidecar", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}},
	}}}
	want := "Pending, container coredns waiting: ImagePullBackOff (Back-off pulling image), container sidecar exited 1: Error"
	if got := podState(p); got != want {
		t.Fatalf("podState = %q", got)
	}
}

func TestDecode(t *testing.T) {
	res := func(cfg string) *sdk.Resource {
		return &sdk.Resource{Type: "k8s.apply", Address: "k8s.apply.x", Config: json.RawMessage(cfg)}
	}
	c, err := decode(res(`{"kubeconfig": "admin.kubeconfig", "objects": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}]}`))
	if err != nil || !*c.Wait || c.TimeoutS != 300 || c.kubeconfigPath("/w") != "/w/admin.kubeconfig" {
		t.Fatalf("%+v, %v", c, err)
	}
	for cfg, want := range map[string]string{
		`{"objects": [{}]}`:                                 "kubeconfig is empty",
		`{"kubeconfig": "k", "objects": []}`:                "objects is empty",
		`{"kubeconfig": "k", "objects": 3}`:                 "bad configuration",
		`{"kubeconfig": "k", "objects": [{"kind": "Pod"}]}`: "object 1 lacks apiVersion, kind or metadata.name",
		`{"kubeconfig": "k", "timeout_s": 5000, "objects": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}]}`: "timeout_s 5000",
	} {
		if _, err := decode(res(cfg)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", cfg, err, want)
		}
	}
}

func TestFailedChecks(t *testing.T) {
	body := "[+]ping ok\n[+]etcd ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n" +
		"[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld\nreadyz check failed\n"
	got := strings.Join(failedChecks(body), " ")
	if got != "poststarthook/rbac/bootstrap-roles poststarthook/scheduling/bootstrap-system-priority-classes" {
		t.Fatalf("failedChecks = %q", got)
	}
}

func TestSome(t *testing.T) {
	if got := some([]string{"a", "b", "c"}, 2); got != "a, b and 1 more" {
		t.Errorf("some = %q", got)
	}
	if got := some([]string{"a", "b"}, 2); got != "a, b" {
		t.Errorf("some = %q", got)
	}
}
