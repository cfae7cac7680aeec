// Command khw-plugin-docker is the Docker provider: the post's Docker
// network on the lab bridge, its nginx load balancer container, and
// containers as nodes (the hypervisor=docker alternative to libvirt), through
// the Docker Go client against dockerd's socket (DOCKER_HOST, or
// /var/run/docker.sock).
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func main() {
	sdk.Serve(newProvider(newDocker()))
}

func newProvider(d *docker) *sdk.Mux {
	m := sdk.NewMux("docker", version.String())
	m.Handle(sdk.TypeInfo{Type: "docker.network", Doc: "a Docker bridge network adopting the lab bridge"}, network{d})
	m.Handle(sdk.TypeInfo{Type: "lb.nginx", Doc: "the nginx load balancer container", UpdateInPlace: true}, lb{d})
	m.Handle(sdk.TypeInfo{Type: "vm", Doc: "a node as a container that boots systemd (as kind's nodes do), with sshd"}, vmNode{d})
	m.Handle(sdk.TypeInfo{Type: "registry.run", Doc: "an image registry container with its storage in a volume"}, registryRun{d})
	return m
}
