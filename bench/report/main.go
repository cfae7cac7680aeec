// Command report is `make bench`: it measures, side by side in one run, the
// five rows of khw's speed table, prints the table and writes it to
// bench/RESULTS.md with a description of the machine:
//
//  1. local PKI, kubeconfigs and encryption config for the post's topology:
//     khw against the post's own cfssl + cfssljson + kubectl commands, and
//     against the key-generation floor (rows.go: local);
//  2. the same for 3 controllers and 100 workers, khw on 1 core against 2,
//     and khw at 25, 50 and 100 workers for how its cost grows (scale);
//  3. `khw plan` over a complete workspace and `khw run` when nothing
//     changed, with the lab up (KHW_BENCH_LAB=1) and without (noChange);
//  4. one provider round trip over the plugin protocol and a plugin's
//     start-up (plugins: runtime/pluginhost's benchmarks);
//  5. the lab's provisioning time by phase, from the timings file that
//     scripts/lab.sh up writes (lab.go).
//
// Every timing is repeated and the table gives medians; the measurements of
// a row run interleaved, round after round, so that the machine's load
// touches each alike. The raw runs follow the table.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// status is a target's result.
type status string

const (
	met         status = "met"
	missed      status = "missed"
	notMeasured status = "not measured"
	failed      status = "failed"
)

func check(ok bool) status {
	if ok {
		return met
	}
	return missed
}

// target is one goal of a row and how this run fared.
type target struct {
	what   string // the goal, e.g. "≥ 4× faster than the post"
	got    string // this run's figure against it
	status status
	// why says, when the target was missed or not measured, why and what
	// would reach it.
	why string
}

// summary is the target, this run's figure and the result; a target not
// measured has no figure.
func (t target) summary() string {
	if t.status == notMeasured || t.status == failed {
		return fmt.Sprintf("%s: %s", t.what, t.status)
	}
	return fmt.Sprintf("%s: %s, %s", t.what, t.got, t.status)
}

// row is one line of the table.
type row struct {
	what    string
	figures []string
	targets []target
}

// result is the row's result, its worst target's: failed, then not
// measured, then missed, then met.
func (r row) result() status {
	rank := map[status]int{met: 0, missed: 1, notMeasured: 2, failed: 3}
	out := met
	for _, t := range r.targets {
		if rank[t.status] > rank[out] {
			out = t.status
		}
	}
	return out
}

// bench holds what every row needs.
type bench struct {
	khw           string // absolute path of bin/khw
	rounds        int    // runs of each small measurement
	scaleRounds   int    // runs of each 100-worker measurement
	clusterRounds int    // clusters made from nothing in row 6
	cores         int
	loadStart     string    // load average when the run began
	all           []*series // every series measured, for the raw runs
}

func (b *bench) khwCmd(args ...string) *exec.Cmd { return exec.Command(b.khw, args...) }

// localTargets are the resources of the post's sections 3-5: what rows 1
// and 2 time.
var localTargets = []string{"--target", "pki", "--target", "kubeconfig", "--target", "encryption"}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// failedRow is a row whose measurement could not run.
func failedRow(what string, err error) row {
	fmt.Fprintf(os.Stderr, "bench: %s: %v\n", what, err)
	return row{what: what, figures: []string{"failed: " + firstLine(err)},
		targets: []target{{what: "the measurement", status: failed, why: err.Error()}}}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// machine describes this machine for RESULTS.md.
func machine() string {
	cpu := "unknown CPU"
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			cpu = strings.TrimSpace(v)
			break
		}
	}
	ram := "unknown"
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
			ram = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	kernel := strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))
	return fmt.Sprintf("%s, %d cores, %s RAM, Linux %s, %s", cpu, goruntime.NumCPU(), ram, kernel, goruntime.Version())
}

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

const missedTitle = "Missed: why, and what would reach it"

func cell(parts []string) string { return strings.Join(parts, "<br>") }

func render(rows []row, b *bench, started time.Time) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# khw benchmarks\n\n")
	fmt.Fprintf(&s, "Machine: %s.\n\n", machine())
	fmt.Fprintf(&s, "Measured by `make bench` on %s in %s; load average (1, 5, 15 min) %s at the start, %s at the end. "+
		"Medians: %d runs each in rows 1 and 3, %d in row 2, interleaved round after round.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second), b.loadStart, loadavg(), b.rounds, b.scaleRounds)
	fmt.Fprintf(&s, "| # | what | figures (medians) | targets | result |\n|---|---|---|---|---|\n")
	for i, r := range rows {
		var ts []string
		for _, t := range r.targets {
			ts = append(ts, t.summary())
		}
		fmt.Fprintf(&s, "| %d | %s | %s | %s | **%s** |\n", i+1, r.what, cell(r.figures), cell(ts), r.result())
	}
	for _, sec := range []struct {
		title string
		which func(status) bool
	}{
		{missedTitle, func(st status) bool { return st == missed || st == failed }},
		{"Not measured", func(st status) bool { return st == notMeasured }},
	} {
		var body strings.Builder
		for i, r := range rows {
			for _, t := range r.targets {
				if sec.which(t.status) {
					fmt.Fprintf(&body, "- **Row %d, %s**: %s\n", i+1, t.summary(), strings.TrimSpace(t.why))
				}
			}
		}
		if body.Len() > 0 {
			fmt.Fprintf(&s, "\n## %s\n\n%s", sec.title, body.String())
		}
		if body.Len() > 0 && sec.title == missedTitle {
			fmt.Fprintf(&s, "\n%s\n", b.loadNote())
		}
	}
	fmt.Fprintf(&s, "\n## How\n\n%s", howNotes)
	fmt.Fprintf(&s, "\n## Raw runs\n\n")
	for _, se := range b.all {
		var ts []string
		for _, t := range se.times {
			ts = append(ts, ms(t))
		}
		fmt.Fprintf(&s, "- %s: %s\n", se.name, strings.Join(ts, ", "))
	}
	return s.String()
}

const howNotes = `- Row 1 runs ` + "`bench/post-pipeline.sh`" + ` (the post's commands, one after another) and ` + "`khw run recipes/hardway.star --target pki --target kubeconfig --target encryption`" + ` in a fresh workdir each time, process start included. The key-generation floor is the keys khw made (counted in its workdir) × one key's mean time (RSA-2048 on one goroutine, measured in the same rounds) ÷ the cores: no tool can make those keys faster on this machine. khw against the floor is taken round by round (each run against the key time measured beside it; the median of those ratios), so that load which comes and goes touches both sides of each ratio alike. RSA key generation is a search for primes, and one key's time is a draw: the sampled mean moves from round to round (54 to 73 ms for a mean of 14 keys in one run), and so does the floor made from it. The key-floor target is therefore judged against the floor under each run's own keys: the CPU time that run's key generation took, on each generating thread's own clock (khw's debug log: ` + "`keys generated: keys=N cpu_ns=T`" + `), ÷ the cores; the sampled floor is still given. The bare Go reference makes the same keys on every core in one process.
- Row 2 does the same for ` + "`bench/scale.star`" + ` (the post's sections 3-5 for any node count, from recipes/lib) and the post's commands scaled by KHW_POST_CONTROLLERS/KHW_POST_WORKERS/KHW_POST_LB. One core is ` + "`taskset -c`" + ` with one CPU, two cores two CPUs (on a 2-core machine, no restriction). Per-node cost is the run's time ÷ (controllers + workers).
- Row 3 measures, without the lab, over a workspace made with ` + "`--set hypervisor=none`" + ` and the hosts block in a temporary file: everything the post makes that needs neither VMs nor changes to the host's network. The lab figures (KHW_BENCH_LAB=1) go through ` + "`scripts/lab.sh khw`" + `, whose own cost (` + "`scripts/lab.sh exec true`" + `) is given beside them and not subtracted; they are taken only when ` + "`scripts/lab.sh khw plan --detailed-exitcode`" + ` finds nothing to change.
- Row 4 is ` + "`go test -bench BenchmarkPlugin ./runtime/pluginhost`" + `: Read calls from khw's plugin host to the test plugin over go-plugin's gRPC, and plugins started until their first RPC answers, each plugin in bin/ too. Targets chosen here (the issue gives none): a no-change run of the post reads about 30 plugin-served resources, so 500 µs each is at most 15 ms, 5% of row 3's 300 ms; the 4 plugins start at once, so 50 ms each is at most about 100 ms of those 300 ms on 2 cores.
- Row 5 reads the timings file ` + "`scripts/lab.sh up`" + ` writes (bench/report/lab.go gives its format) for the lab made last, with its kind of nodes; it is read after row 6, so with KHW_BENCH_CLUSTER=1 it is that row's last lab. Targets chosen here, for Part 1's lab, before the cluster: this machine's last full lab (qemu/TCG, no KVM) took 106 s in ` + "`khw run`" + `, almost all of it 4 VMs booting at once, and 98 s to build the guest image once; 150 s for ` + "`khw run`" + ` and 5 min in all leave room for that and hold with KVM by far.
- Row 6 (KHW_BENCH_CLUSTER=1) makes the post's whole cluster from nothing, ` + "`--cluster-rounds`" + ` times: ` + "`scripts/lab.sh down`" + `, then ` + "`KHW_NODES=containers scripts/lab.sh up`" + ` (which first makes sure the binaries are in the cache, then runs the recipe), and reads the ` + "`khw run`" + ` phase of the timings file. The run ends when every worker's flanneld is healthy, which needs its node Ready, and CoreDNS is available; the row also asks the API that both workers are Ready. The target is the issue's. It leaves the last cluster up.
- Row 7 (KHW_BENCH_CLUSTER=1, or KHW_BENCH_LAB=1 with the cluster up) times, in the same rounds (twice as many as rows 1 and 3: each is three half-second commands, which need more rounds to settle on a shared machine), ` + "`scripts/lab.sh khw plan`" + `, a ` + "`scripts/lab.sh khw run`" + ` that changes nothing, and one parallel OpenSSH round to every node (` + "`ssh -F` with `khw ssh-config`, `true` on each, all at once, through `scripts/lab.sh exec`" + `), so lab.sh's own cost is in all three. Round trips are the ssh plugin's own counts (KHW_LOG=debug: connections dialled, sessions opened, keepalives sent, per node), for the post's cluster and for ` + "`bench/extra-file.star`" + ` (the same recipe with one more copy per node; it is applied for the count, then removed by a run of the post's recipe). Target 1.5× is the issue's.
- The 20-node copy benchmark (scp loop against ` + "`khw run --target node.copy`" + `, real sshd nodes in network namespaces, root) is not part of this table: ` + "`go test -run XXX -bench CopyControllerSetTo20Nodes -benchtime 3x ./tests/nodes/`" + `.
`

func main() {
	rounds := flag.Int("rounds", 7, "runs of each measurement in rows 1 and 3")
	scaleRounds := flag.Int("scale-rounds", 3, "runs of each measurement in row 2 (3 controllers, up to 100 workers)")
	clusterRounds := flag.Int("cluster-rounds", 3, "clusters made from nothing in row 6 (KHW_BENCH_CLUSTER=1)")
	khw := flag.String("khw", "bin/khw", "the khw binary (its plugins next to it)")
	results := flag.String("results", "bench/RESULTS.md", "where to write the table")
	only := flag.String("only", "", "run only these rows (comma-separated numbers, e.g. 7 with a VM cluster up: go run ./bench/report --only 7 --results bench/RESULTS-vms.md)")
	keygen := flag.Int(keygenFlag, 0, "internal: make N keys on every usable core, print the nanoseconds")
	flag.Parse()
	if *keygen > 0 {
		keygenMain(*keygen)
		return
	}
	started, loadStart := time.Now(), loadavg()
	abs, err := filepath.Abs(*khw)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b := &bench{khw: abs, rounds: *rounds, scaleRounds: *scaleRounds, clusterRounds: max(*clusterRounds, 1), cores: goruntime.NumCPU(), loadStart: loadStart}
	// Row 6 takes the lab down and leaves a cluster up, which row 7 reads.
	// Row 5 runs after row 6, so that it reads the timings of the lab this
	// run made (when KHW_BENCH_CLUSTER=1), not of whichever lab came last.
	all := []func() row{b.local, b.scale, b.noChange, b.plugins, b.lab, b.cluster, b.refresh}
	rows := make([]row, len(all))
	for _, i := range []int{0, 1, 2, 3, 5, 4, 6} {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), strconv.Itoa(i+1)) {
			rows[i] = row{what: "(not run: --only " + *only + ")", targets: []target{{what: "-", status: notMeasured, why: "not run in this make bench (--only)"}}}
			continue
		}
		rows[i] = all[i]()
	}
	out := render(rows, b, started)
	fmt.Print(out)
	if err := os.WriteFile(*results, []byte(out), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, r := range rows {
		if r.result() == failed {
			os.Exit(1)
		}
	}
}
