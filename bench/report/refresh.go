package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// labNodesFile is where scripts/lab.sh records what the lab's nodes are.
var labNodesFile = "/run/khw-lab/nodes"

// refreshTarget is row 7's: a no-op plan of the whole cluster at most this
// many times one parallel OpenSSH round to all its nodes.
const refreshTarget = 1.5

// readBackField is one key=value of the ssh plugin's debug line for one
// node's read-back (plugins/ssh/readback.go), "read back: node=m1
// resources=10 connections=1 sessions=1 keepalives=0 ...", whose fields
// come in any order: the round trips the node has cost that plugin process
// so far, which in a plan is all of them.
var readBackField = regexp.MustCompile(`(\w+)=(\S+)`)

// nodeTrips is one node's read-back in one plan.
type nodeTrips struct {
	resources, connections, sessions, keepalives int
}

// parseReadBack reads every node's line from a plan's debug log.
func parseReadBack(out string) map[string]nodeTrips {
	got := map[string]nodeTrips{}
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, "read back: ")
		if !ok {
			continue
		}
		f := map[string]string{}
		for _, m := range readBackField.FindAllStringSubmatch(rest, -1) {
			f[m[1]] = m[2]
		}
		n := func(k string) int { v, _ := strconv.Atoi(f[k]); return v }
		if f["node"] != "" {
			got[f["node"]] = nodeTrips{resources: n("resources"), connections: n("connections"), sessions: n("sessions"), keepalives: n("keepalives")}
		}
	}
	return got
}

func (t nodeTrips) trips() int { return t.connections + t.sessions + t.keepalives }

func describeTrips(m map[string]nodeTrips) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		t := m[n]
		parts = append(parts, fmt.Sprintf("%s: %s, %s, %s", n, plural(t.resources, "resource"), plural(t.connections, "connection"), plural(t.sessions+t.keepalives, "command")))
	}
	return strings.Join(parts, "; ")
}

// refresh is row 7: with the cluster up (row 6 leaves it up), a no-op
// `khw plan` and `khw run` against one parallel OpenSSH round to every
// node, measured in the same rounds; and the ssh round trips each node
// cost the plan, counted for the post's cluster and for the same cluster
// with one more file copied to every node (bench/extra-file.star).
func (b *bench) refresh() row {
	const what = "reading the cluster back: a no-op `khw plan` and `khw run` with the cluster up (row 6's, or the lab's), against one parallel OpenSSH round (`ssh node true` to every node at once); ssh round trips per node in the plan, for the post's cluster and with one more file on every node"
	ratioT := target{what: fmt.Sprintf("no-op `khw plan` ≤ %.1f× one parallel ssh round", refreshTarget)}
	tripsT := target{what: "round trips per node do not grow with a resource more on each node"}
	notNow := func(why string) row {
		ratioT.status, ratioT.why = notMeasured, why
		tripsT.status, tripsT.why = notMeasured, why
		return row{what: what, figures: []string{"not measured"}, targets: []target{ratioT, tripsT}}
	}
	if os.Getenv("KHW_BENCH_CLUSTER") != "1" && os.Getenv("KHW_BENCH_LAB") != "1" {
		return notNow("neither KHW_BENCH_CLUSTER nor KHW_BENCH_LAB is set: `make bench KHW_BENCH_CLUSTER=1` makes the cluster and measures it.")
	}
	if !labUp() {
		return notNow("the cluster is not up (make lab, or make bench KHW_BENCH_CLUSTER=1).")
	}
	// The lab as it was made (scripts/lab.sh keeps its nodes' kind in
	// /run/khw-lab/nodes): containers after row 6, VMs after a
	// KHW_ACCEL=qemu make lab.
	kind := "container nodes"
	if b, err := os.ReadFile(labNodesFile); err == nil && strings.HasPrefix(string(b), "vms") {
		kind = "VMs, " + strings.TrimSpace(strings.TrimPrefix(string(b), "vms"))
	}
	lab := func(env []string, args ...string) *exec.Cmd {
		c := exec.Command("bash", append([]string{labScript}, args...)...)
		c.Env = append(os.Environ(), env...)
		return c
	}
	out, err := lab(nil, "khw", "plan", "--detailed-exitcode").CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return notNow("the lab has changes pending (`scripts/lab.sh khw plan` shows them): run make lab.")
	}
	if err != nil {
		return failedRow(what, fmt.Errorf("scripts/lab.sh khw plan: %v\n%s", err, tail(string(out), 20)))
	}

	// The nodes, from khw's own ssh config for the lab.
	dir, err := os.MkdirTemp("", "khw-bench-ssh")
	if err != nil {
		return failedRow(what, err)
	}
	defer os.RemoveAll(dir)
	cfg, err := exec.Command(b.khw, "ssh-config", "--workdir", labWorkdir()).Output()
	if err != nil {
		return failedRow(what, fmt.Errorf("khw ssh-config: %v", err))
	}
	cfgFile := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		return failedRow(what, err)
	}
	var nodes []string
	for _, line := range strings.Split(string(cfg), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Host" {
			nodes = append(nodes, f[1])
		}
	}
	if len(nodes) == 0 {
		return failedRow(what, fmt.Errorf("khw ssh-config names no node"))
	}
	var round strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&round, "ssh -F %s -o BatchMode=yes %s true & ", cfgFile, n)
	}
	round.WriteString("wait")

	in := func(args ...string) func(string) *exec.Cmd {
		return func(string) *exec.Cmd { return lab(nil, args...) }
	}
	ssh := command("row 7: one parallel OpenSSH round to every node, cluster", in("exec", "sh", "-c", round.String()), nil)
	plan := command("row 7: khw plan, cluster", in("khw", "plan"), nil)
	run := command("row 7: khw run, nothing changed, cluster", in("khw", "run"), noChange)
	b.all = append(b.all, ssh, plan, run)
	// Twice the rounds of the other rows: each round is about two seconds,
	// and on a shared machine the medians of three half-second commands
	// need more of them to settle.
	if err := interleave("row 7, the cluster", 2*b.rounds, ssh, plan, run); err != nil {
		return failedRow(what, err)
	}
	r := float64(plan.median()) / float64(ssh.median())
	rr := float64(run.median()) / float64(ssh.median())
	figures := []string{
		fmt.Sprintf("%d nodes (%s; %s): one parallel OpenSSH round %s; `khw plan` %s (%.2f×); `khw run`, nothing changed, %s (%.2f×)",
			len(nodes), kind, strings.Join(nodes, ", "), ms(ssh.median()), ms(plan.median()), r, ms(run.median()), rr),
	}
	ratioT.got, ratioT.status = fmt.Sprintf("%.2f×", r), check(r <= refreshTarget)
	ratioT.why = "the plan is khw's start, the recipe's evaluation, the plugins' start-up (row 4), the Docker and Kubernetes reads, and one ssh connection and one command per node (plugins/ssh/readback.go); the OpenSSH round is a process, a connection and a command per node."

	// Round trips per node: the post's cluster, then one more file on every
	// node, then back.
	debug := []string{"KHW_LOG=debug"}
	post, err := lab(debug, "khw", "plan").CombinedOutput()
	if err != nil {
		return failedRow(what, fmt.Errorf("KHW_LOG=debug scripts/lab.sh khw plan: %v\n%s", err, tail(string(post), 20)))
	}
	extraEnv := []string{"KHW_LAB_RECIPE=bench/extra-file.star"}
	if out, err := lab(extraEnv, "khw", "run", "--root", "recipes").CombinedOutput(); err != nil {
		return failedRow(what, fmt.Errorf("the extra file: %v\n%s", err, tail(string(out), 20)))
	}
	extra, planErr := lab(append(extraEnv, debug...), "khw", "plan", "--root", "recipes").CombinedOutput()
	if out, err := lab(nil, "khw", "run").CombinedOutput(); err != nil { // removes the extra copies
		return failedRow(what, fmt.Errorf("removing the extra file: %v\n%s", err, tail(string(out), 20)))
	}
	if planErr != nil {
		return failedRow(what, fmt.Errorf("plan with the extra file: %v\n%s", planErr, tail(string(extra), 20)))
	}
	a, e := parseReadBack(string(post)), parseReadBack(string(extra))
	figures = append(figures, "round trips in the plan, the post's cluster: "+describeTrips(a),
		"with one more file on every node: "+describeTrips(e))
	grew := len(a) != len(nodes) || len(e) != len(nodes)
	for n, t := range a {
		x, ok := e[n]
		if !ok || x.trips() != t.trips() || x.resources != t.resources+1 {
			grew = true
		}
	}
	tripsT.got = fmt.Sprintf("%d nodes read back, the same round trips each with a resource more", len(a))
	if grew {
		tripsT.got = "they differ (figures)"
	}
	tripsT.status = check(!grew)
	tripsT.why = "every node's reads go in one command (sdk ReadMany, plugins/ssh/readback.go); a node read back by a plan without the batch, or with a resource not counted, shows here."
	return row{what: what, figures: figures, targets: []target{ratioT, tripsT}}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
