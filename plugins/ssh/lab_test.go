package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
)

// A lab is a private network of nodes, each a real OpenSSH server, built
// by labtest from network namespaces the test creates and removes:
//
//	lab namespace:  br0 10.200.1.1/24  (the client side: tests dial from here)
//	node namespace: eth0 10.200.1.1X/24 on br0; sshd on :22
//
// Each node logs in its own user, whose home is a directory the test can
// read, so that it can check results on disk.
type lab struct {
	t       *testing.T
	net     *labtest.Namespace
	workdir string // the khw workdir: identity, files, known_hosts
	nodes   map[string]*labtest.SSHNode
}

// newLab builds a lab with nodes named as given (name -> IP) that trust
// the workdir's id_ed25519.
func newLab(t *testing.T, nodes map[string]string) *lab {
	labtest.RequireRoot(t)
	l := &lab{t: t, workdir: filepath.Join(t.TempDir(), "work")}
	if err := os.Mkdir(l.workdir, 0o700); err != nil {
		t.Fatal(err)
	}
	id := filepath.Join(l.workdir, "id_ed25519")
	labtest.Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "khw-test", "-f", id)
	pub, err := os.ReadFile(id + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(labtest.WorldReadableDir(t, "khwssh-"), "authorized_keys")
	if err := os.WriteFile(authKeys, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	l.net = labtest.NewNamespace(t, "khwssh-lab")
	labtest.Bridge(t, l.net)
	l.nodes = labtest.StartSSHUserNodes(t, l.net, authKeys, nodes)
	return l
}

// dial connects from inside the lab namespace.
func (l *lab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.net.Dial(ctx, network, addr)
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
