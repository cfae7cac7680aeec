package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// target is the part of the configuration that says how to reach a node;
// node.copy and node.run share it (builtins/node: target.inputs).
type target struct {
	Node     string `json:"node"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Identity string `json:"identity"`
	TimeoutS int    `json:"timeout_s"`
}

const (
	defaultPort    = 22
	defaultTimeout = 300
	maxTimeout     = 3600
)

// shortBound is how long Read and Delete try to reach a node before giving
// up: they must not hold a plan for the whole boot timeout. (A variable
// only so that tests can shorten it.)
var shortBound = 10 * time.Second

func (t *target) normalize(addr string) error {
	if t.Port == 0 {
		t.Port = defaultPort
	}
	if t.TimeoutS == 0 {
		t.TimeoutS = defaultTimeout
	}
	switch {
	case t.Node == "":
		return fmt.Errorf("%s: node is empty", addr)
	case t.Host == "" || strings.ContainsAny(t.Host, " \t\n\x00/"):
		return fmt.Errorf("%s: host %q is not an address", addr, t.Host)
	case t.Port < 1 || t.Port > 65535:
		return fmt.Errorf("%s: port %d is not a port number", addr, t.Port)
	case t.User == "":
		return fmt.Errorf("%s: user is empty", addr)
	case t.Identity == "":
		return fmt.Errorf("%s: identity is empty", addr)
	case t.TimeoutS < 1 || t.TimeoutS > maxTimeout:
		return fmt.Errorf("%s: timeout_s %d must be from 1 to %d seconds", addr, t.TimeoutS, maxTimeout)
	}
	return nil
}

// addr is host:port as dialled and as known_hosts knows it.
func (t *target) addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t *target) timeout() time.Duration { return time.Duration(t.TimeoutS) * time.Second }

// bound is the time to reach the node, capped at max when max > 0.
func (t *target) bound(max time.Duration) time.Duration {
	if d := t.timeout(); max <= 0 || d < max {
		return d
	}
	return max
}

func (t *target) key() connKey { return connKey{host: t.Host, port: t.Port, user: t.User} }

// local resolves a workdir-relative path.
func local(workdir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(workdir, p)
}

type fileSpec struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
}

type copyConfig struct {
	target
	Dest  string     `json:"dest"`
	Files []fileSpec `json:"files"`
	// Root writes the files as root (through sudo -n): dest is outside the
	// login user's home.
	Root bool `json:"root,omitempty"`
}

// copyFile is one file of a node.copy (or of a node.service), resolved.
type copyFile struct {
	name    string // base name on the node
	local   string // absolute path on this machine; or
	content []byte // the file's content, given in the recipe
	mode    uint32 // permission bits
}

func decodeCopy(r *sdk.Resource, workdir string) (*copyConfig, []copyFile, error) {
	var c copyConfig
	if err := r.Decode(&c); err != nil {
		return nil, nil, err
	}
	if err := c.normalize(r.Address); err != nil {
		return nil, nil, err
	}
	if c.Dest == "" {
		c.Dest = "~"
	}
	if strings.ContainsAny(c.Dest, "\n\x00") {
		return nil, nil, fmt.Errorf("%s: dest %q is not a directory path", r.Address, c.Dest)
	}
	if len(c.Files) == 0 {
		return nil, nil, fmt.Errorf("%s: files is empty", r.Address)
	}
	seen := map[string]bool{}
	var files []copyFile
	for i, f := range c.Files {
		if f.Path == "" {
			return nil, nil, fmt.Errorf("%s: files[%d] has no path", r.Address, i)
		}
		name := path.Base(filepath.ToSlash(f.Path))
		if name == "." || name == "/" || name == ".." {
			return nil, nil, fmt.Errorf("%s: files[%d]: %q is not a file name", r.Address, i, f.Path)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("%s: files lists %s twice", r.Address, name)
		}
		seen[name] = true
		mode, err := parseMode(f.Mode)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: files[%d] (%s): %v", r.Address, i, name, err)
		}
		files = append(files, copyFile{name: name, local: local(workdir, f.Path), mode: mode})
	}
	return &c, files, nil
}

func parseMode(s string) (uint32, error) {
	if s == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode such as 0644", s)
	}
	return uint32(m), nil
}

// destDir reads dest: "~" is the login user's home, "~/x" and "x" are x
// under it (inHome, with rel "" for the home itself), and an absolute path
// is itself, cleaned.
func destDir(dest string) (rel string, inHome bool) {
	switch {
	case dest == "~" || dest == "~/":
		return "", true
	case strings.HasPrefix(dest, "~/"):
		return path.Clean(dest[2:]), true
	case path.IsAbs(dest):
		return path.Clean(dest), false
	default:
		return path.Clean(dest), true
	}
}

// remoteDir resolves dest against the login user's home.
func remoteDir(dest, home string) string {
	rel, inHome := destDir(dest)
	if !inHome {
		return rel
	}
	return path.Join(home, rel)
}

// digest is a sha256 over the sorted name=sha256 pairs: it changes only
// when what is on the node changes.
func digest(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

type runConfig struct {
	target
	Command string `json:"command"`
}

func decodeRun(r *sdk.Resource) (*runConfig, error) {
	var c runConfig
	if err := r.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.normalize(r.Address); err != nil {
		return nil, err
	}
	if strings.TrimSpace(c.Command) == "" {
		return nil, fmt.Errorf("%s: command is empty", r.Address)
	}
	return &c, nil
}
