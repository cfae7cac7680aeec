package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/sdk"
)

// runHandler serves node.run: a command run once on a node.
type runHandler struct{ p *pool }

// tailLines is how much output a failed command's error shows.
const tailLines = 40

type runOutputs struct {
	HostKey    string `json:"host_key"`
	ExitStatus int    `json:"exit_status"`
	RanAt      string `json:"ran_at"`
}

// tail keeps the end of a command's output: the last tailLines lines of
// stdout and stderr together, in the order they arrived, and the last
// errLines lines of stderr alone. The node sends the two streams apart, so
// a late chunk of stdout can push the stderr lines that explain a failure
// out of the combined window; those are then shown as well.
type tail struct {
	mu      sync.Mutex
	seq     int
	all     []outLine
	errs    []outLine
	partial [2][]byte
}

type outLine struct {
	seq  int
	text string
}

const (
	errLines     = 10
	maxLineBytes = 2000
)

// stream is the writer of one of the two streams: 0 stdout, 1 stderr.
func (t *tail) stream(n int) io.Writer { return streamWriter{t, n} }

type streamWriter struct {
	t *tail
	n int
}

func (w streamWriter) Write(p []byte) (int, error) {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	buf := append(t.partial[w.n], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		t.add(w.n, buf[:i])
		buf = buf[i+1:]
	}
	if len(buf) > maxLineBytes {
		t.add(w.n, buf)
		buf = nil
	}
	t.partial[w.n] = append([]byte(nil), buf...)
	return len(p), nil
}

// add records a line; call with mu held.
func (t *tail) add(n int, b []byte) {
	if len(b) > maxLineBytes {
		b = b[len(b)-maxLineBytes:]
	}
	t.seq++
	l := outLine{t.seq, strings.ToValidUTF8(strings.TrimRight(string(b), "\r"), "?")}
	t.all = append(t.all, l)
	if len(t.all) > tailLines {
		t.all = t.all[len(t.all)-tailLines:]
	}
	if n == 1 {
		t.errs = append(t.errs, l)
		if len(t.errs) > errLines {
			t.errs = t.errs[len(t.errs)-errLines:]
		}
	}
}

// String is the end of the output, as the error of a failed command
// shows it; empty when there was none.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for n := range t.partial {
		if len(t.partial[n]) > 0 {
			t.add(n, t.partial[n])
			t.partial[n] = nil
		}
	}
	if len(t.all) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last %d lines of its output:", len(t.all))
	for _, l := range t.all {
		b.WriteString("\n" + l.text)
	}
	var missed []string
	for _, l := range t.errs {
		if l.seq < t.all[0].seq {
			missed = append(missed, l.text)
		}
	}
	if len(missed) > 0 {
		b.WriteString("\nand the last lines of its stderr, which arrived earlier:")
		for _, l := range missed {
			b.WriteString("\n" + l)
		}
	}
	return b.String()
}

func shorten(s string, n int) string {
	s, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > n {
		s, cut = string(r[:n]), true
	}
	if cut {
		s += " …"
	}
	return s
}

func (h runHandler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	if progress == nil {
		progress = func(string) {}
	}
	c, err := decodeRun(&req.Resource)
	if err != nil {
		return nil, err
	}
	cn, err := h.p.connect(ctx, &c.target, req.Workdir, req.Deps, c.timeout())
	if err != nil {
		return nil, err
	}
	defer h.p.release(cn)
	s, done, err := cn.session(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("node %s (%s): opening a session: %v", c.Node, c.addr(), err)
	}
	defer done()
	out := &tail{}
	s.Stdout, s.Stderr = out.stream(0), out.stream(1)
	progress(fmt.Sprintf("running on %s: %s", c.Node, shorten(c.Command, 60)))
	if err := s.Start(c.Command); err != nil {
		return nil, fmt.Errorf("node %s (%s): starting the command: %v", c.Node, c.addr(), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// Kill it on the node; a server that ignores signals still
		// must not hold khw, so wait only a moment for the end.
		_ = s.Signal(ssh.SIGKILL)
		done()
		select {
		case <-waited:
		case <-time.After(2 * time.Second):
		}
		return nil, ctx.Err()
	}
	if err != nil {
		var ee *ssh.ExitError
		var em *ssh.ExitMissingError
		var what string
		switch {
		case errors.As(err, &ee) && ee.Signal() != "":
			what = fmt.Sprintf("was killed by signal %s (exit status %d)", ee.Signal(), ee.ExitStatus())
		case errors.As(err, &ee):
			what = fmt.Sprintf("exited with status %d", ee.ExitStatus())
		case errors.As(err, &em):
			what = "ended without an exit status (the connection may have dropped)"
		default:
			return nil, fmt.Errorf("node %s (%s): running the command: %v", c.Node, c.addr(), err)
		}
		msg := fmt.Sprintf("node %s: command %q %s", c.Node, shorten(c.Command, 200), what)
		if t := out.String(); t != "" {
			msg += "; " + t
		} else {
			msg += "; it printed nothing"
		}
		return nil, errors.New(msg)
	}
	ranAt := time.Now().UTC().Format(time.RFC3339Nano)
	sum := sha256.Sum256([]byte(c.Command + "\x00" + ranAt))
	return &sdk.ApplyResponse{
		Outputs: sdk.Outputs(runOutputs{HostKey: authorizedKey(cn.hostKey), ExitStatus: 0, RanAt: ranAt}),
		// Every run is a new result: what runs after it runs again.
		Digest: hex.EncodeToString(sum[:]),
	}, nil
}

// Read has nothing to check on the node: a command's effect is the
// command's business.
func (h runHandler) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return readOne(ctx, h.p, h, req)
}

func (runHandler) probe(req *sdk.ReadRequest) (*probe, *sdk.ReadResponse, error) {
	return nil, &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}, nil
}

// Delete has nothing to undo: a command cannot be taken back.
func (runHandler) Delete(context.Context, *sdk.DeleteRequest) error { return nil }
