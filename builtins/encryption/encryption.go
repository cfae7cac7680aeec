// Package encryption is the recipe module `encryption`: the API server's
// encryption-at-rest config in its current form (EncryptionConfiguration,
// apiserver.config.k8s.io/v1), aescbc with a 32-byte key made at apply time
// and kept across runs, then identity.
package encryption

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"sigs.k8s.io/yaml"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// Register adds the encryption module and its resource type.
func Register(r *runtime.Registry) {
	r.Add(&runtime.Builtin{Module: "encryption", Name: "config", Creates: "encryption.config", Provider: "khw", Fn: configBuiltin,
		Doc: "Declares NAME.yaml (0600), an EncryptionConfiguration with an aescbc provider whose 32-byte " +
			"key is generated at apply time (never shown, kept across runs) and identity as fallback.",
		Args: []runtime.Arg{
			{Name: "name", Type: "string", Default: `"encryption-config"`, Doc: "file name without .yaml"},
			{Name: "resources", Type: "list of strings", Default: `["secrets"]`, Doc: "API resources to encrypt"},
			{Name: "key_name", Type: "string", Default: `"key1"`, Doc: "name of the aescbc key"},
		},
		Example: `enc = encryption.config()`,
	})
	r.AddType(runtime.TypeSpec{Type: "encryption.config", Doc: "an encryption config", UpdateInPlace: true,
		Handler: workspace.Handler{ApplyFn: apply}})
}

func configBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, keyName := "encryption-config", "key1"
	var resv starlark.Value = starlark.NewList([]starlark.Value{starlark.String("secrets")})
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name?", &name, "resources?", &resv, "key_name?", &keyName); err != nil {
		return nil, err
	}
	resources, err := starconv.Strings("resources", resv)
	if err != nil {
		return nil, runtime.Errorf(b, "%v", err)
	}
	if len(resources) == 0 {
		return nil, runtime.Errorf(b, "resources is empty: name at least one API resource, such as \"secrets\"")
	}
	if keyName == "" || name == "" {
		return nil, runtime.Errorf(b, "name and key_name must not be empty")
	}
	res := &runtime.Resource{
		Type: "encryption.config", Name: name,
		Inputs: map[string]any{"resources": starconv.StringsToAny(resources), "key_name": keyName},
		Show: []runtime.Field{
			{Key: "resources", Value: strings.Join(resources, ",")},
			{Key: "providers", Value: "aescbc (" + keyName + ", 32-byte key made at apply), identity"},
			{Key: "file", Value: name + ".yaml"},
		},
	}
	if err := runtime.Declare(thread, res); err != nil {
		return nil, err
	}
	return runtime.NewHandle(res, starlark.StringDict{
		"file": &runtime.File{Path: name + ".yaml", Producer: res.Addr(), Secret: true},
	}), nil
}

// The EncryptionConfiguration schema, as far as khw writes it.
type (
	Config struct {
		Kind       string     `json:"kind"`
		APIVersion string     `json:"apiVersion"`
		Resources  []Resource `json:"resources"`
	}
	Resource struct {
		Resources []string   `json:"resources"`
		Providers []Provider `json:"providers"`
	}
	Provider struct {
		AESCBC   *AESCBC   `json:"aescbc,omitempty"`
		Identity *struct{} `json:"identity,omitempty"`
	}
	AESCBC struct {
		Keys []Key `json:"keys"`
	}
	Key struct {
		Name   string `json:"name"`
		Secret string `json:"secret"`
	}
)

// Render writes the config for the given key (base64 of 32 bytes).
func Render(resources []string, keyName, secret string) ([]byte, error) {
	return yaml.Marshal(Config{
		Kind: "EncryptionConfiguration", APIVersion: "apiserver.config.k8s.io/v1",
		Resources: []Resource{{
			Resources: resources,
			Providers: []Provider{
				{AESCBC: &AESCBC{Keys: []Key{{Name: keyName, Secret: secret}}}},
				{Identity: &struct{}{}},
			},
		}},
	})
}

// existingKey returns the key an earlier run wrote under keyName, if the
// file is there and holds one: re-running must not rotate the key, or the
// cluster could no longer read its secrets.
func existingKey(workdir, file, keyName string) string {
	data, err := workspace.Read(workdir, file) // missing: no key yet
	if err != nil {
		return ""
	}
	var cfg Config
	if yaml.Unmarshal(data, &cfg) != nil {
		return ""
	}
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.AESCBC == nil {
				continue
			}
			for _, k := range p.AESCBC.Keys {
				if raw, err := base64.StdEncoding.DecodeString(k.Secret); k.Name == keyName && err == nil && len(raw) == 32 {
					return k.Secret
				}
			}
		}
	}
	return ""
}

func apply(_ context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	var in struct {
		Resources []string `json:"resources"`
		KeyName   string   `json:"key_name"`
	}
	if err := req.Resource.Decode(&in); err != nil {
		return nil, err
	}
	file := req.Resource.Name + ".yaml"
	secret := existingKey(req.Workdir, file, in.KeyName)
	if secret == "" {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("making the key: %v", err)
		}
		secret = base64.StdEncoding.EncodeToString(key)
	}
	data, err := Render(in.Resources, in.KeyName, secret)
	if err != nil {
		return nil, err
	}
	return workspace.Write(req.Workdir, workspace.File{Name: file, Data: data, Secret: true})
}
