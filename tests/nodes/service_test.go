package nodes

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
)

// TestServiceOnASystemdNode is node.service against real systemd, on a
// container node: created and waited for until healthy; a second run
// changes nothing; a service stopped by hand and a file edited by hand are
// planned as drift and repaired; a changed flag restarts it; a service
// that cannot start fails within its health timeout with its errors and
// the end of its log; destroy removes the unit and its files.
func TestServiceOnASystemdNode(t *testing.T) {
	c := newCnodeLab(t)
	run := func(args ...string) (string, error) {
		t.Helper()
		full := append([]string{"netns", "exec", c.lab.Name, "env", "KHW_PLUGIN_PATH=", "DOCKER_HOST=" + c.dkr,
			filepath.Join(c.bin, "khw")}, args...)
		full = append(full, filepath.Join(labtest.RepoRoot(), "tests", "nodes", "testdata", "service.star"),
			"--root", filepath.Join(labtest.RepoRoot(), "recipes"), "--workdir", c.work,
			"--set", "hypervisor=docker", "--set", "image=khw/node:local", "--set", "hosts_file="+filepath.Join(c.work, "hosts"))
		if args[0] != "destroy" {
			full = append(full, "--target", "vm.n1", "--target", "node.service.n1-khw-test")
		}
		return labtest.Output("ip", full...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("khw %v: %v\n%s", args, err, out)
		}
		return out
	}
	started := func() string {
		return c.mustSSH(t, "n1", "systemctl show -p ActiveEnterTimestampMonotonic --value khw-test")
	}

	out := must("run")
	if !strings.Contains(out, "node.service.n1-khw-test: created") {
		t.Fatalf("first run:\n%s", out)
	}
	if s := c.mustSSH(t, "n1", "systemctl is-active khw-test; systemctl is-enabled khw-test; cat /etc/khw-test/config.yaml"); s != "active\nenabled\ngreeting: hello" {
		t.Fatalf("after the run: %q", s)
	}
	if j := c.mustSSH(t, "n1", "sudo journalctl -u khw-test -o cat --no-pager"); !strings.Contains(j, "khw-test says hello") {
		t.Errorf("the service's journal: %s", j)
	}
	if out := must("run"); !strings.Contains(out, "No changes.") {
		t.Fatalf("second run:\n%s", out)
	}

	// Stopped by hand: drift, started again.
	c.mustSSH(t, "n1", "sudo systemctl stop khw-test")
	if out := must("plan"); !strings.Contains(out, "drift: khw-test is not running on n1 (inactive)") {
		t.Fatalf("plan after a stop by hand:\n%s", out)
	}
	must("run")
	if s := c.mustSSH(t, "n1", "systemctl is-active khw-test"); s != "active" {
		t.Fatalf("after the repair: %s", s)
	}

	// A file edited by hand: drift, written back, the service restarted.
	before := started()
	c.mustSSH(t, "n1", "echo 'greeting: edited' | sudo tee /etc/khw-test/config.yaml >/dev/null")
	if out := must("plan"); !strings.Contains(out, "drift: /etc/khw-test/config.yaml changed on n1") {
		t.Fatalf("plan after an edit by hand:\n%s", out)
	}
	must("run")
	if s := c.mustSSH(t, "n1", "cat /etc/khw-test/config.yaml"); s != "greeting: hello" {
		t.Fatalf("the file after the repair: %q", s)
	}
	if after := started(); after == before {
		t.Errorf("the repair did not restart the service (started %s)", after)
	}

	// A new flag: an update in place, and a restart.
	before = started()
	out = must("run", "--set", "greeting=hola")
	if !strings.Contains(out, "node.service.n1-khw-test: updated") || !strings.Contains(out, "1 changed") {
		t.Fatalf("a new flag:\n%s", out)
	}
	if after := started(); after == before {
		t.Errorf("a new flag did not restart the service")
	}
	if j := c.mustSSH(t, "n1", "sudo journalctl -u khw-test -o cat --no-pager"); !strings.Contains(j, "khw-test says hola") {
		t.Errorf("the service's journal after the new flag: %s", j)
	}

	// A service that cannot start fails within its health timeout and says why.
	out, err := run("run", "--set", "mode=bad")
	if err == nil {
		t.Fatalf("a failing service was applied:\n%s", out)
	}
	for _, want := range []string{"node.service.n1-khw-test", "khw-test on n1: not healthy after 15s: systemd says",
		"its last errors:", "error: khw-test cannot start: no such thing", "the last lines of its log (journalctl -u khw-test)", "hint: look at the whole log"} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure lacks %q:\n%s", want, out)
		}
	}

	// destroy: the unit and its file are gone, and systemd knows it.
	must("destroy", "--target", "node.service.n1-khw-test")
	s := c.mustSSH(t, "n1", "ls /etc/systemd/system/khw-test.service /etc/khw-test/config.yaml 2>&1; systemctl is-active khw-test 2>&1; true")
	if strings.Count(s, "No such file or directory") != 2 || !strings.Contains(s, "inactive") {
		t.Errorf("after destroy: %s", s)
	}
	must("destroy")
}

// newCnodeLab is a namespace with a private dockerd and the real node
// image, for khw with containers as nodes.
func newCnodeLab(t *testing.T) *cnodeLab {
	t.Helper()
	labtest.RequireRoot(t)
	c := &cnodeLab{bin: labtest.Binaries(t), work: filepath.Join(t.TempDir(), "work")}
	c.lab = labtest.NewNamespace(t, "khw-cnode")
	labtest.Bridge(t, c.lab)
	c.dkr = "unix://" + labtest.Dockerd(t, c.lab)
	t.Cleanup(func() { // before dockerd stops, even when the test failed
		ids, _ := labtest.Output("docker", "-H", c.dkr, "ps", "-aq")
		for _, id := range strings.Fields(ids) {
			_, _ = labtest.Output("docker", "-H", c.dkr, "rm", "-f", "-v", id)
		}
	})
	img := exec.Command("bash", "scripts/node-image.sh", "khw/node:local")
	img.Dir = labtest.RepoRoot()
	img.Env = append(img.Environ(), "DOCKER_HOST="+c.dkr)
	if out, err := img.CombinedOutput(); err != nil {
		t.Fatalf("node-image.sh: %v\n%s", err, out)
	}
	return c
}
