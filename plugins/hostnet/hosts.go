package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/khw-dev/khw/internal/atomicfile"
	"github.com/khw-dev/khw/plugins/sdk"
)

type hosts struct{}

type hostsConfig struct {
	Entries map[string]string `json:"entries"`
	File    string            `json:"file"`
}

func markers(addr string) (begin, end string) {
	return "# BEGIN khw " + addr + " (managed by khw; edits are overwritten)", "# END khw " + addr
}

// block renders the entries sorted by IP, then name.
func block(c hostsConfig, addr string) string {
	type e struct{ ip, name string }
	var es []e
	for n, ip := range c.Entries {
		es = append(es, e{ip, n})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].ip != es[j].ip {
			return es[i].ip < es[j].ip
		}
		return es[i].name < es[j].name
	})
	begin, end := markers(addr)
	var b strings.Builder
	b.WriteString(begin + "\n")
	for _, x := range es {
		fmt.Fprintf(&b, "%s %s\n", x.ip, x.name)
	}
	b.WriteString(end + "\n")
	return b.String()
}

// split returns the file without khw's block for addr, and the block
// (empty when absent).
func split(content, addr string) (rest, current string) {
	begin, end := markers(addr)
	lines := strings.SplitAfter(content, "\n")
	var r, cur strings.Builder
	in := false
	for _, l := range lines {
		t := strings.TrimRight(l, "\n")
		switch {
		case !in && t == begin:
			in = true
			cur.WriteString(l)
		case in:
			cur.WriteString(l)
			if t == end {
				in = false
			}
		default:
			r.WriteString(l)
		}
	}
	return r.String(), cur.String()
}

func readHosts(file string) (string, os.FileMode, error) {
	st, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0o644, nil
	}
	if err != nil {
		return "", 0, err
	}
	b, err := os.ReadFile(file)
	return string(b), st.Mode().Perm(), err
}

// writeHosts replaces the file atomically, keeping a symlinked file's
// link; where the file is a mount point (a container's /etc/hosts), it is
// rewritten in place.
func writeHosts(file, content string, mode os.FileMode) error {
	if err := atomicfile.WriteFileOrInPlace(file, []byte(content), mode); err != nil {
		return needsRoot(fmt.Errorf("writing %s: %w", file, err))
	}
	return nil
}

func (hosts) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c hostsConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	content, _, err := readHosts(c.File)
	if err != nil {
		return nil, err
	}
	_, cur := split(content, req.Resource.Address)
	resp := &sdk.ReadResponse{Exists: cur != "", Outputs: req.PriorOutputs}
	if cur != "" && cur != block(c, req.Resource.Address) {
		resp.Drift = "the block in " + c.File + " was edited"
	}
	return resp, nil
}

func (hosts) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	var now, before hostsConfig
	_ = req.Resource.Decode(&now)
	_ = jsonUnmarshal(req.PriorConfig, &before)
	// Moving to another file is a replacement: the old block goes away.
	return &sdk.PlanResponse{RequiresReplace: before.File != "" && before.File != now.File}, nil
}

func (hosts) Apply(_ context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	var c hostsConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	content, mode, err := readHosts(c.File)
	if err != nil {
		return nil, err
	}
	rest, _ := split(content, req.Resource.Address)
	if rest != "" && !strings.HasSuffix(rest, "\n") {
		rest += "\n"
	}
	b := block(c, req.Resource.Address)
	if err := writeHosts(c.File, rest+b, mode); err != nil {
		return nil, err
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]string{"file": c.File}), Digest: b}, nil
}

func (hosts) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	var c hostsConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	content, mode, err := readHosts(c.File)
	if err != nil {
		return err
	}
	rest, cur := split(content, req.Resource.Address)
	if cur == "" {
		return nil
	}
	return writeHosts(c.File, rest, mode)
}
