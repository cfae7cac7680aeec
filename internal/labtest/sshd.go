package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// address, running a real OpenSSH sshd in its own mount namespace where
// Home is bind-mounted over /root, so that every node has its own files.
type SSHNode struct {
	Name, IP string
	NS       *Namespace
	Home     string // the node's /root, seen from the test
	dir      string
	cmd      *exec.Cmd
	t        testing.TB
}

// StartSSHNodes starts one node per name=ip on the lab namespace's br0.
// authorizedKeys is the file sshd reads keys from (it may be written later).
func StartSSHNodes(t testing.TB, lab *Namespace, authorizedKeys string, nodes map[string]string) map[string]*SSHNode {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatal("openssh-server is not installed (make deps)")
	}
	_ = os.MkdirAll("/run/sshd", 0o755)
	out := map[string]*SSHNode{}
	for name, ip := range nodes {
		n := &SSHNode{Name: name, IP: ip, dir: t.TempDir(), t: t}
		n.Home = filepath.Join(n.dir, "root")
		_ = os.MkdirAll(n.Home, 0o700)
		n.NS = Host(t, lab, "khw-"+name, ip)
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
Subsystem sftp internal-sftp
LogLevel ERROR
`, ip, n.dir, authorizedKeys)
		if err := os.WriteFile(filepath.Join(n.dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n.Start()
		t.Cleanup(n.Stop)
		out[name] = n
	}
	for _, n := range out {
		n.WaitReady()
	}
	return out
}

// NewHostKey gives the node a fresh host key (takes effect on Start).
func (n *SSHNode) NewHostKey() {
	key := filepath.Join(n.dir, "host_ed25519")
	_ = os.Remove(key)
	_ = os.Remove(key + ".pub")
	Run(n.t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
}

// Start runs sshd in the node's namespaces.
func (n *SSHNode) Start() {
	script := fmt.Sprintf("mount --bind %s /root && exec /usr/sbin/sshd -D -e -f %s/sshd_config", n.Home, n.dir)
	n.cmd = n.NS.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	log, _ := os.Create(filepath.Join(n.dir, "sshd.log"))
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// Stop ends sshd.
func (n *SSHNode) Stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_, _ = n.cmd.Process.Wait()
		n.cmd = nil
	}
}

// WaitReady waits until sshd accepts connections on the node's address.
func (n *SSHNode) WaitReady() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := n.NS.Output("bash", "-c", "exec 3<>/dev/tcp/"+n.IP+"/22"); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(n.dir, "sshd.log"))
	n.t.Fatalf("sshd on %s (%s) did not start:\n%s", n.Name, n.IP, b)
}

// Restart restarts sshd (after NewHostKey, say).
func (n *SSHNode) Restart() {
	n.Stop()
	n.Start()
	n.WaitReady()
}

// HostKeyLine is the node's host public key.
func (n *SSHNode) HostKeyLine() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "host_ed25519.pub"))
	return strings.TrimSpace(string(b))
}
