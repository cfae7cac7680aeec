package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/khw-dev/khw/plugins/internal/ipcheck"
	"github.com/khw-dev/khw/plugins/internal/sshwait"
	"github.com/khw-dev/khw/plugins/sdk"
)

type vmHandler struct {
	conns *conns
	// pools serializes storage work on one pool: libvirt refuses a volume
	// operation while another one's job runs on the same pool.
	poolsMu sync.Mutex
	pools   map[string]*sync.Mutex
}

func (h *vmHandler) poolLock(c *vmConfig) func() {
	h.poolsMu.Lock()
	if h.pools == nil {
		h.pools = map[string]*sync.Mutex{}
	}
	key := c.Options.URI + " " + c.Options.Pool
	m := h.pools[key]
	if m == nil {
		m = &sync.Mutex{}
		h.pools[key] = m
	}
	h.poolsMu.Unlock()
	m.Lock()
	return m.Unlock
}

// vmOutputs is what khw records of a VM. HostKey is the public host key
// the guest was given; the ssh provider pins it.
type vmOutputs struct {
	Domain  string `json:"domain"`
	UUID    string `json:"uuid"`
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
	URI     string `json:"uri"`
	Pool    string `json:"pool"`
	HostKey string `json:"host_key"`
}

// notFound is libvirt's "no such domain, pool or volume" (go-libvirt's
// IsNotFound knows only domains).
func notFound(err error) bool {
	var e libvirt.Error
	if !errors.As(err, &e) {
		return false
	}
	switch libvirt.ErrorNumber(e.Code) {
	case libvirt.ErrNoDomain, libvirt.ErrNoStoragePool, libvirt.ErrNoStorageVol:
		return true
	}
	return false
}

func decode(r *sdk.Resource) (*vmConfig, error) {
	var c vmConfig
	if err := r.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.defaults(); err != nil {
		return nil, fmt.Errorf("%s: %v", r.Address, err)
	}
	return &c, nil
}

func uuidString(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (h *vmHandler) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	c, err := decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	l, err := h.conns.get(c.Options.URI)
	if err != nil {
		return nil, err
	}
	dom, err := l.DomainLookupByName(c.Hostname)
	if notFound(err) {
		return &sdk.ReadResponse{Exists: false}, nil
	}
	if err != nil {
		return nil, err
	}
	var prior vmOutputs
	_ = json.Unmarshal(req.PriorOutputs, &prior)
	resp := &sdk.ReadResponse{Exists: true, Outputs: req.PriorOutputs}
	if prior.UUID != "" && uuidString(dom.UUID) != prior.UUID {
		resp.Drift = "domain " + c.Hostname + " was re-made outside khw"
		return resp, nil
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return nil, err
	}
	if libvirt.DomainState(state) != libvirt.DomainRunning {
		resp.Drift = fmt.Sprintf("domain %s is not running (state %d)", c.Hostname, state)
		return resp, nil
	}
	pool, err := l.StoragePoolLookupByName(c.Options.Pool)
	if err == nil {
		for _, v := range []string{c.overlayName(), c.seedName()} {
			if _, err := l.StorageVolLookupByName(pool, v); notFound(err) {
				resp.Drift = "volume " + v + " is gone"
			}
		}
	}
	return resp, nil
}

// ensurePool finds the storage pool, or makes it a started directory pool.
func ensurePool(l *libvirt.Libvirt, name, path string) (libvirt.StoragePool, error) {
	p, err := l.StoragePoolLookupByName(name)
	if notFound(err) {
		xml, err := poolXML(name, path)
		if err != nil {
			return p, err
		}
		if p, err = l.StoragePoolDefineXML(xml, 0); err != nil {
			return p, fmt.Errorf("defining storage pool %s: %v", name, err)
		}
		if err := l.StoragePoolBuild(p, 0); err != nil {
			return p, fmt.Errorf("building storage pool %s at %s: %v", name, path, err)
		}
		_ = l.StoragePoolSetAutostart(p, 1)
	} else if err != nil {
		return p, err
	}
	if state, _, _, _, err := l.StoragePoolGetInfo(p); err == nil && libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		if err := l.StoragePoolCreate(p, 0); err != nil {
			return p, fmt.Errorf("starting storage pool %s: %v", name, err)
		}
	}
	return p, nil
}

func deleteVol(l *libvirt.Libvirt, pool libvirt.StoragePool, name string) error {
	v, err := l.StorageVolLookupByName(pool, name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return l.StorageVolDelete(v, 0)
}

// remove deletes the domain and its volumes. A domain of that name that
// khw did not make is refused, never removed.
func remove(l *libvirt.Libvirt, c *vmConfig) error {
	dom, err := l.DomainLookupByName(c.Hostname)
	switch {
	case notFound(err):
	case err != nil:
		return err
	default:
		desc, _ := l.DomainGetXMLDesc(dom, 0)
		if !strings.Contains(desc, "<description>khw node ") {
			return fmt.Errorf("a domain named %s exists on %s and khw did not make it: rename the node or remove that domain", c.Hostname, c.Options.URI)
		}
		if state, _, err := l.DomainGetState(dom, 0); err == nil && libvirt.DomainState(state) == libvirt.DomainRunning {
			if err := l.DomainDestroy(dom); err != nil {
				return fmt.Errorf("stopping %s: %v", c.Hostname, err)
			}
		}
		if err := l.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineSnapshotsMetadata); err != nil {
			return fmt.Errorf("undefining %s: %v", c.Hostname, err)
		}
	}
	pool, err := l.StoragePoolLookupByName(c.Options.Pool)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, v := range []string{c.overlayName(), c.seedName()} {
		if err := deleteVol(l, pool, v); err != nil {
			return fmt.Errorf("deleting volume %s: %v", v, err)
		}
	}
	return nil
}

func (h *vmHandler) Apply(ctx context.Context, req *sdk.ApplyRequest, progress sdk.Progress) (*sdk.ApplyResponse, error) {
	c, err := decode(&req.Resource)
	if err != nil {
		return nil, err
	}
	userKey, err := os.ReadFile(filepath.Join(req.Workdir, c.SSHPublicKey))
	if err != nil {
		return nil, fmt.Errorf("the workspace public key: %v", err)
	}
	l, err := h.conns.get(c.Options.URI)
	if err != nil {
		return nil, err
	}
	// A new node must not take an address something else holds. A domain
	// of ours by this name (being replaced, or left by a killed run) may
	// answer there itself: it is not checked, and remove() below deals
	// with it (or refuses a domain khw did not make).
	if _, err := l.DomainLookupByName(c.Hostname); notFound(err) {
		progress("checking that nothing answers at " + c.IP)
		if err := ipcheck.Free(ctx, c.IP, c.Bridge); err != nil {
			return nil, err
		}
	}
	unlock := h.poolLock(c)
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	// Whatever is there under this name from an earlier run (replaced, or
	// left by a run that was killed) goes first.
	if err := remove(l, c); err != nil {
		return nil, err
	}
	pool, err := ensurePool(l, c.Options.Pool, c.Options.PoolPath)
	if err != nil {
		return nil, err
	}
	progress("creating the disk over " + filepath.Base(c.Image))
	xml, err := overlayXML(c)
	if err != nil {
		return nil, err
	}
	if _, err := l.StorageVolCreateXML(pool, xml, 0); err != nil {
		return nil, fmt.Errorf("creating volume %s over %s: %v", c.overlayName(), c.Image, err)
	}
	hk, err := newHostKey(c.Hostname)
	if err != nil {
		return nil, err
	}
	files, err := seedFiles(c, string(userKey), hk, "khw-"+c.Hostname+"-"+time.Now().UTC().Format("20060102T150405"))
	if err != nil {
		return nil, err
	}
	iso, err := seedISO(files)
	if err != nil {
		return nil, fmt.Errorf("building the cloud-init seed: %v", err)
	}
	if xml, err = rawXML(c.seedName(), len(iso)); err != nil {
		return nil, err
	}
	seed, err := l.StorageVolCreateXML(pool, xml, 0)
	if err != nil {
		return nil, fmt.Errorf("creating volume %s: %v", c.seedName(), err)
	}
	// libvirt's test driver keeps no volume content and refuses uploads;
	// every real driver takes the seed over the connection, so it lands on
	// remote hypervisor hosts too.
	if !strings.HasPrefix(c.Options.URI, "test") {
		if err := l.StorageVolUpload(seed, bytes.NewReader(iso), 0, uint64(len(iso)), 0); err != nil {
			return nil, fmt.Errorf("uploading the seed: %v", err)
		}
	}
	unlock()
	unlock = nil
	if xml, err = domainXML(c); err != nil {
		return nil, err
	}
	dom, err := l.DomainDefineXML(xml)
	if err != nil {
		return nil, fmt.Errorf("defining domain %s: %v", c.Hostname, err)
	}
	progress("starting")
	if err := l.DomainCreate(dom); err != nil {
		return nil, fmt.Errorf("starting %s: %v", c.Hostname, err)
	}
	out := vmOutputs{Domain: c.Hostname, UUID: uuidString(dom.UUID), MAC: c.mac(), IP: c.IP, URI: c.Options.URI, Pool: c.Options.Pool, HostKey: hk.public}
	if c.waitSSH() {
		// Ready is when cloud-init has finished (it may restart sshd late)
		// and sshd greets.
		boot := time.Duration(c.Options.BootTimeout) * time.Second
		if err := waitCloudInit(ctx, l, dom, c, progress, boot); err != nil {
			return nil, err
		}
		if err := sshwait.Greeting(ctx, net.JoinHostPort(c.IP, "22"), boot, progress); err != nil {
			return nil, fmt.Errorf("%s (%s): %v", c.Hostname, c.IP, err)
		}
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: out.UUID}, nil
}

func (h *vmHandler) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	c, err := decode(&req.Resource)
	if err != nil {
		return err
	}
	l, err := h.conns.get(c.Options.URI)
	if err != nil {
		return err
	}
	defer h.poolLock(c)()
	return remove(l, c)
}
