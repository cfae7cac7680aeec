package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/khw-dev/khw/plugins/sdk"
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
			host := "DOCKER_HOST"
			if d.c != nil {
				host = d.c.DaemonHost()
			}
			d.err = dockerdError(host, d.err)
		}
	})
	return d.c, d.err
}

// dockerdError says why dockerd at host cannot be used, and what to do.
// The Docker client keeps the cause of a missing socket but replaces that
// of a refused connection or a timeout by its own sentence.
func dockerdError(host string, err error) error {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied"):
		return sdk.WithHint(fmt.Errorf("dockerd at %s refuses this user (permission denied)", host),
			"run khw as root, or add the user to the docker group (adduser $USER docker) and log in again")
	case errors.As(err, &dns):
	case errors.As(err, &op) && errors.Is(err, syscall.ENOENT):
		// "dial unix /var/run/docker.sock: connect: no such file or directory"
		return sdk.WithHint(fmt.Errorf("dockerd is not running at %s (%v)", host, op), dockerdHint)
	case errors.Is(err, syscall.ECONNREFUSED) || client.IsErrConnectionFailed(err):
		return sdk.WithHint(fmt.Errorf("dockerd is not running at %s (nothing answers there)", host), dockerdHint)
	}
	return sdk.WithHint(fmt.Errorf("cannot reach dockerd at %s: %v", host, err),
		"check that dockerd runs there and that DOCKER_HOST is right")
}

const dockerdHint = "start it (systemctl start docker, or dockerd &), or point DOCKER_HOST at one that runs"

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
