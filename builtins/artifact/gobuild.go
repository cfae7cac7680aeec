package artifact

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// goTool is the go command: `go` on PATH, else /usr/local/go/bin/go.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", sdk.WithHint(errors.New("no Go toolchain: go is not on PATH and /usr/local/go/bin/go does not exist"),
		"install Go (https://go.dev/dl) or put it on PATH; or use source = \"download\"")
}

// goEnv is the environment of go commands: the user's (GOPROXY,
// GOCACHE, GOMODCACHE ... are kept), with modules resolved as needed, the
// local toolchain only, no workspace, and linux/amd64.
func goEnv(cgo bool) []string {
	flags := strings.TrimSpace(os.Getenv("GOFLAGS") + " -mod=mod")
	c := "0"
	if cgo {
		c = "1"
	}
	return append(os.Environ(), "GOFLAGS="+flags, "GOTOOLCHAIN=local", "GOWORK=off",
		"GOOS=linux", "GOARCH=amd64", "CGO_ENABLED="+c)
}

// command runs a program in dir, stopped with its process group when ctx
// ends. Each line of its output goes to each (when not nil), which says
// whether it was progress; the other lines' tail ends the error, which
// names the command as what (or its command line).
func command(ctx context.Context, what, dir string, env []string, each func(string) bool, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	t := &tail{max: 15}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if each != nil && each(line) {
				continue
			}
			t.add(line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		if what == "" {
			what = filepath.Base(name) + " " + strings.Join(args, " ")
		}
		return fmt.Errorf("%s: %v%s", what, err, t)
	}
	return nil
}

// buildProgress turns `go build -v` output into progress lines: module
// downloads and compiled packages, at most one line every progressEvery.
type buildProgress struct {
	what       string
	progress   sdk.Progress
	downloads  int
	compiled   int
	last       string
	lastReport time.Time
}

var pkgLine = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.~+/-]*$`)

// line reads one line of go's output; it returns true when the line was
// progress (not worth keeping for an error).
func (b *buildProgress) line(l string) bool {
	switch {
	case strings.HasPrefix(l, "go: downloading "):
		b.downloads++
		b.last = strings.TrimPrefix(l, "go: downloading ")
	case pkgLine.MatchString(l):
		b.compiled++
		b.last = l
	default:
		return false
	}
	if time.Since(b.lastReport) >= progressEvery {
		b.lastReport = time.Now()
		b.progress(b.String())
	}
	return true
}

func (b *buildProgress) String() string {
	s := b.what + ": "
	if b.downloads > 0 {
		s += fmt.Sprintf("downloaded %d modules, ", b.downloads)
	}
	return s + fmt.Sprintf("compiled %d packages, last %s", b.compiled, b.last)
}

// modInfo is what `go mod download -json` says of a module.
type modInfo struct {
	Path, Version, Error, Dir, GoMod, Sum string
}

// downloadModule fetches one module version into the module cache.
func downloadModule(ctx context.Context, gobin, dir, mod, version string) (*modInfo, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", mod+"@"+version)
	cmd.Dir, cmd.Env, cmd.Stdout = dir, goEnv(false), &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var info modInfo
	if jerr := json.Unmarshal(out.Bytes(), &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		return nil, proxyHint(fmt.Errorf("go mod download %s@%s: %s", mod, version, info.Error))
	}
	if err != nil {
		return nil, proxyHint(fmt.Errorf("go mod download %s@%s: %v: %s", mod, version, err, strings.TrimSpace(stderr.String())))
	}
	return &info, nil
}

// fetchFailed matches go's words for a module it could not fetch.
var fetchFailed = regexp.MustCompile(`GOPROXY|proxy|dial tcp|no such host|[45][0-9][0-9] [A-Z][a-z]+|finding module|missing go.sum entry|verifying module`)

func proxyHint(err error) error {
	return sdk.WithHint(err, "the Go module proxy must serve the module (go env GOPROXY; offline machines need a "+
		"reachable proxy or a filled GOMODCACHE); or use source = \"download\" where the internet is reachable")
}

// localReplaces lists the modules a go.mod replaces with local directories
// (`k8s.io/api => ./staging/src/k8s.io/api`), read with `go mod edit -json`.
func localReplaces(ctx context.Context, gobin, gomod string) ([]string, error) {
	out, err := exec.CommandContext(ctx, gobin, "mod", "edit", "-json", gomod).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod edit -json %s: %w", gomod, err)
	}
	var f struct {
		Replace []struct {
			Old struct{ Path string }
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, err
	}
	var mods []string
	for _, r := range f.Replace {
		if r.New.Version == "" && strings.HasPrefix(r.New.Path, "./") {
			mods = append(mods, r.Old.Path)
		}
	}
	return mods, nil
}

// wrapperGoMod is the go.mod of the module that builds a project: it
// requires the project's modules at the version and replaces what they
// replace with local directories.
func wrapperGoMod(project, goVersion string, require map[string]string, replace map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "module khw.local/artifact/%s\n\ngo %s\n\nrequire (\n", project, goVersion)
	for _, m := range sortedKeys(require) {
		fmt.Fprintf(&b, "\t%s %s\n", m, require[m])
	}
	b.WriteString(")\n")
	if len(replace) > 0 {
		b.WriteString("\nreplace (\n")
		for _, m := range sortedKeys(replace) {
			fmt.Fprintf(&b, "\t%s => %s\n", m, replace[m])
		}
		b.WriteString(")\n")
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// toolchainVersion is the go command's version, e.g. 1.26.8.
func toolchainVersion(ctx context.Context, gobin string) (string, error) {
	cmd := exec.CommandContext(ctx, gobin, "env", "GOVERSION")
	cmd.Env = goEnv(false)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "go"), nil
}

// goBuild builds spec's binaries at version into out: a wrapper module,
// then one go build of every package.
func goBuild(ctx context.Context, spec *Spec, version, out string, progress sdk.Progress) (string, error) {
	gb := spec.Build
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	gov, err := toolchainVersion(ctx, gobin)
	if err != nil {
		return "", err
	}
	work := filepath.Join(out, ".build")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	require := map[string]string{gb.Module: version}
	for _, m := range gb.Require {
		require[m] = version
	}
	replace := map[string]string{}
	for k, v := range gb.Replace {
		replace[k] = v
	}
	how := fmt.Sprintf("go build -trimpath of %s@%s with go%s", gb.Module, version, gov)
	if _, local := gb.Replace[gb.Module]; !local && (gb.Staging != nil || len(spec.Compiled) > 0) {
		progress(fmt.Sprintf("downloading %s@%s", gb.Module, version))
		info, err := downloadModule(ctx, gobin, work, gb.Module, version)
		if err != nil {
			return "", err
		}
		how += " (" + info.Sum + ")"
		if gb.Staging != nil {
			mods, err := localReplaces(ctx, gobin, info.GoMod)
			if err != nil {
				return "", err
			}
			for _, m := range mods {
				replace[m] = m + " " + gb.Staging(version)
			}
		}
	}
	gomod := wrapperGoMod(spec.Project, gov, require, replace)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", err
	}
	ldflags := "-s -w"
	if gb.LDFlags != nil {
		for _, x := range gb.LDFlags(version) {
			ldflags += " -X " + x
		}
	}
	if gb.CGO {
		ldflags += ` -extldflags "-static"`
	}
	bin := filepath.Join(work, "bin")
	args := []string{"build", "-trimpath", "-v", "-ldflags", ldflags, "-o", bin + "/"}
	for _, p := range gb.Packages {
		args = append(args, p.Path)
	}
	bp := &buildProgress{what: spec.Project + " " + version, progress: progress, lastReport: time.Now()}
	progress(fmt.Sprintf("go build of %d packages of %s@%s", len(gb.Packages), gb.Module, version))
	what := fmt.Sprintf("go build of %s@%s (%d packages)", gb.Module, version, len(gb.Packages))
	if err := command(ctx, what, work, goEnv(gb.CGO), bp.line, gobin, args...); err != nil {
		if fetchFailed.MatchString(err.Error()) {
			return "", proxyHint(err)
		}
		return "", err
	}
	for _, p := range gb.Packages {
		if err := os.Rename(filepath.Join(bin, goBinName(p.Path)), filepath.Join(out, p.Bin)); err != nil {
			return "", fmt.Errorf("go build made no %s: %w", p.Bin, err)
		}
	}
	return how, nil
}

var majorSuffix = regexp.MustCompile(`^v[0-9]+$`)

// goBinName is the file go build names a main package's binary: its last
// path element, or the one before a major version suffix (server/v3).
func goBinName(pkg string) string {
	parts := strings.Split(pkg, "/")
	if n := len(parts); n > 1 && majorSuffix.MatchString(parts[n-1]) {
		return parts[n-2]
	}
	return parts[len(parts)-1]
}

// compileC compiles spec's C programs from the module's source with gcc.
func compileC(ctx context.Context, spec *Spec, version, out string, progress sdk.Progress) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	src := spec.Build.Replace[spec.Build.Module]
	if src == "" {
		info, err := downloadModule(ctx, gobin, out, spec.Build.Module, version)
		if err != nil {
			return "", err
		}
		src = info.Dir
	}
	var hows []string
	for _, c := range spec.Compiled {
		progress(fmt.Sprintf("gcc %s", c.Src))
		args := append(append([]string(nil), c.Flags...), "-o", filepath.Join(out, c.Bin), filepath.Join(src, c.Src))
		if err := command(ctx, "gcc "+c.Src, out, os.Environ(), nil, "gcc", args...); err != nil {
			return "", sdk.WithHint(err, "gcc and a static C library are needed (apt-get install gcc libc6-dev)")
		}
		hows = append(hows, "gcc "+strings.Join(c.Flags, " ")+" "+c.Src)
	}
	return strings.Join(hows, "; "), nil
}
