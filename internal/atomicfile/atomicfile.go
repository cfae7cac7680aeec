// Package atomicfile is khw's one way to replace a file: a reader, or a run
// killed half-way, sees the old file or the new one, never a part. It is
// github.com/google/renameio (a temporary file in the same directory,
// fsync, rename) plus what khw needs around it: the exact mode whatever
// the umask, the directory synced so that the rename survives a power
// cut, a symlink kept, a file that cannot be renamed over (a bind mount)
// rewritten in place, and the temporary files of a killed writer found
// again. It is a leaf: plugins use it without linking the engine.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/google/renameio/v2"
)

// WriteFile replaces path with data, mode perm exactly. When path is a
// symlink, the file it points to is replaced and the link stays (NixOS and
// some containers link /etc/hosts).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	target, err := resolve(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	// The temporary file beside the target, never in $TMPDIR (renameio's
	// choice when that is on the same file system): RemoveStale finds it
	// there, and a key is never written outside its workdir.
	f, err := renameio.NewPendingFile(target, renameio.WithTempDir(dir),
		renameio.WithPermissions(perm), renameio.WithStaticPermissions(perm))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return syncDir(dir)
}

// WriteFileOrInPlace is WriteFile, except that a file that cannot be
// renamed over, because it is a mount point (a container's /etc/hosts is
// bind-mounted), is rewritten in place: not atomic, the one thing left.
func WriteFileOrInPlace(path string, data []byte, perm os.FileMode) error {
	err := WriteFile(path, data, perm)
	if err == nil || !(errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EXDEV)) {
		return err
	}
	target, rerr := resolve(path)
	if rerr != nil {
		return rerr
	}
	return os.WriteFile(target, data, perm)
}

// resolve follows path's symlinks, if it is one; a path that does not
// exist yet, or is a plain file, is itself.
func resolve(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return path, nil
	}
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) {
		// A dangling link: write where it points.
		link, lerr := os.Readlink(path)
		if lerr != nil {
			return "", lerr
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(path), link)
		}
		return link, nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return target, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems refuse fsync on a directory; the rename is done.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// renameio names its temporary file "." + the file's name + a random
// non-negative int64 in decimal.
var tempPattern = regexp.MustCompile(`^\..+[0-9]{12,}$`)

// RemoveStale deletes, in each directory, the temporary files a writer
// killed between writing and renaming left behind. Call it only where no
// other writer can be at work (khw holds the workdir's lock).
func RemoveStale(dirs ...string) {
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Type().IsRegular() && tempPattern.MatchString(e.Name()) {
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
	}
}
