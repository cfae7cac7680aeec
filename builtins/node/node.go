// Package node is the recipe module `node`: what khw does on nodes over
// ssh (the post's rsync steps), served by the ssh plugin.
package node

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the node module.
func Register(r *runtime.Registry) {
	// The types it declares, and the plugin that serves them (whose
	// schema says how each changes).
	r.AddType(runtime.TypeSpec{Type: "node.copy", Provider: "ssh"})
	r.AddType(runtime.TypeSpec{Type: "node.run", Provider: "ssh"})
	r.AddType(runtime.TypeSpec{Type: "node.service", Provider: "ssh"})
	r.Add(&runtime.Builtin{Module: "node", Name: "copy", Creates: "node.copy", Provider: "ssh", Fn: copyBuiltin,
		Doc: "Declares files copied from the workdir to a node over ssh (the post's rsync steps): written " +
			"atomically, keys at 0600, skipped when the node's copy already has the same checksum.",
		Args: []runtime.Arg{
			{Name: "node", Type: "vm or node.host", Doc: "the node"},
			{Name: "files", Type: "list of files", Doc: "workdir files, e.g. [ca.cert, admin.kubeconfig.file]"},
			{Name: "name", Type: "string", Doc: "resource name (address node.copy.NAME), e.g. m1-certs"},
			{Name: "dest", Type: "string", Default: `"~"`, Doc: "directory on the node; ~ is the user's home; an absolute path (/usr/local/bin, /etc/etcd) is written as root through sudo"},
			{Name: "timeout", Type: "int", Default: "300", Doc: "seconds to keep retrying while the node is unreachable (booting)"},
		},
		Example: `node.copy(m1, [ca.cert, ca.key], name = "m1-certs")`,
	})
	r.Add(&runtime.Builtin{Module: "node", Name: "host", Creates: "node.host", Provider: "khw", Fn: hostBuiltin,
		Doc: "Declares a machine that khw does not create (a server, a VM made elsewhere) as a node " +
			"that node.copy and node.run can reach over ssh with the workspace key.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "node name (address node.host.NAME)"},
			{Name: "ip", Type: "string", Doc: "address khw connects to"},
			{Name: "ssh_key", Type: "ssh.key", Doc: "key pair authorized for user on the machine"},
			{Name: "user", Type: "string", Default: `"root"`, Doc: "login user"},
			{Name: "port", Type: "int", Default: "22", Doc: "ssh port"},
		},
		Example: `n1 = node.host("n1", ip = "10.200.1.13", ssh_key = key, user = "veeru")`,
	})
	r.AddType(runtime.TypeSpec{Type: "node.host", Doc: "a machine khw does not create", UpdateInPlace: true,
		Handler: hostHandler{}})
	r.Add(&runtime.Builtin{Module: "node", Name: "run", Creates: "node.run", Provider: "ssh", Fn: runBuiltin,
		Doc: "Declares a command run once on a node over ssh; its output is shown when it fails. " +
			"It runs again when the command or anything it refers to changes.",
		Args: []runtime.Arg{
			{Name: "node", Type: "vm or node.host", Doc: "the node"},
			{Name: "command", Type: "string", Doc: "shell command"},
			{Name: "name", Type: "string", Doc: "resource name (address node.run.NAME)"},
			{Name: "after", Type: "list", Default: "[]", Doc: "resources that must be applied first"},
			{Name: "timeout", Type: "int", Default: "300", Doc: "seconds to keep retrying while the node is unreachable (booting)"},
		},
		Example: `node.run(m1, "sudo mv ~/ca.pem /var/lib/kubernetes/", name = "m1-install", after = [copy])`,
	})
	r.Add(&runtime.Builtin{Module: "node", Name: "service", Creates: "node.service", Provider: "ssh", Fn: serviceBuiltin,
		Doc: "Declares a systemd service on a node (the post's etcd, kube-apiserver, kubelet ... units): its unit " +
			"and configuration files are written as root, the service is enabled and (re)started, and apply waits " +
			"until it is healthy, showing the end of its log when it is not. A change to the unit, a file, or " +
			"anything in `uses` restarts this service alone; a service found stopped or edited is repaired. " +
			"Address node.service.NODE-NAME.",
		Args: []runtime.Arg{
			{Name: "node", Type: "vm or node.host", Doc: "the node"},
			{Name: "name", Type: "string", Doc: "the systemd service name (unit /etc/systemd/system/NAME.service)"},
			{Name: "unit", Type: "string", Doc: "the unit file's text"},
			{Name: "files", Type: "dict", Default: "{}", Doc: "configuration files: absolute path -> text"},
			{Name: "uses", Type: "list", Default: "[]", Doc: "resources whose change restarts it: the copies of its binaries and certificates"},
			{Name: "after", Type: "list", Default: "[]", Doc: "resources applied first whose changes do not restart it (another service it talks to)"},
			{Name: "health", Type: "string", Default: `""`, Doc: "shell command, run as root on the node, that succeeds once the service works; empty: systemd's active state"},
			{Name: "health_timeout", Type: "int", Default: "300", Doc: "seconds to wait for health before failing with the service's log"},
			{Name: "timeout", Type: "int", Default: "300", Doc: "seconds to keep retrying while the node is unreachable (booting)"},
		},
		Example: `node.service(m1, "etcd", unit = etcd_unit, uses = [bins, certs], health = "etcdctl endpoint health")`,
	})
}

type target struct {
	name, ip, user, key string
	port                int
}

func nodeOf(b *starlark.Builtin, h *runtime.Handle) (*target, error) {
	if h.Res.Type != "vm" && h.Res.Type != "node.host" {
		return nil, runtime.Errorf(b, "node must be a vm or a node.host, not %s", h.Res.Addr())
	}
	ip, _ := h.Attr("ip")
	user, _ := h.Attr("user")
	key, _ := h.Attr("ssh_key")
	port := 22
	if p, _ := h.Attr("port"); p != nil {
		port, _ = starlark.AsInt32(p)
	}
	return &target{name: h.Res.Name, ip: string(ip.(starlark.String)), user: string(user.(starlark.String)),
		key: key.(*runtime.File).Path, port: port}, nil
}

func (t *target) inputs() map[string]any {
	return map[string]any{"node": t.name, "host": t.ip, "port": t.port, "user": t.user, "identity": t.key}
}

func checkTimeout(b *starlark.Builtin, timeout int) error {
	if timeout < 1 || timeout > 3600 {
		return runtime.Errorf(b, "timeout %d must be from 1 to 3600 seconds", timeout)
	}
	return nil
}

func copyBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var h *runtime.Handle
	var files *starlark.List
	var name string
	dest := "~"
	timeout := 300
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "node", &h, "files", &files, "name", &name, "dest?", &dest, "timeout?", &timeout); err != nil {
		return nil, err
	}
	t, err := nodeOf(b, h)
	if err != nil {
		return nil, err
	}
	if err := checkTimeout(b, timeout); err != nil {
		return nil, err
	}
	if files.Len() == 0 {
		return nil, runtime.Errorf(b, "files is empty")
	}
	if dest == "" || strings.ContainsAny(dest, "\n\x00") {
		return nil, runtime.Errorf(b, "dest %q is not a directory path", dest)
	}
	var list []any
	var names []string
	seen := map[string]bool{}
	for i := 0; i < files.Len(); i++ {
		f, ok := files.Index(i).(*runtime.File)
		if !ok {
			return nil, runtime.Errorf(b, "files[%d] must be a workdir file such as ca.cert, not %s", i, files.Index(i).Type())
		}
		base := path.Base(f.Path)
		if seen[base] {
			return nil, runtime.Errorf(b, "files lists %s twice", base)
		}
		seen[base] = true
		mode := "0644"
		switch {
		case f.Secret:
			mode = "0600"
		case f.Exec:
			mode = "0755"
		}
		list = append(list, map[string]any{"path": f.Path, "mode": mode})
		names = append(names, base)
	}
	in := t.inputs()
	in["files"], in["dest"] = list, dest
	if path.IsAbs(dest) {
		in["root"] = true
	}
	res := &runtime.Resource{Type: "node.copy", Name: name, Provider: "ssh",
		Inputs: in, Settings: map[string]any{"timeout_s": timeout},
		Deps: runtime.Refs(h, files),
		Show: []runtime.Field{
			{Key: "to", Value: fmt.Sprintf("%s@%s:%s", t.user, t.name, dest)},
			{Key: "files", Value: strings.Join(names, " ")},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}

func runBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var h *runtime.Handle
	var command, name string
	after := starlark.NewList(nil)
	timeout := 300
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "node", &h, "command", &command, "name", &name, "after?", &after, "timeout?", &timeout); err != nil {
		return nil, err
	}
	t, err := nodeOf(b, h)
	if err != nil {
		return nil, err
	}
	if err := checkTimeout(b, timeout); err != nil {
		return nil, err
	}
	if strings.TrimSpace(command) == "" {
		return nil, runtime.Errorf(b, "command is empty")
	}
	in := t.inputs()
	in["command"] = command
	res := &runtime.Resource{Type: "node.run", Name: name, Provider: "ssh",
		Inputs: in, Settings: map[string]any{"timeout_s": timeout},
		Deps: runtime.Refs(h, after),
		Show: []runtime.Field{{Key: "on", Value: t.name}, {Key: "command", Value: command}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, nil), nil
}

func serviceBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var h *runtime.Handle
	var name, unit, health string
	files := starlark.NewDict(0)
	uses := starlark.NewList(nil)
	after := starlark.NewList(nil)
	healthTimeout, timeout := 300, 300
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "node", &h, "name", &name, "unit", &unit, "files?", &files,
		"uses?", &uses, "after?", &after, "health?", &health, "health_timeout?", &healthTimeout, "timeout?", &timeout); err != nil {
		return nil, err
	}
	t, err := nodeOf(b, h)
	if err != nil {
		return nil, err
	}
	if err := checkTimeout(b, timeout); err != nil {
		return nil, err
	}
	if healthTimeout < 1 || healthTimeout > 3600 {
		return nil, runtime.Errorf(b, "health_timeout %d must be from 1 to 3600 seconds", healthTimeout)
	}
	if !serviceNameRE.MatchString(name) {
		return nil, runtime.Errorf(b, "name %q is not a systemd service name (letters, digits, - _ . @)", name)
	}
	if !strings.Contains(unit, "[Service]") {
		return nil, runtime.Errorf(b, "unit of %s has no [Service] section", name)
	}
	fs := map[string]any{}
	var paths []string
	for _, it := range files.Items() {
		p, ok := starlark.AsString(it[0])
		if !ok || !path.IsAbs(p) || path.Clean(p) != p {
			return nil, runtime.Errorf(b, "files: key %s must be an absolute, clean path", it[0])
		}
		content, ok := starlark.AsString(it[1])
		if !ok {
			return nil, runtime.Errorf(b, "files[%q] must be the file's text, not %s", p, it[1].Type())
		}
		if p == "/etc/systemd/system/"+name+".service" {
			return nil, runtime.Errorf(b, "files: %s is the unit itself; give it as unit", p)
		}
		fs[p] = content
		paths = append(paths, p)
	}
	in := t.inputs()
	in["service"], in["unit"], in["files"], in["health"] = name, unit, fs, health
	show := []runtime.Field{{Key: "on", Value: t.name}, {Key: "unit", Value: "/etc/systemd/system/" + name + ".service"}}
	if len(paths) > 0 {
		show = append(show, runtime.Field{Key: "files", Value: strings.Join(paths, " ")})
	}
	if exec := execStart(unit); exec != "" {
		show = append(show, runtime.Field{Key: "runs", Value: exec})
	}
	if health != "" {
		show = append(show, runtime.Field{Key: "health", Value: health})
	}
	res := &runtime.Resource{Type: "node.service", Name: t.name + "-" + name, Provider: "ssh",
		Inputs:   in,
		Settings: map[string]any{"timeout_s": timeout, "health_timeout_s": healthTimeout},
		Deps:     runtime.Refs(h, uses),
		After:    runtime.Refs(after),
		Show:     show,
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{"service": starlark.String(name), "node": starlark.String(t.name)}), nil
}

var serviceNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$`)

// execStart is the program a unit runs, for the plan: its ExecStart
// line's first word.
func execStart(unit string) string {
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ExecStart="); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

func hostBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, ip string
	var key *runtime.Handle
	user, port := "root", 22
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ip", &ip, "ssh_key", &key, "user?", &user, "port?", &port); err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return nil, runtime.Errorf(b, "ip %q is not an IP address", ip)
	}
	if key.Res.Type != "ssh.key" {
		return nil, runtime.Errorf(b, "ssh_key must be an ssh.key, not %s", key.Res.Addr())
	}
	if port < 1 || port > 65535 {
		return nil, runtime.Errorf(b, "port %d is not a port number", port)
	}
	if user == "" {
		return nil, runtime.Errorf(b, "user is empty")
	}
	res := &runtime.Resource{Type: "node.host", Name: name,
		Inputs: map[string]any{"host": ip, "user": user, "port": port},
		Deps:   []string{key.Res.Addr()},
		Show:   []runtime.Field{{Key: "at", Value: fmt.Sprintf("%s@%s:%d", user, ip, port)}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	priv, _ := key.Attr("private")
	return runtime.NewHandle(res, starlark.StringDict{
		"ip": starlark.String(ip), "user": starlark.String(user), "port": starlark.MakeInt(port), "ssh_key": priv,
	}), nil
}

// hostHandler serves node.host: the machine exists already; khw only
// records how to reach it.
type hostHandler struct{}

func (hostHandler) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	return &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}, nil
}

func (hostHandler) Apply(_ context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	return &sdk.ApplyResponse{Outputs: req.Resource.Config}, nil
}

func (hostHandler) Delete(context.Context, *sdk.DeleteRequest) error { return nil }
