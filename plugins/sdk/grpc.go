package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/khw-dev/khw/plugins/sdk/proto"
)

// Handshake is shared by khw and every plugin. Its cookie never changes: it
// only tells a plugin binary that khw started it.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KHW_PLUGIN_COOKIE",
	MagicCookieValue: "3f9c2b71d6e04a85b0c7e1d24a6f8e93",
}

// PluginKey is the name under which a plugin binary dispenses its provider.
const PluginKey = "provider"

// GRPCPlugin adapts a Provider to go-plugin's gRPC transport.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Provider
}

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, &server{impl: p.Impl})
	return nil
}

func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{rpc: pb.NewProviderClient(c)}, nil
}

// Serve runs a plugin binary's provider until khw disconnects.
func Serve(p Provider) {
	go exitWithParent(os.Getppid(), time.Second)
	// go-plugin hands the plugin's os.Stderr to another stream once it
	// serves; the log goes to the real one, as JSON that khw re-logs under
	// the plugin's name at the level KHW_LOG asks for.
	l := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Trace})
	logger.Store(&l)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          l,
	})
}

var logger atomic.Pointer[hclog.Logger]

// Logger is the plugin's log: khw shows its lines with KHW_LOG=debug (or
// trace, info...). Never log a secret. Outside Serve it discards.
func Logger() hclog.Logger {
	if l := logger.Load(); l != nil {
		return *l
	}
	return hclog.NewNullLogger()
}

// exitWithParent ends the plugin when the process that started it is gone
// (the plugin has been re-parented): khw killed with SIGKILL cannot close
// its plugins, and a plugin left running would hold connections and locks.
// (khw also asks the kernel for a signal on its death; this covers
// launchers and platforms where that signal does not arrive.)
func exitWithParent(parent int, every time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() != parent {
			os.Exit(3)
		}
	}
}

// ---- diagnostics ----

func errDiags(err error) []*pb.Diagnostic {
	if err == nil {
		return nil
	}
	summary, detail, _ := strings.Cut(err.Error(), "\n")
	return []*pb.Diagnostic{{Severity: pb.Diagnostic_ERROR, Summary: summary, Detail: detail, Hint: HintOf(err)}}
}

// DiagError is an error a provider reported through diagnostics, with
// what to do about it when the provider knows.
type DiagError struct{ Summary, Detail, Hint string }

func (e *DiagError) Error() string {
	if e.Detail == "" {
		return e.Summary
	}
	return e.Summary + "\n" + e.Detail
}

// ErrorHint is the provider's hint (see Hinted).
func (e *DiagError) ErrorHint() string { return e.Hint }

// ---- server side: proto -> Provider ----

type server struct {
	pb.UnimplementedProviderServer
	impl Provider
}

func toResource(r *pb.Resource) Resource {
	if r == nil {
		return Resource{}
	}
	return Resource{Type: r.Type, Name: r.Name, Address: r.Address, Config: r.Config, Pos: r.Pos}
}

func fromResource(r *Resource) *pb.Resource {
	return &pb.Resource{Type: r.Type, Name: r.Name, Address: r.Address, Config: r.Config, Pos: r.Pos}
}

func (s *server) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	ctx, warnings := collectWarnings(ctx)
	sc, err := s.impl.Describe(ctx)
	if err != nil {
		return &pb.DescribeResponse{Diagnostics: append(errDiags(err), warnings()...)}, nil
	}
	resp := &pb.DescribeResponse{Name: sc.Name, Version: sc.Version, Diagnostics: warnings()}
	for _, t := range sc.Types {
		resp.Types = append(resp.Types, &pb.ResourceType{Type: t.Type, Doc: t.Doc, UpdateInPlace: t.UpdateInPlace})
	}
	return resp, nil
}

func (s *server) Read(ctx context.Context, req *pb.ReadRequest) (*pb.ReadResponse, error) {
	ctx, warnings := collectWarnings(ctx)
	r, err := s.impl.Read(ctx, &ReadRequest{Resource: toResource(req.Resource), PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	if err != nil {
		return &pb.ReadResponse{Diagnostics: append(errDiags(err), warnings()...)}, nil
	}
	return &pb.ReadResponse{Exists: r.Exists, Drift: r.Drift, Outputs: r.Outputs, Diagnostics: warnings()}, nil
}

// ReadMany serves a batch with the provider's own ReadMany, or with one
// Read per request when it has none.
func (s *server) ReadMany(ctx context.Context, req *pb.ReadManyRequest) (*pb.ReadManyResponse, error) {
	reqs := make([]*ReadRequest, len(req.Reads))
	for i, r := range req.Reads {
		reqs[i] = &ReadRequest{Resource: toResource(r.Resource), PriorOutputs: r.PriorOutputs, Workdir: r.Workdir}
	}
	ctx, warnings := collectWarnings(ctx)
	results, err := ReadAll(ctx, s.impl, reqs)
	if err != nil {
		return &pb.ReadManyResponse{Diagnostics: append(errDiags(err), warnings()...)}, nil
	}
	// The batch's warnings travel with the whole call: a BatchReader
	// shares its work between the resources.
	resp := &pb.ReadManyResponse{Reads: make([]*pb.ReadResponse, len(results)), Diagnostics: warnings()}
	for i, r := range results {
		switch {
		case r.Err != nil:
			resp.Reads[i] = &pb.ReadResponse{Diagnostics: errDiags(r.Err)}
		default:
			resp.Reads[i] = &pb.ReadResponse{Exists: r.Response.Exists, Drift: r.Response.Drift, Outputs: r.Response.Outputs}
		}
	}
	return resp, nil
}

func (s *server) Plan(ctx context.Context, req *pb.PlanRequest) (*pb.PlanResponse, error) {
	ctx, warnings := collectWarnings(ctx)
	r, err := s.impl.Plan(ctx, &PlanRequest{Resource: toResource(req.Resource), PriorConfig: req.PriorConfig, PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	if err != nil {
		return &pb.PlanResponse{Diagnostics: append(errDiags(err), warnings()...)}, nil
	}
	return &pb.PlanResponse{RequiresReplace: r.RequiresReplace, Diagnostics: warnings()}, nil
}

func (s *server) Apply(req *pb.ApplyRequest, stream pb.Provider_ApplyServer) error {
	deps, err := decodeDeps(req.Deps)
	if err != nil {
		return stream.Send(&pb.ApplyEvent{Event: &pb.ApplyEvent_Result{Result: &pb.ApplyResult{Diagnostics: errDiags(err)}}})
	}
	progress := func(msg string) {
		_ = stream.Send(&pb.ApplyEvent{Event: &pb.ApplyEvent_Progress{Progress: msg}})
	}
	ctx, warnings := collectWarnings(stream.Context())
	r, err := s.impl.Apply(ctx, &ApplyRequest{
		Resource: toResource(req.Resource), PriorOutputs: req.PriorOutputs, Deps: deps, Workdir: req.Workdir,
	}, progress)
	res := &pb.ApplyResult{Diagnostics: append(errDiags(err), warnings()...)}
	if err == nil {
		res.Outputs, res.Digest = r.Outputs, r.Digest
	}
	return stream.Send(&pb.ApplyEvent{Event: &pb.ApplyEvent_Result{Result: res}})
}

func (s *server) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	ctx, warnings := collectWarnings(ctx)
	err := s.impl.Delete(ctx, &DeleteRequest{Resource: toResource(req.Resource), PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	return &pb.DeleteResponse{Diagnostics: append(errDiags(err), warnings()...)}, nil
}

// ---- client side: Provider -> proto ----

// Client is a Provider backed by a plugin process.
type Client struct{ rpc pb.ProviderClient }

func (c *Client) Describe(ctx context.Context) (*Schema, error) {
	r, err := c.rpc.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return nil, err
	}
	if err := takeDiags(ctx, r.Diagnostics); err != nil {
		return nil, err
	}
	sc := &Schema{Name: r.Name, Version: r.Version}
	for _, t := range r.Types {
		sc.Types = append(sc.Types, TypeInfo{Type: t.Type, Doc: t.Doc, UpdateInPlace: t.UpdateInPlace})
	}
	return sc, nil
}

func (c *Client) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	r, err := c.rpc.Read(ctx, &pb.ReadRequest{Resource: fromResource(&req.Resource), PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	if err != nil {
		return nil, err
	}
	if err := takeDiags(ctx, r.Diagnostics); err != nil {
		return nil, err
	}
	return &ReadResponse{Exists: r.Exists, Drift: r.Drift, Outputs: r.Outputs}, nil
}

// ReadMany reads a batch in one call. A plugin built before ReadMany
// answers Unimplemented; then each resource is read on its own.
func (c *Client) ReadMany(ctx context.Context, reqs []*ReadRequest) ([]ReadResult, error) {
	in := &pb.ReadManyRequest{Reads: make([]*pb.ReadRequest, len(reqs))}
	for i, req := range reqs {
		in.Reads[i] = &pb.ReadRequest{Resource: fromResource(&req.Resource), PriorOutputs: req.PriorOutputs, Workdir: req.Workdir}
	}
	r, err := c.rpc.ReadMany(ctx, in)
	if status.Code(err) == codes.Unimplemented {
		return ReadEach(ctx, c, reqs), nil
	}
	if err != nil {
		return nil, err
	}
	if err := takeDiags(ctx, r.Diagnostics); err != nil {
		return nil, err
	}
	if len(r.Reads) != len(reqs) {
		return nil, fmt.Errorf("provider answered %d of %d reads", len(r.Reads), len(reqs))
	}
	out := make([]ReadResult, len(reqs))
	for i, rr := range r.Reads {
		if err := takeDiags(ctx, rr.Diagnostics); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Response = &ReadResponse{Exists: rr.Exists, Drift: rr.Drift, Outputs: rr.Outputs}
	}
	return out, nil
}

func (c *Client) Plan(ctx context.Context, req *PlanRequest) (*PlanResponse, error) {
	r, err := c.rpc.Plan(ctx, &pb.PlanRequest{Resource: fromResource(&req.Resource), PriorConfig: req.PriorConfig, PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	if status.Code(err) == codes.Unimplemented {
		return &PlanResponse{}, nil // a plugin without Plan: in place, as its schema says
	}
	if err != nil {
		return nil, err
	}
	if err := takeDiags(ctx, r.Diagnostics); err != nil {
		return nil, err
	}
	return &PlanResponse{RequiresReplace: r.RequiresReplace}, nil
}

func (c *Client) Apply(ctx context.Context, req *ApplyRequest, progress Progress) (*ApplyResponse, error) {
	deps, err := encodeDeps(req.Deps)
	if err != nil {
		return nil, err
	}
	stream, err := c.rpc.Apply(ctx, &pb.ApplyRequest{
		Resource: fromResource(&req.Resource), PriorOutputs: req.PriorOutputs, Deps: deps, Workdir: req.Workdir,
	})
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("provider ended %s without a result", req.Resource.Address)
		}
		if err != nil {
			return nil, err
		}
		switch e := ev.Event.(type) {
		case *pb.ApplyEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *pb.ApplyEvent_Result:
			if err := takeDiags(ctx, e.Result.Diagnostics); err != nil {
				return nil, err
			}
			return &ApplyResponse{Outputs: e.Result.Outputs, Digest: e.Result.Digest}, nil
		}
	}
}

func (c *Client) Delete(ctx context.Context, req *DeleteRequest) error {
	r, err := c.rpc.Delete(ctx, &pb.DeleteRequest{Resource: fromResource(&req.Resource), PriorOutputs: req.PriorOutputs, Workdir: req.Workdir})
	if err != nil {
		return err
	}
	return takeDiags(ctx, r.Diagnostics)
}
