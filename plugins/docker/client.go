package main

import (
	"context"
	"fmt"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// docker connects to dockerd once, on first use.
type docker struct {
	once sync.Once
	c    *client.Client
	err  error
}

func newDocker() *docker { return &docker{} }

func (d *docker) client(ctx context.Context) (*client.Client, error) {
	d.once.Do(func() {
		d.c, d.err = client.New(client.FromEnv) // negotiates the API version (dockerd 20.10 speaks 1.41)
		if d.err == nil {
			if _, err := d.c.Ping(ctx, client.PingOptions{}); err != nil {
				d.err = err
			}
		}
		if d.err != nil {
			d.err = fmt.Errorf("cannot reach dockerd (%v): start it (dockerd &), or set DOCKER_HOST", d.err)
		}
	})
	return d.c, d.err
}

func notFound(err error) bool { return cerrdefs.IsNotFound(err) }

// inspect returns the container called name, or nil when there is none.
func inspect(ctx context.Context, cl *client.Client, name string) (*container.InspectResponse, error) {
	res, err := cl.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &res.Container, nil
}
