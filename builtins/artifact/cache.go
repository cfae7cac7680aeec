package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/internal/atomicfile"
)

// ManifestName is the file in a version's directory that lists its files.
// It is written last, inside the temporary directory that is then renamed
// into place: a directory without it is not a cached version.
const ManifestName = "manifest.json"

// Manifest records a cached version: each file's sha256 and size, and how
// it was obtained.
type Manifest struct {
	Project  string              `json:"project"`
	Version  string              `json:"version"`
	Source   string              `json:"source"`
	Obtained string              `json:"obtained"`
	Files    map[string]FileInfo `json:"files"`
}

// FileInfo is one cached file.
type FileInfo struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func readManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestName), err)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("%s lists no files", filepath.Join(dir, ManifestName))
	}
	return &m, nil
}

// statMatches says whether every file of m is in dir at its size (and
// names the first that is not).
func statMatches(dir string, m *Manifest, bins []string) (bool, string) {
	for _, b := range bins {
		f, ok := m.Files[b]
		if !ok {
			return false, b + " is not in the manifest"
		}
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return false, b + " is missing"
		}
		if !st.Mode().IsRegular() || st.Size() != f.Size {
			return false, fmt.Sprintf("%s is %d bytes, the manifest says %d", b, st.Size(), f.Size)
		}
	}
	return true, ""
}

// hashMatches checks every file's sha256 against m.
func hashMatches(dir string, m *Manifest, bins []string) (bool, string) {
	for _, b := range bins {
		sum, _, err := hashFile(filepath.Join(dir, b))
		if err != nil {
			return false, err.Error()
		}
		if sum != m.Files[b].SHA256 {
			return false, b + "'s sha256 is not the manifest's"
		}
	}
	return true, ""
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// lock takes the flock on CACHE/PROJECT/VERSION.lock, waiting (and saying
// so every few seconds) while another khw holds it. The kernel drops it
// when the process dies.
func lock(ctx context.Context, path string, progress func(string)) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	start, said := time.Now(), time.Time{}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Since(said) >= progressEvery {
			said = time.Now()
			progress(fmt.Sprintf("waiting for another khw that holds %s (%s so far)", path,
				time.Since(start).Round(time.Second)))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tmpPrefix names the temporary directories a version is made in, beside
// its final directory: .VERSION.tmp-RANDOM.
func tmpPrefix(version string) string { return "." + version + ".tmp-" }

// removeStale removes the temporary directories a killed khw left for a
// version. The caller holds the version's lock, so no live khw uses them.
func removeStale(projectDir, version string) {
	old, _ := filepath.Glob(filepath.Join(projectDir, tmpPrefix(version)+"*"))
	for _, d := range old {
		_ = os.RemoveAll(d)
	}
}

// install finishes a version made in tmp: each binary 0755, their
// sha256s into the manifest (written last), and tmp renamed to dir.
func install(tmp, dir string, m *Manifest, bins []string) error {
	m.Files = map[string]FileInfo{}
	for _, b := range bins {
		p := filepath.Join(tmp, b)
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("%s was not made: %w", b, err)
		}
		sum, n, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files[b] = FileInfo{SHA256: sum, Size: n}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, ManifestName), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// A directory without a good manifest (an older khw's, a file
	// removed by hand) is replaced whole.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(dir)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// digest identifies a set of files by their sha256s, as the workdir's
// files are.
func digest(files map[string]FileInfo) string {
	o := &workspace.Outputs{Files: map[string]string{}}
	for n, f := range files {
		o.Files[n] = f.SHA256
	}
	return o.Digest()
}

// tail keeps the last lines of a command's output for its error message.
type tail struct {
	lines []string
	max   int
}

func (t *tail) add(line string) {
	line = strings.TrimRight(line, "\r\n")
	if strings.TrimSpace(line) == "" {
		return
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tail) String() string {
	if len(t.lines) == 0 {
		return ""
	}
	return "\n    " + strings.Join(t.lines, "\n    ")
}
