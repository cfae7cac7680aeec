// Package all registers every recipe module.
package all

import (
	"github.com/khw-dev/khw/builtins/artifact"
	"github.com/khw-dev/khw/builtins/docker"
	"github.com/khw-dev/khw/builtins/encryption"
	"github.com/khw-dev/khw/builtins/hostnet"
	"github.com/khw-dev/khw/builtins/image"
	"github.com/khw-dev/khw/builtins/k8s"
	"github.com/khw-dev/khw/builtins/kubeconfig"
	"github.com/khw-dev/khw/builtins/lb"
	"github.com/khw-dev/khw/builtins/node"
	"github.com/khw-dev/khw/builtins/pki"
	"github.com/khw-dev/khw/builtins/plugin"
	"github.com/khw-dev/khw/builtins/registry"
	"github.com/khw-dev/khw/builtins/ssh"
	"github.com/khw-dev/khw/builtins/vm"
	"github.com/khw-dev/khw/runtime"
)

// Registry returns a registry holding every builtin and in-process type.
func Registry() *runtime.Registry {
	r := runtime.NewRegistry()
	for _, reg := range []func(*runtime.Registry){
		pki.Register, kubeconfig.Register, encryption.Register, ssh.Register,
		hostnet.Register, docker.Register, vm.Register, lb.Register, node.Register,
		registry.Register, image.Register, k8s.Register, artifact.Register, plugin.Register,
	} {
		reg(r)
	}
	return r
}
