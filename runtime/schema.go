package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/khw-dev/khw/plugins/sdk"
)

// The builtins declare which provider serves each resource type
// (TypeSpec.Provider); the providers say, in the schema they report at
// start-up, which types they serve and how each changes. This file checks
// that the two agree, and gives the planner each type's update rule from
// the schema, its one source.
//
// khw checks a plugin when it first uses it (CheckSchema, from the plugin
// host) rather than launching every plugin found on every run: a plugin
// costs a process, some run only through a prefix such as sudo, and a
// recipe seldom needs them all. A plugin that is never launched routes
// nothing, so a conflict there cannot send a resource to the wrong
// provider. `khw plugins` launches every plugin found and checks them all
// together (CheckProviders), as the table test of the builtins does.

// TypeError is a disagreement between the types the builtins declare and
// the providers found. It names the type and the providers.
type TypeError struct {
	Type string
	// Providers are the providers involved: the declared one first.
	Providers []string
	// Missing is true when no provider found serves the type at all (its
	// plugin is not installed): a run that needs it fails then, naming the
	// plugin, but a listing of the plugins found need not.
	Missing bool
	Msg     string
}

func (e *TypeError) Error() string { return fmt.Sprintf("resource type %q: %s", e.Type, e.Msg) }

// ErrorHint says what to do about it (sdk.Hinted).
func (e *TypeError) ErrorHint() string {
	if e.Missing {
		return "install the plugin: `make build` puts every khw-plugin-NAME in bin/ next to bin/khw; `khw plugins` lists what khw finds"
	}
	return "keep one plugin for each type on the search path (`khw plugins` lists them), or build the plugins from the same khw as khw itself"
}

// who names a provider for a person.
func who(provider string) string {
	switch provider {
	case InProcess:
		return "khw (in process)"
	case AnyPlugin:
		return "the plugin the recipe names"
	}
	return fmt.Sprintf("plugin %q", provider)
}

func whoAll(providers []string) string {
	out := make([]string, len(providers))
	for i, p := range providers {
		out[i] = who(p)
	}
	return strings.Join(out, " and ")
}

func serves(sc *sdk.Schema, typ string) *sdk.TypeInfo {
	for i := range sc.Types {
		if sc.Types[i].Type == typ {
			return &sc.Types[i]
		}
	}
	return nil
}

// CheckSchema checks one provider's schema, when khw first uses the
// provider: it must serve every type the builtins declare for it, and no
// type they declare for another provider (a type has exactly one).
func (r *Registry) CheckSchema(sc *sdk.Schema) error {
	var errs []error
	for _, t := range r.Types() {
		has := serves(sc, t.Type) != nil
		switch {
		case t.Provider == sc.Name && !has:
			errs = append(errs, &TypeError{Type: t.Type, Providers: []string{sc.Name},
				Msg: fmt.Sprintf("%s does not serve it, but khw's builtins need it from that provider (a plugin from another khw version?)", who(sc.Name))})
		case has && t.Provider != sc.Name && t.Provider != AnyPlugin:
			errs = append(errs, &TypeError{Type: t.Type, Providers: []string{t.Provider, sc.Name},
				Msg: fmt.Sprintf("served by %s, which khw's builtins declare, and also by %s; exactly one provider may serve a type", who(t.Provider), who(sc.Name))})
		}
	}
	return errors.Join(errs...)
}

// CheckProviders checks the schemas of every provider found (the
// in-process one among them): each type the builtins declare must be
// served by exactly one of them, the declared one; a type whose provider
// the recipe names (AnyPlugin) by at least one. The errors are
// *TypeErrors, by type.
func (r *Registry) CheckProviders(schemas []*sdk.Schema) error {
	servedBy := map[string][]string{}
	for _, sc := range schemas {
		for _, t := range sc.Types {
			servedBy[t.Type] = append(servedBy[t.Type], sc.Name)
		}
	}
	var errs []error
	for _, t := range r.Types() {
		got := servedBy[t.Type]
		sort.Strings(got)
		switch {
		case len(got) == 0:
			errs = append(errs, &TypeError{Type: t.Type, Providers: []string{t.Provider}, Missing: true,
				Msg: fmt.Sprintf("no provider found serves it; khw's builtins need %s", who(t.Provider))})
		case t.Provider == AnyPlugin, len(got) == 1 && got[0] == t.Provider:
		default:
			errs = append(errs, &TypeError{Type: t.Type, Providers: append([]string{t.Provider}, got...),
				Msg: fmt.Sprintf("served by %s; exactly one provider may serve it, %s, as khw's builtins declare", whoAll(got), who(t.Provider))})
		}
	}
	return errors.Join(errs...)
}

// schemaEntry is a provider's schema as the planner fetched it, or why it
// could not.
type schemaEntry struct {
	sc  *sdk.Schema
	err error
}

// updatesInPlace says whether a change of r is made in place: the rule of
// r's type in the schema its provider reported at start-up (Describe; the
// plugin host keeps what the plugin said when it was launched), which is
// the one place the rule is written, as a Terraform provider's schema is.
func (pl *Planner) updatesInPlace(ctx context.Context, r *Resource) (bool, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.schemas == nil {
		pl.schemas = map[string]*schemaEntry{}
	}
	e := pl.schemas[r.Provider]
	if e == nil {
		e = &schemaEntry{}
		var prov sdk.Provider
		if prov, e.err = pl.Providers.Provider(ctx, r.Provider); e.err == nil {
			e.sc, e.err = prov.Describe(ctx)
		}
		pl.schemas[r.Provider] = e
	}
	if e.err != nil {
		return false, e.err
	}
	t := serves(e.sc, r.Type)
	if t == nil {
		return false, fmt.Errorf("%s does not serve resource type %q", who(r.Provider), r.Type)
	}
	return t.UpdateInPlace, nil
}
