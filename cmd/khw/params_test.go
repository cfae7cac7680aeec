package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestParametersAreRecorded: a run records the parameters it was given; a
// later plan without them uses the recorded values, says so and plans no
// change; a values file and --set change one and the plan shows the
// change; --reset-params goes back to the defaults; khw plan lists every
// parameter with its value, where it came from and its doc; a whole
// destroy forgets them.
func TestParametersAreRecorded(t *testing.T) {
	work := t.TempDir()
	if r := runLocal(t, work, "--set", "extra_sans=api.lab.internal"); r.code != 0 {
		t.Fatal(r.all())
	}
	plan := func(extra ...string) result {
		t.Helper()
		r := khw(t, append(append([]string{"plan", "recipes/hardway.star", "--workdir", work}, localTargets...), extra...)...)
		if r.code != 0 {
			t.Fatal(r.all())
		}
		return r
	}
	r := plan()
	if !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("a plan without the --set of the run before plans changes:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "Using the parameters the last run recorded in "+filepath.Join(work, ".khw", "state.json")+": extra_sans=api.lab.internal") {
		t.Errorf("the plan does not say which recorded values it used:\n%s", r.stdout)
	}
	for _, want := range []string{
		`(?m)^  extra_sans +=  ?\["api.lab.internal"\] +recorded +more SANs for the API server certificate$`,
		`(?m)^  hypervisor +=  ?"libvirt" +default +who makes the nodes: `,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("khw plan's parameter list lacks %s:\n%s", want, r.stdout)
		}
	}

	// -o json carries the same, in khw's own schema (docs/output.md).
	var pj struct {
		Version    int `json:"khw_plan_version"`
		Parameters []struct {
			Name, From string
			Value      any
			Recorded   *string
		}
		Counts map[string]int
	}
	if err := json.Unmarshal([]byte(plan("-o", "json").stdout), &pj); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pj.Parameters {
		if p.Name == "extra_sans" {
			found = p.From == "recorded" && p.Recorded != nil && *p.Recorded == "api.lab.internal" && fmt.Sprint(p.Value) == "[api.lab.internal]"
		}
	}
	if pj.Version != 1 || !found || len(pj.Parameters) < 20 || pj.Counts["add"] != 0 {
		t.Errorf("plan -o json: version %d, %d parameters, extra_sans as recorded %v, counts %v", pj.Version, len(pj.Parameters), found, pj.Counts)
	}

	// A values file: its value wins over the recorded one, and the plan
	// names both.
	vals := filepath.Join(t.TempDir(), "lab.values")
	if err := os.WriteFile(vals, []byte("# the lab's SANs\nextra_sans = api.lab.internal,k8s.lab.internal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = plan("--values", vals)
	for _, want := range []string{
		"Parameters changed since the last run (recorded when this run applies):\n  extra_sans: api.lab.internal -> api.lab.internal,k8s.lab.internal",
		vals + ":2", "-/+ pki.cert.kubernetes", "1 to add, 0 to change, 1 to destroy",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("a plan with a values file lacks %q:\n%s", want, r.stdout)
		}
	}
	// --set wins over the values file: back to the recorded value.
	if r = plan("--values", vals, "--set", "extra_sans=api.lab.internal"); !strings.Contains(r.stdout, "No changes.") {
		t.Errorf("--set does not win over the values file:\n%s", r.stdout)
	}
	// A bad line names the file and the line, before anything is done.
	if err := os.WriteFile(vals, []byte("extra_sans = a\nnot a pair\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := khw(t, append([]string{"run", "recipes/hardway.star", "--workdir", work, "--values", vals}, localTargets...)...); r.code != 1 || !strings.Contains(r.stderr, vals+":2: want NAME=VALUE") {
		t.Errorf("a bad values file: exit %d\n%s", r.code, r.all())
	}
	// --reset-params: the defaults again, so the certificate goes back.
	if r = plan("--reset-params"); !strings.Contains(r.stdout, "-/+ pki.cert.kubernetes") || strings.Contains(r.stdout, "Using the parameters") {
		t.Errorf("--reset-params still uses the recorded values:\n%s", r.stdout)
	}
	// A whole destroy forgets them.
	if r := khw(t, "destroy", "recipes/hardway.star", "--workdir", work); r.code != 0 {
		t.Fatal(r.all())
	}
	b, err := os.ReadFile(filepath.Join(work, ".khw", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "extra_sans") {
		t.Errorf("the state still records the parameters after a whole destroy:\n%s", b)
	}
}
