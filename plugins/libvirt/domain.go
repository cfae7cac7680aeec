package main

import (
	"libvirt.org/go/libvirtxml"
)

// domainXML is the VM as libvirt domain XML.
func domainXML(c *vmConfig) (string, error) {
	o := c.Options
	osCfg := &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"}}
	if o.Kernel != "" {
		osCfg.Kernel, osCfg.Initrd, osCfg.Cmdline = o.Kernel, o.Initrd, o.Cmdline
	} else {
		osCfg.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	disk := func(vol, format, dev, bus, kind string, ro bool) libvirtxml.DomainDisk {
		d := libvirtxml.DomainDisk{
			Device: kind,
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format},
			Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: o.Pool, Volume: vol}},
			Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus},
		}
		if ro {
			d.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		return d
	}
	dom := &libvirtxml.Domain{
		Type:        o.Accel,
		Name:        c.Hostname,
		Description: "khw node " + c.Hostname + " (" + c.Role + ")",
		Memory:      &libvirtxml.DomainMemory{Value: uint(c.MemoryMiB), Unit: "MiB"},
		VCPU:        &libvirtxml.DomainVCPU{Value: uint(c.CPUs)},
		OS:          osCfg,
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{
				disk(c.overlayName(), "qcow2", "vda", "virtio", "disk", false),
				disk(c.seedName(), "raw", "hdc", "ide", "cdrom", true),
			},
			Interfaces: []libvirtxml.DomainInterface{{
				Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: c.Bridge}},
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: c.mac()},
				Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			}},
		},
	}
	if o.Accel != "test" {
		dom.Features = &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}}
		serial := libvirtxml.DomainSerial{Target: &libvirtxml.DomainSerialTarget{Port: new(uint)}}
		if o.Console != "" {
			serial.Source = &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: o.Console}}
		} else {
			serial.Source = &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
		}
		dom.Devices.Serials = []libvirtxml.DomainSerial{serial}
	}
	return dom.Marshal()
}

// poolXML is a directory storage pool.
func poolXML(name, path string) (string, error) {
	p := &libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{Path: path}}
	return p.Marshal()
}

// overlayXML is a qcow2 volume backed by the base image.
func overlayXML(c *vmConfig) (string, error) {
	v := &libvirtxml.StorageVolume{
		Name:     c.overlayName(),
		Capacity: &libvirtxml.StorageVolumeSize{Value: uint64(c.DiskGiB), Unit: "GiB"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   c.Image,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
		},
	}
	return v.Marshal()
}

// rawXML is a raw volume of the given size.
func rawXML(name string, size int) (string, error) {
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: uint64(size), Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}
	return v.Marshal()
}
