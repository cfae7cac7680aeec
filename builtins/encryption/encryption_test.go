package encryption

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRenderMatchesGolden(t *testing.T) {
	got, err := Render([]string{"secrets"}, "key1", "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGVzIQ==")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/encryption-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestExistingKeyIsKeptOnlyWhenValid(t *testing.T) {
	dir := t.TempDir()
	key := "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=" // 32 bytes
	b, _ := Render([]string{"secrets"}, "key1", key)
	_ = os.WriteFile(filepath.Join(dir, "e.yaml"), b, 0o600)
	if got := existingKey(dir, "e.yaml", "key1"); got != key {
		t.Fatalf("kept %q", got)
	}
	if got := existingKey(dir, "e.yaml", "key2"); got != "" {
		t.Fatal("a key of another name was kept")
	}
	short, _ := Render([]string{"secrets"}, "key1", "c2hvcnQ=")
	_ = os.WriteFile(filepath.Join(dir, "e.yaml"), short, 0o600)
	if got := existingKey(dir, "e.yaml", "key1"); got != "" {
		t.Fatal("a key that is not 32 bytes was kept")
	}
}
