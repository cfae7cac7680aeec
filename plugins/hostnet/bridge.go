package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/khw-dev/khw/plugins/sdk"
)

type bridge struct{}

type bridgeConfig struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Ports   []string `json:"ports,omitempty"`
}

type bridgeOutputs struct {
	// CreatedLink and AddedAddress say what khw made, so that delete
	// removes that and no more.
	CreatedLink  bool `json:"created_link"`
	AddedAddress bool `json:"added_address"`
}

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, err
}

func hasAddr(l netlink.Link, a *netlink.Addr) (bool, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if x.IPNet.String() == a.IPNet.String() {
			return true, nil
		}
	}
	return false, nil
}

func (bridge) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c bridgeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	l, err := linkByName(c.Name)
	if err != nil || l == nil {
		return &sdk.ReadResponse{Exists: false}, err
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	addr, _ := netlink.ParseAddr(c.Address)
	switch ok, err := hasAddr(l, addr); {
	case err != nil:
		return nil, err
	case l.Type() != "bridge":
		resp.Drift = fmt.Sprintf("%s is a %s, not a bridge", c.Name, l.Type())
	case !ok:
		resp.Drift = fmt.Sprintf("%s does not hold %s", c.Name, c.Address)
	case l.Attrs().Flags&1 == 0: // net.FlagUp
		resp.Drift = c.Name + " is down"
	default:
		for _, p := range c.Ports {
			pl, err := linkByName(p)
			if err != nil {
				return nil, err
			}
			if pl == nil || pl.Attrs().MasterIndex != l.Attrs().Index {
				resp.Drift = fmt.Sprintf("%s is not a port of %s", p, c.Name)
				break
			}
		}
	}
	return resp, nil
}

// attach makes each port a member of the bridge, up.
func attach(br netlink.Link, ports []string, progress sdk.Progress) error {
	for _, p := range ports {
		pl, err := linkByName(p)
		if err != nil {
			return err
		}
		if pl == nil {
			return fmt.Errorf("port %s of bridge %s does not exist: create the link first (e.g. the veth or NIC to the other hypervisor host) or drop it from ports", p, br.Attrs().Name)
		}
		if pl.Attrs().MasterIndex != br.Attrs().Index {
			progress("attaching " + p + " to " + br.Attrs().Name)
			if err := netlink.LinkSetMaster(pl, br); err != nil {
				return needsRoot(fmt.Errorf("attaching %s to %s: %w", p, br.Attrs().Name, err))
			}
		}
		if err := netlink.LinkSetUp(pl); err != nil {
			return fmt.Errorf("setting %s up: %v", p, err)
		}
	}
	return nil
}

func (bridge) Apply(_ context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c bridgeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	var out bridgeOutputs
	if len(req.PriorOutputs) > 0 {
		_ = json.Unmarshal(req.PriorOutputs, &out)
	}
	addr, err := netlink.ParseAddr(c.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %v", c.Address, err)
	}
	l, err := linkByName(c.Name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		progress("adding bridge " + c.Name)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Name}}); err != nil {
			return nil, needsRoot(fmt.Errorf("adding bridge %s: %w", c.Name, err))
		}
		out.CreatedLink = true
		if l, err = netlink.LinkByName(c.Name); err != nil {
			return nil, err
		}
	} else if l.Type() != "bridge" {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge: remove it or choose another name", c.Name, l.Type())
	}
	has, err := hasAddr(l, addr)
	if err != nil {
		return nil, err
	}
	if !has {
		if err := netlink.AddrAdd(l, addr); err != nil {
			return nil, needsRoot(fmt.Errorf("adding %s to %s: %w", c.Address, c.Name, err))
		}
		out.AddedAddress = true
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("setting %s up: %v", c.Name, err)
	}
	if err := attach(l, c.Ports, progress); err != nil {
		return nil, err
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: c.Name + " " + c.Address}, nil
}

func (bridge) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	var c bridgeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	var out bridgeOutputs
	_ = json.Unmarshal(req.PriorOutputs, &out)
	l, err := linkByName(c.Name)
	if err != nil || l == nil {
		return err
	}
	if out.CreatedLink {
		return netlink.LinkDel(l)
	}
	// A bridge that was there before: give its ports back.
	for _, p := range c.Ports {
		if pl, _ := linkByName(p); pl != nil && pl.Attrs().MasterIndex == l.Attrs().Index {
			if err := netlink.LinkSetNoMaster(pl); err != nil {
				return fmt.Errorf("detaching %s from %s: %v", p, c.Name, err)
			}
		}
	}
	if out.AddedAddress {
		addr, _ := netlink.ParseAddr(c.Address)
		if has, _ := hasAddr(l, addr); has {
			return netlink.AddrDel(l, addr)
		}
	}
	return nil
}
