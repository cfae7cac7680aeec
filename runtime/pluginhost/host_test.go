package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// buildTestPlugin compiles plugins/sdk/testplugin as khw-plugin-test.
func buildTestPlugin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, BinaryPrefix+"test"), "github.com/khw-dev/khw/plugins/sdk/testplugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	return dir
}

func newHost(dir string) *Host {
	h := New(sdk.NewMux("khw", "test"))
	h.SearchPath = []string{dir}
	return h
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is dead too.
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

func resource(name, cfg string) sdk.Resource {
	return sdk.Resource{Type: "test.file", Name: name, Address: "test.file." + name, Config: json.RawMessage(cfg)}
}

func TestPluginAcrossProcesses(t *testing.T) {
	dir := buildTestPlugin(t)
	h := newHost(dir)
	ctx := context.Background()

	if got := h.List(); len(got) != 1 || got[0].Name != "test" {
		t.Fatalf("List = %+v", got)
	}
	sc, err := h.Describe(ctx, "test")
	if err != nil || sc.Version != "0.0.1" || sc.Types[0].Type != "test.file" {
		t.Fatalf("Describe = %+v, %v", sc, err)
	}
	p, _ := h.Provider(ctx, "test")
	work := t.TempDir()
	var progress []string
	resp, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: resource("a", `{"content":"hi","sleep_ms":60}`), Workdir: work},
		func(m string) { progress = append(progress, m) })
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "test-a")); string(b) != "hi" {
		t.Fatalf("file = %q", b)
	}
	if len(progress) == 0 {
		t.Fatal("no progress streamed from the plugin")
	}
	var out struct{ PID int }
	_ = json.Unmarshal(resp.Outputs, &out)
	if out.PID == os.Getpid() || !alive(out.PID) {
		t.Fatalf("plugin pid %d: not a separate live process", out.PID)
	}
	h.Close()
	for i := 0; i < 100 && alive(out.PID); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(out.PID) {
		t.Fatalf("plugin process %d still runs after Close: orphaned", out.PID)
	}
}

func TestPluginCrashIsNamed(t *testing.T) {
	dir := buildTestPlugin(t)
	h := newHost(dir)
	defer h.Close()
	ctx := context.Background()
	p, err := h.Provider(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: resource("boom", `{"crash":true}`), Workdir: t.TempDir()}, nil)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a crashed plugin made the call hang")
	}
	if err == nil || !strings.Contains(err.Error(), `plugin "test" crashed or was killed`) || !strings.Contains(sdk.HintOf(err), "KHW_LOG=debug") {
		t.Fatalf("err = %v, hint %q", err, sdk.HintOf(err))
	}
}

func TestMissingPlugin(t *testing.T) {
	h := newHost(t.TempDir())
	_, err := h.Provider(context.Background(), "libvirt")
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{`plugin "libvirt" is not installed`, "khw-plugin-libvirt", h.SearchPath[0]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if h := sdk.HintOf(err); !strings.Contains(h, "make build") || !strings.Contains(h, PathEnv) {
		t.Errorf("hint %q does not say how to install it", h)
	}
}

func TestSearchPathOrder(t *testing.T) {
	t.Setenv(PathEnv, "/a:/b")
	t.Setenv("XDG_DATA_HOME", "/xdg")
	got := DefaultSearchPath()
	if len(got) != 4 || got[0] != "/a" || got[1] != "/b" || got[3] != "/xdg/khw/plugins" {
		t.Fatalf("search path = %v", got)
	}
}

// A plugin can be launched through a command prefix (sudo -n -E for host
// networking); here `env` stands in for sudo and sets a marker only the
// prefix could have set.
func TestPluginLaunchedThroughAPrefix(t *testing.T) {
	dir := buildTestPlugin(t)
	t.Setenv(PrefixEnv+"TEST", "env KHW_TEST_MARK=via-prefix")
	h := newHost(dir)
	defer h.Close()
	p, err := h.Provider(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Apply(context.Background(), &sdk.ApplyRequest{Resource: resource("p", `{"content":"x"}`), Workdir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Mark string }
	_ = json.Unmarshal(resp.Outputs, &out)
	if out.Mark != "via-prefix" {
		t.Fatalf("the plugin did not run through the prefix: mark %q", out.Mark)
	}
}

// A plugin whose schema does not serve what khw's builtins need from it is
// not used, and the error names the type.
func TestPluginSchemaIsChecked(t *testing.T) {
	dir := buildTestPlugin(t)
	reg := runtime.NewRegistry()
	reg.AddType(runtime.TypeSpec{Type: "test.dir", Provider: "test"})
	h := newHost(dir)
	h.Check = reg.CheckSchema
	defer h.Close()
	_, err := h.Provider(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), `plugin "test" (`+filepath.Join(dir, "khw-plugin-test")+`) cannot be used: resource type "test.dir": plugin "test" does not serve it`) {
		t.Fatalf("err = %v", err)
	}
	// The schema it reported at start-up is what Describe answers.
	h2 := newHost(dir)
	defer h2.Close()
	sc, err := h2.Describe(context.Background(), "test")
	if err != nil || len(sc.Types) != 1 || !sc.Types[0].UpdateInPlace {
		t.Fatalf("describe = %+v, %v", sc, err)
	}
}
