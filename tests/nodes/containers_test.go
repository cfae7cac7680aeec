package nodes

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// cnodeLab is khw with containers as nodes (hypervisor=docker): the post's
// recipe, its nodes n1 and n2, a private dockerd in a namespace of the
// test's own, and the real node image.
type cnodeLab struct {
	lab            *labtest.Namespace
	bin, work, dkr string
}

func (c *cnodeLab) docker(t *testing.T, args ...string) string {
	t.Helper()
	return labtest.Run(t, "docker", append([]string{"-H", c.dkr}, args...)...)
}

// khw runs khw COMMAND recipes/hardway.star for n1 and n2 as containers.
func (c *cnodeLab) khw(t *testing.T, command string) string {
	t.Helper()
	args := []string{"netns", "exec", c.lab.Name, "env", "KHW_PLUGIN_PATH=", "DOCKER_HOST=" + c.dkr,
		filepath.Join(c.bin, "khw"), command, filepath.Join(labtest.RepoRoot(), "recipes", "hardway.star"),
		"--workdir", c.work, "--set", "hypervisor=docker", "--set", "image=khw/node:local"}
	if command != "destroy" {
		args = append(args, "--target", "vm.n1", "--target", "vm.n2")
	}
	out, err := labtest.Output("ip", args...)
	if err != nil {
		t.Fatalf("khw %s: %v\n%s", command, err, out)
	}
	return out
}

// sshCommand runs script on the node as the recipe's user over OpenSSH,
// with the workspace key and the node's host key, as khw recorded it,
// pinned.
func (c *cnodeLab) sshCommand(t *testing.T, node, script string) *exec.Cmd {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.work, ".khw", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Resources map[string]struct {
			Outputs struct {
				IP      string `json:"ip"`
				HostKey string `json:"host_key"`
			} `json:"outputs"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	o := st.Resources["vm."+node].Outputs
	if o.HostKey == "" {
		t.Fatalf("no host key recorded for vm.%s", node)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(o.IP+" "+o.HostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return exec.Command("ip", "netns", "exec", c.lab.Name, "ssh", "-i", filepath.Join(c.work, "id_ed25519"),
		"-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "veeru@"+o.IP, script)
}

func (c *cnodeLab) ssh(t *testing.T, node, script string) (string, error) {
	t.Helper()
	out, err := c.sshCommand(t, node, script).CombinedOutput()
	return string(out), err
}

func (c *cnodeLab) mustSSH(t *testing.T, node, script string) string {
	t.Helper()
	out, err := c.ssh(t, node, script)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", node, script, err, out)
	}
	return strings.TrimSpace(out)
}

// TestContainerNodesBootSystemd makes n1 and n2 as containers through the
// docker plugin, with the node image built from the guest image's root,
// and checks over ssh what Parts 2-3 need of them: systemd as PID 1 with
// nothing failed, a unit of one's own that runs and logs, writable cgroups
// under the kubelet's root, /dev/kmsg, iptables and conntrack, and
// Debian's containerd as a systemd unit running a container. Then a re-run
// changes nothing, a container removed by hand is made again, and destroy
// leaves no container and no /var volume.
func TestContainerNodesBootSystemd(t *testing.T) {
	c := newCnodeLab(t)

	start := time.Now()
	out := c.khw(t, "run")
	t.Logf("n1 and n2 made side by side in %v", time.Since(start).Round(100*time.Millisecond))
	for _, m := range regexp.MustCompile(`vm\.n\d: (n\d booted in [0-9.]+s: systemd [^\n]*)`).FindAllStringSubmatch(out, -1) {
		t.Log(m[1])
	}
	for _, n := range []string{"n1", "n2"} {
		if !strings.Contains(out, "vm."+n+": created") {
			t.Fatalf("vm.%s was not created:\n%s", n, out)
		}
		checkSystemdNode(t, c, n)
	}
	containerdRuns(t, c, "n1")

	// A re-run changes nothing.
	if out := c.khw(t, "run"); !strings.Contains(out, "No changes.") {
		t.Fatalf("re-run:\n%s", out)
	}
	// A container removed by hand is made again, and boots; n1 is left alone.
	n1 := c.docker(t, "inspect", "-f", "{{.Id}}", "n1")
	c.docker(t, "rm", "-f", "-v", "n2")
	if out := c.khw(t, "run"); !strings.Contains(out, "vm.n2: created") || strings.Contains(out, "vm.n1: ") {
		t.Fatalf("after n2 was removed by hand:\n%s", out)
	}
	if got := c.docker(t, "inspect", "-f", "{{.Id}}", "n1"); got != n1 {
		t.Fatalf("n1 was re-made: %s, was %s", got, n1)
	}
	if s := c.mustSSH(t, "n2", "systemctl is-system-running"); s != "running" {
		t.Fatalf("the re-made n2: systemd is %s", s)
	}

	// destroy removes the containers and their /var volumes.
	if v := strings.Fields(c.docker(t, "volume", "ls", "-q")); len(v) != 2 {
		t.Fatalf("before destroy: %d volumes, want n1's and n2's /var: %v", len(v), v)
	}
	c.khw(t, "destroy")
	if o := strings.TrimSpace(c.docker(t, "ps", "-aq")); o != "" {
		t.Errorf("containers left after destroy: %s", o)
	}
	if o := strings.TrimSpace(c.docker(t, "volume", "ls", "-q")); o != "" {
		t.Errorf("volumes left after destroy: %s", o)
	}
}

// checkSystemdNode: systemd is PID 1 and finished booting with no failed
// unit; a unit written to /etc/systemd/system runs and the journal has its
// output; the kubelet's cgroups take a child; /dev/kmsg reads; iptables
// and conntrack run.
func checkSystemdNode(t *testing.T, c *cnodeLab, n string) {
	t.Helper()
	if p1 := c.mustSSH(t, n, "ps -p 1 -o comm="); p1 != "systemd" {
		t.Errorf("%s: PID 1 is %q", n, p1)
	}
	if s := c.mustSSH(t, n, "systemctl is-system-running"); s != "running" {
		t.Errorf("%s: systemd is %s", n, s)
	}
	if f := c.mustSSH(t, n, "systemctl list-units --failed --plain --no-legend --no-pager"); f != "" {
		t.Errorf("%s: failed units:\n%s", n, f)
	}
	c.mustSSH(t, n, `sudo tee /etc/systemd/system/khw-hello.service >/dev/null <<'EOF'
[Unit]
Description=a unit of the test's
[Service]
ExecStart=/bin/sh -c 'echo "khw-hello from $(hostname)"; exec sleep infinity'
EOF
sudo systemctl daemon-reload && sudo systemctl start khw-hello`)
	if s := c.mustSSH(t, n, "systemctl is-active khw-hello"); s != "active" {
		t.Errorf("%s: khw-hello is %s", n, s)
	}
	var journal string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if journal = c.mustSSH(t, n, "sudo journalctl -u khw-hello -o cat --no-pager"); strings.Contains(journal, "khw-hello from "+n) {
			break
		}
	}
	if !strings.Contains(journal, "khw-hello from "+n) {
		t.Errorf("%s: the journal lacks the unit's output:\n%s", n, journal)
	}
	cg := `set -e
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then d=/sys/fs/cgroup/kubelet; sudo mkdir $d/x; sudo rmdir $d/x; echo v2; exit; fi
for d in /sys/fs/cgroup/*/kubelet; do sudo mkdir $d/x; sudo rmdir $d/x; echo $d; done`
	if out, err := c.ssh(t, n, cg); err != nil || !strings.Contains(out, "/sys/fs/cgroup/memory/kubelet") && !strings.Contains(out, "v2") {
		t.Errorf("%s: a cgroup under /kubelet cannot be made: %v\n%s", n, err, out)
	}
	if out, err := c.ssh(t, n, "sudo timeout 5 head -n 1 /dev/kmsg"); err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("%s: /dev/kmsg does not read: %v\n%s", n, err, out)
	}
	for _, cmd := range []string{"sudo iptables -L -n", "sudo conntrack -L"} {
		if out, err := c.ssh(t, n, cmd); err != nil {
			t.Errorf("%s: %s: %v\n%s", n, cmd, err, out)
		}
	}
}

// containerdRuns copies Debian's containerd and runc (apt-get download,
// dpkg -x) onto the node over ssh with a config.toml for a node in a
// container, starts Debian's containerd.service, imports a busybox image
// made here, and runs a command in a container with ctr.
func containerdRuns(t *testing.T, c *cnodeLab, n string) {
	t.Helper()
	dir := t.TempDir()
	debs, x, stage := filepath.Join(dir, "debs"), filepath.Join(dir, "x"), filepath.Join(dir, "stage")
	for _, d := range []string{debs, x, filepath.Join(stage, "usr/bin"), filepath.Join(stage, "usr/sbin"),
		filepath.Join(stage, "etc/containerd"), filepath.Join(stage, "etc/systemd/system"), filepath.Join(stage, "root"),
		filepath.Join(dir, "bb/bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	get := exec.Command("apt-get", "download", "-o", "APT::Sandbox::User=root", "containerd", "runc", "busybox-static")
	get.Dir = debs
	if out, err := get.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(debs)
	for _, e := range ents {
		labtest.Run(t, "dpkg", "-x", filepath.Join(debs, e.Name()), x)
	}
	for src, dst := range map[string]string{
		"usr/bin/containerd": "usr/bin/", "usr/bin/containerd-shim-runc-v2": "usr/bin/", "usr/bin/ctr": "usr/bin/",
		"usr/sbin/runc": "usr/sbin/", "lib/systemd/system/containerd.service": "etc/systemd/system/", "bin/busybox": "../bb/bin/",
	} {
		labtest.Run(t, "cp", "-a", filepath.Join(x, src), filepath.Join(stage, dst))
	}
	// A node in a container lacks CAP_SYS_RESOURCE: containerd's CRI must
	// not lower oom_score_adj (LAB.md); the kubelet will use cgroupfs.
	conf := `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
`
	if err := os.WriteFile(filepath.Join(stage, "etc/containerd/config.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "bb/bin/sh")); err != nil {
		t.Fatal(err)
	}
	const image = "docker.io/library/khw-busybox:latest"
	labtest.Run(t, "bash", "-c", fmt.Sprintf("tar -C %s/bb -c . | docker -H %s import - %s", dir, c.dkr, image))
	c.docker(t, "save", "-o", filepath.Join(stage, "root/khw-busybox.tar"), image)
	tarball := filepath.Join(dir, "stage.tar")
	labtest.Run(t, "tar", "-C", stage, "-cf", tarball, ".")
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cp := c.sshCommand(t, n, "sudo tar -C / -x")
	cp.Stdin = f
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copying containerd to %s: %v\n%s", n, err, out)
	}

	c.mustSSH(t, n, "sudo systemctl daemon-reload && sudo systemctl start containerd")
	if s := c.mustSSH(t, n, "systemctl is-active containerd"); s != "active" {
		t.Fatalf("%s: containerd is %s:\n%s", n, s, c.mustSSH(t, n, "sudo journalctl -u containerd --no-pager | tail -20"))
	}
	c.mustSSH(t, n, "sudo ctr -n k8s.io images import /root/khw-busybox.tar")
	out := c.mustSSH(t, n, "sudo ctr -n k8s.io run --rm "+image+" t1 /bin/busybox sh -c 'echo hello from a container in $(cat /proc/self/cgroup | grep memory)'")
	if !strings.Contains(out, "hello from a container in") || !strings.Contains(out, "/k8s.io/t1") {
		t.Fatalf("%s: ctr run said:\n%s", n, out)
	}
	t.Logf("%s: containerd.service ran a container: %s", n, out)
}
