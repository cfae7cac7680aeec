package pluginhost

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// reportDurations reports the median and mean of one measurement per
// iteration, in unit (time.Microsecond: "median-µs", "mean-µs").
func reportDurations(b *testing.B, ds []time.Duration, unit time.Duration, suffix string) {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	b.ReportMetric(float64(s[len(s)/2])/float64(unit), "median-"+suffix)
	b.ReportMetric(float64(sum)/float64(len(s))/float64(unit), "mean-"+suffix)
}

// BenchmarkPluginRoundTrip is one provider call over the plugin protocol:
// a Read (what a no-change run makes for every recorded resource) from
// khw's host, through gRPC over go-plugin's unix socket, to the test
// plugin's handler and back. Run by make bench.
func BenchmarkPluginRoundTrip(b *testing.B) {
	h := newHost(buildTestPlugin(b))
	defer h.Close()
	ctx := context.Background()
	p, err := h.Provider(ctx, "test")
	if err != nil {
		b.Fatal(err)
	}
	req := &sdk.ReadRequest{Resource: resource("a", `{"content":"hi"}`), PriorOutputs: []byte(`{"pid":1}`), Workdir: b.TempDir()}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := p.Read(ctx, req); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	reportDurations(b, ds, time.Microsecond, "µs")
}

// BenchmarkPluginStartup is a plugin's start-up as khw pays it on first
// use: exec of the binary, go-plugin's handshake, the gRPC connection and
// the first RPC (Describe, which the host checks the plugin's name with).
// Stopping the plugin is not timed. Sub-benchmark test is the test plugin;
// with KHW_BENCH_PLUGIN_DIR set (make bench: bin), every plugin found there
// is timed too. Run by make bench.
func BenchmarkPluginStartup(b *testing.B) {
	b.Run("test", func(b *testing.B) { benchStartup(b, buildTestPlugin(b), "test") })
	if dir := os.Getenv("KHW_BENCH_PLUGIN_DIR"); dir != "" {
		for _, f := range newHost(dir).List() {
			b.Run(f.Name, func(b *testing.B) { benchStartup(b, dir, f.Name) })
		}
	}
}

func benchStartup(b *testing.B, dir, name string) {
	ctx := context.Background()
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := newHost(dir)
		start := time.Now()
		_, err := h.Provider(ctx, name)
		ds = append(ds, time.Since(start))
		b.StopTimer()
		h.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportDurations(b, ds, time.Millisecond, "ms")
}
