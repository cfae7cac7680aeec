package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	xssh "golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/internal/ipcheck"
	"github.com/khw-dev/khw/plugins/internal/sshwait"
	"github.com/khw-dev/khw/plugins/sdk"
)

// vmNode serves vm with containers as nodes: each node is a container on
// the Docker network of its bridge, at its static IP, with its hostname,
// running a real sshd with the workspace key for its user, so the ssh
// provider copies the post's files to it exactly as to a VM.
type vmNode struct{ d *docker }

// DefaultNodeImage is built by `make node-image` from Debian's packages.
const DefaultNodeImage = "khw/node:local"

type nodeConfig struct {
	Hostname     string `json:"hostname"`
	IP           string `json:"ip"`
	Bridge       string `json:"bridge"`
	User         string `json:"user"`
	Image        string `json:"image"`
	SSHPublicKey string `json:"ssh_public_key"`
	Options      struct {
		BootTimeout int `json:"boot_timeout_s"`
	} `json:"options"`
}

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

func (c *nodeConfig) check() error {
	if c.Image == "" {
		c.Image = DefaultNodeImage
	}
	if !userRE.MatchString(c.User) {
		return fmt.Errorf("user %q is not a valid login name", c.User)
	}
	if c.Options.BootTimeout == 0 {
		c.Options.BootTimeout = 120
	}
	return nil
}

// init is the container's first process: it makes the user with the
// workspace key and sudo, installs the host key khw made, and runs sshd.
func initScript(user string) string {
	return fmt.Sprintf(`set -e
id -u %[1]s >/dev/null 2>&1 || useradd -m -s /bin/bash %[1]s
install -d -m 700 -o %[1]s -g %[1]s /home/%[1]s/.ssh
install -m 600 -o %[1]s -g %[1]s /etc/khw/authorized_keys /home/%[1]s/.ssh/authorized_keys
echo '%[1]s ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/khw
rm -f /etc/ssh/ssh_host_*
install -m 600 /etc/khw/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
install -m 644 /etc/khw/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
rm -f /etc/khw/ssh_host_ed25519_key
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no
`, user)
}

func nodeFiles(files map[string][]byte, modes map[string]int64) *bytes.Buffer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/khw/", Typeflag: tar.TypeDir, Mode: 0o700})
	for name, data := range files {
		_ = tw.WriteHeader(&tar.Header{Name: "etc/khw/" + name, Mode: modes[name], Size: int64(len(data))})
		_, _ = tw.Write(data)
	}
	_ = tw.Close()
	return &b
}

func (n vmNode) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c nodeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return nil, err
	}
	ct, err := inspect(ctx, cl, c.Hostname)
	if ct == nil || err != nil {
		return &sdk.ReadResponse{Exists: false}, err
	}
	var prior struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	switch {
	case prior.ID != "" && ct.ID != prior.ID:
		resp.Drift = "container " + c.Hostname + " was re-made outside khw"
	case ct.State == nil || !ct.State.Running:
		resp.Drift = "container " + c.Hostname + " is not running"
	}
	return resp, nil
}

func (vmNode) Plan(context.Context, *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	return &sdk.PlanResponse{RequiresReplace: true}, nil
}

func (n vmNode) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c nodeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(c.IP)
	if err != nil {
		return nil, err
	}
	userKey, err := os.ReadFile(filepath.Join(req.Workdir, c.SSHPublicKey))
	if err != nil {
		return nil, fmt.Errorf("the workspace public key: %v", err)
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return nil, err
	}
	// A new node must not take an address something else holds; a
	// container of ours by this name (being replaced, or left by a killed
	// run) may answer there itself and is not checked.
	ct, err := inspect(ctx, cl, c.Hostname)
	if err != nil {
		return nil, err
	}
	if ct == nil {
		progress("checking that nothing answers at " + c.IP)
		if err := ipcheck.Free(ctx, c.IP, c.Bridge); err != nil {
			return nil, err
		}
	}
	if _, err := cl.ImageInspect(ctx, c.Image); notFound(err) {
		return nil, fmt.Errorf("node image %s is not on this machine: build it with `make node-image` (from Debian's packages)", c.Image)
	}
	if err := remove(ctx, cl, c.Hostname); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := xssh.MarshalPrivateKey(priv, c.Hostname)
	if err != nil {
		return nil, err
	}
	sp, _ := xssh.NewPublicKey(pub)
	hostPub := strings.TrimSpace(string(xssh.MarshalAuthorizedKey(sp)))
	created, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: c.Hostname,
		Config: &container.Config{
			Image: c.Image, Hostname: c.Hostname,
			Cmd:    []string{"/bin/sh", "/etc/khw/init.sh"},
			Labels: map[string]string{managedLabel: "true", "dev.khw.role": "node"},
		},
		HostConfig: &container.HostConfig{},
		NetworkingConfig: &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{
			c.Bridge: {IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: ip}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating container %s at %s on network %s: %v", c.Hostname, c.IP, c.Bridge, err)
	}
	files := map[string][]byte{
		"init.sh":                  []byte(initScript(c.User)),
		"authorized_keys":          userKey,
		"ssh_host_ed25519_key":     pem.EncodeToMemory(block),
		"ssh_host_ed25519_key.pub": []byte(hostPub + "\n"),
	}
	modes := map[string]int64{"init.sh": 0o600, "authorized_keys": 0o600, "ssh_host_ed25519_key": 0o600, "ssh_host_ed25519_key.pub": 0o644}
	if _, err := cl.CopyToContainer(ctx, created.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: nodeFiles(files, modes)}); err != nil {
		return nil, fmt.Errorf("copying the node's files: %v", err)
	}
	progress("starting " + c.Hostname + " at " + c.IP)
	if _, err := cl.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting %s: %v", c.Hostname, err)
	}
	if err := sshwait.Greeting(ctx, net.JoinHostPort(c.IP, "22"), time.Duration(c.Options.BootTimeout)*time.Second, progress); err != nil {
		return nil, fmt.Errorf("%s (%s) did not answer ssh: %v\n%s", c.Hostname, c.IP, err, logs(ctx, cl, created.ID))
	}
	out := map[string]string{"id": created.ID, "ip": c.IP, "host_key": hostPub}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: created.ID}, nil
}

func (n vmNode) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	var c nodeConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	cl, err := n.d.client(ctx)
	if err != nil {
		return err
	}
	return remove(ctx, cl, c.Hostname)
}
