// Package lab is the end-to-end test of the post's lab (make e2e): the
// bridge and NAT in a network namespace, four VMs booted through libvirtd
// under qemu, every file copied over ssh, then re-run, repair, dry-run and
// destroy, each checked against the real world.
package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/runtime"
)

var (
	root    = labtest.RepoRoot()
	workdir = envOr("KHW_LAB_WORKDIR", "/var/lib/khw/lab")
)

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// nodes are the addresses of every node a lab test makes; post lists the
// post's four.
var (
	nodes = map[string]string{"m1": "10.200.1.10", "m2": "10.200.1.11", "m3": "10.200.1.12", "n1": "10.200.1.13", "n2": "10.200.1.14"}
	post  = []string{"m1", "m2", "n1", "n2"}
)

func roleFiles(node string) []string {
	if strings.HasPrefix(node, "m") {
		return []string{"ca.pem", "ca-key.pem", "kubernetes-key.pem", "kubernetes.pem", "service-account-key.pem",
			"service-account.pem", "admin.kubeconfig", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig",
			"encryption-config.yaml"}
	}
	return []string{"ca.pem", node + "-key.pem", node + ".pem", node + ".kubeconfig", "kube-proxy.kubeconfig"}
}

// partOneLab: these labs are the post's Part 1, on VMs under emulation
// unless a test asks for containers (tests/cluster runs Parts 2 and 3).
var partOneLab = []string{"KHW_LAB_PARAMS=--set part=1", "KHW_ACCEL=qemu"}

func lab(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return labEnv(t, nil, args...)
}

// labEnv runs scripts/lab.sh with more environment, e.g. KHW_LAB_RECIPE.
func labEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "lab.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), partOneLab...), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// targets leaves out the load balancer while the docker plugin is missing.
func targets() []string {
	if _, err := os.Stat(filepath.Join(root, "bin", "khw-plugin-docker")); err == nil {
		return nil
	}
	var out []string
	for _, p := range []string{"net.", "ssh.", "vm.", "pki.", "kubeconfig.", "encryption.", "node."} {
		out = append(out, "--target", p)
	}
	return out
}

func state(t *testing.T) *runtime.State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(workdir, ".khw", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := runtime.ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ssh runs a command on a node as the post's user, checking the host key
// against the one khw gave the VM through cloud-init.
func ssh(t *testing.T, node, command string) string {
	t.Helper()
	var out struct {
		HostKey string `json:"host_key"`
	}
	_ = json.Unmarshal(state(t).Resources["vm."+node].Outputs, &out)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	_ = os.WriteFile(kh, []byte(nodes[node]+" "+out.HostKey+"\n"), 0o600)
	o, err := lab(t, "exec", "ssh", "-i", filepath.Join(workdir, "id_ed25519"), "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "veeru@"+nodes[node], command)
	if err != nil {
		t.Fatalf("ssh %s %q: %v\n%s", node, command, err, o)
	}
	return o
}

func checkNode(t *testing.T, node string) {
	t.Helper()
	if h := strings.TrimSpace(ssh(t, node, "hostname")); h != node {
		t.Errorf("%s: hostname %q", node, h)
	}
	if r := ssh(t, node, "ip route show default"); !strings.Contains(r, "default via 10.200.1.1 dev eth0") {
		t.Errorf("%s: default route %q, want via the bridge 10.200.1.1", node, r)
	}
	files := roleFiles(node)
	out := ssh(t, node, "cd ~ && ls -A | grep -v '^\\.' ; echo --; sha256sum "+strings.Join(files, " ")+"; echo --; stat -c '%n %a' "+strings.Join(files, " "))
	parts := strings.Split(out, "--\n")
	if len(parts) != 3 {
		t.Fatalf("%s: unexpected output:\n%s", node, out)
	}
	have := strings.Fields(parts[0])
	sort.Strings(have)
	want := append([]string(nil), files...)
	sort.Strings(want)
	if strings.Join(have, " ") != strings.Join(want, " ") {
		t.Errorf("%s holds %v, want exactly %v", node, have, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(parts[1]), "\n") {
		f := strings.Fields(line)
		b, _ := exec.Command("sha256sum", filepath.Join(workdir, f[1])).Output()
		if len(f) != 2 || !strings.HasPrefix(string(b), f[0]) {
			t.Errorf("%s: %s differs from the workdir's", node, line)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(parts[2]), "\n") {
		f := strings.Fields(line)
		want := "644"
		if strings.Contains(f[0], "key") || strings.HasSuffix(f[0], ".kubeconfig") || f[0] == "encryption-config.yaml" {
			want = "600"
		}
		if f[1] != want {
			t.Errorf("%s: %s has mode %s, want %s", node, f[0], f[1], want)
		}
	}
}

// snapshot is what a dry run must not change.
func snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"exec", "virsh", "list", "--all", "--uuid"}, {"exec", "virsh", "vol-list", "khw"}, {"exec", "virsh", "pool-list", "--all"},
		{"exec", "iptables-save"}, {"exec", "ip", "-br", "link"}, {"exec", "ip", "-br", "addr"},
	} {
		o, _ := lab(t, args...)
		if args[1] == "iptables-save" {
			var keep []string
			for _, l := range strings.Split(o, "\n") {
				if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ":") {
					keep = append(keep, l)
				}
			}
			o = strings.Join(keep, "\n")
		}
		fmt.Fprintf(&b, "== %v\n%s\n", args, o)
	}
	_ = filepath.Walk(workdir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

func TestThePostsLab(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the full lab runs with KHW_E2E=1 (make e2e)")
	}
	labtest.RequireRoot(t)
	_, _ = lab(t, "down")
	_ = os.RemoveAll(workdir)
	t.Cleanup(func() {
		out, err := lab(t, "down")
		if err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})

	start := time.Now()
	out, err := lab(t, append([]string{"up"}, targets()...)...)
	t.Logf("lab up: %v\n%s", time.Since(start).Round(time.Second), labtest.Tail(out, 40))
	if err != nil {
		t.Fatalf("lab up failed: %v", err)
	}
	if !strings.Contains(out, "Apply complete!") {
		t.Fatal("khw run did not complete")
	}
	for _, node := range post {
		checkNode(t, node)
	}
	if targets() == nil {
		// The load balancer: nginx in front of both controllers.
		conf, err := lab(t, "docker", "exec", "proxy", "/usr/sbin/nginx", "-T", "-c", "/etc/khw/nginx.conf")
		if err != nil || !strings.Contains(conf, "server 10.200.1.10:6443;") || !strings.Contains(conf, "server 10.200.1.11:6443;") {
			t.Fatalf("the load balancer: %v\n%s", err, conf)
		}
		if o, _ := lab(t, "docker", "network", "inspect", "br0"); !strings.Contains(o, `"10.200.1.15/24"`) {
			t.Errorf("proxy is not at 10.200.1.15 on br0:\n%s", o)
		}
	}

	// The whole recipe, untargeted: while the docker plugin is missing, the
	// load balancer and its Docker network are the only steps reported.
	if targets() != nil {
		out, err := lab(t, "khw", "run")
		if err == nil {
			t.Fatal("the full recipe succeeded without the docker plugin")
		}
		var failed []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, " failed after ") || strings.Contains(line, "(an earlier step failed)") {
				failed = append(failed, strings.Fields(line)[0])
			}
		}
		sort.Strings(failed)
		if strings.Join(failed, " ") != "docker.network.br0: lb.nginx.proxy:" ||
			!strings.Contains(out, `plugin "docker" is not installed`) {
			t.Fatalf("steps reported missing: %v\n%s", failed, labtest.Tail(out, 20))
		}
	}

	// Re-run on the live lab: nothing to do.
	out, err = lab(t, append([]string{"khw", "run"}, targets()...)...)
	if err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("re-run: %v\n%s", err, labtest.Tail(out, 30))
	}

	// A dry run changes nothing: libvirt, files, kernel state.
	before := snapshot(t)
	if out, err := lab(t, append([]string{"khw", "run", "--dry-run"}, targets()...)...); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if after := snapshot(t); after != before {
		t.Fatalf("the dry run changed the lab:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// A VM destroyed by hand comes back, with its files, and only it.
	if out, err := lab(t, "exec", "sh", "-c", "virsh destroy m2 && virsh undefine m2"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = lab(t, append([]string{"khw", "run"}, targets()...)...)
	if err != nil {
		t.Fatalf("repair: %v\n%s", err, labtest.Tail(out, 30))
	}
	for _, want := range []string{"vm.m2: created", "node.copy.m2-certs: updated", "node.copy.m2-kubeconfigs: updated", "node.copy.m2-encryption: updated"} {
		if !strings.Contains(out, want) {
			t.Errorf("repair output lacks %q:\n%s", want, labtest.Tail(out, 30))
		}
	}
	for _, other := range []string{"vm.m1", "vm.n1", "vm.n2", "node.copy.m1-"} {
		if strings.Contains(out, other+": ") && !strings.Contains(out, other+": no") {
			t.Errorf("repair touched %s:\n%s", other, labtest.Tail(out, 30))
		}
	}
	checkNode(t, "m2")

	// Faults: khw killed, libvirtd restarted, each while a VM boots.
	faultsDuringVMCreation(t, targets())

	// Destroy leaves nothing.
	if out, err := lab(t, append([]string{"khw", "destroy"}, targets()...)...); err != nil {
		t.Fatalf("destroy: %v\n%s", err, labtest.Tail(out, 30))
	}
	for args, bad := range map[string]string{
		"virsh list --all --name": "m", "virsh vol-list khw": ".qcow2", "ip -br link": "vnet", "iptables-save": "khw:",
	} {
		o, _ := lab(t, append([]string{"exec"}, strings.Fields(args)...)...)
		if strings.Contains(o, bad) || (args == "ip -br link" && strings.Contains(o, "br0")) {
			t.Errorf("after destroy, %s still shows %q:\n%s", args, bad, o)
		}
	}
	if o, _ := lab(t, "exec", "virsh", "vol-list", "khw"); strings.Contains(o, "seed.iso") {
		t.Errorf("a seed ISO is left:\n%s", o)
	}
	if targets() == nil {
		if o, _ := lab(t, "docker", "ps", "-aq"); strings.TrimSpace(o) != "" {
			t.Errorf("containers left after destroy: %s", o)
		}
		if o, _ := lab(t, "docker", "network", "ls", "--format", "{{.Name}}"); strings.Contains(o, "br0") {
			t.Errorf("the Docker network is left after destroy")
		}
	}
	if out, err := lab(t, "down"); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if o, _ := labtest.Output("ip", "netns", "list"); strings.Contains(o, "khw-lab") || strings.Contains(o, "khw-wan") {
		t.Errorf("namespaces left after lab down:\n%s", o)
	}
	if o, _ := labtest.Output("pgrep", "-a", "qemu-system"); strings.TrimSpace(o) != "" {
		t.Errorf("qemu still runs after lab down:\n%s", o)
	}
}

// TestThePostsLabWithContainers runs the whole post with containers as
// nodes (hypervisor=docker): the same recipe, one parameter changed.
func TestThePostsLabWithContainers(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the lab runs with KHW_E2E=1 (make e2e)")
	}
	labtest.RequireRoot(t)
	if targets() != nil {
		t.Fatal("khw-plugin-docker is not built")
	}
	_, _ = lab(t, "down")
	_ = os.RemoveAll(workdir)
	t.Cleanup(func() { _, _ = lab(t, "down") })
	docker := []string{"--set", "hypervisor=docker", "--set", "image=khw/node:local"}

	start := time.Now()
	out, err := lab(t, append([]string{"up"}, docker...)...)
	t.Logf("lab up with containers: %v\n%s", time.Since(start).Round(time.Second), labtest.Tail(out, 30))
	if err != nil || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("lab up failed: %v", err)
	}
	for _, node := range post {
		checkNode(t, node)
		if o, _ := lab(t, "docker", "inspect", "-f", "{{.Config.Hostname}} {{.State.Running}}", node); strings.TrimSpace(o) != node+" true" {
			t.Errorf("%s is not a running container: %q", node, o)
		}
	}
	out, err = lab(t, append([]string{"khw", "run"}, docker...)...)
	if err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("re-run: %v\n%s", err, labtest.Tail(out, 30))
	}
	before := snapshot(t)
	if out, err := lab(t, append([]string{"khw", "run", "--dry-run"}, docker...)...); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if after := snapshot(t); after != before {
		t.Fatal("the dry run changed the lab")
	}
	killedDuringTheLoadBalancer(t, docker)
	if out, err := lab(t, append([]string{"khw", "destroy"}, docker...)...); err != nil {
		t.Fatalf("destroy: %v\n%s", err, labtest.Tail(out, 30))
	}
	if o, _ := lab(t, "docker", "ps", "-aq"); strings.TrimSpace(o) != "" {
		t.Errorf("containers left after destroy: %s", o)
	}
	if o, _ := lab(t, "exec", "ip", "-br", "link"); strings.Contains(o, "br0") {
		t.Errorf("br0 left after destroy:\n%s", o)
	}
}
