package main

import (
	"fmt"
	"net/url"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"
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
		return nil, fmt.Errorf("cannot reach libvirtd at %s: %v (is libvirtd running? start it with `libvirtd -d`, or check the URI)", uri, err)
	}
	c.m[uri] = l
	return l, nil
}
