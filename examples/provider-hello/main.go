// Command khw-plugin-hello is a small example provider for khw, in a module
// of its own: the shape of any provider written outside khw
// (docs/plugins.md). Its one type, hello.greeting, is a file in the workdir
// that greets someone:
//
//	plugin.resource("hello.greeting", "world", config = {"file": "hello.txt", "who": "world"})
//
// writes WORKDIR/hello.txt holding "Hello, world!". A new "who" rewrites the
// file in place (the type's schema says update_in_place); a new "file" is a
// replacement (Plan says so: the old file goes, then the new one is
// written). Read finds the file gone or edited by hand.
//
// Build it as khw-plugin-hello and put it on the plugin search path
// (KHW_PLUGIN_PATH, next to khw, or ~/.local/share/khw/plugins):
//
//	go build -o ~/.local/share/khw/plugins/khw-plugin-hello .
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/khw-dev/khw/plugins/sdk"
)

// config is hello.greeting's configuration, as the recipe gives it.
type config struct {
	File string `json:"file"`
	Who  string `json:"who"`
}

// outputs is what Apply returns and khw records.
type outputs struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// decode reads and checks a configuration: the file stays inside the
// workdir.
func decode(r *sdk.Resource, workdir string) (config, string, error) {
	var c config
	if err := r.Decode(&c); err != nil {
		return c, "", err
	}
	if c.File == "" || filepath.IsAbs(c.File) || !filepath.IsLocal(c.File) {
		return c, "", fmt.Errorf("%s: file %q must be a path inside the workdir", r.Address, c.File)
	}
	if c.Who == "" {
		c.Who = "world"
	}
	return c, filepath.Join(workdir, c.File), nil
}

func greeting(c config) string { return "Hello, " + c.Who + "!\n" }

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// greetingType serves hello.greeting. It implements sdk.Handler, and
// sdk.ChangePlanner to say which changes need a replacement.
type greetingType struct{}

func (greetingType) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	c, path, err := decode(&req.Resource, req.Workdir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	if string(b) != greeting(c) {
		resp.Drift = c.File + " was edited"
	}
	return resp, nil
}

// Plan is asked when the configuration of a greeting changes (the type
// updates in place): moving to another file needs a replacement, so that
// the old file is deleted.
func (greetingType) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	now, _, err := decode(&req.Resource, req.Workdir)
	if err != nil {
		return nil, err
	}
	var before config
	if len(req.PriorConfig) > 0 {
		if err := json.Unmarshal(req.PriorConfig, &before); err != nil {
			return nil, err
		}
	}
	return &sdk.PlanResponse{RequiresReplace: before.File != "" && before.File != now.File}, nil
}

func (greetingType) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	c, path, err := decode(&req.Resource, req.Workdir)
	if err != nil {
		return nil, err
	}
	// Nothing recorded (a create) but a file there: it is overwritten,
	// which the person should know. A warning, not an error.
	if _, err := os.Stat(path); err == nil && len(req.PriorOutputs) == 0 {
		sdk.Warnf(ctx, "%s existed and was overwritten", c.File)
	}
	progress("greeting " + c.Who)
	b := []byte(greeting(c))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	out := outputs{Path: path, SHA256: sum(b)}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: out.SHA256}, nil
}

func (greetingType) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	_, path, err := decode(&req.Resource, req.Workdir)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// newProvider is the provider: its name is the plugin's (khw-plugin-hello
// must say "hello"), and its schema lists the types it serves with their
// update rule, the one place khw learns it.
func newProvider() *sdk.Mux {
	m := sdk.NewMux("hello", "0.1.0")
	m.Handle(sdk.TypeInfo{Type: "hello.greeting", UpdateInPlace: true,
		Doc: "a file in the workdir that greets someone"}, greetingType{})
	return m
}

// main serves the provider until khw, which started it, lets it go. Run by
// hand, it says that it is a plugin and exits (go-plugin's handshake).
func main() {
	sdk.Serve(newProvider())
}
