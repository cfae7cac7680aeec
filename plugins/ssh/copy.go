package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/sdk"
)

// copyHandler serves node.copy: files from the workdir to a node.
type copyHandler struct{ p *pool }

type copyOutputs struct {
	HostKey string            `json:"host_key"`
	Files   map[string]string `json:"files"`
	Copied  int               `json:"copied"`
}

// connect returns a pooled connection to t's node; release it when done.
func (p *pool) connect(ctx context.Context, t *target, workdir string, deps map[string]json.RawMessage, bound time.Duration) (*conn, error) {
	s, err := signer(t, workdir)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(t, workdir, deps)
	if err != nil {
		return nil, err
	}
	c, err := p.acquire(ctx, t, s, v, bound)
	var ue *unreachableError
	if errors.As(err, &ue) {
		return nil, sdk.WithHint(err, unreachableHint(ue, t, workdir))
	}
	return c, err
}

// unreachableHint is the next step for a node that did not answer: what
// the last attempt says about the node, and the command that tries the
// same by hand.
func unreachableHint(ue *unreachableError, t *target, workdir string) string {
	try := fmt.Sprintf("ssh -i %s", local(workdir, t.Identity))
	if t.Port != defaultPort {
		try += fmt.Sprintf(" -p %d", t.Port)
	}
	try += " " + t.User + "@" + t.Host
	switch {
	case errors.Is(ue.last, syscall.ECONNREFUSED):
		return fmt.Sprintf("check the node: something holds %s but nothing listens on port %d (is sshd running on %s?); try: %s", t.Host, t.Port, t.Node, try)
	case ue.last != nil && strings.Contains(ue.last.Error(), "unable to authenticate"):
		return fmt.Sprintf("check the node: %s does not accept khw's key for %s; authorize %s.pub in its ~%s/.ssh/authorized_keys; try: %s",
			t.Node, t.User, local(workdir, t.Identity), t.User, try)
	}
	return fmt.Sprintf("check the node: is %s up, on the bridge, with sshd running? try: %s; a node still booting needs a longer timeout (--set ssh_timeout=SECONDS in the post's recipe)", t.Node, try)
}

// openSFTP connects to t's node and starts sftp; done releases both. A
// pooled connection can die between two uses (the node restarted sshd,
// a link flapped): starting sftp on it then fails with the connection
// closed, and one fresh connection is tried before giving up. A node that
// refuses the channel is an answer, not a dead connection: no retry.
func (p *pool) openSFTP(ctx context.Context, t *target, workdir string, deps map[string]json.RawMessage, bound time.Duration) (*conn, *sftp.Client, func(), error) {
	for attempt := 0; ; attempt++ {
		cn, err := p.connect(ctx, t, workdir, deps, bound)
		if err != nil {
			return nil, nil, nil, err
		}
		sc, done, err := cn.sftp(ctx)
		if err == nil {
			return cn, sc, func() { done(); p.release(cn) }, nil
		}
		p.release(cn)
		var refused *ssh.OpenChannelError
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		if attempt > 0 || errors.As(err, &refused) {
			return nil, nil, nil, fmt.Errorf("node %s (%s): %v", t.Node, t.addr(), err)
		}
		p.evict(cn)
	}
}

type localSum struct {
	sha  string
	size int64
}

func hashLocal(p string) (localSum, error) {
	f, err := os.Open(p)
	if err != nil {
		return localSum{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return localSum{}, err
	}
	return localSum{sha: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// remoteMode is the permission bits (with setuid, setgid, sticky) of a
// file as the sftp server reports them.
func remoteMode(st os.FileInfo) uint32 {
	if fs, ok := st.Sys().(*sftp.FileStat); ok {
		return fs.Mode & 0o7777
	}
	return uint32(st.Mode().Perm())
}

// remoteState compares a file on the node with what it should be.
type remoteState int

const (
	remoteMissing remoteState = iota
	remoteDiffers
	remoteSame
)

// compareRemote reads p over sftp and hashes it. size < 0 skips the size
// check, mode 0 the mode check.
func compareRemote(ctx context.Context, sc *sftp.Client, p, sha string, size int64, mode uint32) (remoteState, error) {
	st, err := sc.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return remoteMissing, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	if !st.Mode().IsRegular() || (size >= 0 && st.Size() != size) || (mode != 0 && remoteMode(st) != mode) {
		return remoteDiffers, nil
	}
	f, err := sc.Open(p)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("reading %s: %w", p, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != sha {
		return remoteDiffers, nil
	}
	return remoteSame, nil
}

// put writes a file atomically: to a temporary name in the same
// directory, restricted to its mode before any content is written, then
// renamed over the target.
func put(sc *sftp.Client, f copyFile, dir string) (err error) {
	target := path.Join(dir, f.name)
	tmp := path.Join(dir, ".khw-tmp-"+f.name)
	_ = sc.Remove(tmp) // left by an interrupted copy
	w, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			w.Close()
			_ = sc.Remove(tmp)
		}
	}()
	if err := w.Chmod(os.FileMode(f.mode)); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	src, err := os.Open(f.local)
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := w.ReadFrom(src); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	// Again: writing may clear setuid and setgid bits.
	if err := sc.Chmod(tmp, os.FileMode(f.mode)); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := sc.PosixRename(tmp, target); err != nil {
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return fmt.Errorf("renaming %s to %s: %w", tmp, target, err)
		}
		// A server without posix-rename: not atomic, but correct.
		_ = sc.Remove(target)
		if err := sc.Rename(tmp, target); err != nil {
			return fmt.Errorf("renaming %s to %s: %w", tmp, target, err)
		}
	}
	return nil
}

// home returns the directory dest names on the node.
func destDir(sc *sftp.Client, dest string) (string, error) {
	home, err := sc.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the home directory: %w", err)
	}
	return remoteDir(dest, home), nil
}

func (h copyHandler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	if progress == nil {
		progress = func(string) {}
	}
	c, files, err := decodeCopy(&req.Resource, req.Workdir)
	if err != nil {
		return nil, err
	}
	sums := make([]localSum, len(files))
	for i, f := range files {
		if sums[i], err = hashLocal(f.local); err != nil {
			return nil, fmt.Errorf("%s: %v", req.Resource.Address, err)
		}
	}
	cn, sc, done, err := h.p.openSFTP(ctx, &c.target, req.Workdir, req.Deps, c.timeout())
	if err != nil {
		return nil, err
	}
	defer done()
	fail := func(err error) (*sdk.ApplyResponse, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("node %s (%s): %v", c.Node, c.addr(), err)
	}
	dir, err := destDir(sc, c.Dest)
	if err != nil {
		return fail(err)
	}
	if err := sc.MkdirAll(dir); err != nil {
		return fail(fmt.Errorf("creating %s: %w", dir, err))
	}
	out := copyOutputs{HostKey: authorizedKey(cn.hostKey), Files: map[string]string{}}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		state, err := compareRemote(ctx, sc, path.Join(dir, f.name), sums[i].sha, sums[i].size, f.mode)
		if err != nil {
			return fail(err)
		}
		out.Files[f.name] = sums[i].sha
		if state == remoteSame {
			continue
		}
		progress(fmt.Sprintf("copying %s to %s:%s", f.name, c.Node, dir))
		if err := put(sc, f, dir); err != nil {
			return fail(err)
		}
		out.Copied++
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: digest(out.Files)}, nil
}

func (h copyHandler) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	c, files, err := decodeCopy(&req.Resource, req.Workdir)
	if err != nil {
		return nil, err
	}
	var prior copyOutputs
	if len(req.PriorOutputs) > 0 {
		if err := json.Unmarshal(req.PriorOutputs, &prior); err != nil {
			return nil, fmt.Errorf("%s: recorded outputs: %v", req.Resource.Address, err)
		}
	}
	if len(prior.Files) == 0 {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	_, sc, done, err := h.p.openSFTP(ctx, &c.target, req.Workdir, nil, c.bound(shortBound))
	if err != nil {
		return nil, err
	}
	defer done()
	dir, err := destDir(sc, c.Dest)
	if err != nil {
		return nil, fmt.Errorf("node %s (%s): %v", c.Node, c.addr(), err)
	}
	modes := map[string]uint32{}
	for _, f := range files {
		modes[f.name] = f.mode
	}
	names := make([]string, 0, len(prior.Files))
	for n := range prior.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var changed []string
	for _, n := range names {
		state, err := compareRemote(ctx, sc, path.Join(dir, n), prior.Files[n], -1, modes[n])
		if err != nil {
			return nil, fmt.Errorf("node %s (%s): %v", c.Node, c.addr(), err)
		}
		switch state {
		case remoteMissing:
			return &sdk.ReadResponse{Exists: false}, nil
		case remoteDiffers:
			changed = append(changed, n)
		}
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	if len(changed) > 0 {
		resp.Drift = fmt.Sprintf("%s changed on %s", strings.Join(changed, ", "), c.Node)
	}
	return resp, nil
}

func (copyHandler) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	if _, _, err := decodeCopy(&req.Resource, req.Workdir); err != nil {
		return nil, err
	}
	return &sdk.PlanResponse{}, nil
}

// Delete removes the copied files. A node that does not answer within the
// short bound is taken to be gone, and with it the files.
func (h copyHandler) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	c, files, err := decodeCopy(&req.Resource, req.Workdir)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, f := range files {
		names[f.name] = true
	}
	var prior copyOutputs
	if json.Unmarshal(req.PriorOutputs, &prior) == nil {
		for n := range prior.Files {
			names[n] = true
		}
	}
	_, sc, done, err := h.p.openSFTP(ctx, &c.target, req.Workdir, nil, c.bound(shortBound))
	var ue *unreachableError
	if errors.As(err, &ue) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	dir, err := destDir(sc, c.Dest)
	if err != nil {
		return fmt.Errorf("node %s (%s): %v", c.Node, c.addr(), err)
	}
	var errs []error
	for n := range names {
		p := path.Join(dir, n)
		if err := sc.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("node %s (%s): %v", c.Node, c.addr(), err)
	}
	return nil
}
