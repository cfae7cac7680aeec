// Package lb is the recipe module `lb`: the post's nginx load balancer in
// front of the API servers, served by the docker plugin.
package lb

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"text/template"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// Register adds the lb module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "lb.nginx", Provider: "docker"})
	r.Add(&runtime.Builtin{Module: "lb", Name: "nginx", Creates: "lb.nginx", Provider: "docker", Fn: nginx,
		Doc: "Declares the post's load balancer: an nginx container on the Docker network at a fixed IP " +
			"whose stream config sends every listen port to each upstream's API port. The config is " +
			"rendered from the upstreams, so adding a controller adds an upstream.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "container hostname (the post's `proxy`)"},
			{Name: "ip", Type: "string", Doc: "fixed address on the network"},
			{Name: "network", Type: "docker.network", Doc: "the Docker network on the lab bridge"},
			{Name: "upstreams", Type: "list of vm", Doc: "the controllers"},
			{Name: "ports", Type: "list of int", Default: "[6443, 443]", Doc: "ports nginx listens on"},
			{Name: "upstream_port", Type: "int", Default: "6443", Doc: "the API server port on each upstream"},
			{Name: "image", Type: "string", Default: `"nginx:latest"`, Doc: "image with nginx's stream module"},
		},
		Example: `lb.nginx("proxy", ip = "10.200.1.15", network = net0, upstreams = [m1, m2])`,
	})
}

var confTmpl = template.Must(template.New("nginx").Parse(`{{if .LoadModule}}load_module {{.LoadModule}};
{{end}}events {}

stream {
    upstream kubernetes {
{{- range .Upstreams}}
        server {{.}};
{{- end}}
    }
    server {
{{- range .Ports}}
        listen {{.}};
{{- end}}
        proxy_pass kubernetes;
    }
}
`))

// Render is the nginx config for the upstreams ("ip:port") and ports. The
// stock nginx image has the stream module built in; an image built from
// Debian's packages needs loadModule.
func Render(upstreams []string, ports []int, loadModule string) string {
	var b bytes.Buffer
	_ = confTmpl.Execute(&b, map[string]any{"Upstreams": upstreams, "Ports": ports, "LoadModule": loadModule})
	return b.String()
}

func nginx(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, ip string
	var network *runtime.Handle
	var ups *starlark.List
	var portsv *starlark.List = starlark.NewList([]starlark.Value{starlark.MakeInt(6443), starlark.MakeInt(443)})
	upPort := 6443
	image := "nginx:latest"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ip", &ip, "network", &network,
		"upstreams", &ups, "ports?", &portsv, "upstream_port?", &upPort, "image?", &image); err != nil {
		return nil, err
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
	if ups.Len() == 0 {
		return nil, runtime.Errorf(b, "upstreams is empty: the load balancer needs at least one controller")
	}
	var upstreams []string
	var upIPs []any
	for i := 0; i < ups.Len(); i++ {
		h, ok := ups.Index(i).(*runtime.Handle)
		if !ok || (h.Res.Type != "vm" && h.Res.Type != "node.host") {
			return nil, runtime.Errorf(b, "upstreams[%d] must be a node (vm or node.host), not %s", i, ups.Index(i).Type())
		}
		v, _ := h.Attr("ip")
		ip := string(v.(starlark.String))
		upstreams = append(upstreams, fmt.Sprintf("%s:%d", ip, upPort))
		upIPs = append(upIPs, ip)
	}
	var ports []int
	var portsAny []any
	for i := 0; i < portsv.Len(); i++ {
		p, err := starlark.AsInt32(portsv.Index(i))
		if err != nil || p < 1 || p > 65535 {
			return nil, runtime.Errorf(b, "ports[%d] must be a port number from 1 to 65535", i)
		}
		ports = append(ports, p)
		portsAny = append(portsAny, p)
	}
	if upPort < 1 || upPort > 65535 {
		return nil, runtime.Errorf(b, "upstream_port %d is not a port number", upPort)
	}
	if image == "" {
		return nil, runtime.Errorf(b, "image is empty")
	}
	res := &runtime.Resource{Type: "lb.nginx", Name: name, Provider: "docker",
		Inputs: map[string]any{"hostname": name, "ip": ip, "network": network.Res.Name, "upstreams": upIPs,
			"upstream_port": upPort, "ports": portsAny, "image": image, "config": Render(upstreams, ports, "")},
		Deps: runtime.Refs(network, ups),
		Show: []runtime.Field{
			{Key: "ip", Value: ip}, {Key: "upstreams", Value: strings.Join(upstreams, ",")},
			{Key: "listen", Value: strings.Trim(fmt.Sprint(ports), "[]")}, {Key: "image", Value: image},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{"ip": starlark.String(ip)}), nil
}
