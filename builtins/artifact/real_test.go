package artifact

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealBinariesFromTheCache checks the binaries `make artifacts` built
// through this package into the machine's cache ($KHW_ARTIFACT_CACHE, or
// /var/lib/khw/artifacts): apply reuses them at once, and they say their
// versions. It is skipped when the cache lacks them, unless
// KHW_REQUIRE_ARTIFACTS=1 (CI, after make artifacts).
func TestRealBinariesFromTheCache(t *testing.T) {
	cache := os.Getenv("KHW_ARTIFACT_CACHE")
	if cache == "" {
		cache = DefaultCache
	}
	h := &Handler{Catalog: DefaultCatalog}
	for _, c := range []struct {
		project, version string
		check            map[string][]string // binary -> args, then the text its output must hold
	}{
		{"kubernetes", "v1.34.4", map[string][]string{
			"kube-apiserver":          {"--version", "Kubernetes v1.34.4"},
			"kube-controller-manager": {"--version", "Kubernetes v1.34.4"},
			"kube-scheduler":          {"--version", "Kubernetes v1.34.4"},
			"kubelet":                 {"--version", "Kubernetes v1.34.4"},
			"kube-proxy":              {"--version", "Kubernetes v1.34.4"},
			"kubectl":                 {"version", "--client", "Client Version: v1.34.4"},
			"pause":                   {"-v", "pause.c v3.10.1"},
		}},
		{"etcd", "v3.6.5", map[string][]string{
			"etcd":    {"--version", "etcd Version: 3.6.5"},
			"etcdctl": {"version", "etcdctl version: 3.6.5"},
		}},
		{"cni-plugins", "v0.9.1", map[string][]string{
			"bridge": {"CNI bridge plugin v0.9.1"}, "host-local": {"CNI host-local plugin v0.9.1"},
			"loopback": {"CNI loopback plugin v0.9.1"}, "portmap": {"CNI portmap plugin v0.9.1"},
			"flannel": {"CNI flannel plugin v0.9.1"},
		}},
		{"flannel", "v0.27.4", map[string][]string{"flanneld": {"--version", "v0.27.4"}}},
		{"coredns", "v1.12.1", map[string][]string{"coredns": {"-version", "CoreDNS-1.12.1"}}},
		{"containerd", "1.6.20~ds1-1+deb12u3", map[string][]string{
			"containerd": {"--version", "1.6.20~ds1-1+deb12u3"}, "ctr": {"--version", "1.6.20~ds1"},
			"containerd-shim-runc-v2": {"-v", "1.6.20~ds1"}, "runc": {"--version", "runc version 1.1.5"},
		}},
	} {
		t.Run(c.project, func(t *testing.T) {
			dir := Dir(cache, c.project, c.version)
			if _, err := readManifest(dir); err != nil {
				if os.Getenv("KHW_REQUIRE_ARTIFACTS") == "1" {
					t.Fatalf("%s %s is not in the cache (make artifacts): %v", c.project, c.version, err)
				}
				t.Skipf("%s %s is not in the cache %s (make artifacts builds it)", c.project, c.version, cache)
			}
			start := time.Now()
			cfg := map[string]any{"project": c.project, "version": c.version,
				"source": DefaultCatalog.Lookup(c.project).Sources[0], "cache": cache}
			_, lines, err := apply(t, h, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != 0 {
				t.Fatalf("apply did work on a cached version: %q", lines)
			}
			t.Logf("%s %s reused in %s (sha256 of every file checked)", c.project, c.version, time.Since(start).Round(time.Millisecond))
			for bin, args := range c.check {
				out := run(t, filepath.Join(dir, bin), args[:len(args)-1]...)
				if !strings.Contains(out, args[len(args)-1]) {
					t.Errorf("%s %s says %q, want %q", bin, strings.Join(args[:len(args)-1], " "), out, args[len(args)-1])
				}
			}
		})
	}
}
