package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/khw-dev/khw/plugins/sdk"
)

type sysctl struct{}

type sysctlConfig struct {
	Values map[string]string `json:"values"`
}

type sysctlOutputs struct {
	// Prev holds each key's value before khw first set it.
	Prev map[string]string `json:"prev"`
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (sysctl) Read(_ context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	var c sysctlConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	var drift []string
	for _, k := range sortedKeys(c.Values) {
		v, err := readSysctl(k)
		if err != nil {
			return nil, err
		}
		if v != c.Values[k] {
			drift = append(drift, fmt.Sprintf("%s is %s", k, v))
		}
	}
	return &sdk.ReadResponse{Exists: true, Drift: strings.Join(drift, ", "), Outputs: req.PriorOutputs}, nil
}

func (sysctl) Apply(_ context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	var c sysctlConfig
	if err := req.Resource.Decode(&c); err != nil {
		return nil, err
	}
	out := sysctlOutputs{Prev: map[string]string{}}
	if len(req.PriorOutputs) > 0 {
		_ = json.Unmarshal(req.PriorOutputs, &out)
	}
	// Check every key before changing any.
	for _, k := range sortedKeys(c.Values) {
		v, err := readSysctl(k)
		if err != nil {
			return nil, err
		}
		if _, known := out.Prev[k]; !known {
			out.Prev[k] = v
		}
	}
	var digest []string
	for _, k := range sortedKeys(c.Values) {
		if err := writeSysctl(k, c.Values[k]); err != nil {
			return nil, err
		}
		digest = append(digest, k+"="+c.Values[k])
	}
	// Keys the recipe no longer sets get their old value back.
	for k, prev := range out.Prev {
		if _, still := c.Values[k]; !still {
			if err := writeSysctl(k, prev); err != nil {
				return nil, err
			}
			delete(out.Prev, k)
		}
	}
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(out), Digest: strings.Join(digest, " ")}, nil
}

func (sysctl) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	var o sysctlOutputs
	if err := json.Unmarshal(req.PriorOutputs, &o); err != nil {
		return err
	}
	for _, k := range sortedKeys(o.Prev) {
		if err := writeSysctl(k, o.Prev[k]); err != nil {
			return err
		}
	}
	return nil
}
