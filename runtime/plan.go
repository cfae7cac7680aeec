package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/khw-dev/khw/plugins/sdk"
)

// Action is what a plan does to one resource.
type Action string

const (
	NoOp    Action = "no-op"
	Create  Action = "create"
	Update  Action = "update"
	Replace Action = "replace"
	Delete  Action = "delete"
)

// Providers hands out the provider of a name: InProcess or a plugin.
type Providers interface {
	Provider(ctx context.Context, name string) (sdk.Provider, error)
}

// Change is the plan for one resource.
type Change struct {
	Addr    string
	Action  Action
	Res     *Resource      // desired; nil for a delete
	Prior   *ResourceState // recorded; nil for a create
	Reasons []string
	// Diff shows, for inputs that are texts (a unit, a config file), the
	// lines that go and come: "unit: + --audit-log-maxage=7 \".
	Diff []string
}

// Type is the resource's type.
func (c *Change) Type() string {
	if c.Res != nil {
		return c.Res.Type
	}
	return c.Prior.Type
}

// Provider is the provider that carries the change out.
func (c *Change) Provider() string {
	if c.Res != nil {
		return c.Res.Provider
	}
	return c.Prior.Provider
}

// Where is the recipe position behind the change.
func (c *Change) Where() string {
	if c.Res != nil {
		return c.Res.Where()
	}
	return c.Prior.Pos
}

// Plan is every change, creations and updates in dependency order and
// deletions after them, dependents first.
type Plan struct {
	Changes []*Change
	// Warnings are what the planner could not find out (a read-back that
	// failed) and the providers' WARNING diagnostics, each naming its
	// resource or provider.
	Warnings []string
	Destroy  bool

	mu sync.Mutex // guards Warnings while planning
}

func (p *Plan) warn(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Warnings = append(p.Warnings, msg)
}

// resourceWarning is a warning about one resource, in the form of its
// errors: "ADDR (declared at FILE:LINE): MESSAGE".
func resourceWarning(r *Resource, err error) string {
	return (&ResourceError{Addr: r.Addr(), Where: r.Where(), Provider: r.Provider, Err: err}).Error()
}

// warnAbout returns ctx with a sink that adds the providers' warnings about
// r to the plan.
func (p *Plan) warnAbout(ctx context.Context, r *Resource) context.Context {
	return sdk.WithWarnings(ctx, func(msg string) { p.warn(resourceWarning(r, errors.New(msg))) })
}

// Counts returns how many resources the plan adds, changes and destroys
// (a replacement counts as one added and one destroyed).
func (p *Plan) Counts() (add, change, destroy int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			add++
		case Update:
			change++
		case Replace:
			add++
			destroy++
		case Delete:
			destroy++
		}
	}
	return
}

// HasChanges is true when applying the plan would change anything.
func (p *Plan) HasChanges() bool {
	a, c, d := p.Counts()
	return a+c+d > 0
}

// Planner compares a recipe with the recorded state and the world.
type Planner struct {
	Providers Providers
	Workdir   string
	// Refresh asks providers what the world holds (drift, deleted VMs)
	// instead of trusting the state alone.
	Refresh bool
	// Targets limit the plan to resources whose address starts with one of
	// them, and what those depend on.
	Targets []string

	mu      sync.Mutex
	schemas map[string]*schemaEntry // by provider, as updatesInPlace fetched them
}

// Plan computes the changes that bring the world to the recipe.
func (pl *Planner) Plan(ctx context.Context, recipe *Recipe, store *Store) (*Plan, error) {
	selected, err := pl.selectTargets(recipe, store)
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	reads := pl.refresh(ctx, recipe, store, selected, plan)

	byAddr := map[string]*Change{}
	for _, r := range recipe.Resources {
		addr := r.Addr()
		if !selected[addr] {
			continue
		}
		c := &Change{Addr: addr, Res: r, Prior: store.Get(addr), Action: NoOp}
		pl.decide(ctx, c, byAddr, store, reads[addr], plan)
		byAddr[addr] = c
		plan.Changes = append(plan.Changes, c)
	}
	plan.Changes = append(plan.Changes, pl.orphans(recipe, store)...)
	return plan, nil
}

func (pl *Planner) decide(ctx context.Context, c *Change, planned map[string]*Change, store *Store, read *readResult, plan *Plan) {
	r, prior := c.Res, c.Prior
	if prior == nil {
		c.Action = Create
		return
	}
	// changeAction is ~ or -/+ by the rule of the type in its provider's
	// schema, asked once and only when something changes: a plan with no
	// changes launches no plugin for this.
	var inPlace *bool
	changeAction := func() Action {
		if inPlace == nil {
			ok, err := pl.updatesInPlace(ctx, r)
			if err != nil {
				plan.warn(resourceWarning(r, fmt.Errorf("could not learn from its provider whether it updates in place, so the change is planned as a replacement: %w", err)))
			}
			inPlace = &ok
		}
		if *inPlace {
			return Update
		}
		return Replace
	}
	if prior.Provider != r.Provider {
		c.Action, c.Reasons = Replace, []string{fmt.Sprintf("provider changes from %s to %s", prior.Provider, r.Provider)}
		return
	}
	if prior.Hash != r.Hash() {
		c.Action = changeAction()
		keys := changedInputs(prior.Inputs, r.Inputs)
		c.Reasons = append(c.Reasons, "inputs change: "+strings.Join(keys, ", "))
		for _, k := range keys {
			c.Diff = append(c.Diff, textDiff(k, prior.Inputs[k], r.Inputs[k])...)
		}
		if c.Action == Update {
			prov, err := pl.Providers.Provider(ctx, r.Provider)
			var resp *sdk.PlanResponse
			if err == nil {
				resp, err = prov.Plan(plan.warnAbout(ctx, r), &sdk.PlanRequest{Resource: sdkResource(r), PriorConfig: mustJSON(prior.Inputs), PriorOutputs: prior.Outputs, Workdir: pl.Workdir})
			}
			switch {
			case err != nil:
				plan.warn(resourceWarning(r, fmt.Errorf("could not ask whether the change needs a replacement, so it is planned in place: %w", err)))
			case resp.RequiresReplace:
				c.Action = Replace
			}
		}
		return
	}
	for _, d := range r.Deps {
		if dc := planned[d]; dc != nil && dc.Action != NoOp {
			c.Action = changeAction()
			c.Reasons = append(c.Reasons, fmt.Sprintf("%s changes", d))
		} else if ds := store.Get(d); ds != nil && ds.Digest != prior.Deps[d] {
			c.Action = changeAction()
			c.Reasons = append(c.Reasons, fmt.Sprintf("%s was re-made since", d))
		}
	}
	if c.Action != NoOp {
		return
	}
	if read == nil {
		return
	}
	switch {
	case read.err != nil:
		plan.warn(resourceWarning(r, fmt.Errorf("could not read it back, so the recorded state is trusted: %w", read.err)))
	case !read.resp.Exists:
		c.Action, c.Reasons = Create, []string{"gone from the world"}
		c.Prior = nil
	case read.resp.Drift != "":
		c.Action, c.Reasons = changeAction(), []string{"drift: " + read.resp.Drift}
	}
}

type readResult struct {
	resp *sdk.ReadResponse
	err  error
}

// refresh reads back every selected, recorded resource: all of one
// provider's in one batch (sdk.ReadAll), so that a provider can share round
// trips between them, and the providers in parallel. The providers'
// warnings go to the plan.
func (pl *Planner) refresh(ctx context.Context, recipe *Recipe, store *Store, selected map[string]bool, plan *Plan) map[string]*readResult {
	out := map[string]*readResult{}
	if !pl.Refresh {
		return out
	}
	type batch struct {
		addrs []string
		reqs  []*sdk.ReadRequest
	}
	batches := map[string]*batch{}
	var names []string
	for _, r := range recipe.Resources {
		addr := r.Addr()
		prior := store.Get(addr)
		if !selected[addr] || prior == nil || prior.Provider != r.Provider {
			continue
		}
		b := batches[prior.Provider]
		if b == nil {
			b = &batch{}
			batches[prior.Provider] = b
			names = append(names, prior.Provider)
		}
		b.addrs = append(b.addrs, addr)
		b.reqs = append(b.reqs, &sdk.ReadRequest{Resource: stateResource(prior), PriorOutputs: prior.Outputs, Workdir: pl.Workdir})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		b := batches[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var results []sdk.ReadResult
			bctx := sdk.WithWarnings(ctx, func(msg string) { plan.warn(fmt.Sprintf("provider %s, reading back: %s", name, msg)) })
			prov, err := pl.Providers.Provider(bctx, name)
			if err == nil {
				results, err = sdk.ReadAll(bctx, prov, b.reqs)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, addr := range b.addrs {
				if err != nil {
					out[addr] = &readResult{err: err}
				} else {
					out[addr] = &readResult{resp: results[i].Response, err: results[i].Err}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// orphans are recorded resources the recipe no longer declares.
func (pl *Planner) orphans(recipe *Recipe, store *Store) []*Change {
	var gone []*ResourceState
	for _, addr := range store.Addrs() {
		if recipe.Resource(addr) == nil && pl.matches(addr) {
			gone = append(gone, store.Get(addr))
		}
	}
	return deleteOrder(gone, "no longer in the recipe")
}

// PlanDestroy plans the deletion of every recorded resource (or those
// matching the targets, with everything that depends on them).
func (pl *Planner) PlanDestroy(store *Store) (*Plan, error) {
	all := map[string]*ResourceState{}
	for _, a := range store.Addrs() {
		all[a] = store.Get(a)
	}
	doomed := map[string]bool{}
	for a := range all {
		if pl.matches(a) {
			doomed[a] = true
		}
	}
	if len(pl.Targets) > 0 && len(doomed) == 0 {
		return nil, fmt.Errorf("--target %s matches no recorded resource", strings.Join(pl.Targets, ", "))
	}
	for grew := true; grew; {
		grew = false
		for a, rs := range all {
			if doomed[a] {
				continue
			}
			for d := range doomed {
				if rs.follows(d) {
					doomed[a], grew = true, true
					break
				}
			}
		}
	}
	var gone []*ResourceState
	for a := range doomed {
		gone = append(gone, all[a])
	}
	return &Plan{Destroy: true, Changes: deleteOrder(gone, "destroy")}, nil
}

// deleteOrder orders deletions so that a resource goes before what it
// depends on.
func deleteOrder(gone []*ResourceState, reason string) []*Change {
	sort.Slice(gone, func(i, j int) bool { return gone[i].Addr() < gone[j].Addr() })
	done := map[string]bool{}
	var out []*Change
	var visit func(g *ResourceState)
	// Post-order over "is depended on by": emit dependents first.
	dependents := map[string][]*ResourceState{}
	for _, g := range gone {
		for _, d := range gone {
			if d != g && g.follows(d.Addr()) {
				dependents[d.Addr()] = append(dependents[d.Addr()], g)
			}
		}
	}
	visit = func(g *ResourceState) {
		if done[g.Addr()] {
			return
		}
		done[g.Addr()] = true
		for _, dep := range dependents[g.Addr()] {
			visit(dep)
		}
		out = append(out, &Change{Addr: g.Addr(), Action: Delete, Prior: g, Reasons: []string{reason}})
	}
	for _, g := range gone {
		visit(g)
	}
	return out
}

func (pl *Planner) matches(addr string) bool {
	if len(pl.Targets) == 0 {
		return true
	}
	for _, t := range pl.Targets {
		if strings.HasPrefix(addr, t) {
			return true
		}
	}
	return false
}

// selectTargets returns the addresses in play: all, or the targeted ones
// and everything they depend on.
func (pl *Planner) selectTargets(recipe *Recipe, store *Store) (map[string]bool, error) {
	sel := map[string]bool{}
	if len(pl.Targets) == 0 {
		for _, r := range recipe.Resources {
			sel[r.Addr()] = true
		}
		return sel, nil
	}
	for _, t := range pl.Targets {
		hit := false
		for _, r := range recipe.Resources {
			if strings.HasPrefix(r.Addr(), t) {
				sel[r.Addr()], hit = true, true
			}
		}
		for _, a := range store.Addrs() {
			if strings.HasPrefix(a, t) {
				hit = true
			}
		}
		if !hit {
			return nil, fmt.Errorf("--target %s matches no resource of %s", t, recipe.File)
		}
	}
	for i := len(recipe.Resources) - 1; i >= 0; i-- {
		r := recipe.Resources[i]
		if sel[r.Addr()] {
			for _, d := range r.Deps {
				sel[d] = true
			}
			for _, d := range r.After {
				sel[d] = true
			}
		}
	}
	return sel, nil
}

func changedInputs(prior, now map[string]any) []string {
	keys := map[string]bool{}
	for k := range prior {
		keys[k] = true
	}
	for k := range now {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if string(mustJSON(prior[k])) != string(mustJSON(now[k])) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"provider settings"}
	}
	return out
}

// diffLines is how many changed lines textDiff shows for one input.
const diffLines = 6

// textDiff is the lines that go (-) and come (+) when a text input, or a
// text in a map of them (a service's files by path), changes; nothing for
// other values, whose names the reason gives.
func textDiff(key string, prior, now any) []string {
	if pm, ok := prior.(map[string]any); ok {
		if nm, ok := now.(map[string]any); ok {
			var out []string
			for _, k := range sortedKeys(pm, nm) {
				out = append(out, textDiff(key+" "+k, pm[k], nm[k])...)
			}
			return out
		}
	}
	ps, pok := prior.(string)
	ns, nok := now.(string)
	if (!pok && prior != nil) || (!nok && now != nil) || ps == ns || !strings.Contains(ps+ns, "\n") {
		return nil
	}
	count := map[string]int{}
	for _, l := range strings.Split(ps, "\n") {
		count[l]++
	}
	var added []string
	for _, l := range strings.Split(ns, "\n") {
		if count[l] > 0 {
			count[l]--
		} else {
			added = append(added, l)
		}
	}
	var out []string
	for _, l := range strings.Split(ps, "\n") {
		if count[l] > 0 {
			count[l]--
			out = append(out, key+": - "+strings.TrimSpace(l))
		}
	}
	for _, l := range added {
		out = append(out, key+": + "+strings.TrimSpace(l))
	}
	if len(out) > diffLines {
		out = append(out[:diffLines], fmt.Sprintf("%s: … %d more changed lines", key, len(out)-diffLines))
	}
	return out
}

func sortedKeys(ms ...map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func sdkResource(r *Resource) sdk.Resource {
	return sdk.Resource{Type: r.Type, Name: r.Name, Address: r.Addr(), Config: r.ConfigJSON(), Pos: r.Where()}
}

func stateResource(s *ResourceState) sdk.Resource {
	r := &Resource{Type: s.Type, Name: s.Name, Inputs: s.Inputs, Settings: s.Settings}
	return sdk.Resource{Type: s.Type, Name: s.Name, Address: s.Addr(), Config: r.ConfigJSON(), Pos: s.Pos}
}
