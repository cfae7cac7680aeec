// Package recipes_test evaluates the recipes and their library: forks,
// parameters and examples, with every builtin and no provider.
package recipes_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
	"github.com/khw-dev/khw/runtime"
)

// recipes is this directory as the recipe root, with every builtin.
func recipes(t *testing.T) *startest.Fixture {
	return startest.NewFixture(t, all.Registry()).UseRoot(".")
}

// shape is what a resource is, without where it was declared.
type shape struct {
	Provider string
	Inputs   string
	Deps     []string
	After    []string
}

func shapes(t *testing.T, r *runtime.Recipe) map[string]shape {
	out := map[string]shape{}
	for _, res := range r.Resources {
		in, err := json.Marshal(res.Inputs)
		if err != nil {
			t.Fatal(err)
		}
		deps := slices.Sorted(slices.Values(res.Deps))
		out[res.Addr()] = shape{res.Provider, string(in), deps, slices.Sorted(slices.Values(res.After))}
	}
	return out
}

// TestThreeMastersForkEqualsSetControllers: the fork and the post's recipe
// with --set controllers=3 declare the same resources with the same inputs.
func TestThreeMastersForkEqualsSetControllers(t *testing.T) {
	partOne := map[string]string{"part": "1"}
	if n := len(recipes(t).MustEval("examples/three-masters.star", partOne).Resources); n != 50 {
		t.Errorf("the fork's Part 1 declares %d resources, want the post's 46 + m3's vm, 3 copies", n)
	}
	post := len(recipes(t).MustEval("hardway.star", nil).Resources)
	fork := shapes(t, recipes(t).MustEval("examples/three-masters.star", nil))
	set := shapes(t, recipes(t).MustEval("hardway.star", map[string]string{"controllers": "3"}))
	// m3: its vm and 3 copies (Part 1); its binaries, etcd certs and
	// Kubernetes files, and 4 services (Part 2).
	if len(fork) != post+4+7 {
		t.Errorf("the fork declares %d resources, want the post's %d + 11 for m3", len(fork), post)
	}
	for addr, s := range fork {
		if !reflect.DeepEqual(set[addr], s) {
			t.Errorf("%s differs:\nfork: %+v\n--set: %+v", addr, s, set[addr])
		}
	}
	for addr := range set {
		if _, ok := fork[addr]; !ok {
			t.Errorf("%s only with --set controllers=3", addr)
		}
	}
}

// TestAThirdControllerFollowsEverywhere: m3 is in the API server's SANs,
// the load balancer's upstreams, and gets the controller files.
func TestAThirdControllerFollowsEverywhere(t *testing.T) {
	r := recipes(t).MustEval("hardway.star", map[string]string{"controllers": "3"})
	vm := r.Resource("vm.m3")
	if vm == nil || vm.Inputs["ip"] != "10.200.1.12" || vm.Inputs["role"] != "controller" {
		t.Fatalf("vm.m3: %+v", vm)
	}
	hosts := r.Resource("pki.cert.kubernetes").Inputs["hosts"].([]any)
	for _, h := range []string{"m1", "10.200.1.10", "m2", "10.200.1.11", "m3", "10.200.1.12", "10.200.1.15"} {
		if !slices.Contains(hosts, any(h)) {
			t.Errorf("the API server certificate lacks %s: %v", h, hosts)
		}
	}
	up := fmt.Sprint(r.Resource("lb.nginx.proxy").Inputs)
	for _, ip := range []string{"10.200.1.10", "10.200.1.11", "10.200.1.12"} {
		if !strings.Contains(up, ip) {
			t.Errorf("the load balancer lacks upstream %s: %s", ip, up)
		}
	}
	for _, c := range []string{"node.copy.m3-certs", "node.copy.m3-kubeconfigs", "node.copy.m3-encryption"} {
		if r.Resource(c) == nil {
			t.Errorf("no %s", c)
		}
	}
	for _, c := range []string{"m1", "m2", "m3"} {
		a, b := fmt.Sprint(r.Resource("node.copy." + c + "-certs").Inputs["files"]), fmt.Sprint(r.Resource("node.copy.m1-certs").Inputs["files"])
		if a != b {
			t.Errorf("%s gets %s, m1 gets %s", c, a, b)
		}
	}
	// Part 2: a third etcd member, in every member's initial cluster and
	// every API server's etcd servers.
	for _, c := range []string{"m1", "m2", "m3"} {
		etcd := r.Resource("node.service." + c + "-etcd")
		if etcd == nil || !strings.Contains(etcd.Inputs["unit"].(string), "--initial-cluster=m1=https://10.200.1.10:2380,m2=https://10.200.1.11:2380,m3=https://10.200.1.12:2380") {
			t.Errorf("%s's etcd does not list the three members: %v", c, etcd)
		}
		api := r.Resource("node.service." + c + "-kube-apiserver")
		if api == nil || !strings.Contains(api.Inputs["unit"].(string), "--etcd-servers=https://10.200.1.10:2379,https://10.200.1.11:2379,https://10.200.1.12:2379") {
			t.Errorf("%s's kube-apiserver does not use the three members", c)
		}
		if api != nil && !slices.Contains(api.After, "node.service.m3-etcd") {
			t.Errorf("%s's kube-apiserver does not start after m3's etcd: %v", c, api.After)
		}
	}
}

// TestWorkersFollowTheTable: a third worker gets the whole of Part 3 and
// its own certificate, and the kubelets' cluster DNS is the service range's
// tenth address.
func TestWorkersFollowTheTable(t *testing.T) {
	r := recipes(t).MustEval("hardway.star", map[string]string{"workers": "3"})
	for _, a := range []string{"node.copy.n3-binaries", "node.copy.n3-cni-plugins", "node.copy.n3-kubelet-files",
		"node.service.n3-containerd", "node.service.n3-kubelet", "node.service.n3-kube-proxy", "node.service.n3-flanneld"} {
		if r.Resource(a) == nil {
			t.Errorf("no %s", a)
		}
	}
	files := r.Resource("node.service.n3-kubelet").Inputs["files"].(map[string]any)
	conf := files["/var/lib/kubelet/kubelet-config.yaml"].(string)
	for _, want := range []string{`- "10.32.0.10"`, `tlsCertFile: "/var/lib/kubelet/n3.pem"`, "cgroupDriver: cgroupfs"} {
		if !strings.Contains(conf, want) {
			t.Errorf("n3's kubelet config lacks %s:\n%s", want, conf)
		}
	}
	dns := fmt.Sprint(r.Resource("k8s.apply.coredns").Inputs["objects"])
	if !strings.Contains(dns, "clusterIP:10.32.0.10") {
		t.Errorf("kube-dns is not at 10.32.0.10: %s", dns)
	}
}

func TestResizingTheTables(t *testing.T) {
	ip := func(r *runtime.Recipe, addr string) any {
		if res := r.Resource(addr); res != nil {
			return res.Inputs["ip"]
		}
		return nil
	}
	// The post's table as written.
	post := recipes(t).MustEval("hardway.star", nil)
	if ip(post, "vm.m1") != "10.200.1.10" || ip(post, "vm.n2") != "10.200.1.14" || post.Resource("vm.m3") != nil {
		t.Fatal("the post's table changed")
	}
	// n3 skips the load balancer's .15; m4 skips the workers and the LB.
	r := recipes(t).MustEval("hardway.star", map[string]string{"workers": "3", "controllers": "4"})
	for addr, want := range map[string]string{"vm.m3": "10.200.1.12", "vm.m4": "10.200.1.16", "vm.n3": "10.200.1.17"} {
		if got := ip(r, addr); got != want {
			t.Errorf("%s at %v, want %s", addr, got, want)
		}
	}
	// Fewer keeps the first.
	r = recipes(t).MustEval("hardway.star", map[string]string{"controllers": "1"})
	if r.Resource("vm.m1") == nil || r.Resource("vm.m2") != nil {
		t.Error("controllers=1 did not keep only m1")
	}
	f := recipes(t)
	f.AssertError("hardway.star", map[string]string{"workers": "300"}, "lib/topology.star", "300 n nodes do not fit in 10.200.1.0/24")
	f.AssertError("hardway.star", map[string]string{"controllers": "-1"}, "lib/topology.star", "whole number")
}

// TestExamples: every example evaluates, and each places its nodes as it says.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("examples/*.star")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		recipes(t).MustEval(f, nil)
	}
	mixed := recipes(t).MustEval("examples/mixed-hypervisors.star", map[string]string{"container_image": "khw/node:local", "image": "/base.qcow2"})
	for addr, want := range map[string]string{"vm.m1": "libvirt", "vm.m2": "libvirt", "vm.n1": "docker", "vm.n2": "docker"} {
		if got := mixed.Resource(addr).Provider; got != want {
			t.Errorf("%s made by %s, want %s", addr, got, want)
		}
	}
	if img := mixed.Resource("vm.n1").Inputs["image"]; img != "khw/node:local" {
		t.Errorf("container node image %v", img)
	}
	if img := mixed.Resource("vm.m1").Inputs["image"]; img != "/base.qcow2" {
		t.Errorf("VM image %v", img)
	}
	hosts := recipes(t).MustEval("examples/two-hosts.star", map[string]string{"hv2_uri": "qemu+ssh://root@hv2/system"})
	uri := func(addr string) any { return hosts.Resource(addr).Inputs["options"].(map[string]any)["uri"] }
	if uri("vm.n1") != "qemu+ssh://root@hv2/system" || uri("vm.m1") != "qemu:///system" {
		t.Errorf("placement: n1 on %v, m1 on %v", uri("vm.n1"), uri("vm.m1"))
	}
}

func TestPlacementErrors(t *testing.T) {
	for set, want := range map[string]string{
		"hypervisor=virtualbox": `unknown hypervisor "virtualbox": the hypervisors are libvirt, docker, none`,
	} {
		k, v, _ := strings.Cut(set, "=")
		recipes(t).AssertError("hardway.star", map[string]string{k: v}, "lib/lab.star", want, "called from hardway.star:")
	}
}
