// Package registry is the recipe module `registry`: an image registry (the
// distribution registry) as a container on the lab's Docker network, where
// khw pushes the images the cluster needs when nothing can be pulled from
// the internet. Served by the docker plugin.
package registry

import (
	"fmt"
	"net/netip"
	"strings"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// Register adds the registry module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "registry.run", Provider: "docker"})
	r.Add(&runtime.Builtin{Module: "registry", Name: "run", Creates: "registry.run", Provider: "docker", Fn: run,
		Doc: "Declares an image registry (the distribution registry, plain HTTP) as a container NAME on the " +
			"Docker network at a fixed IP, its storage in the Docker volume khw-registry-NAME. " +
			"image.build pushes to it, and the nodes' containerd uses it as a mirror for docker.io and " +
			"registry.k8s.io. `khw destroy` removes the container and the volume. Offline, build its image " +
			"with `make registry-image` (khw/registry:local, from Debian's docker-registry).",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "container name and hostname (address registry.run.NAME)"},
			{Name: "ip", Type: "string", Doc: "fixed address on the network, inside its subnet"},
			{Name: "network", Type: "docker.network", Doc: "the Docker network on the lab bridge"},
			{Name: "image", Type: "string", Default: `"registry:2"`, Doc: "registry image: the stock one, or khw/registry:local offline"},
			{Name: "port", Type: "int", Default: "5000", Doc: "port the registry listens on (plain HTTP)"},
		},
		Example: `reg = registry.run("registry", ip = "10.200.1.5", network = net0, image = "khw/registry:local")`,
	})
}

// nameOK is what Docker accepts as a container name and a hostname allows.
func nameOK(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func run(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, ip string
	var network *runtime.Handle
	image := "registry:2"
	port := 5000
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ip", &ip, "network", &network,
		"image?", &image, "port?", &port); err != nil {
		return nil, err
	}
	if !nameOK(name) {
		return nil, runtime.Errorf(b, "name %q must be lower-case letters, digits and dashes (a container and host name)", name)
	}
	if network.Res.Type != "docker.network" {
		return nil, runtime.Errorf(b, "network must be a docker.network, not %s", network.Res.Addr())
	}
	s, _ := network.Attr("subnet")
	subnet := netip.MustParsePrefix(string(s.(starlark.String)))
	addr, err := netip.ParseAddr(ip)
	if err != nil || !subnet.Contains(addr) {
		return nil, runtime.Errorf(b, "ip %q must be an address inside the network's subnet %s", ip, subnet)
	}
	if addr == subnet.Masked().Addr() {
		return nil, runtime.Errorf(b, "ip %s is the network address of %s, not a host's", ip, subnet)
	}
	if port < 1 || port > 65535 {
		return nil, runtime.Errorf(b, "port %d is not a port number (1 to 65535)", port)
	}
	if image == "" || strings.ContainsAny(image, " \t\n") {
		return nil, runtime.Errorf(b, "image %q is not an image name", image)
	}
	endpoint := fmt.Sprintf("%s:%d", ip, port)
	res := &runtime.Resource{Type: "registry.run", Name: name, Provider: "docker",
		Inputs: map[string]any{"name": name, "ip": ip, "port": port, "network": network.Res.Name, "image": image,
			"volume": Volume(name)},
		Deps: []string{network.Res.Addr()},
		Show: []runtime.Field{{Key: "endpoint", Value: endpoint}, {Key: "image", Value: image}, {Key: "volume", Value: Volume(name)}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"ip":       starlark.String(ip),
		"port":     starlark.MakeInt(port),
		"endpoint": starlark.String(endpoint),
	}), nil
}

// Volume is the Docker volume that holds registry NAME's images.
func Volume(name string) string { return "khw-registry-" + name }
