package runtime_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

const chain = `
a = fake.thing("a", "1")
b = fake.thing("b", "1", deps = [a])
c = fake.thing("c", "1", deps = [b], inplace = False)
d = fake.thing("d", "1")
`

func TestCreateThenNoChanges(t *testing.T) {
	e := newEnv(t)
	p := e.plan(chain)
	if got := summary(p); got != "create fake.fixed.c\ncreate fake.thing.a\ncreate fake.thing.b\ncreate fake.thing.d" {
		t.Fatalf("plan:\n%s", got)
	}
	if err := e.apply(p); err != nil {
		t.Fatal(err)
	}
	p = e.plan(chain)
	if p.HasChanges() {
		t.Fatalf("second plan has changes:\n%s", summary(p))
	}
	var buf bytes.Buffer
	runtime.PrintPlan(&buf, p)
	if !strings.Contains(buf.String(), "No changes.") {
		t.Fatalf("printed %q", buf.String())
	}
}

func TestChangeCascadesToDependentsOnly(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(chain, `fake.thing("a", "1")`, `fake.thing("a", "2")`, 1)
	p := e.plan(changed)
	// a changes in place; b depends on a (in place); c depends on b and can
	// only be replaced; d is independent.
	if got := summary(p); got != "replace fake.fixed.c\nupdate fake.thing.a\nupdate fake.thing.b" {
		t.Fatalf("plan:\n%s", got)
	}
	add, change, destroy := p.Counts()
	if add != 1 || change != 2 || destroy != 1 {
		t.Fatalf("counts %d %d %d", add, change, destroy)
	}
	e.f.took()
	if err := e.apply(p); err != nil {
		t.Fatal(err)
	}
	// In place: Apply with what was recorded. A replacement: the recorded
	// resource is deleted, then created with nothing recorded.
	if got := strings.Join(e.f.took(), ","); got != "update fake.thing.a,update fake.thing.b,delete fake.fixed.c,create fake.fixed.c" {
		t.Fatalf("applied: %s", got)
	}
	if e.plan(changed).HasChanges() {
		t.Fatal("changes after applying the change")
	}
}

func TestDependencyRemadeElsewhere(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(chain, `fake.thing("a", "1")`, `fake.thing("a", "2")`, 1)
	// Apply only a: b now refers to an a that was re-made after it.
	if err := e.apply(e.plan(changed, "fake.thing.a")); err != nil {
		t.Fatal(err)
	}
	p := e.plan(changed)
	if got := summary(p); got != "replace fake.fixed.c\nupdate fake.thing.b" {
		t.Fatalf("plan:\n%s", got)
	}
	for _, c := range p.Changes {
		if c.Addr == "fake.thing.b" && !strings.Contains(strings.Join(c.Reasons, ";"), "fake.thing.a was re-made since") {
			t.Fatalf("reasons %q", c.Reasons)
		}
	}
}

// drifted is an env whose chain was applied, then fake.thing.d changed
// and fake.thing.a deleted behind khw's back.
func drifted(t *testing.T) *env {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	e.f.world["fake.thing.d"] = "tampered"
	delete(e.f.world, "fake.thing.a")
	return e
}

func TestDriftAndGone(t *testing.T) {
	e := drifted(t)
	p := e.plan(chain)
	if got := summary(p); got != "create fake.thing.a\nreplace fake.fixed.c\nupdate fake.thing.b\nupdate fake.thing.d" {
		t.Fatalf("plan:\n%s", got)
	}
}

func TestOrphansAreDeletedDependentsFirst(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	e.f.took()
	p := e.plan(`d = fake.thing("d", "1")`)
	if got := summary(p); got != "delete fake.fixed.c\ndelete fake.thing.a\ndelete fake.thing.b" {
		t.Fatalf("plan:\n%s", got)
	}
	if err := e.apply(p); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.f.took(), ","); got != "delete fake.fixed.c,delete fake.thing.b,delete fake.thing.a" {
		t.Fatalf("order: %s", got)
	}
}

func TestDestroyWithTargetTakesDependents(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	pl := &runtime.Planner{Targets: []string{"fake.thing.b"}}
	p, err := pl.PlanDestroy(e.store)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(p); got != "delete fake.fixed.c\ndelete fake.thing.b" {
		t.Fatalf("plan:\n%s", got)
	}
	if p.Changes[0].Addr != "fake.fixed.c" {
		t.Fatal("dependent not first")
	}
}

func TestTargetsTakeTheirDependencies(t *testing.T) {
	e := newEnv(t)
	p := e.plan(chain, "fake.fixed")
	if got := summary(p); got != "create fake.fixed.c\ncreate fake.thing.a\ncreate fake.thing.b" {
		t.Fatalf("plan:\n%s", got)
	}
	if _, err := e.planErr(chain, "nothing.here"); err == nil || !strings.Contains(err.Error(), "--target nothing.here matches no resource") {
		t.Fatalf("err = %v", err)
	}
}

func TestFailureStopsDependentsKeepsTheRest(t *testing.T) {
	e := newEnv(t)
	e.f.fail["fake.thing.a"] = true
	p := e.plan(chain)
	err := e.apply(p)
	var re *runtime.ResourceError
	if err == nil || !strings.Contains(err.Error(), "fake.thing.a (") || !strings.Contains(err.Error(), "main.star:2") {
		t.Fatalf("err = %v", err)
	}
	_ = re
	for _, addr := range []string{"fake.thing.b", "fake.fixed.c"} {
		if e.store.Get(addr) != nil {
			t.Fatalf("%s applied after its dependency failed", addr)
		}
	}
	// d is independent of a: it went ahead.
	if e.store.Get("fake.thing.d") == nil {
		t.Fatal("an independent resource was not applied after another failed")
	}
	delete(e.f.fail, "fake.thing.a")
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	if e.plan(chain).HasChanges() {
		t.Fatal("re-run did not finish the job")
	}
}

func TestIndependentResourcesRunInParallel(t *testing.T) {
	e := newEnv(t)
	src := ""
	for _, n := range []string{"a", "b", "c", "d"} {
		src += `fake.thing("` + n + `", "1")` + "\n"
	}
	e.f.gate = make(chan struct{})
	p := e.plan(src)
	done := make(chan error)
	go func() { done <- e.apply(p) }()
	// All four must be in Apply at once before any may finish.
	for {
		e.f.mu.Lock()
		n := e.f.running
		e.f.mu.Unlock()
		if n == 4 {
			break
		}
	}
	close(e.f.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStateIsWrittenAtomicallyAndLocked(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(e.workdir, ".khw", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := runtime.ParseState(b)
	if err != nil || len(st.Resources) != 4 {
		t.Fatalf("state: %v %d", err, len(st.Resources))
	}
	matches, _ := filepath.Glob(filepath.Join(e.workdir, ".khw", ".state.json.tmp-*"))
	if len(matches) > 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
	a, _ := runtime.OpenStore(e.workdir)
	if err := a.Lock(); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	b2, _ := runtime.OpenStore(e.workdir)
	err = b2.Lock()
	if err == nil || !strings.Contains(err.Error(), "is locked by another khw run") {
		t.Fatalf("second lock: %v", err)
	}
}

func TestPlanJSONHasNoSecretsAndAllChanges(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	if err := runtime.WritePlanJSON(&buf, e.plan(chain), nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"counts"`, `"khw_plan_version": 1`, `"add": 4`, `"address": "fake.fixed.c"`, `"depends_on"`} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("plan JSON lacks %s:\n%s", want, buf.String())
		}
	}
}

// A provider's error names the resource, the line that declared it (for a
// resource declared in a library, the recipe's own line that called into
// it) and, on a line of its own, the provider's hint; so does a failed
// read-back, as a warning.
func TestProviderErrorsNameTheDeclaringLineAndTheHint(t *testing.T) {
	e := newEnv(t)
	e.File("lib.star", "def make(name):\n    return fake.thing(name, \"1\")\n")
	src := "load(\"lib.star\", \"make\")\n\nmake(\"a\")\nfake.thing(\"b\", \"1\")\n"
	e.f.fail["fake.thing.a"] = true
	e.f.hint = "start the daemon"
	err := e.apply(e.plan(src))
	want := "fake.thing.a (declared at " + filepath.Join(e.Root(), "lib.star") + ":2, called from " + filepath.Join(e.Root(), "main.star") +
		":3): it broke\n  hint: start the daemon"
	if err == nil || err.Error() != want {
		t.Fatalf("err =\n%v\nwant\n%s", err, want)
	}

	e.f.noRead["fake.thing.b"] = true
	p := e.plan(src)
	want = "fake.thing.b (declared at " + filepath.Join(e.Root(), "main.star") + ":4): could not read it back, so the recorded state is trusted: " +
		"the daemon is not running\n  hint: start the daemon"
	if len(p.Warnings) != 1 || p.Warnings[0] != want {
		t.Fatalf("warnings = %q\nwant %q", p.Warnings, want)
	}
}

// A provider's warnings reach the person: in the plan, naming the
// resource, and as events of the apply.
func TestProviderWarningsAreShown(t *testing.T) {
	e := newEnv(t)
	e.f.warn = "the disk is nearly full"
	p := e.plan(`fake.thing("a", "1")`)
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings before anything was read: %q", p.Warnings)
	}
	var mu sync.Mutex
	var events []string
	ex := &runtime.Executor{Providers: providers{e.Registry().InProcess()}, Workdir: e.workdir, Store: e.store, Parallelism: 4,
		OnEvent: func(ev runtime.Event) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Kind == runtime.EventWarning {
				events = append(events, ev.Addr+": "+ev.Msg)
			}
		}}
	if err := ex.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "fake.thing.a: the disk is nearly full" {
		t.Fatalf("apply warnings: %q", events)
	}
	p = e.plan(`fake.thing("a", "1")`)
	want := "provider khw, reading back: fake.thing.a: the disk is nearly full"
	if len(p.Warnings) != 1 || p.Warnings[0] != want {
		t.Fatalf("plan warnings = %q, want %q", p.Warnings, want)
	}
	var out strings.Builder
	runtime.PrintPlan(&out, p)
	if !strings.HasPrefix(out.String(), "Warning: "+want+"\n") {
		t.Fatalf("plan output:\n%s", out.String())
	}
}

func TestProviderMissingNamesPluginAndResource(t *testing.T) {
	e := newEnv(t)
	p := e.plan(`fake.thing("a", "1")`)
	p.Changes[0].Res.Provider = "libvirt"
	err := e.apply(p)
	if err == nil || !strings.Contains(err.Error(), `fake.thing.a (`) || !strings.Contains(err.Error(), `plugin "libvirt" is not installed`) {
		t.Fatalf("err = %v", err)
	}
	_ = context.Background
}

// after orders without cascading: the scheduler starts after the API
// server, yet a new API server flag redoes the API server alone; a
// deletion goes the other way.
func TestAfterOrdersWithoutRedoing(t *testing.T) {
	const src = `
api = fake.thing("apiserver", "1")
fake.thing("scheduler", "1", after = [api])
`
	e := newEnv(t)
	if err := e.apply(e.plan(src)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.f.took(), ","); got != "create fake.thing.apiserver,create fake.thing.scheduler" {
		t.Fatalf("applied in the order %s", got)
	}
	changed := strings.Replace(src, `"apiserver", "1"`, `"apiserver", "2"`, 1)
	p := e.plan(changed)
	if got := summary(p); got != "update fake.thing.apiserver" {
		t.Fatalf("plan:\n%s", got)
	}
	if err := e.apply(p); err != nil {
		t.Fatal(err)
	}
	if e.plan(changed).HasChanges() {
		t.Fatal("changes after applying the change")
	}
	// Both leave the recipe: the scheduler is deleted before the apiserver.
	e.f.took()
	if err := e.apply(e.plan(`fake.thing("other", "1")`)); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(e.f.took(), ",")
	if !strings.Contains(got, "delete fake.thing.scheduler,delete fake.thing.apiserver") {
		t.Fatalf("deleted in the order %s", got)
	}
}

// A changed text input (a unit, a config file) is shown as the lines that
// go and come, a map of texts by key.
func TestTextDiffShowsTheChangedLines(t *testing.T) {
	e := newEnv(t)
	const unit = "[Service]\nExecStart=/usr/local/bin/kube-apiserver \\\n  --a=1 \\\n  --v=2\n"
	if err := e.apply(e.plan(`fake.thing("api", r"""` + unit + `""")`)); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(unit, "--a=1", "--a=1 \\\n  --audit-log-maxage=7", 1)
	p := e.plan(`fake.thing("api", r"""` + changed + `""")`)
	var buf bytes.Buffer
	runtime.PrintPlan(&buf, p)
	if !strings.Contains(buf.String(), "\n        ~ value: + --audit-log-maxage=7 \\\n\n") || strings.Contains(buf.String(), "~ value: -") {
		t.Fatalf("plan:\n%s", buf.String())
	}
}

// batching is a provider that reads in batches (sdk.BatchReader) and
// records each batch's size.
type batching struct {
	sdk.Provider
	mu      sync.Mutex
	batches []int
}

func (b *batching) ReadMany(ctx context.Context, reqs []*sdk.ReadRequest) ([]sdk.ReadResult, error) {
	b.mu.Lock()
	b.batches = append(b.batches, len(reqs))
	b.mu.Unlock()
	return sdk.ReadEach(ctx, b.Provider, reqs), nil
}

type batchingProviders struct{ b *batching }

func (p batchingProviders) Provider(context.Context, string) (sdk.Provider, error) { return p.b, nil }

// TestRefreshReadsAProvidersResourcesInOneBatch: a provider that reads in
// batches is asked once for all its recorded resources, and drift and
// deletion found in the batch plan as they do one by one.
func TestRefreshReadsAProvidersResourcesInOneBatch(t *testing.T) {
	e := drifted(t)
	rec, err := e.eval(chain)
	if err != nil {
		t.Fatal(err)
	}
	b := &batching{Provider: e.Registry().InProcess()}
	pl := &runtime.Planner{Providers: batchingProviders{b}, Workdir: e.workdir, Refresh: true}
	p, err := pl.Plan(context.Background(), rec, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(p); got != "create fake.thing.a\nreplace fake.fixed.c\nupdate fake.thing.b\nupdate fake.thing.d" {
		t.Fatalf("plan:\n%s", got)
	}
	if len(b.batches) != 1 || b.batches[0] != 4 {
		t.Errorf("batches of %v, want one of 4", b.batches)
	}
}
