// Command khw-plugin-image builds container images from this machine's
// files with go-containerregistry (no daemon) and pushes them to the lab's
// registry over plain HTTP under the names users type, so that containerd
// on the nodes, with that registry as its mirror for docker.io and
// registry.k8s.io, finds nginx:latest or registry.k8s.io/pause:3.10.1
// without the internet.
//
// Configuration, as builtins/image declares it (image.build):
//
//	{"ref", "repository", "tag", "endpoint", "image",
//	 "files": [{"path", "source", "binary"}], "contents": {path: text},
//	 "symlinks": {path: target}, "dirs": {path: mode},
//	 "config": {"entrypoint", "cmd", "env", "workdir", "user", "ports"}}
//
// A source is an absolute host path or a file relative to the workdir.
package main

import (
	"github.com/khw-dev/khw/internal/version"
	"github.com/khw-dev/khw/plugins/sdk"
)

func main() {
	sdk.Serve(newProvider())
}

func newProvider() *sdk.Mux {
	m := sdk.NewMux("image", version.String())
	m.Handle(sdk.TypeInfo{Type: "image.build", UpdateInPlace: true,
		Doc: "an image built from host files, one reproducible layer, pushed to a registry"}, builder{})
	return m
}
