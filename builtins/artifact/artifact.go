// Package artifact is the recipe module `artifact`: the binaries a
// cluster needs (Kubernetes, etcd, the CNI plugins, flannel, CoreDNS,
// containerd), identified by project and version, built from the Go
// module proxy, downloaded, or unpacked from Debian's packages once per
// machine into a shared cache outside the workdir, and handed to the
// recipe as files that node.copy installs on nodes.
package artifact

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// DefaultCache is the machine's artifact cache.
const DefaultCache = "/var/lib/khw/artifacts"

// Register adds the artifact module and its resource type.
func Register(r *runtime.Registry) { register(r, DefaultCatalog) }

func register(r *runtime.Registry, cat Catalog) {
	var versions []string
	for _, s := range cat {
		if len(s.Versions) > 0 {
			versions = append(versions, s.Project+" "+s.Versions[0])
		}
	}
	r.Add(&runtime.Builtin{Module: "artifact", Name: "release", Creates: "artifact", Provider: "khw",
		Fn: releaseBuiltin(cat),
		Doc: "Declares the binaries of a project at a version, obtained once per machine into a shared cache " +
			"(CACHE/PROJECT/VERSION/BIN, with a manifest of sha256s): built from the Go module proxy " +
			"(source \"build\", offline), downloaded from the official release files and checked against their " +
			"published sha256 (\"download\"), or unpacked from Debian's packages (\"debian\", containerd). " +
			"Projects: " + strings.Join(cat.Projects(), ", ") + ". The returned handle has `files` (binary name -> " +
			"file, for node.copy), `version` and `dir`; paths follow the version, so a version bump updates " +
			"the copies that use them. Kubernetes' `pause` is compiled from the module's build/pause/linux/pause.c " +
			"with gcc whatever the source. Destroy leaves the cache alone: other labs and CI reuse it.",
		Args: []runtime.Arg{
			{Name: "project", Type: "string", Doc: "the project: " + strings.Join(cat.Projects(), ", ")},
			{Name: "version", Type: "string", Default: `""`,
				Doc: "a version khw knows; empty is the project's pinned one (" + strings.Join(versions, ", ") + ")"},
			{Name: "source", Type: "string", Default: `""`,
				Doc: "build (Go module proxy, offline), download (official release files, needs internet) or " +
					"debian (containerd); empty is the project's first (build; debian for containerd)"},
			{Name: "cache", Type: "string", Default: `"` + DefaultCache + `"`, Doc: "absolute directory shared by every workdir"},
			{Name: "url", Type: "string", Default: `""`,
				Doc: "base URL of the release files for download; empty is the project's official one"},
		},
		Example: `k8s = artifact.release("kubernetes", version = "v1.34.4", source = "build")`,
	})
	r.AddType(runtime.TypeSpec{Type: "artifact", Doc: "a project's binaries at a version, in the machine's cache",
		UpdateInPlace: true, Handler: &Handler{Catalog: cat}})
}

// config is the resource's configuration as the provider sees it.
type config struct {
	Project string `json:"project"`
	Version string `json:"version"`
	Source  string `json:"source"`
	Cache   string `json:"cache"`
	URL     string `json:"url,omitempty"`
}

// Dir is the cache directory of a project's version.
func Dir(cache, project, version string) string {
	return filepath.Join(cache, project, version)
}

func releaseBuiltin(cat Catalog) runtime.BuiltinFunc {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var project, version, source, url string
		cache := DefaultCache
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "project", &project, "version?", &version,
			"source?", &source, "cache?", &cache, "url?", &url); err != nil {
			return nil, err
		}
		spec := cat.Lookup(project)
		if spec == nil {
			return nil, runtime.Errorf(b, "unknown project %q: khw knows %s", project, strings.Join(cat.Projects(), ", "))
		}
		if version == "" {
			version = spec.Versions[0]
		}
		if !spec.knows(version) {
			return nil, runtime.Errorf(b, "%s %s is not a version khw knows: it knows %s (%s)", project, version,
				strings.Join(spec.Versions, ", "), spec.Why)
		}
		if source == "" {
			source = spec.Sources[0]
		}
		if !spec.supports(source) {
			why := spec.NoSource[source]
			if why == "" {
				why = "sources are build, download and debian"
			}
			return nil, runtime.Errorf(b, "%s cannot come from source %q (%s): use %s", project, source, why,
				strings.Join(spec.Sources, " or "))
		}
		if !path.IsAbs(cache) || path.Clean(cache) != cache {
			return nil, runtime.Errorf(b, "cache %q must be a clean absolute directory, e.g. %s", cache, DefaultCache)
		}
		if url != "" && !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return nil, runtime.Errorf(b, "url %q must be an http:// or https:// base URL", url)
		}
		if url != "" && source != SourceDownload {
			return nil, runtime.Errorf(b, "url is for source \"download\", not %q", source)
		}
		dir := Dir(cache, project, version)
		res := &runtime.Resource{Type: "artifact", Name: project,
			Inputs: map[string]any{"project": project, "version": version, "source": source, "cache": cache},
			Show: []runtime.Field{
				{Key: "version", Value: version}, {Key: "source", Value: source}, {Key: "dir", Value: dir},
				{Key: "files", Value: strings.Join(spec.Binaries, " ")},
			},
		}
		if url != "" {
			// Where the files come from is not what they are: the cache
			// is keyed by project and version, and each file by its sha256.
			res.Settings = map[string]any{"url": url}
		}
		if err := runtime.Declare(thread, res); err != nil {
			return nil, err
		}
		files := starlark.NewDict(len(spec.Binaries))
		bins := append([]string(nil), spec.Binaries...)
		sort.Strings(bins)
		for _, bin := range bins {
			f := &runtime.File{Path: filepath.Join(dir, bin), Producer: res.Addr(), Exec: true}
			if err := files.SetKey(starlark.String(bin), f); err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
		}
		files.Freeze()
		return runtime.NewHandle(res, starlark.StringDict{
			"files": files, "version": starlark.String(version), "dir": starlark.String(dir),
		}), nil
	}
}
