// Package docker is the recipe module `docker`: the post's Docker network
// on the lab bridge, served by the docker plugin.
package docker

import (
	"net/netip"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/builtins/hostnet"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the docker module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "docker.network", Provider: "docker"})
	r.Add(&runtime.Builtin{Module: "docker", Name: "network", Creates: "docker.network", Provider: "docker", Fn: network,
		Doc: "Declares a Docker bridge network that adopts the lab bridge (the post's `docker network create " +
			"--driver=bridge --subnet --ip-range -o com.docker.network.bridge.name=br0 br0`). " +
			"Its address is docker.network.BRIDGE, after the bridge's name.",
		Args: []runtime.Arg{
			{Name: "bridge", Type: "net.bridge", Doc: "the bridge to adopt; its name names the network, its address is the gateway"},
			{Name: "ip_range", Type: "string", Default: `""`, Doc: "addresses Docker may hand out; empty is the whole subnet"},
		},
		Example: `docker.network(br0)`,
	})
}

func network(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var br *runtime.Handle
	var ipRange string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "bridge", &br, "ip_range?", &ipRange); err != nil {
		return nil, err
	}
	subnet, err := hostnet.BridgeSubnet(br)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	if ipRange == "" {
		ipRange = subnet.String()
	}
	r, err := netip.ParsePrefix(ipRange)
	if err != nil || r.Bits() < subnet.Bits() || !subnet.Contains(r.Addr()) {
		return nil, runtime.Errorf(b, "ip_range %q must be a network inside %s", ipRange, subnet)
	}
	gw, _ := br.Attr("ip")
	res := &runtime.Resource{Type: "docker.network", Name: br.Res.Name, Provider: "docker",
		Inputs: map[string]any{"name": br.Res.Name, "bridge": br.Res.Name, "subnet": subnet.String(),
			"gateway": string(gw.(starlark.String)), "ip_range": ipRange},
		Deps: []string{br.Res.Addr()},
		Show: []runtime.Field{{Key: "subnet", Value: subnet.String()}, {Key: "ip_range", Value: ipRange}, {Key: "bridge", Value: br.Res.Name}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"subnet": starlark.String(subnet.String()),
	}), nil
}
