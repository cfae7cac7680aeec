package workspace

import (
	"context"

	"github.com/khw-dev/khw/plugins/sdk"
)

// ApplyFunc makes a file-producing resource's files.
type ApplyFunc func(ctx context.Context, req *sdk.ApplyRequest) (*Outputs, error)

// Handler serves an in-process type whose result is a set of workdir files:
// Read checks them, Delete removes them, Apply writes them.
type Handler struct{ ApplyFn ApplyFunc }

func (h Handler) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	exists, drift, err := Check(req.Workdir, req.PriorOutputs)
	if err != nil {
		return nil, err
	}
	return &sdk.ReadResponse{Exists: exists, Drift: drift, Outputs: req.PriorOutputs}, nil
}

func (h Handler) Apply(ctx context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	out, err := h.ApplyFn(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: out.Digest()}, nil
}

func (h Handler) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	return Remove(req.Workdir, req.PriorOutputs)
}
