package main

import (
	"context"
	"fmt"
	"net/netip"

	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/khw-dev/khw/plugins/sdk"
)

type network struct{ d *docker }

type networkConfig struct {
	Name    string `json:"name"`
	Bridge  string `json:"bridge"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	IPRange string `json:"ip_range"`
}

const managedLabel = "dev.khw.managed"

func (n network) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c networkConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return nil, err
	}
	res, err := cl.NetworkInspect(ctx, c.Name, client.NetworkInspectOptions{})
	if notFound(err) {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	nw := res.Network
	if nw.Options["com.docker.network.bridge.name"] != c.Bridge {
		resp.Drift = fmt.Sprintf("network %s is not on bridge %s", c.Name, c.Bridge)
	} else if len(nw.IPAM.Config) == 0 || nw.IPAM.Config[0].Subnet.String() != c.Subnet {
		resp.Drift = fmt.Sprintf("network %s has another subnet", c.Name)
	}
	return resp, nil
}

func (n network) Apply(ctx context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	var c networkConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return nil, err
	}
	if res, err := cl.NetworkInspect(ctx, c.Name, client.NetworkInspectOptions{}); err == nil {
		if res.Network.Labels[managedLabel] != "true" {
			return nil, fmt.Errorf("a Docker network named %s exists and khw did not make it: remove it (docker network rm %s) or rename the bridge", c.Name, c.Name)
		}
		if _, err := cl.NetworkRemove(ctx, c.Name, client.NetworkRemoveOptions{}); err != nil {
			return nil, fmt.Errorf("removing the old network %s: %v", c.Name, err)
		}
	}
	subnet, err1 := netip.ParsePrefix(c.Subnet)
	gw, err2 := netip.ParseAddr(c.Gateway)
	ipRange, err3 := netip.ParsePrefix(c.IPRange)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, fmt.Errorf("bad addresses in %s/%s/%s", c.Subnet, c.Gateway, c.IPRange)
	}
	// The post's: docker network create --driver=bridge --subnet --ip-range
	// -o com.docker.network.bridge.name=br0 br0. Docker adopts the bridge
	// that host networking made, which already holds the gateway address.
	res, err := cl.NetworkCreate(ctx, c.Name, client.NetworkCreateOptions{
		Driver:  "bridge",
		IPAM:    &dnet.IPAM{Driver: "default", Config: []dnet.IPAMConfig{{Subnet: subnet, Gateway: gw, IPRange: ipRange}}},
		Options: map[string]string{"com.docker.network.bridge.name": c.Bridge},
		Labels:  map[string]string{managedLabel: "true"},
	})
	if err != nil {
		return nil, fmt.Errorf("creating network %s on %s: %v", c.Name, c.Bridge, err)
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]string{"id": res.ID, "name": c.Name}), Digest: res.ID}, nil
}

func (n network) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	var c networkConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return err
	}
	_, err = cl.NetworkRemove(ctx, c.Name, client.NetworkRemoveOptions{})
	if notFound(err) {
		return nil
	}
	return err
}
