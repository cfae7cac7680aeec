package version_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPluginsDoNotLinkTheEngine: no plugin depends on khw's runtime or on
// the Starlark interpreter (they once imported runtime for its Version).
func TestPluginsDoNotLinkTheEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../plugins/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/khw-dev/khw/runtime" || strings.HasPrefix(dep, "go.starlark.net") {
			t.Errorf("a plugin depends on %s", dep)
		}
	}
}
