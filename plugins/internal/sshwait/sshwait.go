// Package sshwait waits for a new node's sshd: the hypervisor providers
// (libvirt, docker) report a node made only once it greets on port 22.
package sshwait

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Greeting waits until addr (host:port) answers with an SSH greeting,
// calling progress every 5 s, for at most within.
func Greeting(ctx context.Context, addr string, within time.Duration, progress func(string)) error {
	deadline := time.Now().Add(within)
	var last time.Time
	lastErr := errors.New("no answer")
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-") {
				return nil
			}
			err = errors.New("no ssh greeting")
		}
		lastErr = err
		if progress != nil && time.Since(last) >= 5*time.Second {
			progress("waiting for ssh on " + addr)
			last = time.Now()
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("no ssh greeting within %v: %v", within, lastErr)
}
