// Package ipcheck tells a hypervisor plugin (libvirt, docker) whether
// something already answers at the address it is about to give a new node,
// so that the node is refused with a clear message instead of booting into
// an address conflict that shows up later as ssh talking to the wrong host.
//
// How: one TCP connection to the address's port 22, for at most Timeout.
// An answer of any kind, a completed handshake (sshd, or whatever listens)
// or a reset (a live host with that port closed), means a host holds the
// address. No answer (the kernel's ARP resolution fails: "no route to
// host", or the timeout passes) means nothing does.
//
// Why this and not the alternatives:
//   - an ARP probe (arping) needs a raw socket, so root or CAP_NET_RAW, and
//     the hypervisor plugins run as the user;
//   - an unprivileged ICMP echo needs net.ipv4.ping_group_range to include
//     the user's group, which Debian's default ("1 0") does not;
//   - the kernel's neighbour table keeps the MAC of a node khw destroyed a
//     moment ago for half a minute or more, so it would refuse re-creating
//     that node;
//   - a TCP connection needs no privilege, the kernel does the ARP
//     resolution on the way, and it works whether or not the bridge is on
//     this machine (a remote libvirt host), as khw must route to its nodes
//     anyway to copy files to them. It costs one round trip when the
//     address is taken, and Timeout when it is free, once per new node.
//
// Only an address on a link of this machine is probed: the lab's bridge,
// where only the host holding the address can answer. Behind a router, a
// proxy or firewall on the way may answer for any address (some networks
// accept every TCP connection), and the check would refuse free
// addresses; there it is skipped.
//
// What it misses: a host whose firewall silently drops TCP to port 22
// (neither accepting nor rejecting) looks free.
package ipcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/khw-dev/khw/plugins/sdk"
)

// Timeout bounds the probe. A host on the same bridge answers within a
// millisecond, one behind a router within a round trip.
const Timeout = time.Second

// Free returns nil when nothing answers at ip, or an error saying that the
// address is taken on bridge and what to do.
func Free(ctx context.Context, ip, bridge string) error {
	if !onLink(ip) {
		return nil
	}
	answer, err := probe(ctx, net.JoinHostPort(ip, "22"), Timeout)
	if err != nil {
		return err
	}
	if answer == "" {
		return nil
	}
	return sdk.WithHint(fmt.Errorf("IP %s is already in use on %s (something answers there: %s)", ip, bridge, answer),
		"free the IP or give the node another one")
}

// probe connects to addr and describes the answer, or returns "" when
// there is none. Only a cancelled ctx is an error.
func probe(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	switch {
	case err == nil:
		conn.Close()
		return "port " + portOf(addr) + " accepted a connection", nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return "port " + portOf(addr) + " refused a connection", nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	}
	return "", nil
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// onLink is true when the kernel reaches ip directly on one of this
// machine's links (or ip is its own), with no router in between. Asking
// for a route needs no privilege.
func onLink(ip string) bool {
	addr := net.ParseIP(ip)
	if addr == nil {
		return false
	}
	routes, err := netlink.RouteGet(addr)
	return err == nil && len(routes) > 0 && routes[0].Gw == nil
}
