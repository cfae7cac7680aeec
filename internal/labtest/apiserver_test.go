package labtest

import (
	"strings"
	"testing"
)

// TestAPIServer starts the harness's API server and asks it who we are.
func TestAPIServer(t *testing.T) {
	a := StartAPIServer(t)
	out := a.MustKubectl("auth", "whoami")
	if !strings.Contains(out, "admin") || !strings.Contains(out, "system:masters") {
		t.Fatalf("kubectl auth whoami:\n%s", out)
	}
	if v := a.MustKubectl("version", "-o", "json"); !strings.Contains(v, `"gitVersion": "`+K8sVersion) {
		t.Errorf("the server is not %s:\n%s", K8sVersion, v)
	}
}
