package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/khw-dev/khw/runtime"
)

// display shows an apply as it happens.
type display interface {
	Event(ev runtime.Event)
	Close()
}

var doneVerbs = map[runtime.Action]string{
	runtime.Create: "created", runtime.Update: "updated", runtime.Replace: "replaced", runtime.Delete: "destroyed",
}

var doingVerbs = map[runtime.Action]string{
	runtime.Create: "creating", runtime.Update: "updating", runtime.Replace: "replacing", runtime.Delete: "destroying",
}

func round(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// finishLine is the line printed when a resource ends, in every display.
func finishLine(ev runtime.Event) string {
	switch ev.Kind {
	case runtime.EventDone:
		return fmt.Sprintf("%s: %s (%s)", ev.Addr, doneVerbs[ev.Action], round(ev.Elapsed))
	case runtime.EventFailed:
		return fmt.Sprintf("%s: %s failed after %s", ev.Addr, strings.TrimSuffix(doingVerbs[ev.Action], "ing")+"e", round(ev.Elapsed))
	case runtime.EventSkipped:
		return fmt.Sprintf("%s: not %s (an earlier step failed)", ev.Addr, doneVerbs[ev.Action])
	}
	return ""
}

// warningLine is how every text display shows a provider's warning.
func warningLine(ev runtime.Event) string {
	return fmt.Sprintf("Warning: %s: %s", ev.Addr, strings.ReplaceAll(ev.Msg, "\n", "\n  "))
}

// plainDisplay prints one line per step: for logs and pipes. Warnings go to
// errw (standard error), so that they reach the person when the steps go
// to a file.
type plainDisplay struct {
	mu   sync.Mutex
	w    io.Writer
	errw io.Writer
}

func (d *plainDisplay) Event(ev runtime.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch ev.Kind {
	case runtime.EventWarning:
		fmt.Fprintln(d.errw, warningLine(ev))
	case runtime.EventStart:
		fmt.Fprintf(d.w, "%s: %s...\n", ev.Addr, doingVerbs[ev.Action])
	case runtime.EventProgress:
		fmt.Fprintf(d.w, "%s: %s [%s]\n", ev.Addr, ev.Msg, round(ev.Elapsed))
	default:
		fmt.Fprintln(d.w, finishLine(ev))
	}
}

func (d *plainDisplay) Close() {}

// ttyDisplay keeps a live spinner line for each resource in flight, with
// its elapsed time and latest progress message, and prints a line above
// them as each one ends.
type ttyDisplay struct {
	mu   sync.Mutex // guards bars; never held while mpb renders
	p    *mpb.Progress
	bars map[string]*mpb.Bar
	// msgs holds each resource's latest progress line. mpb's render
	// goroutine reads it from a decorator, so it has its own lock.
	msgs sync.Map
}

func newTTYDisplay(w io.Writer) *ttyDisplay {
	return &ttyDisplay{
		p:    mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithRefreshRate(120*time.Millisecond), mpb.WithWidth(1)),
		bars: map[string]*mpb.Bar{},
	}
}

func (d *ttyDisplay) Event(ev runtime.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch ev.Kind {
	case runtime.EventStart:
		addr := ev.Addr
		d.bars[addr] = d.p.New(0, mpb.NopStyle(),
			mpb.PrependDecorators(
				decor.Spinner(nil, decor.WCSyncSpaceR),
				decor.Name(addr+" "+doingVerbs[ev.Action], decor.WCSyncSpaceR),
				decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					if m, ok := d.msgs.Load(addr); ok {
						return m.(string)
					}
					return ""
				}),
			),
			mpb.BarRemoveOnComplete(),
		)
	case runtime.EventProgress:
		d.msgs.Store(ev.Addr, ev.Msg)
	case runtime.EventWarning:
		// Above the live lines, as the finished ones: writing to the
		// terminal's other stream would tear the lines mpb redraws.
		fmt.Fprintf(d.p, "! %s\n", warningLine(ev))
	default:
		d.msgs.Delete(ev.Addr)
		if b := d.bars[ev.Addr]; b != nil {
			b.Abort(true)
			delete(d.bars, ev.Addr)
		}
		mark := "✓"
		if ev.Kind != runtime.EventDone {
			mark = "✗"
		}
		fmt.Fprintf(d.p, "%s %s\n", mark, finishLine(ev))
	}
}

func (d *ttyDisplay) Close() {
	d.mu.Lock()
	for _, b := range d.bars {
		b.Abort(true)
	}
	d.mu.Unlock()
	d.p.Wait()
}

// jsonDisplay writes one JSON object per event (--output json).
type jsonDisplay struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (d *jsonDisplay) Event(ev runtime.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// One line per event; the schema is khw's own (docs/output.md).
	out := map[string]any{"event": string(ev.Kind), "address": ev.Addr, "action": ev.Action}
	if ev.Msg != "" {
		out["message"] = ev.Msg
	}
	if ev.Elapsed > 0 {
		out["elapsed_ms"] = ev.Elapsed.Milliseconds()
	}
	if ev.Err != nil {
		out["error"] = ev.Err.Error()
	}
	_ = d.enc.Encode(out)
}

func (d *jsonDisplay) Close() {}
