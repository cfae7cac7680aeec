// Package errors tests what khw says when something outside it fails: the
// real khw binary and the real plugins, run on the post's recipe inside a
// network namespace the test makes, one failure at a time. Every message
// must name the resource address, the recipe line that declared it
// (recipes/hardway.star:NN, or the library's line and the recipe line that
// called into it), and, on a line of its own, what to do.
package errors

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
)

// env is one namespace with the lab's br0 (10.200.1.1/24), a host holding
// 10.200.1.13 (n1's address) where nothing listens, and nobody at
// 10.200.1.14 (n2's).
type env struct {
	lab *labtest.Namespace
	bin string // khw and every plugin
}

// khw runs `khw run recipes/hardway.star` in the namespace, from the
// repository root (so the recipe is named as a person would name it), on a
// fresh workdir, with the plugins next to the binary and nowhere else.
func (e *env) khw(t *testing.T, bin string, vars []string, args ...string) (string, int) {
	t.Helper()
	full := append([]string{"netns", "exec", e.lab.Name, "env", "KHW_PLUGIN_PATH=" + t.TempDir(), "XDG_DATA_HOME=" + t.TempDir()}, vars...)
	full = append(full, filepath.Join(bin, "khw"), "run", "recipes/hardway.star", "--workdir", filepath.Join(t.TempDir(), "work"))
	cmd := exec.Command("ip", append(full, args...)...)
	cmd.Dir = labtest.RepoRoot()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// without returns a directory holding khw and every plugin but one: a
// machine where that plugin was never installed. Hard links, because khw
// looks for plugins next to its binary after resolving symlinks.
func (e *env) without(t *testing.T, plugin string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(e.bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.Name() == "khw-plugin-"+plugin {
			continue
		}
		if err := os.Link(filepath.Join(e.bin, ent.Name()), filepath.Join(dir, ent.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestProviderErrorsPointHome(t *testing.T) {
	labtest.RequireRoot(t)
	e := &env{bin: labtest.Binaries(t)}
	e.lab = labtest.NewNamespace(t, "khw-errtest")
	labtest.Bridge(t, e.lab)
	labtest.Host(t, e.lab, "khw-errtest-n1", "10.200.1.13")
	// The libvirt VM's base image is never read: each case fails first.
	vm := []string{"--target", "vm.n1", "--set", "image=/var/lib/khw/images/none.qcow2"}

	cases := []struct {
		name string
		// setup returns the bin directory, environment and arguments; a
		// check, if any, runs after khw and looks at what it left.
		setup func(t *testing.T) (bin string, vars, args []string, check func(t *testing.T))
		addr  string
		where string // regexp of the declaring position
		msg   string // regexp of the provider's message
		hint  string // start of the hint line
	}{
		{name: "libvirtd down",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				sock := filepath.Join(t.TempDir(), "no-libvirtd.sock")
				return e.bin, nil, append(vm, "--set", "libvirt_uri=qemu+unix:///system?socket="+sock), nil
			},
			addr: "vm.n1", where: `recipes/lib/lab\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `libvirtd is not running at qemu\+unix:///system\?socket=\S+/no-libvirtd\.sock \(dial unix \S+: connect: no such file or directory\)`,
			hint: "start it (systemctl start libvirtd",
		},
		{name: "plugin binary missing",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				return e.without(t, "libvirt"), nil, vm, nil
			},
			addr: "vm.n1", where: `recipes/lib/lab\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `plugin "libvirt" is not installed: no khw-plugin-libvirt in `,
			hint: "install the plugin: `make build` puts khw-plugin-libvirt in bin/",
		},
		{name: "IP already taken (libvirt)",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				uri := labtest.LibvirtTestDriver(t, labtest.Libvirtd(t))
				return e.bin, nil, append(vm, "--set", "libvirt_uri="+uri), nil
			},
			addr: "vm.n1", where: `recipes/lib/lab\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `IP 10\.200\.1\.13 is already in use on br0 \(something answers there: port 22 refused a connection\)`,
			hint: "free the IP or give the node another one",
		},
		{name: "IP already taken (docker)",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				sock := labtest.Dockerd(t, e.lab)
				check := func(t *testing.T) {
					out, err := exec.Command("docker", "-H", "unix://"+sock, "ps", "-a", "--format", "{{.Names}}").CombinedOutput()
					if err != nil || strings.Contains(string(out), "n1") {
						t.Errorf("a container was made for the refused node: %v\n%s", err, out)
					}
				}
				return e.bin, []string{"DOCKER_HOST=unix://" + sock}, []string{"--target", "vm.n1", "--set", "hypervisor=docker"}, check
			},
			addr: "vm.n1", where: `recipes/lib/lab\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `IP 10\.200\.1\.13 is already in use on br0 \(something answers there: port 22 refused a connection\)`,
			hint: "free the IP or give the node another one",
		},
		{name: "dockerd down",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				sock := filepath.Join(t.TempDir(), "no-dockerd.sock")
				return e.bin, []string{"DOCKER_HOST=unix://" + sock}, []string{"--target", "docker.network"}, nil
			},
			addr: "docker.network.br0", where: `recipes/lib/lab\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `dockerd is not running at unix://\S+/no-dockerd\.sock \(dial unix \S+: connect: no such file or directory\)`,
			hint: "start it (systemctl start docker",
		},
		{name: "node unreachable: nothing listens",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				return e.bin, nil, []string{"--target", "node.copy.n1-certs", "--set", "hypervisor=none", "--set", "ssh_timeout=2"}, nil
			},
			addr: "node.copy.n1-certs", where: `recipes/lib/distribution\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `node n1 \(10\.200\.1\.13:22\) did not answer ssh within 2s: dial tcp 10\.200\.1\.13:22: connect: connection refused`,
			hint: "check the node: something holds 10.200.1.13 but nothing listens on port 22",
		},
		{name: "node unreachable: nobody there",
			setup: func(t *testing.T) (string, []string, []string, func(*testing.T)) {
				return e.bin, nil, []string{"--target", "node.copy.n2-certs", "--set", "hypervisor=none", "--set", "ssh_timeout=2"}, nil
			},
			addr: "node.copy.n2-certs", where: `recipes/lib/distribution\.star:\d+, called from recipes/hardway\.star:\d+`,
			msg:  `node n2 \(10\.200\.1\.14:22\) did not answer ssh within 2s: `,
			hint: "check the node: is n2 up, on the bridge, with sshd running?",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bin, vars, args, check := c.setup(t)
			out, code := e.khw(t, bin, vars, args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			_, msg, ok := strings.Cut(out, "\nError: ")
			if !ok {
				t.Fatalf("no error printed:\n%s", out)
			}
			msg, _, _ = strings.Cut(msg, "\n\nWhat finished is recorded")
			t.Logf("khw says:\n%s", msg)
			head := regexp.QuoteMeta(c.addr) + ` \(declared at ` + c.where + `\): ` + c.msg
			if !regexp.MustCompile(`^` + head).MatchString(msg) {
				t.Errorf("the message does not match\n  /%s/", head)
			}
			if !strings.Contains(msg, "\n  hint: "+c.hint) {
				t.Errorf("no hint line starting %q", c.hint)
			}
			if check != nil {
				check(t)
			}
		})
	}
}
