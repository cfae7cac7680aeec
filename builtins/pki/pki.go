// Package pki is the recipe module `pki`: a certificate authority and the
// certificates it signs, made with cfssl's library exactly as the post's
// `cfssl gencert` + `cfssljson -bare` commands make them, from the same
// cfssl JSON (CSR fields, key algorithm and size, signing profiles).
package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	cflog "github.com/cloudflare/cfssl/log"
	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

func init() {
	// cfssl's library logs every step at info level (serials, key sizes);
	// khw reports progress itself.
	cflog.Level = cflog.LevelFatal
}

// Register adds the pki module and its resource types.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "pki", Name: "ca", Creates: "pki.ca", Provider: "khw", Fn: caBuiltin,
		Doc: "Declares a certificate authority made like `cfssl gencert -initca CSR | cfssljson -bare NAME`: " +
			"NAME.pem, NAME-key.pem (0600) and NAME.csr in the workdir. The key is its own resource, " +
			"pki.key.NAME, so that every key of a PKI is generated in parallel from the start.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "file prefix and resource name (address pki.ca.NAME)"},
			{Name: "csr", Type: "dict", Doc: "the cfssl CSR JSON as a dict (CN, key, names, hosts, ca)"},
		},
		Example: `ca = pki.ca("ca", csr = pki.csr_json("hardway/ca-csr.json"))`,
	})
	r.Add(&runtime.Builtin{Module: "pki", Name: "cert", Creates: "pki.cert", Provider: "khw", Fn: certBuiltin,
		Doc: "Declares a certificate signed by a CA, made like `cfssl gencert -ca -ca-key -config -profile " +
			"-hostname HOSTS CSR | cfssljson -bare NAME`: NAME.pem, NAME-key.pem (0600, resource pki.key.NAME) and NAME.csr.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Doc: "file prefix and resource name (address pki.cert.NAME)"},
			{Name: "ca", Type: "pki.ca", Doc: "the signing CA"},
			{Name: "csr", Type: "dict", Doc: "the cfssl CSR JSON as a dict"},
			{Name: "config", Type: "dict", Doc: "the cfssl signing config (ca-config.json) as a dict"},
			{Name: "profile", Type: "string", Default: `""`, Doc: "signing profile of config; empty uses its default"},
			{Name: "hosts", Type: "list of strings", Default: "None", Doc: "SANs, as cfssl's -hostname (overrides the CSR's hosts)"},
		},
		Example: `admin = pki.cert("admin", ca = ca, csr = csr, config = ca_config, profile = "kubernetes")`,
	})
	r.Add(&runtime.Builtin{Module: "pki", Name: "csr_json", Fn: jsonFileBuiltin("csr_json", checkCSR),
		Doc:     "Reads a cfssl CSR JSON file (relative to the recipe root) and returns it as a dict, checked.",
		Args:    []runtime.Arg{{Name: "path", Type: "string", Doc: "file inside the recipe root"}},
		Example: `csr = pki.csr_json("hardway/admin-csr.json")`,
	})
	r.Add(&runtime.Builtin{Module: "pki", Name: "config_json", Fn: jsonFileBuiltin("config_json", checkConfig),
		Doc:     "Reads a cfssl signing config file (ca-config.json, relative to the recipe root) and returns it as a dict, checked.",
		Args:    []runtime.Arg{{Name: "path", Type: "string", Doc: "file inside the recipe root"}},
		Example: `ca_config = pki.config_json("hardway/ca-config.json")`,
	})
	r.AddType(runtime.TypeSpec{Type: "pki.key", Doc: "a private key", Handler: workspace.Handler{ApplyFn: applyKey}})
	r.AddType(runtime.TypeSpec{Type: "pki.ca", Doc: "a certificate authority", Handler: workspace.Handler{ApplyFn: applyCA}})
	r.AddType(runtime.TypeSpec{Type: "pki.cert", Doc: "a certificate signed by a CA", Handler: workspace.Handler{ApplyFn: applyCert}})
}

// ---- evaluation ----

func pairAttrs(name string, addr string) starlark.StringDict {
	return starlark.StringDict{
		"cert": &runtime.File{Path: name + ".pem", Producer: addr},
		"key":  &runtime.File{Path: name + "-key.pem", Producer: "pki.key." + name, Secret: true},
		"csr":  &runtime.File{Path: name + ".csr", Producer: addr},
	}
}

// declareKey declares the private key NAME-key.pem as its own resource. It
// depends on nothing, so every key of a PKI is generated at once, on every
// core, while the CA's certificate waits only for the CA's key.
func declareKey(thread *starlark.Thread, name string, kr *csr.KeyRequest) (string, error) {
	res := &runtime.Resource{Type: "pki.key", Name: name,
		Inputs: map[string]any{"algo": kr.Algo(), "size": kr.Size(), "file": name + "-key.pem"},
		Show: []runtime.Field{
			{Key: "key", Value: fmt.Sprintf("%s %d", kr.Algo(), kr.Size())},
			{Key: "file", Value: name + "-key.pem (0600)"},
		},
	}
	return res.Addr(), runtime.Declare(thread, res)
}

func caBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var csrv *starlark.Dict
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "csr", &csrv); err != nil {
		return nil, err
	}
	if err := workspace.CheckName(b, name); err != nil {
		return nil, err
	}
	req, raw, err := parseCSR(csrv)
	if err != nil {
		return nil, runtime.Errorf(b, "csr: %v", err)
	}
	if req.CA != nil && req.CA.Backdate != "" {
		return nil, runtime.Errorf(b, "csr: ca.backdate is not supported")
	}
	keyAddr, err := declareKey(thread, name, req.KeyRequest)
	if err != nil {
		return nil, err
	}
	res := &runtime.Resource{
		Type: "pki.ca", Name: name,
		Inputs: map[string]any{"csr": raw, "key": name + "-key.pem"},
		Deps:   []string{keyAddr},
		Show:   csrFields(req, name),
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, pairAttrs(name, res.Addr())), nil
}

func certBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, profile string
	var ca *runtime.Handle
	var csrv, cfgv *starlark.Dict
	var hostsv starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ca", &ca, "csr", &csrv, "config", &cfgv,
		"profile?", &profile, "hosts?", &hostsv); err != nil {
		return nil, err
	}
	if err := workspace.CheckName(b, name); err != nil {
		return nil, err
	}
	if ca.Res.Type != "pki.ca" {
		return nil, runtime.Errorf(b, "ca must be a pki.ca, not %s", ca.Res.Addr())
	}
	req, rawCSR, err := parseCSR(csrv)
	if err != nil {
		return nil, runtime.Errorf(b, "csr: %v", err)
	}
	if req.CA != nil {
		return nil, runtime.Errorf(b, "csr: a \"ca\" section is only allowed in pki.ca (cfssl refuses it too)")
	}
	cfg, rawCfg, err := parseConfig(cfgv)
	if err != nil {
		return nil, runtime.Errorf(b, "config: %v", err)
	}
	if profile != "" {
		if _, ok := cfg.Signing.Profiles[profile]; !ok {
			return nil, runtime.Errorf(b, "unknown signing profile %q: the config has %s", profile, profileNames(cfg))
		}
	}
	hosts, err := starconv.Strings("hosts", hostsv)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	for i, h := range hosts {
		if err := checkHost(h); err != nil {
			return nil, runtime.Errorf(b, "hosts[%d]: %v", i, err)
		}
	}
	keyAddr, err := declareKey(thread, name, req.KeyRequest)
	if err != nil {
		return nil, err
	}
	caAttrs := pairAttrs(ca.Res.Name, ca.Res.Addr())
	inputs := map[string]any{
		"key":     name + "-key.pem",
		"csr":     rawCSR,
		"config":  rawCfg,
		"profile": profile,
		"ca": map[string]any{
			"cert": caAttrs["cert"].(*runtime.File).Path,
			"key":  caAttrs["key"].(*runtime.File).Path,
		},
	}
	show := csrFields(req, name)
	if hostsv != starlark.None {
		inputs["hosts"] = starconv.StringsToAny(hosts)
		show = append(show[:2:2], append([]runtime.Field{{Key: "hosts", Value: strings.Join(hosts, ",")}}, show[2:]...)...)
	}
	show = append(show, runtime.Field{Key: "ca", Value: ca.Res.Addr()})
	if profile != "" {
		show = append(show, runtime.Field{Key: "profile", Value: profile})
	}
	res := &runtime.Resource{
		Type: "pki.cert", Name: name, Inputs: inputs, Deps: []string{ca.Res.Addr(), keyAddr, caAttrs["key"].(*runtime.File).Producer}, Show: show,
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	attrs := pairAttrs(name, res.Addr())
	attrs["cn"] = starlark.String(req.CN)
	attrs["hosts"] = starconv.FromGo(starconv.StringsToAny(hosts))
	return runtime.NewHandle(res, attrs), nil
}

func csrFields(req *csr.CertificateRequest, name string) []runtime.Field {
	var o []string
	for _, n := range req.Names {
		if n.O != "" {
			o = append(o, n.O)
		}
	}
	f := []runtime.Field{{Key: "cn", Value: req.CN}, {Key: "o", Value: strings.Join(o, ",")}}
	if len(req.Hosts) > 0 {
		f = append(f, runtime.Field{Key: "hosts", Value: strings.Join(req.Hosts, ",")})
	}
	f = append(f,
		runtime.Field{Key: "key", Value: fmt.Sprintf("pki.key.%s (%s %d)", name, req.KeyRequest.Algo(), req.KeyRequest.Size())},
		runtime.Field{Key: "files", Value: fmt.Sprintf("%s.pem %s.csr", name, name)},
	)
	return f
}

func jsonFileBuiltin(name string, check func(*starlark.Dict) error) runtime.BuiltinFunc {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var path string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
			return nil, err
		}
		data, err := runtime.ReadFile(thread, path)
		if err != nil {
			return nil, runtime.Errorf(b, "%v", err)
		}
		d, err := jsonDict(data)
		if err != nil {
			return nil, runtime.Errorf(b, "%s %v", path, err)
		}
		if err := check(d); err != nil {
			return nil, runtime.Errorf(b, "%s: %v", path, err)
		}
		return d, nil
	}
}

// jsonDict decodes a cfssl JSON file, which holds an object, into a dict.
func jsonDict(data []byte) (*starlark.Dict, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("is not JSON: %v", err)
	}
	d, ok := starconv.FromGo(v).(*starlark.Dict)
	if !ok {
		return nil, fmt.Errorf("does not hold a JSON object")
	}
	return d, nil
}

func checkCSR(d *starlark.Dict) error { _, _, err := parseCSR(d); return err }

func checkConfig(d *starlark.Dict) error { _, _, err := parseConfig(d); return err }

// parseCSR decodes a CSR dict the way `cfssl gencert` decodes its JSON
// (key defaults to ecdsa 256), refusing unknown fields and bad keys.
func parseCSR(d *starlark.Dict) (*csr.CertificateRequest, map[string]any, error) {
	v, err := starconv.ToGo(d)
	if err != nil {
		return nil, nil, err
	}
	raw := v.(map[string]any)
	b, _ := json.Marshal(raw)
	req := &csr.CertificateRequest{KeyRequest: csr.NewKeyRequest()}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return nil, nil, fmt.Errorf("not a cfssl CSR: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if req.KeyRequest == nil { // "key": null, which cfssl reads as the default key
		req.KeyRequest = csr.NewKeyRequest()
	}
	if req.CN == "" {
		return nil, nil, fmt.Errorf("CN is empty: every certificate needs a common name")
	}
	if err := checkKey(req.KeyRequest); err != nil {
		return nil, nil, err
	}
	for i, h := range req.Hosts {
		if err := checkHost(h); err != nil {
			return nil, nil, fmt.Errorf("hosts[%d]: %v", i, err)
		}
	}
	return req, raw, nil
}

// checkKey applies cfssl's own rules for key requests.
func checkKey(kr *csr.KeyRequest) error {
	switch kr.Algo() {
	case "rsa":
		if kr.Size() < 2048 || kr.Size() > 8192 {
			return fmt.Errorf("key: rsa size %d is not allowed: cfssl takes 2048 to 8192 bits", kr.Size())
		}
	case "ecdsa":
		switch kr.Size() {
		case 256, 384, 521:
		default:
			return fmt.Errorf("key: ecdsa size %d is not allowed: use 256, 384 or 521", kr.Size())
		}
	default:
		return fmt.Errorf("key: unknown algorithm %q: use \"rsa\" or \"ecdsa\"", kr.Algo())
	}
	return nil
}

var hostRE = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func checkHost(h string) error {
	if net.ParseIP(h) != nil || hostRE.MatchString(h) || strings.Contains(h, "@") || strings.Contains(h, "://") {
		return nil
	}
	return fmt.Errorf("%q is neither an IP address nor a DNS name", h)
}

func parseConfig(d *starlark.Dict) (*config.Config, map[string]any, error) {
	v, err := starconv.ToGo(d)
	if err != nil {
		return nil, nil, err
	}
	raw := v.(map[string]any)
	b, _ := json.Marshal(raw)
	if err := checkValidity(b); err != nil {
		return nil, nil, fmt.Errorf("not a valid cfssl signing config: %v", err)
	}
	cfg, err := config.LoadConfig(b)
	if err != nil {
		return nil, nil, fmt.Errorf("not a valid cfssl signing config: %v", err)
	}
	if cfg.Signing == nil {
		return nil, nil, fmt.Errorf("no \"signing\" section")
	}
	return cfg, raw, nil
}

// checkValidity refuses a profile whose not_after is before its
// not_before, which cfssl's LoadConfig means to refuse but panics on
// instead (it wraps a nil error). It reads the two fields as LoadConfig
// does; anything else wrong is LoadConfig's to say.
func checkValidity(b []byte) error {
	type window struct {
		NotBefore time.Time `json:"not_before"`
		NotAfter  time.Time `json:"not_after"`
	}
	var c struct {
		Signing *struct {
			Default  *window            `json:"default"`
			Profiles map[string]*window `json:"profiles"`
		} `json:"signing"`
	}
	if json.Unmarshal(b, &c) != nil || c.Signing == nil {
		return nil
	}
	check := func(what string, w *window) error {
		if w != nil && !w.NotBefore.IsZero() && !w.NotAfter.IsZero() && w.NotAfter.Before(w.NotBefore) {
			return fmt.Errorf("%s: not_after %s is before not_before %s",
				what, w.NotAfter.Format(time.RFC3339), w.NotBefore.Format(time.RFC3339))
		}
		return nil
	}
	if err := check("the default profile", c.Signing.Default); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Signing.Profiles))
	for n := range c.Signing.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := check(fmt.Sprintf("profile %q", n), c.Signing.Profiles[n]); err != nil {
			return err
		}
	}
	return nil
}

func profileNames(cfg *config.Config) string {
	var names []string
	for n := range cfg.Signing.Profiles {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "no profiles"
	}
	return strings.Join(names, ", ")
}
