package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/sdk"
)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// asRoot wraps a shell script so that it runs as root on the node: through
// `sudo -n` (never a password prompt: the nodes' user has passwordless
// sudo, as the post's cloud-init and khw's container nodes give it), or
// directly when khw logs in as root.
func asRoot(user, script string) string {
	if user == "root" {
		return "sh -c " + shellQuote(script)
	}
	return "sudo -n sh -c " + shellQuote(script)
}

// sftpServer starts the node's sftp server program, wherever the
// distribution keeps it (Debian, Red Hat, Arch, Alpine).
const sftpServer = `for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do [ -x "$p" ] && exec "$p"; done; echo "no sftp-server program on this node" >&2; exit 127`

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// result is what a command on a node gave.
type result struct {
	stdout, stderr string
	status         int
}

// output runs a command on the node and returns its output and exit
// status; err is only for a command that could not run (a dropped
// connection, a cancelled context). stdout is kept up to 8 MiB, stderr up
// to 64 KiB.
func (c *conn) output(ctx context.Context, cmd string) (*result, error) {
	return c.outputIn(ctx, cmd, "")
}

// outputIn is output with stdin as the command's input (a script for
// "sh -s": no argument length limit).
func (c *conn) outputIn(ctx context.Context, cmd, stdin string) (*result, error) {
	s, done, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	stdout := &limitedBuffer{max: 8 << 20}
	stderr := &limitedBuffer{max: 64 << 10}
	s.Stdout, s.Stderr = stdout, stderr
	if stdin != "" {
		s.Stdin = strings.NewReader(stdin)
	}
	if err := s.Start(cmd); err != nil {
		return nil, err
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		done()
		return nil, ctx.Err()
	}
	r := &result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.status = ee.ExitStatus()
	default:
		return nil, err
	}
	return r, nil
}

// rootOutput runs script as root on the node (see asRoot).
func (c *conn) rootOutput(ctx context.Context, script string) (*result, error) {
	return c.output(ctx, asRoot(c.key.user, script))
}

// script runs a shell script on the node, as root when root is set, and
// fails (with what) when it exits with a status other than 0.
func (c *conn) script(ctx context.Context, root bool, what, script string) (*result, error) {
	cmd := "sh -c " + shellQuote(script)
	if root {
		cmd = asRoot(c.key.user, script)
	}
	r, err := c.output(ctx, cmd)
	if err == nil && r.status != 0 {
		err = rootFailure(what, r.stderr)
	}
	return r, err
}

// quoteAll quotes each of names for the shell, space-separated.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = shellQuote(n)
	}
	return strings.Join(q, " ")
}

// decodePrior reads a resource's recorded outputs into v; none is fine.
func decodePrior(addr string, raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: recorded outputs: %v", addr, err)
	}
	return nil
}

// rootFailure is the error of a root command (what) that failed with
// stderr; when sudo refused it, the hint says what the node needs.
func rootFailure(what, stderr string) error {
	msg := strings.TrimSpace(stderr)
	err := fmt.Errorf("%s: %s", what, msg)
	if strings.HasPrefix(msg, "sudo:") {
		return sdk.WithHint(err, "khw needs passwordless sudo for the login user on the node to place files outside its home and run services")
	}
	return err
}

// rootSFTPPipe starts the sftp server as root over a session (sudo -n),
// for files outside the login user's home. stderr says why when sudo
// refuses.
func rootSFTPPipe(s *ssh.Session, user string) (io.Reader, io.WriteCloser, *limitedBuffer, error) {
	w, err := s.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	errBuf := &limitedBuffer{max: 4096}
	s.Stderr = errBuf
	if err := s.Start(asRoot(user, sftpServer)); err != nil {
		return nil, nil, nil, err
	}
	return r, w, errBuf, nil
}
