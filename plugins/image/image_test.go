package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	kimage "github.com/khw-dev/khw/builtins/image"
	"github.com/khw-dev/khw/plugins/sdk"
)

// These tests push to go-containerregistry's in-memory registry on
// loopback; tests/images pushes to the real distribution registry.

func resource(t *testing.T, endpoint string, files []kimage.FileEntry, contents map[string]string) sdk.Resource {
	t.Helper()
	s := map[string]any{
		"ref": "docker.io/library/tool:latest", "repository": "library/tool", "tag": "latest",
		"endpoint": endpoint, "image": endpoint + "/library/tool:latest",
		"files": files, "contents": contents,
		"symlinks": map[string]string{"/var/log/tool.log": "/dev/stdout"},
		"dirs":     map[string]string{"/tmp": "1777"},
		"config": kimage.Config{Entrypoint: []string{"/bin/ls"}, Cmd: []string{"-l"}, Env: []string{"PATH=" + kimage.DefaultPath},
			WorkingDir: "/tmp", User: "65534", Ports: []string{"80/tcp"}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return sdk.Resource{Type: "image.build", Name: "tool", Address: "image.build.tool", Config: b}
}

func hostTree(t *testing.T) string {
	dir := t.TempDir()
	for p, data := range map[string]string{"conf/a.conf": "a\n", "conf/sub/b.conf": "b\n", "conf/override": "from the host\n"} {
		_ = os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.conf", filepath.Join(dir, "conf", "link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

type layerEntry struct {
	hdr  *tar.Header
	data string
}

func pulled(t *testing.T, ref string) (map[string]layerEntry, []string, *remote.Descriptor) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]layerEntry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = layerEntry{h, string(b)}
		order = append(order, h.Name)
	}
	return out, order, desc
}

func TestBuildPushReadDelete(t *testing.T) {
	if _, err := os.Stat("/bin/ls"); err != nil {
		t.Skip("no /bin/ls")
	}
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	endpoint := strings.TrimPrefix(srv.URL, "http://")
	dir := hostTree(t)
	files := []kimage.FileEntry{
		{Path: "/bin/ls", Source: "/bin/ls", Binary: true},
		{Path: "/etc/tool", Source: filepath.Join(dir, "conf")},
		{Path: "/work.txt", Source: "work.txt"}, // a workdir file
	}
	work := t.TempDir()
	_ = os.WriteFile(filepath.Join(work, "work.txt"), []byte("made by khw\n"), 0o600)
	res := resource(t, endpoint, files, map[string]string{"/etc/tool/override": "from the recipe\n", "/etc/passwd": "root:x:0:0::/:/bin/sh\n"})
	ctx := context.Background()
	b := builder{}
	var lines []string
	resp, err := b.Apply(ctx, &sdk.ApplyRequest{Resource: res, Workdir: work}, func(m string) { lines = append(lines, m) })
	if err != nil {
		t.Fatal(err)
	}
	var out outputs
	_ = json.Unmarshal(resp.Outputs, &out)
	if !strings.HasPrefix(out.Digest, "sha256:") || resp.Digest != out.Digest || out.Ref != "docker.io/library/tool:latest" {
		t.Fatalf("outputs %+v, digest %s", out, resp.Digest)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "pushing docker.io/library/tool:latest") {
		t.Errorf("progress: %q", lines)
	}

	entries, order, desc := pulled(t, out.Image)
	if desc.Digest.String() != out.Digest {
		t.Errorf("registry has %s, khw says %s", desc.Digest, out.Digest)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("entries not sorted: %s before %s", order[i-1], order[i])
		}
	}
	for n, e := range entries {
		if e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(time.Unix(0, 0)) || e.hdr.Uname != "" {
			t.Errorf("%s: uid %d gid %d mtime %v", n, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
		}
	}
	libs, err := libraries("/bin/ls")
	if err != nil || len(libs) < 2 {
		t.Fatalf("ls's libraries: %v %v", libs, err)
	}
	for _, want := range append(libs, "bin/ls", "etc/tool/a.conf", "etc/tool/sub/b.conf", "etc/", "bin/", "tmp/", "work.txt") {
		if _, ok := entries[strings.TrimPrefix(want, "/")]; !ok {
			t.Errorf("%s is not in the image: %v", want, order)
		}
	}
	if e := entries["etc/tool/override"]; e.data != "from the recipe\n" {
		t.Errorf("contents did not replace the copied directory's file: %q", e.data)
	}
	if e := entries["etc/tool/link"]; e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "a.conf" {
		t.Errorf("a symlink in a copied directory: %+v", e.hdr)
	}
	if e := entries["var/log/tool.log"]; e.hdr.Linkname != "/dev/stdout" {
		t.Errorf("symlink: %+v", e.hdr)
	}
	if e := entries["tmp/"]; e.hdr.Mode != 0o1777 {
		t.Errorf("/tmp mode %o", e.hdr.Mode)
	}
	if e := entries["bin/ls"]; e.hdr.Mode&0o111 == 0 {
		t.Errorf("/bin/ls mode %o", e.hdr.Mode)
	}
	img, _ := desc.Image()
	cf, _ := img.ConfigFile()
	if cf.OS != "linux" || cf.Architecture != "amd64" || cf.Config.Entrypoint[0] != "/bin/ls" || cf.Config.Cmd[0] != "-l" ||
		cf.Config.WorkingDir != "/tmp" || cf.Config.User != "65534" || len(cf.Config.ExposedPorts) != 1 || !cf.Created.IsZero() {
		t.Errorf("config: %+v %+v", cf, cf.Config)
	}

	// The same inputs and files again, the files touched: the same digest.
	now := time.Now()
	_ = os.Chtimes(filepath.Join(dir, "conf", "a.conf"), now, now)
	again, err := b.Apply(ctx, &sdk.ApplyRequest{Resource: res, Workdir: work}, func(string) {})
	if err != nil || again.Digest != resp.Digest {
		t.Fatalf("second build: %v, digest %s then %s", err, resp.Digest, again.Digest)
	}

	read := func() *sdk.ReadResponse {
		t.Helper()
		r, err := b.Read(ctx, &sdk.ReadRequest{Resource: res, PriorOutputs: resp.Outputs, Workdir: work})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := read(); !r.Exists || r.Drift != "" {
		t.Fatalf("read: %+v", r)
	}
	// A host file changed (a package upgrade): drift.
	_ = os.WriteFile(filepath.Join(dir, "conf", "a.conf"), []byte("A\n"), 0o644)
	if r := read(); !r.Exists || !strings.Contains(r.Drift, "host's files") {
		t.Fatalf("after a host file changed: %+v", r)
	}
	// Deleted: the manifest is gone, and deleting again is fine.
	if err := b.Delete(ctx, &sdk.DeleteRequest{Resource: res, PriorOutputs: resp.Outputs, Workdir: work}); err != nil {
		t.Fatal(err)
	}
	// (The in-memory registry keeps the tag of a deleted manifest, which
	// the distribution registry drops: ask for the digest.)
	gone, _ := name.NewDigest(endpoint+"/library/tool@"+out.Digest, name.Insecure)
	if _, err := remote.Head(gone); !isGone(err) {
		t.Fatalf("the manifest is still there after delete: %v", err)
	}
	if err := b.Delete(ctx, &sdk.DeleteRequest{Resource: res, PriorOutputs: resp.Outputs, Workdir: work}); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	// The registry gone: Read is an error that says so, Delete has
	// nothing to do.
	srv.Close()
	if _, err := b.Read(ctx, &sdk.ReadRequest{Resource: res, PriorOutputs: resp.Outputs, Workdir: work}); err == nil ||
		!strings.Contains(sdk.HintOf(err), "does not answer") {
		t.Fatalf("read with no registry: %v (hint %q)", err, sdk.HintOf(err))
	}
	if err := b.Delete(ctx, &sdk.DeleteRequest{Resource: res, PriorOutputs: resp.Outputs, Workdir: work}); err != nil {
		t.Fatalf("delete with no registry: %v", err)
	}
}

func TestAMissingHostFileIsAClearError(t *testing.T) {
	res := resource(t, "127.0.0.1:1", []kimage.FileEntry{{Path: "/x", Source: "/nonexistent/x"}}, nil)
	_, err := builder{}.Apply(context.Background(), &sdk.ApplyRequest{Resource: res, Workdir: t.TempDir()}, func(string) {})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/x (for /x)") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseLdd(t *testing.T) {
	out := []byte("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x7f)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n")
	libs, err := parseLdd("/bin/x", out)
	if err != nil || strings.Join(libs, " ") != "/lib/x86_64-linux-gnu/libpcre2-8.so.0 /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2" {
		t.Fatalf("%v %v", libs, err)
	}
	_, err = parseLdd("/bin/x", []byte("\tlibgone.so.1 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n"))
	if err == nil || !strings.Contains(err.Error(), "/bin/x needs libgone.so.1, which this machine does not have") {
		t.Fatalf("err = %v", err)
	}
	// A static program and a script have no libraries.
	if libs, err := libraries("/bin/busybox"); err == nil && len(libs) != 0 {
		t.Errorf("busybox-static: %v", libs)
	}
	script := filepath.Join(t.TempDir(), "s")
	_ = os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	if libs, err := libraries(script); err != nil || len(libs) != 0 {
		t.Errorf("a script: %v %v", libs, err)
	}
}
