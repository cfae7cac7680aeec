// Command khw-plugin-hostnet is the host networking provider: the post's
// section 1 "Linux Bridge & NAT" through netlink and iptables, kernel
// settings through /proc/sys, and the post's /etc/hosts lines. It acts in
// the network namespace it runs in, and it is the only provider that needs
// root: run it through a prefix (KHW_PLUGIN_PREFIX_HOSTNET="sudo -n -E")
// when khw itself runs unprivileged.
//
// Everything it adds is marked or recorded so that delete removes exactly
// that and nothing else: iptables rules carry a comment naming the
// resource, a pre-existing bridge is left in place, sysctls get their old
// values back, and the hosts block is delimited by marker lines.
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func main() {
	sdk.Serve(newProvider())
}

func newProvider() *sdk.Mux {
	m := sdk.NewMux("hostnet", version.String())
	m.Handle(sdk.TypeInfo{Type: "net.bridge", Doc: "a Linux bridge with the host's address"}, bridge{})
	m.Handle(sdk.TypeInfo{Type: "net.nat", Doc: "MASQUERADE and FORWARD rules, IP forwarding"}, nat{})
	m.Handle(sdk.TypeInfo{Type: "net.sysctl", Doc: "kernel settings", UpdateInPlace: true}, sysctl{})
	m.Handle(sdk.TypeInfo{Type: "net.hosts", Doc: "a marked block of hosts lines", UpdateInPlace: true}, hosts{})
	return m
}
