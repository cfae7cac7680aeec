package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/plugins/sdk"
)

// daemon returns the URI of libvirt's test driver on a private libvirtd:
// a real daemon and real RPC, with a fake hypervisor.
func daemon(t *testing.T) string {
	t.Helper()
	return "test+unix:///default?socket=" + labtest.Libvirtd(t)
}

func virsh(t *testing.T, uri string, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", uri}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func resource(t *testing.T, uri, name, ip string) sdk.Resource {
	no := false
	c := vmConfig{Hostname: name, IP: ip, Prefix: 24, Gateway: "10.200.1.1", Bridge: "br0", Role: "worker", User: "veeru",
		CPUs: 1, MemoryMiB: 512, DiskGiB: 2, Image: "/default-pool/base.qcow2", SSHPublicKey: "id_ed25519.pub",
		Options: options{Accel: "test", URI: uri, Pool: "khwtest", PoolPath: "/khwtest", WaitSSH: &no}}
	b, _ := json.Marshal(c)
	return sdk.Resource{Type: "vm", Name: name, Address: "vm." + name, Config: b}
}

func TestVMLifecycleAgainstTheTestDriver(t *testing.T) {
	uri := daemon(t)
	work := t.TempDir()
	_ = os.WriteFile(filepath.Join(work, "id_ed25519.pub"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx test\n"), 0o644)
	p := newProvider()
	ctx := context.Background()
	res := resource(t, uri, "n1", "10.200.1.13")

	var steps []string
	out, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: res, Workdir: work}, func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	var o vmOutputs
	_ = json.Unmarshal(out.Outputs, &o)
	if o.UUID == "" || !strings.HasPrefix(o.MAC, "52:54:00:") || !strings.HasPrefix(o.HostKey, "ssh-ed25519 ") {
		t.Fatalf("outputs %+v", o)
	}
	if list := virsh(t, uri, "list", "--all"); !strings.Contains(list, " n1 ") || !strings.Contains(list, "running") {
		t.Fatalf("domain not running:\n%s", list)
	}
	vols := virsh(t, uri, "vol-list", "khwtest")
	for _, v := range []string{"n1.qcow2", "n1-seed.iso"} {
		if !strings.Contains(vols, v) {
			t.Fatalf("volume %s missing:\n%s", v, vols)
		}
	}
	xml := virsh(t, uri, "dumpxml", "n1")
	for _, want := range []string{"<source bridge='br0'/>", "<mac address='" + o.MAC + "'/>", "<model type='virtio'/>", "khw node n1"} {
		if !strings.Contains(xml, want) {
			t.Errorf("domain XML lacks %s", want)
		}
	}

	// Read: present and well; then destroyed by hand: gone.
	rr, err := p.Read(ctx, &sdk.ReadRequest{Resource: res, PriorOutputs: out.Outputs})
	if err != nil || !rr.Exists || rr.Drift != "" {
		t.Fatalf("read: %+v %v", rr, err)
	}
	virsh(t, uri, "destroy", "n1")
	if rr, _ := p.Read(ctx, &sdk.ReadRequest{Resource: res, PriorOutputs: out.Outputs}); !rr.Exists || !strings.Contains(rr.Drift, "not running") {
		t.Fatalf("a stopped VM is not drift: %+v", rr)
	}
	virsh(t, uri, "undefine", "n1")
	if rr, _ := p.Read(ctx, &sdk.ReadRequest{Resource: res, PriorOutputs: out.Outputs}); rr.Exists {
		t.Fatal("an undefined VM still exists")
	}

	// Apply again brings it back (leftover volumes are replaced).
	out2, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: res, Workdir: work}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out2.Digest == out.Digest {
		t.Fatal("a re-made VM must have a new digest (its dependents are redone)")
	}

	// A domain of the same name that khw did not make is never touched.
	other := resource(t, uri, "test", "10.200.1.20") // the test driver's own domain
	if _, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: other, Workdir: work}, nil); err == nil ||
		!strings.Contains(err.Error(), "khw did not make it") {
		t.Fatalf("err = %v", err)
	}

	// Delete removes the domain and both volumes.
	if err := p.Delete(ctx, &sdk.DeleteRequest{Resource: res, PriorOutputs: out2.Outputs, Workdir: work}); err != nil {
		t.Fatal(err)
	}
	if list := virsh(t, uri, "list", "--all"); strings.Contains(list, " n1 ") {
		t.Fatalf("domain left:\n%s", list)
	}
	if vols := virsh(t, uri, "vol-list", "khwtest"); strings.Contains(vols, "n1") {
		t.Fatalf("volumes left:\n%s", vols)
	}
}

// A new VM is refused an address that something on a link of this
// machine answers at, and nothing is made; a domain of ours by that name
// (a replacement) is not checked, as it may answer there itself.
func TestAddressInUse(t *testing.T) {
	uri := labtest.LibvirtTestDriver(t, labtest.Libvirtd(t))
	work := t.TempDir()
	_ = os.WriteFile(filepath.Join(work, "id_ed25519.pub"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx test\n"), 0o644)
	p := newProvider()
	ctx := context.Background()
	// 127.0.0.1 is on this machine: port 22 there accepts (sshd) or refuses.
	taken := resource(t, uri, "n7", "127.0.0.1")
	_, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: taken, Workdir: work}, nil)
	if err == nil || !strings.Contains(err.Error(), "IP 127.0.0.1 is already in use on br0 (something answers there: port 22 ") ||
		sdk.HintOf(err) != "free the IP or give the node another one" {
		t.Fatalf("err = %v, hint %q", err, sdk.HintOf(err))
	}
	// The test driver's state lives in this connection: ask the plugin.
	if rr, err := p.Read(ctx, &sdk.ReadRequest{Resource: taken}); err != nil || rr.Exists {
		t.Fatalf("a refused VM was made: %+v %v", rr, err)
	}
	// n7 made at an address nobody holds (behind a router: not probed),
	// then replaced by one at the taken address: ours, so not refused.
	if _, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: resource(t, uri, "n7", "203.0.113.7"), Workdir: work}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(ctx, &sdk.ApplyRequest{Resource: taken, Workdir: work}, nil); err != nil {
		t.Fatalf("replacing our own VM: %v", err)
	}
}

func TestUnreachableDaemonIsAClearError(t *testing.T) {
	// No socket, or one left by a libvirtd that died.
	for _, sock := range []string{"/nonexistent/libvirt-sock", labtest.StaleSocket(t)} {
		p := newProvider()
		uri := "test+unix:///default?socket=" + sock
		_, err := p.Read(context.Background(), &sdk.ReadRequest{Resource: resource(t, uri, "n1", "10.200.1.13")})
		if err == nil || !strings.Contains(err.Error(), "libvirtd is not running at "+uri+" (dial unix "+sock) ||
			!strings.Contains(sdk.HintOf(err), "systemctl start libvirtd") {
			t.Fatalf("err = %v, hint %q", err, sdk.HintOf(err))
		}
	}
}

func TestSeedISO(t *testing.T) {
	c := &vmConfig{Hostname: "m1", IP: "10.200.1.10", Prefix: 24, Gateway: "10.200.1.1", User: "veeru", DNS: []string{"10.200.1.1"}}
	hk, err := newHostKey("m1")
	if err != nil {
		t.Fatal(err)
	}
	files, err := seedFiles(c, "ssh-ed25519 AAAA user\n", hk, "khw-m1-x")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"meta-data":      {"instance-id: khw-m1-x", "local-hostname: m1"},
		"user-data":      {"#cloud-config", "name: veeru", "- ssh-ed25519 AAAA user", "ed25519_public: ssh-ed25519 ", "NOPASSWD:ALL"},
		"network-config": {"version: 2", "macaddress: " + c.mac(), "set-name: eth0", "10.200.1.10/24", "gateway4: 10.200.1.1"},
	} {
		for _, w := range want {
			if !strings.Contains(string(files[name]), w) {
				t.Errorf("%s lacks %q:\n%s", name, w, files[name])
			}
		}
	}
	iso, err := seedISO(files)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	_ = os.WriteFile(path, iso, 0o600)
	// What cloud-init sees: blkid's label and the Rock Ridge names.
	for _, tool := range []string{"blkid", "isoinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("KHW_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s is not installed (make deps)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	if out, _ := exec.Command("blkid", "-o", "value", "-s", "LABEL", path).Output(); strings.TrimSpace(string(out)) != "cidata" {
		t.Errorf("label %q", out)
	}
	out, err := exec.Command("isoinfo", "-R", "-f", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/meta-data", "/user-data", "/network-config"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("ISO lacks %s:\n%s", want, out)
		}
	}
}
