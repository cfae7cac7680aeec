package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/khw-dev/khw/plugins/sdk"
)

// errSeen ends the console stream once cloud-init's final message is seen.
var errSeen = errors.New("cloud-init finished")

// finishWatcher is the console stream's writer: it watches the guest's
// serial console for cloud-init's final message, printed when every module
// has run (users, keys, network, and any restart of sshd they cause).
type finishWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	tail  string
	once  sync.Once
	found chan struct{}
}

func (w *finishWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		if strings.TrimSpace(line) != "" {
			w.tail = strings.TrimSpace(line)
		}
		if strings.Contains(line, "Cloud-init v.") && strings.Contains(line, "finished at") {
			w.once.Do(func() { close(w.found) })
			return len(p), errSeen
		}
	}
	return len(p), nil
}

func (w *finishWatcher) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tail
}

// waitCloudInit follows the serial console (over libvirt's RPC, so it works
// for remote hosts too) until cloud-init reports it has finished.
func waitCloudInit(ctx context.Context, l *libvirt.Libvirt, dom libvirt.Domain, c *vmConfig, progress sdk.Progress, within time.Duration) error {
	w := &finishWatcher{found: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- l.DomainOpenConsole(dom, nil, w, uint32(libvirt.DomainConsoleForce)) }()
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-w.found:
			return nil
		case err := <-errc:
			select {
			case <-w.found:
				return nil
			default:
			}
			err = fmt.Errorf("the console of %s closed before cloud-init finished (%v); last line: %q", c.Hostname, err, w.last())
			if !l.IsConnected() {
				// libvirtd went away (restarted, crashed): the VM may
				// well be fine, but this run cannot tell.
				return sdk.WithHint(err, "the connection to libvirtd at "+c.Options.URI+" was lost (was libvirtd restarted?); once it runs, run khw again: it makes "+c.Hostname+" anew")
			}
			return err
		case <-tick.C:
			if time.Since(start) > within {
				return fmt.Errorf("cloud-init on %s did not finish within %v; last console line: %q", c.Hostname, within, w.last())
			}
			progress(fmt.Sprintf("booting (%ds): %s", int(time.Since(start).Seconds()), truncate(w.last(), 60)))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
