// Package workspace writes, checks and removes the files that in-process
// resources produce in the workdir: atomically, with secrets at 0600.
package workspace

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/atomicfile"
	"github.com/khw-dev/khw/runtime"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckName refuses a resource name that names its files in the workdir
// (NAME, NAME.pem, NAME.kubeconfig) unless it is a plain file name: a
// slash or a leading dot could write outside the workdir or hide a file.
func CheckName(b *starlark.Builtin, name string) error {
	if !nameRE.MatchString(name) {
		return runtime.Errorf(b, "name %q must be a file name: letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// Outputs is what a file-producing resource records: each file's SHA-256.
type Outputs struct {
	Files map[string]string `json:"files"`
}

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// File is one file to write.
type File struct {
	Name   string
	Data   []byte
	Secret bool
}

// Write writes each file atomically into workdir (secrets 0600, others
// 0644) and returns the outputs that record them.
func Write(workdir string, files ...File) (*Outputs, error) {
	if err := os.MkdirAll(workdir, 0o700); err != nil {
		return nil, err
	}
	out := &Outputs{Files: map[string]string{}}
	for _, f := range files {
		mode := os.FileMode(0o644)
		if f.Secret {
			mode = 0o600
		}
		if err := atomicfile.WriteFile(filepath.Join(workdir, f.Name), f.Data, mode); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.Name, err)
		}
		out.Files[f.Name] = Sum(f.Data)
	}
	return out, nil
}

// Digest identifies a set of written files.
func (o *Outputs) Digest() string {
	names := make([]string, 0, len(o.Files))
	for n := range o.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, o.Files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Check compares the files recorded in prior outputs with the workdir:
// exists is false when any is missing; drift names a file whose content
// changed.
func Check(workdir string, prior json.RawMessage) (exists bool, drift string, err error) {
	var o Outputs
	if err := json.Unmarshal(prior, &o); err != nil {
		return false, "", fmt.Errorf("recorded outputs unreadable: %w", err)
	}
	names := make([]string, 0, len(o.Files))
	for n := range o.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(workdir, n))
		if errors.Is(err, os.ErrNotExist) {
			return false, "", nil
		}
		if err != nil {
			return false, "", err
		}
		if Sum(data) != o.Files[n] {
			return true, n + " changed on disk", nil
		}
	}
	return true, "", nil
}

// Remove deletes the files recorded in prior outputs; missing ones are fine.
func Remove(workdir string, prior json.RawMessage) error {
	var o Outputs
	if len(prior) > 0 {
		if err := json.Unmarshal(prior, &o); err != nil {
			return err
		}
	}
	for n := range o.Files {
		if err := os.Remove(filepath.Join(workdir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Read reads a workdir file that a dependency produced.
func Read(workdir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(workdir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing from the workdir", name)
	}
	return b, err
}
