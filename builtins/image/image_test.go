package image_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/builtins/image"
	"github.com/khw-dev/khw/internal/startest"
)

const lab = `br0 = net.bridge("br0", address = "10.200.1.1/24")
reg = registry.run("registry", ip = "10.200.1.5", network = docker.network(br0))
`

// recipe is a recipe root whose test.star is the lab and then src.
func recipe(t *testing.T, src string) *startest.Fixture {
	f := startest.NewFixture(t, all.Registry())
	f.File("test.star", lab+src)
	return f
}

func TestParseRefNormalisesAsContainerdDoes(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":                                   "docker.io/library/nginx:latest",
		"nginx:latest":                            "docker.io/library/nginx:latest",
		"busybox:1.28":                            "docker.io/library/busybox:1.28",
		"docker.io/library/nginx:1.27":            "docker.io/library/nginx:1.27",
		"index.docker.io/library/nginx":           "docker.io/library/nginx:latest",
		"someone/tool:v1":                         "docker.io/someone/tool:v1",
		"registry.k8s.io/pause:3.10.1":            "registry.k8s.io/pause:3.10.1",
		"registry.k8s.io/coredns/coredns:v1.12.1": "registry.k8s.io/coredns/coredns:v1.12.1",
		"10.200.1.5:5000/x/y:z":                   "10.200.1.5:5000/x/y:z",
	} {
		r, err := image.ParseRef(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "Nginx:latest", "nginx:", "nginx@sha256:" + strings.Repeat("a", 64), "a b"} {
		if r, err := image.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) = %q, want an error", bad, r)
		}
	}
}

// TestTheInputsAreWhatThePluginNeeds: the pushed name follows the
// registry's endpoint and the ref's repository path; a binary that files
// names goes to that path; a file value goes to /BASENAME and is a
// dependency; PATH defaults; every kind stays apart.
func TestTheInputsAreWhatThePluginNeeds(t *testing.T) {
	rec := recipe(t, `key = ssh.key()
img = image.build("bb", "busybox:1.28", reg,
    files = {"/bin/wget": "/usr/bin/wget", "/etc/nginx": "/etc/nginx"},
    binaries = ["/usr/bin/wget", "/bin/busybox", key.public],
    contents = {"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"},
    symlinks = {"/bin/sh": "busybox"},
    dirs = ["/tmp", "/var/www"],
    cmd = ["sh"], ports = [80, "53/udp"], env = {"A": "b"})
print(img.image, img.ref, img.repository, img.tag)
`).MustEval("test.star", nil)
	r := rec.Resource("image.build.bb")
	in, _ := json.Marshal(r.Inputs)
	var got struct {
		Ref, Image, Endpoint string
		Files                []image.FileEntry
		Contents, Symlinks   map[string]string
		Dirs                 map[string]string
		Config               image.Config
	}
	if err := json.Unmarshal(in, &got); err != nil {
		t.Fatal(err)
	}
	if got.Ref != "docker.io/library/busybox:1.28" || got.Image != "10.200.1.5:5000/library/busybox:1.28" || got.Endpoint != "10.200.1.5:5000" {
		t.Errorf("names: %+v", got)
	}
	files, _ := json.Marshal(got.Files)
	want := `[{"path":"/bin/busybox","source":"/bin/busybox","binary":true},{"path":"/bin/wget","source":"/usr/bin/wget","binary":true},` +
		`{"path":"/etc/nginx","source":"/etc/nginx"},{"path":"/id_ed25519.pub","source":"id_ed25519.pub","binary":true}]`
	if string(files) != want {
		t.Errorf("files:\n got %s\nwant %s", files, want)
	}
	if got.Dirs["/tmp"] != "1777" || got.Dirs["/var/www"] != "0755" || got.Symlinks["/bin/sh"] != "busybox" || !strings.HasPrefix(got.Contents["/etc/passwd"], "root:") {
		t.Errorf("dirs, symlinks, contents: %+v", got)
	}
	c := got.Config
	if strings.Join(c.Env, " ") != "A=b PATH="+image.DefaultPath || strings.Join(c.Ports, " ") != "53/udp 80/tcp" || c.Cmd[0] != "sh" {
		t.Errorf("config: %+v", c)
	}
	if strings.Join(r.Deps, " ") != "registry.run.registry ssh.key.id_ed25519" {
		t.Errorf("deps = %v", r.Deps)
	}
	if r.Provider != "image" {
		t.Errorf("provider %s", r.Provider)
	}
}

// TestBadInputIsRefusedWithTheRecipeLine: each mistake fails at
// evaluation with the line of the call and a sentence that names it.
func TestBadInputIsRefusedWithTheRecipeLine(t *testing.T) {
	startest.NewFixture(t, all.Registry()).AssertCallErrors("test.star", lab, map[string]string{
		`image.build("x", "Nginx", reg)`:                                                            `ref "Nginx" is not an image name`,
		`image.build("x", "nginx@sha256:` + strings.Repeat("a", 64) + `", reg)`:                     "names a digest; give a tag",
		`image.build("x", "nginx", "10.200.1.5:5000")`:                                              "registry must be a registry.run (the lab's registry), not string",
		`image.build("x", "nginx", br0)`:                                                            "not net.bridge.br0",
		`image.build("x", "nginx", reg, binaries = ["usr/sbin/nginx"])`:                             `host path "usr/sbin/nginx" must be absolute`,
		`image.build("x", "nginx", reg, files = {"etc/x": "/etc/hosts"})`:                           `image path "etc/x" must be an absolute, clean path`,
		`image.build("x", "nginx", reg, files = {"/a/../b": "/etc/hosts"})`:                         `image path "/a/../b"`,
		`image.build("x", "nginx", reg, files = {"/x": 3})`:                                         `files["/x"] must be a host path or a file, not int`,
		`image.build("x", "nginx", reg, files = {"/x": "/etc/hosts"}, contents = {"/x": ""})`:       "/x is given twice (in file and in contents)",
		`image.build("x", "nginx", reg, binaries = ["/bin/ls"], dirs = ["/bin/ls"])`:                "/bin/ls is given twice",
		`image.build("x", "nginx", reg, binaries = ["/bin/ls", "/bin/ls"])`:                         "binaries lists /bin/ls twice",
		`image.build("x", "nginx", reg, symlinks = {"/lib": "usr/lib"}, contents = {"/lib/a": ""})`: "/lib/a is inside /lib, which is a symlink",
		`image.build("x", "nginx", reg, dirs = {"/tmp": "rwx"})`:                                    `mode "rwx" is not an octal mode`,
		`image.build("x", "nginx", reg, ports = [0])`:                                               `ports[0] "0/tcp" must be PORT`,
		`image.build("x", "nginx", reg, ports = ["53/icmp"])`:                                       `ports[0] "53/icmp"`,
		`image.build("x", "nginx", reg, env = {"A=B": "c"})`:                                        `env: "A=B" is not a variable name`,
		`image.build("x", "nginx", reg, workdir = "srv")`:                                           `workdir: image path "srv"`,
		`image.build("x", "nginx", reg, cmd = [1])`:                                                 "cmd[0] must be a string, not int",
		`image.build("a b", "nginx", reg)`:                                                          `name "a b" must be a word`,
	})
}

func TestAnImageDeclaredTwiceIsRefused(t *testing.T) {
	recipe(t, `image.build("x", "nginx", reg)
image.build("x", "busybox", reg)
`).AssertError("test.star", nil, "test.star:4", "image.build.x is declared twice")
}
