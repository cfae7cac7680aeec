package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	pb "github.com/khw-dev/khw/plugins/sdk/proto"
)

// Warnings are the protocol's WARNING diagnostics: a call succeeded, but
// the person should know something ("br0 existed already: destroy will
// leave it in place"). They travel with the call's context rather than in
// the Go signatures, so that every call (Describe, Read, ReadMany, Plan,
// Apply, Delete) can carry them without a second return value:
//
//   - a provider calls Warnf with the context of the call it serves;
//   - the gRPC server adapter collects them into the response's
//     diagnostics;
//   - the client adapter hands each one to the sink that khw put on the
//     context of its call (WithWarnings), and khw shows it as a
//     "Warning: ..." line: in the plan, or in the run's output.
//
// In process the provider's Warnf reaches khw's sink directly.

type warnKey struct{}

// WithWarnings returns ctx with a sink for the warnings that providers
// report during calls made with it. The sink may be called from several
// goroutines at once.
func WithWarnings(ctx context.Context, sink func(msg string)) context.Context {
	return context.WithValue(ctx, warnKey{}, sink)
}

// Warnf reports a warning about the call that ctx belongs to. The first
// line is the summary, the rest the detail. Without a sink on ctx (a
// context the call did not come with) the warning goes to the plugin's log
// (Logger), or to standard error outside a plugin: it is never dropped.
func Warnf(ctx context.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if sink, ok := ctx.Value(warnKey{}).(func(string)); ok && sink != nil {
		sink(msg)
		return
	}
	if logger.Load() != nil {
		Logger().Warn(msg)
		return
	}
	fmt.Fprintf(os.Stderr, "Warning: %s\n", msg)
}

// collectWarnings gives the server adapter a context whose warnings it
// returns, as WARNING diagnostics, once the call is done.
func collectWarnings(ctx context.Context) (context.Context, func() []*pb.Diagnostic) {
	var mu sync.Mutex
	var ds []*pb.Diagnostic
	ctx = WithWarnings(ctx, func(msg string) {
		summary, detail, _ := strings.Cut(msg, "\n")
		mu.Lock()
		defer mu.Unlock()
		ds = append(ds, &pb.Diagnostic{Severity: pb.Diagnostic_WARNING, Summary: summary, Detail: detail})
	})
	return ctx, func() []*pb.Diagnostic {
		mu.Lock()
		defer mu.Unlock()
		return ds
	}
}

// takeDiags is the client's reading of a response's diagnostics: each
// WARNING goes to ctx's sink (Warnf), and every other one fails the call.
// That includes a diagnostic whose severity is SEVERITY_UNSPECIFIED (the
// zero value, which a provider that forgot to set it sends) or a value
// this khw does not know: an unset severity must never pass silently.
func takeDiags(ctx context.Context, ds []*pb.Diagnostic) error {
	var errs []error
	for _, d := range ds {
		switch d.Severity {
		case pb.Diagnostic_WARNING:
			msg := d.Summary
			if d.Detail != "" {
				msg += "\n" + d.Detail
			}
			Warnf(ctx, "%s", msg)
		case pb.Diagnostic_ERROR:
			errs = append(errs, &DiagError{Summary: d.Summary, Detail: d.Detail, Hint: d.Hint})
		default:
			note := fmt.Sprintf("(the provider sent this diagnostic with severity %s, which is not valid: it is taken as an error)", d.Severity)
			detail := note
			if d.Detail != "" {
				detail = d.Detail + "\n" + note
			}
			errs = append(errs, &DiagError{Summary: d.Summary, Detail: detail, Hint: d.Hint})
		}
	}
	return errors.Join(errs...)
}
