// Package vm is the recipe module `vm`: the post's nodes, served by the
// hypervisor plugin the recipe names (libvirt VMs, or docker containers, or
// any other plugin found that serves the type vm).
package vm

import (
	"fmt"
	"net/netip"
	"regexp"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/builtins/hostnet"
	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the vm module.
func Register(r *runtime.Registry) {
	// The type it declares: served by the plugin the recipe names (its
	// schema says how a vm changes).
	r.AddType(runtime.TypeSpec{Type: "vm", Provider: runtime.AnyPlugin})
	r.Add(&runtime.Builtin{Module: "vm", Name: "create", Creates: "vm", Provider: "the plugin the recipe names: libvirt, docker or another that serves vm", Fn: create,
		Doc: "Declares a node on the bridge with a static IP and hostname, given the workspace ssh key " +
			"for its user. The hypervisor plugin (provider) makes it: a libvirt VM from a qcow2 overlay " +
			"and a cloud-init seed, or a docker container; any plugin found that serves the type vm may.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "hostname and resource name (address vm.NAME)"},
			{Name: "ip", Type: "string", Doc: "static address inside the bridge's subnet"},
			{Name: "bridge", Type: "net.bridge", Doc: "the bridge the node is attached to; its address is the gateway"},
			{Name: "ssh_key", Type: "ssh.key", Doc: "key pair whose public half is authorized for user"},
			{Name: "role", Type: "string", Default: `""`, Doc: "controller or worker, for display and grouping"},
			{Name: "user", Type: "string", Default: `"khw"`, Doc: "login user, with passwordless sudo"},
			{Name: "cpus", Type: "int", Default: "1", Doc: "virtual CPUs"},
			{Name: "memory", Type: "int", Default: "1024", Doc: "memory in MiB"},
			{Name: "disk", Type: "int", Default: "10", Doc: "disk size in GiB"},
			{Name: "image", Type: "string", Default: `""`, Doc: "base image (a path for libvirt, an image name for docker)"},
			{Name: "dns", Type: "list of strings", Default: "[]", Doc: "resolvers for the node"},
			{Name: "provider", Type: "string", Default: `"libvirt"`, Doc: "hypervisor plugin: libvirt, docker, or any plugin found that serves vm"},
			{Name: "options", Type: "dict", Default: "{}", Doc: "provider settings, e.g. {\"accel\": \"qemu\", \"uri\": \"qemu:///system\"}"},
			{Name: "network", Type: "docker.network", Default: "None", Doc: "with provider docker: the Docker network on the bridge, made first"},
		},
		Example: `m1 = vm.create("m1", ip = "10.200.1.10", bridge = br0, ssh_key = key, role = "controller")`,
	})
}

// pluginNameRE is what the NAME of a khw-plugin-NAME may be.
var pluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

func create(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, ip, role, image string
	user, provider := "khw", "libvirt"
	cpus, memory, disk := 1, 1024, 10
	var br, key *runtime.Handle
	var dnsv starlark.Value = starlark.NewList(nil)
	var opts *starlark.Dict = starlark.NewDict(0)
	var network starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ip", &ip, "bridge", &br, "ssh_key", &key,
		"role?", &role, "user?", &user, "cpus?", &cpus, "memory?", &memory, "disk?", &disk, "image?", &image,
		"dns?", &dnsv, "provider?", &provider, "options?", &opts, "network?", &network); err != nil {
		return nil, err
	}
	if !hostnet.NodeNameRE.MatchString(name) {
		return nil, runtime.Errorf(b, "name %q is not a valid hostname (lower-case letters, digits and '-')", name)
	}
	subnet, err := hostnet.BridgeSubnet(br)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, runtime.Errorf(b, "ip %q is not an IP address", ip)
	}
	if !subnet.Contains(addr) {
		return nil, runtime.Errorf(b, "ip %s is outside the subnet %s of bridge %s", ip, subnet, br.Res.Name)
	}
	gw, _ := br.Attr("ip")
	if string(gw.(starlark.String)) == ip {
		return nil, runtime.Errorf(b, "ip %s is the bridge's own address", ip)
	}
	if key.Res.Type != "ssh.key" {
		return nil, runtime.Errorf(b, "ssh_key must be an ssh.key, not %s", key.Res.Addr())
	}
	if cpus < 1 || memory < 128 || disk < 1 {
		return nil, runtime.Errorf(b, "cpus (%d), memory (%d MiB) and disk (%d GiB) are too small: at least 1, 128 and 1", cpus, memory, disk)
	}
	// Any plugin may serve vm: libvirt and docker ship with khw. Whether
	// the one named is installed and serves vm is the plugins' to answer
	// (the plugin host finds it, its schema lists vm), not a list here.
	if !pluginNameRE.MatchString(provider) || provider == runtime.InProcess {
		return nil, runtime.Errorf(b, "provider %q is not a plugin's name (lower-case letters, digits, '_' and '-'): the hypervisor plugin, e.g. libvirt or docker", provider)
	}
	dns, err := starconv.Strings("dns", dnsv)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	o, err := starconv.ToGo(opts)
	if err != nil {
		return nil, runtime.Errorf(b, "options: %v", err)
	}
	deps := runtime.Refs(br, key)
	if network != starlark.None {
		h, ok := network.(*runtime.Handle)
		if !ok || h.Res.Type != "docker.network" {
			return nil, runtime.Errorf(b, "network must be a docker.network, not %s", network.Type())
		}
		deps = runtime.Refs(br, key, h)
	}
	pub, _ := key.Attr("public")
	priv, _ := key.Attr("private")
	res := &runtime.Resource{Type: "vm", Name: name, Provider: provider,
		Inputs: map[string]any{
			"hostname": name, "ip": ip, "prefix": subnet.Bits(), "gateway": string(gw.(starlark.String)),
			"bridge": br.Res.Name, "role": role, "user": user, "cpus": cpus, "memory_mib": memory, "disk_gib": disk,
			"image": image, "dns": starconv.StringsToAny(dns), "options": o,
			"ssh_public_key": pub.(*runtime.File).Path,
		},
		Deps: deps,
		Show: []runtime.Field{
			{Key: "ip", Value: fmt.Sprintf("%s/%d via %s", ip, subnet.Bits(), br.Res.Name)},
			{Key: "role", Value: role},
			{Key: "size", Value: fmt.Sprintf("%d vCPU, %d MiB, %d GiB", cpus, memory, disk)},
			{Key: "hypervisor", Value: provider},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"ip": starlark.String(ip), "user": starlark.String(user), "role": starlark.String(role),
		"ssh_key": priv,
	}), nil
}
