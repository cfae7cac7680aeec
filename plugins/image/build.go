package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/khw-dev/khw/plugins/sdk"
)

// builder serves image.build.
type builder struct{}

// outputs is what an applied image.build records.
type outputs struct {
	Ref    string `json:"ref"`    // the name users type
	Image  string `json:"image"`  // where it was pushed
	Digest string `json:"digest"` // the manifest's digest
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"` // compressed layer bytes
}

// decode reads the configuration, and where the image goes: plain HTTP,
// as the lab's registry serves.
func decode(r *sdk.Resource) (*spec, name.Tag, error) {
	var s spec
	if err := r.Decode(&s); err != nil {
		return nil, name.Tag{}, err
	}
	if s.Image == "" || s.Endpoint == "" {
		return nil, name.Tag{}, fmt.Errorf("%s: no image or registry endpoint in the configuration", r.Address)
	}
	tag, err := name.NewTag(s.Image, name.Insecure)
	return &s, tag, err
}

// layerItems looks at the host: the programs' libraries and every file.
func (s *spec) layerItems(workdir string) (map[string]*item, error) {
	if err := s.closure(workdir); err != nil {
		return nil, err
	}
	return s.items(workdir)
}

// diffID is the sha256 of the layer's tar as it would be built now from
// the host's files, without compressing or keeping it.
func (s *spec) diffID(workdir string) (string, error) {
	items, err := s.layerItems(workdir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := writeLayer(h, items); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// image builds the image from the layer's tar in file: one layer on
// empty, the platform and the runtime configuration, no timestamps: the
// digest depends on the contents alone, not on the resource's name.
func (s *spec) image(file string) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(file)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer,
		History: v1.History{CreatedBy: "khw image.build", Comment: "files from the host"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	c := s.Config
	cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env = c.Entrypoint, c.Cmd, c.Env
	cf.Config.WorkingDir, cf.Config.User = c.WorkingDir, c.User
	cf.Config.ExposedPorts = nil
	if len(c.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range c.Ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

func (builder) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	s, tag, err := decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	items, err := s.layerItems(req.Workdir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "khw-layer-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	n, err := writeLayer(tmp, items)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("building the layer: %w", err)
	}
	img, err := s.image(tmp.Name())
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	layers, _ := img.Layers()
	size, _ := layers[0].Size()
	diffID, _ := layers[0].DiffID()
	entries := "entries"
	if n == 1 {
		entries = "entry"
	}
	progress(fmt.Sprintf("pushing %s (%d %s, %.1f MB) to %s", s.Ref, n, entries, float64(size)/1e6, s.Image))
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return nil, registryError(s, "pushing "+s.Image, err)
	}
	out := outputs{Ref: s.Ref, Image: s.Image, Digest: digest.String(), DiffID: diffID.String(), Size: size}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: digest.String()}, nil
}

func (builder) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	s, tag, err := decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	var prior outputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	desc, err := remote.Head(tag, remote.WithContext(ctx))
	if isGone(err) {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	if err != nil {
		return nil, registryError(s, "reading "+s.Image, err)
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	if prior.Digest != "" && desc.Digest.String() != prior.Digest {
		resp.Drift = fmt.Sprintf("%s is %s in the registry, not the %s khw pushed", s.Image, desc.Digest, prior.Digest)
		return resp, nil
	}
	// The host's files may have changed (a package upgrade): the layer
	// they would give now tells, without compressing anything.
	now, err := s.diffID(req.Workdir)
	switch {
	case err != nil:
		resp.Drift = "its files cannot be read: " + err.Error()
	case prior.DiffID != "" && now != prior.DiffID:
		resp.Drift = "the host's files for it have changed since it was pushed"
	}
	return resp, nil
}

// Delete removes the manifest from the registry. A registry that is gone
// (or a manifest that is) leaves nothing to do.
func (builder) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	s, _, err := decode(&req.Resource)
	if err != nil {
		return err
	}
	var prior outputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	if prior.Digest == "" {
		return nil // never pushed
	}
	ref, err := name.NewDigest(s.Endpoint+"/"+s.Repository+"@"+prior.Digest, name.Insecure)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = remote.Delete(ref, remote.WithContext(ctx), remote.WithTransport(quickTransport()))
	if err == nil || isGone(err) || unreachable(err) {
		return nil
	}
	return registryError(s, "deleting "+ref.String(), err)
}

// quickTransport gives up on a registry that does not answer within
// seconds (one that was removed with its network) rather than after the
// default transport's minutes.
func quickTransport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	return t
}

// isGone is true for the registry's "no such manifest" answers.
func isGone(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// unreachable is true when nothing answers at the registry's address.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF)
}

// registryError says what failed against which registry, with the next
// step.
func registryError(s *spec, what string, err error) error {
	gone := unreachable(err)
	err = fmt.Errorf("%s: %v", what, err)
	if gone {
		return sdk.WithHint(err, "the registry at "+s.Endpoint+" does not answer: is its container running (registry.run)? khw run makes it again")
	}
	return err
}
