package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// requireTool skips a test when a daemon is not installed, or fails it when
// KHW_REQUIRE_TOOLS is set (CI sets it).
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("KHW_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is not installed (make deps)", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// daemon starts cmd, the daemon called name, with its output in log; stops
// it when the test ends (SIGINT, then SIGKILL after grace); and waits
// until ready says it answers, failing the test with the log if it never
// does.
func daemon(t testing.TB, name string, cmd *exec.Cmd, log string, grace time.Duration, ready func() bool) {
	t.Helper()
	startDaemon(t, name, cmd, log, grace, 20*time.Second, ready)
}

// startDaemon is daemon that waits up to within for ready.
func startDaemon(t testing.TB, name string, cmd *exec.Cmd, log string, grace, within time.Duration, ready func() bool) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if ready() {
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log)
			t.Fatalf("%s exited at start:\n%s", name, Tail(string(b), 40))
		default:
		}
		if time.Now().After(deadline) {
			break
		}
	}
	b, _ := os.ReadFile(log)
	t.Fatalf("%s did not start:\n%s", name, b)
}

// Libvirtd starts a private libvirtd for libvirt's test driver (a real
// daemon and real RPC, with a fake hypervisor) and returns its socket. It
// is a session daemon, run as nobody when the test runs as root: all it
// keeps lives in a temporary directory, so it never meets the machine's
// libvirtd or a lab's (two privileged daemons would share /run/libvirt).
// It is stopped when the test ends.
func Libvirtd(t testing.TB) string {
	t.Helper()
	requireTool(t, "libvirtd")
	dir := WorldReadableDir(t, "khw-libvirtd")
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("libvirtd")
	if os.Geteuid() == 0 {
		if err := os.Chown(home, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "libvirtd")
	}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "run")}
	sock := filepath.Join(home, "run", "libvirt", "libvirt-sock")
	// The socket appears before the drivers are ready: wait for an answer.
	daemon(t, "libvirtd", cmd, filepath.Join(dir, "log"), 10*time.Second, func() bool {
		return exec.Command("virsh", "-c", "test+unix:///default?socket="+sock, "list").Run() == nil
	})
	return sock
}

// LibvirtTestDriver returns the URI of an empty test-driver hypervisor on
// the libvirtd at sock: no domains, pools or networks, private to the
// connection and gone with it.
func LibvirtTestDriver(t testing.TB, sock string) string {
	t.Helper()
	p := filepath.Join(WorldReadableDir(t, "khw-testdriver"), "empty.xml")
	if err := os.WriteFile(p, []byte("<node/>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return "test+unix://" + p + "?socket=" + sock
}

// WorldReadableDir is a temporary directory that a daemon or a user other
// than root can read, removed when the test ends.
func WorldReadableDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Dockerd starts a private dockerd inside the namespace ns, with more
// flags if given (--insecure-registry ADDR), and returns its socket; its
// data and state live in a temporary directory. It is stopped when the
// test ends.
func Dockerd(t testing.TB, ns *Namespace, flags ...string) string {
	t.Helper()
	requireTool(t, "dockerd")
	dir, err := os.MkdirTemp("/tmp", "khw-dockerd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns.Name, "dockerd", "--bridge=none", "-H", "unix://"+sock,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "pid"))
	cmd.Args = append(cmd.Args, flags...)
	daemon(t, "dockerd", cmd, filepath.Join(dir, "log"), 15*time.Second, func() bool {
		return exec.Command("docker", "-H", "unix://"+sock, "version").Run() == nil
	})
	return sock
}
