package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBadInputIsRejectedBeforeAnythingIsTouched edits a copy of the post's
// recipe in one way each and checks that khw refuses it with the recipe's
// file:line and a sentence that says what is wrong, creating nothing.
func TestBadInputIsRejectedBeforeAnythingIsTouched(t *testing.T) {
	cases := []struct {
		name     string
		file     string // file under recipes/ to edit; "" for none
		old, new string
		set      []string
		want     string // in the message
		where    string // regexp for the position
	}{
		{name: "the post's workers.txt: n2 listed twice",
			file: "hardway.star", old: `{"name": "n1", "ip": "10.200.1.13"}`, new: `{"name": "n2", "ip": "10.200.1.13"}`,
			want: `duplicate node name "n2"`, where: `topology\.star:\d+:\d+: .*\n(.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "duplicate IP",
			file: "hardway.star", old: `"ip": "10.200.1.14"`, new: `"ip": "10.200.1.13"`,
			want: "duplicate IP 10.200.1.13", where: `hardway\.star:\d+`},
		{name: "IP outside the node subnet",
			file: "hardway.star", old: `"ip": "10.200.1.13"`, new: `"ip": "10.200.2.13"`,
			want: "IP 10.200.2.13 is outside the node subnet 10.200.1.0/24", where: `hardway\.star:\d+`},
		{name: "not an IP",
			file: "hardway.star", old: `"ip": "10.200.1.13"`, new: `"ip": "10.200.1.313"`,
			want: `"10.200.1.313" is not an IP address`, where: `hardway\.star:\d+`},
		{name: "overlapping CIDRs",
			file: "hardway.star", old: `POD_CIDR = "10.100.0.0/16"`, new: `POD_CIDR = "10.200.0.0/16"`,
			want: "node_subnet 10.200.1.0/24 overlaps pod_cidr 10.200.0.0/16", where: `hardway\.star:\d+`},
		{name: "malformed CIDR",
			file: "hardway.star", old: `SERVICE_CIDR = "10.32.0.0/24"`, new: `SERVICE_CIDR = "10.32.0.0/33"`,
			want: `service_cidr "10.32.0.0/33" is not a network in CIDR form`, where: `hardway\.star:\d+`},
		{name: "unknown signing profile",
			file: "lib/pki.star", old: `PROFILE = "kubernetes"`, new: `PROFILE = "kubernetes2"`,
			want: `pki.cert: unknown signing profile "kubernetes2": the config has "kubernetes"`, where: `pki\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "bad key size",
			file: "lib/pki.star", old: `"size": 2048`, new: `"size": 1024`,
			want: "rsa size 1024 is not allowed: cfssl takes 2048 to 8192 bits", where: `pki\.star:\d+`},
		{name: "unknown key algorithm",
			file: "hardway/ca-csr.json", old: `"algo": "rsa"`, new: `"algo": "dsa"`,
			want: `unknown algorithm "dsa"`, where: `hardway\.star:\d+`},
		{name: "unknown builtin argument",
			file: "lib/lab.star", old: `net.nat(br0, external_iface`, new: `net.nat(br0, external_interface`,
			want: "net.nat: unexpected keyword argument \"external_interface\"", where: `lab\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "load() outside the root",
			file: "hardway.star", old: `load("lib/topology.star", "resize", "topology")`, new: `load("../secrets.star", "resize", "topology")`,
			want: `load() "../secrets.star" is outside the recipe root`, where: `hardway\.star:\d+`},
		{name: "missing parameter",
			file: "hardway.star", old: `NODE_SUBNET = "10.200.1.0/24"`, new: `NODE_SUBNET = param("node_subnet")`,
			want: `parameter "node_subnet" has no default and was not given: run with --set node_subnet=VALUE`, where: `hardway\.star:\d+`},
		{name: "unknown --set parameter",
			set:  []string{"--set", "controlers=3"},
			want: "--set controlers: recipes/hardway.star declares no such parameter (it has: hypervisor, user, accel", where: ``},
		{name: "unknown hypervisor",
			set:  []string{"--set", "hypervisor=virtualbox"},
			want: `unknown hypervisor "virtualbox": the hypervisors are libvirt, docker, none`, where: `hardway\.star:\d+`},
		{name: "bad SAN",
			set:  []string{"--set", "extra_sans=not a host!"},
			want: `hosts[13]: "not a host!" is neither an IP address nor a DNS name`, where: `pki\.star:\d+`},
		{name: "unknown node field",
			file: "hardway.star", old: `{"name": "m1", "ip": "10.200.1.10"}`, new: `{"name": "m1", "ip": "10.200.1.10", "cpu": 2}`,
			want: `unknown key "cpu"`, where: `hardway\.star:\d+`},
		{name: "bad node name",
			file: "hardway.star", old: `{"name": "m1",`, new: `{"name": "M_1",`,
			want: `controller "M_1": not a valid host name`, where: `topology\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "syntax error",
			file: "hardway.star", old: `network = make_network(`, new: `network = = make_network(`,
			want: "syntax error", where: `hardway\.star:\d+:\d+`},
		{name: "no such builtin",
			file: "hardway.star", old: `enc = encryption.config(`, new: `enc = encryption.configure(`,
			want: "module has no .configure field or method", where: `hardway\.star:\d+:\d+`},
		// Parts 2 and 3.
		{name: "a Kubernetes version that does not exist",
			set:  []string{"--set", "kubernetes_version=v1.34.99"},
			want: `kubernetes v1.34.99 is not a version khw knows`, where: `lab\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "no controllers",
			set:  []string{"--set", "controllers=0"},
			want: "controllers is empty: the lab needs at least one controller", where: `topology\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "a service CIDR that overlaps the node subnet",
			file: "hardway.star", old: `SERVICE_CIDR = "10.32.0.0/24"`, new: `SERVICE_CIDR = "10.200.1.0/25"`,
			want: "node_subnet 10.200.1.0/24 overlaps service_cidr 10.200.1.0/25", where: `hardway\.star:\d+`},
		{name: "two etcd members with one name",
			file: "hardway.star", old: `{"name": "m2", "ip": "10.200.1.11"}`, new: `{"name": "m1", "ip": "10.200.1.11"}`,
			want: `duplicate node name "m1": two controllers have it`, where: `topology\.star:\d+:\d+: (.*\n)*.*called from .*hardway\.star:\d+`},
		{name: "a controller named like a worker",
			set:  []string{"--set", "controllers=3", "--set", "workers=3"},
			file: "hardway.star", old: `{"name": "m2", "ip": "10.200.1.11"}`, new: `{"name": "n1", "ip": "10.200.1.11"}`,
			want: `duplicate node name "n1": it is both a controller and a worker`, where: `topology\.star:\d+`},
		{name: "declared twice",
			file: "hardway.star", old: `key = ssh.key()`, new: "key = ssh.key()\nssh.key()",
			want: "ssh.key.id_ed25519 is declared twice (first at ", where: `hardway\.star:\d+`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyRecipes(t)
			if c.file != "" {
				p := filepath.Join(dir, c.file)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), c.old) {
					t.Fatalf("%s does not contain %q", c.file, c.old)
				}
				if err := os.WriteFile(p, []byte(strings.Replace(string(b), c.old, c.new, 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			recipe := filepath.Join(dir, "hardway.star")
			if c.file == "" {
				recipe = "recipes/hardway.star"
			}
			work := filepath.Join(t.TempDir(), "lab")
			r := khw(t, append([]string{"run", recipe, "--workdir", work}, c.set...)...)
			if r.code != 1 {
				t.Fatalf("exit %d\n%s", r.code, r.all())
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("message lacks %q:\n%s", c.want, r.stderr)
			}
			if c.where != "" && !regexp.MustCompile(c.where).MatchString(r.stderr) {
				t.Errorf("message lacks position /%s/:\n%s", c.where, r.stderr)
			}
			if _, err := os.Stat(work); !os.IsNotExist(err) {
				t.Errorf("the rejected run created %s", work)
			}
		})
	}
}
