package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/khw-dev/khw/plugins/sdk"
)

// needsRoot adds what to do to a permission failure: only this plugin
// needs root. Other errors pass unchanged.
func needsRoot(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
		return sdk.WithHint(err, "host networking needs root: run khw as root, or set KHW_PLUGIN_PREFIX_HOSTNET=\"sudo -n -E\"")
	}
	return err
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if errors.Is(err, os.ErrNotExist) {
		err := errors.New("sysctl " + key + " does not exist on this kernel")
		if strings.HasPrefix(key, "net.bridge.") {
			err = sdk.WithHint(err, "load the br_netfilter module: modprobe br_netfilter")
		}
		return "", err
	}
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, value string) error {
	if _, err := readSysctl(key); err != nil {
		return err
	}
	err := os.WriteFile(sysctlPath(key), []byte(value+"\n"), 0o644)
	if err != nil {
		return needsRoot(fmt.Errorf("setting %s=%s: %w", key, value, err))
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
