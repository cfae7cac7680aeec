package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/khw-dev/khw/internal/atomicfile"
)

// knownHostsFile is the name of the workdir's known hosts file.
const knownHostsFile = "known_hosts"

// knownHostsMu serializes every read-check-append of a known_hosts file:
// several resources run at once in one plugin process.
var knownHostsMu sync.Mutex

// hostKeyError is a refused host key. It is never retried.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// verifier decides whether a node's host key is the right one: the key a
// dependency (a VM provider) reported, else the one in the workdir's
// known_hosts, which records the key seen first (trust on first use).
type verifier struct {
	node, addr string
	knownHosts string
	pinned     ssh.PublicKey
	pinnedFrom string
}

func newVerifier(t *target, workdir string, deps map[string]json.RawMessage) (*verifier, error) {
	v := &verifier{node: t.Node, addr: t.addr(), knownHosts: filepath.Join(workdir, knownHostsFile)}
	var err error
	v.pinned, v.pinnedFrom, err = pinnedKey(t, deps)
	return v, err
}

// pinnedKey returns the host key reported by a dependency that is the node
// itself: vm.NODE or node.host.NODE, or any resource whose outputs give the
// node's address as "ip" or "host".
func pinnedKey(t *target, deps map[string]json.RawMessage) (ssh.PublicKey, string, error) {
	addrs := make([]string, 0, len(deps))
	for a := range deps {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var key ssh.PublicKey
	var from string
	for _, a := range addrs {
		var out struct {
			HostKey string `json:"host_key"`
			IP      string `json:"ip"`
			Host    string `json:"host"`
		}
		if json.Unmarshal(deps[a], &out) != nil || strings.TrimSpace(out.HostKey) == "" {
			continue
		}
		if a != "vm."+t.Node && a != "node.host."+t.Node && out.IP != t.Host && out.Host != t.Host {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out.HostKey))
		if err != nil {
			return nil, "", fmt.Errorf("node %s: %s reports a host_key that is not an ssh public key: %v", t.Node, a, err)
		}
		if key != nil && !sameKey(key, k) {
			return nil, "", fmt.Errorf("node %s: %s and %s report different host keys (%s, %s)", t.Node, from, a,
				ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(k))
		}
		key, from = k, a
	}
	return key, from, nil
}

func sameKey(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}

// authorizedKey is key in authorized_keys format, without the newline.
func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

func (v *verifier) callback(_ string, remote net.Addr, key ssh.PublicKey) error {
	return v.check(remote, key)
}

// check accepts or refuses key, recording it in known_hosts on first use.
func (v *verifier) check(remote net.Addr, key ssh.PublicKey) error {
	if v.pinned != nil {
		if sameKey(v.pinned, key) {
			v.recordPinned(remote, key)
			return nil
		}
		return &hostKeyError{fmt.Sprintf("node %s (%s) presents host key %s %s, but %s reports %s %s; "+
			"refusing to connect (if %s was rebuilt, apply %s again so that it reports the new key)",
			v.node, v.addr, key.Type(), ssh.FingerprintSHA256(key), v.pinnedFrom, v.pinned.Type(),
			ssh.FingerprintSHA256(v.pinned), v.node, v.pinnedFrom)}
	}
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	cb, err := v.load()
	if err != nil {
		return err
	}
	err = cb(v.addr, remote, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return v.record(key)
	case errors.As(err, &ke):
		return v.mismatch(key, ke.Want)
	default:
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return &hostKeyError{fmt.Sprintf("node %s (%s) presents host key %s, which %s:%d marks as revoked; refusing to connect",
				v.node, v.addr, ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line)}
		}
		return &hostKeyError{fmt.Sprintf("node %s (%s): checking the host key against %s: %v", v.node, v.addr, v.knownHosts, err)}
	}
}

// recordPinned makes known_hosts agree with a pinned key, so that Read and
// Delete, which see no dependencies, accept the node: it adds the key when
// the node is not there yet, and replaces the node's old line when the
// node was rebuilt (the dependency that pins the key made the node, so its
// key is the authority). It is best effort: the pinned key was checked.
func (v *verifier) recordPinned(remote net.Addr, key ssh.PublicKey) {
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	cb, err := v.load()
	if err != nil {
		return
	}
	var ke *knownhosts.KeyError
	if err := cb(v.addr, remote, key); errors.As(err, &ke) {
		if len(ke.Want) > 0 {
			_ = v.forget()
		}
		_ = v.record(key)
	}
}

// forget removes the node's lines from known_hosts, atomically. Call with
// knownHostsMu held.
func (v *verifier) forget() error {
	b, err := os.ReadFile(v.knownHosts)
	if err != nil {
		return err
	}
	host := knownhosts.Normalize(v.addr)
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fields := strings.Fields(line)
		drop := false
		if len(fields) > 1 && !strings.HasPrefix(fields[0], "@") {
			for _, h := range strings.Split(fields[0], ",") {
				drop = drop || h == host
			}
		}
		if !drop {
			keep = append(keep, line)
		}
	}
	return atomicfile.WriteFile(v.knownHosts, []byte(strings.Join(keep, "\n")+"\n"), 0o600)
}

// load reads known_hosts; a missing file is an empty one. Call with
// knownHostsMu held.
func (v *verifier) load() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(v.knownHosts); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(v.knownHosts)
	if err != nil {
		return nil, &hostKeyError{fmt.Sprintf("node %s (%s): reading %s: %v", v.node, v.addr, v.knownHosts, err)}
	}
	return cb, nil
}

// record appends the key of a node seen for the first time. Call with
// knownHostsMu held.
func (v *verifier) record(key ssh.PublicKey) error {
	f, err := os.OpenFile(v.knownHosts, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("node %s (%s): recording its host key: %v", v.node, v.addr, err)
	}
	defer f.Close()
	line := knownhosts.Line([]string{knownhosts.Normalize(v.addr)}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := io.WriteString(f, line); err != nil {
		return fmt.Errorf("node %s (%s): recording its host key in %s: %v", v.node, v.addr, v.knownHosts, err)
	}
	return f.Close()
}

func (v *verifier) mismatch(key ssh.PublicKey, want []knownhosts.KnownKey) error {
	var lines []string
	var nums []string
	for _, w := range want {
		lines = append(lines, fmt.Sprintf("%s %s (line %d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Line))
		nums = append(nums, fmt.Sprint(w.Line))
	}
	host := knownhosts.Normalize(v.addr)
	return &hostKeyError{fmt.Sprintf("HOST KEY CHANGED: node %s (%s) now presents host key %s %s, but %s records %s. "+
		"khw refuses to connect: someone may be intercepting the connection. "+
		"If %s was rebuilt, this is expected: remove line %s for %s from %s "+
		"(ssh-keygen -R '%s' -f %s) and run khw again",
		v.node, v.addr, key.Type(), ssh.FingerprintSHA256(key), v.knownHosts, strings.Join(lines, ", "),
		v.node, strings.Join(nums, ", "), host, v.knownHosts, host, v.knownHosts)}
}

// probeKey is a key no node has; checking it finds the keys a node is known by.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// algorithms returns the host key algorithms to offer, those of the key
// types the node is already known by first (as OpenSSH does), so that it
// presents a key of a known type; then every other plain key type, so that
// a node rebuilt with other key types gets the clear "changed" error.
func (v *verifier) algorithms() []string {
	var types []string
	if v.pinned != nil {
		types = []string{v.pinned.Type()}
	} else {
		knownHostsMu.Lock()
		cb, err := v.load()
		if err == nil {
			var ke *knownhosts.KeyError
			if errors.As(cb(v.addr, &net.TCPAddr{}, probeKey()), &ke) {
				for _, w := range ke.Want {
					types = append(types, w.Key.Type())
				}
			}
		}
		knownHostsMu.Unlock()
	}
	types = append(types, ssh.KeyAlgoED25519)
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] && !strings.Contains(a, "-cert-") {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, t := range types {
		for _, a := range algorithmsFor(t) {
			add(a)
		}
	}
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		add(a)
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
