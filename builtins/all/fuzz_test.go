package all

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/startest"
)

// fuzzSteps bounds each file's Starlark steps while fuzzing: the post's
// recipe takes some 3,300, and a low bound keeps a looping input cheap.
const fuzzSteps = 100_000

// fuzzRoot is a recipe root holding a copy of recipes/ (the post's recipe,
// its library and its cfssl files) and a private key, ca-key.pem, that a
// recipe can name (load("ca-key.pem"), pki.csr_json("ca-key.pem")) but whose
// contents must never show in an error. It returns the root and the key's
// base64 body.
func fuzzRoot(f *testing.F) (*startest.Fixture, string) {
	root := startest.NewFixture(f, Registry())
	root.MaxSteps = fuzzSteps
	root.CopyDir(filepath.Join("..", "..", "recipes"))
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		f.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for _, name := range []string{"ca-key.pem", "lib/ca-key.star"} {
		root.File(name, string(keyPEM))
	}
	lines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	return root, strings.Join(lines[1:len(lines)-1], "")
}

// leaks reports a 12-character piece of the key's body that msg shows and
// src (which the fuzzer wrote, and which may well repeat it) does not.
func leaks(msg, src, body string) string {
	const n = 12
	for i := 0; i+n <= len(body); i++ {
		if piece := body[i : i+n]; strings.Contains(msg, piece) && !strings.Contains(src, piece) {
			return piece
		}
	}
	return ""
}

// evaluate runs src as a recipe in root and checks what every evaluation
// must be: resources or an error, never both, never a panic or a hang; a
// declared resource's inputs are JSON (plan hashes them and sends them to
// providers) and refer only to resources declared before it; an error
// shows no key material.
func evaluate(t *testing.T, root *startest.Fixture, keyBody, src string, params map[string]string) {
	t.Helper()
	start := time.Now()
	rec, err := root.EvalSource("fuzz.star", src, params)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("evaluation took %s", d)
	}
	if err != nil {
		if rec != nil {
			t.Fatalf("both a recipe and an error: %v", err)
		}
		msg := err.Error()
		if msg == "" {
			t.Fatal("empty error message")
		}
		var given strings.Builder
		given.WriteString(src)
		for k, v := range params {
			given.WriteString(k + "=" + v + "\n")
		}
		if piece := leaks(msg, given.String(), keyBody); piece != "" {
			t.Fatalf("the error shows key material (%q):\n%s", piece, msg)
		}
		return
	}
	if rec == nil {
		t.Fatal("neither a recipe nor an error")
	}
	seen := map[string]bool{}
	for _, r := range rec.Resources {
		addr := r.Addr()
		if seen[addr] {
			t.Fatalf("%s declared twice", addr)
		}
		for _, d := range r.Deps {
			if !seen[d] {
				t.Fatalf("%s depends on %s, not declared before it", addr, d)
			}
		}
		seen[addr] = true
		_ = r.Hash() // panics when the inputs are not JSON
		var cfg map[string]any
		if err := json.Unmarshal(r.ConfigJSON(), &cfg); err != nil {
			t.Fatalf("%s: config is not a JSON object: %v", addr, err)
		}
	}
}

// FuzzEvaluate evaluates any recipe text with every builtin, in a root
// holding the post's recipe and library, with --set parameters (lines of
// NAME=VALUE). Nothing is applied.
func FuzzEvaluate(f *testing.F) {
	root, keyBody := fuzzRoot(f)
	f.Fuzz(func(t *testing.T, src, sets string) {
		var params map[string]string
		for _, line := range strings.Split(sets, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				if params == nil {
					params = map[string]string{}
				}
				params[k] = v
			}
		}
		evaluate(t, root, keyBody, src, params)
	})
}

// argsPrelude declares the fuzzed values as parameters (so they reach the
// recipe unquoted, exactly as given) and a valid resource of each kind the
// builtins take as arguments.
const argsPrelude = `
a = param("a", "")
b = param("b", "")
c = param("c", "")
d = param("d", "")
m = param("m", 0)
n = param("n", 0)
hs = param("hs", ["x"])
br0 = net.bridge("br0", address = "10.200.1.1/24")
key = ssh.key()
ca = pki.ca("ca", csr = pki.csr_json("hardway/ca-csr.json"))
cfg = pki.config_json("hardway/ca-config.json")
net0 = docker.network(br0)
m1 = vm.create("m1", ip = "10.200.1.10", bridge = br0, ssh_key = key)
`

// argsSnippets each put the fuzzed values a, b, c, d (strings), m, n (ints)
// and hs (a split into a list) into one builtin's arguments, after
// argsPrelude. An input picks one by number: evaluating them all for each
// input would be 25 times slower, and the fuzzer learns the numbers.
var argsSnippets = []string{
	// 0
	`load("lib/topology.star", "topology")
topology(controllers = [{"name": a, "ip": b}], workers = [{"name": c, "ip": d}], lb = {"name": "proxy", "ip": "10.200.1.15"},
    node_subnet = "10.200.1.0/24", bridge_ip = "10.200.1.1", pod_cidr = "10.100.0.0/16", service_cidr = "10.32.0.0/24")`,
	// 1
	`load("lib/topology.star", "topology", "numbered")
topology(controllers = numbered("m", 1 + m % 3, a, n), workers = numbered("n", 2, a, n + 3), lb = {"name": "proxy", "ip": net.host(a, n + 5)},
    node_subnet = a, bridge_ip = b, pod_cidr = c, service_cidr = d)`,
	// 2
	`net.bridge(a, address = b)`,
	// 3
	`net.nat(br0, external_iface = a)`,
	// 4
	`net.sysctl(a, {b: c, d: m})`,
	// 5
	`net.hosts(a, {b: c}, file = d)`,
	// 6
	`[net.is_ip(a), net.is_cidr(a), net.is_hostname(a)]`,
	// 7
	`net.host(a, n)`,
	// 8
	`net.cidr_contains(a, b)`,
	// 9
	`net.cidrs_overlap(a, b)`,
	// 10
	`vm.create(a, ip = b, bridge = br0, ssh_key = key, role = c, user = d, cpus = m, memory = n, disk = m, dns = hs, image = d, options = {a: b, c: n})`,
	// 11
	`vm.create("n1", ip = a, bridge = net.bridge("br1", address = b), ssh_key = key, provider = c, network = net0 if d == "docker" else None)`,
	// 12
	`pki.cert(a, ca = ca, csr = {"CN": b, "key": {"algo": c, "size": m}, "hosts": hs}, config = cfg, profile = d, hosts = hs)`,
	// 13
	`pki.cert("c1", ca = ca, csr = {"CN": a, "names": [{"O": b, "OU": c}]}, config = cfg, profile = "kubernetes", hosts = [d] + hs)`,
	// 14
	`pki.ca(a, csr = {"CN": b, "key": {"algo": c, "size": n}, "ca": {"expiry": d, "pathlen": m}})`,
	// 15
	`pki.csr_json(a)`,
	// 16
	`pki.config_json(a)`,
	// 17
	`kubeconfig.write(a, server = b, ca = ca, cert = pki.cert("admin", ca = ca, csr = {"CN": "admin"}, config = cfg), user = c, cluster = d, context = a)`,
	// 18
	`docker.network(br0, ip_range = a)`,
	// 19
	`lb.nginx(a, ip = b, network = net0, upstreams = [m1], ports = [m, n], upstream_port = m, image = d)`,
	// 20
	`node.copy(node.host(a, ip = b, ssh_key = key, user = c, port = m), [ca.cert, ca.key], name = d, dest = a, timeout = n)`,
	// 21
	`node.run(m1, a, name = b, after = [c, ca, hs], timeout = m)`,
	// 22
	`encryption.config(a, resources = hs, key_name = b)`,
	// 23
	`ssh.key(a)`,
	// 24
	`json.decode(a)`,
}

// paramsRecipe takes the fuzzed strings as --set values of each kind.
const paramsRecipe = `
i = param("i", 0)
l = param("l", ["x"])
t = param("t", True)
li = param("li", [1])
`

// FuzzBuiltinArgs puts fuzzed strings and numbers into the arguments of
// every builtin and of topology(), so that the fuzzer works on the
// builtins' argument checks rather than on the Starlark parser. which
// picks the builtin: argsSnippets[which], or past them paramsRecipe.
func FuzzBuiltinArgs(f *testing.F) {
	root, keyBody := fuzzRoot(f)
	f.Fuzz(func(t *testing.T, which uint8, a, b, c, d string, m, n int64) {
		i := int(which) % (len(argsSnippets) + 1)
		if i == len(argsSnippets) {
			evaluate(t, root, keyBody, paramsRecipe, map[string]string{"i": a, "l": b, "t": c, "li": d})
			return
		}
		params := map[string]string{"a": a, "b": b, "c": c, "d": d, "hs": a,
			"m": strconv.FormatInt(m, 10), "n": strconv.FormatInt(n, 10)}
		evaluate(t, root, keyBody, argsPrelude+argsSnippets[i]+"\n", params)
	})
}
