package sdk

import (
	"context"
	"fmt"
	"sync"
)

// ReadResult answers one request of a ReadMany: a response, or the error
// that kept that one resource from being read.
type ReadResult struct {
	Response *ReadResponse
	Err      error
}

// BatchReader is a Provider that can read several recorded resources in
// one call, so that it can share round trips between them: the ssh
// provider reads everything khw placed on a node with one command, where
// one Read per resource would cost a command each. results[i] answers
// reqs[i]; err is for a failure of the whole call.
//
// A provider need not implement it: khw then reads each resource on its
// own (ReadEach), in parallel, as it always has.
type BatchReader interface {
	ReadMany(ctx context.Context, reqs []*ReadRequest) (results []ReadResult, err error)
}

// ReadAll reads every request through p: with one ReadMany when p is a
// BatchReader, otherwise with ReadEach.
// Every result it returns has a Response or an Err.
func ReadAll(ctx context.Context, p Handler, reqs []*ReadRequest) ([]ReadResult, error) {
	b, ok := p.(BatchReader)
	if !ok {
		return ReadEach(ctx, p, reqs), nil
	}
	rs, err := b.ReadMany(ctx, reqs)
	if err != nil {
		return nil, err
	}
	if len(rs) != len(reqs) {
		return nil, fmt.Errorf("provider answered %d of %d reads", len(rs), len(reqs))
	}
	for i := range rs {
		if rs[i].Response == nil && rs[i].Err == nil {
			rs[i].Err = fmt.Errorf("%s: the provider gave no answer", reqs[i].Resource.Address)
		}
	}
	return rs, nil
}

// readParallel bounds the Reads ReadEach has in flight.
const readParallel = 16

// ReadEach reads each request with its own Read, up to readParallel at
// once. A warning of one read names its resource.
func ReadEach(ctx context.Context, h Handler, reqs []*ReadRequest) []ReadResult {
	out := make([]ReadResult, len(reqs))
	sem := make(chan struct{}, readParallel)
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx := WithWarnings(ctx, func(msg string) { Warnf(ctx, "%s: %s", req.Resource.Address, msg) })
			out[i].Response, out[i].Err = h.Read(rctx, req)
		}()
	}
	wg.Wait()
	return out
}
