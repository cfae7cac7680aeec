package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// progressEvery is the least time between two progress lines.
var progressEvery = 5 * time.Second

// Handler serves the artifact type in process.
type Handler struct{ Catalog Catalog }

// Outputs are what an artifact records: where its files are, and their
// sha256s (the digest), so that copies to nodes are redone only when a
// binary really changed.
type Outputs struct {
	Dir     string             `json:"dir"`
	Version string             `json:"version"`
	Source  string             `json:"source"`
	Files   map[string]OutFile `json:"files"`
}

// OutFile is one binary of an artifact.
type OutFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func (h *Handler) decode(r *sdk.Resource) (*config, *Spec, error) {
	var c config
	if err := r.Decode(&c); err != nil {
		return nil, nil, err
	}
	spec := h.Catalog.Lookup(c.Project)
	if spec == nil {
		return nil, nil, fmt.Errorf("khw does not know the project %q", c.Project)
	}
	if !spec.knows(c.Version) || !spec.supports(c.Source) || !filepath.IsAbs(c.Cache) {
		return nil, nil, fmt.Errorf("bad configuration for %s: version %q, source %q, cache %q", c.Project, c.Version, c.Source, c.Cache)
	}
	return &c, spec, nil
}

// Read finds the version gone when its manifest or a file is missing or a
// file's size differs; it only stats.
func (h *Handler) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	c, spec, err := h.decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	dir := Dir(c.Cache, c.Project, c.Version)
	m, err := readManifest(dir)
	if err != nil {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	if ok, _ := statMatches(dir, m, spec.Binaries); !ok {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	out := outputs(dir, c.Version, m)
	if prior := priorDigest(req.PriorOutputs); prior != "" && prior != digest(m.Files) {
		// Another lab rebuilt the shared cache: the dependents follow.
		return &sdk.ReadResponse{Exists: true, Drift: "its files were made again in the shared cache", Outputs: sdk.Outputs(out)}, nil
	}
	return &sdk.ReadResponse{Exists: true, Outputs: sdk.Outputs(out)}, nil
}

// Apply reuses the cached version when its manifest and files are there
// (checking each file's sha256 the first time this workdir records them),
// else obtains it under the version's lock, in a temporary directory
// renamed into place.
func (h *Handler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	c, spec, err := h.decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	dir := Dir(c.Cache, c.Project, c.Version)
	if m := cached(dir, spec, priorDigest(req.PriorOutputs)); m != nil {
		return response(dir, c.Version, m), nil
	}
	projectDir := filepath.Dir(dir)
	unlock, err := lock(ctx, dir+".lock", progress)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.Cache, err)
	}
	defer unlock()
	// Another khw may have made it while this one waited.
	if m := cached(dir, spec, ""); m != nil {
		return response(dir, c.Version, m), nil
	}
	removeStale(projectDir, c.Version)
	tmp, err := os.MkdirTemp(projectDir, tmpPrefix(c.Version))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.Cache, err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	m := &Manifest{Project: c.Project, Version: c.Version, Source: c.Source}
	start := time.Now()
	switch c.Source {
	case SourceBuild:
		m.Obtained, err = goBuild(ctx, spec, c.Version, tmp, progress)
	case SourceDownload:
		m.Obtained, err = download(ctx, spec, c.Version, c.URL, tmp, progress)
	case SourceDebian:
		m.Obtained, err = debian(ctx, spec, c.Version, tmp, progress)
	}
	if err == nil && len(spec.Compiled) > 0 {
		var how string
		how, err = compileC(ctx, spec, c.Version, tmp, progress)
		m.Obtained += "; " + how
	}
	if err != nil {
		return nil, err
	}
	if err := install(tmp, dir, m, spec.Binaries); err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.Cache, err)
	}
	done = true
	progress(fmt.Sprintf("%s %s in %s (%s)", c.Project, c.Version, dir, time.Since(start).Round(time.Second)))
	return response(dir, c.Version, m), nil
}

// Delete leaves the shared cache: other labs and CI reuse it.
func (h *Handler) Delete(context.Context, *sdk.DeleteRequest) error { return nil }

// cached returns the manifest of a complete cached version, or nil. A
// version whose sha256s this workdir has recorded (prior) is checked by
// size; any other by size and sha256.
func cached(dir string, spec *Spec, prior string) *Manifest {
	m, err := readManifest(dir)
	if err != nil {
		return nil
	}
	if ok, _ := statMatches(dir, m, spec.Binaries); !ok {
		return nil
	}
	if prior != digest(m.Files) {
		if ok, _ := hashMatches(dir, m, spec.Binaries); !ok {
			return nil
		}
	}
	return m
}

func outputs(dir, version string, m *Manifest) *Outputs {
	o := &Outputs{Dir: dir, Version: version, Source: m.Source, Files: map[string]OutFile{}}
	for name, f := range m.Files {
		o.Files[name] = OutFile{Path: filepath.Join(dir, name), SHA256: f.SHA256, Size: f.Size}
	}
	return o
}

func response(dir, version string, m *Manifest) *sdk.ApplyResponse {
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(outputs(dir, version, m)), Digest: digest(m.Files)}
}

// priorDigest is the digest of recorded outputs, or "".
func priorDigest(prior json.RawMessage) string {
	var o Outputs
	if len(prior) == 0 || json.Unmarshal(prior, &o) != nil || len(o.Files) == 0 {
		return ""
	}
	files := map[string]FileInfo{}
	for n, f := range o.Files {
		files[n] = FileInfo{SHA256: f.SHA256, Size: f.Size}
	}
	return digest(files)
}
