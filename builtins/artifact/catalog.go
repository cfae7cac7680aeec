package artifact

import (
	"regexp"
	"strings"
)

// Source says how an artifact is obtained.
const (
	SourceBuild    = "build"    // from the Go module proxy (and gcc), offline here
	SourceDownload = "download" // the project's official release files, checked against their published sha256
	SourceDebian   = "debian"   // Debian's packages, through apt
)

// Spec is one project of the catalog: what it provides, which versions
// khw knows, and how to build, download or unpack it. The catalog is a
// table of specs, one per project, like kubeadm's certlist.
type Spec struct {
	Project  string
	Binaries []string
	// Versions are the versions khw knows; the first is the default.
	Versions []string
	// AnyVersion, when set, accepts any version it matches (Debian's
	// packages: apt decides at apply time which exist).
	AnyVersion *regexp.Regexp
	// Why says why these versions.
	Why string
	// Sources are the sources it supports; the first is the default.
	Sources []string
	// NoSource says why a source is not supported.
	NoSource map[string]string

	Build    *GoBuild
	Download *Download
	Debian   *Debian
	// Compiled are C programs in Build.Module's source, compiled with
	// `gcc -static` whatever the source (the pause program).
	Compiled []CProgram
}

// GoBuild builds the project's binaries from the Go module proxy: a
// generated wrapper module requires Module (and Require) at the version,
// then one `go build -trimpath` builds every package so they share the
// compile.
type GoBuild struct {
	Module  string
	Require []string
	// Staging, when set, maps the version to the version of the modules
	// that Module's go.mod replaces with local directories
	// (k8s.io/kubernetes: `k8s.io/api => ./staging/src/k8s.io/api`, and
	// k8s.io/api v0.34.4 for v1.34.4): the wrapper replaces each with that
	// module at that version, as `go install` cannot.
	Staging func(version string) string
	// Replace are fixed replace lines (tests: a module in a local directory).
	Replace  map[string]string
	Packages []Package
	// CGO builds with cgo, linked statically (-extldflags -static).
	CGO bool
	// LDFlags are the -X flags for a version.
	LDFlags func(version string) []string
}

// Package is one main package and the binary it becomes.
type Package struct{ Path, Bin string }

// CProgram is a C file in a module's source compiled as a static binary.
type CProgram struct {
	Src, Bin string
	Flags    []string
}

// Download fetches the project's official release files and checks each
// against its published sha256.
type Download struct {
	// Base is the official base URL; the recipe's url replaces it.
	Base   string
	Assets func(version string) []Asset
}

// Asset is one release file, relative to the base URL.
type Asset struct {
	Path string
	// Sums is the published checksum file: one hash, or `HASH  NAME`
	// lines (SHA256SUMS).
	Sums string
	// Bin names the binary the asset is; or Members names the binaries
	// inside the asset, a .tar.gz, by their base names.
	Bin     string
	Members []string
}

// Debian takes the binaries out of Debian's packages (apt-get download,
// dpkg-deb -x): Package at the artifact's version, Also at the version apt
// has.
type Debian struct {
	Package string
	Also    []string
	// Bins maps each binary to the package that holds it.
	Bins map[string]string
}

// k8sBins are the Kubernetes binaries built with Go, in cmd/.
var k8sBins = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// DefaultCatalog is every project khw knows.
var DefaultCatalog = Catalog{
	{
		Project:  "kubernetes",
		Binaries: append(append([]string(nil), k8sBins...), "pause"),
		Versions: []string{"v1.34.4", "v1.34.3", "v1.34.2", "v1.34.0"},
		Why: "khw pins Kubernetes 1.34: 1.35's kubelet refuses cgroup v1 by default (failCgroupV1), and these are " +
			"the 1.34 releases the Go module proxy serves",
		Sources: []string{SourceBuild, SourceDownload},
		Build: &GoBuild{
			Module:  "k8s.io/kubernetes",
			Staging: func(v string) string { return "v0." + strings.TrimPrefix(v, "v1.") },
			Packages: func() []Package {
				var p []Package
				for _, b := range k8sBins {
					p = append(p, Package{Path: "k8s.io/kubernetes/cmd/" + b, Bin: b})
				}
				return p
			}(),
			LDFlags: func(v string) []string {
				parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
				var f []string
				for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
					f = append(f, pkg+".gitVersion="+v, pkg+".gitMajor="+parts[0], pkg+".gitMinor="+parts[1],
						pkg+".gitTreeState=clean")
				}
				return f
			},
		},
		Download: &Download{
			Base: "https://dl.k8s.io/release",
			Assets: func(v string) []Asset {
				var a []Asset
				for _, b := range k8sBins {
					p := v + "/bin/linux/amd64/" + b
					a = append(a, Asset{Path: p, Sums: p + ".sha256", Bin: b})
				}
				return a
			},
		},
		// The sandbox ("pause") container's program; 1.34 pins pause 3.10.1.
		Compiled: []CProgram{{Src: "build/pause/linux/pause.c", Bin: "pause",
			Flags: []string{"-O2", "-Wall", "-static", "-DVERSION=v3.10.1"}}},
	},
	{
		Project:  "etcd",
		Binaries: []string{"etcd", "etcdctl"},
		Versions: []string{"v3.6.5", "v3.5.33"},
		Why: "Kubernetes 1.34 wants etcd 3.6.5 (kubeadm's DefaultEtcdVersion) and accepts 3.5.24 and later " +
			"(MinExternalEtcdVersion); v3.5.33 is a later 3.5 that the Go module proxy serves whole",
		Sources: []string{SourceBuild, SourceDownload},
		Build: &GoBuild{
			// The etcd binary is the server module's main package; the
			// root module go.etcd.io/etcd/v3 has none. Both modules
			// require their sibling modules (api, client, pkg) at the
			// same version, so the wrapper needs no replace lines.
			Module:  "go.etcd.io/etcd/server/v3",
			Require: []string{"go.etcd.io/etcd/etcdctl/v3"},
			Packages: []Package{
				{Path: "go.etcd.io/etcd/server/v3", Bin: "etcd"},
				{Path: "go.etcd.io/etcd/etcdctl/v3", Bin: "etcdctl"},
			},
		},
		Download: &Download{
			Base: "https://github.com/etcd-io/etcd/releases/download",
			Assets: func(v string) []Asset {
				return []Asset{{Path: v + "/etcd-" + v + "-linux-amd64.tar.gz", Sums: v + "/SHA256SUMS",
					Members: []string{"etcd", "etcdctl"}}}
			},
		},
	},
	{
		Project:  "cni-plugins",
		Binaries: []string{"bridge", "host-local", "loopback", "portmap", "flannel"},
		Versions: []string{"v0.9.1"},
		Why: "v0.9.1 is the last release with plugins/meta/flannel (v1.0.0 moved it to " +
			"github.com/flannel-io/cni-plugin, which the Go module proxy does not serve)",
		Sources: []string{SourceBuild, SourceDownload},
		Build: &GoBuild{
			Module: "github.com/containernetworking/plugins",
			Packages: []Package{
				{Path: "github.com/containernetworking/plugins/plugins/main/bridge", Bin: "bridge"},
				{Path: "github.com/containernetworking/plugins/plugins/ipam/host-local", Bin: "host-local"},
				{Path: "github.com/containernetworking/plugins/plugins/main/loopback", Bin: "loopback"},
				{Path: "github.com/containernetworking/plugins/plugins/meta/portmap", Bin: "portmap"},
				{Path: "github.com/containernetworking/plugins/plugins/meta/flannel", Bin: "flannel"},
			},
			LDFlags: func(v string) []string {
				return []string{"github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=" + v}
			},
		},
		Download: &Download{
			Base: "https://github.com/containernetworking/plugins/releases/download",
			Assets: func(v string) []Asset {
				p := v + "/cni-plugins-linux-amd64-" + v + ".tgz"
				return []Asset{{Path: p, Sums: p + ".sha256",
					Members: []string{"bridge", "host-local", "loopback", "portmap", "flannel"}}}
			},
		},
	},
	{
		Project:  "flannel",
		Binaries: []string{"flanneld"},
		Versions: []string{"v0.27.4"},
		Why: "v0.27.4 builds from the Go module proxy; v0.28.x needs tencentcloud-sdk-go's common v1.3.79, " +
			"which the proxy refuses",
		Sources: []string{SourceBuild},
		NoSource: map[string]string{SourceDownload: "flannel's releases publish flanneld-amd64 without a sha256 " +
			"file, and khw downloads nothing it cannot check"},
		Build: &GoBuild{
			Module:   "github.com/flannel-io/flannel",
			Packages: []Package{{Path: "github.com/flannel-io/flannel", Bin: "flanneld"}},
			// The udp backend is cgo on amd64, as in flannel's own Makefile.
			CGO: true,
			LDFlags: func(v string) []string {
				return []string{"github.com/flannel-io/flannel/pkg/version.Version=" + v}
			},
		},
	},
	{
		Project:  "coredns",
		Binaries: []string{"coredns"},
		Versions: []string{"v1.12.1"},
		Why:      "Kubernetes 1.34 pins CoreDNS v1.12.1 (kubeadm's CoreDNSVersion)",
		Sources:  []string{SourceBuild, SourceDownload},
		Build: &GoBuild{
			Module:   "github.com/coredns/coredns",
			Packages: []Package{{Path: "github.com/coredns/coredns", Bin: "coredns"}},
		},
		Download: &Download{
			Base: "https://github.com/coredns/coredns/releases/download",
			Assets: func(v string) []Asset {
				p := v + "/coredns_" + strings.TrimPrefix(v, "v") + "_linux_amd64.tgz"
				return []Asset{{Path: p, Sums: p + ".sha256", Members: []string{"coredns"}}}
			},
		},
	},
	{
		Project:  "containerd",
		Binaries: []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"},
		Versions: []string{"1.6.20~ds1-1+deb12u3"},
		// Debian's version string; apt says at apply time which it has.
		AnyVersion: regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$`),
		Why: "containerd comes from Debian's packages at a version apt has (Debian 12: 1.6.20~ds1-1+deb12u3, " +
			"with runc 1.1.5+ds1-1+deb12u1)",
		Sources: []string{SourceDebian},
		NoSource: map[string]string{
			SourceBuild:    "khw takes containerd and runc from Debian's packages, offline and online",
			SourceDownload: "khw takes containerd and runc from Debian's packages, offline and online",
		},
		Debian: &Debian{
			Package: "containerd",
			Also:    []string{"runc"},
			Bins: map[string]string{"containerd": "containerd", "containerd-shim-runc-v2": "containerd",
				"ctr": "containerd", "runc": "runc"},
		},
	},
}

// Catalog is a table of specs.
type Catalog []*Spec

// Lookup returns the spec of a project, or nil.
func (c Catalog) Lookup(project string) *Spec {
	for _, s := range c {
		if s.Project == project {
			return s
		}
	}
	return nil
}

// Projects lists the projects, in catalog order.
func (c Catalog) Projects() []string {
	var p []string
	for _, s := range c {
		p = append(p, s.Project)
	}
	return p
}

// knows says whether the spec accepts a version.
func (s *Spec) knows(version string) bool {
	for _, v := range s.Versions {
		if v == version {
			return true
		}
	}
	return s.AnyVersion != nil && s.AnyVersion.MatchString(version)
}

// supports says whether the spec can be had from a source.
func (s *Spec) supports(source string) bool {
	for _, v := range s.Sources {
		if v == source {
			return true
		}
	}
	return false
}
