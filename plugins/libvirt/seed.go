package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	xssh "golang.org/x/crypto/ssh"
	"sigs.k8s.io/yaml"
)

// hostKey is an ed25519 host key made for a VM: the guest gets it through
// cloud-init, khw pins it, so no first contact is ever trusted blindly.
type hostKey struct {
	private string // OpenSSH PEM
	public  string // authorized_keys line
}

func newHostKey(comment string) (*hostKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := xssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	sp, err := xssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &hostKey{private: string(pem.EncodeToMemory(block)), public: strings.TrimSpace(string(xssh.MarshalAuthorizedKey(sp)))}, nil
}

// seedFiles are the NoCloud meta-data, user-data and network-config.
func seedFiles(c *vmConfig, userKey string, hk *hostKey, instanceID string) (map[string][]byte, error) {
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", instanceID, c.Hostname)
	user := map[string]any{
		"hostname":         c.Hostname,
		"manage_etc_hosts": true,
		"users": []any{map[string]any{
			"name":                c.User,
			"shell":               "/bin/bash",
			"sudo":                "ALL=(ALL) NOPASSWD:ALL",
			"lock_passwd":         true,
			"ssh_authorized_keys": []string{strings.TrimSpace(userKey)},
		}},
		"ssh_pwauth":      false,
		"ssh_deletekeys":  true,
		"ssh_genkeytypes": []string{},
		"ssh_keys": map[string]string{
			"ed25519_private": hk.private,
			"ed25519_public":  hk.public,
		},
	}
	ub, err := yaml.Marshal(user)
	if err != nil {
		return nil, err
	}
	eth := map[string]any{
		// Debian's cloud-init renders with ifupdown: match the NIC by MAC
		// and name it eth0, or networking.service fails.
		"match":     map[string]string{"macaddress": c.mac()},
		"set-name":  "eth0",
		"addresses": []string{fmt.Sprintf("%s/%d", c.IP, c.Prefix)},
		// gateway4, not routes: the ifupdown renderer writes routes as
		// `route add`, from net-tools, which a minimal image lacks.
		"gateway4": c.Gateway,
	}
	if len(c.DNS) > 0 {
		eth["nameservers"] = map[string]any{"addresses": c.DNS}
	}
	nb, err := yaml.Marshal(map[string]any{"version": 2, "ethernets": map[string]any{"eth0": eth}})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"meta-data":      []byte(meta),
		"user-data":      append([]byte("#cloud-config\n"), ub...),
		"network-config": nb,
	}, nil
}

// seedISO builds the NoCloud seed: an ISO9660 image with Rock Ridge names,
// volume id cidata.
func seedISO(files map[string][]byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "khw-seed")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "seed.iso")
	var size int64 = 1 << 20
	for _, b := range files {
		size += int64(len(b)) + 4096
	}
	d, err := diskfs.Create(img, size, diskfs.SectorSizeDefault)
	if err != nil {
		return nil, err
	}
	d.LogicalBlocksize = 2048
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, err
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeISO9660, VolumeLabel: "cidata", WorkDir: work})
	if err != nil {
		return nil, err
	}
	for name, b := range files {
		f, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(b); err != nil {
			return nil, err
		}
	}
	iso, ok := fs.(*iso9660.FileSystem)
	if !ok {
		return nil, fmt.Errorf("not an ISO9660 filesystem")
	}
	if err := iso.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: "cidata"}); err != nil {
		return nil, err
	}
	_ = d.Close()
	return os.ReadFile(img)
}
