package nodes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

// controllerSet is the post's controller file list.
var controllerSet = []string{"ca.pem", "ca-key.pem", "kubernetes-key.pem", "kubernetes.pem", "service-account-key.pem",
	"service-account.pem", "admin.kubeconfig", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig",
	"encryption-config.yaml"}

// BenchmarkCopyControllerSetTo20Nodes copies the controller file set to 20
// real sshd nodes with khw (all nodes at once) and with the post's loop
// (scp, one node after another), in one run, and reports both and the
// ratio. Not part of make bench (it needs root and network namespaces):
// go test -run XXX -bench CopyControllerSetTo20Nodes -benchtime 3x ./tests/nodes/
func BenchmarkCopyControllerSetTo20Nodes(b *testing.B) {
	const n = 20
	labtest.RequireRoot(b)
	bin := labtest.Binaries(b)
	lab := labtest.NewNamespace(b, "khw-bench")
	labtest.Bridge(b, lab)
	auth := filepath.Join(b.TempDir(), "authorized_keys")
	want := map[string]string{}
	for i := 0; i < n; i++ {
		want[fmt.Sprintf("c%d", i+1)] = fmt.Sprintf("10.200.1.%d", 20+i)
	}
	nodes := labtest.StartSSHNodes(b, lab, auth, want)
	work := filepath.Join(b.TempDir(), "work")
	recipe := filepath.Join(labtest.RepoRoot(), "tests", "nodes", "testdata", "copy-n.star")
	khw := func(args ...string) time.Duration {
		full := append([]string{"netns", "exec", lab.Name, filepath.Join(bin, "khw")}, args...)
		full = append(full, recipe, "--root", filepath.Join(labtest.RepoRoot(), "recipes"), "--workdir", work, "--set", fmt.Sprintf("nodes=%d", n))
		start := time.Now()
		out, err := exec.Command("ip", full...).CombinedOutput()
		if err != nil {
			b.Fatalf("khw %v: %v\n%s", args, err, out)
		}
		return time.Since(start)
	}
	khw("run", "--target", "pki", "--target", "kubeconfig", "--target", "encryption", "--target", "ssh", "--target", "node.host")
	pub, _ := os.ReadFile(filepath.Join(work, "id_ed25519.pub"))
	_ = os.WriteFile(auth, pub, 0o644)
	// known_hosts for the loop, as the post's user would have after the
	// first ssh to each node.
	var kh strings.Builder
	for _, nd := range nodes {
		fmt.Fprintf(&kh, "%s %s\n", nd.IP, nd.HostKeyLine())
	}
	khFile := filepath.Join(b.TempDir(), "known_hosts")
	_ = os.WriteFile(khFile, []byte(kh.String()), 0o600)

	var loop strings.Builder
	fmt.Fprintf(&loop, "set -e; cd %s\n", work)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&loop, "scp -q -i id_ed25519 -o UserKnownHostsFile=%s -o BatchMode=yes %s root@10.200.1.%d:~/\n",
			khFile, strings.Join(controllerSet, " "), 20+i)
	}
	clean := func() {
		for _, nd := range nodes {
			for _, f := range controllerSet {
				_ = os.Remove(filepath.Join(nd.Home, f))
			}
		}
	}
	var khwTimes, loopTimes []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		khwTimes = append(khwTimes, khw("run", "--target", "node.copy"))
		b.StopTimer()
		khw("destroy", "--target", "node.copy")
		clean()
		start := time.Now()
		if out, err := lab.Command("bash", "-c", loop.String()).CombinedOutput(); err != nil {
			b.Fatalf("the post's loop: %v\n%s", err, out)
		}
		loopTimes = append(loopTimes, time.Since(start))
		clean()
		b.StartTimer()
	}
	k, l := median(khwTimes), median(loopTimes)
	b.ReportMetric(float64(k.Milliseconds()), "khw-ms")
	b.ReportMetric(float64(l.Milliseconds()), "loop-ms")
	b.ReportMetric(float64(l)/float64(k), "speedup")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
