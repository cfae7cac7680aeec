package main

import (
	"context"
	"strings"
	"testing"

	"github.com/khw-dev/khw/internal/labtest"
	"github.com/khw-dev/khw/plugins/sdk"
)

// dockerd that is not there: no socket, or a socket file nobody listens on
// (dockerd died without removing it). The message names the socket and
// the hint says to start dockerd.
func TestDockerdDownIsAClearError(t *testing.T) {
	stale := labtest.StaleSocket(t)
	for sock, why := range map[string]string{"/nonexistent/docker.sock": "(dial unix /nonexistent/docker.sock: connect: no such file", stale: "(nothing answers there)"} {
		t.Setenv("DOCKER_HOST", "unix://"+sock)
		_, err := newDocker().client(context.Background())
		if err == nil || !strings.Contains(err.Error(), "dockerd is not running at unix://"+sock+" "+why) ||
			!strings.Contains(sdk.HintOf(err), "start it") || !strings.Contains(sdk.HintOf(err), "DOCKER_HOST") {
			t.Fatalf("err = %v, hint %q", err, sdk.HintOf(err))
		}
	}
}
