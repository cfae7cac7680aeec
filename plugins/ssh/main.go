// Command khw-plugin-ssh is the provider of the recipe module node's
// resources that act on nodes over ssh: node.copy (files from the workdir,
// over sftp, written atomically and skipped when unchanged) and node.run (a
// command). It authenticates with the workspace key, pins host keys in the
// workdir's known_hosts (trust on first use, or the key a VM provider
// reports), shares one connection per node and user, and keeps retrying
// while a node boots.
//
// Configuration, as builtins/node declares it:
//
//	node.copy: {"node", "host", "port", "user", "identity", "timeout_s",
//	            "dest", "files": [{"path", "mode"}]}
//	node.run:  {"node", "host", "port", "user", "identity", "timeout_s", "command"}
//
// identity and each file path are relative to the workdir.
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func newProvider(p *pool) *provider {
	return &provider{Mux: newMux(p), p: p, probers: map[string]prober{
		"node.copy": copyHandler{p}, "node.run": runHandler{p}, "node.service": serviceHandler{p},
	}}
}

func newMux(p *pool) *sdk.Mux {
	m := sdk.NewMux("ssh", version.String())
	m.Handle(sdk.TypeInfo{Type: "node.copy", UpdateInPlace: true,
		Doc: "files copied from the workdir to a node over sftp: written atomically (temporary name, chmod, rename), " +
			"skipped when the node's copy has the same sha256 and mode"}, copyHandler{p})
	m.Handle(sdk.TypeInfo{Type: "node.run",
		Doc: "a command run once on a node over ssh; a failure shows the end of its output"}, runHandler{p})
	m.Handle(sdk.TypeInfo{Type: "node.service", UpdateInPlace: true,
		Doc: "a systemd service on a node: its unit and configuration files written as root, restarted when " +
			"they or what it uses change, started again when found stopped, and waited for until healthy"}, serviceHandler{p})
	return m
}

func main() {
	sdk.Serve(newProvider(newPool(nil, maxConns)))
}
