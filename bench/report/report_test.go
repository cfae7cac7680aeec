package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRowResultIsItsWorstTarget(t *testing.T) {
	for _, c := range []struct {
		in   []status
		want status
	}{
		{[]status{met, met}, met},
		{[]status{met, missed}, missed},
		{[]status{missed, notMeasured, met}, notMeasured},
		{[]status{notMeasured, failed}, failed},
	} {
		var r row
		for _, s := range c.in {
			r.targets = append(r.targets, target{status: s})
		}
		if got := r.result(); got != c.want {
			t.Errorf("%v: result %s, want %s", c.in, got, c.want)
		}
	}
}

func TestBenchMetrics(t *testing.T) {
	out := `BenchmarkPluginRoundTrip-2   	     200	    143771 ns/op	       143.7 mean-µs	       142.2 median-µs
BenchmarkPluginStartup/test-2         	      50	   7832778 ns/op	         7.790 mean-ms	         7.668 median-ms
PASS`
	m := benchMetrics(out)
	if m["BenchmarkPluginRoundTrip"]["median-µs"] != 142.2 || m["BenchmarkPluginStartup/test"]["mean-ms"] != 7.790 {
		t.Fatalf("metrics = %v", m)
	}
}

func TestScaleTopologyMatchesTheRecipe(t *testing.T) {
	// bench/scale.star: workers from host 20 of 10.200.0.0/16.
	if got := scaleNodes("n", 3, 20); got != "n1:10.200.0.20 n2:10.200.0.21 n3:10.200.0.22" {
		t.Fatalf("workers = %q", got)
	}
	if got := scaleIP(256 + 7); got != "10.200.1.7" {
		t.Fatalf("host 263 = %s", got)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestLabTimingsFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KHW_LAB_WORKDIR", dir)
	b := &bench{}
	r := b.lab()
	if r.result() != notMeasured || r.figures[0] != "not measured (run make lab first)" {
		t.Fatalf("without a timings file: %+v", r)
	}
	writeFile(t, filepath.Join(dir, "timings.json"), `{"started":"2026-11-24T04:07:12Z","phases":[
		{"name":"build","seconds":12.3},{"name":"daemons","seconds":4.1},{"name":"image","seconds":0.2},{"name":"khw run","seconds":106.4}],
		"total_seconds":123.0}`)
	r = b.lab()
	all := strings.Join(r.figures, "\n")
	for _, want := range []string{"total 123.0 s", "2026-11-24 04:07 UTC", "build 12.3 s", "daemons 4.1 s", "image 0.2 s", "khw run 106.4 s"} {
		if !strings.Contains(all, want) {
			t.Errorf("figures %q lack %q", all, want)
		}
	}
	if r.result() != met || r.targets[1].got != "106.4 s" {
		t.Fatalf("row = %+v", r)
	}
	if !strings.Contains(all, "nodes: not recorded") {
		t.Errorf("figures %q do not say the nodes' kind was not recorded", all)
	}
	writeFile(t, filepath.Join(dir, "timings.json"), `{"phases":[{"name":"khw run","seconds":400}],"total_seconds":420}`)
	if r = b.lab(); r.result() != missed || strings.Contains(r.targets[1].why, "cluster on qemu/TCG") {
		t.Fatalf("a slow lab: %+v", r)
	}
	// A VM lab says what its time goes to: the cluster on emulated CPUs.
	writeFile(t, filepath.Join(dir, "timings.json"), `{"nodes":"vms","phases":[{"name":"khw run","seconds":1132}],"total_seconds":1135}`)
	if r = b.lab(); r.result() != missed || !strings.Contains(r.figures[0], "nodes: vms") || !strings.Contains(r.targets[1].why, "the whole cluster on qemu/TCG VMs") {
		t.Fatalf("a VM cluster lab: %+v", r)
	}
}

// The lab's figures come through scripts/lab.sh, replaced here by a fake
// that answers as an unchanged lab would (or, with FAKE_PLAN_RC=2, as one
// with changes pending).
func TestLabNoChange(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KHW_LAB_WORKDIR", dir)
	oldNetns, oldScript := labNetns, labScript
	t.Cleanup(func() { labNetns, labScript = oldNetns, oldScript })
	labNetns = filepath.Join(dir, "netns")
	labScript = filepath.Join(dir, "lab.sh")
	writeFile(t, labScript, `case "$*" in
  "khw plan --detailed-exitcode") exit ${FAKE_PLAN_RC:-0} ;;
  "exec true"|"exec ssh "*) ;;
  "khw plan"|"khw run"|"khw plan --target "*|"khw run --refresh=false") echo "No changes. The lab matches the recipe." ;;
  *) echo "unexpected: $*"; exit 9 ;;
esac
`)
	b := &bench{rounds: 2}
	if r := b.labNoChange(); r.run != nil || !strings.Contains(r.reason, "lab not up: run make lab, then make bench KHW_BENCH_LAB=1") {
		t.Fatalf("no lab: %+v", r)
	}
	writeFile(t, labNetns, "")
	writeFile(t, filepath.Join(dir, ".khw", "state.json"), "{}")
	t.Setenv("KHW_BENCH_LAB", "")
	if r := b.labNoChange(); r.run != nil || !strings.Contains(r.reason, "KHW_BENCH_LAB is not set") {
		t.Fatalf("lab up, KHW_BENCH_LAB unset: %+v", r)
	}
	t.Setenv("KHW_BENCH_LAB", "1")
	t.Setenv("FAKE_PLAN_RC", "2")
	if r := b.labNoChange(); r.run != nil || !strings.Contains(r.reason, "changes pending") {
		t.Fatalf("changes pending: %+v", r)
	}
	t.Setenv("FAKE_PLAN_RC", "0")
	r := b.labNoChange()
	if r.err != nil || r.run == nil || len(r.run.times) != 2 || len(r.plan.times) != 2 || len(r.overhead.times) != 2 ||
		len(r.copies.times) != 2 || len(r.login.times) != 2 || len(r.trusting.times) != 2 {
		t.Fatalf("lab up: %+v", r)
	}
}

// TestParseReadBack reads the ssh plugin's debug lines as khw's log shows
// them.
func TestParseReadBack(t *testing.T) {
	out := `2026-11-30T13:12:20.410Z [DEBUG] plugin.ssh.khw-plugin-ssh: read back: node=m1 resources=27 connections=1 sessions=1 keepalives=0 command=147ms
2026-11-30T13:12:20.411Z [DEBUG] plugin.ssh.khw-plugin-ssh: read back: sessions=2 connect=110ms keepalives=1 node=n1 resources=12 connections=1 timestamp=2026-11-30T13:31:03.280Z
No changes.`
	got := parseReadBack(out)
	if len(got) != 2 || got["m1"] != (nodeTrips{27, 1, 1, 0}) || got["n1"].trips() != 4 {
		t.Errorf("parsed %+v", got)
	}
	if d := describeTrips(got); d != "m1: 27 resources, 1 connection, 1 command; n1: 12 resources, 1 connection, 3 commands" {
		t.Errorf("described as %q", d)
	}
}

// pairedRatio pairs rounds: a load that doubles both sides of one round
// does not move it, where a ratio of medians would.
func TestPairedRatio(t *testing.T) {
	ms := time.Millisecond
	khw := &series{times: []time.Duration{100 * ms, 400 * ms, 110 * ms}}
	key := &series{times: []time.Duration{50 * ms, 200 * ms, 50 * ms}}
	if r := pairedRatio(khw, key, 2); r != 1.0 {
		t.Errorf("paired ratio %.3f, want 1.0 (the middle of 1.0, 1.0, 1.1)", r)
	}
	if r := pairedRatio(&series{times: []time.Duration{ms, 3 * ms}}, &series{times: []time.Duration{ms, ms}}, 1); r != 2 {
		t.Errorf("even count: %.3f, want 2 (the mean of the middle two)", r)
	}
}

// A run's debug log gives its keys' CPU time; the key-floor target is
// judged against the floor under those keys, run by run, and the sampled
// floor is still shown.
func TestFloorUnderOwnKeys(t *testing.T) {
	ms := time.Millisecond
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w", "ca-key.pem"), "x")
	writeFile(t, filepath.Join(dir, "w", ".khw", "state.json"), `{"serial": 3}`)
	var f runFacts
	for _, ns := range []string{"800000000", "1000000000", "600000000"} {
		out := "2026-11-30T23:37:08.435Z [DEBUG] khw: state written: bytes=1145 resources=3\n2026-11-30T23:37:08.436Z [DEBUG] khw: keys generated: keys=1 cpu_ns=" + ns + "\n"
		if err := f.inspect(dir, []byte(out)); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.keyCPU) != 3 || f.keyCPU[1] != time.Second || f.written != 1145 || f.keys != 1 {
		t.Fatalf("facts %+v", f)
	}
	b := &bench{cores: 2}
	khw := &series{times: []time.Duration{480 * ms, 600 * ms, 450 * ms}} // 1.2×, 1.2×, 1.5× the own floors
	key := &series{times: []time.Duration{100 * ms, 100 * ms, 100 * ms}, per: 1}
	post := &series{times: []time.Duration{5000 * ms}}
	bare := &series{times: []time.Duration{60 * ms}}
	figures, targets := b.versus(post, khw, bare, key, &f, 1.3)
	all := strings.Join(figures, "\n")
	if !strings.Contains(all, "khw ÷ floor, round by round (median of 3 rounds): 9.60×") ||
		!strings.Contains(all, "the floor under its own keys (each run's key-generation CPU time ÷ 2 cores; median 800 ms of CPU, 800 ms a key), median of 3 rounds: 1.20×") {
		t.Errorf("figures:\n%s", all)
	}
	if tg := targets[1]; tg.status != met || tg.got != "1.20× (against the floor under its own keys)" {
		t.Errorf("floor target %+v", tg)
	}
	// Without the log in every run, the sampled floor judges.
	f.keyCPU = f.keyCPU[:2]
	if _, targets = b.versus(post, khw, bare, key, &f, 1.3); targets[1].status != missed || !strings.Contains(targets[1].got, "round by round") {
		t.Errorf("without the keys' CPU time: %+v", targets[1])
	}
}
