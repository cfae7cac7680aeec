package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/khw-dev/khw/plugins/sdk"
)

// conns keeps one libvirt connection per URI for the plugin's life.
type conns struct {
	mu sync.Mutex
	m  map[string]*libvirt.Libvirt
}

func newConns() *conns { return &conns{m: map[string]*libvirt.Libvirt{}} }

func (c *conns) get(uri string) (*libvirt.Libvirt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.m[uri]; l != nil && l.IsConnected() {
		return l, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %v", uri, err)
	}
	l, err := libvirt.ConnectToURI(u)
	if err != nil {
		return nil, connectError(uri, err)
	}
	c.m[uri] = l
	return l, nil
}

// connectError says why libvirtd at uri cannot be used, and what to do.
func connectError(uri string, err error) error {
	cause := err
	var op *net.OpError
	if errors.As(err, &op) {
		cause = op // "dial unix /run/libvirt/libvirt-sock: connect: no such file or directory"
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return sdk.WithHint(fmt.Errorf("libvirtd is not running at %s (%v)", uri, cause),
			"start it (systemctl start libvirtd, or libvirtd -d), or point --set libvirt_uri at one that runs")
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return sdk.WithHint(fmt.Errorf("libvirtd at %s refuses this user (%v)", uri, cause),
			"run khw as root, or add the user to the libvirt group (adduser $USER libvirt) and log in again")
	}
	return sdk.WithHint(fmt.Errorf("cannot reach libvirtd at %s: %v", uri, err),
		"check that libvirtd runs there and that the URI is right (--set libvirt_uri)")
}
