// Package ssh is the recipe module `ssh`: the workspace's ssh key pair,
// which VMs are given at creation and which khw uses to reach them.
package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	"go.starlark.net/starlark"
	xssh "golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the ssh module.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "ssh", Name: "key", Creates: "ssh.key", Provider: "khw", Fn: key,
		Doc:     "Declares an ed25519 key pair in the workdir: NAME (0600, OpenSSH format) and NAME.pub.",
		Args:    []runtime.Arg{{Name: "name", Type: "string", Default: `"id_ed25519"`, Doc: "file name of the private key"}},
		Example: `key = ssh.key()`,
	})
	r.AddType(runtime.TypeSpec{Type: "ssh.key", Doc: "an ssh key pair", Handler: workspace.Handler{ApplyFn: apply}})
}

func key(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name := "id_ed25519"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name?", &name); err != nil {
		return nil, err
	}
	if err := workspace.CheckName(b, name); err != nil {
		return nil, err
	}
	res := &runtime.Resource{Type: "ssh.key", Name: name,
		Inputs: map[string]any{"algorithm": "ed25519"},
		Show:   []runtime.Field{{Key: "algorithm", Value: "ed25519"}, {Key: "files", Value: name + " " + name + ".pub"}},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"private": &runtime.File{Path: name, Producer: res.Addr(), Secret: true},
		"public":  &runtime.File{Path: name + ".pub", Producer: res.Addr()},
	}), nil
}

func apply(_ context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := xssh.MarshalPrivateKey(priv, "khw")
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %v", err)
	}
	sshPub, err := xssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	name := req.Resource.Name
	return workspace.Write(req.Workdir,
		workspace.File{Name: name, Data: pem.EncodeToMemory(block), Secret: true},
		workspace.File{Name: name + ".pub", Data: xssh.MarshalAuthorizedKey(sshPub)},
	)
}
