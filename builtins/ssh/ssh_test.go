package ssh_test

import (
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/startest"
)

// A key pair is two workdir files: the private one secret, both made by
// the ssh.key resource.
func TestAKeyIsTwoFiles(t *testing.T) {
	f := startest.NewFixture(t, all.Registry())
	f.File("keys.star", `key = ssh.key()
deploy = ssh.key("deploy")
for k, want in [(key.private, ("id_ed25519", "ssh.key.id_ed25519", True)), (key.public, ("id_ed25519.pub", "ssh.key.id_ed25519", False)),
                (deploy.private, ("deploy", "ssh.key.deploy", True)), (deploy.public, ("deploy.pub", "ssh.key.deploy", False))]:
    if (k.path, k.producer, k.secret) != want:
        fail("%s %s %s, want %s" % (k.path, k.producer, k.secret, want))
`)
	rec := f.MustEval("keys.star", nil)
	for _, addr := range []string{"ssh.key.id_ed25519", "ssh.key.deploy"} {
		f.AssertResource(rec, addr, startest.Want{Type: "ssh.key", Provider: "khw",
			Inputs: map[string]any{"algorithm": "ed25519"}, Deps: []string{}})
	}
	if n := len(rec.Resources); n != 2 {
		t.Errorf("%d resources, want the 2 keys", n)
	}
}

func TestBadKeyArgumentsNameTheLine(t *testing.T) {
	startest.NewFixture(t, all.Registry()).AssertCallErrors("keys.star", `x = 1`, map[string]string{
		`ssh.key("")`:                `ssh.key: name "" must be a file name: letters, digits, '.', '_' and '-'`,
		`ssh.key("../id")`:           `name "../id" must be a file name`,
		`ssh.key("keys/id")`:         `name "keys/id" must be a file name`,
		`ssh.key(".id")`:             `name ".id" must be a file name`,
		`ssh.key(1)`:                 "ssh.key: for parameter name: got int, want string",
		`ssh.key("a", "b")`:          "ssh.key: got 2 arguments, want at most 1",
		`ssh.key(path = "a")`:        `ssh.key: unexpected keyword argument "path"`,
		`ssh.key(); ssh.key()`:       "ssh.key.id_ed25519 is declared twice",
		`ssh.key("k"); ssh.key("k")`: "ssh.key.k is declared twice (first at ",
	})
}
