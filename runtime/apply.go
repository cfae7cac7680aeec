package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/khw-dev/khw/plugins/sdk"
)

// EventKind says what happened to a resource during apply.
type EventKind string

const (
	EventStart    EventKind = "start"
	EventProgress EventKind = "progress"
	EventDone     EventKind = "done"
	EventFailed   EventKind = "failed"
	EventSkipped  EventKind = "skipped"
	// EventWarning is a provider's WARNING diagnostic (Msg) about the
	// resource: it goes on, and the person should know.
	EventWarning EventKind = "warning"
)

// Event is one step of an apply, for the progress display.
type Event struct {
	Kind    EventKind
	Addr    string
	Action  Action
	Msg     string
	Elapsed time.Duration
	Err     error
}

// Executor carries out a plan.
type Executor struct {
	Providers   Providers
	Workdir     string
	Store       *Store
	Parallelism int
	OnEvent     func(Event)
}

// ResourceError is a failure of one resource, naming it and the recipe line
// that declared it (and, for a resource declared in a library, the recipe's
// own line that called into it), then what the provider said, then what to
// do about it when the provider knows:
//
//	vm.n1 (declared at recipes/hardway.star:93): libvirtd is not running at qemu:///system (...)
//	  hint: start it (systemctl start libvirtd), or point --set libvirt_uri at a running one
type ResourceError struct {
	Addr, Where, Provider string
	Err                   error
}

func (e *ResourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.Addr)
	if e.Where != "" {
		b.WriteString(" (declared at " + declaredAt(e.Where) + ")")
	}
	b.WriteString(": " + e.Err.Error())
	if h := sdk.HintOf(e.Err); h != "" {
		b.WriteString("\n  hint: " + h)
	}
	return b.String()
}

// declaredAt turns Resource.Where's "lib.star:9 (from recipe.star:12)" into
// "lib.star:9, called from recipe.star:12". A recorded resource's position
// (a deletion's) comes from the state as that string.
func declaredAt(where string) string {
	if pos, from, ok := strings.Cut(where, " (from "); ok {
		return pos + ", called from " + strings.TrimSuffix(from, ")")
	}
	return where
}

func (e *ResourceError) Unwrap() error { return e.Err }

// Apply runs every change of the plan: deletions first (dependents before
// what they depend on), then creations and updates in dependency order,
// independent ones in parallel. Each result is recorded in the state as it
// lands. A failure skips what depends on the failed resource; independent
// work goes on (one unreachable node does not stop the copies to the
// others). Cancelling the context starts nothing new; what runs finishes
// and is kept.
func (e *Executor) Apply(ctx context.Context, plan *Plan) error {
	var work []*Change
	for _, c := range plan.Changes {
		if c.Action != NoOp {
			work = append(work, c)
		}
	}
	if len(work) == 0 {
		return nil
	}
	par := e.Parallelism
	if par < 1 {
		par = 10
	}
	s := &schedule{e: e, work: work, waits: order(work), done: make([]chan struct{}, len(work)),
		failed: make([]bool, len(work)), sem: make(chan struct{}, par)}
	for i := range s.done {
		s.done[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for i := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.step(ctx, i)
		}()
	}
	wg.Wait()
	if len(s.errs) == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(s.errs...)
}

// order is the DAG: for each change, the changes it waits for. Deletions
// go first, a dependent's before what it depends on; then creations and
// updates, each after its own dependencies and what it is ordered after.
func order(work []*Change) [][]int {
	index := map[string]int{}
	for i, c := range work {
		index[c.Addr] = i
	}
	waits := make([][]int, len(work))
	var deletes []int
	for i, c := range work {
		if c.Action == Delete {
			for j, other := range work {
				if other.Action == Delete && other.Prior != nil && other.Prior.follows(c.Addr) {
					waits[i] = append(waits[i], j)
				}
			}
			deletes = append(deletes, i)
			continue
		}
		waits[i] = append(waits[i], deletes...)
		for _, d := range append(append([]string(nil), c.Res.Deps...), c.Res.After...) {
			if j, ok := index[d]; ok {
				waits[i] = append(waits[i], j)
			}
		}
	}
	return waits
}

// schedule runs one Apply's changes: each in its own goroutine, started
// when what it waits for is done, at most cap(sem) at once; a change whose
// wait failed, or a cancelled run, skips it.
type schedule struct {
	e     *Executor
	work  []*Change
	waits [][]int
	done  []chan struct{} // closed when change i has ended, however
	sem   chan struct{}

	mu     sync.Mutex
	failed []bool
	errs   []error
}

func (s *schedule) step(ctx context.Context, i int) {
	defer close(s.done[i])
	c := s.work[i]
	for _, j := range s.waits[i] {
		<-s.done[j]
	}
	acquired := false
	select {
	case s.sem <- struct{}{}:
		acquired = true
	case <-ctx.Done():
	}
	s.mu.Lock()
	blocked := ctx.Err() != nil
	for _, j := range s.waits[i] {
		blocked = blocked || s.failed[j]
	}
	if blocked {
		s.failed[i] = true
		s.mu.Unlock()
		if acquired {
			<-s.sem
		}
		s.e.emit(Event{Kind: EventSkipped, Addr: c.Addr, Action: c.Action})
		return
	}
	s.mu.Unlock()
	err := s.e.run(ctx, c)
	<-s.sem
	if err != nil {
		s.mu.Lock()
		s.failed[i] = true
		s.errs = append(s.errs, err)
		s.mu.Unlock()
	}
}

func (e *Executor) emit(ev Event) {
	if e.OnEvent != nil {
		e.OnEvent(ev)
	}
}

func (e *Executor) run(ctx context.Context, c *Change) (err error) {
	start := time.Now()
	e.emit(Event{Kind: EventStart, Addr: c.Addr, Action: c.Action})
	defer func() {
		if err != nil {
			err = &ResourceError{Addr: c.Addr, Where: c.Where(), Provider: c.Provider(), Err: err}
			e.emit(Event{Kind: EventFailed, Addr: c.Addr, Action: c.Action, Elapsed: time.Since(start), Err: err})
			return
		}
		e.emit(Event{Kind: EventDone, Addr: c.Addr, Action: c.Action, Elapsed: time.Since(start)})
	}()
	progress := func(msg string) {
		e.emit(Event{Kind: EventProgress, Addr: c.Addr, Action: c.Action, Msg: msg, Elapsed: time.Since(start)})
	}
	ctx = sdk.WithWarnings(ctx, func(msg string) {
		e.emit(Event{Kind: EventWarning, Addr: c.Addr, Action: c.Action, Msg: msg, Elapsed: time.Since(start)})
	})

	// A deletion, or the old half of a replacement: the recorded resource
	// goes (through its own provider: a VM moving from libvirt to docker
	// is deleted by libvirt), then the new one is created. So Apply only
	// ever creates or updates in place, and the protocol needs no action
	// to tell a provider which (sdk.ApplyRequest).
	if c.Action == Delete || (c.Action == Replace && c.Prior != nil) {
		prov, err := e.Providers.Provider(ctx, c.Prior.Provider)
		if err != nil {
			return err
		}
		if err := prov.Delete(ctx, &sdk.DeleteRequest{Resource: stateResource(c.Prior), PriorOutputs: c.Prior.Outputs, Workdir: e.Workdir}); err != nil {
			return err
		}
		if err := e.Store.Put(c.Addr, nil); err != nil {
			return fmt.Errorf("recording the deletion: %w", err)
		}
		if c.Action == Delete {
			return nil
		}
	}

	r := c.Res
	prov, err := e.Providers.Provider(ctx, r.Provider)
	if err != nil {
		return err
	}
	var priorOut json.RawMessage
	if cur := e.Store.Get(c.Addr); cur != nil {
		priorOut = cur.Outputs
	}
	deps := map[string]json.RawMessage{}
	digests := map[string]string{}
	for _, d := range r.Deps {
		ds := e.Store.Get(d)
		if ds == nil {
			return fmt.Errorf("%s, which it refers to, has not been applied", d)
		}
		deps[d] = ds.Outputs
		digests[d] = ds.Digest
	}
	resp, err := prov.Apply(ctx, &sdk.ApplyRequest{
		Resource: sdkResource(r), PriorOutputs: priorOut, Deps: deps, Workdir: e.Workdir,
	}, progress)
	if err != nil {
		return err
	}
	digest := resp.Digest
	if digest == "" {
		sum := sha256.Sum256(resp.Outputs)
		digest = hex.EncodeToString(sum[:])
	}
	rs := &ResourceState{
		Type: r.Type, Name: r.Name, Provider: r.Provider, Pos: r.Where(), Hash: r.Hash(),
		Inputs: r.Inputs, Settings: r.Settings, Outputs: resp.Outputs, Digest: digest, Deps: digests,
		After: r.After,
	}
	if len(rs.Deps) == 0 {
		rs.Deps = nil
	}
	if err := e.Store.Put(c.Addr, rs); err != nil {
		return fmt.Errorf("recording the result: %w", err)
	}
	return nil
}
