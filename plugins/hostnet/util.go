package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// rootHint explains a permission failure: only this plugin needs root.
func rootHint(err error) string {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
		return " (host networking needs root: run khw as root, or set KHW_PLUGIN_PREFIX_HOSTNET=\"sudo -n -E\")"
	}
	return ""
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if errors.Is(err, os.ErrNotExist) {
		hint := ""
		if strings.HasPrefix(key, "net.bridge.") {
			hint = " (load the br_netfilter module: modprobe br_netfilter)"
		}
		return "", errors.New("sysctl " + key + " does not exist on this kernel" + hint)
	}
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, value string) error {
	if _, err := readSysctl(key); err != nil {
		return err
	}
	err := os.WriteFile(sysctlPath(key), []byte(value+"\n"), 0o644)
	if err != nil {
		return errors.New("setting " + key + "=" + value + ": " + err.Error() + rootHint(err))
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
