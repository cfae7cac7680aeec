package artifact_test

import (
	"fmt"
	"testing"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/runtime"
)

// TestCopiesFollowTheVersion: node.copy of an artifact's files depends on
// the artifact, installs them as programs, and its inputs change with the
// version, so a version bump plans exactly the copies it causes.
func TestCopiesFollowTheVersion(t *testing.T) {
	copyOf := func(version string) *runtime.Resource {
		src := fmt.Sprintf(`
key = ssh.key()
n1 = node.host("n1", ip = "10.200.1.13", ssh_key = key)
k8s = artifact.release("kubernetes", version = %q)
node.copy(n1, [k8s.files["kubelet"], k8s.files["kube-proxy"]], name = "n1-bins", dest = "/usr/local/bin")
`, version)
		rec, err := all.Registry().Evaluate("recipe.star", runtime.Options{Source: []byte(src), Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return rec.Resource("node.copy.n1-bins")
	}
	a, b := copyOf("v1.34.3"), copyOf("v1.34.4")
	if fmt.Sprint(a.Deps) != "[artifact.kubernetes node.host.n1]" {
		t.Fatalf("deps = %v", a.Deps)
	}
	want := "[map[mode:0755 path:/var/lib/khw/artifacts/kubernetes/v1.34.3/kubelet] map[mode:0755 path:/var/lib/khw/artifacts/kubernetes/v1.34.3/kube-proxy]]"
	if got := fmt.Sprint(a.Inputs["files"]); got != want {
		t.Fatalf("files = %s\nwant %s", got, want)
	}
	if a.Hash() == b.Hash() {
		t.Fatal("the copy's inputs do not change with the version")
	}
}
