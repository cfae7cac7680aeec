// Package sdk is the khw provider protocol as Go: the Provider interface that
// every provider implements (in process or as a khw-plugin-NAME binary), the
// request and response types, a Mux that serves several resource types, and
// the go-plugin gRPC adapters for both sides.
package sdk

import (
	"context"
	"encoding/json"
	"fmt"
)

// ProtocolVersion is the version of the provider protocol. A plugin built for
// another version is refused at the handshake. It goes up with every change
// that a peer built for the old one would misread (docs/plugins.md):
// version 2 gave Diagnostic.Severity an invalid zero value
// (SEVERITY_UNSPECIFIED), where version 1's zero meant ERROR, and dropped
// ApplyRequest's action.
const ProtocolVersion = 2

// Resource is a resource as the recipe declared it.
type Resource struct {
	Type    string          `json:"type"`
	Name    string          `json:"name"`
	Address string          `json:"address"`
	Config  json.RawMessage `json:"config"`
	Pos     string          `json:"pos,omitempty"`
}

// Decode unmarshals the resource's configuration into v.
func (r *Resource) Decode(v any) error {
	if len(r.Config) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Config, v); err != nil {
		return fmt.Errorf("%s: bad configuration: %w", r.Address, err)
	}
	return nil
}

// TypeInfo describes one resource type a provider serves.
type TypeInfo struct {
	Type string `json:"type"`
	Doc  string `json:"doc,omitempty"`
	// UpdateInPlace is true when a changed configuration can be applied in
	// place (~) rather than by replacement (-/+). The schema the provider
	// reports at start-up (Describe) is the one place that says so: khw's
	// planner reads it there, as Terraform reads a provider's schema, and
	// nothing in khw repeats it. For such a type, a ChangePlanner may still
	// turn one particular change into a replacement.
	UpdateInPlace bool `json:"update_in_place"`
}

// Schema is what Describe returns.
type Schema struct {
	Name    string     `json:"name"`
	Version string     `json:"version"`
	Types   []TypeInfo `json:"types"`
}

type ReadRequest struct {
	Resource     Resource
	PriorOutputs json.RawMessage
	Workdir      string
}

type ReadResponse struct {
	// Exists is false when the resource is gone from the world.
	Exists bool
	// Drift is non-empty when the resource exists but is not what was applied.
	Drift   string
	Outputs json.RawMessage
}

// PlanRequest asks whether one change of a resource whose type updates in
// place needs a replacement after all (see ChangePlanner).
type PlanRequest struct {
	Resource     Resource
	PriorConfig  json.RawMessage // nil on create
	PriorOutputs json.RawMessage
	Workdir      string
}

type PlanResponse struct {
	RequiresReplace bool
}

// ApplyRequest asks a provider to make a resource what its configuration
// says. khw replaces a resource by deleting it (Delete) and then applying
// it with nothing recorded, so Apply either creates (PriorOutputs empty) or
// updates in place (PriorOutputs is what the last Apply returned: a type
// whose TypeInfo.UpdateInPlace is true, or a resource that Read found gone
// and khw makes again). A provider that finds something of its own left
// over (a run killed mid-way) makes it anew.
type ApplyRequest struct {
	Resource     Resource
	PriorOutputs json.RawMessage
	// Deps holds the outputs of every resource this one refers to, by address.
	Deps    map[string]json.RawMessage
	Workdir string
}

type ApplyResponse struct {
	Outputs json.RawMessage
	// Digest changes whenever the observable result changes.
	Digest string
}

type DeleteRequest struct {
	Resource     Resource
	PriorOutputs json.RawMessage
	Workdir      string
}

// Progress reports a line of progress during a long Apply.
type Progress func(msg string)

// Handler serves one resource type.
type Handler interface {
	Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error)
	Apply(ctx context.Context, req *ApplyRequest, progress Progress) (*ApplyResponse, error)
	Delete(ctx context.Context, req *DeleteRequest) error
}

// ChangePlanner is a Handler that refines the plan of its type. Whether a
// change is made in place or by replacement is the type's rule, its
// TypeInfo.UpdateInPlace; khw asks Plan only when that is true and the
// resource's configuration changes, and Plan may answer that this change
// needs a replacement after all (net.hosts moving to another file) or fail
// it with a diagnostic (a configuration it cannot take). A type without
// such changes implements no Plan: the Mux answers "in place" for it.
type ChangePlanner interface {
	Plan(ctx context.Context, req *PlanRequest) (*PlanResponse, error)
}

// Provider serves a set of resource types: what khw talks to, in process or
// across the plugin protocol. Its Plan is the ChangePlanner of the
// resource's type, or "in place" (see Mux.Plan).
type Provider interface {
	Describe(ctx context.Context) (*Schema, error)
	Handler
	ChangePlanner
}

// Mux is a Provider that dispatches each call to the Handler of the
// resource's type.
type Mux struct {
	Name, Version string
	types         []TypeInfo
	handlers      map[string]Handler
}

// NewMux returns an empty Mux for a provider.
func NewMux(name, version string) *Mux {
	return &Mux{Name: name, Version: version, handlers: map[string]Handler{}}
}

// Handle registers the handler of one resource type.
func (m *Mux) Handle(info TypeInfo, h Handler) {
	if _, dup := m.handlers[info.Type]; dup {
		panic("sdk: type registered twice: " + info.Type)
	}
	m.types = append(m.types, info)
	m.handlers[info.Type] = h
}

func (m *Mux) handler(r *Resource) (Handler, error) {
	h, ok := m.handlers[r.Type]
	if !ok {
		return nil, fmt.Errorf("provider %q does not serve resource type %q (%s)", m.Name, r.Type, r.Address)
	}
	return h, nil
}

func (m *Mux) Describe(context.Context) (*Schema, error) {
	return &Schema{Name: m.Name, Version: m.Version, Types: append([]TypeInfo(nil), m.types...)}, nil
}

func (m *Mux) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	h, err := m.handler(&req.Resource)
	if err != nil {
		return nil, err
	}
	return h.Read(ctx, req)
}

// Plan asks the type's ChangePlanner; a type without one updates in place
// as its TypeInfo says.
func (m *Mux) Plan(ctx context.Context, req *PlanRequest) (*PlanResponse, error) {
	h, err := m.handler(&req.Resource)
	if err != nil {
		return nil, err
	}
	if p, ok := h.(ChangePlanner); ok {
		return p.Plan(ctx, req)
	}
	return &PlanResponse{}, nil
}

func (m *Mux) Apply(ctx context.Context, req *ApplyRequest, p Progress) (*ApplyResponse, error) {
	h, err := m.handler(&req.Resource)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = func(string) {}
	}
	return h.Apply(ctx, req, p)
}

func (m *Mux) Delete(ctx context.Context, req *DeleteRequest) error {
	h, err := m.handler(&req.Resource)
	if err != nil {
		return err
	}
	return h.Delete(ctx, req)
}

// Outputs marshals v as a resource's outputs; it panics only on values that
// cannot be JSON (a programming error).
func Outputs(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sdk: outputs not JSON: %v", err))
	}
	return b
}
