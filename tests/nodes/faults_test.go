package nodes

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// start runs khw in the lab namespace in the background (ip netns exec
// execs khw itself, so the process is khw).
func (e *env) start(t *testing.T, out *labtest.Buffer, args ...string) *exec.Cmd {
	t.Helper()
	full := append([]string{"netns", "exec", e.lab.Name, filepath.Join(e.bin, "khw")}, args...)
	full = append(full, filepath.Join(labtest.RepoRoot(), "recipes", "hardway.star"), "--workdir", e.work,
		"--set", "hypervisor=none", "--set", "user=root", "--set", "part=1", "-o", "json")
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH=")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// waitDone polls until the run's JSON events say addr is done.
func waitDone(t *testing.T, out *labtest.Buffer, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, `"address":"`+addr+`"`) && strings.Contains(line, `"event":"done"`) {
				return
			}
		}
	}
	t.Fatalf("%s never finished:\n%s", addr, out.String())
}

// noPluginLeft: no plugin process this test's binaries started outlives khw.
func (e *env) noPluginLeft(t *testing.T) {
	t.Helper()
	if o := labtest.Lingering(filepath.Join(e.bin, "khw-plugin-"), 5*time.Second); o != "" {
		t.Fatalf("plugin processes outlived khw:\n%s", o)
	}
}

// noHalfWrittenFiles: an interrupted copy leaves no temporary file behind
// once the copy has been finished by the next run.
func (e *env) noHalfWrittenFiles(t *testing.T) {
	t.Helper()
	for name, n := range e.nodes {
		ents, _ := os.ReadDir(n.Home)
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), ".khw-tmp-") {
				t.Errorf("%s: half-written %s left", name, ent.Name())
			}
		}
	}
}

// stateConsistent: every copy recorded in the state is on its node with
// the recorded checksums.
func (e *env) stateConsistent(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.work, ".khw", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Resources map[string]struct {
			Outputs json.RawMessage `json:"outputs"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state.json: %v", err)
	}
	for addr, r := range st.Resources {
		node, ok := strings.CutPrefix(addr, "node.copy.")
		if !ok {
			continue
		}
		node, _, _ = strings.Cut(node, "-")
		var out struct {
			Files map[string]string `json:"files"`
		}
		_ = json.Unmarshal(r.Outputs, &out)
		for f, want := range out.Files {
			if got := sum(filepath.Join(e.nodes[node].Home, f)); got != want {
				t.Errorf("state says %s holds %s (%s), the node has %s", addr, f, want[:8], got[:min(8, len(got))])
			}
		}
	}
}

// TestKilledDuringCopiesThenRerun: khw is killed with SIGKILL while it
// copies (one node is down and being retried, the others are done). Its
// plugins do not outlive it, and the next run finishes the job with no
// half-written file and a state that matches the nodes.
func TestKilledDuringCopiesThenRerun(t *testing.T) {
	e := setup(t)
	e.nodes["n2"].Stop()
	var out labtest.Buffer
	cmd := e.start(t, &out, "run", "--target", "node.copy", "--set", "ssh_timeout=120")
	waitDone(t, &out, "node.copy.m2-encryption")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	e.noPluginLeft(t)
	e.stateConsistent(t)

	e.finish(t, "n2")
	e.stateConsistent(t)
	if o, err := e.khw(t, "run", "--target", "node.copy"); err != nil || !strings.Contains(o, "No changes.") {
		t.Fatalf("third run: %v\n%s", err, o)
	}
}

// TestPluginKilledMidApply: the ssh plugin is killed while it retries a
// node. khw says which plugin died and which resource it was serving,
// exits, leaves no process, and the next run finishes.
func TestPluginKilledMidApply(t *testing.T) {
	e := setup(t)
	e.nodes["n2"].Stop()
	var out labtest.Buffer
	cmd := e.start(t, &out, "run", "--target", "node.copy", "--set", "ssh_timeout=120")
	waitDone(t, &out, "node.copy.m2-encryption")
	if o, err := labtest.Output("pkill", "-9", "-f", filepath.Join(e.bin, "khw-plugin-ssh")); err != nil {
		t.Fatalf("pkill: %v %s", err, o)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("khw succeeded with its plugin killed:\n%s", out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("khw did not end after its plugin was killed:\n%s", out.String())
	}
	msg := out.String()
	t.Logf("khw said:\n%s", labtest.Tail(msg, 6))
	for _, want := range []string{`plugin \"ssh\" crashed or was killed`, "node.copy.n2-"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	// The resources that came after the crash say so, not a dial error each.
	if strings.Contains(msg, "error while dialing") {
		t.Errorf("calls after the crash report broken connections:\n%s", msg)
	}
	e.noPluginLeft(t)

	e.finish(t, "n2")
}

// finish starts the node that was down and wants the next run to finish
// the job: every node with its files, nothing half-written.
func (e *env) finish(t *testing.T, down string) {
	t.Helper()
	e.nodes[down].Start()
	e.nodes[down].WaitReady()
	if o, err := e.khw(t, "run", "--target", "node.copy"); err != nil {
		t.Fatalf("re-run: %v\n%s", err, o)
	}
	e.check(t)
	e.noHalfWrittenFiles(t)
}
