package sshwait

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, reply string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestGreeting(t *testing.T) {
	ctx := context.Background()
	if err := Greeting(ctx, serve(t, "SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), 2*time.Second, nil); err != nil {
		t.Fatalf("a greeting was not recognised: %v", err)
	}
	err := Greeting(ctx, serve(t, "HTTP/1.0 400 Bad Request\r\n"), 800*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "no ssh greeting") {
		t.Fatalf("a non-ssh answer was accepted: %v", err)
	}
	var lines []string
	closed := serve(t, "")
	err = Greeting(ctx, closed, 800*time.Millisecond, func(s string) { lines = append(lines, s) })
	if err == nil || len(lines) == 0 || !strings.Contains(lines[0], closed) {
		t.Fatalf("err %v, progress %q", err, lines)
	}
}
