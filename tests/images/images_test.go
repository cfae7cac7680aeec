// Package images tests the lab's registry and the cluster's images end to
// end: khw runs recipes/examples/images.star against a real dockerd in a
// network namespace, so the distribution registry (Debian's, as
// khw/registry:local) comes up on the lab's Docker network and
// khw-plugin-image pushes the pause, CoreDNS, nginx and busybox images to
// it; then that dockerd pulls each one from the registry and runs it.
package images

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

const (
	registry = "10.200.1.5:5000"
	webIP    = "10.200.1.20"
)

type env struct {
	t               *testing.T
	lab             *labtest.Namespace
	bin, work, sock string
	recipe          string
	sets            []string
}

// pauseC is a stand-in for Kubernetes' pause: it sleeps until SIGTERM or
// SIGINT and exits 0, as build/pause/linux/pause.c does.
const pauseC = `#include <signal.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
int main(void) { signal(SIGTERM, bye); signal(SIGINT, bye); for (;;) pause(); }
`

// corednsC stands in for CoreDNS when the artifact cache has none.
const corednsC = `#include <stdio.h>
int main(int argc, char **argv) { printf("CoreDNS stand-in"); for (int i = 1; i < argc; i++) printf(" %s", argv[i]); printf("\n"); return 0; }
`

func compile(t *testing.T, dir, name, src string) string {
	t.Helper()
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if b, err := exec.Command("gcc", "-static", "-O2", "-o", out, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}

func setup(t *testing.T) *env {
	labtest.RequireRoot(t)
	for _, f := range []string{"/bin/busybox", "/usr/bin/wget", "/usr/sbin/nginx", "/usr/sbin/dnsmasq"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing (make deps)", f)
		}
	}
	e := &env{t: t, bin: labtest.Binaries(t), work: filepath.Join(t.TempDir(), "work"),
		recipe: filepath.Join(labtest.RepoRoot(), "recipes", "examples", "images.star")}
	e.lab = labtest.NewNamespace(t, "khw-img")
	labtest.Bridge(t, e.lab)
	e.sock = labtest.Dockerd(t, e.lab, "--insecure-registry", registry)
	cmd := exec.Command("bash", filepath.Join(labtest.RepoRoot(), "scripts", "registry-image.sh"))
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("registry-image: %v\n%s", err, out)
	}
	progs := t.TempDir()
	coredns := compile(t, progs, "coredns", corednsC)
	if real, _ := filepath.Glob("/var/lib/khw/artifacts/coredns/v1.12.1/coredns"); len(real) == 1 {
		coredns = real[0]
	}
	e.sets = []string{"registry_image=khw/registry:local", "pause=" + compile(t, progs, "pause", pauseC),
		"coredns=" + coredns}
	return e
}

func (e *env) khw(args ...string) (string, error) {
	full := append([]string{"netns", "exec", e.lab.Name, "env", "DOCKER_HOST=unix://" + e.sock, "KHW_PLUGIN_PATH=",
		filepath.Join(e.bin, "khw")}, args...)
	full = append(full, e.recipe, "--workdir", e.work)
	for _, s := range e.sets {
		full = append(full, "--set", s)
	}
	out, err := exec.Command("ip", full...).CombinedOutput()
	return string(out), err
}

func (e *env) mustKhw(args ...string) string {
	e.t.Helper()
	out, err := e.khw(args...)
	if err != nil {
		e.t.Fatalf("khw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) docker(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"-H", "unix://" + e.sock}, args...)...).CombinedOutput()
	return string(out), err
}

func (e *env) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// digests are the manifest digests khw recorded for each image.
func (e *env) digests() map[string]string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.work, ".khw", "state.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var st struct {
		Resources map[string]struct {
			Outputs json.RawMessage `json:"outputs"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for addr, r := range st.Resources {
		if strings.HasPrefix(addr, "image.build.") {
			var o struct{ Digest string }
			_ = json.Unmarshal(r.Outputs, &o)
			out[addr] = o.Digest
		}
	}
	return out
}

// dnsmasq answers for the cluster's names as the cluster DNS would:
// kubernetes.default.svc.cluster.local is 10.32.0.1, any other name in
// cluster.local does not exist.
func dnsmasq(t *testing.T, lab *labtest.Namespace) {
	cmd := lab.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=10.200.1.1", "--pid-file=", "--user=root",
		"--local=/cluster.local/", "--host-record=kubernetes.default.svc.cluster.local,10.32.0.1", "--log-queries", "--log-facility=-")
	log := &labtest.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		t.Logf("dnsmasq:\n%s", labtest.Tail(log.String(), 30))
	})
	time.Sleep(300 * time.Millisecond)
}

// The kubelet's resolv.conf for a pod in namespace default.
var clusterDNS = []string{"--dns", "10.200.1.1", "--dns-search", "default.svc.cluster.local",
	"--dns-search", "svc.cluster.local", "--dns-search", "cluster.local", "--dns-option", "ndots:5"}

func TestTheRegistryServesTheClustersImages(t *testing.T) {
	e := setup(t)
	// An image that is not there and cannot be pulled: a clear error
	// that says how to build the offline one.
	e.sets[0] = "registry_image=khw/none:local"
	if out, err := e.khw("run", "--target", "registry"); err == nil ||
		!strings.Contains(out, "images.star:23): registry image khw/none:local is not on this machine and cannot be pulled") ||
		!strings.Contains(out, "hint: offline, build the local one with `make registry-image`") {
		t.Fatalf("a missing registry image: %v\n%s", err, out)
	}
	e.sets[0] = "registry_image=khw/registry:local"
	start := time.Now()
	out := e.mustKhw("run")
	t.Logf("first run: %s\n%s", time.Since(start).Round(time.Millisecond), labtest.Tail(out, 12))

	// The registry: a container of khw's at its address, its store a
	// volume of khw's.
	if s := e.mustDocker("inspect", "-f", "{{.State.Running}} {{index .Config.Labels \"dev.khw.managed\"}} {{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}", "registry"); strings.TrimSpace(s) != "true true khw-registry-registry:/var/lib/registry" {
		t.Fatalf("registry container: %s", s)
	}
	if s := e.mustDocker("volume", "inspect", "-f", "{{index .Labels \"dev.khw.managed\"}}", "khw-registry-registry"); strings.TrimSpace(s) != "true" {
		t.Fatalf("registry volume: %s", s)
	}
	first := e.digests()
	if len(first) != 5 {
		t.Fatalf("recorded digests: %v", first)
	}
	if first["image.build.busybox"] == first["image.build.busybox-1.28"] {
		t.Errorf("busybox:1.28 (ISC's nslookup) and busybox:latest have the same digest %v", first)
	}

	// Pulled from the registry under the names a containerd mirror asks
	// for, with the digests khw recorded.
	for addr, path := range map[string]string{
		"image.build.pause": "pause:3.10.1", "image.build.coredns": "coredns/coredns:v1.12.1",
		"image.build.nginx": "library/nginx:latest", "image.build.busybox": "library/busybox:latest",
		"image.build.busybox-1.28": "library/busybox:1.28",
	} {
		e.mustDocker("pull", registry+"/"+path)
		rd := e.mustDocker("image", "inspect", "-f", "{{range .RepoDigests}}{{.}} {{end}}", registry+"/"+path)
		if !strings.Contains(rd, "@"+first[addr]) {
			t.Errorf("%s: pulled %s, khw recorded %s", path, rd, first[addr])
		}
	}

	t.Run("nginx", func(t *testing.T) {
		img := registry + "/library/nginx:latest"
		if v := e.mustDocker("run", "--rm", img, "nginx", "-v"); !strings.Contains(v, "nginx version: nginx/") {
			t.Fatalf("nginx -v: %s", v)
		}
		e.mustDocker("run", "-d", "--name", "web", "--network", "br0", "--ip", webIP, img)
		defer e.docker("rm", "-f", "web")
		var page string
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if page, err = e.lab.Output("curl", "-sS", "-i", "http://"+webIP+"/"); err == nil {
				break
			}
		}
		if err != nil || !strings.Contains(page, "HTTP/1.1 200 OK") || !strings.Contains(page, "Welcome to nginx!") {
			t.Fatalf("GET /: %v\n%s\nlogs: %s", err, page, e.mustDocker("logs", "web"))
		}
		time.Sleep(300 * time.Millisecond)
		if logs := e.mustDocker("logs", "web"); !strings.Contains(logs, `"GET / HTTP/1.1" 200`) {
			t.Fatalf("the request is not in docker logs:\n%s", logs)
		}
		if ps := e.mustDocker("exec", "web", "nginx", "-v"); !strings.Contains(ps, "nginx version") {
			t.Fatalf("exec nginx -v: %s", ps)
		}
	})

	t.Run("busybox", func(t *testing.T) {
		dnsmasq(t, e.lab)
		e.mustDocker("run", "-d", "--name", "web", "--network", "br0", "--ip", webIP, registry+"/library/nginx:latest")
		defer e.docker("rm", "-f", "web")
		for _, tag := range []string{"1.28", "latest"} {
			img := registry + "/library/busybox:" + tag
			run := func(args ...string) (string, error) {
				return e.docker(append(append(append([]string{"run", "--rm", "--network", "br0"}, clusterDNS...), img), args...)...)
			}
			if out, err := run("wget", "-q", "-O", "-", "http://"+webIP+"/"); err != nil || !strings.Contains(out, "Welcome to nginx!") {
				t.Errorf("busybox:%s wget: %v\n%s", tag, err, out)
			}
			// The smoke test's own command: the short name, through the
			// search list the kubelet writes into resolv.conf. busybox
			// 1.35's nslookup asks for every candidate name at once and
			// prints each answer: the search list is honoured, but the
			// other candidates' NXDOMAIN are printed too and make it exit 1.
			// busybox:1.28 has ISC's nslookup, which prints the one answer
			// and exits 0, as busybox 1.28.4's did.
			out, err := run("nslookup", "kubernetes")
			t.Logf("busybox:%s nslookup kubernetes: %v\n%s", tag, err, out)
			if !strings.Contains(out, "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.32.0.1") {
				t.Errorf("busybox:%s nslookup kubernetes does not find it through the search list: %v\n%s", tag, err, out)
			}
			if tag == "1.28" && err != nil {
				t.Errorf("busybox:1.28 nslookup kubernetes exits with an error: %v\n%s", err, out)
			}
			if out, err := run("sh", "-c", "ls /bin | wc -l; echo $PATH; id"); err != nil || !strings.Contains(out, "uid=0(root)") {
				t.Errorf("busybox:%s sh: %v\n%s", tag, err, out)
			}
		}
	})

	t.Run("pause", func(t *testing.T) {
		e.mustDocker("run", "-d", "--name", "sandbox", registry+"/pause:3.10.1")
		defer e.docker("rm", "-f", "sandbox")
		time.Sleep(300 * time.Millisecond)
		if s := e.mustDocker("inspect", "-f", "{{.State.Running}} {{.Config.User}}", "sandbox"); strings.TrimSpace(s) != "true 65535:65535" {
			t.Fatalf("pause is not running as 65535: %s", s)
		}
		began := time.Now()
		e.mustDocker("stop", "-t", "10", "sandbox") // SIGTERM, SIGKILL after 10 s
		took := time.Since(began)
		if s := e.mustDocker("inspect", "-f", "{{.State.ExitCode}}", "sandbox"); strings.TrimSpace(s) != "0" || took > 5*time.Second {
			t.Fatalf("pause on SIGTERM: exit %s after %s", s, took)
		}
	})

	t.Run("coredns", func(t *testing.T) {
		out := e.mustDocker("run", "--rm", registry+"/coredns/coredns:v1.12.1", "-version")
		if !strings.Contains(out, "CoreDNS") {
			t.Fatalf("coredns -version: %s", out)
		}
		t.Logf("coredns -version: %s", strings.TrimSpace(out))
	})

	t.Logf("images:\n%s", e.mustDocker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"))
	// Again: nothing to do.
	start = time.Now()
	if out := e.mustKhw("plan"); !strings.Contains(out, "No changes.") {
		t.Fatalf("second plan:\n%s", out)
	}
	t.Logf("plan with every image read back: %s", time.Since(start).Round(time.Millisecond))

	// The registry's store wiped (a registry re-made with nothing in
	// it): every image is gone from the world, and made again.
	e.mustDocker("run", "--rm", "-v", "khw-registry-registry:/store", registry+"/library/busybox:latest", "rm", "-rf", "/store/docker")
	e.mustDocker("restart", "registry") // its in-memory blob cache goes too
	time.Sleep(time.Second)
	out = e.mustKhw("plan")
	for addr := range first {
		if !strings.Contains(out, addr+" will be created") {
			t.Errorf("after the store was wiped, the plan does not make %s again:\n%s", addr, out)
		}
	}
	e.mustKhw("run")

	// destroy leaves no container and no volume.
	e.mustKhw("destroy")
	if ps := e.mustDocker("ps", "-aq", "--filter", "name=registry"); strings.TrimSpace(ps) != "" {
		t.Fatalf("registry container left: %s", ps)
	}
	if vs := e.mustDocker("volume", "ls", "-q"); strings.Contains(vs, "khw-registry") {
		t.Fatalf("registry volume left: %s", vs)
	}

	// The same inputs and host files, built from scratch: the same digests.
	e.mustKhw("run")
	if again := e.digests(); fmt.Sprint(sorted(again)) != fmt.Sprint(sorted(first)) {
		t.Fatalf("digests differ after destroy and run:\nfirst %v\nagain %v", first, again)
	}
	e.mustKhw("destroy")
}

func sorted(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
