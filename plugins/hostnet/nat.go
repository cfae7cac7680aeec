package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/khw-dev/khw/plugins/sdk"
)

type nat struct{}

type natConfig struct {
	Bridge        string `json:"bridge"`
	Subnet        string `json:"subnet"`
	ExternalIface string `json:"external_iface"`
}

type rule struct {
	Table, Chain string
	Spec         []string
}

type natOutputs struct {
	ExternalIface  string     `json:"external_iface"`
	Rules          [][]string `json:"rules"` // table, chain, spec...
	ForwardingPrev string     `json:"forwarding_prev"`
}

const forwarding = "net.ipv4.conf.all.forwarding"

// rules are the post's three, each marked with a comment naming the
// resource so that khw can tell its own rules from anyone else's. MASQUERADE
// is limited to the lab subnet (the post masquerades everything leaving the
// external interface).
func natRules(c natConfig, ext, addr string) []rule {
	mark := []string{"-m", "comment", "--comment", "khw:" + addr}
	return []rule{
		{"nat", "POSTROUTING", append([]string{"-s", c.Subnet, "-o", ext}, append(mark, "-j", "MASQUERADE")...)},
		{"filter", "FORWARD", append([]string{"-i", ext, "-o", c.Bridge, "-m", "state", "--state", "RELATED,ESTABLISHED"}, append(mark, "-j", "ACCEPT")...)},
		{"filter", "FORWARD", append([]string{"-i", c.Bridge, "-o", ext}, append(mark, "-j", "ACCEPT")...)},
	}
}

func (o natOutputs) rules() []rule {
	var out []rule
	for _, r := range o.Rules {
		if len(r) > 2 {
			out = append(out, rule{r[0], r[1], r[2:]})
		}
	}
	return out
}

// defaultIface is the interface of the default route: the post's
// EXTERNAL_IFACE, found instead of hard-coded as wlan0.
func defaultIface() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", err
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errors.New("no default route, so no external interface to NAT through: give net.nat(external_iface = ...)")
}

func ipt() (*iptables.IPTables, error) {
	t, err := iptables.New()
	if err != nil {
		return nil, fmt.Errorf("iptables: %v (install the iptables package)", err)
	}
	return t, nil
}

func (nat) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var o natOutputs
	if err := json.Unmarshal(req.PriorOutputs, &o); err != nil {
		return nil, err
	}
	t, err := ipt()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, r := range o.rules() {
		ok, err := t.Exists(r.Table, r.Chain, r.Spec...)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, r.Table+"/"+r.Chain+" "+strings.Join(r.Spec, " "))
		}
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	if len(missing) > 0 {
		resp.Drift = "rule missing: " + strings.Join(missing, "; ")
	} else if v, err := readSysctl(forwarding); err != nil || v != "1" {
		resp.Drift = forwarding + " is not 1"
	}
	return resp, nil
}

func (nat) Apply(_ context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c natConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	var out natOutputs
	if len(req.PriorOutputs) > 0 {
		_ = json.Unmarshal(req.PriorOutputs, &out)
	}
	ext := c.ExternalIface
	if ext == "" {
		var err error
		if ext, err = defaultIface(); err != nil {
			return nil, err
		}
		progress("external interface: " + ext)
	}
	t, err := ipt()
	if err != nil {
		return nil, err
	}
	// A replacement may move to another interface: drop the old rules first.
	for _, r := range out.rules() {
		_ = t.DeleteIfExists(r.Table, r.Chain, r.Spec...)
	}
	if out.ForwardingPrev == "" {
		if out.ForwardingPrev, err = readSysctl(forwarding); err != nil {
			return nil, err
		}
	}
	out.ExternalIface, out.Rules = ext, nil
	for _, r := range natRules(c, ext, req.Resource.Address) {
		if err := t.AppendUnique(r.Table, r.Chain, r.Spec...); err != nil {
			return nil, needsRoot(fmt.Errorf("adding %s rule: %w", r.Chain, err))
		}
		out.Rules = append(out.Rules, append([]string{r.Table, r.Chain}, r.Spec...))
	}
	if err := writeSysctl(forwarding, "1"); err != nil {
		return nil, err
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: ext + " " + c.Bridge + " " + c.Subnet}, nil
}

func (nat) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	var o natOutputs
	if err := json.Unmarshal(req.PriorOutputs, &o); err != nil {
		return err
	}
	t, err := ipt()
	if err != nil {
		return err
	}
	for _, r := range o.rules() {
		if err := t.DeleteIfExists(r.Table, r.Chain, r.Spec...); err != nil {
			return err
		}
	}
	if o.ForwardingPrev != "" {
		return writeSysctl(forwarding, o.ForwardingPrev)
	}
	return nil
}
