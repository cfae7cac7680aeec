package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/khw-dev/khw/plugins/sdk/proto"
)

// reader answers Read by name ("gone", "drift", "bad") and counts calls.
type reader struct {
	reads, batches atomic.Int32
}

func (r *reader) answer(req *ReadRequest) (*ReadResponse, error) {
	switch req.Resource.Name {
	case "gone":
		return &ReadResponse{}, nil
	case "drift":
		return &ReadResponse{Exists: true, Drift: "edited"}, nil
	case "bad":
		return nil, errors.New("cannot reach it")
	}
	return &ReadResponse{Exists: true, Outputs: req.PriorOutputs}, nil
}

func (r *reader) Describe(context.Context) (*Schema, error) { return &Schema{Name: "r"}, nil }
func (r *reader) Read(_ context.Context, req *ReadRequest) (*ReadResponse, error) {
	r.reads.Add(1)
	return r.answer(req)
}
func (r *reader) Plan(context.Context, *PlanRequest) (*PlanResponse, error) {
	return &PlanResponse{}, nil
}
func (r *reader) Apply(context.Context, *ApplyRequest, Progress) (*ApplyResponse, error) {
	return &ApplyResponse{}, nil
}
func (r *reader) Delete(context.Context, *DeleteRequest) error { return nil }

// batchReader is a reader that also reads in batches.
type batchReader struct{ reader }

func (b *batchReader) ReadMany(_ context.Context, reqs []*ReadRequest) ([]ReadResult, error) {
	b.batches.Add(1)
	out := make([]ReadResult, len(reqs))
	for i, req := range reqs {
		out[i].Response, out[i].Err = b.answer(req)
	}
	return out, nil
}

// oldPlugin serves the protocol as a plugin built before ReadMany did.
type oldPlugin struct{ GRPCPlugin }

type oldServer struct{ *server }

func (oldServer) ReadMany(context.Context, *pb.ReadManyRequest) (*pb.ReadManyResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method ReadMany not implemented")
}

func (p *oldPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, oldServer{&server{impl: p.Impl}})
	return nil
}

func dispense(t *testing.T, p plugin.Plugin) Provider {
	t.Helper()
	c, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{PluginKey: p})
	t.Cleanup(func() { c.Close() })
	raw, err := c.Dispense(PluginKey)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(Provider)
}

// TestReadMany reads one batch over gRPC from a provider that batches, one
// that does not (the server reads each), and an older plugin without the
// RPC (the client reads each): the same answers, in order, each error
// with its own resource.
func TestReadMany(t *testing.T) {
	names := []string{"a", "gone", "drift", "bad", "b"}
	var reqs []*ReadRequest
	for _, n := range names {
		reqs = append(reqs, &ReadRequest{Resource: Resource{Type: "t", Name: n, Address: "t." + n}, PriorOutputs: []byte(`{"n":"` + n + `"}`)})
	}
	want := []string{`exists {"n":"a"}`, "gone", "drift edited", "error cannot reach it", `exists {"n":"b"}`}
	check := func(t *testing.T, rs []ReadResult) {
		t.Helper()
		if len(rs) != len(want) {
			t.Fatalf("%d results, want %d", len(rs), len(want))
		}
		for i, r := range rs {
			var got string
			switch {
			case r.Err != nil:
				got = "error " + r.Err.Error()
			case r.Response.Drift != "":
				got = "drift " + r.Response.Drift
			case r.Response.Exists:
				got = fmt.Sprintf("exists %s", r.Response.Outputs)
			default:
				got = "gone"
			}
			if got != want[i] {
				t.Errorf("%s: %s, want %s", names[i], got, want[i])
			}
		}
	}
	ctx := context.Background()

	t.Run("a provider that batches", func(t *testing.T) {
		impl := &batchReader{}
		rs, err := ReadAll(ctx, dispense(t, &GRPCPlugin{Impl: impl}), reqs)
		if err != nil {
			t.Fatal(err)
		}
		check(t, rs)
		if impl.batches.Load() != 1 || impl.reads.Load() != 0 {
			t.Errorf("%d batches and %d reads, want 1 and 0", impl.batches.Load(), impl.reads.Load())
		}
	})
	t.Run("a provider that does not", func(t *testing.T) {
		impl := &reader{}
		rs, err := ReadAll(ctx, dispense(t, &GRPCPlugin{Impl: impl}), reqs)
		if err != nil {
			t.Fatal(err)
		}
		check(t, rs)
		if impl.reads.Load() != int32(len(reqs)) {
			t.Errorf("%d reads, want %d", impl.reads.Load(), len(reqs))
		}
	})
	t.Run("a plugin older than ReadMany", func(t *testing.T) {
		impl := &batchReader{}
		rs, err := ReadAll(ctx, dispense(t, &oldPlugin{GRPCPlugin{Impl: impl}}), reqs)
		if err != nil {
			t.Fatal(err)
		}
		check(t, rs)
		if impl.batches.Load() != 0 || impl.reads.Load() != int32(len(reqs)) {
			t.Errorf("%d batches and %d reads, want 0 and %d", impl.batches.Load(), impl.reads.Load(), len(reqs))
		}
	})
	t.Run("a batch that leaves one unanswered", func(t *testing.T) {
		rs, err := ReadAll(ctx, &short{}, reqs[:2])
		if err != nil || rs[1].Err == nil {
			t.Fatalf("an empty answer passed: %+v, %v", rs, err)
		}
	})
}

// short answers the first request only.
type short struct{ reader }

func (*short) ReadMany(_ context.Context, reqs []*ReadRequest) ([]ReadResult, error) {
	out := make([]ReadResult, len(reqs))
	out[0].Response = &ReadResponse{Exists: true}
	return out, nil
}
