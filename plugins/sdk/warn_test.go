package sdk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	pb "github.com/khw-dev/khw/plugins/sdk/proto"
)

// warner warns once in every call it serves.
type warner struct{ reader }

func (w *warner) Describe(ctx context.Context) (*Schema, error) {
	Warnf(ctx, "describing")
	return &Schema{Name: "w"}, nil
}
func (w *warner) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	Warnf(ctx, "reading %s", req.Resource.Name)
	return w.reader.Read(ctx, req)
}
func (w *warner) Plan(ctx context.Context, _ *PlanRequest) (*PlanResponse, error) {
	Warnf(ctx, "planning")
	return &PlanResponse{}, nil
}
func (w *warner) Apply(ctx context.Context, _ *ApplyRequest, _ Progress) (*ApplyResponse, error) {
	Warnf(ctx, "applied, but\nthe detail")
	return nil, errors.New("then it failed")
}
func (w *warner) Delete(ctx context.Context, _ *DeleteRequest) error {
	Warnf(ctx, "deleting")
	return nil
}

type sink struct {
	mu   sync.Mutex
	msgs []string
}

func (s *sink) ctx() context.Context {
	return WithWarnings(context.Background(), func(m string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.msgs = append(s.msgs, m)
	})
}

func (s *sink) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.Join(s.msgs, "|")
	s.msgs = nil
	return out
}

// Every call's WARNING diagnostics reach the sink on the caller's context,
// across the real gRPC adapters; a failed call still carries its warnings.
func TestWarningsTravel(t *testing.T) {
	p := dispense(t, &GRPCPlugin{Impl: &warner{}})
	var s sink
	ctx := s.ctx()
	if _, err := p.Describe(ctx); err != nil || s.take() != "describing" {
		t.Fatalf("describe: %v", err)
	}
	if _, err := p.Read(ctx, &ReadRequest{Resource: Resource{Name: "a"}}); err != nil || s.take() != "reading a" {
		t.Fatalf("read: %v", err)
	}
	if _, err := p.(BatchReader).ReadMany(ctx, []*ReadRequest{{Resource: Resource{Name: "a", Address: "t.a"}}}); err != nil {
		t.Fatal(err)
	}
	if got := s.take(); got != "t.a: reading a" {
		t.Fatalf("read many: %q", got)
	}
	if _, err := p.Plan(ctx, &PlanRequest{}); err != nil || s.take() != "planning" {
		t.Fatalf("plan: %v", err)
	}
	if _, err := p.Apply(ctx, &ApplyRequest{}, nil); err == nil || err.Error() != "then it failed" {
		t.Fatalf("apply: %v", err)
	}
	if got := s.take(); got != "applied, but\nthe detail" {
		t.Fatalf("apply warning: %q", got)
	}
	if err := p.Delete(ctx, &DeleteRequest{}); err != nil || s.take() != "deleting" {
		t.Fatalf("delete: %v", err)
	}
}

// The severity's zero value is not a valid severity: a diagnostic that
// leaves it unset (or holds a value this khw does not know) fails the call.
func TestUnsetSeverityIsAnError(t *testing.T) {
	var s sink
	for _, sev := range []pb.Diagnostic_Severity{pb.Diagnostic_SEVERITY_UNSPECIFIED, 7} {
		err := takeDiags(s.ctx(), []*pb.Diagnostic{{Severity: sev, Summary: "it broke"}})
		var de *DiagError
		if !errors.As(err, &de) || de.Summary != "it broke" || !strings.Contains(de.Detail, "not valid: it is taken as an error") {
			t.Fatalf("severity %v: err = %#v", sev, err)
		}
	}
	if err := takeDiags(s.ctx(), []*pb.Diagnostic{{Severity: pb.Diagnostic_WARNING, Summary: "careful"}}); err != nil || s.take() != "careful" {
		t.Fatalf("a warning failed the call: %v", err)
	}
	if pb.Diagnostic_Severity(0) != pb.Diagnostic_SEVERITY_UNSPECIFIED {
		t.Fatal("the zero severity is a valid one")
	}
}
