package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/startest"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// fakeCatalog has one project, "hello", built from the module in
// testdata/hello (go build for real, offline) or downloaded from base.
func fakeCatalog(t testing.TB) Catalog {
	dir, err := filepath.Abs("testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	return Catalog{{
		Project:  "hello",
		Binaries: []string{"hello", "greet", "tiny"},
		Versions: []string{"v1.0.0", "v1.1.0"},
		Why:      "hello is a test project",
		Sources:  []string{SourceBuild, SourceDownload},
		NoSource: map[string]string{SourceDebian: "hello is not packaged"},
		Build: &GoBuild{
			Module:  "example.com/hello",
			Replace: map[string]string{"example.com/hello": dir},
			Packages: []Package{
				{Path: "example.com/hello/cmd/hello", Bin: "hello"},
				{Path: "example.com/hello/cmd/greet/v2", Bin: "greet"},
			},
			LDFlags: func(v string) []string { return []string{"main.version=" + v} },
		},
		Download: &Download{
			Base: "http://127.0.0.1:1/unused",
			Assets: func(v string) []Asset {
				return []Asset{
					{Path: v + "/hello", Sums: v + "/hello.sha256", Bin: "hello"},
					{Path: v + "/bundle.tar.gz", Sums: v + "/SHA256SUMS", Members: []string{"greet"}},
				}
			},
		},
		Compiled: []CProgram{{Src: "tiny.c", Bin: "tiny", Flags: []string{"-O2", "-static", "-DVERSION=t1"}}},
	}}
}

// recipe is a recipe root whose recipe.star is src, evaluated with the
// artifact module of cat.
func recipe(t *testing.T, cat Catalog, src string) *startest.Fixture {
	r := runtime.NewRegistry()
	register(r, cat)
	f := startest.NewFixture(t, r)
	f.File("recipe.star", src)
	return f
}

func TestEvaluationRefusesBadInputWithTheRecipeLine(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`artifact.release("nginx")`, `recipe.star:2:21: artifact.release: unknown project "nginx": khw knows hello`},
		{`artifact.release("hello", version = "v9.9.9")`,
			`recipe.star:2:21: artifact.release: hello v9.9.9 is not a version khw knows: it knows v1.0.0, v1.1.0 (hello is a test project)`},
		{`artifact.release("hello", source = "debian")`,
			`recipe.star:2:21: artifact.release: hello cannot come from source "debian" (hello is not packaged): use build or download`},
		{`artifact.release("hello", source = "git")`, `cannot come from source "git" (sources are build, download and debian)`},
		{`artifact.release("hello", cache = "artifacts")`, `cache "artifacts" must be a clean absolute directory`},
		{`artifact.release("hello", cache = "/var/lib/../khw")`, `must be a clean absolute directory`},
		{`artifact.release("hello", source = "download", url = "ftp://x")`, `url "ftp://x" must be an http:// or https:// base URL`},
		{`artifact.release("hello", url = "http://127.0.0.1/")`, `url is for source "download", not "build"`},
	} {
		recipe(t, fakeCatalog(t), "x = 1\nk = "+c.src+"\n").AssertError("recipe.star", nil, "recipe.star:2", c.want)
	}
}

func TestTheRealCatalogSaysWhyItPins(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`artifact.release("kubernetes", version = "v1.35.0")`, `kubernetes v1.35.0 is not a version khw knows: it knows v1.34.4, v1.34.3, v1.34.2, v1.34.0 (khw pins Kubernetes 1.34: 1.35's kubelet refuses cgroup v1`},
		{`artifact.release("flannel", source = "download")`, `without a sha256 file`},
		{`artifact.release("containerd", source = "build")`, `from Debian's packages`},
		{`artifact.release("containerd", version = "latest")`, `containerd latest is not a version khw knows`},
		{`artifact.release("kube")`, `khw knows kubernetes, etcd, cni-plugins, flannel, coredns, containerd`},
	} {
		recipe(t, DefaultCatalog, c.src+"\n").AssertError("recipe.star", nil, "recipe.star:1", c.want)
	}
	// Debian's versions are apt's to judge.
	recipe(t, DefaultCatalog, `artifact.release("containerd", version = "1.7.24~ds1-1")`+"\n").MustEval("recipe.star", nil)
}

func TestHandleFilesFollowTheVersion(t *testing.T) {
	var out bytes.Buffer
	r := runtime.NewRegistry()
	register(r, fakeCatalog(t))
	rec, err := r.Evaluate("recipe.star", runtime.Options{Root: t.TempDir(), Print: &out, Source: []byte(`
a = artifact.release("hello", version = "v1.1.0", cache = "/c")
print(a.version, a.dir, a.files["hello"].path, a.files["hello"].exec, a.files["hello"].producer, sorted(a.files.keys()))
`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); !strings.HasSuffix(got, ` v1.1.0 /c/hello/v1.1.0 /c/hello/v1.1.0/hello True artifact.hello ["greet", "hello", "tiny"]`) {
		t.Fatalf("print = %s", got)
	}
	res := rec.Resource("artifact.hello")
	if res == nil || res.Provider != "khw" {
		t.Fatalf("resource = %+v", res)
	}
	want := map[string]any{"cache": "/c", "project": "hello", "source": "build", "version": "v1.1.0"}
	if fmt.Sprint(res.Inputs) != fmt.Sprint(want) {
		t.Fatalf("inputs = %v", res.Inputs)
	}
	_, err = r.Evaluate("recipe.star", runtime.Options{Root: t.TempDir(), Source: []byte(`
a = artifact.release("hello")
a.files["x"] = 1
`)})
	if err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("files is not frozen: %v", err)
	}
}

// apply runs the handler's Apply as khw would, and collects progress.
func apply(t *testing.T, h *Handler, cfg map[string]any, prior json.RawMessage) (*sdk.ApplyResponse, []string, error) {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	var mu sync.Mutex
	var lines []string
	resp, err := h.Apply(context.Background(), &sdk.ApplyRequest{
		Resource:     sdk.Resource{Type: "artifact", Name: cfg["project"].(string), Address: "artifact." + cfg["project"].(string), Config: raw},
		PriorOutputs: prior,
	}, func(s string) { mu.Lock(); lines = append(lines, s); mu.Unlock() })
	return resp, lines, err
}

func read(t *testing.T, h *Handler, cfg map[string]any, prior json.RawMessage) *sdk.ReadResponse {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	resp, err := h.Read(context.Background(), &sdk.ReadRequest{
		Resource: sdk.Resource{Type: "artifact", Name: "hello", Address: "artifact.hello", Config: raw}, PriorOutputs: prior})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestBuildReuseAndRead(t *testing.T) {
	if _, err := goTool(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	cache := t.TempDir()
	h := &Handler{Catalog: fakeCatalog(t)}
	cfg := map[string]any{"project": "hello", "version": "v1.1.0", "source": "build", "cache": cache}

	// Two labs at once: one builds, the other waits for the lock and reuses.
	type result struct {
		resp  *sdk.ApplyResponse
		lines []string
		err   error
	}
	res := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			r, l, err := apply(t, h, cfg, nil)
			res <- result{r, l, err}
		}()
	}
	builds := 0
	var first *sdk.ApplyResponse
	for i := 0; i < 2; i++ {
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		for _, l := range r.lines {
			if strings.HasPrefix(l, "go build of 2 packages") {
				builds++
			}
		}
		if first != nil && r.resp.Digest != first.Digest {
			t.Fatalf("digests differ: %s %s", r.resp.Digest, first.Digest)
		}
		first = r.resp
	}
	if builds != 1 {
		t.Fatalf("%d builds, want 1", builds)
	}

	dir := filepath.Join(cache, "hello", "v1.1.0")
	if got := run(t, filepath.Join(dir, "hello")); got != "hello v1.1.0" {
		t.Fatalf("hello says %q", got)
	}
	if got := run(t, filepath.Join(dir, "greet")); got != "greet" {
		t.Fatalf("greet says %q", got)
	}
	if got := run(t, filepath.Join(dir, "tiny")); got != "tiny t1" {
		t.Fatalf("tiny says %q", got)
	}
	var out Outputs
	if err := json.Unmarshal(first.Outputs, &out); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"hello", "greet", "tiny"} {
		sum, size, _ := hashFile(filepath.Join(dir, b))
		if out.Files[b].SHA256 != sum || out.Files[b].Size != size || out.Files[b].Path != filepath.Join(dir, b) {
			t.Errorf("outputs for %s = %+v; file has %s %d", b, out.Files[b], sum, size)
		}
		if m.Files[b].SHA256 != sum {
			t.Errorf("manifest for %s = %+v", b, m.Files[b])
		}
		if st, _ := os.Stat(filepath.Join(dir, b)); st.Mode().Perm() != 0o755 {
			t.Errorf("%s is %v", b, st.Mode())
		}
	}
	if out.Dir != dir || out.Source != "build" || out.Version != "v1.1.0" || !strings.Contains(m.Obtained, "go build -trimpath of example.com/hello@v1.1.0") {
		t.Fatalf("outputs %+v, manifest %+v", out, m)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "hello")); len(entries) != 2 { // v1.1.0 and v1.1.0.lock
		t.Fatalf("cache holds %v", entries)
	}

	// Again: nothing is built, at once.
	start := time.Now()
	again, lines, err := apply(t, h, cfg, first.Outputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 0 || again.Digest != first.Digest || time.Since(start) > 2*time.Second {
		t.Fatalf("second apply said %q (digest %s, %s)", lines, again.Digest, time.Since(start))
	}

	if r := read(t, h, cfg, first.Outputs); !r.Exists || r.Drift != "" {
		t.Fatalf("read = %+v", r)
	}
	// A file that is not what the manifest says: gone, and made again.
	if err := os.WriteFile(filepath.Join(dir, "greet"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := read(t, h, cfg, first.Outputs); r.Exists {
		t.Fatal("read finds a version whose file changed size")
	}
	again, lines, err = apply(t, h, cfg, first.Outputs)
	if err != nil || again.Digest != first.Digest || len(lines) == 0 {
		t.Fatalf("rebuild: %v, %q", err, lines)
	}
	if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil {
		t.Fatal(err)
	}
	if r := read(t, h, cfg, first.Outputs); r.Exists {
		t.Fatal("read finds a version without its manifest")
	}
}

func TestBuildFailureSaysWhatGoSaid(t *testing.T) {
	if _, err := goTool(); err != nil {
		t.Skip(err)
	}
	cat := fakeCatalog(t)
	cat[0].Build.Packages = append(cat[0].Build.Packages, Package{Path: "example.com/hello/cmd/nothere", Bin: "nothere"})
	cache := t.TempDir()
	_, _, err := apply(t, &Handler{Catalog: cat}, map[string]any{"project": "hello", "version": "v1.0.0", "source": "build", "cache": cache}, nil)
	if err == nil || !strings.Contains(err.Error(), "go build of example.com/hello@v1.0.0 (3 packages): exit status 1") || !strings.Contains(err.Error(), "cmd/nothere") || sdk.HintOf(err) == "" {
		t.Fatalf("err = %v (hint %q)", err, sdk.HintOf(err))
	}
	assertNothingCached(t, cache, "hello", "v1.0.0")

	// A compile error is no proxy's fault: go's lines, and no hint.
	cat = fakeCatalog(t)
	cat[0].Build.Packages = append(cat[0].Build.Packages, Package{Path: "example.com/hello/cmd/broken", Bin: "broken"})
	_, _, err = apply(t, &Handler{Catalog: cat}, map[string]any{"project": "hello", "version": "v1.0.0", "source": "build", "cache": cache}, nil)
	if err == nil || !strings.Contains(err.Error(), "undefined: notDefined") || sdk.HintOf(err) != "" {
		t.Fatalf("err = %v (hint %q)", err, sdk.HintOf(err))
	}
	assertNothingCached(t, cache, "hello", "v1.0.0")
}

func assertNothingCached(t *testing.T, cache, project, version string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(cache, project))
	for _, e := range entries {
		if strings.Contains(e.Name(), version) && e.Name() != version+".lock" {
			t.Errorf("the cache holds %s after a failure", e.Name())
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tgz(t *testing.T, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	_ = tw.WriteHeader(&tar.Header{Name: "bundle/", Typeflag: tar.TypeDir, Mode: 0o755})
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "bundle/" + name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// releaseServer serves a fake release of hello: a raw binary with a lone
// hash, and a tarball in SHA256SUMS. sums replaces the raw binary's hash;
// serve, when not nil, serves the raw binary.
func releaseServer(t *testing.T, version string, hello []byte, sums func(string) string, serve http.HandlerFunc) *httptest.Server {
	bundle := tgz(t, map[string][]byte{"greet": []byte("#!/bin/sh\necho greet\n"), "README": []byte("x")})
	if serve == nil {
		serve = func(w http.ResponseWriter, _ *http.Request) { w.Write(hello) }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/rel/"+version+"/hello", serve)
	mux.HandleFunc("/rel/"+version+"/hello.sha256", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, sums(sha(hello)))
	})
	mux.HandleFunc("/rel/"+version+"/bundle.tar.gz", func(w http.ResponseWriter, _ *http.Request) { w.Write(bundle) })
	mux.HandleFunc("/rel/"+version+"/SHA256SUMS", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s  other.tar.gz\n%s  bundle.tar.gz\n", sha([]byte("other")), sha(bundle))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func helloScript(version string) []byte { return []byte("#!/bin/sh\necho hello " + version + "\n") }

func TestDownloadChecksTheSHA256(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	srv := releaseServer(t, "v1.0.0", helloScript("v1.0.0"), func(s string) string { return s }, nil)
	cache := t.TempDir()
	h := &Handler{Catalog: fakeCatalog(t)}
	cfg := map[string]any{"project": "hello", "version": "v1.0.0", "source": "download", "cache": cache, "url": srv.URL + "/rel/"}
	resp, _, err := apply(t, h, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "hello", "v1.0.0")
	if got := run(t, filepath.Join(dir, "hello")); got != "hello v1.0.0" {
		t.Fatalf("hello says %q", got)
	}
	if got := run(t, filepath.Join(dir, "greet")); got != "greet" {
		t.Fatalf("greet says %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err == nil {
		t.Fatal("a member that is no binary was taken")
	}
	var out Outputs
	_ = json.Unmarshal(resp.Outputs, &out)
	if out.Source != "download" || len(out.Files) != 3 {
		t.Fatalf("outputs = %+v", out)
	}

	bad := releaseServer(t, "v1.1.0", helloScript("v1.1.0"), func(string) string { return sha([]byte("not it")) + "  hello" }, nil)
	cfg["version"], cfg["url"] = "v1.1.0", bad.URL+"/rel"
	_, _, err = apply(t, h, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "/rel/v1.1.0/hello: sha256 ") || !strings.Contains(err.Error(), "is not the published "+sha([]byte("not it"))) {
		t.Fatalf("err = %v", err)
	}
	assertNothingCached(t, cache, "hello", "v1.1.0")

	// Nothing listens there: the hint says what to do offline.
	cfg["url"] = "http://127.0.0.1:1"
	_, _, err = apply(t, h, cfg, nil)
	if err == nil || !strings.Contains(sdk.HintOf(err), `source = "build"`) {
		t.Fatalf("err = %v, hint %q", err, sdk.HintOf(err))
	}
}

// TestKilledMidwayLeavesNothingComplete kills a khw (this test binary,
// run again as a helper) while it downloads, then checks that the cache
// has no version that looks complete, that Read says so, and that the
// next apply finishes the job.
func TestKilledMidwayLeavesNothingComplete(t *testing.T) {
	if os.Getenv("KHW_ARTIFACT_HELPER") != "" {
		var cfg map[string]any
		_ = json.Unmarshal([]byte(os.Getenv("KHW_ARTIFACT_HELPER")), &cfg)
		_, _, err := apply(t, &Handler{Catalog: fakeCatalog(t)}, cfg, nil)
		t.Fatalf("the helper was not killed: %v", err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	half := make(chan struct{})
	release := make(chan struct{})
	stall := true
	var mu sync.Mutex
	body := append(helloScript("v1.0.0"), bytes.Repeat([]byte("#"), 1<<20)...)
	stalling := releaseServer(t, "v1.0.0", body, func(s string) string { return s }, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := stall
		mu.Unlock()
		if !s {
			w.Write(body)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		close(half)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)

	cache := t.TempDir()
	cfg := map[string]any{"project": "hello", "version": "v1.0.0", "source": "download", "cache": cache, "url": stalling.URL + "/rel"}
	raw, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidwayLeavesNothingComplete$")
	cmd.Env = append(os.Environ(), "KHW_ARTIFACT_HELPER="+string(raw))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-half:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the helper never downloaded")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	tmps, _ := filepath.Glob(filepath.Join(cache, "hello", tmpPrefix("v1.0.0")+"*"))
	if len(tmps) != 1 {
		t.Fatalf("the killed khw left %v (want its temporary directory)", tmps)
	}
	if _, err := os.Stat(filepath.Join(cache, "hello", "v1.0.0")); !os.IsNotExist(err) {
		t.Fatalf("a version directory exists after the kill: %v", err)
	}
	h := &Handler{Catalog: fakeCatalog(t)}
	if r := read(t, h, cfg, nil); r.Exists {
		t.Fatal("read finds the killed download")
	}
	mu.Lock()
	stall = false
	mu.Unlock()
	if _, _, err := apply(t, h, cfg, nil); err != nil {
		t.Fatal(err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(cache, "hello", tmpPrefix("v1.0.0")+"*")); len(tmps) != 0 {
		t.Fatalf("the next apply left %v", tmps)
	}
	if r := read(t, h, cfg, nil); !r.Exists {
		t.Fatal("read does not find the finished version")
	}
}

func TestProgressLinesAreFewAndSayWhatIsDone(t *testing.T) {
	old := progressEvery
	progressEvery = 0
	defer func() { progressEvery = old }()
	var got []string
	bp := &buildProgress{what: "kubernetes v1.34.4", progress: func(s string) { got = append(got, s) }}
	for _, l := range []string{"go: downloading k8s.io/api v0.34.4", "internal/goarch", "k8s.io/apiserver/pkg/server"} {
		if !bp.line(l) {
			t.Fatalf("%q is not progress", l)
		}
	}
	for _, l := range []string{"# k8s.io/foo", "foo.go:3:2: undefined: x", "go: k8s.io/x@v1: 403 Forbidden"} {
		if bp.line(l) {
			t.Fatalf("%q is taken for progress", l)
		}
	}
	if want := "kubernetes v1.34.4: downloaded 1 modules, compiled 2 packages, last k8s.io/apiserver/pkg/server"; got[len(got)-1] != want {
		t.Fatalf("got %q", got)
	}
	progressEvery = time.Hour
	n := len(got)
	bp.lastReport = time.Now()
	bp.line("a/b")
	if len(got) != n {
		t.Fatal("a line within the interval was reported")
	}
}

func TestFindSumAndBinaryNames(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, c := range []struct{ sums, name, want string }{
		{h + "\n", "kube-apiserver", h},
		{h + "  coredns_1.12.1_linux_amd64.tgz\n", "coredns_1.12.1_linux_amd64.tgz", h},
		{strings.Repeat("cd", 32) + "  etcd-v3.6.5-darwin.zip\n" + h + " *etcd-v3.6.5-linux-amd64.tar.gz\n", "etcd-v3.6.5-linux-amd64.tar.gz", h},
		{strings.Repeat("cd", 32) + "  other\n", "etcd.tar.gz", ""},
		{"<html>not found</html>", "x", ""},
	} {
		got, err := findSum(c.sums, c.name)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("findSum(%q, %s) = %q, %v", c.sums, c.name, got, err)
		}
	}
	for pkg, bin := range map[string]string{"go.etcd.io/etcd/server/v3": "server", "k8s.io/kubernetes/cmd/kubelet": "kubelet", "github.com/coredns/coredns": "coredns"} {
		if got := goBinName(pkg); got != bin {
			t.Errorf("goBinName(%s) = %s", pkg, got)
		}
	}
}

// TestWrapperGoModIsLikeTheHandMadeOne checks the Kubernetes wrapper's
// replace lines against kubernetes' own go.mod, when the module cache has
// it (make artifacts puts it there).
func TestWrapperGoModIsLikeTheHandMadeOne(t *testing.T) {
	gobin, err := goTool()
	if err != nil {
		t.Skip(err)
	}
	gomodcache, _ := exec.Command(gobin, "env", "GOMODCACHE").Output()
	gomod := filepath.Join(strings.TrimSpace(string(gomodcache)), "cache/download/k8s.io/kubernetes/@v/v1.34.4.mod")
	if _, err := os.Stat(gomod); err != nil {
		t.Skip("k8s.io/kubernetes v1.34.4 is not in the module cache")
	}
	mods, err := localReplaces(context.Background(), gobin, gomod)
	if err != nil {
		t.Fatal(err)
	}
	spec := DefaultCatalog.Lookup("kubernetes")
	replace := map[string]string{}
	for _, m := range mods {
		replace[m] = m + " " + spec.Build.Staging("v1.34.4")
	}
	got := wrapperGoMod("kubernetes", "1.26", map[string]string{"k8s.io/kubernetes": "v1.34.4"}, replace)
	for _, line := range []string{"require (\n\tk8s.io/kubernetes v1.34.4\n)", "\tk8s.io/api => k8s.io/api v0.34.4\n",
		"\tk8s.io/kubelet => k8s.io/kubelet v0.34.4\n", "\tk8s.io/sample-controller => k8s.io/sample-controller v0.34.4\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("the wrapper lacks %q:\n%s", line, got)
		}
	}
	if n := strings.Count(got, "=>"); n != 31 {
		t.Errorf("%d replace lines, want 31 (as /tmp/k8sbuild/go.mod):\n%s", n, got)
	}
}
