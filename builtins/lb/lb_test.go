package lb

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

func TestRenderThePostsConfig(t *testing.T) {
	golden(t, "testdata/post.conf", Render([]string{"10.200.1.10:6443", "10.200.1.11:6443"}, []int{6443, 443}, ""))
}

func TestRenderThreeMastersWithModule(t *testing.T) {
	golden(t, "testdata/three-masters.conf", Render([]string{"10.200.1.10:6443", "10.200.1.11:6443", "10.200.1.12:6443"},
		[]int{6443, 443}, "/usr/lib/nginx/modules/ngx_stream_module.so"))
}
