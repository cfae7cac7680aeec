package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/khw-dev/khw/plugins/sdk"
)

type lb struct{ d *docker }

type lbConfig struct {
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Network  string `json:"network"`
	Image    string `json:"image"`
	Config   string `json:"config"`
}

const (
	configLabel = "dev.khw.nginx.config-sha256"
	// moduleLabel on an image says nginx must load its stream module from
	// this path (Debian's nginx); the stock image has it built in.
	moduleLabel = "dev.khw.nginx.load_module"
	confPath    = "/etc/khw/nginx.conf"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// finalConfig is the recipe's config, with the image's load_module line.
// With progress (apply), a missing image is pulled first; without (read),
// it is an error: a plan changes nothing.
func (l lb) finalConfig(ctx context.Context, cl *client.Client, c *lbConfig, progress sdk.Progress) (string, error) {
	img, err := cl.ImageInspect(ctx, c.Image)
	if notFound(err) && progress == nil {
		return "", fmt.Errorf("image %s is not on this machine", c.Image)
	}
	if notFound(err) {
		if perr := pull(ctx, cl, c.Image, progress); perr != nil {
			return "", sdk.WithHint(fmt.Errorf("image %s is not on this machine and cannot be pulled (%v)", c.Image, perr),
				"pull it, or build the local one with `make lb-image` and --set lb_image=khw/nginx-stream:local")
		}
		img, err = cl.ImageInspect(ctx, c.Image)
	}
	if err != nil {
		return "", err
	}
	// nginx reads -g before the file, and load_module must come first: so
	// the file holds everything, the module first.
	conf := "daemon off;\nerror_log stderr;\npid /tmp/nginx.pid;\n" + c.Config
	if img.Config != nil {
		if mod := img.Config.Labels[moduleLabel]; mod != "" {
			conf = "load_module " + mod + ";\n" + conf
		}
	}
	return conf, nil
}

func (l lb) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c lbConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	cl, err := l.d.client(ctx)
	if err != nil {
		return nil, err
	}
	ct, err := inspect(ctx, cl, c.Hostname)
	if ct == nil || err != nil {
		return &sdk.ReadResponse{Exists: false}, err
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	conf, err := l.finalConfig(ctx, cl, &c, nil)
	switch {
	case err != nil:
		resp.Drift = err.Error()
	case ct.State == nil || !ct.State.Running:
		resp.Drift = "container " + c.Hostname + " is not running"
	case ct.Config == nil || ct.Config.Labels[configLabel] != sum(conf):
		resp.Drift = "container " + c.Hostname + " runs another nginx config"
	}
	return resp, nil
}

// remove deletes the container of that name if khw made it, with its
// anonymous volumes (a container node's /var).
func remove(ctx context.Context, cl *client.Client, name string) error {
	res, err := cl.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if res.Container.Config == nil || res.Container.Config.Labels[managedLabel] != "true" {
		return fmt.Errorf("a container named %s exists and khw did not make it: remove it (docker rm) or rename the node or load balancer in the recipe", name)
	}
	_, err = cl.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	return err
}

func tarOf(path string, data []byte) io.Reader {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/khw/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: path[1:], Mode: 0o644, Size: int64(len(data))})
	_, _ = tw.Write(data)
	_ = tw.Close()
	return &b
}

func (l lb) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c lbConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(c.IP)
	if err != nil {
		return nil, fmt.Errorf("ip %q: %v", c.IP, err)
	}
	cl, err := l.d.client(ctx)
	if err != nil {
		return nil, err
	}
	conf, err := l.finalConfig(ctx, cl, &c, progress)
	if err != nil {
		return nil, err
	}
	// A new config means a new container: nginx starts from a config it
	// checked, and the old one keeps serving until then.
	if err := remove(ctx, cl, c.Hostname); err != nil {
		return nil, err
	}
	created, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: c.Hostname,
		Config: &container.Config{
			Image: c.Image, Hostname: c.Hostname,
			Cmd:    []string{"nginx", "-c", confPath},
			Labels: map[string]string{managedLabel: "true", configLabel: sum(conf)},
		},
		HostConfig: &container.HostConfig{},
		NetworkingConfig: &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{
			c.Network: {IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: ip}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating container %s on %s at %s: %v", c.Hostname, c.Network, c.IP, err)
	}
	if _, err := cl.CopyToContainer(ctx, created.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: tarOf(confPath, []byte(conf))}); err != nil {
		return nil, fmt.Errorf("copying the nginx config: %v", err)
	}
	progress("starting nginx at " + c.IP)
	if _, err := cl.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting %s: %v", c.Hostname, err)
	}
	// nginx refuses a bad config at once: make sure it stays up.
	time.Sleep(300 * time.Millisecond)
	res, err := cl.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
	if err != nil {
		return nil, err
	}
	if res.Container.State == nil || !res.Container.State.Running {
		return nil, fmt.Errorf("nginx in %s exited at start (exit code %d):\n%s", c.Hostname, res.Container.State.ExitCode, logs(ctx, cl, created.ID))
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]string{"id": created.ID, "config_sha256": sum(conf)}), Digest: created.ID}, nil
}

func (l lb) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	var c lbConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	cl, err := l.d.client(ctx)
	if err != nil {
		return err
	}
	return remove(ctx, cl, c.Hostname)
}

// logs returns the last lines a container printed.
func logs(ctx context.Context, cl *client.Client, id string) string {
	rc, err := cl.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<16))
	return strings.TrimSpace(out.String())
}
