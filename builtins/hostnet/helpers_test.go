package hostnet

import (
	"net/netip"
	"testing"
)

// TestNth counts by arithmetic: an IPv6 network's far addresses used to be
// reached one Next() at a time, which never ended.
func TestNth(t *testing.T) {
	for _, c := range []struct {
		base string
		n    int
		want string // "" for none
	}{
		{"10.32.0.0", 1, "10.32.0.1"},
		{"10.32.0.0", 256, "10.32.1.0"},
		{"255.255.255.0", 255, "255.255.255.255"},
		{"255.255.255.0", 256, ""},
		{"10.32.0.0", -1, ""},
		{"::", 1 << 62, "::4000:0:0:0"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00", 1 << 62, ""},
	} {
		a, ok := nth(netip.MustParseAddr(c.base), c.n)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != c.want {
			t.Errorf("nth(%s, %d) = %q, want %q", c.base, c.n, got, c.want)
		}
	}
}
