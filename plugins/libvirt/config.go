package main

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"path"
)

// vmConfig is what vm.create declares (builtins/vm).
type vmConfig struct {
	Hostname     string   `json:"hostname"`
	IP           string   `json:"ip"`
	Prefix       int      `json:"prefix"`
	Gateway      string   `json:"gateway"`
	Bridge       string   `json:"bridge"`
	Role         string   `json:"role"`
	User         string   `json:"user"`
	CPUs         int      `json:"cpus"`
	MemoryMiB    int      `json:"memory_mib"`
	DiskGiB      int      `json:"disk_gib"`
	Image        string   `json:"image"`
	DNS          []string `json:"dns"`
	SSHPublicKey string   `json:"ssh_public_key"`
	Options      options  `json:"options"`
}

// options are the libvirt provider's settings (vm.create(options = {...})).
type options struct {
	// Accel is the domain type: kvm (default), qemu (TCG, where KVM does
	// not work), or test (libvirt's test driver).
	Accel string `json:"accel"`
	// URI is the libvirt connection, qemu:///system by default.
	URI string `json:"uri"`
	// Pool is the storage pool for the overlay and seed volumes, a
	// directory pool created at PoolPath if missing.
	Pool     string `json:"pool"`
	PoolPath string `json:"pool_path"`
	// Kernel, Initrd and Cmdline boot the guest directly (images without a
	// boot loader); empty boots the disk.
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// BootTimeout bounds the wait for ssh after start; WaitSSH false skips
	// it (the test driver has no guests).
	BootTimeout int   `json:"boot_timeout_s"`
	WaitSSH     *bool `json:"wait_ssh"`
	// Console is a file on the hypervisor host that receives the serial
	// console, to read a boot.
	Console string `json:"console"`
}

func (c *vmConfig) defaults() error {
	o := &c.Options
	if o.Accel == "" {
		o.Accel = "kvm"
	}
	switch o.Accel {
	case "kvm", "qemu", "test":
	default:
		return fmt.Errorf("accel %q: use kvm, or qemu where KVM does not work", o.Accel)
	}
	if o.URI == "" {
		o.URI = "qemu:///system"
	}
	if _, err := url.Parse(o.URI); err != nil {
		return fmt.Errorf("uri %q: %v", o.URI, err)
	}
	if o.Pool == "" {
		o.Pool = "khw"
	}
	if o.PoolPath == "" {
		o.PoolPath = "/var/lib/libvirt/images/khw"
	}
	if o.Cmdline == "" && o.Kernel != "" {
		o.Cmdline = "root=/dev/vda rw console=ttyS0"
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 300
	}
	if c.Image == "" {
		return fmt.Errorf("no base image: set the recipe's image parameter to a qcow2 file on the hypervisor host (make guest-image builds one)")
	}
	if !path.IsAbs(c.Image) {
		return fmt.Errorf("image %q must be an absolute path on the hypervisor host", c.Image)
	}
	return nil
}

func (c *vmConfig) waitSSH() bool { return c.Options.WaitSSH == nil || *c.Options.WaitSSH }

// mac is a stable locally administered address (QEMU's 52:54:00 prefix)
// derived from the node's name and IP, so a re-created VM keeps it.
func (c *vmConfig) mac() string {
	h := sha256.Sum256([]byte(c.Hostname + "/" + c.IP))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

func (c *vmConfig) overlayName() string { return c.Hostname + ".qcow2" }
func (c *vmConfig) seedName() string    { return c.Hostname + "-seed.iso" }
