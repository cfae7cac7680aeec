package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// clusterTarget is row 6's: the issue's, against kind's `create cluster`,
// which takes about a minute on a laptop.
const clusterTarget = 90.0 // seconds

// clusterLab runs scripts/lab.sh for row 6, always on container nodes.
func clusterLab(args ...string) *exec.Cmd {
	cmd := exec.Command("bash", append([]string{labScript}, args...)...)
	cmd.Env = append(os.Environ(), "KHW_NODES=containers")
	return cmd
}

// clusterRun is one cluster made from nothing: its timings, and how many
// workers were Ready at the end.
type clusterRun struct {
	timings labTimings
	run     float64 // the "khw run" phase
	ready   int
}

// cluster is row 6: the whole post (2 controllers, 2 workers) on container
// nodes, from the start of `khw run` to every worker Ready (the run ends
// there: each worker's flanneld is healthy only once its node is Ready,
// and CoreDNS available after that), with the binaries cached. With
// KHW_BENCH_CLUSTER=1 it makes the cluster from nothing b.clusterRounds
// times (scripts/lab.sh down, then up) and leaves the last one up.
func (b *bench) cluster() row {
	const what = "the cluster: `khw run` from start to every node Ready, 2 controllers + 2 workers as containers, binaries cached (`scripts/lab.sh up`, from nothing)"
	t := target{what: fmt.Sprintf("< %.0f s (kind's create cluster: about a minute on a laptop)", clusterTarget)}
	if os.Getenv("KHW_BENCH_CLUSTER") != "1" {
		t.status, t.why = notMeasured, "KHW_BENCH_CLUSTER is not set: `make bench KHW_BENCH_CLUSTER=1` makes the cluster from nothing (it takes the lab down first) and leaves it up."
		return row{what: what, figures: []string{"not measured (make bench KHW_BENCH_CLUSTER=1)"}, targets: []target{t}}
	}
	var runs []clusterRun
	for i := 0; i < b.clusterRounds; i++ {
		r, err := clusterOnce()
		if err != nil {
			return failedRow(what, err)
		}
		fmt.Fprintf(os.Stderr, "bench: row 6 round %d: khw run %.1f s, %d workers Ready\n", i+1, r.run, r.ready)
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].run < runs[j].run })
	med := runs[len(runs)/2]
	var all, phases []string
	for _, r := range runs {
		all = append(all, fmt.Sprintf("%.1f", r.run))
	}
	for _, p := range med.timings.Phases {
		phases = append(phases, fmt.Sprintf("%s %.1f s", p.Name, p.Seconds))
	}
	figures := []string{
		fmt.Sprintf("median `khw run` %.1f s of %d (%s s), 2 of 2 workers Ready each time", med.run, len(runs), strings.Join(all, ", ")),
		"that run's phases: " + strings.Join(phases, ", "),
	}
	t.got, t.status = fmt.Sprintf("%.1f s", med.run), check(med.run < clusterTarget)
	t.why = "most of the run is the control plane and the kubelets starting (each waited for until healthy), and copying about 1.1 GB of binaries to the 4 nodes over ssh."
	return row{what: what, figures: figures, targets: []target{t}}
}

// clusterOnce takes the lab down, brings the cluster up on containers, and
// reads what it took.
func clusterOnce() (clusterRun, error) {
	if out, err := clusterLab("down").CombinedOutput(); err != nil {
		return clusterRun{}, fmt.Errorf("scripts/lab.sh down: %v\n%s", err, tail(string(out), 20))
	}
	_ = os.RemoveAll(labWorkdir())
	if out, err := clusterLab("up").CombinedOutput(); err != nil {
		return clusterRun{}, fmt.Errorf("scripts/lab.sh up: %v\n%s", err, tail(string(out), 30))
	}
	var r clusterRun
	data, err := os.ReadFile(filepath.Join(labWorkdir(), "timings.json"))
	if err == nil {
		err = json.Unmarshal(data, &r.timings)
	}
	if err != nil {
		return r, fmt.Errorf("the cluster's timings: %v", err)
	}
	r.run = -1
	for _, p := range r.timings.Phases {
		if p.Name == "khw run" {
			r.run = p.Seconds
		}
	}
	if r.run < 0 {
		return r, fmt.Errorf("the cluster's timings have no \"khw run\" phase")
	}
	out, err := clusterLab("kubectl", "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`).Output()
	if err != nil {
		return r, fmt.Errorf("kubectl get nodes: %v", err)
	}
	r.ready = strings.Count(string(out), "True")
	if r.ready != 2 {
		return r, fmt.Errorf("%d of 2 workers Ready after the run: %s", r.ready, out)
	}
	return r, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
