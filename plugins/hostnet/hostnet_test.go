package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
)

// lab is a namespace with an uplink (up0, 10.200.255.2/30) to a "wan"
// namespace, whose end is the default route: the external interface the
// post's NAT goes out of.
type lab struct {
	ns, wan   *labtest.Namespace
	bin, work string
	hosts     string
}

func newLab(t *testing.T) *lab {
	labtest.RequireRoot(t)
	l := &lab{bin: labtest.Binaries(t), work: t.TempDir()}
	l.wan = labtest.NewNamespace(t, "khw-wan")
	l.ns = labtest.NewNamespace(t, "khw-hn")
	labtest.Link(t, l.ns, "up0", "10.200.255.2/30", l.wan, "down0", "10.200.255.1/30")
	l.ns.Run("ip", "route", "add", "default", "via", "10.200.255.1")
	l.hosts = filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(l.hosts, []byte("127.0.0.1\tlocalhost\n127.0.1.1\tghost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// khw runs khw inside the lab namespace on the post's recipe, limited to
// section 1's host networking.
func (l *lab) khw(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"netns", "exec", l.ns.Name, filepath.Join(l.bin, "khw")}, args...)
	full = append(full, filepath.Join(labtest.RepoRoot(), "recipes", "hardway.star"),
		"--workdir", l.work, "--target", "net.", "--set", "hosts_file="+l.hosts)
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), "KHW_PLUGIN_PATH=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var sysctls = []string{
	"net/ipv4/conf/all/forwarding", "net/bridge/bridge-nf-call-arptables",
	"net/bridge/bridge-nf-call-ip6tables", "net/bridge/bridge-nf-call-iptables",
}

// state is everything the kernel and the hosts file hold that khw may touch.
func (l *lab) state(t *testing.T) map[string]string {
	t.Helper()
	ipt := l.ns.Run("iptables-save")
	ipt = regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(ipt, "")
	ipt = regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(ipt, "")
	// A table that iptables merely looked at appears with its built-in
	// chains, empty and ACCEPT: the same rule set as no table at all.
	ipt = regexp.MustCompile(`(?m)^\*\w+\n(:[A-Z]+ ACCEPT \n)*COMMIT\n`).ReplaceAllString(ipt, "")
	// Bridge timers tick on their own.
	links := regexp.MustCompile(`\w+_timer\s+[\d.]+ ?`).ReplaceAllString(l.ns.Run("ip", "-d", "link"), "")
	s := map[string]string{
		"links":    links,
		"addrs":    l.ns.Run("ip", "-4", "addr"), // IPv6 link-local addresses come and go with DAD
		"iptables": ipt,
	}
	for _, k := range sysctls {
		s[k] = strings.TrimSpace(l.ns.Run("cat", "/proc/sys/"+k))
	}
	b, _ := os.ReadFile(l.hosts)
	s["hosts"] = string(b)
	files, _ := os.ReadDir(l.work)
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	s["workdir"] = strings.Join(names, " ")
	return s
}

func same(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for k := range a {
		if a[k] != b[k] {
			t.Errorf("%s: %s differs:\n--- before\n%s\n--- after\n%s", what, k, a[k], b[k])
		}
	}
}

func TestHostNetworkingInANamespace(t *testing.T) {
	l := newLab(t)
	start := l.state(t)

	// A dry run changes nothing at all.
	if out, err := l.khw(t, "run", "--dry-run"); err != nil || !strings.Contains(out, "Plan: 4 to add") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	same(t, "dry run on a fresh lab", start, l.state(t))

	out, err := l.khw(t, "run")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Apply complete! Resources: 4 added") {
		t.Fatalf("run:\n%s", out)
	}
	applied := l.state(t)

	link := l.ns.Run("ip", "-d", "link", "show", "br0")
	if !strings.Contains(link, "bridge ") || !strings.Contains(link, "state UP") && !strings.Contains(link, ",UP") {
		t.Errorf("br0 is not an up bridge:\n%s", link)
	}
	if !strings.Contains(l.ns.Run("ip", "addr", "show", "br0"), "inet 10.200.1.1/24") {
		t.Error("br0 lacks 10.200.1.1/24")
	}
	for _, want := range []string{
		"-A POSTROUTING -s 10.200.1.0/24 -o up0 -m comment --comment \"khw:net.nat.br0\" -j MASQUERADE",
		"-A FORWARD -i up0 -o br0 -m state --state RELATED,ESTABLISHED -m comment --comment \"khw:net.nat.br0\" -j ACCEPT",
		"-A FORWARD -i br0 -o up0 -m comment --comment \"khw:net.nat.br0\" -j ACCEPT",
	} {
		if strings.Count(applied["iptables"], want) != 1 {
			t.Errorf("iptables-save has %q %d times:\n%s", want, strings.Count(applied["iptables"], want), applied["iptables"])
		}
	}
	if applied["net/ipv4/conf/all/forwarding"] != "1" {
		t.Error("forwarding is not 1")
	}
	for _, k := range sysctls[1:] {
		if applied[k] != "0" {
			t.Errorf("%s = %s", k, applied[k])
		}
	}
	if !strings.HasPrefix(applied["hosts"], start["hosts"]) ||
		!strings.Contains(applied["hosts"], "10.200.1.13 n1\n10.200.1.14 n2\n10.200.1.15 proxy\n") {
		t.Errorf("hosts file:\n%s", applied["hosts"])
	}
	// Second apply: no changes, no rule twice.
	out, err = l.khw(t, "run")
	if err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	same(t, "second run", applied, l.state(t))

	// Dry run on the live lab changes nothing either.
	if out, err := l.khw(t, "plan"); err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("plan on the live lab: %v\n%s", err, out)
	}
	same(t, "dry run on the live lab", applied, l.state(t))

	// A rule deleted by hand is drift: planned and put back, once.
	l.ns.Run("iptables", "-D", "FORWARD", "-i", "br0", "-o", "up0", "-m", "comment", "--comment", "khw:net.nat.br0", "-j", "ACCEPT")
	if out, _ := l.khw(t, "plan"); !strings.Contains(out, "net.nat.br0 must be replaced (drift: rule missing") {
		t.Fatalf("drift not planned:\n%s", out)
	}
	if out, err := l.khw(t, "run"); err != nil {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	same(t, "after repairing drift", applied, l.state(t))

	// Destroy: back to exactly the start, other rules and lines untouched.
	l.ns.Run("iptables", "-A", "FORWARD", "-i", "up0", "-j", "DROP") // someone else's rule
	withOther := l.ns.Run("iptables-save")
	if out, err := l.khw(t, "destroy"); err != nil {
		t.Fatalf("destroy: %v\n%s", err, out)
	}
	if !strings.Contains(l.ns.Run("iptables-save"), "-A FORWARD -i up0 -j DROP") {
		t.Fatalf("destroy removed a rule khw did not add:\n%s", withOther)
	}
	l.ns.Run("iptables", "-D", "FORWARD", "-i", "up0", "-j", "DROP")
	end := l.state(t)
	delete(end, "workdir")
	same(t, "destroy", without(start, "workdir"), end)
}

func without(m map[string]string, k string) map[string]string {
	c := map[string]string{}
	for a, b := range m {
		if a != k {
			c[a] = b
		}
	}
	return c
}

func TestBlockSplitLeavesOtherLines(t *testing.T) {
	c := hostsConfig{Entries: map[string]string{"m1": "10.200.1.10", "proxy": "10.200.1.15"}}
	orig := "127.0.0.1 localhost\n# a comment\n"
	withBlock := orig + block(c, "net.hosts.x") + "10.0.0.9 after\n"
	rest, cur := split(withBlock, "net.hosts.x")
	if rest != orig+"10.0.0.9 after\n" || cur != block(c, "net.hosts.x") {
		t.Fatalf("rest %q cur %q", rest, cur)
	}
	if _, cur := split(withBlock, "net.hosts.other"); cur != "" {
		t.Fatal("another resource's block was found")
	}
}

// TestBridgePorts: bridge_ports attaches an existing link to br0 (how a
// second hypervisor host's segment joins the lab), drift is seen and
// repaired, destroy lets the link go, and a missing link is named.
func TestBridgePorts(t *testing.T) {
	l := newLab(t)
	l.ns.Run("ip", "link", "add", "port0", "type", "veth", "peer", "name", "port0p")
	port := []string{"--set", "bridge_ports=port0"}
	master := func() string {
		out := l.ns.Run("ip", "-o", "link", "show", "port0")
		if i := strings.Index(out, "master "); i >= 0 {
			return strings.Fields(out[i:])[1]
		}
		return ""
	}
	if out, err := l.khw(t, append([]string{"run"}, port...)...); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if m := master(); m != "br0" {
		t.Fatalf("port0's master is %q, want br0", m)
	}
	if out, err := l.khw(t, append([]string{"run"}, port...)...); err != nil || !strings.Contains(out, "No changes.") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	l.ns.Run("ip", "link", "set", "port0", "nomaster")
	if out, _ := l.khw(t, append([]string{"plan"}, port...)...); !strings.Contains(out, "port0 is not a port of br0") {
		t.Fatalf("drift not planned:\n%s", out)
	}
	if out, err := l.khw(t, append([]string{"run"}, port...)...); err != nil || master() != "br0" {
		t.Fatalf("repair: %v (master %q)\n%s", err, master(), out)
	}
	if out, err := l.khw(t, append([]string{"destroy"}, port...)...); err != nil {
		t.Fatalf("destroy: %v\n%s", err, out)
	}
	if m := master(); m != "" {
		t.Errorf("port0 still has master %q after destroy", m)
	}
	out, err := l.khw(t, "run", "--set", "bridge_ports=nosuch0")
	if err == nil || !strings.Contains(out, "port nosuch0 of bridge br0 does not exist") || !strings.Contains(out, "net.bridge.br0") {
		t.Errorf("missing port: %v\n%s", err, out)
	}
}

// TestHostsKeepsASymlinkedFile: where /etc/hosts is a symlink (NixOS, some
// containers), the file it points to gets the block and the link stays.
func TestHostsKeepsASymlinkedFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "static-hosts")
	if err := os.WriteFile(real, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hosts")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	c := hostsConfig{Entries: map[string]string{"m1": "10.200.1.10"}, File: link}
	if err := writeHosts(link, "127.0.0.1 localhost\n"+block(c, "net.hosts.x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link is gone: %v", err)
	}
	if b, _ := os.ReadFile(real); !strings.Contains(string(b), "10.200.1.10 m1") {
		t.Errorf("the link's target lacks the block:\n%s", b)
	}
}
