package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// background starts scripts/lab.sh khw ARGS... and returns its output and
// a function that waits for it to end.
func background(t *testing.T, args ...string) (*labtest.Buffer, func() error) {
	t.Helper()
	out := &labtest.Buffer{}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "lab.sh"), "khw"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), partOneLab...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return out, func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Minute):
			t.Fatalf("khw did not end:\n%s", labtest.Tail(out.String(), 20))
			return nil
		}
	}
}

// waitOutput polls until the run has printed what.
func waitOutput(t *testing.T, out *labtest.Buffer, what string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(out.String(), what) {
			return
		}
	}
	t.Fatalf("the run never printed %q:\n%s", what, labtest.Tail(out.String(), 20))
}

// killKhw sends SIGKILL to the running khw (there is one).
func killKhw(t *testing.T) {
	t.Helper()
	pid, err := labtest.Output("pgrep", "-n", "-f", filepath.Join(root, "bin", "khw")+" run")
	if err != nil {
		t.Fatalf("no khw run to kill: %v", err)
	}
	if o, err := labtest.Output("kill", "-9", strings.TrimSpace(pid)); err != nil {
		t.Fatalf("kill: %v %s", err, o)
	}
}

// noPluginLeft: no plugin process of this checkout outlives khw.
func noPluginLeft(t *testing.T) {
	t.Helper()
	if o := labtest.Lingering(filepath.Join(root, "bin", "khw-plugin-"), 5*time.Second); o != "" {
		t.Fatalf("plugins outlived khw:\n%s", o)
	}
}

// count is how many lines of a command's output equal name.
func count(t *testing.T, name string, args ...string) int {
	t.Helper()
	o, _ := lab(t, args...)
	n := 0
	for _, l := range strings.Fields(o) {
		if l == name {
			n++
		}
	}
	return n
}

// faultsDuringVMCreation runs on the live libvirt lab: khw killed with
// SIGKILL while m2 boots, then libvirtd killed and restarted while m2
// boots. Each time: no plugin left behind, and the next run finishes with
// one m2, one set of its volumes, and its files.
func faultsDuringVMCreation(t *testing.T, flags []string) {
	if out, err := lab(t, "exec", "sh", "-c", "virsh destroy m2 && virsh undefine m2"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, wait := background(t, append([]string{"run"}, flags...)...)
	waitOutput(t, out, "vm.m2: booting")
	killKhw(t)
	_ = wait()
	noPluginLeft(t)
	t.Logf("khw killed while m2 booted:\n%s", labtest.Tail(out.String(), 3))

	out, wait = background(t, append([]string{"run"}, flags...)...)
	waitOutput(t, out, "vm.m2: booting")
	if o, err := lab(t, "restart", "libvirtd"); err != nil {
		t.Fatalf("restarting libvirtd: %v\n%s", err, o)
	}
	err := wait()
	msg := out.String()
	t.Logf("libvirtd restarted while m2 booted; khw said:\n%s", labtest.Tail(msg, 6))
	if err == nil {
		t.Fatal("the run went on as if libvirtd had not been restarted")
	}
	for _, want := range []string{"vm.m2 (", "hardway.star:", "hint: the connection to libvirtd", "was libvirtd restarted?"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q", want)
		}
	}
	noPluginLeft(t)

	// The run libvirtd's restart broke was replacing m2: it deleted the
	// old domain (and recorded that) before the new one failed to boot, so
	// this run creates m2; had it failed before the delete, it replaces.
	final, err := lab(t, append([]string{"khw", "run"}, flags...)...)
	if err != nil || !(strings.Contains(final, "vm.m2: replaced") || strings.Contains(final, "vm.m2: created")) {
		t.Fatalf("the run after the faults: %v\n%s", err, labtest.Tail(final, 30))
	}
	if n := count(t, "m2", "exec", "virsh", "list", "--all", "--name"); n != 1 {
		t.Errorf("%d domains named m2", n)
	}
	for _, vol := range []string{"m2.qcow2", "m2-seed.iso"} {
		if n := count(t, vol, "exec", "virsh", "vol-list", "khw"); n != 1 {
			t.Errorf("%d volumes named %s after the faults", n, vol)
		}
	}
	checkNode(t, "m2")
	if out, err := lab(t, append([]string{"khw", "run"}, flags...)...); err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("the run after that: %v\n%s", err, labtest.Tail(out, 20))
	}
}

// killedDuringTheLoadBalancer runs on a live lab with the docker plugin:
// the LB container is removed by hand, khw is killed while it makes it
// again, and the next run finishes with one LB that serves.
func killedDuringTheLoadBalancer(t *testing.T, flags []string) {
	if o, err := lab(t, "docker", "rm", "-f", "proxy"); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	out, wait := background(t, append([]string{"run"}, flags...)...)
	waitOutput(t, out, "lb.nginx.proxy:")
	killKhw(t)
	_ = wait()
	noPluginLeft(t)
	t.Logf("khw killed while it made the load balancer:\n%s", labtest.Tail(out.String(), 3))
	if o, err := lab(t, append([]string{"khw", "run"}, flags...)...); err != nil {
		t.Fatalf("the run after the kill: %v\n%s", err, labtest.Tail(o, 20))
	}
	if n := count(t, "proxy", "docker", "ps", "-a", "--format", "{{.Names}}"); n != 1 {
		t.Errorf("%d containers named proxy", n)
	}
	if conf, err := lab(t, "docker", "exec", "proxy", "/usr/sbin/nginx", "-T", "-c", "/etc/khw/nginx.conf"); err != nil || !strings.Contains(conf, "server 10.200.1.10:6443;") {
		t.Errorf("the load balancer after the kill: %v\n%s", err, conf)
	}
	if o, err := lab(t, append([]string{"khw", "run"}, flags...)...); err != nil || !strings.Contains(o, "No changes.") {
		t.Fatalf("the run after that: %v\n%s", err, labtest.Tail(o, 20))
	}
}
