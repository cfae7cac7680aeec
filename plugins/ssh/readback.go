package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// A probe is one resource's share of reading a node back: the files it
// asks about, the systemd units whose state it needs, and what the answers
// mean. Read runs one probe as one command; ReadMany runs every probe
// bound for a node as one command, so that a plan costs one connection
// and one command per node however many resources the node holds. That
// command starts a fixed number of processes, whatever the probes: one
// stat for every file, one sha256sum for those whose stat is not the
// recorded one, one systemctl for every unit (on a busy emulated guest,
// each process costs about as much as the ssh login itself).
type probe struct {
	t     *target
	root  bool // the files are read as root
	files []probeFile
	units []string
	// parse reads the answers: r.files[i] is files[i] on the node.
	parse func(r *reading) (*sdk.ReadResponse, error)
}

// probeFile is a file a probe asks about: its path, absolute or under the
// login user's home, and the stat recorded with its sha256 (or "": hash
// it whatever its stat).
type probeFile struct {
	path   string
	inHome bool
	known  string
}

// word is the file's path as the node's shell names it.
func (f probeFile) word() string {
	if f.inHome {
		return `"$HOME"/` + shellQuote(f.path)
	}
	return shellQuote(f.path)
}

// fileIn is name in a copy's dest as a probeFile, with the known stat.
func fileIn(dest, name, known string) probeFile {
	rel, inHome := destDir(dest)
	return probeFile{path: path.Join(rel, name), inHome: inHome, known: known}
}

// reading is what one node said about a probe's files and units.
type reading struct {
	// files are the probe's files in order: nil for one that is missing
	// or not a regular file. A file's sha is "?" when the node did not
	// report it and its stat is not the recorded one: it changed.
	files []*remoteFile
	units map[string]string
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
		var err error
		r, err = cn.outputIn(ctx, batchShell, batchScript(cn.key.user, mark, probes))
		ran = time.Since(start) - connected
		if err != nil {
			return fmt.Errorf("node %s (%s): reading back: %w", t.Node, t.addr(), err)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	readings, err := splitBatch(mark, r.stdout, probes)
	if err != nil {
		// The batch did not run, or not to its end: no shell, no stat.
		return fail(fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), rootFailure("reading back", r.stderr+"\n"+err.Error())))
	}
	if refused := sudoRefused(r.stderr); refused != "" {
		// Files root alone may see would look missing: say why instead.
		return fail(fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), rootFailure("reading back", refused)))
	}
	for i, pr := range probes {
		resps[i], errs[i] = pr.parse(readings[i])
		if errs[i] != nil {
			errs[i] = fmt.Errorf("node %s (%s): %w", pr.t.Node, pr.t.addr(), errs[i])
		}
	}
	p.logReadBack(t, len(probes), connected, ran)
	return resps, errs
}

// batchShell runs the read-back script from stdin, as the login user: stat
// needs no read permission, and a file whose stat is the recorded one is
// not read at all.
const batchShell = "sh -s"

// batchScript is the one shell script that answers every probe: the login
// user's home, statScript over every probe's files, then one systemctl
// is-active for every unit, between lines that start with mark. It runs
// through batchShell; when a probe needs root and the user is not root,
// statScript asks sudo for what the user may not read.
func batchScript(user, mark string, probes []*probe) string {
	root := false
	for _, pr := range probes {
		root = root || pr.root
	}
	words, known := batchFiles(probes)
	var b strings.Builder
	fmt.Fprintf(&b, "echo \"%s home $HOME\"\n", mark)
	if len(words) > 0 {
		statScript(&b, words, known, root && user != "root")
	}
	fmt.Fprintf(&b, "echo '%s units'\n", mark)
	if units := unitsOf(probes); len(units) > 0 {
		fmt.Fprintf(&b, "systemctl is-active -- %s 2>&1 </dev/null\n", quoteAll(units))
	}
	fmt.Fprintf(&b, "echo '%s end'\n", mark)
	return b.String()
}

// sudoRefused is the line of stderr where sudo refused to run a command,
// or "". sudo's warning about the node's own host name is not a refusal.
func sudoRefused(stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		refused := strings.HasPrefix(line, "sudo: ") && !strings.Contains(line, "unable to resolve host")
		if refused || strings.HasSuffix(line, "sudo: not found") {
			return line
		}
	}
	return ""
}

// batchFiles is every file the probes ask about, once each, as shell
// words, with the stat that spares hashing it: none when two probes
// recorded different ones.
func batchFiles(probes []*probe) (words, known []string) {
	at := map[string]int{}
	for _, pr := range probes {
		for _, f := range pr.files {
			w := f.word()
			i, seen := at[w]
			switch {
			case !seen:
				at[w] = len(words)
				words, known = append(words, w), append(known, f.known)
			case known[i] != f.known:
				known[i] = ""
			}
		}
	}
	return words, known
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

// splitBatch reads batchScript's output back into each probe's reading.
func splitBatch(mark, stdout string, probes []*probe) ([]*reading, error) {
	// Each part has lost its last newline to the next mark.
	parts := strings.Split("\n"+stdout, "\n"+mark+" ")
	if len(parts) != 4 || parts[0] != "" || parts[3] != "end\n" || !strings.HasPrefix(parts[1], "home ") {
		return nil, fmt.Errorf("the read-back script ended early or out of order")
	}
	head, body, _ := strings.Cut(parts[2], "\n")
	if head != "units" {
		return nil, fmt.Errorf("the read-back script ended early or out of order")
	}
	lines := strings.Split(parts[1], "\n")
	home := strings.TrimPrefix(lines[0], "home ")
	files, err := parseStats(lines[1:])
	if err != nil {
		return nil, fmt.Errorf("reading back: %w", err)
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
	out := make([]*reading, len(probes))
	for i, pr := range probes {
		r := &reading{files: make([]*remoteFile, len(pr.files)), units: map[string]string{}}
		for j, f := range pr.files {
			name := f.path
			if f.inHome {
				name = home + "/" + f.path
			}
			rf, ok := files[name]
			if !ok {
				continue
			}
			// Unhashed because another word for the same file had
			// its stat recorded: this one's decides.
			if rf.sha == "" && (f.known == "" || rf.stat != f.known) {
				rf.sha = "?"
			}
			r.files[j] = &rf
		}
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
