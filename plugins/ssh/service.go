package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// serviceHandler serves node.service: a systemd unit on a node, with the
// configuration files it reads, started and kept running. Its unit and
// files are written as root; a change to either, or to anything the
// service uses (its binaries, certificates: the resource's dependencies),
// restarts it, and apply waits until it is healthy.
type serviceHandler struct{ p *pool }

type serviceConfig struct {
	target
	Service string `json:"service"`
	Unit    string `json:"unit"`
	// Files are configuration files by absolute path, with their content.
	Files map[string]string `json:"files"`
	// Health is a shell command, run as root on the node, that succeeds
	// once the service works; empty: systemd's "active" is enough.
	Health         string `json:"health"`
	HealthTimeoutS int    `json:"health_timeout_s"`
}

type serviceOutputs struct {
	HostKey string            `json:"host_key"`
	Files   map[string]string `json:"files"` // path -> sha256, the unit included
	// Stats are the files' stat keys when placed (see copyOutputs.Stats):
	// a read-back hashes only a file whose stat is not this one.
	Stats map[string]string `json:"stats,omitempty"`
}

// in is what was recorded of the named files in directory d, as a copy
// to d records it: by name.
func (o serviceOutputs) in(d string, names []string) copyOutputs {
	out := copyOutputs{Files: map[string]string{}, Stats: map[string]string{}}
	for _, n := range names {
		p := path.Join(d, n)
		if st, sum := o.Stats[p], o.Files[p]; st != "" && sum != "" {
			out.Files[n], out.Stats[n] = sum, st
		}
	}
	return out
}

var serviceNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$`)

func unitPath(service string) string { return "/etc/systemd/system/" + service + ".service" }

func decodeService(r *sdk.Resource) (*serviceConfig, error) {
	var c serviceConfig
	if err := r.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.normalize(r.Address); err != nil {
		return nil, err
	}
	if !serviceNameRE.MatchString(c.Service) {
		return nil, fmt.Errorf("%s: %q is not a systemd service name", r.Address, c.Service)
	}
	if strings.TrimSpace(c.Unit) == "" {
		return nil, fmt.Errorf("%s: the unit is empty", r.Address)
	}
	for p := range c.Files {
		if !path.IsAbs(p) || path.Clean(p) != p || p == unitPath(c.Service) {
			return nil, fmt.Errorf("%s: file path %q must be absolute, clean, and not the unit's own", r.Address, p)
		}
	}
	if c.HealthTimeoutS <= 0 {
		c.HealthTimeoutS = 300
	}
	return &c, nil
}

// all is the unit and the files, by path, with their content.
func (c *serviceConfig) all() map[string]string {
	out := map[string]string{unitPath(c.Service): c.Unit}
	for p, content := range c.Files {
		out[p] = content
	}
	return out
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// byDir groups paths by directory, each directory's files sorted.
func byDir(paths map[string]string) (dirs []string, files map[string][]string) {
	files = map[string][]string{}
	for p := range paths {
		d := path.Dir(p)
		if files[d] == nil {
			dirs = append(dirs, d)
		}
		files[d] = append(files[d], path.Base(p))
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		sort.Strings(files[d])
	}
	return dirs, files
}

func (h serviceHandler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	if progress == nil {
		progress = func(string) {}
	}
	c, err := decodeService(&req.Resource)
	if err != nil {
		return nil, err
	}
	// A prior that does not decode only costs hashing every file again.
	var prior serviceOutputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	out := serviceOutputs{Files: map[string]string{}, Stats: map[string]string{}}
	// The files, a directory at a time: sent only where they differ, and
	// hashed only where their stat is not the recorded one.
	all := c.all()
	dirs, names := byDir(all)
	for _, d := range dirs {
		var files []copyFile
		var sums []localSum
		for _, n := range names[d] {
			content := all[path.Join(d, n)]
			files = append(files, copyFile{name: n, content: []byte(content), mode: 0o644})
			sums = append(sums, localSum{sha: sha(content), size: int64(len(content))})
			out.Files[path.Join(d, n)] = sha(content)
		}
		placed, err := place(ctx, h.p, req, &c.target, d, true, files, sums, prior.in(d, names[d]), progress)
		if err != nil {
			return nil, err
		}
		for n, st := range placed.Stats {
			out.Stats[path.Join(d, n)] = st
		}
	}
	cn, err := h.p.connect(ctx, &c.target, req.Workdir, req.Deps, c.timeout())
	if err != nil {
		return nil, err
	}
	defer h.p.release(cn)
	out.HostKey = authorizedKey(cn.hostKey)
	fail := func(err error) (*sdk.ApplyResponse, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("node %s (%s): %w", c.Node, c.addr(), err)
	}
	progress(fmt.Sprintf("(re)starting %s on %s", c.Service, c.Node))
	q := shellQuote(c.Service)
	r, err := cn.rootOutput(ctx, fmt.Sprintf("systemctl daemon-reload && systemctl enable -q %s && systemctl reset-failed %s 2>/dev/null; systemctl restart %s", q, q, q))
	if err != nil {
		return fail(err)
	}
	if r.status != 0 {
		return fail(h.unhealthy(ctx, cn, c, "systemctl restart failed: "+strings.TrimSpace(r.stderr)))
	}
	if err := h.waitHealthy(ctx, cn, c, progress); err != nil {
		return fail(err)
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: digest(out.Files)}, nil
}

// healthPoll is how often apply asks whether a service is healthy yet.
var healthPoll = time.Second

// waitHealthy waits until systemd says the service is active and its
// health command (if any) succeeds, up to the health timeout.
func (h serviceHandler) waitHealthy(ctx context.Context, cn *conn, c *serviceConfig, progress sdk.Progress) error {
	start := time.Now()
	deadline := start.Add(time.Duration(c.HealthTimeoutS) * time.Second)
	q := shellQuote(c.Service)
	// Active, healthy, and still active without a restart after the
	// health check: a service in a restart loop is active for a moment
	// each round, and a health check can pass on what an earlier run left
	// behind (a ready file, a socket).
	state := fmt.Sprintf("{ echo \"$(systemctl is-active %s) (restarted $(systemctl show -p NRestarts --value %s) times)\"; exit 3; }", q, q)
	check := fmt.Sprintf("n=$(systemctl show -p NRestarts --value %s); systemctl is-active -q %s || %s", q, q, state)
	if c.Health != "" {
		check += fmt.Sprintf("; ( %s\n) || exit $?; systemctl is-active -q %s && [ \"$(systemctl show -p NRestarts --value %s)\" = \"$n\" ] || %s", c.Health, q, q, state)
	}
	last := ""
	lastReport := time.Time{}
	for {
		r, err := cn.rootOutput(ctx, check)
		if err != nil {
			return err
		}
		if r.status == 0 {
			return nil
		}
		if r.status == 3 {
			last = "systemd says " + strings.TrimSpace(r.stdout)
		} else {
			last = fmt.Sprintf("the health check %q exited with status %d", shorten(c.Health, 80), r.status)
			if msg := shorten(strings.TrimSpace(r.stderr+"\n"+r.stdout), 160); msg != "" {
				last += ": " + msg
			}
		}
		if time.Since(lastReport) > 5*time.Second {
			progress(fmt.Sprintf("waiting for %s on %s to be healthy (%s): %s", c.Service, c.Node, time.Since(start).Round(time.Second), last))
			lastReport = time.Now()
		}
		if time.Now().After(deadline) {
			return h.unhealthy(ctx, cn, c, fmt.Sprintf("not healthy after %ds: %s", c.HealthTimeoutS, last))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(healthPoll):
		}
	}
}

// journalLines and errorLines are how much of a failed service's log its
// error shows: the end, and the last lines that look like errors (a
// service that restarts in a loop may be printing its start-up banner
// again just when the log is read).
const (
	journalLines = 20
	errorLines   = 8
)

// errorLine matches a log line that reports an error: klog's E and F
// lines, logfmt's and JSON's error levels, systemd's own failures.
const errorLine = `^[EF][0-9]{4} |level=(error|fatal)|"level":"(error|fatal)"|[Ff]ailed|[Ee]rror:`

// unhealthy is the error of a service that did not come up: what was
// seen, its last error lines, and the end of its log.
func (h serviceHandler) unhealthy(ctx context.Context, cn *conn, c *serviceConfig, what string) error {
	msg := fmt.Sprintf("%s on %s: %s", c.Service, c.Node, what)
	q := shellQuote(c.Service)
	r, err := cn.rootOutput(ctx, fmt.Sprintf("journalctl -u %s --no-pager -o cat -n 2000 2>&1 | grep -E %s | tail -n %d", q, shellQuote(errorLine), errorLines))
	if err == nil && strings.TrimSpace(r.stdout) != "" {
		msg += fmt.Sprintf("; its last errors:\n%s", strings.TrimRight(r.stdout, "\n"))
	}
	r, err = cn.rootOutput(ctx, fmt.Sprintf("journalctl -u %s -n %d --no-pager -o cat 2>&1", q, journalLines))
	if err == nil && strings.TrimSpace(r.stdout) != "" {
		msg += fmt.Sprintf("\nthe last lines of its log (journalctl -u %s):\n%s", c.Service, strings.TrimRight(r.stdout, "\n"))
	}
	return sdk.WithHint(errors.New(msg), fmt.Sprintf("look at the whole log on the node: journalctl -u %s; fix the recipe or the node, then run khw again", c.Service))
}

// Read checks, in one command, that the unit and every file hold what was
// written and that the service runs. A unit gone is a service gone; an
// edited file or a stopped service is drift, repaired by a restart.
func (h serviceHandler) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return readOne(ctx, h.p, h, req)
}

func (serviceHandler) probe(req *sdk.ReadRequest) (*probe, *sdk.ReadResponse, error) {
	c, err := decodeService(&req.Resource)
	if err != nil {
		return nil, nil, err
	}
	var prior serviceOutputs
	if err := decodePrior(req.Resource.Address, req.PriorOutputs, &prior); err != nil {
		return nil, nil, err
	}
	if len(prior.Files) == 0 {
		return nil, &sdk.ReadResponse{Exists: false}, nil
	}
	paths := make([]string, 0, len(prior.Files))
	for p := range prior.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	// The files are read with every other file on the node (hashed
	// when their stat is not the one recorded), and the unit's state
	// comes with the node's other units.
	files := make([]probeFile, len(paths))
	for i, p := range paths {
		files[i] = probeFile{path: p, known: prior.Stats[p]}
	}
	return &probe{
		t: &c.target, root: true, files: files, units: []string{c.Service},
		parse: func(r *reading) (*sdk.ReadResponse, error) {
			state := r.units[c.Service]
			if state == "" {
				return nil, fmt.Errorf("reading %s: systemctl gave no state", c.Service)
			}
			var changed []string
			for i, p := range paths {
				switch rf := r.files[i]; {
				case rf == nil && p == unitPath(c.Service):
					return &sdk.ReadResponse{Exists: false}, nil
				case rf == nil || (rf.sha != "" && rf.sha != prior.Files[p]):
					changed = append(changed, p)
				}
			}
			resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
			switch {
			case len(changed) > 0:
				resp.Drift = fmt.Sprintf("%s changed on %s", strings.Join(changed, ", "), c.Node)
			case state != "active":
				resp.Drift = fmt.Sprintf("%s is not running on %s (%s)", c.Service, c.Node, state)
			}
			return resp, nil
		},
	}, nil, nil
}

func (serviceHandler) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	if _, err := decodeService(&req.Resource); err != nil {
		return nil, err
	}
	return &sdk.PlanResponse{}, nil
}

// Delete stops and disables the service and removes its unit and files. A
// node that does not answer within the short bound is taken to be gone.
func (h serviceHandler) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	c, err := decodeService(&req.Resource)
	if err != nil {
		return err
	}
	var prior serviceOutputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	paths := c.all()
	for p := range prior.Files {
		paths[p] = ""
	}
	var all []string
	for p := range paths {
		all = append(all, p)
	}
	sort.Strings(all)
	s := shellQuote(c.Service)
	return removeOnNode(ctx, h.p, &c.target, req.Workdir, true, "removing "+c.Service,
		fmt.Sprintf("systemctl disable -q --now %s 2>/dev/null; rm -f -- %s; systemctl daemon-reload; systemctl reset-failed %s 2>/dev/null; true", s, quoteAll(all), s))
}
