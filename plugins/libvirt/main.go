// Command khw-plugin-libvirt is the libvirt hypervisor provider: each vm
// is a libvirt domain on the recipe's bridge, its disk a copy-on-write
// qcow2 volume over a base image in a storage pool, configured the way
// cloud images are: by a cloud-init NoCloud seed ISO (hostname, user, the
// workspace key, a host key, static network). It talks to libvirtd over
// its RPC protocol (go-libvirt), locally or on a remote host
// (qemu+ssh://, qemu+tcp://).
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func main() {
	sdk.Serve(newProvider())
}

func newProvider() *sdk.Mux {
	m := sdk.NewMux("libvirt", version.String())
	m.Handle(sdk.TypeInfo{Type: "vm", Doc: "a libvirt domain with a qcow2 overlay and a cloud-init seed"}, &vmHandler{conns: newConns()})
	return m
}
