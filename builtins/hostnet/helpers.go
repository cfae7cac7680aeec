package hostnet

import (
	"math/big"
	"net/netip"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// Pure address helpers: no resource, no I/O. recipes/lib validates a
// topology with them.
var helpers = []*runtime.Builtin{
	{Module: "net", Name: "is_ip", Fn: isIP,
		Doc:     "True when s is an IPv4 or IPv6 address.",
		Args:    []runtime.Arg{{Name: "s", Type: "string", Doc: "text to check"}},
		Example: `net.is_ip("10.200.1.10")  # True`},
	{Module: "net", Name: "is_hostname", Fn: isHostname,
		Doc:     "True when s is a valid node host name: lower-case letters, digits and '-', at most 63 characters.",
		Args:    []runtime.Arg{{Name: "s", Type: "string", Doc: "text to check"}},
		Example: `net.is_hostname("m1")  # True`},
	{Module: "net", Name: "is_cidr", Fn: isCIDR,
		Doc:     "True when s is a network in CIDR form whose host bits are zero.",
		Args:    []runtime.Arg{{Name: "s", Type: "string", Doc: "text to check"}},
		Example: `net.is_cidr("10.200.1.0/24")  # True`},
	{Module: "net", Name: "cidr_contains", Fn: cidrContains,
		Doc:     "True when the address ip lies in the network cidr.",
		Args:    []runtime.Arg{{Name: "cidr", Type: "string", Doc: "network"}, {Name: "ip", Type: "string", Doc: "address"}},
		Example: `net.cidr_contains("10.200.1.0/24", "10.200.1.10")  # True`},
	{Module: "net", Name: "cidrs_overlap", Fn: cidrsOverlap,
		Doc:     "True when two networks share any address.",
		Args:    []runtime.Arg{{Name: "a", Type: "string", Doc: "network"}, {Name: "b", Type: "string", Doc: "network"}},
		Example: `net.cidrs_overlap("10.200.1.0/24", "10.200.0.0/16")  # True`},
	{Module: "net", Name: "host", Fn: hostN,
		Doc:     "The n-th address of a network (1 is the first host address).",
		Args:    []runtime.Arg{{Name: "cidr", Type: "string", Doc: "network"}, {Name: "n", Type: "int", Doc: "offset from the network address"}},
		Example: `net.host("10.32.0.0/24", 1)  # "10.32.0.1"`},
	{Module: "net", Name: "index", Fn: index,
		Doc:     "The number of the address ip in the network cidr: the inverse of net.host.",
		Args:    []runtime.Arg{{Name: "cidr", Type: "string", Doc: "network"}, {Name: "ip", Type: "string", Doc: "an address inside it"}},
		Example: `net.index("10.200.1.0/24", "10.200.1.13")  # 13`},
}

func isIP(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s); err != nil {
		return nil, err
	}
	_, err := netip.ParseAddr(s)
	return starlark.Bool(err == nil), nil
}

func isHostname(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s); err != nil {
		return nil, err
	}
	return starlark.Bool(NodeNameRE.MatchString(s)), nil
}

func isCIDR(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s); err != nil {
		return nil, err
	}
	p, err := netip.ParsePrefix(s)
	return starlark.Bool(err == nil && p == p.Masked()), nil
}

func prefix(b *starlark.Builtin, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, runtime.Errorf(b, "%q is not a network in CIDR form (e.g. 10.200.1.0/24)", s)
	}
	return p, nil
}

// cidrAndIP unpacks the (cidr, ip) arguments of cidr_contains and index.
func cidrAndIP(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (netip.Prefix, netip.Addr, error) {
	var c, ip string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cidr", &c, "ip", &ip); err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	p, err := prefix(b, c)
	if err != nil {
		return p, netip.Addr{}, err
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return p, a, runtime.Errorf(b, "%q is not an IP address", ip)
	}
	return p, a, nil
}

func cidrContains(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	p, a, err := cidrAndIP(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.Bool(p.Contains(a)), nil
}

func cidrsOverlap(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x, y string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "a", &x, "b", &y); err != nil {
		return nil, err
	}
	p, err := prefix(b, x)
	if err != nil {
		return nil, err
	}
	q, err := prefix(b, y)
	if err != nil {
		return nil, err
	}
	return starlark.Bool(p.Overlaps(q)), nil
}

func hostN(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var c string
	var n int
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cidr", &c, "n", &n); err != nil {
		return nil, err
	}
	p, err := prefix(b, c)
	if err != nil {
		return nil, err
	}
	a, ok := nth(p.Masked().Addr(), n)
	if !ok || !p.Contains(a) {
		return nil, runtime.Errorf(b, "%s has no address number %d", c, n)
	}
	return starlark.String(a.String()), nil
}

func index(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	p, a, err := cidrAndIP(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	if !p.Contains(a) {
		return nil, runtime.Errorf(b, "%s is not an address inside %s", a, p)
	}
	n := new(big.Int).SetBytes(a.AsSlice())
	n.Sub(n, new(big.Int).SetBytes(p.Masked().Addr().AsSlice()))
	return starlark.MakeBigInt(n), nil
}

// nth is the address n after a, by arithmetic rather than n steps (an IPv6
// network has more addresses than a loop can count); false when n is
// negative or past the last address.
func nth(a netip.Addr, n int) (netip.Addr, bool) {
	if n < 0 {
		return netip.Addr{}, false
	}
	x := new(big.Int).SetBytes(a.AsSlice())
	x.Add(x, big.NewInt(int64(n)))
	if x.BitLen() > a.BitLen() {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(x.FillBytes(make([]byte, a.BitLen()/8)))
}
