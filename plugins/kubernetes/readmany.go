package main

import (
	"context"
	"sync"

	"github.com/khw-dev/khw/plugins/sdk"
)

// provider is the kubernetes plugin's Provider: the Mux, and ReadMany.
type provider struct {
	*sdk.Mux
}

// ReadMany reads every k8s.apply back at once, sharing one connection per
// API server: one set of clients, one discovery of the API and one
// readiness check per kubeconfig, where Read makes its own for each
// resource; every object's GET (and the dry run of one written since khw
// recorded it) go out in parallel. A plan
// then costs about one round of requests to the API server however many
// manifests the recipe applies, as the ssh plugin's costs one command per
// node.
func (p provider) ReadMany(ctx context.Context, reqs []*sdk.ReadRequest) ([]sdk.ReadResult, error) {
	ss := &sessions{}
	out := make([]sdk.ReadResult, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if req.Resource.Type != "k8s.apply" {
				out[i].Response, out[i].Err = p.Mux.Read(ctx, req)
				return
			}
			rctx := sdk.WithWarnings(ctx, func(msg string) { sdk.Warnf(ctx, "%s: %s", req.Resource.Address, msg) })
			out[i].Response, out[i].Err = read(rctx, req, ss)
		}()
	}
	wg.Wait()
	return out, nil
}

// sessions are the API servers one ReadMany (or one Read) talks to, by
// kubeconfig: each connected and checked ready once, whoever asks first.
type sessions struct {
	mu sync.Mutex
	by map[string]*session
}

type session struct {
	once sync.Once
	c    *cluster
	err  error
}

// ready is the connection through the kubeconfig at path, its API server
// checked ready (waiting up to the short bound, as a Read always has).
func (ss *sessions) ready(ctx context.Context, path string) (*cluster, error) {
	ss.mu.Lock()
	if ss.by == nil {
		ss.by = map[string]*session{}
	}
	s := ss.by[path]
	if s == nil {
		s = &session{}
		ss.by[path] = s
	}
	ss.mu.Unlock()
	s.once.Do(func() {
		if s.c, s.err = connect(path); s.err == nil {
			s.err = s.c.waitReady(ctx, shortBound, nil)
		}
	})
	return s.c, s.err
}

// readParallel bounds the requests one resource's read has in flight.
const readParallel = 8

// each runs fn for 0..n-1, up to readParallel at once, and returns the
// first error (the others are cancelled through ctx).
func each(ctx context.Context, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, readParallel)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}
