// Package lb tests the post's load balancer end to end: khw makes the
// Docker network on the lab bridge and the nginx container in front of the
// controllers, against a real dockerd running in a network namespace, and a
// TLS client verifies khw's API server certificate through it.
package lb

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

type env struct {
	t      *testing.T
	lab    *labtest.Namespace
	bin    string
	work   string
	sock   string
	recipe string
	ctl    map[string]*exec.Cmd
	ctlNS  map[string]*labtest.Namespace
}

func setup(t *testing.T) *env {
	labtest.RequireRoot(t)
	e := &env{t: t, bin: labtest.Binaries(t), work: filepath.Join(t.TempDir(), "work"),
		ctl: map[string]*exec.Cmd{}, ctlNS: map[string]*labtest.Namespace{}}
	e.recipe = filepath.Join(labtest.RepoRoot(), "recipes", "hardway.star")
	e.lab = labtest.NewNamespace(t, "khw-lb")
	labtest.Bridge(t, e.lab)
	e.sock = labtest.Dockerd(t, e.lab)
	cmd := exec.Command("bash", filepath.Join(labtest.RepoRoot(), "scripts", "lb-image.sh"))
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lb-image: %v\n%s", err, out)
	}
	// The API server's certificate, made by khw.
	if out, err := e.khw("run", "--target", "pki.cert.kubernetes"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name, ip := range map[string]string{"m1": "10.200.1.10", "m2": "10.200.1.11"} {
		e.controller(name, ip)
	}
	return e
}

// controller is a namespace on br0 whose "API server" is openssl serving
// khw's kubernetes.pem on 6443.
func (e *env) controller(name, ip string) {
	e.ctlNS[name] = labtest.Host(e.t, e.lab, "khw-"+name, ip)
	e.startAPI(name)
}

func (e *env) startAPI(name string) {
	cmd := e.ctlNS[name].Command("openssl", "s_server", "-quiet", "-accept", "6443",
		"-cert", filepath.Join(e.work, "kubernetes.pem"), "-key", filepath.Join(e.work, "kubernetes-key.pem"), "-www")
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.ctl[name] = cmd
	e.t.Cleanup(func() { e.stopAPI(name) })
	time.Sleep(200 * time.Millisecond)
}

func (e *env) stopAPI(name string) {
	if c := e.ctl[name]; c != nil && c.Process != nil {
		_ = c.Process.Kill()
		_, _ = c.Process.Wait()
		e.ctl[name] = nil
	}
}

func (e *env) khw(args ...string) (string, error) {
	full := append([]string{"netns", "exec", e.lab.Name, "env", "DOCKER_HOST=unix://" + e.sock, "KHW_PLUGIN_PATH=", filepath.Join(e.bin, "khw")}, args...)
	full = append(full, e.recipe, "--workdir", e.work, "--set", "hypervisor=none", "--set", "lb_image=khw/nginx-stream:local")
	out, err := exec.Command("ip", full...).CombinedOutput()
	return string(out), err
}

func (e *env) docker(args ...string) string {
	out, _ := exec.Command("docker", append([]string{"-H", "unix://" + e.sock}, args...)...).CombinedOutput()
	return string(out)
}

// tls connects through the load balancer and verifies the chain with
// ca.pem, the name kubernetes.default and the IP 10.200.1.15.
func (e *env) tls(port int) error {
	out, err := e.lab.Output("openssl", "s_client", "-connect", fmt.Sprintf("10.200.1.15:%d", port),
		"-CAfile", filepath.Join(e.work, "ca.pem"), "-verify_hostname", "kubernetes.default",
		"-verify_ip", "10.200.1.15", "-verify_return_error", "-brief")
	if err != nil || !strings.Contains(out, "Verification: OK") {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// tlsSoon retries tls until it succeeds or the time is up.
func (e *env) tlsSoon(port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := e.tls(port)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func snapshot(e *env) string {
	var b strings.Builder
	// Absolute fields only: the default columns say "Up 29 seconds" and
	// "2 minutes ago", which change while the dry run runs.
	for _, a := range [][]string{
		{"ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.Names}} {{.State}} {{.CreatedAt}} {{.Ports}}"},
		{"network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}}"},
		{"image", "ls", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.CreatedAt}}"},
	} {
		b.WriteString(e.docker(a...))
	}
	_ = filepath.Walk(e.work, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

func TestTheLoadBalancerServesTheAPIServerCert(t *testing.T) {
	e := setup(t)
	out, err := e.khw("run", "--target", "docker", "--target", "lb")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(e.docker("network", "inspect", "br0"), `"com.docker.network.bridge.name": "br0"`) {
		t.Fatal("the Docker network does not adopt br0")
	}
	for _, port := range []int{6443, 443} {
		if err := e.tls(port); err != nil {
			t.Fatalf("TLS through the LB on %d: %v", port, err)
		}
	}
	// One controller down: still served by the other. (nginx keeps an
	// upstream that failed out for fail_timeout, 10 s by default, so a
	// controller that just came back may take that long to be used again.)
	for _, down := range []string{"m1", "m2"} {
		e.stopAPI(down)
		if err := e.tlsSoon(6443, 15*time.Second); err != nil {
			t.Fatalf("with %s down: %v", down, err)
		}
		for i := 0; i < 3; i++ {
			if err := e.tls(6443); err != nil {
				t.Fatalf("with %s down, connection %d: %v", down, i, err)
			}
		}
		e.startAPI(down)
	}

	// Re-run: nothing to do; a dry run changes nothing.
	if out, err := e.khw("run", "--target", "docker", "--target", "lb"); err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	before := snapshot(e)
	if out, err := e.khw("run", "--dry-run", "--target", "docker", "--target", "lb"); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if snapshot(e) != before {
		t.Fatal("the dry run changed Docker or the workdir")
	}

	// A third controller in the recipe: the LB's config follows, no other edit.
	dir := filepath.Join(t.TempDir(), "recipes")
	if b, err := exec.Command("cp", "-r", filepath.Join(labtest.RepoRoot(), "recipes"), dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "hardway.star"))
	edited := strings.Replace(string(src), `    {"name": "m2", "ip": "10.200.1.11"},`, `    {"name": "m2", "ip": "10.200.1.11"},
    {"name": "m3", "ip": "10.200.1.12"},`, 1)
	_ = os.WriteFile(filepath.Join(dir, "hardway.star"), []byte(edited), 0o644)
	e.recipe = filepath.Join(dir, "hardway.star")
	e.controller("m3", "10.200.1.12")
	out, err = e.khw("run", "--target", "docker", "--target", "lb")
	if err != nil || !strings.Contains(out, "lb.nginx.proxy: updated") {
		t.Fatalf("three controllers: %v\n%s", err, out)
	}
	conf := e.docker("exec", "proxy", "/usr/sbin/nginx", "-T", "-c", "/etc/khw/nginx.conf")
	for _, ip := range []string{"10.200.1.10", "10.200.1.11", "10.200.1.12"} {
		if !strings.Contains(conf, "server "+ip+":6443;") {
			t.Fatalf("upstream %s missing:\n%s", ip, conf)
		}
	}
	e.stopAPI("m1")
	e.stopAPI("m2")
	if err := e.tlsSoon(6443, 15*time.Second); err != nil {
		t.Fatalf("only m3 up: %v", err)
	}

	// Destroy leaves no container and no network.
	if out, err := e.khw("destroy", "--target", "docker", "--target", "lb"); err != nil {
		t.Fatalf("destroy: %v\n%s", err, out)
	}
	if ps := e.docker("ps", "-aq"); strings.TrimSpace(ps) != "" {
		t.Fatalf("containers left: %s", ps)
	}
	if nets := e.docker("network", "ls", "--format", "{{.Name}}"); strings.Contains(nets, "br0") {
		t.Fatalf("network left: %s", nets)
	}
}
