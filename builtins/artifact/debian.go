package artifact

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/khw-dev/khw/plugins/sdk"
)

// aptVersions lists the versions apt can give of a package, newest first
// (apt-cache madison).
func aptVersions(ctx context.Context, pkg string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "madison", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, sdk.WithHint(fmt.Errorf("apt-cache madison %s: %w", pkg, err), "this source needs Debian's apt (apt-get update first)")
	}
	var vs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 2 {
			continue
		}
		v := strings.TrimSpace(f[1])
		if v != "" && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// debian takes spec's binaries out of Debian's packages: the main package
// at version, the others at the newest version apt has.
func debian(ctx context.Context, spec *Spec, version, out string, progress sdk.Progress) (string, error) {
	d := spec.Debian
	have, err := aptVersions(ctx, d.Package)
	if err != nil {
		return "", err
	}
	found := false
	for _, v := range have {
		found = found || v == version
	}
	if !found {
		err := fmt.Errorf("apt has no %s %s: it has %s", d.Package, version, orNone(have))
		return "", sdk.WithHint(err, "set the version to one apt has, or run apt-get update")
	}
	pins := []string{d.Package + "=" + version}
	got := map[string]string{d.Package: version}
	for _, p := range d.Also {
		vs, err := aptVersions(ctx, p)
		if err != nil {
			return "", err
		}
		if len(vs) == 0 {
			return "", sdk.WithHint(fmt.Errorf("apt has no %s", p), "run apt-get update")
		}
		pins = append(pins, p+"="+vs[0])
		got[p] = vs[0]
	}
	work := filepath.Join(out, ".debs")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	// apt's download sandbox user must be able to write there.
	_ = os.Chmod(out, 0o755)
	progress("apt-get download " + strings.Join(pins, " "))
	if err := command(ctx, "", work, os.Environ(), nil, "apt-get", append([]string{"download", "-q"}, pins...)...); err != nil {
		return "", sdk.WithHint(err, "apt-get must reach Debian's mirror (run apt-get update)")
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	root := filepath.Join(work, "root")
	for _, deb := range debs {
		if err := command(ctx, "", work, os.Environ(), nil, "dpkg-deb", "-x", deb, root); err != nil {
			return "", err
		}
	}
	for bin, pkg := range d.Bins {
		p, err := findBin(root, bin)
		if err != nil {
			return "", fmt.Errorf("package %s: %w", pkg, err)
		}
		if err := os.Rename(p, filepath.Join(out, bin)); err != nil {
			return "", err
		}
	}
	var names []string
	for _, p := range append([]string{d.Package}, d.Also...) {
		names = append(names, p+" "+got[p])
	}
	return "Debian packages " + strings.Join(names, ", ") + " (apt-get download, dpkg-deb -x)", nil
}

// findBin finds an executable by name under usr/bin, usr/sbin, bin, sbin.
func findBin(root, name string) (string, error) {
	for _, d := range []string{"usr/bin", "usr/sbin", "bin", "sbin"} {
		p := filepath.Join(root, d, name)
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	var found string
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && found == "" && e.Type().IsRegular() && e.Name() == name {
			found = p
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("holds no %s", name)
	}
	return found, nil
}

func orNone(vs []string) string {
	if len(vs) == 0 {
		return "none (run apt-get update?)"
	}
	return strings.Join(vs, ", ")
}
