package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The entrypoint is shell that only a container runs: at least it parses.
func TestEntrypointParses(t *testing.T) {
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = strings.NewReader(string(entrypoint))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash -n entrypoint.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"exec /sbin/init", "mount --make-rshared /", "KHW_USER"} {
		if !strings.Contains(string(entrypoint), want) {
			t.Errorf("the entrypoint lacks %q", want)
		}
	}
}

// column and runningJobs pick the unit names out of systemctl's plain
// listings, which the boot error quotes.
func TestSystemctlListings(t *testing.T) {
	if got := column(""); got != "none" {
		t.Errorf("column of nothing = %q", got)
	}
	if got := column("boom.service loaded failed failed boom.service\nx.mount loaded failed failed X\n"); got != "boom.service, x.mount" {
		t.Errorf("column = %q", got)
	}
	jobs := "77  ssh.service                          start waiting\n84  networking.service                   start running\n2   multi-user.target                    start waiting\n"
	if got, want := runningJobs(jobs), "jobs running: networking.service (2 more waiting)"; got != want {
		t.Errorf("runningJobs = %q, want %q", got, want)
	}
	if got, want := runningJobs(""), "jobs running: none (0 more waiting)"; got != want {
		t.Errorf("runningJobs of nothing = %q, want %q", got, want)
	}
}
