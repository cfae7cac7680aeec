package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// A probe is one resource's share of reading a node back: a shell script
// and what its output means. Read runs one probe as one command; ReadMany
// runs every probe bound for a node as one command, so that a plan costs
// one connection and one command per node however many resources the node
// holds.
type probe struct {
	t      *target
	root   bool // the script runs as root
	script string
	// units are systemd units whose state (systemctl is-active) parse
	// needs: asked once per node for every probe, in r.units.
	units []string
	// parse reads the script's output and exit status.
	parse func(r *result) (*sdk.ReadResponse, error)
}

// prober is a resource type whose read-back is a probe. It returns a
// response instead when the answer needs no node (nothing was recorded).
type prober interface {
	probe(req *sdk.ReadRequest) (*probe, *sdk.ReadResponse, error)
}

// readOne reads one resource back with its own command: a batch of one.
func readOne(ctx context.Context, p *pool, h prober, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	pr, resp, err := h.probe(req)
	if err != nil || pr == nil {
		return resp, err
	}
	resps, errs := readNode(ctx, p, req.Workdir, []*probe{pr})
	return resps[0], errs[0]
}

// provider is the ssh plugin's Provider: the Mux, and ReadMany.
type provider struct {
	*sdk.Mux
	p       *pool
	probers map[string]prober
}

// ReadMany reads every resource back with one command per node, the nodes
// in parallel. A node that cannot be reached fails the reads bound for it
// alone.
func (pv *provider) ReadMany(ctx context.Context, reqs []*sdk.ReadRequest) ([]sdk.ReadResult, error) {
	out := make([]sdk.ReadResult, len(reqs))
	type batch struct {
		workdir string
		probes  []*probe
		at      []int // out index of each probe
	}
	byNode := map[batchKey]*batch{}
	var keys []batchKey
	for i, req := range reqs {
		h, ok := pv.probers[req.Resource.Type]
		if !ok {
			out[i].Response, out[i].Err = pv.Mux.Read(ctx, req)
			continue
		}
		pr, resp, err := h.probe(req)
		if err != nil || pr == nil {
			out[i].Response, out[i].Err = resp, err
			continue
		}
		k := batchKey{pr.t.key(), pr.t.Identity, req.Workdir}
		b := byNode[k]
		if b == nil {
			b = &batch{workdir: req.Workdir}
			byNode[k] = b
			keys = append(keys, k)
		}
		b.probes = append(b.probes, pr)
		b.at = append(b.at, i)
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		b := byNode[k]
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps, errs := readNode(ctx, pv.p, b.workdir, b.probes)
			for j, i := range b.at {
				out[i].Response, out[i].Err = resps[j], errs[j]
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// batchKey groups the probes that share a connection and a known_hosts.
type batchKey struct {
	conn     connKey
	identity string
	workdir  string
}

// readNode runs probes, all bound for one node, as one command.
func readNode(ctx context.Context, p *pool, workdir string, probes []*probe) ([]*sdk.ReadResponse, []error) {
	resps, errs := make([]*sdk.ReadResponse, len(probes)), make([]error, len(probes))
	t := probes[0].t
	fail := func(err error) ([]*sdk.ReadResponse, []error) {
		for i := range errs {
			errs[i] = err
		}
		return resps, errs
	}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	mark := "@@khw-" + hex.EncodeToString(nonce)
	var r *result
	start := time.Now()
	var connected, ran time.Duration
	err := p.withConn(ctx, t, workdir, t.bound(shortBound), func(cn *conn) error {
		connected = time.Since(start)
		cmd, script := batchScript(cn.key.user, mark, probes)
		var err error
		r, err = cn.outputIn(ctx, cmd, script)
		ran = time.Since(start) - connected
		if err != nil {
			return fmt.Errorf("node %s (%s): reading back: %w", t.Node, t.addr(), err)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	parts, err := splitBatch(mark, r.stdout, probes)
	if err != nil {
		// The batch did not run at all: sudo refused, or no shell.
		return fail(fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), rootFailure("reading back", r.stderr+"\n"+err.Error())))
	}
	for i, pr := range probes {
		resps[i], errs[i] = pr.parse(parts[i])
		if errs[i] != nil {
			errs[i] = fmt.Errorf("node %s (%s): %w", pr.t.Node, pr.t.addr(), errs[i])
		}
	}
	p.logReadBack(t, len(probes), connected, ran)
	return resps, errs
}

// batchScript is one shell script that runs every probe in turn, each in
// a subshell (a probe may exit), with its stdout, its stderr (only when it
// failed) and its exit status between lines that start with mark; then one
// systemctl is-active for every unit the probes ask about. It reads from
// stdin (sh -s), as root when a probe needs root: then with the login
// user's $HOME, which the probes that name "~" expect.
func batchScript(user, mark string, probes []*probe) (cmd, script string) {
	root := false
	for _, pr := range probes {
		root = root || pr.root
	}
	units := unitsOf(probes)
	cmd = "sh -s"
	if root && user != "root" {
		cmd = `sudo -n env HOME="$HOME" sh -s`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "e=$(mktemp) || exit 1\ntrap 'rm -f \"$e\"' EXIT\n")
	for i, pr := range probes {
		fmt.Fprintf(&b, "echo '%s %d out'\n(\n%s\n) 2>\"$e\" </dev/null\ns=$?\necho; echo \"%s %d err $s\"\n[ $s -eq 0 ] || cat \"$e\"; echo\n", mark, i, pr.script, mark, i)
	}
	fmt.Fprintf(&b, "echo '%s units'\n", mark)
	if len(units) > 0 {
		fmt.Fprintf(&b, "systemctl is-active -- %s 2>&1\n", quoteAll(units))
	}
	fmt.Fprintf(&b, "echo '%s end'\n", mark)
	return cmd, b.String()
}

// unitsOf is every unit the probes ask about, in order: batchScript asks
// systemctl in this order and splitBatch reads the answers in it.
func unitsOf(probes []*probe) []string {
	var units []string
	for _, pr := range probes {
		units = append(units, pr.units...)
	}
	return units
}

// sumLine reads a line of sha256sum's output, "SHA256  NAME".
func sumLine(line string) (name, sum string, ok bool) {
	if len(line) > 66 && line[64:66] == "  " {
		return line[66:], line[:64], true
	}
	return "", "", false
}

// splitBatch cuts batchScript's output into each probe's result, with the
// state of every unit the probes named.
func splitBatch(mark, stdout string, probes []*probe) ([]*result, error) {
	n := len(probes)
	parts := strings.Split("\n"+stdout, "\n"+mark+" ")
	early := fmt.Errorf("the read-back script ended early (%d of %d parts)", max(len(parts)-2, 0)/2, n)
	if len(parts) != 2*n+3 || parts[len(parts)-1] != "end\n" {
		return nil, early
	}
	head, body, _ := strings.Cut(parts[len(parts)-2], "\n")
	if head != "units" {
		return nil, early
	}
	units := unitsOf(probes)
	var states []string
	if body != "" {
		states = strings.Split(body, "\n")
	}
	if len(states) != len(units) {
		return nil, fmt.Errorf("systemctl is-active gave %d states for %d units: %q", len(states), len(units), states)
	}
	state := map[string]string{}
	for i, u := range units {
		state[u] = states[i]
	}
	out := make([]*result, n)
	for i, pr := range probes {
		oh, stdout, _ := strings.Cut(parts[1+2*i], "\n")
		eh, stderr, _ := strings.Cut(parts[2+2*i], "\n")
		f := strings.Fields(eh)
		if oh != strconv.Itoa(i)+" out" || len(f) != 3 || f[0] != strconv.Itoa(i) || f[1] != "err" {
			return nil, fmt.Errorf("the read-back script's output is out of order at probe %d", i)
		}
		status, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("the read-back script's output is out of order at probe %d", i)
		}
		r := &result{stdout: stdout, stderr: stderr, status: status, units: map[string]string{}}
		for _, u := range pr.units {
			r.units[u] = state[u]
		}
		out[i] = r
	}
	return out, nil
}

// removeOnNode runs a deleting script (what, for its error) on t's node,
// as root when root is set, retried once on a dropped connection. A node
// that does not answer within the short bound is taken to be gone, with
// what was on it.
func removeOnNode(ctx context.Context, p *pool, t *target, workdir string, root bool, what, script string) error {
	err := p.withConn(ctx, t, workdir, t.bound(shortBound), func(cn *conn) error {
		_, err := cn.script(ctx, root, what, script)
		return err
	})
	var ue *unreachableError
	switch {
	case err == nil || errors.As(err, &ue):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), err)
}

// logReadBack tells khw's debug log how many round trips the node has
// cost this plugin so far: "KHW_LOG=debug khw plan" shows them, and make
// bench counts them.
func (p *pool) logReadBack(t *target, resources int, connect, command time.Duration) {
	s := p.counter(t.key())
	sdk.Logger().Debug("read back", "node", t.Node, "resources", resources,
		"connections", s.dials.Load(), "sessions", s.sessions.Load(), "keepalives", s.keepalives.Load(),
		"connect", connect.Round(time.Millisecond).String(), "command", command.Round(time.Millisecond).String())
}
