package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/khw-dev/khw/plugins/internal/ipcheck"
	"github.com/khw-dev/khw/plugins/sdk"
)

// registryRun serves registry.run: the distribution registry as a
// container on the lab's Docker network, its storage in a named volume
// that khw made and removes.
type registryRun struct{ d *docker }

type registryConfig struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	Port    int    `json:"port"`
	Network string `json:"network"`
	Image   string `json:"image"`
	Volume  string `json:"volume"`
}

const (
	// registryData is where both the stock registry:2 and khw's own
	// image keep their blobs.
	registryData = "/var/lib/registry"
	// registryReady bounds the wait for GET /v2/ to answer 200.
	registryReady = 30 * time.Second
	registryImage = "khw/registry:local"
)

func (c *registryConfig) endpoint() string { return c.IP + ":" + strconv.Itoa(c.Port) }

// env configures the registry. Both images honour REGISTRY_* variables
// over their config file (the stock one reads
// /etc/docker/registry/config.yml, Debian's package its own), so the
// settings that matter do not depend on either file.
func (c *registryConfig) env() []string {
	return []string{
		"REGISTRY_HTTP_ADDR=:" + strconv.Itoa(c.Port),
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + registryData,
		"REGISTRY_STORAGE_DELETE_ENABLED=true",
	}
}

// ensureImage makes sure the registry image is on this machine, pulling it
// when it can.
func (c *registryConfig) ensureImage(ctx context.Context, cl *client.Client, progress sdk.Progress) error {
	_, err := cl.ImageInspect(ctx, c.Image)
	if !notFound(err) {
		return err
	}
	if err := pull(ctx, cl, c.Image, progress); err != nil {
		return sdk.WithHint(fmt.Errorf("registry image %s is not on this machine and cannot be pulled (%v)", c.Image, err),
			"offline, build the local one with `make registry-image` and use image = \""+registryImage+"\"")
	}
	return nil
}

func (r registryRun) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c registryConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	cl, err := r.d.client(ctx)
	if err != nil {
		return nil, err
	}
	ct, err := inspect(ctx, cl, c.Name)
	if ct == nil || err != nil {
		return &sdk.ReadResponse{Exists: false}, err
	}
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	switch {
	case ct.State == nil || !ct.State.Running:
		resp.Drift = "container " + c.Name + " is not running"
	case ct.Config == nil || ct.Config.Image != c.Image:
		resp.Drift = "container " + c.Name + " runs another image"
	}
	return resp, nil
}

// volume makes the registry's volume, or finds the one khw made before.
func (c *registryConfig) volume(ctx context.Context, cl *client.Client) error {
	v, err := cl.VolumeInspect(ctx, c.Volume, client.VolumeInspectOptions{})
	if err == nil {
		if v.Volume.Labels[managedLabel] != "true" {
			return fmt.Errorf("a Docker volume named %s exists and khw did not make it: remove it (docker volume rm %s) or rename the registry", c.Volume, c.Volume)
		}
		return nil
	}
	if !notFound(err) {
		return err
	}
	_, err = cl.VolumeCreate(ctx, client.VolumeCreateOptions{Name: c.Volume, Labels: map[string]string{managedLabel: "true", "dev.khw.registry": c.Name}})
	return err
}

func (r registryRun) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	var c registryConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(c.IP)
	if err != nil {
		return nil, fmt.Errorf("ip %q: %v", c.IP, err)
	}
	cl, err := r.d.client(ctx)
	if err != nil {
		return nil, err
	}
	// A container of ours by this name (being replaced, or left by a
	// killed run) may answer at the address itself and is not checked.
	ct, err := inspect(ctx, cl, c.Name)
	if err != nil {
		return nil, err
	}
	if ct == nil {
		progress("checking that nothing answers at " + c.IP)
		if err := ipcheck.Free(ctx, c.IP, c.Network); err != nil {
			return nil, err
		}
	}
	if err := c.ensureImage(ctx, cl, progress); err != nil {
		return nil, err
	}
	if err := remove(ctx, cl, c.Name); err != nil {
		return nil, err
	}
	if err := c.volume(ctx, cl); err != nil {
		return nil, fmt.Errorf("the registry's volume %s: %v", c.Volume, err)
	}
	created, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: c.Name,
		Config: &container.Config{
			Image: c.Image, Hostname: c.Name, Env: c.env(),
			Labels: map[string]string{managedLabel: "true", "dev.khw.role": "registry"},
		},
		HostConfig: &container.HostConfig{
			Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: c.Volume, Target: registryData}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		},
		NetworkingConfig: &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{
			c.Network: {IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: ip}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating container %s on %s at %s: %v", c.Name, c.Network, c.IP, err)
	}
	progress("starting the registry at " + c.endpoint())
	if _, err := cl.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting %s: %v", c.Name, err)
	}
	if err := waitRegistry(ctx, cl, created.ID, c.endpoint(), registryReady); err != nil {
		return nil, fmt.Errorf("registry %s at %s: %v\n%s", c.Name, c.endpoint(), err, logs(ctx, cl, created.ID))
	}
	out := map[string]string{"id": created.ID, "endpoint": c.endpoint(), "volume": c.Volume}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: created.ID}, nil
}

// waitRegistry waits until GET http://endpoint/v2/ answers 200, the
// registry API's "I am here", and fails early when the container exits.
func waitRegistry(ctx context.Context, cl *client.Client, id, endpoint string, within time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + endpoint + "/v2/"
	last := "no answer"
	for deadline := time.Now().Add(within); ; {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = "GET /v2/ answered " + resp.Status
		} else {
			last = err.Error()
		}
		res, err := cl.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		if st := res.Container.State; st == nil || !st.Running {
			code := -1
			if st != nil {
				code = st.ExitCode
			}
			return fmt.Errorf("the registry exited at start (exit code %d)", code)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s did not answer 200 within %s (%s)", url, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r registryRun) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	var c registryConfig
	if err := req.Resource.Decode(&c); err != nil {
		return err
	}
	cl, err := r.d.client(ctx)
	if err != nil {
		return err
	}
	if err := remove(ctx, cl, c.Name); err != nil {
		return err
	}
	if err := removeVolume(ctx, cl, c.Volume); err != nil {
		return fmt.Errorf("the registry's store: %v", err)
	}
	return nil
}
