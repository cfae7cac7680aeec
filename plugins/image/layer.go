package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	imagespec "github.com/khw-dev/khw/plugins/image/spec"
)

// spec is an image.build resource's inputs.
type spec struct {
	Ref        string                `json:"ref"`
	Repository string                `json:"repository"`
	Tag        string                `json:"tag"`
	Endpoint   string                `json:"endpoint"`
	Image      string                `json:"image"`
	Files      []imagespec.FileEntry `json:"files"`
	Contents   map[string]string     `json:"contents"`
	Symlinks   map[string]string     `json:"symlinks"`
	Dirs       map[string]string     `json:"dirs"`
	Config     imagespec.Config      `json:"config"`
	libs       map[string][]string   // binary source -> libraries, filled by closure
}

// item is one tar entry: a header and, for a regular file, where its bytes
// come from (a host file, or data).
type item struct {
	hdr  tar.Header
	src  string
	data []byte
}

// epoch is every entry's time: the layer depends on contents, not on when
// it was made.
var epoch = time.Unix(0, 0)

// hostPath resolves a source: absolute, or a file relative to the workdir.
func hostPath(workdir, src string) string {
	if filepath.IsAbs(src) {
		return src
	}
	return filepath.Join(workdir, src)
}

// items lists every entry of the layer, keyed by image path (no leading
// slash), from the spec and the host's files. Explicit entries win over
// what a copied directory or a program's libraries bring along.
func (s *spec) items(workdir string) (map[string]*item, error) {
	out := map[string]*item{}
	explicit := map[string]bool{}
	put := func(p string, it *item, force bool) {
		key := strings.TrimPrefix(p, "/")
		if _, ok := out[key]; ok && !force {
			return
		}
		out[key] = it
		if force {
			explicit[key] = true
		}
	}
	for p, mode := range s.Dirs {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("dirs[%q]: bad mode %q", p, mode)
		}
		put(p, &item{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: int64(m)}}, true)
	}
	for p, target := range s.Symlinks {
		put(p, &item{hdr: tar.Header{Typeflag: tar.TypeSymlink, Linkname: target}}, true)
	}
	for p, text := range s.Contents {
		put(p, &item{hdr: tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(text))}, data: []byte(text)}, true)
	}
	for _, f := range s.Files {
		src := hostPath(workdir, f.Source)
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("%s (for %s): %w", src, f.Path, err)
		}
		if !st.IsDir() {
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("%s (for %s) is not a regular file or a directory", src, f.Path)
			}
			put(f.Path, fileItem(src, st), true)
			continue
		}
		if f.Binary {
			return nil, fmt.Errorf("%s (for %s) is a directory, not a program", src, f.Path)
		}
		put(f.Path, &item{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: int64(st.Mode().Perm())}}, true)
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == src {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			dest := path.Join(f.Path, filepath.ToSlash(rel))
			if explicit[strings.TrimPrefix(dest, "/")] {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				put(dest, &item{hdr: tar.Header{Typeflag: tar.TypeSymlink, Linkname: target}}, false)
			case info.IsDir():
				put(dest, &item{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: int64(info.Mode().Perm())}}, false)
			case info.Mode().IsRegular():
				put(dest, fileItem(p, info), false)
			} // sockets, devices and pipes have no place in an image
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("copying %s to %s: %w", src, f.Path, err)
		}
	}
	// Each program's shared libraries and loader, at their host paths,
	// following symlinks (ldd names the paths the loader opens).
	for _, f := range s.Files {
		if !f.Binary {
			continue
		}
		for _, lib := range s.libs[f.Source] {
			if _, ok := out[strings.TrimPrefix(lib, "/")]; ok {
				continue
			}
			st, err := os.Stat(lib)
			if err != nil {
				return nil, fmt.Errorf("library %s of %s: %w", lib, f.Source, err)
			}
			put(lib, fileItem(lib, st), false)
		}
	}
	// Every parent directory, so that the layer unpacks the same anywhere.
	for key := range out {
		for dir := path.Dir(key); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if it, ok := out[dir]; ok {
				if it.hdr.Typeflag != tar.TypeDir {
					return nil, fmt.Errorf("/%s is inside /%s, which is not a directory in the image", key, dir)
				}
				continue
			}
			out[dir] = &item{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}}
		}
	}
	return out, nil
}

func fileItem(src string, st fs.FileInfo) *item {
	mode := int64(st.Mode().Perm())
	if st.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	return &item{hdr: tar.Header{Typeflag: tar.TypeReg, Mode: mode, Size: st.Size()}, src: src}
}

// writeLayer writes the layer's tar to w: entries sorted by path, owned by
// root, every time the epoch. It returns how many entries it wrote.
func writeLayer(w io.Writer, items map[string]*item) (int, error) {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tar.NewWriter(w)
	for _, k := range keys {
		it := items[k]
		h := it.hdr
		h.Name = k
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		h.ModTime, h.Format = epoch, tar.FormatPAX
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if h.Typeflag == tar.TypeReg && it.src == "" {
			h.Size = int64(len(it.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return 0, fmt.Errorf("/%s: %w", k, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if it.src == "" {
			if _, err := tw.Write(it.data); err != nil {
				return 0, err
			}
			continue
		}
		if err := copyFile(tw, it.src, h.Size); err != nil {
			return 0, fmt.Errorf("/%s from %s: %w", k, it.src, err)
		}
	}
	return len(keys), tw.Close()
}

// copyFile copies exactly size bytes of src: a file that changed size
// since it was looked at fails instead of writing a broken tar.
func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("it changed while being read (%d bytes, not %d)", n, size)
	}
	return err
}

// closure fills s.libs: each program's shared libraries and its dynamic
// loader, from ldd.
func (s *spec) closure(workdir string) error {
	s.libs = map[string][]string{}
	for _, f := range s.Files {
		if !f.Binary {
			continue
		}
		libs, err := libraries(hostPath(workdir, f.Source))
		if err != nil {
			return err
		}
		s.libs[f.Source] = libs
	}
	return nil
}

// libraries returns the shared libraries a program loads and its dynamic
// loader, as absolute host paths; none for a static program or a script.
func libraries(bin string) ([]string, error) {
	f, err := os.Open(bin)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if string(magic) != elf.ELFMAG {
		return nil, nil // a script: it names its interpreter, which the recipe must put in too
	}
	ef, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	interp := ""
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	ef.Close()
	if interp == "" {
		return nil, nil // static
	}
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %v: %s", bin, err, strings.TrimSpace(string(out)))
	}
	libs, err := parseLdd(bin, out)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, l := range libs {
		seen[l] = true
	}
	if !seen[interp] {
		libs = append(libs, interp)
	}
	sort.Strings(libs)
	return libs, nil
}

// parseLdd reads ldd's lines: "libc.so.6 => /lib/.../libc.so.6 (0x...)",
// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)" (in
// the kernel, no file) and "libx.so => not found".
func parseLdd(bin string, out []byte) ([]string, error) {
	var libs, missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if lib, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				missing = append(missing, strings.TrimSpace(lib))
				continue
			}
			if f := strings.Fields(target); len(f) > 0 && strings.HasPrefix(f[0], "/") {
				libs = append(libs, f[0])
			}
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s needs %s, which this machine does not have (ldd: not found)", bin, strings.Join(missing, ", "))
	}
	return libs, nil
}
