package ipcheck

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

func TestProbe(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, err := probe(ctx, ln.Addr().String(), time.Second); err != nil || !strings.Contains(got, "accepted a connection") {
		t.Fatalf("a listener: %q, %v", got, err)
	}
	// The same port once closed: the kernel answers with a reset.
	closed := ln.Addr().String()
	ln.Close()
	if got, err := probe(ctx, closed, time.Second); err != nil || !strings.Contains(got, "refused a connection") {
		t.Fatalf("a closed port: %q, %v", got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := probe(cctx, closed, time.Second); err == nil {
		t.Fatal("a cancelled probe did not say so")
	}
}

func TestOnlyAnAddressOnALinkIsProbed(t *testing.T) {
	if !onLink("127.0.0.1") {
		t.Error("this machine's own address is not on a link")
	}
	// TEST-NET-3 is on no link: reached through the default route, if any.
	if onLink("203.0.113.1") {
		t.Error("an address behind the default route is on a link")
	}
	if onLink("not an IP") {
		t.Error("a bad address is on a link")
	}
	if err := Free(context.Background(), "203.0.113.1", "br0"); err != nil {
		t.Errorf("an address behind a router was probed: %v", err)
	}
}

// TestOnTheLabBridge probes from inside a namespace with the lab's br0: a
// host holding 10.200.1.13 with nothing listening is found (the kernel's
// reset), 10.200.1.14, which nobody holds, is free. The test binary runs
// itself inside the namespace for each probe.
func TestOnTheLabBridge(t *testing.T) {
	if ip := os.Getenv(childEnv); ip != "" {
		fmt.Printf("probe: %v\n", Free(context.Background(), ip, "br0"))
		return
	}
	labtest.RequireRoot(t)
	lab := labtest.NewNamespace(t, "khw-errtest")
	labtest.Bridge(t, lab)
	labtest.Host(t, lab, "khw-errtest-sq", "10.200.1.13")
	for ip, want := range map[string]string{
		"10.200.1.13": "probe: IP 10.200.1.13 is already in use on br0 (something answers there: port 22 refused a connection)\n",
		"10.200.1.14": "probe: <nil>\n",
	} {
		cmd := lab.Command(os.Args[0], "-test.run", "^TestOnTheLabBridge$")
		cmd.Env = append(os.Environ(), childEnv+"="+ip)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %v\n%s\nwant %q", ip, err, out, want)
		}
	}
}

const childEnv = "KHW_IPCHECK_PROBE"
