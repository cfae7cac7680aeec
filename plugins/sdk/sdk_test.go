package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/khw-dev/khw/plugins/sdk"
)

type echo struct{ deleted []string }

func (e *echo) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return &sdk.ReadResponse{Exists: req.Resource.Name != "gone", Drift: "", Outputs: req.PriorOutputs}, nil
}
func (e *echo) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	return &sdk.PlanResponse{RequiresReplace: string(req.PriorConfig) != string(req.Resource.Config)}, nil
}
func (e *echo) Apply(_ context.Context, req *sdk.ApplyRequest, p sdk.Progress) (*sdk.ApplyResponse, error) {
	switch req.Resource.Name {
	case "bad":
		return nil, errors.New("cannot make bad\nbecause it is bad")
	case "hinted":
		return nil, sdk.WithHint(errors.New("the daemon is not running"), "start it")
	}
	p("step 1")
	p("step 2")
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]any{"prior": string(req.PriorOutputs), "deps": len(req.Deps)}), Digest: "d1"}, nil
}
func (e *echo) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	e.deleted = append(e.deleted, req.Resource.Address)
	return nil
}

// client connects to a Mux over go-plugin's in-memory gRPC transport: the
// real adapters on both sides, without a process.
func client(t *testing.T, impl sdk.Provider) sdk.Provider {
	t.Helper()
	c, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{sdk.PluginKey: &sdk.GRPCPlugin{Impl: impl}})
	t.Cleanup(func() { c.Close() })
	raw, err := c.Dispense(sdk.PluginKey)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(sdk.Provider)
}

func TestGRPCRoundTrip(t *testing.T) {
	impl := &echo{}
	m := sdk.NewMux("echo", "1.2.3")
	m.Handle(sdk.TypeInfo{Type: "echo.thing", Doc: "a thing", UpdateInPlace: true}, impl)
	p := client(t, m)
	ctx := context.Background()

	sc, err := p.Describe(ctx)
	if err != nil || sc.Name != "echo" || sc.Version != "1.2.3" || len(sc.Types) != 1 || !sc.Types[0].UpdateInPlace {
		t.Fatalf("describe = %+v, %v", sc, err)
	}
	res := sdk.Resource{Type: "echo.thing", Name: "a", Address: "echo.thing.a", Config: []byte(`{"x":1}`)}
	var lines []string
	out, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: res,
		Deps: map[string]json.RawMessage{"x.y": json.RawMessage(`{}`)}}, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Outputs) != `{"deps":1,"prior":""}` || out.Digest != "d1" {
		t.Fatalf("apply = %s %s", out.Outputs, out.Digest)
	}
	if strings.Join(lines, ",") != "step 1,step 2" {
		t.Fatalf("progress = %q", lines)
	}
	pr, err := p.Plan(ctx, &sdk.PlanRequest{Resource: res, PriorConfig: []byte(`{"x":2}`)})
	if err != nil || !pr.RequiresReplace {
		t.Fatalf("plan = %+v %v", pr, err)
	}
	gone := res
	gone.Name = "gone"
	rr, err := p.Read(ctx, &sdk.ReadRequest{Resource: gone})
	if err != nil || rr.Exists {
		t.Fatalf("read = %+v %v", rr, err)
	}
	if err := p.Delete(ctx, &sdk.DeleteRequest{Resource: res}); err != nil || impl.deleted[0] != "echo.thing.a" {
		t.Fatalf("delete: %v %v", err, impl.deleted)
	}
}

func TestGRPCErrorsTravelAsDiagnostics(t *testing.T) {
	m := sdk.NewMux("echo", "1")
	m.Handle(sdk.TypeInfo{Type: "echo.thing"}, &echo{})
	p := client(t, m)
	_, err := p.Apply(context.Background(), &sdk.ApplyRequest{Resource: sdk.Resource{Type: "echo.thing", Name: "bad"}}, nil)
	var de *sdk.DiagError
	if !errors.As(err, &de) || de.Summary != "cannot make bad" || de.Detail != "because it is bad" {
		t.Fatalf("err = %#v", err)
	}
	if h := sdk.HintOf(err); h != "" {
		t.Fatalf("an error without a hint came back with %q", h)
	}
	// The hint travels in its own field, out of the message.
	_, err = p.Apply(context.Background(), &sdk.ApplyRequest{Resource: sdk.Resource{Type: "echo.thing", Name: "hinted"}}, nil)
	if !errors.As(err, &de) || de.Summary != "the daemon is not running" || de.Hint != "start it" || sdk.HintOf(err) != "start it" {
		t.Fatalf("err = %#v", err)
	}
	_, err = p.Read(context.Background(), &sdk.ReadRequest{Resource: sdk.Resource{Type: "other.kind", Address: "other.kind.x"}})
	if err == nil || !strings.Contains(err.Error(), `does not serve resource type "other.kind"`) {
		t.Fatalf("unknown type: %v", err)
	}
}
