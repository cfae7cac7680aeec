// Command khw-plugin-test is a small provider used by khw's tests to prove
// the plugin protocol across real processes. Its one type, test.file,
// writes a file; config "sleep_ms" makes Apply slow (reporting progress) and
// "crash": true makes the process exit in the middle of Apply.
package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

type fileType struct{}

type config struct {
	Content string `json:"content"`
	SleepMS int    `json:"sleep_ms"`
	Crash   bool   `json:"crash"`
}

func (fileType) path(req sdk.Resource, workdir string) string {
	return filepath.Join(workdir, "test-"+req.Name)
}

func (t fileType) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	_, err := os.Stat(t.path(req.Resource, req.Workdir))
	return &sdk.ReadResponse{Exists: err == nil, Outputs: req.PriorOutputs}, nil
}

func (fileType) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	var c config
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	return &sdk.PlanResponse{}, nil
}

func (t fileType) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c config
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	if c.Crash {
		progress("about to crash")
		time.Sleep(50 * time.Millisecond)
		os.Exit(3)
	}
	deadline := time.Now().Add(time.Duration(c.SleepMS) * time.Millisecond)
	for time.Now().Before(deadline) {
		progress("working")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := os.WriteFile(t.path(req.Resource, req.Workdir), []byte(c.Content), 0o644); err != nil {
		return nil, err
	}
	// mark shows whether the plugin was launched through a command prefix
	// that set it (KHW_PLUGIN_PREFIX_TEST="env KHW_TEST_MARK=...").
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]any{"pid": os.Getpid(), "mark": os.Getenv("KHW_TEST_MARK")})}, nil
}

func (t fileType) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	err := os.Remove(t.path(req.Resource, req.Workdir))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func main() {
	m := sdk.NewMux("test", "0.0.1")
	m.Handle(sdk.TypeInfo{Type: "test.file", Doc: "a file, for tests", UpdateInPlace: true}, fileType{})
	sdk.Serve(m)
}
