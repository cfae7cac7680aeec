package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/khw-dev/khw/internal/labtest"
)

// A lab is a private network of nodes, each a real OpenSSH server, built
// from network namespaces this test creates and removes:
//
//	lab namespace:  br0 10.200.1.1/24  (the client side: tests dial from here)
//	node namespace: eth0 10.200.1.1X/24, veth peer enslaved to br0; sshd on :22
//
// Each node logs in its own user, whose home is a directory under the
// lab's temporary directory, so that the test can check results on disk.
type lab struct {
	t       *testing.T
	id      string
	base    string // temporary directory, 0755 so that node users reach their homes
	workdir string // the khw workdir: identity, files, known_hosts
	ns      string // lab namespace
	handle  netns.NsHandle
	authKey string // authorized_keys file shared by the nodes
	nodes   map[string]*labNode

	mu         sync.Mutex
	users      []string
	namespaces []string
}

type labNode struct {
	name, ip, ns string
	user         string
	uid, gid     int
	home         string
	dir          string // sshd's config, host key, log
	cmd          *exec.Cmd
	log          *labtest.Buffer
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// requireRoot skips the test, with the reason, unless it runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces, users and sshd processes")
	}
	for _, tool := range []string{"ip", "/usr/sbin/sshd", "ssh-keygen", "useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt-get install -y openssh-server openssh-client iproute2 passwd): %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab builds a lab with nodes named as given (name -> IP).
func newLab(t *testing.T, nodes map[string]string) *lab {
	requireRoot(t)
	l := &lab{t: t, id: randomHex(3), nodes: map[string]*labNode{}, handle: netns.None()}
	subreaper()
	t.Cleanup(l.cleanup)

	base, err := os.MkdirTemp("", "khwssh-")
	if err != nil {
		t.Fatal(err)
	}
	l.base = base
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	l.workdir = filepath.Join(base, "work")
	if err := os.Mkdir(l.workdir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "khw-test", "-f", filepath.Join(l.workdir, "id_ed25519"))
	pub, err := os.ReadFile(filepath.Join(l.workdir, "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	l.authKey = filepath.Join(base, "authorized_keys")
	if err := os.WriteFile(l.authKey, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	// sshd's privilege separation directory. It stays: other sshd
	// processes (another test, the system's) may need it too.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}

	l.ns = "khwssh-lab-" + l.id
	l.addNamespace(l.ns)
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", l.ns, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.ns, "addr", "add", "10.200.1.1/24", "dev", "br0")
	run(t, "ip", "-n", l.ns, "link", "set", "br0", "up")
	if l.handle, err = netns.GetFromName(l.ns); err != nil {
		t.Fatal(err)
	}

	for name, ip := range nodes {
		l.addNode(name, ip)
	}
	for _, n := range l.nodes {
		l.start(n)
	}
	for _, n := range l.nodes {
		l.waitListening(n)
	}
	return l
}

func (l *lab) addNamespace(ns string) {
	l.t.Helper()
	run(l.t, "ip", "netns", "add", ns)
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
}

func (l *lab) addNode(name, ip string) {
	t := l.t
	t.Helper()
	n := &labNode{name: name, ip: ip, ns: "khwssh-" + l.id + "-" + name}
	l.addNamespace(n.ns)
	veth := "h" + l.id + name
	run(t, "ip", "-n", l.ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
	run(t, "ip", "-n", l.ns, "link", "set", veth, "master", "br0", "up")
	run(t, "ip", "-n", n.ns, "addr", "add", ip+"/24", "dev", "eth0")
	run(t, "ip", "-n", n.ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n.ns, "link", "set", "lo", "up")

	n.user = "khwt" + l.id + name
	n.home = filepath.Join(l.base, "home-"+name)
	run(t, "useradd", "-M", "-d", n.home, "-s", "/bin/sh", "-p", "*", n.user)
	l.mu.Lock()
	l.users = append(l.users, n.user)
	l.mu.Unlock()
	u, err := user.Lookup(n.user)
	if err != nil {
		t.Fatal(err)
	}
	n.uid, _ = strconv.Atoi(u.Uid)
	n.gid, _ = strconv.Atoi(u.Gid)
	if err := os.Mkdir(n.home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(n.home, n.uid, n.gid); err != nil {
		t.Fatal(err)
	}

	n.dir = filepath.Join(l.base, "sshd-"+name)
	if err := os.Mkdir(n.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l.newHostKey(n)
	cfg := fmt.Sprintf(`ListenAddress %s
Port 22
HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, ip, filepath.Join(n.dir, "host_key"), l.authKey)
	if err := os.WriteFile(filepath.Join(n.dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.nodes[name] = n
}

// newHostKey makes a fresh host key for n, as a rebuilt node would have.
func (l *lab) newHostKey(n *labNode) {
	key := filepath.Join(n.dir, "host_key")
	os.Remove(key)
	os.Remove(key + ".pub")
	run(l.t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key)
}

func (l *lab) hostKey(n *labNode) string {
	b, err := os.ReadFile(filepath.Join(n.dir, "host_key.pub"))
	if err != nil {
		l.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (l *lab) start(n *labNode) {
	l.t.Helper()
	n.log = &labtest.Buffer{}
	n.cmd = exec.Command("ip", "netns", "exec", n.ns, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(n.dir, "sshd_config"))
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
}

// waitListening waits until n's sshd accepts connections.
func (l *lab) waitListening(n *labNode) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := l.dial(ctx, "tcp", net.JoinHostPort(n.ip, "22"))
		cancel()
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("sshd of %s does not listen on %s:22: %v\n%s", n.name, n.ip, err, n.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pids are the processes in a namespace: only ever ones this test started.
func pids(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var ps []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// stop kills n's sshd and every session it started, and waits until they
// are gone: the test process is their subreaper, so it reaps the sessions
// orphaned by the sshd it killed.
func (l *lab) stop(n *labNode) {
	killed := map[int]bool{}
	for i := 0; i < 100; i++ {
		ps := pids(n.ns)
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			syscall.Kill(p, syscall.SIGKILL)
			killed[p] = true
		}
		if n.cmd != nil && n.cmd.Process != nil {
			n.cmd.Wait()
			delete(killed, n.cmd.Process.Pid)
			n.cmd = nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Kill()
		n.cmd.Wait()
		n.cmd = nil
	}
	// Sessions that had ended but were not reaped by the sshd killed
	// above are zombies, now children of this process.
	for _, p := range orphanZombies() {
		killed[p] = true
	}
	reap(killed, 3*time.Second)
}

// orphanZombies are the dead processes whose parent is now the test
// process: sshd sessions and the commands they ran, orphaned when their
// sshd was killed. (The test runs no other command while it stops a node.)
func orphanZombies() []int {
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

// subreaper makes orphaned descendants children of the test process
// (PR_SET_CHILD_SUBREAPER), so that it can reap the sshd sessions it kills
// instead of leaving zombies to init.
func subreaper() {
	const prSetChildSubreaper = 36
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
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

// restart stops n's sshd and starts it again, as after a reboot.
func (l *lab) restart(n *labNode) {
	l.t.Helper()
	l.stop(n)
	l.start(n)
	l.waitListening(n)
}

func (l *lab) cleanup() {
	t := l.t
	for _, n := range l.nodes {
		l.stop(n)
		if t.Failed() && n.log != nil {
			t.Logf("sshd log of %s:\n%s", n.name, n.log.String())
		}
	}
	if l.handle != netns.None() {
		l.handle.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		ns := l.namespaces[i]
		for _, p := range pids(ns) {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("removing namespace %s: %v %s", ns, err, out)
		}
	}
	for _, u := range l.users {
		var out []byte
		var err error
		for i := 0; i < 50; i++ { // a killed session may linger a moment
			if out, err = exec.Command("userdel", u).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("removing user %s: %v %s", u, err, out)
		}
	}
	if l.base != "" {
		os.RemoveAll(l.base)
	}
}

// dial connects from inside the lab namespace. Only the socket's creation
// needs the namespace: the connection keeps working from any thread.
func (l *lab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
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
		if err := netns.Set(l.handle); err != nil {
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

// counter wraps a dialer to count connections: how many were made to each
// address and how many were open at most at once.
type counter struct {
	inner dialFunc

	mu      sync.Mutex
	dials   map[string]int
	open    int
	maxOpen int
}

func newCounter(inner dialFunc) *counter { return &counter{inner: inner, dials: map[string]int{}} }

func (c *counter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.inner(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.dials[addr]++
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	c.mu.Unlock()
	return &countedConn{Conn: conn, c: c}, nil
}

func (c *counter) stats(addr string) (dials, open, maxOpen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials[addr], c.open, c.maxOpen
}

type countedConn struct {
	net.Conn
	c    *counter
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.mu.Lock()
		cc.c.open--
		cc.c.mu.Unlock()
	})
	return cc.Conn.Close()
}
