package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/startest"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// fake is an in-process provider for runtime tests: fake.thing resources
// "exist" in a map; fake.fixed ones are replaced on change.
type fake struct {
	mu      sync.Mutex
	world   map[string]string // address -> value
	calls   []string
	fail    map[string]bool
	hint    string          // the next step a failure names, if any
	noRead  map[string]bool // Read fails for these
	warn    string          // when set, Read and Apply warn with it
	running int
	peak    int
	gate    chan struct{} // when set, Apply waits on it
}

func newFake() *fake {
	return &fake{world: map[string]string{}, fail: map[string]bool{}, noRead: map[string]bool{}}
}

func (f *fake) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.warn != "" {
		sdk.Warnf(ctx, "%s", f.warn)
	}
	if f.noRead[req.Resource.Address] {
		return nil, sdk.WithHint(errors.New("the daemon is not running"), f.hint)
	}
	v, ok := f.world[req.Resource.Address]
	var in struct{ Value string }
	_ = json.Unmarshal(req.Resource.Config, &in)
	drift := ""
	if ok && v != in.Value {
		drift = "value is " + v
	}
	return &sdk.ReadResponse{Exists: ok, Drift: drift, Outputs: req.PriorOutputs}, nil
}

func (f *fake) Apply(ctx context.Context, req *sdk.ApplyRequest, _ sdk.Progress) (*sdk.ApplyResponse, error) {
	if f.warn != "" {
		sdk.Warnf(ctx, "%s", f.warn)
	}
	f.mu.Lock()
	f.running++
	f.peak = max(f.peak, f.running)
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running--
	action := "create"
	if len(req.PriorOutputs) > 0 {
		action = "update"
	}
	f.calls = append(f.calls, action+" "+req.Resource.Address)
	if f.fail[req.Resource.Address] {
		return nil, sdk.WithHint(errors.New("it broke"), f.hint)
	}
	var in struct{ Value string }
	_ = json.Unmarshal(req.Resource.Config, &in)
	f.world[req.Resource.Address] = in.Value
	return &sdk.ApplyResponse{Outputs: sdk.Outputs(map[string]string{"value": in.Value})}, nil
}

func (f *fake) Delete(_ context.Context, req *sdk.DeleteRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+req.Resource.Address)
	delete(f.world, req.Resource.Address)
	return nil
}

func (f *fake) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]string(nil), f.calls...)
	f.calls = nil
	return out
}

// thing(name, value, deps = [], inplace = True, after = [])
func thingBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, value string
	deps := starlark.NewList(nil)
	after := starlark.NewList(nil)
	inplace := true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "value", &value, "deps?", &deps, "inplace?", &inplace, "after?", &after); err != nil {
		return nil, err
	}
	typ := "fake.thing"
	if !inplace {
		typ = "fake.fixed"
	}
	r := &runtime.Resource{Type: typ, Name: name, Inputs: map[string]any{"value": value}, Deps: runtime.Refs(deps), After: runtime.Refs(after),
		Show: []runtime.Field{{Key: "value", Value: value}}}
	if err := runtime.Declare(thread, r); err != nil {
		return nil, err
	}
	return &runtime.Handle{Res: r}, nil
}

// env is a recipe root with the fake builtin (startest's fixture), a
// workdir, and the fake provider behind it.
type env struct {
	*startest.Fixture
	t       *testing.T
	f       *fake
	workdir string
	store   *runtime.Store
}

func newEnv(t *testing.T) *env {
	f := newFake()
	reg := runtime.NewRegistry()
	reg.Add(&runtime.Builtin{Module: "fake", Name: "thing", Fn: thingBuiltin})
	reg.AddType(runtime.TypeSpec{Type: "fake.thing", Handler: f, UpdateInPlace: true})
	reg.AddType(runtime.TypeSpec{Type: "fake.fixed", Handler: f})
	return &env{Fixture: startest.NewFixture(t, reg), t: t, f: f, workdir: t.TempDir()}
}

// eval evaluates src as main.star.
func (e *env) eval(src string) (*runtime.Recipe, error) {
	e.File("main.star", src)
	return e.Eval("main.star", nil)
}

type providers struct{ p sdk.Provider }

func (p providers) Provider(_ context.Context, name string) (sdk.Provider, error) {
	if name == runtime.InProcess {
		return p.p, nil
	}
	return nil, fmt.Errorf("plugin %q is not installed", name)
}

func (e *env) plan(src string, targets ...string) *runtime.Plan {
	e.t.Helper()
	p, err := e.planErr(src, targets...)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) planErr(src string, targets ...string) (*runtime.Plan, error) {
	rec, err := e.eval(src)
	if err != nil {
		return nil, err
	}
	st, err := runtime.OpenStore(e.workdir)
	if err != nil {
		return nil, err
	}
	e.store = st
	pl := &runtime.Planner{Providers: providers{e.Registry().InProcess()}, Workdir: e.workdir, Refresh: true, Targets: targets}
	return pl.Plan(context.Background(), rec, st)
}

func (e *env) apply(p *runtime.Plan) error {
	ex := &runtime.Executor{Providers: providers{e.Registry().InProcess()}, Workdir: e.workdir, Store: e.store, Parallelism: 4}
	return ex.Apply(context.Background(), p)
}

// summary renders a plan as "action addr" lines, sorted, no-ops left out.
func summary(p *runtime.Plan) string {
	var out []string
	for _, c := range p.Changes {
		if c.Action != runtime.NoOp {
			out = append(out, string(c.Action)+" "+c.Addr)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
