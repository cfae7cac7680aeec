package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runFacts is what a khw run left in its workdir (DIR/w): the private keys
// it made, the floor is computed for them, and its state file.
type runFacts struct {
	keys        int
	stateBytes  int64
	stateWrites int // the state's serial: one change per resource recorded
	// written is the bytes of state the run wrote (journal and snapshots),
	// from its debug log (KHW_LOG=debug: "state written: bytes=N").
	written int64
	// keyCPU is, run by run, the CPU time khw's key generation took, from
	// its debug log ("keys generated: keys=N cpu_ns=T"): the floor under
	// that run's own keys is keyCPU ÷ cores.
	keyCPU []time.Duration
}

var (
	stateWritten  = regexp.MustCompile(`state written: bytes=(\d+)`)
	keysGenerated = regexp.MustCompile(`keys generated: keys=(\d+) cpu_ns=(\d+)`)
)

// inspect is a check that fills f from a khw run's workdir and output.
func (f *runFacts) inspect(dir string, out []byte) error {
	if m := stateWritten.FindSubmatch(out); m != nil {
		f.written, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := keysGenerated.FindSubmatch(out); m != nil {
		ns, _ := strconv.ParseInt(string(m[2]), 10, 64)
		f.keyCPU = append(f.keyCPU, time.Duration(ns))
	}
	w := filepath.Join(dir, "w")
	m, _ := filepath.Glob(filepath.Join(w, "*-key.pem"))
	if len(m) == 0 {
		return fmt.Errorf("no *-key.pem in the workdir")
	}
	f.keys = len(m)
	data, err := os.ReadFile(filepath.Join(w, ".khw", "state.json"))
	if err != nil {
		return err
	}
	var st struct{ Serial int }
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	f.stateBytes, f.stateWrites = int64(len(data)), st.Serial
	return nil
}

// loadNote says what load on the machine does to a figure.
func (b *bench) loadNote() string {
	return fmt.Sprintf("Load from other work (load average %s at the start of this run, on %d cores) slows and scatters every figure: where it is well above 0, re-run make bench on a quiet machine before reading a miss as khw's.", b.loadStart, b.cores)
}

// versus compares, for rows 1 and 2, the post's commands with khw and khw
// with the key-generation floor, keys x one key's time (measured in the
// same rounds) / cores; bare is the same keys made by a bare Go program on
// every core.
func (b *bench) versus(post, khw, bare, key *series, facts *runFacts, bound float64) ([]string, []target) {
	keys := facts.keys
	pm, km, bm, kt := post.median(), khw.median(), bare.median(), key.mean()
	floor := kt * time.Duration(keys) / time.Duration(b.cores)
	speedup, bareVs := float64(pm)/float64(km), float64(bm)/float64(floor)
	// khw against the floor round by round: each round's run against the
	// key time measured beside it, the median of those ratios. Load that
	// comes and goes on a shared machine then touches both sides of a
	// ratio alike, where a ratio of two medians can pair a quiet minute
	// with a busy one.
	vsFloor := pairedRatio(khw, key, float64(keys)/float64(b.cores))
	best := float64(pm) / float64(floor)
	figures := []string{
		"post's commands: " + ms(pm),
		"`khw run`: " + ms(km),
		fmt.Sprintf("key floor: %d keys × %s (mean of %d) ÷ %d cores = %s", keys, ms(kt), len(key.times)*key.per, b.cores, ms(floor)),
		fmt.Sprintf("khw ÷ floor, round by round (median of %d rounds): %.2f×", len(khw.times), vsFloor),
		fmt.Sprintf("bare Go, the same %d keys on %d cores: %s", keys, b.cores, ms(bm)),
	}
	// The floor under each run's own keys: their generation's CPU time
	// (khw's debug log) ÷ cores. RSA key generation time is a draw (a
	// search for primes): the sampled floor above carries that draw's
	// scatter, this one is exact for the keys the run made.
	// The target is judged on it when every run logged it.
	judged, judgedOn := vsFloor, "round by round"
	if n := len(khw.times); n > 0 && len(facts.keyCPU) == n {
		cpu := &series{times: facts.keyCPU}
		judged, judgedOn = pairedRatio(khw, cpu, 1/float64(b.cores)), "against the floor under its own keys"
		figures = append(figures, fmt.Sprintf("khw ÷ the floor under its own keys (each run's key-generation CPU time ÷ %d cores; median %s of CPU, %s a key), median of %d rounds: %.2f×",
			b.cores, ms(cpu.median()), ms(cpu.median()/time.Duration(max(keys, 1))), n, judged))
	}
	whySpeed := fmt.Sprintf("No tool makes the keys faster than the floor (%s), so the best speed-up on this machine is post ÷ floor = %.1f×. ", ms(floor), best)
	if best < 4 {
		whySpeed += "That is below 4×: the target needs more cores (the floor shrinks with them; the post's commands, one after another, do not). "
	} else {
		whySpeed += fmt.Sprintf("khw is %.2f× its floor; at the floor it would be %.1f× faster. ", vsFloor, best)
	}
	whyFloor := fmt.Sprintf("khw took %s against a floor of %s (%.2f× round by round, %.2f× %s); a bare Go program making the same keys on all cores took %s, %.2f× the floor, ", ms(km), ms(floor), vsFloor, judged, judgedOn, ms(bm), bareVs)
	if bareVs > bound {
		whyFloor += "so even bare key generation missed the bound: the cores were not free during the run, and a quiet machine would reach it. "
	} else {
		whyFloor += "so the cores were free and the excess is khw's own: process start, the CA key made before any certificate can be signed, certificates and kubeconfigs after their keys, and recording each resource in the state (row 2 gives the bytes). "
	}
	return figures, []target{
		{what: "≥ 4× faster than the post", got: fmt.Sprintf("%.1f×", speedup), status: check(speedup >= 4), why: whySpeed},
		{what: fmt.Sprintf("≤ %.1f× the key floor", bound), got: fmt.Sprintf("%.2f× (%s)", judged, judgedOn), status: check(judged <= bound), why: whyFloor},
	}
}

// local is row 1: the post's topology.
func (b *bench) local() row {
	const what = "local PKI, kubeconfigs and encryption config for the post's topology (2 controllers, 2 workers, the load balancer): khw against the post's cfssl + cfssljson + kubectl commands"
	var facts runFacts
	post := command("row 1: post's commands", func(d string) *exec.Cmd { return exec.Command("bench/post-pipeline.sh", d) }, nil)
	khw := command("row 1: khw run", func(d string) *exec.Cmd {
		c := b.khwCmd(append([]string{"run", "recipes/hardway.star", "--workdir", filepath.Join(d, "w")}, localTargets...)...)
		c.Env = append(os.Environ(), "KHW_LOG=debug") // for the keys' CPU time
		return c
	}, facts.inspect)
	bare := &series{name: "row 1: bare Go keys", run: func() (time.Duration, error) { return parallelKeys(facts.keys, b.cores), nil }}
	key := keyTime("row 1: one key, mean of 6", 6)
	b.all = append(b.all, post, khw, bare, key)
	if err := interleave("row 1", b.rounds, post, khw, bare, key); err != nil {
		return failedRow(what, err)
	}
	figures, targets := b.versus(post, khw, bare, key, &facts, 1.5)
	return row{what: what, figures: figures, targets: targets}
}

// The topology of row 2, as bench/scale.star lays it out: controllers m1..
// from host 10 of 10.200.0.0/16, workers n1.. from host 20, the load
// balancer at host 15.
const scaleMasters = 3

var scaleWorkers = []int{25, 50, 100} // the last is the comparison's

func scaleIP(host int) string { return fmt.Sprintf("10.200.%d.%d", host/256, host%256) }

func scaleNodes(prefix string, n, first int) string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%d:%s", prefix, i+1, scaleIP(first+i)))
	}
	return strings.Join(out, " ")
}

// scale is row 2: 3 controllers and up to 100 workers.
func (b *bench) scale() row {
	maxW := scaleWorkers[len(scaleWorkers)-1]
	what := fmt.Sprintf("the same for %d controllers and %d workers; khw on 1 core against 2; khw at %s workers", scaleMasters, maxW, joinInts(scaleWorkers))
	khwRun := func(name string, workers int, pin string, check func(string, []byte) error) *series {
		return command(name, func(d string) *exec.Cmd {
			args := append([]string{b.khw, "run", "bench/scale.star", "--root", "recipes", "--workdir", filepath.Join(d, "w"),
				"--set", fmt.Sprintf("masters=%d", scaleMasters), "--set", fmt.Sprintf("workers=%d", workers)}, localTargets...)
			c := exec.Command(args[0], args[1:]...)
			if pin != "" {
				c = exec.Command("taskset", append([]string{"-c", pin}, args...)...)
			}
			// The debug log says how many bytes of state the run wrote.
			c.Env = append(os.Environ(), "KHW_LOG=debug")
			return c
		}, check)
	}
	post := command(fmt.Sprintf("row 2: post's commands, %d+%d", scaleMasters, maxW), func(d string) *exec.Cmd {
		c := exec.Command("bench/post-pipeline.sh", d)
		c.Env = append(os.Environ(),
			"KHW_POST_CONTROLLERS="+scaleNodes("m", scaleMasters, 10),
			"KHW_POST_WORKERS="+scaleNodes("n", maxW, 20),
			"KHW_POST_LB="+scaleIP(15))
		return c
	}, nil)
	factsBy := map[int]*runFacts{}
	byWorkers := map[int]*series{}
	ss := []*series{post}
	for _, w := range slices.Backward(scaleWorkers) {
		factsBy[w] = &runFacts{}
		byWorkers[w] = khwRun(fmt.Sprintf("row 2: khw run, %d+%d", scaleMasters, w), w, "", factsBy[w].inspect)
		ss = append(ss, byWorkers[w])
	}
	facts := factsBy[maxW]
	bare := &series{name: "row 2: bare Go keys", run: func() (time.Duration, error) { return parallelKeys(facts.keys, b.cores), nil }}
	key := keyTime("row 2: one key, mean of 14", 14)
	ss = append(ss, bare, key)

	// 1 core against 2: khw and, as the reference for what the machine
	// gives, bare key generation, both pinned with taskset.
	const refKeys = 40
	cs := cpus()
	_, tasksetErr := exec.LookPath("taskset")
	var one, two, ref1, ref2 *series
	if len(cs) >= 2 && tasksetErr == nil {
		c0, c01 := strconv.Itoa(cs[0]), fmt.Sprintf("%d,%d", cs[0], cs[1])
		one = khwRun(fmt.Sprintf("row 2: khw run, %d+%d, 1 core", scaleMasters, maxW), maxW, c0, nil)
		two = byWorkers[maxW]
		ss = append(ss, one)
		if len(cs) > 2 {
			two = khwRun(fmt.Sprintf("row 2: khw run, %d+%d, 2 cores", scaleMasters, maxW), maxW, c01, nil)
			ss = append(ss, two)
		}
		ref1, ref2 = pinnedKeys("row 2: bare Go, 40 keys, 1 core", c0, refKeys), pinnedKeys("row 2: bare Go, 40 keys, 2 cores", c01, refKeys)
		ss = append(ss, ref1, ref2)
	}
	b.all = append(b.all, ss...)
	if err := interleave("row 2", b.scaleRounds, ss...); err != nil {
		return failedRow(what, err)
	}

	figures, targets := b.versus(post, byWorkers[maxW], bare, key, facts, 1.3)
	if one != nil {
		r, refR := float64(one.median())/float64(two.median()), float64(ref1.median())/float64(ref2.median())
		figures = append(figures, fmt.Sprintf("khw on 1 core: %s, on 2 cores: %s (bare Go keys: %.2f× from the second core)", ms(one.median()), ms(two.median()), refR))
		why := fmt.Sprintf("khw gained %.2f× from the second core; bare Go key generation, pinned the same way in the same rounds, gained %.2f×, ", r, refR)
		if refR < 1.7 {
			why += "so the machine did not give a full second core during the run; a quiet machine would reach it. "
		} else {
			why += "so the second core was there and khw's serial part limits it (Amdahl): the CA key before any certificate, each kubeconfig after its certificate, one state file written after each resource. "
		}
		targets = append(targets, target{what: "≥ 1.7× from the second core", got: fmt.Sprintf("%.2f×", r), status: check(r >= 1.7), why: why})
	} else {
		targets = append(targets, target{what: "≥ 1.7× from the second core", status: notMeasured,
			why: "needs taskset and at least 2 usable CPUs; this run had " + strconv.Itoa(len(cs))})
	}

	// Linearity: per-node cost at the largest count against the smallest.
	lo, hi := scaleWorkers[0], maxW
	perNode := func(w int) time.Duration { return byWorkers[w].median() / time.Duration(scaleMasters+w) }
	var at []string
	for _, w := range scaleWorkers {
		at = append(at, fmt.Sprintf("%d: %s (%.1f ms/node)", w, ms(byWorkers[w].median()), float64(perNode(w))/float64(time.Millisecond)))
	}
	q := float64(perNode(hi)) / float64(perNode(lo))
	grow := float64(byWorkers[hi].median()) / float64(byWorkers[lo].median())
	nodes := float64(scaleMasters+hi) / float64(scaleMasters+lo)
	for _, w := range scaleWorkers {
		if factsBy[w].written == 0 || factsBy[w].stateWrites == 0 {
			return failedRow(what, fmt.Errorf("khw run at %d workers did not log the state bytes it wrote (KHW_LOG=debug)", w))
		}
	}
	var bytesAt []string
	perRes := func(w int) float64 { return float64(factsBy[w].written) / float64(factsBy[w].stateWrites) }
	for _, w := range scaleWorkers {
		f := factsBy[w]
		bytesAt = append(bytesAt, fmt.Sprintf("%d: %d KB for %d resources (%.0f B each; state.json %d KB)", w, f.written>>10, f.stateWrites, perRes(w), f.stateBytes>>10))
	}
	figures = append(figures, "khw by workers, "+strings.Join(at, "; "),
		fmt.Sprintf("time %d÷%d workers: %.2f× for %.2f× the nodes", hi, lo, grow, nodes),
		"state bytes written per run, by workers: "+strings.Join(bytesAt, "; "))
	verdict := "linear"
	if q > 1.3 {
		verdict = "faster than linear"
	}
	targets = append(targets, target{what: fmt.Sprintf("linear: per-node cost at %d workers ≤ 1.3× that at %d", hi, lo),
		got: fmt.Sprintf("%.2f×, %s", q, verdict), status: check(q <= 1.3),
		why: fmt.Sprintf("per node %.1f ms at %d workers, %.1f ms at %d. Keys grow as workers + 7 and kubeconfigs as workers + 4, so the work per node is flat; if the bare key figures of this row scatter as much, the miss is the machine's load.",
			float64(perNode(lo))/float64(time.Millisecond), lo, float64(perNode(hi))/float64(time.Millisecond), hi)})
	bq := perRes(hi) / perRes(lo)
	targets = append(targets, target{what: fmt.Sprintf("state bytes written grow linearly: per resource at %d workers ≤ 1.3× that at %d", hi, lo),
		got: fmt.Sprintf("%.2f×", bq), status: check(bq <= 1.3),
		why: "each resource is appended to the state's journal; state.json is rewritten whole only when the journal has grown as large as it, and at the end, so the rewrites add at most a constant factor (runtime/state.go)."})
	return row{what: what, figures: figures, targets: targets}
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ", ")
}

// noChange is row 3: `khw plan` over a complete workspace and `khw run`
// when nothing changed.
func (b *bench) noChange() row {
	const what = "`khw plan` of the post's recipe over a complete workspace; `khw run` when nothing changed, with the lab up (plugins' start-up included)"
	ws, err := os.MkdirTemp("", "khw-bench")
	if err != nil {
		return failedRow(what, err)
	}
	defer os.RemoveAll(ws)
	// Everything of the post that needs neither VMs nor changes to the
	// host's network: the nodes as hosts you made (hypervisor=none) and the
	// hosts block in a file of the workspace (hostnet plugin).
	args := []string{"recipes/hardway.star", "--workdir", filepath.Join(ws, "w"), "--set", "hypervisor=none", "--set", "hosts_file=" + filepath.Join(ws, "hosts")}
	made := append(slices.Clone(localTargets), "--target", "ssh", "--target", "node.host", "--target", "net.hosts")
	if out, err := b.khwCmd(append(append([]string{"run"}, args...), made...)...).CombinedOutput(); err != nil {
		return failedRow(what, fmt.Errorf("making the workspace: %v\n%s", err, out))
	}
	plan := command("row 3: khw plan, workspace without the lab", func(string) *exec.Cmd {
		return b.khwCmd(append([]string{"plan"}, args...)...)
	}, nil)
	run := command("row 3: khw run, nothing changed, workspace without the lab", func(string) *exec.Cmd {
		return b.khwCmd(append(append([]string{"run"}, args...), made...)...)
	}, noChange)
	b.all = append(b.all, plan, run)
	if err := interleave("row 3", b.rounds, plan, run); err != nil {
		return failedRow(what, err)
	}
	figures := []string{
		"without the lab (PKI, kubeconfigs, encryption config, ssh key, 4 hand-made nodes, hosts block): `khw plan` " + ms(plan.median()),
		"stand-in, not the target's figure: `khw run` changing nothing over that workspace (hostnet plugin started) " + ms(run.median()),
	}
	planT := target{what: "`khw plan` < 100 ms", got: ms(plan.median()) + " without the lab", status: check(plan.median() < 100*time.Millisecond),
		why: "the plan is khw's own start and the recipe's evaluation, the hostnet plugin's start-up (row 4) and one Read per recorded resource (row 4's round trip); whichever is over its share is what to cut."}
	runT := target{what: "`khw run`, nothing changed, lab up < 300 ms"}
	lab := b.labNoChange()
	switch {
	case lab.err != nil:
		runT.status, runT.why = failed, lab.err.Error()
		figures = append(figures, "with the lab: failed: "+firstLine(lab.err))
	case lab.run == nil:
		runT.status, runT.why = notMeasured, lab.reason+". The stand-in above, without VMs, is the same work minus reading the VMs, the bridge, the NAT rules, the load balancer and the copies on the nodes."
		figures = append(figures, "with the lab: "+lab.reason)
	default:
		figures = append(figures, fmt.Sprintf("with the lab, through `scripts/lab.sh khw` (its own cost %s, not subtracted): `khw plan` %s, `khw run` changing nothing %s",
			ms(lab.overhead.median()), ms(lab.plan.median()), ms(lab.run.median())))
		planT.got, planT.status = ms(lab.plan.median())+" with the lab", check(lab.plan.median() < 100*time.Millisecond)
		figures = append(figures, fmt.Sprintf("the plan's parts, with the lab: reading the 11 copies back over ssh (`--target node.copy`) %s, the VMs (`--target vm.`) %s; one OpenSSH login to m1 %s; `khw run --refresh=false` (trusts the state, reads nothing) %s",
			ms(lab.copies.median()), ms(lab.vms.median()), ms(lab.login.median()), ms(lab.trusting.median())))
		parts := fmt.Sprintf("of the plan's %s, reading the copies back over ssh takes %s and the VMs %s. One OpenSSH login to one node takes %s here: the guests run under qemu/TCG (no KVM on this machine), where sshd's key exchange and fork are emulated instruction by instruction, and 4 guests doing it at once share 2 cores. What would reach the target: KVM guests (a login takes milliseconds), or a run that trusts the recorded state: `khw run --refresh=false` took %s.",
			ms(lab.plan.median()), ms(lab.copies.median()), ms(lab.vms.median()), ms(lab.login.median()), ms(lab.trusting.median()))
		planT.why = "the plan with the lab is khw's own start and the recipe's evaluation, every plugin's start-up (row 4) and a Read of every VM, rule, container and copied file, the last over ssh to the nodes: " + parts
		runT.got, runT.status = ms(lab.run.median()), check(lab.run.median() < 300*time.Millisecond)
		runT.why = "a run that changes nothing is a plan plus taking the workdir's lock: " + parts
	}
	return row{what: what, figures: figures, targets: []target{planT, runT}}
}

// benchMetrics parses `go test -bench` output: benchmark name (without the
// -N suffix) -> unit -> value.
func benchMetrics(out string) map[string]map[string]float64 {
	m := map[string]map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i]
		}
		m[name] = map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[name][f[i+1]] = v
			}
		}
	}
	return m
}

// plugins is row 4: runtime/pluginhost's benchmarks.
func (b *bench) plugins() row {
	const what = "one provider round trip over the plugin protocol; a plugin's start-up to its first RPC"
	const calls = 200
	fmt.Fprintf(os.Stderr, "bench: row 4, go test -bench BenchmarkPlugin ./runtime/pluginhost/\n")
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkPlugin", "-benchtime", fmt.Sprintf("%dx", calls), "./runtime/pluginhost/")
	cmd.Env = append(os.Environ(), "KHW_BENCH_PLUGIN_DIR="+filepath.Dir(b.khw))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return failedRow(what, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out))
	}
	m := benchMetrics(string(out))
	rt, ok := m["BenchmarkPluginRoundTrip"]
	if !ok {
		return failedRow(what, fmt.Errorf("no BenchmarkPluginRoundTrip in:\n%s", out))
	}
	figures := []string{fmt.Sprintf("round trip (Read, %d calls): median %.0f µs, mean %.0f µs", calls, rt["median-µs"], rt["mean-µs"])}
	var starts []string
	worst, worstName := 0.0, ""
	for name, v := range m {
		p, ok := strings.CutPrefix(name, "BenchmarkPluginStartup/")
		if !ok {
			continue
		}
		starts = append(starts, fmt.Sprintf("%s %.1f ms (mean %.1f)", p, v["median-ms"], v["mean-ms"]))
		if v["median-ms"] > worst {
			worst, worstName = v["median-ms"], p
		}
	}
	slices.Sort(starts)
	figures = append(figures, fmt.Sprintf("start-up to first RPC, median of %d: %s", calls, strings.Join(starts, ", ")))
	return row{what: what, figures: figures, targets: []target{
		{what: "round trip < 500 µs (chosen)", got: fmt.Sprintf("%.0f µs", rt["median-µs"]), status: check(rt["median-µs"] < 500),
			why: "a round trip is gRPC over a unix socket between two processes: two context switches and the (de)serialisation of one resource; on a busy machine the switches wait for a core. "},
		{what: "start-up < 50 ms (chosen)", got: fmt.Sprintf("%.1f ms (%s, the slowest)", worst, worstName), status: check(worst < 50),
			why: "start-up is the exec of a 20-25 MB static binary, the Go runtime's start, go-plugin's handshake and one RPC; a smaller binary (fewer dependencies) or a warm page cache shortens it. "},
	}}
}
