package labtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Bridge makes br0 with 10.200.1.1/24 in the lab namespace (what the post's
// section 1 makes), for tests that need nodes but not khw's hostnet.
func Bridge(t testing.TB, lab *Namespace) {
	t.Helper()
	lab.Run("ip", "link", "add", "br0", "type", "bridge")
	lab.Run("ip", "addr", "add", "10.200.1.1/24", "dev", "br0")
	lab.Run("ip", "link", "set", "br0", "up")
}

// Host makes a machine on the lab's network: a namespace named prefix-*
// on the lab namespace's br0, holding ip/24, its default route through
// the bridge's 10.200.1.1. Nothing runs in it until the test starts
// something there.
func Host(t testing.TB, lab *Namespace, prefix, ip string) *Namespace {
	t.Helper()
	ns := NewNamespace(t, prefix)
	peer := "v" + Rand()
	Link(t, ns, "eth0", ip+"/24", lab, peer, "")
	lab.Run("ip", "link", "set", peer, "master", "br0")
	ns.Run("ip", "route", "add", "default", "via", "10.200.1.1")
	return ns
}

// SSHNode is a "node": its own network namespace on the lab's br0 with one
// address, running a real OpenSSH sshd. A root node (StartSSHNodes) logs
// in root, in its own mount namespace where Home is bind-mounted over
// /root, so that every node has its own files; a user node
// (StartSSHUserNodes) logs in a user of its own, made for the test, whose
// home is Home.
type SSHNode struct {
	Name, IP string
	NS       *Namespace
	Home     string // the node's login home, seen from the test
	User     string // the login user
	UID, GID int    // the login user's
	dir      string // sshd's configuration, host key and log
	own      bool   // a user node: sshd needs no mount namespace
	cmd      *exec.Cmd
	t        testing.TB
}

// StartSSHNodes starts one root node per name=ip on the lab namespace's br0.
// authorizedKeys is the file sshd reads keys from (it may be written later).
func StartSSHNodes(t testing.TB, lab *Namespace, authorizedKeys string, nodes map[string]string) map[string]*SSHNode {
	t.Helper()
	return startSSHNodes(t, lab, authorizedKeys, nodes, false)
}

// StartSSHUserNodes starts one user node per name=ip on the lab namespace's
// br0. The users and their homes are removed when the test ends. sshd reads
// authorizedKeys as the node's user: it must be a file anyone can read, in
// a directory anyone can enter (WorldReadableDir).
func StartSSHUserNodes(t testing.TB, lab *Namespace, authorizedKeys string, nodes map[string]string) map[string]*SSHNode {
	t.Helper()
	for _, tool := range []string{"useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install passwd): %v", tool, err)
		}
	}
	becomeSubreaper()
	return startSSHNodes(t, lab, authorizedKeys, nodes, true)
}

func startSSHNodes(t testing.TB, lab *Namespace, authorizedKeys string, nodes map[string]string, own bool) map[string]*SSHNode {
	t.Helper()
	for _, tool := range []string{"/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make deps: openssh-server, openssh-client)", tool)
		}
	}
	// sshd's privilege separation directory. It stays: other sshd
	// processes (another test, the system's) may need it too.
	_ = os.MkdirAll("/run/sshd", 0o755)
	homes := ""
	if own {
		homes = WorldReadableDir(t, "khw-homes")
	}
	out := map[string]*SSHNode{}
	for name, ip := range nodes {
		n := &SSHNode{Name: name, IP: ip, dir: t.TempDir(), own: own, t: t}
		n.NS = Host(t, lab, "khw-"+name, ip)
		if own {
			n.addUser(filepath.Join(homes, name))
		} else {
			n.User, n.Home = "root", filepath.Join(n.dir, "root")
			_ = os.MkdirAll(n.Home, 0o700)
		}
		n.NewHostKey()
		cfg := fmt.Sprintf(`ListenAddress %s
Port 22
HostKey %s/host_ed25519
PidFile none
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, ip, n.dir, authorizedKeys)
		if err := os.WriteFile(filepath.Join(n.dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n.Start()
		t.Cleanup(func() {
			n.Stop()
			if t.Failed() {
				b, _ := os.ReadFile(n.logFile())
				t.Logf("sshd log of %s:\n%s", n.Name, Tail(string(b), 60))
			}
		})
		out[name] = n
	}
	for _, n := range out {
		n.WaitReady()
	}
	return out
}

// addUser makes the node's login user, with home as its home, and removes
// it when the test ends (after sshd and its sessions are gone).
func (n *SSHNode) addUser(home string) {
	t := n.t
	t.Helper()
	n.User, n.Home = "khwt"+Rand()+n.Name, home
	Run(t, "useradd", "-M", "-d", home, "-s", "/bin/sh", "-p", "*", n.User)
	t.Cleanup(func() {
		var out string
		var err error
		for i := 0; i < 50; i++ { // a killed session may linger a moment
			if out, err = Output("userdel", n.User); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("removing user %s: %v %s", n.User, err, out)
	})
	u, err := user.Lookup(n.User)
	if err != nil {
		t.Fatal(err)
	}
	n.UID, _ = strconv.Atoi(u.Uid)
	n.GID, _ = strconv.Atoi(u.Gid)
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, n.UID, n.GID); err != nil {
		t.Fatal(err)
	}
}

func (n *SSHNode) logFile() string { return filepath.Join(n.dir, "sshd.log") }

// NewHostKey gives the node a fresh host key, as a rebuilt machine has
// (it takes effect on Start).
func (n *SSHNode) NewHostKey() {
	key := filepath.Join(n.dir, "host_ed25519")
	_ = os.Remove(key)
	_ = os.Remove(key + ".pub")
	Run(n.t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key)
}

// Start runs sshd in the node's namespaces.
func (n *SSHNode) Start() {
	n.t.Helper()
	sshd := []string{"/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(n.dir, "sshd_config")}
	if n.own {
		n.cmd = n.NS.Command(sshd[0], sshd[1:]...)
	} else {
		script := fmt.Sprintf("mount --bind %s /root && exec %s", n.Home, strings.Join(sshd, " "))
		n.cmd = n.NS.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	}
	log, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer log.Close()
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// Stop ends sshd and every session it started (every process in the
// node's namespace), as when the machine goes down, and waits until they
// are gone.
func (n *SSHNode) Stop() {
	killed := map[int]bool{}
	for i := 0; i < 100; i++ {
		ps := n.NS.PIDs()
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGKILL)
			killed[p] = true
		}
		if n.cmd != nil {
			_ = n.cmd.Wait()
			delete(killed, n.cmd.Process.Pid)
			n.cmd = nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n.cmd != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
		n.cmd = nil
	}
	// Sessions that had ended but that the killed sshd did not reap are
	// zombies, now children of this process when it is their subreaper.
	for _, p := range orphanZombies() {
		killed[p] = true
	}
	reap(killed, 3*time.Second)
}

// WaitReady waits until sshd accepts connections on the node's address.
func (n *SSHNode) WaitReady() {
	n.t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var c net.Conn
		c, err = n.NS.Dial(ctx, "tcp", net.JoinHostPort(n.IP, "22"))
		cancel()
		if err == nil {
			c.Close()
			return
		}
	}
	b, _ := os.ReadFile(n.logFile())
	n.t.Fatalf("sshd on %s (%s) did not start: %v\n%s", n.Name, n.IP, err, b)
}

// Restart restarts sshd (after NewHostKey, say): its sessions end.
func (n *SSHNode) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
	n.WaitReady()
}

// HostKeyLine is the node's host public key.
func (n *SSHNode) HostKeyLine() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "host_ed25519.pub"))
	return strings.TrimSpace(string(b))
}

// subreaping is set once this process is the subreaper of its orphaned
// descendants.
var subreaping atomic.Bool

// becomeSubreaper makes orphaned descendants children of the test process
// (PR_SET_CHILD_SUBREAPER), so that Stop can reap the sshd sessions it
// kills instead of leaving zombies to init: a user with a process left,
// even a zombie, cannot be removed.
func becomeSubreaper() {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno == 0 {
		subreaping.Store(true)
	}
}

// orphanZombies are the dead processes whose parent is now the test
// process, when it is a subreaper: sshd sessions and the commands they
// ran, orphaned when their sshd was killed. (The test runs no other
// command while it stops a node.)
func orphanZombies() []int {
	if !subreaping.Load() {
		return nil
	}
	var ps []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			ps = append(ps, p)
		}
	}
	return ps
}

// reap waits for the killed processes: each is reaped here once it is a
// child of the test process, or is gone when someone else reaped it.
func reap(killed map[int]bool, within time.Duration) {
	deadline := time.Now().Add(within)
	for len(killed) > 0 && time.Now().Before(deadline) {
		for p := range killed {
			var ws syscall.WaitStatus
			r, err := syscall.Wait4(p, &ws, syscall.WNOHANG, nil)
			if r == p {
				delete(killed, p)
				continue
			}
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d", p)); errors.Is(err, syscall.ECHILD) && errors.Is(serr, os.ErrNotExist) {
				delete(killed, p)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
