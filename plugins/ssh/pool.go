package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/sdk"
)

// dialFunc opens the TCP connection to a node; tests replace it to dial
// from inside a network namespace.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

const (
	// maxConns bounds the ssh connections one plugin process holds.
	maxConns = 16
	// sessionsPerConn stays below OpenSSH's MaxSessions (10).
	sessionsPerConn = 8
	// attemptTimeout bounds one dial and handshake.
	attemptTimeout = 10 * time.Second
	// aliveTimeout bounds the check that a reused connection still works.
	aliveTimeout = 5 * time.Second
	// sessionWait bounds the wait for a session the node refuses for want
	// of free ones.
	sessionWait  = 10 * time.Second
	firstBackoff = 200 * time.Millisecond
	maxBackoff   = 3 * time.Second
)

type connKey struct {
	host string
	port int
	user string
}

// pool keeps one ssh connection per (host, port, user), shared by the
// resources of one plugin process, and at most max connections at once.
type pool struct {
	dial dialFunc
	max  int

	mu      sync.Mutex
	conns   map[connKey]*conn
	dialing map[connKey]*dialCall
	open    int           // connections being dialled or not yet closed
	wake    chan struct{} // closed when a connection is released or closed
	counts  map[connKey]*nodeStats
}

// nodeStats counts the round trips a plugin process made to one node:
// connections dialled (a handshake each), sessions opened (a command or an
// sftp transfer each) and keepalives (the check of a reused connection).
type nodeStats struct{ dials, sessions, keepalives atomic.Int64 }

// counter is the node's nodeStats.
func (p *pool) counter(k connKey) *nodeStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts == nil {
		p.counts = map[connKey]*nodeStats{}
	}
	s := p.counts[k]
	if s == nil {
		s = &nodeStats{}
		p.counts[k] = s
	}
	return s
}

type conn struct {
	key       connKey
	client    *ssh.Client
	hostKey   ssh.PublicKey
	refs      int
	idleSince time.Time
	sessions  chan struct{}
	stats     *nodeStats
}

type dialCall struct {
	done  chan struct{}
	bound time.Duration
	err   error
}

func newPool(dial dialFunc, max int) *pool {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return &pool{dial: dial, max: max, conns: map[connKey]*conn{}, dialing: map[connKey]*dialCall{}, wake: make(chan struct{})}
}

// signal wakes everyone waiting for a slot; call with mu held.
func (p *pool) signal() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// unreachableError is a node that did not answer within the bound.
type unreachableError struct {
	node, addr string
	bound      time.Duration
	last       error
}

func (e *unreachableError) Error() string {
	last := "no attempt finished"
	if e.last != nil {
		last = e.last.Error()
	}
	return fmt.Sprintf("node %s (%s) did not answer ssh within %s: %s", e.node, e.addr, e.bound, last)
}

func (e *unreachableError) Unwrap() error { return e.last }

// signer reads the identity key.
func signer(t *target, workdir string) (ssh.Signer, error) {
	p := local(workdir, t.Identity)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("node %s: reading identity: %v", t.Node, err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("node %s: identity %s is protected by a passphrase; khw needs an unencrypted key", t.Node, p)
	case err != nil:
		// The parser's message never quotes the key.
		return nil, fmt.Errorf("node %s: identity %s is not a usable private key: %v", t.Node, p, err)
	}
	return s, nil
}

// acquire returns a connection to t's node, dialling (and retrying for up
// to bound) when there is none. Call release when done with it.
func (p *pool) acquire(ctx context.Context, t *target, s ssh.Signer, v *verifier, bound time.Duration) (*conn, error) {
	key := t.key()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.mu.Lock()
		if c := p.conns[key]; c != nil {
			c.refs++
			p.mu.Unlock()
			if !c.alive() {
				p.release(c)
				p.evict(c)
				continue
			}
			// The connection may have been made for another resource:
			// its host key must satisfy this one's verifier too.
			if err := v.check(c.client.RemoteAddr(), c.hostKey); err != nil {
				p.release(c)
				return nil, err
			}
			return c, nil
		}
		if d := p.dialing[key]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			var hk *hostKeyError
			var ue *unreachableError
			switch {
			case d.err == nil:
			case errors.As(d.err, &hk):
				return nil, d.err
			case errors.As(d.err, &ue) && d.bound >= bound:
				// It tried for as long as this one would.
				return nil, d.err
			}
			continue
		}
		if p.open >= p.max {
			idle := p.idlest()
			wake := p.wake
			if idle != nil {
				delete(p.conns, idle.key)
			}
			p.mu.Unlock()
			if idle != nil {
				idle.client.Close() // watch frees its slot
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		d := &dialCall{done: make(chan struct{}), bound: bound}
		p.dialing[key] = d
		p.open++
		p.mu.Unlock()

		c, err := p.dialRetry(ctx, t, s, v, bound)

		p.mu.Lock()
		delete(p.dialing, key)
		if err != nil {
			p.open--
		} else {
			c.refs = 1
			p.conns[key] = c
			go p.watch(c)
		}
		d.err = err
		close(d.done)
		p.signal()
		p.mu.Unlock()
		return c, err
	}
}

// idlest is the unused connection idle the longest; call with mu held.
func (p *pool) idlest() *conn {
	var best *conn
	for _, c := range p.conns {
		if c.refs == 0 && (best == nil || c.idleSince.Before(best.idleSince)) {
			best = c
		}
	}
	return best
}

func (p *pool) release(c *conn) {
	p.mu.Lock()
	c.refs--
	c.idleSince = time.Now()
	p.signal()
	p.mu.Unlock()
}

// evict forgets c and closes it.
func (p *pool) evict(c *conn) {
	p.mu.Lock()
	if p.conns[c.key] == c {
		delete(p.conns, c.key)
	}
	p.mu.Unlock()
	c.client.Close()
}

// watch frees c's slot when its connection ends, however it ends.
func (p *pool) watch(c *conn) {
	c.client.Wait()
	c.client.Close()
	p.mu.Lock()
	if p.conns[c.key] == c {
		delete(p.conns, c.key)
	}
	p.open--
	p.signal()
	p.mu.Unlock()
}

// close closes every connection and waits until they are gone.
func (p *pool) close() {
	p.mu.Lock()
	var all []*conn
	for _, c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	for _, c := range all {
		p.evict(c)
	}
	for {
		p.mu.Lock()
		n, wake := p.open, p.wake
		p.mu.Unlock()
		if n == 0 {
			return
		}
		<-wake
	}
}

// alive checks that a reused connection still answers; a node that was
// rebooted or rebuilt leaves a dead one behind.
func (c *conn) alive() bool {
	done := make(chan error, 1)
	if c.stats != nil {
		c.stats.keepalives.Add(1)
	}
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(aliveTimeout):
		return false
	}
}

// dialRetry dials until the node answers, the bound passes or the host
// key is refused.
func (p *pool) dialRetry(ctx context.Context, t *target, s ssh.Signer, v *verifier, bound time.Duration) (*conn, error) {
	addr := t.addr()
	var hostKey ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if err := v.callback(hostname, remote, key); err != nil {
				return err
			}
			hostKey = key
			return nil
		},
		HostKeyAlgorithms: v.algorithms(),
	}
	deadline := time.Now().Add(bound)
	backoff := firstBackoff
	var last error
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		client, err := p.dialOnce(ctx, addr, cfg, min(remaining, attemptTimeout))
		if err == nil {
			st := p.counter(t.key())
			st.dials.Add(1)
			return &conn{key: t.key(), client: client, hostKey: hostKey, sessions: make(chan struct{}, sessionsPerConn), stats: st}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var hk *hostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		last = err
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil, &unreachableError{node: t.Node, addr: addr, bound: bound, last: last}
}

// dialOnce makes one TCP connection and ssh handshake, within timeout.
func (p *pool) dialOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := p.dial(actx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// A handshake with a node that accepts but does not speak must not
	// hang: the deadline interrupts it.
	stop := context.AfterFunc(actx, func() { nc.SetDeadline(time.Now()) })
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() {
		// The deadline fired: the connection is unusable even if the
		// handshake got through.
		if err == nil {
			sc.Close()
			err = fmt.Errorf("ssh handshake with %s timed out after %s", addr, timeout)
		}
	}
	if err != nil {
		nc.Close()
		if actx.Err() != nil && ctx.Err() == nil && !isHostKey(err) {
			err = fmt.Errorf("ssh handshake with %s timed out after %s (%v)", addr, timeout, err)
		}
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func isHostKey(err error) bool {
	var hk *hostKeyError
	return errors.As(err, &hk)
}

// session opens a session, waiting while the connection has as many open
// as the node allows. done closes it.
func (c *conn) session(ctx context.Context) (s *ssh.Session, done func(), err error) {
	select {
	case c.sessions <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	// A session just closed may still count on the node for a moment
	// (OpenSSH frees it when it has reaped the child) and the node refuses
	// a new one ("open failed"): that only means "wait".
	backoff := 10 * time.Millisecond
	for deadline := time.Now().Add(sessionWait); ; {
		s, err = c.client.NewSession()
		var oce *ssh.OpenChannelError
		if err == nil || !errors.As(err, &oce) || oce.Reason == ssh.UnknownChannelType || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			<-c.sessions
			return nil, nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	if err != nil {
		<-c.sessions
		return nil, nil, err
	}
	if c.stats != nil {
		c.stats.sessions.Add(1)
	}
	var once sync.Once
	return s, func() {
		once.Do(func() {
			s.Close()
			<-c.sessions
		})
	}, nil
}

// sftp starts an sftp client in a session; cancelling ctx closes it, which
// ends any transfer in progress. With root, the sftp server runs as root
// (through sudo -n unless khw logs in as root), for files outside the
// login user's home: /usr/local/bin, /etc/etcd, /var/lib/kubernetes.
func (c *conn) sftp(ctx context.Context, root bool) (*sftp.Client, func(), error) {
	s, done, err := c.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader
	var w io.WriteCloser
	var stderr *limitedBuffer
	if root && c.key.user != "root" {
		r, w, stderr, err = rootSFTPPipe(s, c.key.user)
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("starting sftp as root: %v", err)
		}
	} else {
		if w, err = s.StdinPipe(); err != nil {
			done()
			return nil, nil, err
		}
		if r, err = s.StdoutPipe(); err != nil {
			done()
			return nil, nil, err
		}
		if err := s.RequestSubsystem("sftp"); err != nil {
			done()
			return nil, nil, fmt.Errorf("starting sftp: %v", err)
		}
	}
	sc, err := sftp.NewClientPipe(r, w)
	if err != nil {
		done()
		if stderr != nil && stderr.Len() > 0 {
			return nil, nil, rootFailure("starting sftp as root", stderr.String())
		}
		return nil, nil, fmt.Errorf("starting sftp: %v", err)
	}
	stop := context.AfterFunc(ctx, func() { sc.Close(); done() })
	return sc, func() {
		stop()
		sc.Close()
		done()
	}, nil
}

// dead says whether err means the connection itself is gone (the node's
// sshd or the network dropped it) rather than the command failing. A
// command that ended without an exit status had its channel closed under
// it: on a VM that has just booted, its sshd restarting does that.
func dead(err error) bool {
	if err == nil {
		return false
	}
	var missing *ssh.ExitMissingError
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &missing) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unexpected packet in response to channel open") || strings.Contains(msg, "connection reset by peer") ||
		strings.Contains(msg, "broken pipe")
}

// withConn runs fn with a pooled connection to t's node. When the
// connection turns out dead, it is dropped and fn runs once more on a new
// one: for idempotent work only (reading back, deleting). A node that does
// not answer within bound is an *unreachableError, as from connect.
func (p *pool) withConn(ctx context.Context, t *target, workdir string, bound time.Duration, fn func(*conn) error) error {
	for attempt := 0; ; attempt++ {
		cn, err := p.connect(ctx, t, workdir, nil, bound)
		if err != nil {
			return err
		}
		err = fn(cn)
		if attempt == 0 && dead(err) && ctx.Err() == nil {
			sdk.Logger().Debug("connection dropped; trying again on a new one", "node", t.Node, "error", err)
			p.release(cn)
			p.evict(cn)
			continue
		}
		p.release(cn)
		return err
	}
}
