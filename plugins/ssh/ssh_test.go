package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime/pluginhost"
)

// controllerFiles are the files the post copies to each controller.
var controllerFiles = []string{"ca.pem", "ca-key.pem", "kubernetes-key.pem", "kubernetes.pem",
	"service-account-key.pem", "service-account.pem"}

func fileMode(name string) os.FileMode {
	if strings.HasSuffix(name, "-key.pem") {
		return 0o600
	}
	return 0o644
}

// writeFiles makes the files in the workdir with random content.
func (l *lab) writeFiles(names []string) map[string]string {
	sums := map[string]string{}
	for _, n := range names {
		b := make([]byte, 512+len(n)*97)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(l.workdir, n), b, fileMode(n)); err != nil {
			l.t.Fatal(err)
		}
		s := sha256.Sum256(b)
		sums[n] = hex.EncodeToString(s[:])
	}
	return sums
}

func (l *lab) targetConfig(n *labtest.SSHNode, timeout int) map[string]any {
	return map[string]any{"node": n.Name, "host": n.IP, "port": 22, "user": n.User, "identity": "id_ed25519", "timeout_s": timeout}
}

func copyCfg(tc map[string]any, dest string, names []string) map[string]any {
	var files []any
	for _, n := range names {
		files = append(files, map[string]any{"path": n, "mode": fmt.Sprintf("%04o", fileMode(n))})
	}
	c := map[string]any{"dest": dest, "files": files}
	for k, v := range tc {
		c[k] = v
	}
	return c
}

func resource(typ, name string, cfg map[string]any) sdk.Resource {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return sdk.Resource{Type: typ, Name: name, Address: typ + "." + name, Config: b}
}

type progressLog struct {
	mu    sync.Mutex
	lines []string
}

func (p *progressLog) add(s string) {
	p.mu.Lock()
	p.lines = append(p.lines, s)
	p.mu.Unlock()
}

func (p *progressLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

type applied struct {
	resp *sdk.ApplyResponse
	out  copyOutputs
	err  error
	prog *progressLog
}

// applyAll applies one resource per node at once.
func applyAll(ctx context.Context, m *sdk.Mux, reqs map[string]*sdk.ApplyRequest) map[string]*applied {
	res := map[string]*applied{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &applied{prog: &progressLog{}}
			a.resp, a.err = m.Apply(ctx, req, a.prog.add)
			if a.err == nil {
				a.err = json.Unmarshal(a.resp.Outputs, &a.out)
			}
			mu.Lock()
			res[name] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkOnDisk checks the node's copies: content, mode, owner, and that no
// temporary file is left.
func (l *lab) checkOnDisk(t *testing.T, n *labtest.SSHNode, dir string, sums map[string]string) {
	t.Helper()
	for name, sum := range sums {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		if got := fileSum(t, p); got != sum {
			t.Errorf("%s: %s has sha256 %s, want %s", n.Name, name, got, sum)
		}
		if st.Mode().Perm() != fileMode(name) {
			t.Errorf("%s: %s has mode %04o, want %04o", n.Name, name, st.Mode().Perm(), fileMode(name))
		}
		if uid := int(st.Sys().(*syscall.Stat_t).Uid); uid != n.UID {
			t.Errorf("%s: %s is owned by uid %d, want %d", n.Name, name, uid, n.UID)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".khw-tmp-*"))
	if len(left) > 0 {
		t.Errorf("%s: temporary files left: %v", n.Name, left)
	}
}

func sameHostKey(t *testing.T, got, want string) {
	t.Helper()
	g, w := strings.Fields(got), strings.Fields(want)
	if len(g) < 2 || len(w) < 2 || g[0] != w[0] || g[1] != w[1] {
		t.Errorf("host key %q, want %q", got, want)
	}
}

type stamp struct {
	mtime time.Time
	ino   uint64
}

func stamps(t *testing.T, dir string, names []string) map[string]stamp {
	t.Helper()
	m := map[string]stamp{}
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		m[n] = stamp{st.ModTime(), st.Sys().(*syscall.Stat_t).Ino}
	}
	return m
}

func TestLab(t *testing.T) {
	start := time.Now()
	l := newLab(t, map[string]string{"m1": "10.200.1.10", "m2": "10.200.1.11", "m3": "10.200.1.13", "m4": "10.200.1.14"})
	t.Logf("lab %s with 4 nodes up in %v", l.net.Name, time.Since(start).Round(time.Millisecond))
	cnt := newCounter(l.dial)
	p := newPool(cnt.dial, maxConns)
	t.Cleanup(p.close)
	m := newMux(p)
	ctx := context.Background()
	names := []string{"m1", "m2", "m3", "m4"}
	sums := l.writeFiles(controllerFiles)
	knownHosts := filepath.Join(l.workdir, "known_hosts")

	certs := func(n *labtest.SSHNode, prior json.RawMessage) *sdk.ApplyRequest {
		return &sdk.ApplyRequest{Resource: resource("node.copy", n.Name+"-certs", copyCfg(l.targetConfig(n, 20), "~", controllerFiles)),
			PriorOutputs: prior, Workdir: l.workdir}
	}
	recorded := map[string]json.RawMessage{}
	digests := map[string]string{}
	// update applies the certificates again to the named nodes at once,
	// each with the outputs its first apply recorded.
	update := func(names ...string) map[string]*applied {
		reqs := map[string]*sdk.ApplyRequest{}
		for _, name := range names {
			reqs[name] = certs(l.nodes[name], recorded[name])
		}
		return applyAll(ctx, m, reqs)
	}

	ok := t.Run("copy to 4 nodes at once", func(t *testing.T) {
		reqs := map[string]*sdk.ApplyRequest{}
		for _, name := range names {
			reqs[name] = certs(l.nodes[name], nil)
		}
		for name, a := range applyAll(ctx, m, reqs) {
			n := l.nodes[name]
			if a.err != nil {
				t.Fatalf("%s: %v", name, a.err)
			}
			if a.out.Copied != len(controllerFiles) {
				t.Errorf("%s: copied %d, want %d", name, a.out.Copied, len(controllerFiles))
			}
			for f, s := range sums {
				if a.out.Files[f] != s {
					t.Errorf("%s: outputs say %s is %s, want %s", name, f, a.out.Files[f], s)
				}
			}
			if a.resp.Digest != digest(sums) {
				t.Errorf("%s: digest %s, want %s", name, a.resp.Digest, digest(sums))
			}
			sameHostKey(t, a.out.HostKey, n.HostKeyLine())
			if !strings.Contains(a.prog.String(), "copying ca-key.pem to "+name) {
				t.Errorf("%s: progress does not tell of ca-key.pem:\n%s", name, a.prog)
			}
			l.checkOnDisk(t, n, n.Home, sums)
			recorded[name], digests[name] = a.resp.Outputs, a.resp.Digest
		}
		// Trust on first use: every node's key is recorded, once.
		kh, err := os.ReadFile(knownHosts)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			n := l.nodes[name]
			if c := strings.Count(string(kh), n.IP+" "+strings.Join(strings.Fields(n.HostKeyLine())[:2], " ")); c != 1 {
				t.Errorf("known_hosts records %s %d times:\n%s", name, c, kh)
			}
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("second apply copies nothing", func(t *testing.T) {
		before := map[string]map[string]stamp{}
		for _, name := range names {
			before[name] = stamps(t, l.nodes[name].Home, controllerFiles)
		}
		time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtime
		for name, a := range update(names...) {
			if a.err != nil {
				t.Fatalf("%s: %v", name, a.err)
			}
			if a.out.Copied != 0 {
				t.Errorf("%s: copied %d, want 0", name, a.out.Copied)
			}
			if a.resp.Digest != digests[name] {
				t.Errorf("%s: digest changed with nothing copied", name)
			}
			if strings.Contains(a.prog.String(), "copying") {
				t.Errorf("%s: progress tells of copying:\n%s", name, a.prog)
			}
			after := stamps(t, l.nodes[name].Home, controllerFiles)
			for f, s := range before[name] {
				if after[f] != s {
					t.Errorf("%s: %s was rewritten (%v -> %v)", name, f, s, after[f])
				}
			}
		}
		// One connection per node, reused by the second apply.
		for _, name := range names {
			if d, _, _ := cnt.stats(l.nodes[name].IP + ":22"); d != 1 {
				t.Errorf("%s: %d connections made, want 1", name, d)
			}
		}
	})

	t.Run("read reports drift and deletion", func(t *testing.T) {
		read := func(name string) *sdk.ReadResponse {
			t.Helper()
			resp, err := m.Read(ctx, &sdk.ReadRequest{Resource: certs(l.nodes[name], nil).Resource,
				PriorOutputs: recorded[name], Workdir: l.workdir})
			if err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			return resp
		}
		for _, name := range names {
			if r := read(name); !r.Exists || r.Drift != "" {
				t.Errorf("%s untouched: exists %v, drift %q", name, r.Exists, r.Drift)
			}
		}
		m2, m3, m4 := l.nodes["m2"], l.nodes["m3"], l.nodes["m4"]
		if err := os.WriteFile(filepath.Join(m2.Home, "ca.pem"), []byte("tampered\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(m3.Home, "ca-key.pem"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(m4.Home, "kubernetes.pem")); err != nil {
			t.Fatal(err)
		}
		if r := read("m2"); !r.Exists || r.Drift != "ca.pem changed on m2" {
			t.Errorf("m2 with ca.pem changed: exists %v, drift %q", r.Exists, r.Drift)
		}
		if r := read("m3"); !r.Exists || r.Drift != "ca-key.pem changed on m3" {
			t.Errorf("m3 with ca-key.pem at 0644: exists %v, drift %q", r.Exists, r.Drift)
		}
		if r := read("m4"); r.Exists {
			t.Errorf("m4 with kubernetes.pem deleted: exists %v, drift %q", r.Exists, r.Drift)
		}
		// ReadMany finds the same with one command per node, however many
		// resources the node holds: here m1 has three (two copies and a
		// command), the others one.
		var many []*sdk.ReadRequest
		for _, name := range names {
			many = append(many, &sdk.ReadRequest{Resource: certs(l.nodes[name], nil).Resource, PriorOutputs: recorded[name], Workdir: l.workdir})
		}
		again := certs(l.nodes["m1"], nil).Resource
		again.Name, again.Address = "m1-certs-again", "node.copy.m1-certs-again"
		many = append(many, &sdk.ReadRequest{Resource: again, PriorOutputs: recorded["m1"], Workdir: l.workdir})
		cmd := l.targetConfig(l.nodes["m1"], 20)
		cmd["command"] = "true"
		many = append(many, &sdk.ReadRequest{Resource: resource("node.run", "m1-true", cmd), PriorOutputs: []byte(`{}`), Workdir: l.workdir})
		sessions := map[string]int64{}
		for _, name := range names {
			sessions[name] = p.counter(connKey{host: l.nodes[name].IP, port: 22, user: l.nodes[name].User}).sessions.Load()
		}
		rs, err := newProvider(p).ReadMany(ctx, many)
		if err != nil || len(rs) != len(many) {
			t.Fatalf("ReadMany: %d results, %v", len(rs), err)
		}
		want := []string{"exists", "exists, drift ca.pem changed on m2", "exists, drift ca-key.pem changed on m3", "gone", "exists", "exists"}
		for i, r := range rs {
			got := "gone"
			switch {
			case r.Err != nil:
				got = "error " + r.Err.Error()
			case r.Response.Exists && r.Response.Drift != "":
				got = "exists, drift " + r.Response.Drift
			case r.Response.Exists:
				got = "exists"
			}
			if got != want[i] {
				t.Errorf("ReadMany %s: %s, want %s", many[i].Resource.Address, got, want[i])
			}
		}
		for _, name := range names {
			if d := p.counter(connKey{host: l.nodes[name].IP, port: 22, user: l.nodes[name].User}).sessions.Load() - sessions[name]; d != 1 {
				t.Errorf("ReadMany opened %d sessions on %s, want 1", d, name)
			}
		}
		// Applying again repairs exactly the changed file.
		for name, a := range update("m2", "m3", "m4") {
			if a.err != nil {
				t.Fatalf("%s: %v", name, a.err)
			}
			if a.out.Copied != 1 {
				t.Errorf("%s: repair copied %d files, want 1", name, a.out.Copied)
			}
			l.checkOnDisk(t, l.nodes[name], l.nodes[name].Home, sums)
			if r := read(name); !r.Exists || r.Drift != "" {
				t.Errorf("%s repaired: exists %v, drift %q", name, r.Exists, r.Drift)
			}
		}
	})

	runReq := func(n *labtest.SSHNode, name, command string, deps map[string]json.RawMessage) *sdk.ApplyRequest {
		cfg := l.targetConfig(n, 20)
		cfg["command"] = command
		return &sdk.ApplyRequest{Resource: resource("node.run", name, cfg), Deps: deps, Workdir: l.workdir}
	}

	t.Run("a connection dropped under a read is dialled again", func(t *testing.T) {
		n := l.nodes["m1"]
		tg := &target{Node: "m1", Host: n.IP, Port: 22, User: n.User, Identity: "id_ed25519", TimeoutS: 20}
		calls := 0
		var first error
		err := p.withConn(ctx, tg, l.workdir, 10*time.Second, func(cn *conn) error {
			calls++
			if calls == 1 {
				cn.client.Close() // as a node's sshd or the network would
			}
			_, err := cn.output(ctx, "true")
			if calls == 1 {
				first = err
			}
			return err
		})
		if err != nil || calls != 2 {
			t.Fatalf("after a dropped connection (%v): %d calls, %v", first, calls, err)
		}
		// The node's sshd ends under a running command (as when it
		// restarts on a VM that has just booted): the command has no exit
		// status, and is run again on a new connection.
		calls, first = 0, nil
		err = p.withConn(ctx, tg, l.workdir, 10*time.Second, func(cn *conn) error {
			calls++
			cmd := "true"
			if calls == 1 {
				cmd = "kill -9 $PPID; sleep 5"
			}
			_, err := cn.output(ctx, cmd)
			if calls == 1 {
				first = err
			}
			return err
		})
		if err != nil || calls != 2 || !dead(first) {
			t.Fatalf("after sshd ended under a command (%v): %d calls, %v", first, calls, err)
		}
		calls = 0
		err = p.withConn(ctx, tg, l.workdir, 10*time.Second, func(cn *conn) error {
			calls++
			return errors.New("the command failed")
		})
		if err == nil || calls != 1 {
			t.Errorf("a failed command was tried %d times (%v); want once", calls, err)
		}
	})

	t.Run("node.run", func(t *testing.T) {
		n := l.nodes["m1"]
		prog := &progressLog{}
		resp, err := m.Apply(ctx, runReq(n, "whoami", `id -un > ~/whoami.txt; echo done`, nil), prog.add)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(n.Home, "whoami.txt")); strings.TrimSpace(string(got)) != n.User {
			t.Errorf("the command ran as %q, want %q", got, n.User)
		}
		var out runOutputs
		if err := json.Unmarshal(resp.Outputs, &out); err != nil || out.ExitStatus != 0 || out.RanAt == "" {
			t.Errorf("outputs %s (%v)", resp.Outputs, err)
		}
		sameHostKey(t, out.HostKey, n.HostKeyLine())
		if !strings.Contains(prog.String(), "running on m1") {
			t.Errorf("progress: %s", prog)
		}

		_, err = m.Apply(ctx, runReq(n, "fails", `i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line$i; done; echo oops >&2; exit 3`, nil), nil)
		if err == nil {
			t.Fatal("a command that exits 3 succeeded")
		}
		msg := err.Error()
		// stdout and stderr are separate streams over ssh: their lines may
		// interleave, but the end of both is there.
		_, output, _ := strings.Cut(msg, "of its output:\n")
		for _, want := range []string{"line62\n", "line100", "oops"} {
			if !strings.Contains(output, want) {
				t.Errorf("output in the error does not contain %q:\n%s", want, msg)
			}
		}
		if !strings.Contains(msg, "node m1: ") || !strings.Contains(msg, "exited with status 3") {
			t.Errorf("error: %s", msg)
		}
		if strings.Contains(msg, "line60\n") {
			t.Errorf("error shows more than the last 40 lines:\n%s", msg)
		}
	})

	t.Run("many commands share one connection", func(t *testing.T) {
		n := l.nodes["m2"]
		dials, _, _ := cnt.stats(n.IP + ":22")
		// More than OpenSSH's 10 sessions per connection at once.
		var wg sync.WaitGroup
		errs := make([]error, 14)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = m.Apply(ctx, runReq(n, fmt.Sprintf("r%d", i), fmt.Sprintf("sleep 0.3; echo %d > ~/run-%d", i, i), nil), nil)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("run %d: %v", i, err)
			}
			if _, err := os.Stat(filepath.Join(n.Home, fmt.Sprintf("run-%d", i))); err != nil {
				t.Errorf("run %d: %v", i, err)
			}
		}
		if d, _, _ := cnt.stats(n.IP + ":22"); d != dials {
			t.Errorf("%d new connections to m2, want none", d-dials)
		}
	})

	// The cluster copies 9 file sets to one worker at once: more than a
	// connection's sessions. A copy must never hold its sftp session while
	// it waits for another (a deadlock seen with the whole post).
	t.Run("many copies to one node at once", func(t *testing.T) {
		n := l.nodes["m3"]
		reqs := map[string]*sdk.ApplyRequest{}
		for i := range 2 * sessionsPerConn {
			name := fmt.Sprintf("set%d", i)
			reqs[name] = &sdk.ApplyRequest{Resource: resource("node.copy", name, copyCfg(l.targetConfig(n, 20), "~/"+name, controllerFiles)),
				Workdir: l.workdir}
		}
		done := make(chan map[string]*applied, 1)
		go func() { done <- applyAll(ctx, m, reqs) }()
		select {
		case res := <-done:
			for name, a := range res {
				if a.err != nil || a.out.Copied != len(controllerFiles) {
					t.Errorf("%s: copied %d: %v", name, a.out.Copied, a.err)
				}
				l.checkOnDisk(t, n, filepath.Join(n.Home, name), sums)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("16 copies to one node did not end within a minute")
		}
	})

	t.Run("cancelling stops a command", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		_, err := m.Apply(cctx, runReq(l.nodes["m3"], "sleeps", "sleep 30", nil), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's", err)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("cancelling took %v", d)
		}
		// The command is killed on the node, not left running.
		for i := 0; ; i++ {
			var left []string
			for _, pid := range l.nodes["m3"].NS.PIDs() {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(b), "sleep\x0030") {
					left = append(left, fmt.Sprint(pid))
				}
			}
			if len(left) == 0 {
				break
			}
			if i == 100 {
				t.Errorf("sleep 30 still runs on m3: pids %v", left)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("host key pinned by a dependency", func(t *testing.T) {
		m3, m4 := l.nodes["m3"], l.nodes["m4"]
		wrong := map[string]json.RawMessage{"vm.m3": sdk.Outputs(map[string]any{"ip": m3.IP, "host_key": m4.HostKeyLine()})}
		_, err := m.Apply(ctx, runReq(m3, "pinned-wrong", "true", wrong), nil)
		if err == nil || !strings.Contains(err.Error(), "vm.m3") || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("a host key other than the one vm.m3 reports: err = %v", err)
		}
		right := map[string]json.RawMessage{
			"vm.m3": sdk.Outputs(map[string]any{"ip": m3.IP, "host_key": m3.HostKeyLine()}),
			// Another node's key, from a resource that is not m3: ignored.
			"node.copy.m4-certs": recorded["m4"],
		}
		if _, err := m.Apply(ctx, runReq(m3, "pinned-right", "true", right), nil); err != nil {
			t.Errorf("the host key vm.m3 reports: %v", err)
		}
	})

	t.Run("at most max connections", func(t *testing.T) {
		c2 := newCounter(l.dial)
		small := newPool(c2.dial, 2)
		defer small.close()
		sm := newMux(small)
		reqs := map[string]*sdk.ApplyRequest{}
		for _, name := range names {
			n := l.nodes[name]
			reqs[name] = &sdk.ApplyRequest{Resource: resource("node.copy", name+"-deep", copyCfg(l.targetConfig(n, 20), "~/sub/dir", controllerFiles)),
				Workdir: l.workdir}
		}
		for name, a := range applyAll(ctx, sm, reqs) {
			if a.err != nil {
				t.Fatalf("%s: %v", name, a.err)
			}
			if a.out.Copied != len(controllerFiles) {
				t.Errorf("%s: copied %d", name, a.out.Copied)
			}
			l.checkOnDisk(t, l.nodes[name], filepath.Join(l.nodes[name].Home, "sub", "dir"), sums)
		}
		if _, _, mx := c2.stats(""); mx > 2 {
			t.Errorf("%d connections open at once, want at most 2", mx)
		}
		small.close()
		if _, open, _ := c2.stats(""); open != 0 {
			t.Errorf("%d connections open after close", open)
		}

		// Delete removes the files, and again finds nothing to do.
		n := l.nodes["m4"]
		del := &sdk.DeleteRequest{Resource: reqs["m4"].Resource, Workdir: l.workdir}
		for i := 0; i < 2; i++ {
			if err := m.Delete(ctx, del); err != nil {
				t.Fatalf("delete #%d: %v", i+1, err)
			}
		}
		left, _ := os.ReadDir(filepath.Join(n.Home, "sub", "dir"))
		if len(left) != 0 {
			t.Errorf("left after delete: %v", left)
		}
	})

	t.Run("unreachable node", func(t *testing.T) {
		defer func(b time.Duration) { shortBound = b }(shortBound)
		shortBound = 2 * time.Second
		ghost := &labtest.SSHNode{Name: "m9", IP: "10.200.1.99"}
		tc := func(user string, timeout int) map[string]any {
			c := l.targetConfig(ghost, timeout)
			c["user"] = user // a connection of its own, dialled at the same time
			return c
		}
		var wg sync.WaitGroup
		var applyErr, readErr, deleteErr error
		var applyTook, readTook, deleteTook time.Duration
		wg.Add(3)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			_, applyErr = m.Apply(ctx, &sdk.ApplyRequest{Resource: resource("node.copy", "m9-certs", copyCfg(tc("a", 3), "~", controllerFiles)),
				Workdir: l.workdir}, nil)
			applyTook = time.Since(t0)
		}()
		go func() {
			defer wg.Done()
			t0 := time.Now()
			_, readErr = m.Read(ctx, &sdk.ReadRequest{Resource: resource("node.copy", "m9-certs", copyCfg(tc("r", 300), "~", controllerFiles)),
				PriorOutputs: recorded["m1"], Workdir: l.workdir})
			readTook = time.Since(t0)
		}()
		go func() {
			defer wg.Done()
			t0 := time.Now()
			deleteErr = m.Delete(ctx, &sdk.DeleteRequest{Resource: resource("node.copy", "m9-certs", copyCfg(tc("d", 300), "~", controllerFiles)),
				PriorOutputs: recorded["m1"], Workdir: l.workdir})
			deleteTook = time.Since(t0)
		}()
		wg.Wait()
		if applyErr == nil || !strings.Contains(applyErr.Error(), "node m9 (10.200.1.99:22) did not answer ssh within 3s: ") ||
			!strings.HasPrefix(sdk.HintOf(applyErr), "check the node: is m9 up") {
			t.Errorf("apply: %v (hint %q)", applyErr, sdk.HintOf(applyErr))
		}
		if applyTook < 2500*time.Millisecond || applyTook > 8*time.Second {
			t.Errorf("apply gave up after %v, want about 3s", applyTook)
		}
		if readErr == nil || !strings.Contains(readErr.Error(), "node m9 (10.200.1.99:22) did not answer ssh within 2s") {
			t.Errorf("read: %v", readErr)
		}
		if readTook > 6*time.Second {
			t.Errorf("read gave up after %v, not the short bound", readTook)
		}
		if deleteErr != nil || deleteTook > 6*time.Second {
			t.Errorf("delete of a gone node: %v after %v, want nil soon", deleteErr, deleteTook)
		}
		t.Logf("apply %v: %v", applyTook.Round(time.Millisecond), applyErr)

		// Cancelling ends the retrying at once.
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(300*time.Millisecond, cancel)
		t0 := time.Now()
		_, err := m.Apply(cctx, &sdk.ApplyRequest{Resource: resource("node.copy", "m9-certs", copyCfg(tc("c", 60), "~", controllerFiles)),
			Workdir: l.workdir}, nil)
		if !errors.Is(err, context.Canceled) || time.Since(t0) > 3*time.Second {
			t.Errorf("cancelled apply: %v after %v", err, time.Since(t0))
		}
	})

	t.Run("changed host key is refused", func(t *testing.T) {
		m1 := l.nodes["m1"]
		old := m1.HostKeyLine()
		line := 0
		kh, _ := os.ReadFile(knownHosts)
		for i, l := range strings.Split(string(kh), "\n") {
			if strings.HasPrefix(l, "10.200.1.10 ") {
				line = i + 1
			}
		}
		m1.NewHostKey()
		m1.Restart() // rebuilt: new key, and the pooled connection is dead
		res := update(names...)
		for _, name := range []string{"m2", "m3", "m4"} {
			if res[name].err != nil {
				t.Errorf("%s: %v", name, res[name].err)
			}
		}
		err := res["m1"].err
		if err == nil {
			t.Fatal("m1 with a changed host key was accepted")
		}
		for _, want := range []string{"node m1 (10.200.1.10:22)", knownHosts, "rebuilt", fmt.Sprintf("remove line %d for 10.200.1.10", line), "ssh-keygen -R '10.200.1.10'"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not contain %q:\n%v", want, err)
			}
		}
		t.Logf("m1: %v", err)
		if kh, _ := os.ReadFile(knownHosts); !strings.Contains(string(kh), strings.Fields(old)[1]) {
			t.Errorf("known_hosts lost m1's recorded key")
		}

		// Doing what the error says lets khw trust the new key.
		labtest.Run(t, "ssh-keygen", "-R", "10.200.1.10", "-f", knownHosts)
		a := update("m1")["m1"]
		if a.err != nil {
			t.Fatal(a.err)
		}
		sameHostKey(t, a.out.HostKey, m1.HostKeyLine())
		if a.out.Copied != 0 {
			t.Errorf("copied %d files to m1, whose files did not change", a.out.Copied)
		}
	})

	t.Run("plugin binary", func(t *testing.T) { testBinary(t, l) })
	t.Logf("lab tests took %v", time.Since(start).Round(time.Millisecond))
}

// testBinary builds khw-plugin-ssh and drives it as khw does, through
// pluginhost, started inside the lab namespace with khw's per-plugin
// command prefix.
func testBinary(t *testing.T, l *lab) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir := t.TempDir()
	if out, err := exec.Command(goTool, "build", "-o", filepath.Join(dir, pluginhost.BinaryPrefix+"ssh"), ".").CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	t.Setenv(pluginhost.PrefixEnv+"SSH", "ip netns exec "+l.net.Name)
	h := pluginhost.New(nil)
	h.SearchPath = []string{dir}
	defer h.Close()
	ctx := context.Background()
	sc, err := h.Describe(ctx, "ssh")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ti := range sc.Types {
		types = append(types, ti.Type)
	}
	sort.Strings(types)
	if sc.Version != version.String() || strings.Join(types, " ") != "node.copy node.run node.service" {
		t.Errorf("describe: %+v", sc)
	}
	prov, err := h.Provider(ctx, "ssh")
	if err != nil {
		t.Fatal(err)
	}
	n := l.nodes["m2"]
	resp, err := prov.Apply(ctx, &sdk.ApplyRequest{Resource: resource("node.copy", "via-plugin", copyCfg(l.targetConfig(n, 20), "~/via-plugin", []string{"ca.pem", "ca-key.pem"})),
		Workdir: l.workdir}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	var out copyOutputs
	if err := json.Unmarshal(resp.Outputs, &out); err != nil || out.Copied != 2 {
		t.Errorf("outputs %s (%v)", resp.Outputs, err)
	}
	l.checkOnDisk(t, n, filepath.Join(n.Home, "via-plugin"), map[string]string{"ca.pem": out.Files["ca.pem"], "ca-key.pem": out.Files["ca-key.pem"]})
	cfg := l.targetConfig(n, 20)
	cfg["command"] = "echo from the plugin; exit 7"
	_, err = prov.Apply(ctx, &sdk.ApplyRequest{Resource: resource("node.run", "via-plugin", cfg), Workdir: l.workdir}, func(string) {})
	if err == nil || !strings.Contains(err.Error(), "exited with status 7") || !strings.Contains(err.Error(), "from the plugin") {
		t.Errorf("failing command through the plugin: %v", err)
	}
}
