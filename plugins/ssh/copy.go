package main

import (
	"bytes"
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
	"strconv"
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
	Files   map[string]string `json:"files"` // name -> sha256
	// Stats are the files' stat keys on the node when last seen (see
	// remoteFile.stat), so that a read-back hashes only what changed.
	Stats  map[string]string `json:"stats,omitempty"`
	Copied int               `json:"copied"`
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

// openSFTP connects to t's node and starts sftp (as root with root); done
// releases both. A pooled connection can die between two uses (the node
// restarted sshd, a link flapped): starting sftp on it then fails with the
// connection closed, and one fresh connection is tried before giving up. A
// node that refuses the channel is an answer, not a dead connection: no
// retry.
func (p *pool) openSFTP(ctx context.Context, t *target, workdir string, deps map[string]json.RawMessage, bound time.Duration, root bool) (*conn, *sftp.Client, func(), error) {
	for attempt := 0; ; attempt++ {
		cn, err := p.connect(ctx, t, workdir, deps, bound)
		if err != nil {
			return nil, nil, nil, err
		}
		sc, done, err := cn.sftp(ctx, root)
		if err == nil {
			return cn, sc, func() { done(); p.release(cn) }, nil
		}
		p.release(cn)
		var refused *ssh.OpenChannelError
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		if attempt > 0 || errors.As(err, &refused) || sdk.HintOf(err) != "" {
			return nil, nil, nil, fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), err)
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

// remoteFile is a file on a node as one command reports it.
type remoteFile struct {
	mode uint32
	size int64
	// stat is "size inode ctime mtime": a file rewritten or edited has
	// another; the same stat as recorded means the recorded sha256 holds.
	stat string
	// sha is the file's sha256, or "" when stat matched the recorded one
	// and the node did not hash it again.
	sha string
}

// listing is what the node holds in a copy's directory.
type listing struct {
	home, dir string
	files     map[string]remoteFile // by base name; missing files are absent
}

// shellDir is dest as the shell on the node names it (see destDir).
func shellDir(dest string) string {
	rel, inHome := destDir(dest)
	switch {
	case !inHome:
		return shellQuote(rel)
	case rel == "":
		return `"$HOME"`
	}
	return `"$HOME"/` + shellQuote(rel)
}

// list asks the node, in one command, for the mode, stat and sha256 of
// each named file in dest. A file whose stat equals known[name] is not
// hashed again: its sha256 is the one recorded with that stat (rsync's
// quick check, with the inode and ctime added, which an edit in place or a
// rename over it always changes).
func list(ctx context.Context, cn *conn, root bool, dest string, names []string, known map[string]string) (*listing, error) {
	r, err := cn.script(ctx, root, "listing "+dest, listScript(dest, names, known))
	if err != nil {
		return nil, err
	}
	return parseListing(dest, r.stdout)
}

// listScript is list's command: statScript over the names, from inside
// dest. Its lines:
//
//	home HOME
//	dir DIR                                  (absent: no such directory)
//	statScript's lines, by base name
func listScript(dest string, names []string, known map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "echo \"home $HOME\"; cd %s 2>/dev/null || exit 0; printf 'dir '; pwd -P\n", shellDir(dest))
	words, knowns := make([]string, len(names)), make([]string, len(names))
	for i, n := range names {
		words[i], knowns[i] = shellQuote(n), known[n]
	}
	statScript(&b, words, knowns, false)
	return b.String()
}

// statScript writes the part of a script that reports the files words
// name (shell words, expanded on the node). It costs a fixed number of
// processes whatever the number of files: one stat for all of them, then
// one sha256sum for those whose stat is not known[i], the one recorded
// (the comparison is the shell's own). Its lines, NAME being the word as
// the shell expanded it:
//
//	= MODE SIZE INODE CTIME MTIME NAME       stat as recorded: not hashed
//	? MODE SIZE INODE CTIME MTIME NAME       hashed below
//	SHA256  NAME                             sha256sum's own line
//
// A name that is not a regular file (missing, a link, a directory) has no
// line. Where two words expand to the same name, the first one's known
// stat decides; parseStats' caller checks the stat it reads against its
// own. Nothing here reads the script's stdin, which may be the script.
//
// With sudo, the script runs as a login user that may not see every file,
// and root is asked only where the user is refused: stat again through
// `sudo -n` when the user's stat did not answer for every file (one is
// missing, or in a directory only root may search), and sha256sum through
// it when a file to hash is not readable by the user. A read-back of a
// node where nothing changed then costs no sudo, whose start on a busy
// emulated guest costs more than the rest of the script; sudo's own
// complaints reach the command's stderr.
func statScript(b *strings.Builder, words, known []string, sudo bool) {
	stat := "stat -c '%F|%a %s %i %Z %Y|%n' -- " + strings.Join(words, " ")
	fmt.Fprintf(b, "l=$(%s 2>/dev/null </dev/null)", stat)
	if sudo {
		fmt.Fprintf(b, " ||\nl=$(sudo -n %s </dev/null)", stat)
	}
	b.WriteString("\nset --\n")
	b.WriteString("while IFS='|' read -r t s n; do\n\tcase $t in regular*) ;; *) continue ;; esac\n\tk=\n\tcase $n in\n")
	for i, w := range words {
		if known[i] != "" {
			fmt.Fprintf(b, "\t%s) k=%s ;;\n", w, shellQuote(known[i]))
		}
	}
	b.WriteString("\tesac\n\tif [ -n \"$k\" ] && [ \"${s#* }\" = \"$k\" ]; then echo \"= $s $n\"; else echo \"? $s $n\"; set -- \"$@\" \"$n\"; fi\n")
	b.WriteString("done <<EOF\n$l\nEOF\n")
	if !sudo {
		b.WriteString("[ $# -eq 0 ] || sha256sum -- \"$@\" </dev/null\n")
		return
	}
	b.WriteString("h=sha256sum\nfor f; do [ -r \"$f\" ] || h='sudo -n sha256sum'; done\n")
	b.WriteString("[ $# -eq 0 ] || $h -- \"$@\" </dev/null\n")
}

// parseListing reads listScript's output.
func parseListing(dest, stdout string) (*listing, error) {
	out := &listing{}
	var rest []string
	for _, line := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "home "):
			out.home = strings.TrimPrefix(line, "home ")
		case strings.HasPrefix(line, "dir "):
			out.dir = strings.TrimPrefix(line, "dir ")
		default:
			rest = append(rest, line)
		}
	}
	files, err := parseStats(rest)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dest, err)
	}
	for n, rf := range files {
		if rf.sha == "?" {
			return nil, fmt.Errorf("listing %s: no sha256 for %s", dest, n)
		}
	}
	out.files = files
	if out.dir == "" {
		out.dir = remoteDir(dest, out.home)
	}
	return out, nil
}

// parseStats reads statScript's lines: every regular file by the name the
// shell gave it. A file listed for hashing whose sha256 did not come (it
// went, or could not be read, in between) has sha "?"; one whose stat was
// the recorded one has sha "".
func parseStats(lines []string) (map[string]remoteFile, error) {
	files := map[string]remoteFile{}
	sums := map[string]string{}
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "= "), strings.HasPrefix(line, "? "):
			f := strings.SplitN(line, " ", 7)
			if len(f) != 7 {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			mode, err1 := strconv.ParseUint(f[1], 8, 32)
			size, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			rf := remoteFile{mode: uint32(mode), size: size, stat: strings.Join(f[2:6], " ")}
			if f[0] == "?" {
				rf.sha = "?" // filled from sha256sum's line below
			}
			files[f[6]] = rf
		case line != "":
			name, sum, ok := sumLine(line)
			if !ok {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			sums[name] = sum
		}
	}
	for n, rf := range files {
		if rf.sha == "?" && sums[n] != "" {
			rf.sha = sums[n]
			files[n] = rf
		}
	}
	return files, nil
}

// sendFiles writes files to dir on t's node over one sftp session, which
// ends when they are written.
func sendFiles(ctx context.Context, p *pool, req *sdk.ApplyRequest, t *target, root bool, dir string, files []copyFile, progress sdk.Progress) error {
	_, sc, done, err := p.openSFTP(ctx, t, req.Workdir, req.Deps, t.timeout(), root)
	if err != nil {
		return err
	}
	defer done()
	if err := sc.MkdirAll(dir); err != nil {
		return fmt.Errorf("node %s (%s): creating %s: %w", t.Node, t.addr(), dir, err)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		progress(fmt.Sprintf("copying %s to %s:%s", f.name, t.Node, dir))
		if err := put(sc, f, dir); err != nil {
			return fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), err)
		}
	}
	return nil
}

// stats asks the node for the stat keys of files just written to dir.
func stats(ctx context.Context, cn *conn, root bool, dir string, names []string) (map[string]string, error) {
	r, err := cn.script(ctx, root, "stat in "+dir, fmt.Sprintf("cd %s && stat -c '%%s %%i %%Z %%Y %%n' -- %s", shellQuote(dir), quoteAll(names)))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
		if f := strings.SplitN(line, " ", 5); len(f) == 5 {
			out[f[4]] = strings.Join(f[:4], " ")
		}
	}
	return out, nil
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
	var src io.Reader
	if f.content != nil {
		src = bytes.NewReader(f.content)
	} else {
		lf, err := os.Open(f.local)
		if err != nil {
			return err
		}
		defer lf.Close()
		src = lf
	}
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
	var prior copyOutputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	out, err := place(ctx, h.p, req, &c.target, c.Dest, c.Root, files, sums, prior, progress)
	if err != nil {
		return nil, err
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: digest(out.Files)}, nil
}

// place puts files (with their local sums) in dest on t's node, sending
// only those whose copy on the node differs, and returns the outputs that
// record them.
func place(ctx context.Context, p *pool, req *sdk.ApplyRequest, t *target, dest string, root bool, files []copyFile, sums []localSum, prior copyOutputs, progress sdk.Progress) (*copyOutputs, error) {
	fail := func(err error) (*copyOutputs, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("node %s (%s): %w", t.Node, t.addr(), err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	known := map[string]string{}
	for n, st := range prior.Stats {
		if sums := prior.Files[n]; sums != "" {
			known[n] = st
		}
	}
	// The listing only reads: when the connection turns out dead (a
	// pooled one the node dropped, or sshd restarting on a VM that has
	// just booted), it is asked once more on a new connection.
	var cn *conn
	var have *listing
	for attempt := 0; ; attempt++ {
		var err error
		if cn, err = p.connect(ctx, t, req.Workdir, req.Deps, t.timeout()); err != nil {
			return nil, err
		}
		have, err = list(ctx, cn, root, dest, names, known)
		if attempt == 0 && dead(err) && ctx.Err() == nil {
			sdk.Logger().Debug("connection dropped while listing; trying again on a new one", "node", t.Node, "error", err)
			p.release(cn)
			p.evict(cn)
			continue
		}
		if err != nil {
			p.release(cn)
			return fail(err)
		}
		break
	}
	defer p.release(cn)
	out := copyOutputs{HostKey: authorizedKey(cn.hostKey), Files: map[string]string{}, Stats: map[string]string{}}
	var send []copyFile
	for i, f := range files {
		out.Files[f.name] = sums[i].sha
		rf, ok := have.files[f.name]
		sha := rf.sha
		if ok && sha == "" {
			sha = prior.Files[f.name]
		}
		if ok && sha == sums[i].sha && rf.mode == f.mode {
			out.Stats[f.name] = rf.stat
			continue
		}
		send = append(send, f)
	}
	if len(send) > 0 {
		if err := sendFiles(ctx, p, req, t, root, have.dir, send, progress); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		out.Copied = len(send)
		sent := make([]string, len(send))
		for i, f := range send {
			sent[i] = f.name
		}
		// After the sftp session has ended: a resource never holds one
		// session while it waits for another, or copies in parallel to
		// one node could take every session of the connection and wait
		// for each other.
		st, err := stats(ctx, cn, root, have.dir, sent)
		if err != nil {
			return fail(err)
		}
		for n, s := range st {
			out.Stats[n] = s
		}
	}
	return &out, nil
}

func (h copyHandler) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return readOne(ctx, h.p, h, req)
}

// probe is a copy's read-back, one command (see readBack): a recorded
// file that is gone means the copy is gone; one whose content or mode
// differs is drift.
func (copyHandler) probe(req *sdk.ReadRequest) (*probe, *sdk.ReadResponse, error) {
	c, files, err := decodeCopy(&req.Resource, req.Workdir)
	if err != nil {
		return nil, nil, err
	}
	var prior copyOutputs
	if err := decodePrior(req.Resource.Address, req.PriorOutputs, &prior); err != nil {
		return nil, nil, err
	}
	if len(prior.Files) == 0 {
		return nil, &sdk.ReadResponse{Exists: false}, nil
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
	asked := make([]probeFile, len(names))
	for i, n := range names {
		asked[i] = fileIn(c.Dest, n, prior.Stats[n])
	}
	return &probe{
		t: &c.target, root: c.Root, files: asked,
		parse: func(r *reading) (*sdk.ReadResponse, error) {
			var changed []string
			for i, n := range names {
				rf := r.files[i]
				if rf == nil {
					return &sdk.ReadResponse{Exists: false}, nil
				}
				if (rf.sha != "" && rf.sha != prior.Files[n]) || (modes[n] != 0 && rf.mode != modes[n]) {
					changed = append(changed, n)
				}
			}
			resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
			if len(changed) > 0 {
				resp.Drift = fmt.Sprintf("%s changed on %s", strings.Join(changed, ", "), c.Node)
			}
			return resp, nil
		},
	}, nil, nil
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
	var paths []string
	for n := range names {
		paths = append(paths, n)
	}
	sort.Strings(paths)
	return remove(ctx, h.p, req, &c.target, c.Dest, c.Root, paths)
}

// remove deletes names from dest on t's node, in one command. A node that
// does not answer within the short bound is taken to be gone.
func remove(ctx context.Context, p *pool, req *sdk.DeleteRequest, t *target, dest string, root bool, names []string) error {
	return removeOnNode(ctx, p, t, req.Workdir, root, "removing files in "+dest,
		fmt.Sprintf("cd %s 2>/dev/null || exit 0; rm -f -- %s", shellDir(dest), quoteAll(names)))
}
