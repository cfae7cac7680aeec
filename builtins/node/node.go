// Package node is the recipe module `node`: what khw does on nodes over
// ssh (the post's rsync steps), served by the ssh plugin.
package node

import (
	"fmt"
	"path"
	"strings"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/runtime"
)

// Register adds the node module.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "node", Name: "copy", Creates: "node.copy", Fn: copyBuiltin,
		Doc: "Declares files copied from the workdir to a node over ssh (the post's rsync steps): written " +
			"atomically, keys at 0600, skipped when the node's copy already has the same checksum.",
		Args: []runtime.Arg{
			{Name: "node", Type: "vm", Doc: "the node"},
			{Name: "files", Type: "list of files", Doc: "workdir files, e.g. [ca.cert, admin.kubeconfig.file]"},
			{Name: "name", Type: "string", Doc: "resource name (address node.copy.NAME), e.g. m1-certs"},
			{Name: "dest", Type: "string", Default: `"~"`, Doc: "directory on the node; ~ is the user's home"},
		},
		Example: `node.copy(m1, [ca.cert, ca.key], name = "m1-certs")`,
	})
	r.Add(&runtime.Builtin{Module: "node", Name: "run", Creates: "node.run", Fn: runBuiltin,
		Doc: "Declares a command run once on a node over ssh; its output is shown when it fails. " +
			"It runs again when the command or anything it refers to changes.",
		Args: []runtime.Arg{
			{Name: "node", Type: "vm", Doc: "the node"},
			{Name: "command", Type: "string", Doc: "shell command"},
			{Name: "name", Type: "string", Doc: "resource name (address node.run.NAME)"},
			{Name: "after", Type: "list", Default: "[]", Doc: "resources that must be applied first"},
		},
		Example: `node.run(m1, "sudo mv ~/ca.pem /var/lib/kubernetes/", name = "m1-install", after = [copy])`,
	})
}

type target struct {
	name, ip, user, key string
	handle              *runtime.Handle
}

func nodeOf(b *starlark.Builtin, h *runtime.Handle) (*target, error) {
	if h.Res.Type != "vm" {
		return nil, runtime.Errorf(b, "node must be a vm, not %s", h.Res.Addr())
	}
	ip, _ := h.Attr("ip")
	user, _ := h.Attr("user")
	key, _ := h.Attr("ssh_key")
	return &target{name: h.Res.Name, ip: string(ip.(starlark.String)), user: string(user.(starlark.String)),
		key: key.(*runtime.File).Path, handle: h}, nil
}

func (t *target) inputs() map[string]any {
	return map[string]any{"node": t.name, "host": t.ip, "port": 22, "user": t.user, "identity": t.key}
}

func copyBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var h *runtime.Handle
	var files *starlark.List
	var name string
	dest := "~"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "node", &h, "files", &files, "name", &name, "dest?", &dest); err != nil {
		return nil, err
	}
	t, err := nodeOf(b, h)
	if err != nil {
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
		if f.Secret {
			mode = "0600"
		}
		list = append(list, map[string]any{"path": f.Path, "mode": mode})
		names = append(names, base)
	}
	in := t.inputs()
	in["files"], in["dest"] = list, dest
	res := &runtime.Resource{Type: "node.copy", Name: name, Provider: "ssh", UpdateInPlace: true,
		Inputs: in,
		Deps:   runtime.Refs(h, files),
		Show: []runtime.Field{
			{Key: "to", Value: fmt.Sprintf("%s@%s:%s", t.user, t.name, dest)},
			{Key: "files", Value: strings.Join(names, " ")},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return &runtime.Handle{Res: res}, nil
}

func runBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var h *runtime.Handle
	var command, name string
	after := starlark.NewList(nil)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "node", &h, "command", &command, "name", &name, "after?", &after); err != nil {
		return nil, err
	}
	t, err := nodeOf(b, h)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(command) == "" {
		return nil, runtime.Errorf(b, "command is empty")
	}
	in := t.inputs()
	in["command"] = command
	res := &runtime.Resource{Type: "node.run", Name: name, Provider: "ssh",
		Inputs: in,
		Deps:   runtime.Refs(h, after),
		Show:   []runtime.Field{{Key: "on", Value: t.name}, {Key: "command", Value: command}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return &runtime.Handle{Res: res}, nil
}
