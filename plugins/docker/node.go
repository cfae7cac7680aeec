package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	xssh "golang.org/x/crypto/ssh"

	"github.com/khw-dev/khw/plugins/internal/ipcheck"
	"github.com/khw-dev/khw/plugins/internal/sshwait"
	"github.com/khw-dev/khw/plugins/sdk"
)

// vmNode serves vm with containers as nodes: each node is a container on
// the Docker network of its bridge, at its static IP, with its hostname,
// booting systemd as PID 1 (as kind's nodes do) with Debian's sshd and the
// workspace key for its user, so the ssh provider copies the post's files
// to it, and systemd runs the post's units on it, exactly as on a VM.
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

// entrypoint is the container's command: it readies the container for
// systemd (cgroups, mounts, machine-id, the user and sshd, masked units)
// and execs /sbin/init.
//
//go:embed entrypoint.sh
var entrypoint []byte

// bootLabel marks a node container that boots systemd; one made by an
// older khw (sshd as PID 1) is drift, and is made again.
const bootLabel = "dev.khw.boot"

// nodeContainer is how a node container is made: systemd as PID 1, as
// kind's nodes run, with what works on a host whose capability bounding
// set lacks CAP_SYS_RESOURCE (--privileged fails there: "unable to apply
// caps"). The /var volume keeps containerd's overlayfs off the container's
// own overlayfs; /dev/kmsg is the host's, for the kubelet.
//
// /var is a named, labelled volume (varVolume), not an anonymous one: a
// node container removed by hand (docker rm -f n2) leaves it behind, and
// khw finds it by name to remove it when it makes the node anew (a new
// node gets a new disk, as a replaced VM gets a new overlay) and on
// destroy.
func nodeContainer(c *nodeConfig) (*container.Config, *container.HostConfig) {
	noInit := false
	cfg := &container.Config{
		Image: c.Image, Hostname: c.Hostname,
		Cmd:        []string{"/bin/bash", "/etc/khw/entrypoint.sh"},
		Env:        []string{"container=docker", "KHW_USER=" + c.User},
		StopSignal: "SIGRTMIN+3",
		Labels:     map[string]string{managedLabel: "true", "dev.khw.role": "node", bootLabel: "systemd"},
	}
	host := &container.HostConfig{
		CapAdd:      []string{"ALL"},
		CapDrop:     []string{"SYS_RESOURCE"},
		SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
		// --security-opt systempaths=unconfined, which the Docker CLI
		// sends as empty (not absent) lists: nothing under /proc masked
		// or read-only, so /proc/sys takes the nodes' sysctls.
		MaskedPaths:   []string{},
		ReadonlyPaths: []string{},
		CgroupnsMode:  container.CgroupnsModePrivate,
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: varVolume(c.Hostname), Target: "/var"}},
		Tmpfs:         map[string]string{"/run": "exec,mode=755", "/tmp": "exec,mode=1777"},
		Init:          &noInit,
		Resources: container.Resources{Devices: []container.DeviceMapping{
			{PathOnHost: "/dev/kmsg", PathInContainer: "/dev/kmsg", CgroupPermissions: "rwm"},
		}},
	}
	return cfg, host
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
	case ct.Config == nil || ct.Config.Labels[bootLabel] != "systemd":
		resp.Drift = "container " + c.Hostname + " does not boot systemd (made by an older khw)"
	}
	return resp, nil
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
	if err := removeVolume(ctx, cl, varVolume(c.Hostname)); err != nil {
		return nil, err
	}
	if _, err := cl.VolumeCreate(ctx, client.VolumeCreateOptions{Name: varVolume(c.Hostname),
		Labels: map[string]string{managedLabel: "true", "dev.khw.node": c.Hostname}}); err != nil {
		return nil, fmt.Errorf("making %s's /var volume: %v", c.Hostname, err)
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
	cfg, host := nodeContainer(&c)
	created, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: c.Hostname, Config: cfg, HostConfig: host,
		NetworkingConfig: &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{
			c.Bridge: {IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: ip}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating container %s at %s on network %s: %v", c.Hostname, c.IP, c.Bridge, err)
	}
	files := map[string][]byte{
		"entrypoint.sh":            entrypoint,
		"authorized_keys":          userKey,
		"ssh_host_ed25519_key":     pem.EncodeToMemory(block),
		"ssh_host_ed25519_key.pub": []byte(hostPub + "\n"),
	}
	modes := map[string]int64{"entrypoint.sh": 0o700, "authorized_keys": 0o600, "ssh_host_ed25519_key": 0o600, "ssh_host_ed25519_key.pub": 0o644}
	if _, err := cl.CopyToContainer(ctx, created.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: nodeFiles(files, modes)}); err != nil {
		return nil, fmt.Errorf("copying the node's files: %v", err)
	}
	progress("starting " + c.Hostname + " at " + c.IP)
	if _, err := cl.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting %s: %v", c.Hostname, err)
	}
	boot := time.Duration(c.Options.BootTimeout) * time.Second
	started := time.Now()
	deadline := started.Add(boot)
	if err := sshwait.Greeting(ctx, net.JoinHostPort(c.IP, "22"), boot, progress); err != nil {
		return nil, fmt.Errorf("%s (%s) did not answer ssh: %v; %s", c.Hostname, c.IP, err, bootReport(ctx, cl, created.ID))
	}
	state, err := waitSystemd(ctx, cl, created.ID, deadline)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %v", c.Hostname, c.IP, err)
	}
	progress(fmt.Sprintf("%s booted in %.1fs: systemd %s, ssh ready", c.Hostname, time.Since(started).Seconds(), state))
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
	if err := remove(ctx, cl, c.Hostname); err != nil {
		return err
	}
	return removeVolume(ctx, cl, varVolume(c.Hostname))
}

// varVolume is the name of a node container's /var volume.
func varVolume(node string) string { return "khw-node-" + node }

// removeVolume removes a volume khw made (labelled as managed); a volume
// of that name that khw did not make is refused, and a missing one is fine.
func removeVolume(ctx context.Context, cl *client.Client, name string) error {
	v, err := cl.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if v.Volume.Labels[managedLabel] != "true" {
		return fmt.Errorf("a Docker volume named %s exists and khw did not make it: remove it (docker volume rm %s) or rename the node", name, name)
	}
	if _, err := cl.VolumeRemove(ctx, name, client.VolumeRemoveOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("removing the volume %s: %v", name, err)
	}
	return nil
}

// waitSystemd waits until systemd in the container has finished booting:
// `systemctl is-system-running` says running, or degraded (some unit
// failed: the state names them). Past the deadline the error says how the
// boot stands (bootReport).
func waitSystemd(ctx context.Context, cl *client.Client, id string, deadline time.Time) (string, error) {
	for {
		out, err := execIn(ctx, cl, id, "systemctl", "is-system-running")
		if err != nil {
			return "", fmt.Errorf("asking systemd how the boot goes: %v\n%s", err, logs(ctx, cl, id))
		}
		switch state := strings.TrimSpace(out); state {
		case "running":
			return state, nil
		case "degraded":
			return state + " (failed units: " + failedUnits(ctx, cl, id) + ")", nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("systemd did not finish booting: %s", bootReport(ctx, cl, id))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bootReport says how systemd's boot stands in the container: its state,
// the units that failed, and the jobs still waiting (what a hung boot
// waits for), or the container's last output if systemd cannot be asked.
func bootReport(ctx context.Context, cl *client.Client, id string) string {
	state, err := execIn(ctx, cl, id, "systemctl", "is-system-running")
	if err != nil {
		return "the container's last output:\n" + logs(ctx, cl, id)
	}
	jobs, _ := execIn(ctx, cl, id, "systemctl", "list-jobs", "--plain", "--no-legend", "--no-pager")
	return fmt.Sprintf("systemd is %s; failed units: %s; %s",
		strings.TrimSpace(state), failedUnits(ctx, cl, id), runningJobs(jobs))
}

// runningJobs names the units whose jobs run (the ones a hung boot waits
// on) in a `systemctl list-jobs` listing (JOB UNIT TYPE STATE), and counts
// those waiting behind them.
func runningJobs(listing string) string {
	var running []string
	waiting := 0
	for _, l := range strings.Split(listing, "\n") {
		switch f := strings.Fields(l); {
		case len(f) < 4:
		case f[3] == "running":
			running = append(running, f[1])
		default:
			waiting++
		}
	}
	if len(running) == 0 {
		running = []string{"none"}
	}
	return fmt.Sprintf("jobs running: %s (%d more waiting)", strings.Join(running, ", "), waiting)
}

func failedUnits(ctx context.Context, cl *client.Client, id string) string {
	out, _ := execIn(ctx, cl, id, "systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager")
	return column(out)
}

// column joins the first field of each line of a systemctl listing (the
// unit).
func column(listing string) string {
	var names []string
	for _, l := range strings.Split(listing, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// execIn runs a command in the container and returns what it printed
// (stdout and stderr); its exit code is not looked at.
func execIn(ctx context.Context, cl *client.Client, id string, cmd ...string) (string, error) {
	ex, err := cl.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", err
	}
	att, err := cl.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return "", err
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(att.Reader, 1<<20)); err != nil {
		return "", err
	}
	return out.String(), nil
}
