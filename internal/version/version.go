// Package version is khw's version, for the khw binary and every plugin:
// a leaf package, so that a plugin that reports its version does not link
// the engine (runtime, the Starlark interpreter) for a string.
package version

import "runtime/debug"

// version is set by the linker: -X github.com/khw-dev/khw/internal/version.version=...
// (the Makefile sets it from git describe).
var version string

// String is khw's version: the linker's, else the module version Go
// recorded in the binary (go install ...@v1.2.3), else "dev".
func String() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
