package recipes_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestTheClustersImages: make_images declares the images under the names
// kubelets and smoke tests ask for, pushed under the paths a containerd
// mirror asks the registry for; an artifact's file goes to /NAME in the
// image and makes the image depend on the artifact.
func TestTheClustersImages(t *testing.T) {
	src := `load("lib/images.star", "make_images")
br0 = net.bridge("br0", address = "10.200.1.1/24")
reg = registry.run("registry", ip = "10.200.1.5", network = docker.network(br0))
art = ssh.key("pause")  # any resource with a file stands in for the artifact
imgs = make_images(reg, struct(files = {"pause": art.private}), struct(files = {"coredns": "/opt/coredns"}, version = "v1.12.1"))
if sorted(imgs.keys()) != ["busybox", "busybox-1.28", "coredns", "nginx", "pause"]:
    fail(imgs.keys())
`
	rec, err := recipes(t).EvalSource("images-test.star", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"image.build.pause":        "registry.k8s.io/pause:3.10.1 10.200.1.5:5000/pause:3.10.1",
		"image.build.coredns":      "registry.k8s.io/coredns/coredns:v1.12.1 10.200.1.5:5000/coredns/coredns:v1.12.1",
		"image.build.nginx":        "docker.io/library/nginx:latest 10.200.1.5:5000/library/nginx:latest",
		"image.build.busybox":      "docker.io/library/busybox:latest 10.200.1.5:5000/library/busybox:latest",
		"image.build.busybox-1.28": "docker.io/library/busybox:1.28 10.200.1.5:5000/library/busybox:1.28",
	} {
		r := rec.Resource(addr)
		if r == nil {
			t.Fatalf("%s not declared", addr)
		}
		if got := r.Inputs["ref"].(string) + " " + r.Inputs["image"].(string); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
	pause := rec.Resource("image.build.pause")
	files, _ := json.Marshal(pause.Inputs["files"])
	if string(files) != `[{"path":"/pause","source":"pause","binary":true}]` || strings.Join(pause.Deps, " ") != "registry.run.registry ssh.key.pause" {
		t.Errorf("pause: files %s, deps %v", files, pause.Deps)
	}
	bb, _ := json.Marshal(rec.Resource("image.build.busybox").Inputs)
	for _, want := range []string{`{"path":"/bin/wget","source":"/usr/bin/wget","binary":true}`, `"/bin/nslookup":"busybox"`, `"/bin/sh":"busybox"`} {
		if !strings.Contains(string(bb), want) {
			t.Errorf("busybox lacks %s", want)
		}
	}
	if strings.Contains(string(bb), `"/bin/wget":"busybox"`) {
		t.Error("busybox's own wget (which segfaults here) is linked")
	}
}
