// Package hostnet is the recipe module `net`: the host side of the post's
// "Linux Bridge & NAT" section (served by the hostnet plugin), and pure
// address helpers that recipes use to validate a topology.
package hostnet

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

// Provider is the plugin that serves the net.* resources.
const Provider = "hostnet"

// NodeNameRE is what a node's host name may be (an RFC 1123 label).
var NodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// Register adds the net module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "net.bridge", Provider: Provider})
	r.AddType(runtime.TypeSpec{Type: "net.nat", Provider: Provider})
	r.AddType(runtime.TypeSpec{Type: "net.sysctl", Provider: Provider})
	r.AddType(runtime.TypeSpec{Type: "net.hosts", Provider: Provider})
	r.Add(&runtime.Builtin{Module: "net", Name: "bridge", Creates: "net.bridge", Provider: "hostnet", Fn: bridge,
		Doc: "Declares a Linux bridge holding the host's address on the lab subnet, up " +
			"(the post's `ip link add br0 type bridge; ip addr add 10.200.1.1/24 dev br0`).",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "interface name, at most 15 characters"},
			{Name: "address", Type: "string", Doc: "the host's address with prefix, e.g. 10.200.1.1/24"},
			{Name: "ports", Type: "list of strings", Default: "[]", Doc: "existing interfaces to attach to the bridge, e.g. the link to a second hypervisor host, so its nodes share the subnet"},
		},
		Example: `br0 = net.bridge("br0", address = "10.200.1.1/24")`,
	})
	r.Add(&runtime.Builtin{Module: "net", Name: "nat", Creates: "net.nat", Provider: "hostnet", Fn: nat,
		Doc: "Declares NAT for a bridge: MASQUERADE out of the external interface, the two FORWARD " +
			"rules (RELATED,ESTABLISHED in; bridge out) and net.ipv4.conf.all.forwarding=1. " +
			"Its address is net.nat.BRIDGE, after the bridge's name.",
		Args: []runtime.Arg{
			{Name: "bridge", Type: "net.bridge", Doc: "the bridge whose traffic goes out"},
			{Name: "external_iface", Type: "string", Default: `""`, Doc: "outgoing interface; empty means the host's default-route interface"},
		},
		Example: `net.nat(br0)`,
	})
	r.Add(&runtime.Builtin{Module: "net", Name: "sysctl", Creates: "net.sysctl", Provider: "hostnet", Fn: sysctl,
		Doc:     "Declares kernel settings (the post's bridge-nf-call-* = 0). Destroy restores the values found before.",
		Args:    []runtime.Arg{{Name: "name", Type: "string", Doc: "resource name"}, {Name: "values", Type: "dict", Doc: "sysctl key to value"}},
		Example: `net.sysctl("bridge-nf", {"net.bridge.bridge-nf-call-iptables": "0"})`,
	})
	r.Add(&runtime.Builtin{Module: "net", Name: "hosts", Creates: "net.hosts", Provider: "hostnet", Fn: hosts,
		Doc: "Declares the post's /etc/hosts entries in a block khw marks and owns; other lines are never touched.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "resource and block name"},
			{Name: "entries", Type: "dict", Doc: "host name to IP"},
			{Name: "file", Type: "string", Default: `"/etc/hosts"`, Doc: "the hosts file (tests use a scratch file)"},
		},
		Example: `net.hosts("lab", {"m1": "10.200.1.10", "proxy": "10.200.1.15"})`,
	})
	for _, h := range helpers {
		r.Add(h)
	}
}

// ---- resources ----

func bridge(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, address string
	var portsv starlark.Value = starlark.NewList(nil)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "address", &address, "ports?", &portsv); err != nil {
		return nil, err
	}
	if !ifnameRE.MatchString(name) {
		return nil, runtime.Errorf(b, "name %q is not a valid interface name (1 to 15 letters, digits, '_', '.', '-')", name)
	}
	ports, err := starconv.Strings("ports", portsv)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	for _, p := range ports {
		if !ifnameRE.MatchString(p) || p == name {
			return nil, runtime.Errorf(b, "port %q is not a valid interface name other than the bridge's own", p)
		}
	}
	pfx, err := netip.ParsePrefix(address)
	if err != nil || !pfx.Addr().Is4() {
		return nil, runtime.Errorf(b, "address %q must be an IPv4 address with prefix length, e.g. 10.200.1.1/24", address)
	}
	if pfx.Addr() == pfx.Masked().Addr() {
		return nil, runtime.Errorf(b, "address %q is the network address of its subnet; give the host's address, e.g. %s", address, pfx.Masked().Addr().Next())
	}
	res := &runtime.Resource{Type: "net.bridge", Name: name, Provider: Provider,
		Inputs: map[string]any{"name": name, "address": pfx.String()},
		Show:   []runtime.Field{{Key: "address", Value: pfx.String()}},
	}
	if len(ports) > 0 {
		// Only when given, so labs made before ports existed keep their digest.
		res.Inputs["ports"] = starconv.StringsToAny(ports)
		res.Show = append(res.Show, runtime.Field{Key: "ports", Value: strings.Join(ports, ", ")})
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"ifname": starlark.String(name),
		"ip":     starlark.String(pfx.Addr().String()),
		"subnet": starlark.String(pfx.Masked().String()),
	}), nil
}

// BridgeSubnet returns a bridge handle's subnet, or an error naming what
// was passed instead.
func BridgeSubnet(v *runtime.Handle) (netip.Prefix, error) {
	if v.Res.Type != "net.bridge" {
		return netip.Prefix{}, fmt.Errorf("bridge must be a net.bridge, not %s", v.Res.Addr())
	}
	s, _ := v.Attr("subnet")
	return netip.MustParsePrefix(string(s.(starlark.String))), nil
}

func nat(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var br *runtime.Handle
	var ext string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "bridge", &br, "external_iface?", &ext); err != nil {
		return nil, err
	}
	subnet, err := BridgeSubnet(br)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	if ext != "" && !ifnameRE.MatchString(ext) {
		return nil, runtime.Errorf(b, "external_iface %q is not a valid interface name", ext)
	}
	shown := ext
	if shown == "" {
		shown = "(the default-route interface)"
	}
	res := &runtime.Resource{Type: "net.nat", Name: br.Res.Name, Provider: Provider,
		Inputs: map[string]any{"bridge": br.Res.Name, "subnet": subnet.String(), "external_iface": ext},
		Deps:   []string{br.Res.Addr()},
		Show: []runtime.Field{
			{Key: "masquerade", Value: subnet.String() + " out of " + shown},
			{Key: "forward", Value: br.Res.Name + " <-> " + shown},
			{Key: "sysctl", Value: "net.ipv4.conf.all.forwarding=1"},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}

var sysctlRE = regexp.MustCompile(`^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$`)

func sysctl(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var values *starlark.Dict
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "values", &values); err != nil {
		return nil, err
	}
	v, err := starconv.ToGo(values)
	if err != nil {
		return nil, runtime.Errorf(b, "values: %v", err)
	}
	in := map[string]any{}
	var show []string
	for k, val := range v.(map[string]any) {
		if !sysctlRE.MatchString(k) {
			return nil, runtime.Errorf(b, "%q is not a sysctl key such as net.ipv4.conf.all.forwarding", k)
		}
		s := fmt.Sprint(val)
		in[k] = s
		show = append(show, k+"="+s)
	}
	if len(in) == 0 {
		return nil, runtime.Errorf(b, "values is empty")
	}
	sort.Strings(show)
	res := &runtime.Resource{Type: "net.sysctl", Name: name, Provider: Provider,
		Inputs: map[string]any{"values": in},
		Show:   []runtime.Field{{Key: "values", Value: strings.Join(show, " ")}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func hosts(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var entries *starlark.Dict
	file := "/etc/hosts"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "entries", &entries, "file?", &file); err != nil {
		return nil, err
	}
	v, err := starconv.ToGo(entries)
	if err != nil {
		return nil, runtime.Errorf(b, "entries: %v", err)
	}
	in := map[string]any{}
	var lines []string
	for host, ip := range v.(map[string]any) {
		s, ok := ip.(string)
		if _, perr := netip.ParseAddr(s); !ok || perr != nil {
			return nil, runtime.Errorf(b, "entries[%q]: %v is not an IP address", host, ip)
		}
		if !hostnameRE.MatchString(host) {
			return nil, runtime.Errorf(b, "entries: %q is not a host name", host)
		}
		in[host] = s
		lines = append(lines, s+" "+host)
	}
	if !strings.HasPrefix(file, "/") {
		return nil, runtime.Errorf(b, "file %q must be an absolute path", file)
	}
	sort.Strings(lines)
	res := &runtime.Resource{Type: "net.hosts", Name: name, Provider: Provider,
		Inputs: map[string]any{"entries": in, "file": file},
		Show:   []runtime.Field{{Key: "file", Value: file}, {Key: "entries", Value: strings.Join(lines, ", ")}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}
