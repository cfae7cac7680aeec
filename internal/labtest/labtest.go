// Package labtest helps integration tests build khw and its plugins and
// run them inside network namespaces that the test makes and removes.
// Nothing here touches the machine's own network: every address lives in a
// namespace the test created.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds bin/khw and every plugin into one temporary directory
// (khw finds plugins next to itself) and returns it.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStale()
		binDir, buildErr = os.MkdirTemp("", fmt.Sprintf("khw-labtest-bin-%d-", os.Getpid()))
		if buildErr != nil {
			return
		}
		root := RepoRoot()
		targets := map[string]string{"khw": "./cmd/khw"}
		ents, _ := os.ReadDir(filepath.Join(root, "plugins"))
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(root, "plugins", e.Name(), "main.go")); err == nil {
				targets["khw-plugin-"+e.Name()] = "./plugins/" + e.Name()
			}
		}
		for out, pkg := range targets {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, out), pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// removeStale deletes the binaries of test processes that have ended: a
// package's tests share one build and cannot know which test is last.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "khw-labtest-bin-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "khw-labtest-bin-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
}

// RequireRoot skips a test that needs namespaces when not root, and fails
// it in CI (CI=true, as .ci/run sets), so that a green CI means it ran.
func RequireRoot(t testing.TB) {
	t.Helper()
	RequireRootTo(t, "make network namespaces")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("iproute2 is not installed (make deps)")
	}
}

// RequireRootTo is RequireRoot for a test that needs root for something
// else: what, as in "needs root to mount a tmpfs".
func RequireRootTo(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs root to %s, and CI=true: CI runs as root", what)
		}
		t.Skipf("needs root to %s", what)
	}
}

// Rand returns a short random suffix for names.
func Rand() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs a command and fails the test on error, returning stdout.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Output(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs a command and returns its combined output.
func Output(name string, args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// Namespace is a network namespace the test owns.
type Namespace struct {
	Name string
	t    testing.TB
}

// NewNamespace makes a namespace with lo up, removed when the test ends.
func NewNamespace(t testing.TB, prefix string) *Namespace {
	t.Helper()
	ns := &Namespace{Name: prefix + "-" + Rand(), t: t}
	Run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() { _, _ = Output("ip", "netns", "del", ns.Name) })
	ns.Run("ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command inside the namespace and returns its output.
func (ns *Namespace) Run(name string, args ...string) string {
	ns.t.Helper()
	return Run(ns.t, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Output runs a command inside the namespace.
func (ns *Namespace) Output(name string, args ...string) (string, error) {
	return Output("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command is a command that will run inside the namespace.
func (ns *Namespace) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// PIDs are the processes in the namespace: only ever ones the test started.
func (ns *Namespace) PIDs() []int {
	out, _ := Output("ip", "netns", "pids", ns.Name)
	var ps []int
	for _, f := range strings.Fields(out) {
		if p, err := strconv.Atoi(f); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Dial connects from inside the namespace, in this process. Only the
// socket's creation needs the namespace: the connection keeps working
// from any thread.
func (ns *Namespace) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		// A thread that cannot go back stays locked and dies with this
		// goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Link joins two namespaces with a veth pair: aName in a with addrA (CIDR,
// or "" for none), bName in b with addrB.
func Link(t testing.TB, a *Namespace, aName, addrA string, b *Namespace, bName, addrB string) {
	t.Helper()
	tmp := "kv" + Rand()
	Run(t, "ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp+"p")
	Run(t, "ip", "link", "set", tmp, "netns", a.Name, "name", aName)
	Run(t, "ip", "link", "set", tmp+"p", "netns", b.Name, "name", bName)
	for _, x := range []struct {
		ns         *Namespace
		name, addr string
	}{{a, aName, addrA}, {b, bName, addrB}} {
		if x.addr != "" {
			x.ns.Run("ip", "addr", "add", x.addr, "dev", x.name)
		}
		x.ns.Run("ip", "link", "set", x.name, "up")
	}
}

// Buffer collects a process's output while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StaleSocket returns a unix socket file that nobody listens on: what a
// daemon that died leaves behind. Connecting to it is refused.
func StaleSocket(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	return p
}

// Tail is the last n lines of s, for a test's log.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Lingering waits up to within for every process whose command line
// matches pattern (pgrep -f) to end, and returns those still there.
func Lingering(pattern string, within time.Duration) string {
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		o, _ := Output("pgrep", "-af", pattern)
		if o = strings.TrimSpace(o); o == "" || time.Now().After(deadline) {
			return o
		}
	}
}
