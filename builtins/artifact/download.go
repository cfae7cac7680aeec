package artifact

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// downloadHint is the next step when a download fails.
const downloadHint = `offline? source = "build" builds them from the Go module proxy ` +
	`(in the post's recipe: --set k8s_source=build)`

// download fetches spec's release files at version from base (the
// official URL when empty) into out, each checked against its published
// sha256.
func download(ctx context.Context, spec *Spec, version, base, out string, progress sdk.Progress) (string, error) {
	if base == "" {
		base = spec.Download.Base
	}
	base = strings.TrimSuffix(base, "/")
	var got []string
	for _, a := range spec.Download.Assets(version) {
		u := base + "/" + a.Path
		sums, err := fetchSmall(ctx, base+"/"+a.Sums)
		if err != nil {
			return "", sdk.WithHint(err, downloadHint)
		}
		want, err := findSum(sums, path.Base(a.Path))
		if err != nil {
			return "", fmt.Errorf("%s: %w", base+"/"+a.Sums, err)
		}
		file := filepath.Join(out, ".download-"+path.Base(a.Path))
		sum, err := fetch(ctx, u, file, progress)
		if err != nil {
			return "", sdk.WithHint(err, downloadHint)
		}
		if sum != want {
			os.Remove(file)
			return "", fmt.Errorf("%s: sha256 %s is not the published %s (from %s): refusing it", u, sum, want, base+"/"+a.Sums)
		}
		if a.Bin != "" {
			if err := os.Rename(file, filepath.Join(out, a.Bin)); err != nil {
				return "", err
			}
		} else {
			err := untar(file, out, a.Members)
			os.Remove(file)
			if err != nil {
				return "", fmt.Errorf("%s: %w", u, err)
			}
		}
		got = append(got, u)
	}
	return "downloaded " + strings.Join(got, ", ") + ", each checked against its published sha256", nil
}

// client gives up on a host that does not answer within half a minute
// (offline), and on a download that takes longer than half an hour.
var client = &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: time.Minute,
}}

func get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("downloading %s: %s", u, resp.Status)
	}
	return resp, nil
}

// fetchSmall reads a checksum file (at most 1 MiB).
func fetchSmall(ctx context.Context, u string) (string, error) {
	resp, err := get(ctx, u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", u, err)
	}
	return string(b), nil
}

var hexSum = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// findSum finds a file's sha256 in a published checksum file: a lone hash
// (kube-apiserver.sha256), or `HASH  NAME` lines (SHA256SUMS).
func findSum(sums, name string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(sums))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !hexSum.MatchString(f[0]) {
			continue
		}
		if len(f) == 1 || path.Base(strings.TrimPrefix(f[1], "*")) == name {
			return strings.ToLower(f[0]), nil
		}
	}
	return "", fmt.Errorf("no sha256 for %s in it", name)
}

// fetch downloads u to file and returns its sha256, saying how far it got
// every few seconds.
func fetch(ctx context.Context, u, file string, progress sdk.Progress) (string, error) {
	resp, err := get(ctx, u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	name := path.Base(u)
	var n int64
	last := time.Now()
	buf := make([]byte, 256<<10)
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if _, err := f.Write(buf[:k]); err != nil {
				return "", err
			}
			h.Write(buf[:k])
			n += int64(k)
			if time.Since(last) >= progressEvery {
				last = time.Now()
				if resp.ContentLength > 0 {
					progress(fmt.Sprintf("%s: %.1f of %.1f MB", name, float64(n)/1e6, float64(resp.ContentLength)/1e6))
				} else {
					progress(fmt.Sprintf("%s: %.1f MB", name, float64(n)/1e6))
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("downloading %s: %w", u, rerr)
		}
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// untar takes the named members (by base name, regular files) out of a
// .tar.gz into out.
func untar(file, out string, members []string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range members {
		want[m] = true
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		base := path.Base(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !want[base] {
			continue
		}
		w, err := os.OpenFile(filepath.Join(out, base), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		delete(want, base)
	}
	if len(want) > 0 {
		var missing []string
		for _, m := range members {
			if want[m] {
				missing = append(missing, m)
			}
		}
		return fmt.Errorf("the archive has no %s", strings.Join(missing, ", "))
	}
	return nil
}
