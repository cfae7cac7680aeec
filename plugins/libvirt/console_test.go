package main

import (
	"errors"
	"testing"
)

func TestFinishWatcherSeesCloudInitsFinalMessage(t *testing.T) {
	w := &finishWatcher{found: make(chan struct{})}
	for _, chunk := range []string{"[  OK  ] Started ssh.service - OpenBSD Secure Shell server.\r\n", "Cloud-init v. 22.4.2 run", "ning 'modules:final'\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatalf("stopped early on %q: %v", chunk, err)
		}
	}
	select {
	case <-w.found:
		t.Fatal("found before the final message")
	default:
	}
	_, err := w.Write([]byte("Cloud-init v. 22.4.2 finished at Tue, 24 Nov 2026 03:40:01 +0000. Datasource DataSourceNoCloud.  Up 95.2 seconds\r\n"))
	if !errors.Is(err, errSeen) {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-w.found:
	default:
		t.Fatal("the final message was not seen")
	}
	if w.last() == "" {
		t.Fatal("no last line kept")
	}
}
