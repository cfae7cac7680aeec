package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// startLab brings a lab up from nothing with env (KHW_LAB_RECIPE, ...) and
// the khw run flags, and takes it down when the test ends.
func startLab(t *testing.T, env []string, flags ...string) {
	t.Helper()
	labtest.RequireRoot(t)
	_, _ = lab(t, "down")
	_ = os.RemoveAll(workdir)
	t.Cleanup(func() {
		if out, err := labEnv(t, env, "down"); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := labEnv(t, env, append([]string{"up"}, flags...)...)
	t.Logf("lab up: %v\n%s", time.Since(start).Round(time.Second), labtest.Tail(out, 25))
	if err != nil || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("lab up failed: %v", err)
	}
}

// khwIn runs khw in the lab on env's recipe and wants "No changes.".
func noChanges(t *testing.T, what string, env []string, flags ...string) {
	t.Helper()
	out, err := labEnv(t, env, append([]string{"khw", "run"}, flags...)...)
	if err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("%s: %v\n%s", what, err, labtest.Tail(out, 30))
	}
}

// TestThreeMastersFork: recipes/examples/three-masters.star in the lab,
// with containers as nodes (the nodes' kind is not what this checks, and
// containers come up in seconds): the API server certificate lists m1-m3,
// nginx has three upstreams, each controller holds the controller files.
// Then the post's recipe with --set controllers=3, on the same lab and
// state, has nothing to change: the fork and the parameter are one lab.
func TestThreeMastersFork(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the lab runs with KHW_E2E=1 (make e2e)")
	}
	containers := []string{"--set", "hypervisor=docker", "--set", "image=khw/node:local"}
	fork := []string{"KHW_LAB_RECIPE=recipes/examples/three-masters.star"}
	startLab(t, fork, containers...)

	for _, n := range []string{"m1", "m2", "m3", "n1", "n2"} {
		checkNode(t, n)
	}
	san, err := exec.Command("openssl", "x509", "-in", filepath.Join(workdir, "kubernetes.pem"), "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, san)
	}
	for _, want := range []string{"DNS:m1", "DNS:m2", "DNS:m3", "IP Address:10.200.1.10", "IP Address:10.200.1.11", "IP Address:10.200.1.12", "IP Address:10.200.1.15"} {
		if !strings.Contains(string(san)+",", want+",") && !strings.HasSuffix(strings.TrimSpace(string(san)), want) {
			t.Errorf("the API server certificate lacks %s:\n%s", want, san)
		}
	}
	conf, err := lab(t, "docker", "exec", "proxy", "/usr/sbin/nginx", "-T", "-c", "/etc/khw/nginx.conf")
	if err != nil {
		t.Fatalf("nginx -T: %v\n%s", err, conf)
	}
	// The upstream that both 6443 and 443 proxy to lists the three controllers.
	servers := regexp.MustCompile(`server (10\.200\.1\.\d+):6443;`).FindAllStringSubmatch(conf, -1)
	count := map[string]int{}
	for _, m := range servers {
		count[m[1]]++
	}
	if len(count) != 3 || count["10.200.1.10"] == 0 || count["10.200.1.11"] == 0 || count["10.200.1.12"] == 0 {
		t.Errorf("nginx upstreams %v, want m1-m3:\n%s", count, conf)
	}
	t.Logf("nginx upstream servers: %v", count)

	noChanges(t, "re-run of the fork", fork, containers...)
	post := []string{"KHW_LAB_RECIPE=recipes/hardway.star"}
	noChanges(t, "the post's recipe with --set controllers=3 on the fork's lab", post, append(containers, "--set", "controllers=3")...)

	if out, err := labEnv(t, post, append([]string{"khw", "destroy"}, append(containers, "--set", "controllers=3")...)...); err != nil {
		t.Fatalf("destroy: %v\n%s", err, labtest.Tail(out, 30))
	}
	if o, _ := lab(t, "docker", "ps", "-aq"); strings.TrimSpace(o) != "" {
		t.Errorf("containers left after destroy: %s", o)
	}
}

// TestTwoHypervisorHosts: recipes/examples/two-hosts.star puts the
// controllers on the lab's libvirtd and the workers on a second libvirtd
// in its own namespace, reached through qemu+tcp://; both halves share
// one subnet through the link khw attaches to br0. Every node answers ssh
// with its files; destroy cleans both hosts.
func TestTwoHypervisorHosts(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the lab runs with KHW_E2E=1 (make e2e)")
	}
	env := []string{"KHW_LAB_HOSTS=2", "KHW_LAB_RECIPE=recipes/examples/two-hosts.star"}
	flags := []string{"--set", "bridge_ports=hv2-link"}
	startLab(t, env, flags...)

	for _, n := range post {
		checkNode(t, n)
	}
	names := func(args ...string) string {
		o, _ := lab(t, args...)
		f := strings.Fields(o)
		sort.Strings(f)
		return strings.Join(f, " ")
	}
	local, remote := names("exec", "virsh", "list", "--name"), names("virsh2", "list", "--name")
	t.Logf("local libvirtd runs: %s; the second host's runs: %s", local, remote)
	if local != "m1 m2" || remote != "n1 n2" {
		t.Fatalf("placement: local %q, second host %q; want m1 m2 and n1 n2", local, remote)
	}
	noChanges(t, "re-run", env, flags...)

	if out, err := labEnv(t, env, append([]string{"khw", "destroy"}, flags...)...); err != nil {
		t.Fatalf("destroy: %v\n%s", err, labtest.Tail(out, 30))
	}
	for _, virsh := range [][]string{{"exec", "virsh"}, {"virsh2"}} {
		args, where := virsh[:len(virsh):len(virsh)], strings.Join(virsh, " ")
		if o, _ := lab(t, append(args, "list", "--all", "--name")...); strings.TrimSpace(o) != "" {
			t.Errorf("%s: domains left after destroy: %s", where, o)
		}
		if o, _ := lab(t, append(args, "vol-list", "khw")...); strings.Contains(o, ".qcow2") || strings.Contains(o, "seed.iso") {
			t.Errorf("%s: volumes left after destroy:\n%s", where, o)
		}
	}
	if out, err := labEnv(t, env, "down"); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if o, _ := labtest.Output("ip", "netns", "list"); strings.Contains(o, "khw-lab") || strings.Contains(o, "khw-hv2") {
		t.Errorf("namespaces left after lab down:\n%s", o)
	}
}
