package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/runtime"
)

// The terminal display is fed from many goroutines while mpb renders: it
// must neither deadlock nor lose a finished line.
func TestTTYDisplayUnderConcurrentEvents(t *testing.T) {
	out := &labtest.Buffer{}
	d := newTTYDisplay(out)
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				addr := fmt.Sprintf("vm.n%d", i)
				d.Event(runtime.Event{Kind: runtime.EventStart, Addr: addr, Action: runtime.Create})
				for j := 0; j < 30; j++ {
					d.Event(runtime.Event{Kind: runtime.EventProgress, Addr: addr, Action: runtime.Create, Msg: "waiting for ssh"})
					time.Sleep(time.Millisecond)
				}
				d.Event(runtime.Event{Kind: runtime.EventDone, Addr: addr, Action: runtime.Create, Elapsed: time.Second})
			}(i)
		}
		wg.Wait()
		d.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the terminal display deadlocked")
	}
	for i := 0; i < 20; i++ {
		if !strings.Contains(out.String(), fmt.Sprintf("✓ vm.n%d: created (1s)", i)) {
			t.Fatalf("line for vm.n%d missing in %q", i, out.String()[:min(400, len(out.String()))])
		}
	}
}

func TestPlainDisplay(t *testing.T) {
	var b, e strings.Builder
	d := &plainDisplay{w: &b, errw: &e}
	d.Event(runtime.Event{Kind: runtime.EventStart, Addr: "vm.m1", Action: runtime.Create})
	d.Event(runtime.Event{Kind: runtime.EventProgress, Addr: "vm.m1", Msg: "booting", Elapsed: 1500 * time.Millisecond})
	d.Event(runtime.Event{Kind: runtime.EventWarning, Addr: "vm.m1", Msg: "the image is old\nrebuild it"})
	d.Event(runtime.Event{Kind: runtime.EventFailed, Addr: "vm.m1", Action: runtime.Create, Elapsed: 2 * time.Second})
	d.Event(runtime.Event{Kind: runtime.EventSkipped, Addr: "node.copy.m1-certs", Action: runtime.Create})
	want := "vm.m1: creating...\nvm.m1: booting [1.5s]\nvm.m1: create failed after 2s\nnode.copy.m1-certs: not created (an earlier step failed)\n"
	if b.String() != want {
		t.Fatalf("got\n%s", b.String())
	}
	// A provider's warning goes to standard error, its detail indented.
	if e.String() != "Warning: vm.m1: the image is old\n  rebuild it\n" {
		t.Fatalf("warning: %q", e.String())
	}
	_ = io.Discard
}
