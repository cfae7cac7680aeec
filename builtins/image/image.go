// Package image is the recipe module `image`: container images built from
// this machine's files (no daemon, no registry on the internet) and pushed
// to the lab's registry under the names users type, served by the image
// plugin.
package image

import (
	"fmt"
	"github.com/khw-dev/khw/plugins/image/spec"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// Register adds the image module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "image.build", Provider: "image"})
	r.Add(&runtime.Builtin{Module: "image", Name: "build", Creates: "image.build", Provider: "image", Fn: build,
		Doc: "Declares a container image built from this machine's files (one layer, reproducible: the same " +
			"inputs and host files give the same digest) and pushed to the lab's registry under the name " +
			"users type: docker.io/library/nginx:latest goes to ENDPOINT/library/nginx:latest, " +
			"registry.k8s.io/pause:3.10.1 to ENDPOINT/pause:3.10.1, which is what a containerd mirror for " +
			"those registries asks for. Programs in `binaries` come with their shared libraries and the " +
			"dynamic loader (ldd). Host files are read at apply time; a changed host file shows as drift.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "resource name (address image.build.NAME)"},
			{Name: "ref", Type: "string", Doc: "the image name users type, e.g. nginx:latest or registry.k8s.io/pause:3.10.1 (short names are docker.io's)"},
			{Name: "registry", Type: "registry.run", Doc: "the registry it is pushed to"},
			{Name: "files", Type: "dict of path: path or file", Default: "{}", Doc: "image path -> absolute host path or file value; a directory is copied with everything under it, symlinks kept"},
			{Name: "contents", Type: "dict of path: string", Default: "{}", Doc: "image path -> literal text (configs, /etc/passwd)"},
			{Name: "binaries", Type: "list of path or file", Default: "[]", Doc: "programs, with their shared-library closure: a host path goes to the same path, a file value to /BASENAME, unless `files` names the same source under another image path"},
			{Name: "entrypoint", Type: "list of string", Default: "[]", Doc: "the image's ENTRYPOINT"},
			{Name: "cmd", Type: "list of string", Default: "[]", Doc: "the image's CMD"},
			{Name: "env", Type: "dict of string: string", Default: "{}", Doc: "environment; PATH defaults to the usual one"},
			{Name: "workdir", Type: "string", Default: `""`, Doc: "working directory (absolute)"},
			{Name: "user", Type: "string", Default: `""`, Doc: "user (name or uid[:gid]) the process runs as"},
			{Name: "symlinks", Type: "dict of path: string", Default: "{}", Doc: "image path -> link target, e.g. /var/log/nginx/access.log -> /dev/stdout"},
			{Name: "dirs", Type: "list of path, or dict of path: mode", Default: "[]", Doc: "empty directories, 0755 (/tmp and /var/tmp 1777), or with an octal mode string"},
			{Name: "ports", Type: "list of int or string", Default: "[]", Doc: "exposed ports: 80, or \"53/udp\""},
		},
		Example: `image.build("nginx", "nginx:latest", reg, binaries = ["/usr/sbin/nginx"], cmd = ["nginx", "-g", "daemon off;"])`,
	})
}

// FileEntry and Config are what the plugin gets (plugins/image/spec).
type (
	FileEntry = spec.FileEntry
	Config    = spec.Config
)

// entry is one image path while the arguments are checked.
type entry struct {
	Path, Source, Content, Link, Dir string
	Binary, Text                     bool
}

func (e entry) kind() string {
	switch {
	case e.Source != "":
		return "file"
	case e.Text:
		return "contents"
	case e.Link != "":
		return "symlink"
	}
	return "dir"
}

// Ref is a parsed image name: the registry users name, the repository
// path and the tag.
type Ref struct {
	Registry, Repository, Tag string
}

// String is the full name, e.g. docker.io/library/nginx:latest.
func (r Ref) String() string { return r.Registry + "/" + r.Repository + ":" + r.Tag }

// ParseRef normalises an image name as docker and containerd do: a short
// name is docker.io's (library/ for one path element) and the tag
// defaults to latest. A digest cannot be built, so it is refused.
func ParseRef(s string) (Ref, error) {
	if strings.Contains(s, "@") {
		return Ref{}, fmt.Errorf("ref %q names a digest; give a tag (a built image's digest is known only once built)", s)
	}
	t, err := name.NewTag(s)
	if err != nil {
		return Ref{}, fmt.Errorf("ref %q is not an image name: %v", s, err)
	}
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return Ref{Registry: reg, Repository: t.RepositoryStr(), Tag: t.TagStr()}, nil
}

func imagePath(b *starlark.Builtin, what, p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") {
		return runtime.Errorf(b, "%s: image path %q must be an absolute, clean path below / (such as /usr/sbin/nginx)", what, p)
	}
	return nil
}

// source is a host path or a file value, as its path for the plugin.
func source(b *starlark.Builtin, what string, v starlark.Value) (string, error) {
	switch x := v.(type) {
	case starlark.String:
		p := string(x)
		if !path.IsAbs(p) || strings.ContainsAny(p, "\x00\n") {
			return "", runtime.Errorf(b, "%s: host path %q must be absolute", what, p)
		}
		return path.Clean(p), nil
	case *runtime.File:
		return x.Path, nil
	}
	return "", runtime.Errorf(b, "%s must be a host path or a file, not %s", what, v.Type())
}

func stringDict(b *starlark.Builtin, what string, d *starlark.Dict) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range d.Items() {
		k, ok1 := kv[0].(starlark.String)
		v, ok2 := kv[1].(starlark.String)
		if !ok1 || !ok2 {
			return nil, runtime.Errorf(b, "%s must map strings to strings, not %s to %s", what, kv[0].Type(), kv[1].Type())
		}
		out[string(k)] = string(v)
	}
	return out, nil
}

func stringList(b *starlark.Builtin, what string, l *starlark.List) ([]string, error) {
	out := []string{}
	for i := 0; i < l.Len(); i++ {
		s, ok := l.Index(i).(starlark.String)
		if !ok {
			return nil, runtime.Errorf(b, "%s[%d] must be a string, not %s", what, i, l.Index(i).Type())
		}
		out = append(out, string(s))
	}
	return out, nil
}

// imageSpec collects the entries, refusing a path given twice.
type imageSpec struct {
	b       *starlark.Builtin
	entries map[string]entry
}

func (s *imageSpec) add(what string, e entry) error {
	if err := imagePath(s.b, what, e.Path); err != nil {
		return err
	}
	if prev, dup := s.entries[e.Path]; dup {
		return runtime.Errorf(s.b, "%s is given twice (in %s and in %s)", e.Path, prev.kind(), what)
	}
	s.entries[e.Path] = e
	return nil
}

func dirMode(p string) string {
	if p == "/tmp" || p == "/var/tmp" {
		return "1777"
	}
	return "0755"
}

func build(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var resName, refStr, workdir, user string
	var regv starlark.Value
	files, contents, env, symlinks := new(starlark.Dict), new(starlark.Dict), new(starlark.Dict), new(starlark.Dict)
	binaries, entrypoint, cmd, ports := new(starlark.List), new(starlark.List), new(starlark.List), new(starlark.List)
	var dirs starlark.Value = new(starlark.List)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &resName, "ref", &refStr, "registry", &regv,
		"files?", &files, "contents?", &contents, "binaries?", &binaries, "entrypoint?", &entrypoint, "cmd?", &cmd,
		"env?", &env, "workdir?", &workdir, "user?", &user, "symlinks?", &symlinks, "dirs?", &dirs, "ports?", &ports); err != nil {
		return nil, err
	}
	if resName == "" || strings.ContainsAny(resName, " \t\n/") {
		return nil, runtime.Errorf(b, "name %q must be a word without spaces or slashes", resName)
	}
	ref, err := ParseRef(refStr)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	reg, ok := regv.(*runtime.Handle)
	if !ok || reg.Res.Type != "registry.run" {
		what := regv.Type()
		if ok {
			what = reg.Res.Addr()
		}
		return nil, runtime.Errorf(b, "registry must be a registry.run (the lab's registry), not %s", what)
	}
	ep, _ := reg.Attr("endpoint")
	endpoint := string(ep.(starlark.String))
	pushed := endpoint + "/" + ref.Repository + ":" + ref.Tag

	s := &imageSpec{b: b, entries: map[string]entry{}}
	// files first: a binary that `files` names goes to that image path.
	bySource := map[string]string{}
	for _, kv := range files.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, runtime.Errorf(b, "files: keys must be image paths, not %s", kv[0].Type())
		}
		src, err := source(b, fmt.Sprintf("files[%q]", string(k)), kv[1])
		if err != nil {
			return nil, err
		}
		if err := s.add("files", entry{Path: string(k), Source: src}); err != nil {
			return nil, err
		}
		bySource[src] = string(k)
	}
	for i := 0; i < binaries.Len(); i++ {
		v := binaries.Index(i)
		src, err := source(b, fmt.Sprintf("binaries[%d]", i), v)
		if err != nil {
			return nil, err
		}
		if p, ok := bySource[src]; ok {
			e := s.entries[p]
			if e.Binary {
				return nil, runtime.Errorf(b, "binaries lists %s twice", src)
			}
			e.Binary = true
			s.entries[p] = e
			continue
		}
		dest := src
		if _, isFile := v.(*runtime.File); isFile {
			dest = "/" + path.Base(src)
		}
		if err := s.add("binaries", entry{Path: dest, Source: src, Binary: true}); err != nil {
			return nil, err
		}
		bySource[src] = dest
	}
	texts, err := stringDict(b, "contents", contents)
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(texts)) {
		text := texts[p]
		if err := s.add("contents", entry{Path: p, Content: text, Text: true}); err != nil {
			return nil, err
		}
	}
	links, err := stringDict(b, "symlinks", symlinks)
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(links)) {
		target := links[p]
		if target == "" || strings.ContainsAny(target, "\x00\n") {
			return nil, runtime.Errorf(b, "symlinks[%q]: the target %q is not a path", p, target)
		}
		if err := s.add("symlinks", entry{Path: p, Link: target}); err != nil {
			return nil, err
		}
	}
	switch d := dirs.(type) {
	case *starlark.List:
		ds, err := stringList(b, "dirs", d)
		if err != nil {
			return nil, err
		}
		for _, p := range ds {
			if err := s.add("dirs", entry{Path: p, Dir: dirMode(p)}); err != nil {
				return nil, err
			}
		}
	case *starlark.Dict:
		ds, err := stringDict(b, "dirs", d)
		if err != nil {
			return nil, err
		}
		for _, p := range slices.Sorted(maps.Keys(ds)) {
			mode := ds[p]
			m, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || m > 0o7777 {
				return nil, runtime.Errorf(b, "dirs[%q]: mode %q is not an octal mode such as \"0755\" or \"1777\"", p, mode)
			}
			if err := s.add("dirs", entry{Path: p, Dir: fmt.Sprintf("%04o", m)}); err != nil {
				return nil, err
			}
		}
	default:
		return nil, runtime.Errorf(b, "dirs must be a list of paths or a dict of path: mode, not %s", dirs.Type())
	}
	// Nothing may sit below a symlink: the link would lead it elsewhere.
	paths := slices.Sorted(maps.Keys(s.entries))
	for _, p := range paths {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if e, ok := s.entries[dir]; ok && e.kind() != "dir" && e.kind() != "file" {
				return nil, runtime.Errorf(b, "%s is inside %s, which is a %s", p, dir, e.kind())
			}
		}
	}

	cfg, err := imageConfig(b, entrypoint, cmd, env, workdir, user, ports)
	if err != nil {
		return nil, err
	}
	// The inputs keep each kind apart, so that a plan says which changed.
	var fileList []FileEntry
	contentIn, linkIn, dirIn := map[string]string{}, map[string]string{}, map[string]string{}
	var shown []string
	for _, p := range paths {
		switch e := s.entries[p]; e.kind() {
		case "file":
			fileList = append(fileList, FileEntry{Path: p, Source: e.Source, Binary: e.Binary})
			shown = append(shown, p)
		case "contents":
			contentIn[p] = e.Content
			shown = append(shown, p)
		case "symlink":
			linkIn[p] = e.Link
		default:
			dirIn[p] = e.Dir
		}
	}
	res := &runtime.Resource{Type: "image.build", Name: resName, Provider: "image",
		Inputs: map[string]any{"ref": ref.String(), "repository": ref.Repository, "tag": ref.Tag,
			"endpoint": endpoint, "image": pushed, "files": fileList, "contents": contentIn, "symlinks": linkIn,
			"dirs": dirIn, "config": cfg},
		Deps: runtime.Refs(reg, files, binaries),
		Show: []runtime.Field{{Key: "ref", Value: ref.String()}, {Key: "push", Value: pushed},
			{Key: "files", Value: strings.Join(shown, " ")}},
	}
	if len(cfg.Entrypoint)+len(cfg.Cmd) > 0 {
		res.Show = append(res.Show, runtime.Field{Key: "runs", Value: strings.Join(append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...), " ")})
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"ref":        starlark.String(ref.String()),
		"repository": starlark.String(ref.Repository),
		"tag":        starlark.String(ref.Tag),
		"image":      starlark.String(pushed),
	}), nil
}

// DefaultPath is the PATH of an image whose env does not set one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func imageConfig(b *starlark.Builtin, entrypoint, cmd *starlark.List, env *starlark.Dict, workdir, user string, ports *starlark.List) (*Config, error) {
	var c Config
	var err error
	if c.Entrypoint, err = stringList(b, "entrypoint", entrypoint); err != nil {
		return nil, err
	}
	if c.Cmd, err = stringList(b, "cmd", cmd); err != nil {
		return nil, err
	}
	vars, err := stringDict(b, "env", env)
	if err != nil {
		return nil, err
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = DefaultPath
	}
	for k, v := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, runtime.Errorf(b, "env: %q is not a variable name", k)
		}
		c.Env = append(c.Env, k+"="+v)
	}
	sort.Strings(c.Env)
	if workdir != "" {
		if err := imagePath(b, "workdir", workdir); err != nil {
			return nil, err
		}
	}
	c.WorkingDir, c.User = workdir, user
	if strings.ContainsAny(user, " \t\n\x00") {
		return nil, runtime.Errorf(b, "user %q is not a user name or uid", user)
	}
	for i := 0; i < ports.Len(); i++ {
		var p string
		switch x := ports.Index(i).(type) {
		case starlark.Int:
			p = x.String() + "/tcp"
		case starlark.String:
			p = string(x)
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
		default:
			return nil, runtime.Errorf(b, "ports[%d] must be a port number or a string such as \"53/udp\"", i)
		}
		num, proto, _ := strings.Cut(p, "/")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return nil, runtime.Errorf(b, "ports[%d] %q must be PORT or PORT/tcp, /udp or /sctp with PORT from 1 to 65535", i, p)
		}
		c.Ports = append(c.Ports, p)
	}
	sort.Strings(c.Ports)
	return &c, nil
}
